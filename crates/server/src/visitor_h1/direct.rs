//! A plain-TCP visitor's socket lent to the tunnel's reader, which writes the usual
//! small response to it from its own turn ([`localtunnels_driver::direct`]): no
//! hand-off to the visitor's task between the tunnel's read and the visitor's write,
//! and no second poll of the exchange for it.
//!
//! The rules (each case outside them takes the visitor task's path, unchanged):
//! - Only a plain TCP visitor (no TLS: its records need the task's stream) has a
//!   [`DirectSocket`]: a second descriptor of its socket (`dup`), written with
//!   `writev` without waiting. The visitor task keeps the first for everything else.
//! - The visitor offers it per request ([`DirectSocket::arm`], then
//!   `StreamReceiver::offer_direct`) only while it waits for nothing but the response:
//!   the request's body all sent, nothing in its write buffer, and a reply the block
//!   way writes (HTTP/1.1, kept alive, not `HEAD`).
//! - The reader writes only the head [`write_block_head`] writes (the usual one: a
//!   final status with a body, plain fields, one `Content-Length`) whose body came
//!   whole with it: `Content-Length` equal to the DATA(end)'s length. Otherwise, or
//!   when the socket takes nothing (full, or gone), it declines and the visitor task
//!   gets the frames as before. What the socket did not take is given back for the
//!   visitor task to write.
//! - The request's duration is recorded here, after the write, as the task records it
//!   after its first write; the task then reads `StreamEvent::Written` when it next
//!   runs (the visitor's next request, or its response deadline) and goes on.
//! - The exchange's admission (its count against the visitor address's limit of
//!   exchanges in flight, [`Admitted`]) is lent with the socket and let go here when
//!   the write took the whole response: the exchange is over when its response is
//!   written, whoever writes it, and the visitor's task, woken by the next request,
//!   has no lock and look-up of the address's map to do first. A partial write or an
//!   offer not taken leaves it for the task to take back ([`DirectSocket::take_back`]).

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use localtunnels_core::ReceivedBlock;
use localtunnels_driver::direct::{Direct, DirectWrite};

use super::block_head::write_block_head;
use super::encode::{Encoder, Reply};
use crate::state::ServerState;
use crate::visitors::Admitted;

/// A visitor's socket as the tunnel's reader writes it.
pub(crate) struct DirectSocket {
    /// A second descriptor of the visitor's socket (non-blocking, as the first).
    socket: std::net::TcpStream,
    state: Arc<ServerState>,
    armed: Mutex<Armed>,
}

/// The request the socket is lent for.
struct Armed {
    /// The reply the request asks for; taken by the write (`None`: not lent).
    reply: Option<Reply>,
    /// The request's start, for its duration.
    started: Instant,
    /// When the last response was written.
    written: Instant,
    /// The exchange's count against its visitor address, let go by a whole write.
    admitted: Option<Admitted>,
    /// The head's bytes, kept for their capacity.
    head: BytesMut,
}

impl DirectSocket {
    /// `socket` (a second descriptor of a visitor's plain TCP socket) for the reader.
    pub(crate) fn new(socket: std::net::TcpStream, state: Arc<ServerState>) -> Arc<Self> {
        let now = Instant::now();
        let armed = Armed { reply: None, started: now, written: now, admitted: None, head: BytesMut::new() };
        Arc::new(DirectSocket { socket, state, armed: Mutex::new(armed) })
    }

    /// Lends the socket for the response to the request that began at `started`, to
    /// be answered as `reply` says, with the exchange's `admitted` count: a whole
    /// write lets it go; else the task takes it back ([`DirectSocket::take_back`]).
    pub(crate) fn arm(&self, reply: Reply, started: Instant, admitted: Option<Admitted>) {
        let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        armed.reply = Some(reply);
        armed.started = started;
        armed.admitted = admitted;
    }

    /// Ends a lending the reader did not end with a whole write (the offer withdrawn,
    /// declined, or a partial write): its reply is no longer to be written, and the
    /// exchange's count is returned (for the caller to drop when the exchange ends).
    pub(crate) fn take_back(&self) -> Option<Admitted> {
        let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        armed.reply = None;
        armed.admitted.take()
    }

    /// When the reader wrote the last response it wrote.
    pub(crate) fn written_at(&self) -> Instant {
        self.armed.lock().unwrap_or_else(|e| e.into_inner()).written
    }
}

