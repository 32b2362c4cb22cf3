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
//!   after its first write.
//! - The exchange is lent whole ([`DirectSocket::lend`]): its count against the
//!   visitor address's limit of exchanges in flight ([`Admitted`]) and its stream's
//!   handles. The visitor's task then ends its exchange at once and sleeps in the wait
//!   for the next request ([`super::lent`]); a whole write lets the count go here and
//!   the handles go in the reader's turn ([`DirectWrite::retired`]): the exchange is
//!   over when its response is written, whoever writes it, and the task, woken by the
//!   next request, only learns so ([`DirectSocket::resolve`]: one atomic load, the
//!   lock only for the rare ends) before it reads it. Anything else the response needs (a rest to write, the events of a
//!   response the reader did not write, a deadline, the next bytes before the
//!   response) wakes the task, which takes the exchange back and answers it itself.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use localtunnels_core::ReceivedBlock;
use localtunnels_driver::direct::{Direct, DirectWrite};
use localtunnels_driver::{StreamReceiver, StreamSender};

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
    /// Set (under `armed`'s lock) when the reader wrote the lent response whole: one
    /// plus its write's time in nanoseconds after the request's start; 0 otherwise.
    /// The task's usual end of the lending reads (and clears) this alone, without the
    /// lock ([`DirectSocket::resolve`]): the time is what the next head's deadline
    /// needs, kept relative to the start the task knows (an `Instant` is no atomic).
    whole: AtomicU64,
}

/// The request the socket is lent for.
struct Armed {
    /// The reply the request asks for; taken by the write (`None`: not lent).
    reply: Option<Reply>,
    /// The request's start, for its duration.
    started: Instant,
    /// The exchange's count against its visitor address, let go by a whole write.
    admitted: Option<Admitted>,
    /// The head's bytes, kept for their capacity.
    head: BytesMut,
    /// Where the lent exchange stands.
    lend: Lend,
    /// The handles a write let go, dropped once the stream's slot is retired
    /// ([`DirectWrite::retired`]).
    retired: Option<(StreamSender, StreamReceiver)>,
}

/// Where a lent exchange stands.
enum Lend {
    /// Nothing lent, taken back, or written whole (`DirectSocket::whole` then says when).
    Idle,
    /// Lent with the exchange's stream handles; not written yet.
    Waiting(StreamSender, StreamReceiver),
    /// The reader wrote part of it: the rest, for the task to write, and when (after
    /// the request's start).
    Partial(Bytes, Duration),
}

/// How a lent exchange ended, for the visitor's task ([`DirectSocket::resolve`]).
pub(crate) enum Resolved {
    /// The reader wrote the response whole this long after the request's start (and
    /// let the count go).
    Written(Duration),
    /// The reader wrote part of it this long after the request's start: the rest is
    /// the task's to write, and the count its to let go after.
    Rest(Bytes, Duration, Option<Admitted>),
    /// The reader did not write it and will not: the exchange's handles and count,
    /// for the task to answer the request as without a lending.
    Back(StreamSender, StreamReceiver, Option<Admitted>),
}

impl DirectSocket {
    /// `socket` (a second descriptor of a visitor's plain TCP socket) for the reader.
    pub(crate) fn new(socket: std::net::TcpStream, state: Arc<ServerState>) -> Arc<Self> {
        let armed = Armed {
            reply: None,
            started: Instant::now(),
            admitted: None,
            head: BytesMut::new(),
            lend: Lend::Idle,
            retired: None,
        };
        Arc::new(DirectSocket { socket, state, armed: Mutex::new(armed), whole: AtomicU64::new(0) })
    }

    /// One more descriptor of the visitor's socket, for a WebSocket bridge on the
    /// connection (`localtunnels_driver::websocket::bridge_direct`): the connection
    /// then lets this one go.
    pub(crate) fn second(&self) -> Option<std::net::TcpStream> {
        self.socket.try_clone().ok()
    }

    fn armed(&self) -> MutexGuard<'_, Armed> {
        self.armed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lends the socket for the response to the request that began at `started`, to
    /// be answered as `reply` says, with the exchange's `admitted` count and its
    /// stream (`tx`, `rx`: offered the socket here, and `task` woken by its events, as
    /// [`DirectSocket::poll_lent`] would leave it; ready as that poll when its events
    /// are here already). A whole write lets the count and the handles go; else the
    /// task takes them back ([`DirectSocket::resolve`]).
    pub(crate) fn lend(
        self: &Arc<Self>,
        lent: (Reply, Instant, Option<Admitted>),
        tx: StreamSender,
        mut rx: StreamReceiver,
        task: &Waker,
    ) -> Poll<()> {
        let (reply, started, admitted) = lent;
        let mut armed = self.armed();
        // Offered under this lock: a response already on its way finds the socket armed.
        let news = rx.offer_direct_waking(self.clone(), task);
        armed.reply = Some(reply);
        armed.started = started;
        armed.admitted = admitted;
        armed.lend = Lend::Waiting(tx, rx);
        news
    }

