//! A bridged message from the tunnel written to the visitor's socket from the
//! connection's reader turn ([`bridge_direct`]).
//!
//! Each message the tunnel brings for a bridge is queued on its stream and wakes the
//! bridge's task, which polls `down` to write it: a task hand-off and a poll per
//! message. A plain TCP visitor's bridge can instead lend the stream a second
//! descriptor of its socket; the reader then encodes and writes the message itself, in
//! the turn that read it, when nothing of the stream's is ahead of it. The rules:
//! - Written only when no event of the stream is queued, the socket's encoder holds
//!   nothing (no rest of an earlier write, no pong, no close) and `down` still takes
//!   messages: under the socket's lock, which `down` holds from the moment it takes an
//!   event off the queue until that event's frame is queued (`down_direct`), so a
//!   message `down` has in hand is never overtaken. The reader only tries the lock: a
//!   socket busy in the bridge's task (a read, a pong) leaves the message queued.
//! - Checked as `down` checks it ([`WsMessageCheck`], on a copy: a message that breaks
//!   a rule is queued for `down`, which closes both ways as before).
//! - The write never waits: what the socket does not take stays in the encoder, and
//!   `down`'s waker is woken to write it, before any event after it (which the reader
//!   then queues). The message's credit is granted back at once, in the reader's turn:
//!   a socket that stops reading holds the stream window plus that one fragment, the
//!   bound [`super`] states (`down` keeps a message's credit until its write is done;
//!   the reader's rest needs no count that a bridge dropped mid-write could lose).
//! - The bridge's end takes the offer back before the socket goes.

use std::io::{IoSlice, Write as _};
use std::sync::{Arc, Mutex};
use std::task::{ready, Poll};

use bytes::{Buf, Bytes};
use localtunnels_core::{WsMessageCheck, WsViolation};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{both_halves, close, flushed, lock, up, BridgeEnd, Halves, Leg, Socket};
use crate::stream::{StreamEvent, StreamReceiver, StreamSender};
use crate::ws_codec::{self, WsDecoder, WsEncoder};
use crate::ws_io;

/// What `down` and the reader's writes share, under the socket's lock.
pub(super) struct DirectDown {
    /// `down`'s check of the messages' fragments.
    check: WsMessageCheck,
    /// `down` still takes messages: the reader may write them.
    open: bool,
}

impl DirectDown {
    /// For a bridge without the reader's writes.
    pub(super) fn closed() -> DirectDown {
        DirectDown { check: WsMessageCheck::new(0), open: false }
    }
}

/// What [`WsDirect::write_message`] did.
pub(crate) enum WsDirectWrite {
    /// Written whole: the caller grants its credit back.
    Written,
    /// Queued on the socket, part or none of it written: the bridge's `down` writes the
    /// rest (wake it); the caller grants its credit back.
    Queued,
    /// Not taken: queue it as an event.
    Declined,
}

/// A bridge's socket, written from the connection's reader turn (see the module
/// documentation).
pub(crate) trait WsDirect: Send + Sync {
    /// Writes one message fragment without waiting, if nothing is ahead of it.
    fn write_message(&self, binary: bool, fin: bool, data: &Bytes) -> WsDirectWrite;
}

/// The socket of a [`bridge_direct`] and its second descriptor.
struct DirectSocket<S> {
    socket: Mutex<Socket<S>>,
    second: std::net::TcpStream,
}

impl<S: Send> WsDirect for DirectSocket<S> {
    fn write_message(&self, binary: bool, fin: bool, data: &Bytes) -> WsDirectWrite {
        let Ok(mut s) = self.socket.try_lock() else { return WsDirectWrite::Declined };
        let s = &mut *s;
        if !s.down.open || s.failed || s.wire.is_closed() || !s.wire.is_empty() {
            return WsDirectWrite::Declined;
        }
        let mut check = s.down.check.clone();
        let Ok(place) = check.push(binary, fin, data) else { return WsDirectWrite::Declined };
        s.down.check = check;
        if data.len() < ws_codec::COPY_BELOW {
            s.wire.fragment_copied(place.first, place.binary, fin, data);
        } else {
            s.wire.fragment(place.first, place.binary, fin, data.clone());
        }
        if write_without_waiting(&self.second, &mut s.wire) {
            return WsDirectWrite::Written;
        }
        WsDirectWrite::Queued
    }
}