impl DirectWrite for DirectSocket {
    fn write_whole(&self, status: u16, block: &ReceivedBlock, body: &Bytes) -> Direct {
        let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        let Armed { reply, started, written: written_at, admitted, head } = &mut *armed;
        let Some(reply) = reply.take() else { return Direct::Declined };
        head.clear();
        let Some((_, written)) = write_block_head(head, reply, status, block, false) else {
            return Direct::Declined;
        };
        if written.encoder != Encoder::Length(body.len() as u64) {
            return Direct::Declined;
        }
        let direct = write_without_waiting(&self.socket, head, body);
        if matches!(direct, Direct::Declined) {
            return direct;
        }
        let now = Instant::now();
        *written_at = now;
        self.state.counters.recorded.answered(now.saturating_duration_since(*started));
        crate::state::Counters::bump(&self.state.counters.direct_writes);
        // The response is written: the exchange no longer counts against its address
        // (let go outside this lock). A partial one's rest is the task's to write.
        let done = match direct {
            Direct::Written => admitted.take(),
            _ => None,
        };
        drop(armed);
        drop(done);
        direct
    }
}

/// Writes `head` and then `body` to `socket` (non-blocking) in one vectored write:
/// [`Direct::Written`] when it took both, [`Direct::Partial`] with the rest when it
/// took part, [`Direct::Declined`] when it took nothing (full, or an error: the visitor
/// task's own write then meets it).
fn write_without_waiting(mut socket: &std::net::TcpStream, head: &[u8], body: &[u8]) -> Direct {
    let bufs = [std::io::IoSlice::new(head), std::io::IoSlice::new(body)];
    let n = match socket.write_vectored(&bufs) {
        Ok(0) | Err(_) => return Direct::Declined,
        Ok(n) => n,
    };
    let total = head.len() + body.len();
    if n == total {
        return Direct::Written;
    }
    let mut rest = BytesMut::with_capacity(total - n);
    if n < head.len() {
        rest.extend_from_slice(&head[n..]);
        rest.extend_from_slice(body);
    } else {
        rest.extend_from_slice(&body[n - head.len()..]);
    }
    Direct::Partial(rest.freeze())
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    use super::*;

    /// A connected pair on loopback: the writer non-blocking (as a tokio socket is).
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (reader, _) = listener.accept().unwrap();
        writer.set_nonblocking(true).unwrap();
        (writer, reader)
    }

    /// A write larger than the sockets' buffers takes part and gives the rest back; a
    /// socket then full takes nothing and declines; the reader gets the bytes written
    /// and then the rest, in order, exactly once.
    #[test]
    fn what_the_socket_does_not_take_comes_back_and_a_full_socket_declines() {
        let (writer, mut reader) = pair();
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 33554432\r\n\r\n".to_vec();
        let body: Vec<u8> = (0..32 * 1024 * 1024).map(|i: u32| i.to_le_bytes()[1]).collect();
        let Direct::Partial(rest) = write_without_waiting(&writer, &head, &body) else {
            panic!("32 MiB went into a socket nobody reads");
        };
        assert!(full(&writer), "the socket never filled up");
        let expected = [&head[..], &body[..]].concat();
        let written = expected.len() - rest.len();
        assert!(written > 0);
        assert_eq!(&rest[..], &expected[written..]);
        let mut got = vec![0; written];
        reader.read_exact(&mut got).unwrap();
        assert!(got == expected[..written], "the bytes written are the response's first ones");
        // A write that ends inside the head gives back the head's rest and the body.
        let (writer, _reader) = pair();
        let Direct::Partial(_) = write_without_waiting(&writer, &body, b"") else { panic!("not partial") };
        assert!(full(&writer), "the socket never filled up");
    }

    /// Writes small pieces until `writer` takes none (true), or gives up.
    fn full(writer: &TcpStream) -> bool {
        (0..1_000_000).any(|_| matches!(write_without_waiting(writer, b"x", b"y"), Direct::Declined))
    }

    /// A socket whose peer is gone declines (the visitor task then meets the error).
    #[test]
    fn a_socket_whose_peer_left_declines() {
        let (writer, reader) = pair();
        drop(reader);
        // The first write may still be taken (the reset comes back with it).
        let mut declined = false;
        for _ in 0..100 {
            if matches!(write_without_waiting(&writer, b"HTTP/1.1 200 OK\r\n\r\n", b"x"), Direct::Declined) {
                declined = true;
                break;
            }
        }
        assert!(declined);
    }
}