    /// Ready when the lent exchange needs its task: a rest to write, or its stream's
    /// events (a response the reader did not write, a reset, the tunnel's end). A
    /// whole write does not wake the task: it learns of it when it next runs.
    pub(crate) fn poll_lent(&self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.armed().lend {
            Lend::Waiting(_, rx) => rx.poll_ready(cx),
            Lend::Partial(..) => Poll::Ready(()),
            Lend::Idle => Poll::Pending,
        }
    }

    /// Ends the lending: how the exchange ended, or its parts back when the reader did
    /// not write (it will not any more; the caller takes the stream's offer back).
    ///
    /// The usual end, a whole write, is one atomic load and store: the reader left
    /// nothing else (the reply taken, the count and the handles let go, the lending
    /// `Idle`), and writes nothing more until the next [`DirectSocket::lend`], so only
    /// this task clears the flag. The rest take the lock.
    pub(crate) fn resolve(&self) -> Resolved {
        if let Some(after) = self.written_whole() {
            return Resolved::Written(after);
        }
        let mut armed = self.armed();
        armed.reply = None;
        match std::mem::replace(&mut armed.lend, Lend::Idle) {
            Lend::Waiting(tx, rx) => Resolved::Back(tx, rx, armed.admitted.take()),
            Lend::Partial(rest, after) => Resolved::Rest(rest, after, armed.admitted.take()),
            // Written whole between the load above and the lock (the flag is set under
            // it); or nothing lent (not called so), nothing to do either.
            Lend::Idle => Resolved::Written(self.written_whole().unwrap_or_default()),
        }
    }

    /// When the reader wrote the lent response whole (after the request's start), if
    /// it did; the flag is cleared.
    fn written_whole(&self) -> Option<Duration> {
        // Acquire: pairs with the write's release, so that what the reader let go
        // before it (the count) is seen let go.
        let n = self.whole.load(Ordering::Acquire);
        if n == 0 {
            return None;
        }
        self.whole.store(0, Ordering::Relaxed);
        Some(Duration::from_nanos(n - 1))
    }

    /// Ends a lending its task no longer waits for (the connection ends): the reader
    /// writes nothing more, and the count and the handles go (the stream, if not over,
    /// is reset: the visitor left).
    fn end(&self) {
        let mut armed = self.armed();
        armed.reply = None;
        self.whole.store(0, Ordering::Relaxed);
        let lend = std::mem::replace(&mut armed.lend, Lend::Idle);
        let admitted = armed.admitted.take();
        drop(armed);
        drop(lend);
        drop(admitted);
    }
}

impl DirectWrite for DirectSocket {
    fn write_whole(&self, status: u16, block: &ReceivedBlock, body: &Bytes) -> Direct {
        let mut armed = self.armed();
        let Armed { reply, started, admitted, head, lend, retired } = &mut *armed;
        let Some(reply) = reply.take() else { return Direct::Declined };
        head.clear();
        let Some((_, written)) = write_block_head(head, reply, status, block, false) else {
            return Direct::Declined;
        };
        if written.encoder != Encoder::Length(body.len() as u64) {
            return Direct::Declined;
        }
        let direct = write_without_waiting(&self.socket, head, body);
        if let Direct::Declined = direct {
            return direct;
        }
        // The request's duration, which also says when the response was written: to
        // the reader turn's clock reading (`turn_clock`, taken for the message that
        // brought the response, microseconds before this write), else the clock now.
        let now = localtunnels_driver::turn_clock::turn_instant().unwrap_or_else(Instant::now);
        // As nanoseconds by `mono_nanos` (one subtraction where `Instant`'s costs ~0.05k).
        let nanos = localtunnels_driver::mono_nanos::since(now, *started);
        let after = std::time::Duration::from_nanos(nanos);
        // The response is written: the exchange no longer counts against its address
        // (let go outside this lock), and its handles go once the slot is retired. A
        // partial one's rest is the task's to write (the driver wakes it for it).
        let (done, next) = match &direct {
            Direct::Partial(rest) => (None, Lend::Partial(rest.clone(), after)),
            _ => (admitted.take(), Lend::Idle),
        };
        if let Lend::Waiting(tx, rx) = std::mem::replace(lend, next) {
            *retired = Some((tx, rx));
        }
        if let Direct::Written = direct {
            // Under the lock: `resolve`'s locked path sees the flag with the `Idle`.
            self.whole.store(nanos.min(u64::MAX - 1) + 1, Ordering::Release);
        }
        self.state.counters.recorded.answered(after);
        crate::state::Counters::bump(&self.state.counters.direct_writes);
        drop(armed);
        drop(done);
        direct
    }

    fn retired(&self) {
        let handles = self.armed().retired.take();
        drop(handles);
    }
}

/// The connection's [`DirectSocket`], held by its task: its drop (the connection's
/// end, or its leaving the HTTP/1 path) ends a lending still under way.
pub(crate) struct Lender(pub(crate) Arc<DirectSocket>);

impl std::ops::Deref for Lender {
    type Target = Arc<DirectSocket>;

    fn deref(&self) -> &Arc<DirectSocket> {
        &self.0
    }
}

impl Drop for Lender {
    fn drop(&mut self) {
        self.0.end();
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