/// Writes what `wire` holds to `socket` (non-blocking); true when all of it went. What
/// did not go stays queued (an error too: the bridge's own write meets it).
fn write_without_waiting(mut socket: &std::net::TcpStream, wire: &mut WsEncoder) -> bool {
    let mut out = wire.transmit();
    while out.has_remaining() {
        let written = if out.is_one_slice() {
            socket.write(out.chunk())
        } else {
            let mut slices = [IoSlice::new(&[]); ws_io::MAX_SLICES];
            let n = out.chunks_vectored(&mut slices);
            socket.write_vectored(&slices[..n])
        };
        match written {
            Ok(n) if n > 0 => out.advance(n),
            _ => return false,
        }
    }
    true
}

/// [`super::bridge`] on a visitor's plain TCP socket `io`, with `second`, a second
/// descriptor of it (non-blocking), for the connection's reader to write the messages
/// from the tunnel to from its own turn (see the module documentation). No tap.
pub async fn bridge_direct<S>(
    io: S,
    second: std::net::TcpStream,
    tx: StreamSender,
    mut rx: StreamReceiver,
    max_message: usize,
) -> BridgeEnd
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let leg = Leg::Visitor;
    let halves = Halves::new();
    let down_state = DirectDown { check: WsMessageCheck::new(max_message), open: true };
    let socket =
        Socket { io, wire: ws_io::encoder(leg.role()), failed: false, writes: halves.writes(), down: down_state };
    let direct = Arc::new(DirectSocket { socket: Mutex::new(socket), second });
    rx.offer_ws_direct(direct.clone());
    let socket = &direct.socket;
    let end = {
        let reader = WsDecoder::new(leg.role(), max_message);
        let mut up = std::pin::pin!(up(socket, reader, &tx, None));
        let mut down = std::pin::pin!(down_direct(&mut rx, &tx, socket));
        both_halves(&halves, up.as_mut(), down.as_mut()).await
    };
    // The reader writes nothing more (the receiver's drop takes the offer back too).
    lock(socket).down.open = false;
    rx.withdraw_ws_direct();
    end
}

/// What `down_direct` took off the stream, handled under the socket's lock.
enum Step {
    /// A message's frame was queued; true when it was written at once.
    Sent(bool),
    /// An event that is no message (nothing else belongs on an accepted WebSocket).
    Other,
    /// A message broke a rule.
    Violation(WsViolation),
    /// The peer closed its side.
    Close(u16, String),
    /// The stream was reset or the tunnel closed.
    Lost,
}

/// Tunnel → socket, for [`bridge_direct`]: `down` of [`super::bridge`], each event
/// taken off the stream and its frame queued in one hold of the socket's lock, after
/// what the reader's writes left (see the module documentation).
async fn down_direct<S>(rx: &mut StreamReceiver, tx: &StreamSender, socket: &Mutex<Socket<S>>) -> BridgeEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let step = std::future::poll_fn(|cx| {
            let mut s = lock(socket);
            if !s.wire.is_empty() {
                // A rest the reader left (it woke this half), or a pong's: first.
                ready!(s.poll_flush());
            }
            let Some(event) = ready!(rx.poll_recv_held(cx)) else {
                s.down.open = false;
                return Poll::Ready(Step::Lost);
            };
            let s = &mut *s;
            Poll::Ready(match event {
                StreamEvent::WsMessage { binary, fin, data } => match s.down.check.push(binary, fin, &data) {
                    Ok(place) => {
                        if !s.failed && !s.wire.is_closed() {
                            if data.len() < ws_codec::COPY_BELOW {
                                s.wire.fragment_copied(place.first, place.binary, fin, &data);
                            } else {
                                s.wire.fragment(place.first, place.binary, fin, data);
                            }
                        }
                        Step::Sent(s.poll_flush().is_ready())
                    }
                    Err(violation) => {
                        s.down.open = false;
                        Step::Violation(violation)
                    }
                },
                StreamEvent::WsClose { code, reason } => {
                    s.down.open = false;
                    Step::Close(code, reason)
                }
                StreamEvent::Reset { .. } => {
                    s.down.open = false;
                    Step::Lost
                }
                _ => Step::Other,
            })
        })
        .await;
        match step {
            Step::Sent(written) => {
                if !written {
                    flushed(socket).await;
                }
                rx.release_held();
            }
            Step::Other => rx.release_held(),
            Step::Violation(violation) => {
                let code = violation.close_code();
                let reason = violation.to_string();
                let _ = tx.close_ws(code, &reason);
                close(socket, code, &reason).await;
                return BridgeEnd::Closed(code);
            }
            Step::Close(code, reason) => {
                close(socket, code, &reason).await;
                return BridgeEnd::Closed(code);
            }
            // A visitor's socket is dropped (the visitor sees an abnormal closure).
            Step::Lost => return BridgeEnd::StreamLost,
        }
    }
}
