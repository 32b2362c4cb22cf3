//! Bridging a real WebSocket and a tunnel stream: the server runs it on the visitor's
//! socket, the client on the origin's.
//!
//! Two halves run at once, so that neither direction's wait for credit can stall the
//! other:
//! - **up** (socket → tunnel): each message read from the socket is sent whole with
//!   [`StreamSender::send_ws`], which waits for credit, so a peer that stops reading
//!   stops this socket from being read too. A close frame is relayed with its code and
//!   reason; a socket that drops without one resets the stream (`Cancel`).
//! - **down** (tunnel → socket): each fragment is checked ([`WsMessageCheck`]: size,
//!   UTF-8 across fragments) and written as a WebSocket frame before the next event is
//!   read, so a socket that stops reading holds at most the stream window plus one
//!   fragment here; its credit goes back to the peer once it is written, so the
//!   write is not kept waiting for the session's lock. A relayed close becomes a close frame; a reset drops the visitor's
//!   socket (the visitor sees an abnormal closure, 1006) or closes towards the origin
//!   with 1001.
//!
//! Pings are answered here and never cross the tunnel, nor do pongs.
//!
//! Each half is polled only when something it waits on woke it ([`Halves`]): a message
//! from the tunnel polls `down` alone, without a read of the socket that would find
//! nothing. Both halves write to the one socket, which keeps one waker per direction, so
//! every socket write or flush is polled with a waker that wakes both halves; only
//! `up` reads it.
//!
//! The framing is [`crate::ws_codec`]'s, the control connection's own, rather than
//! tungstenite's, which zero-fills its read buffer before every read (docs/BENCHMARKS.md).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::task::AtomicWaker;

use localtunnels_core::{ws_close, ResetCode, Role, WsMessageCheck};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::stream::{StreamEvent, StreamReceiver, StreamSender};
use crate::ws_codec::{self, WsDecoder, WsEncoder, WsError, WsMessage};
use crate::ws_io::{self, WsReadError};

pub(crate) mod direct;
pub use direct::bridge_direct;

/// How long one side of a bridge waits for the other side's close once it has closed.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which real WebSocket a bridge runs on; it decides what a reset turns into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    /// The visitor's socket on the server: a reset drops it (abnormal closure).
    Visitor,
    /// The origin's socket on the client: a reset closes it with 1001.
    Origin,
}

impl Leg {
    /// This end's WebSocket role on the leg: the server accepted the visitor's socket,
    /// the client opened the origin's.
    fn role(self) -> Role {
        match self {
            Leg::Visitor => Role::Server,
            Leg::Origin => Role::Client,
        }
    }
}

/// How a bridge ended, for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BridgeEnd {
    /// Closed with a close frame; the code is the first close seen.
    Closed(u16),
    /// The socket dropped without a close; the stream was reset.
    SocketLost(String),
    /// The stream was reset or the tunnel closed.
    StreamLost,
}

/// The socket and what goes out on it, shared by both halves of the bridge (`up`
/// reads and answers pings and closes, `down` relays messages). Both run in one task
/// and lock it only inside a poll, never across an `await`: the lock is never
/// contended (a tokio `Mutex` and `tokio::io::split`'s lock cost a few hundred
/// instructions per message, docs/BENCHMARKS.md).
struct Socket<S> {
    io: S,
    wire: WsEncoder,
    /// A write failed: the socket closed or broke (the reading half sees why), and
    /// nothing more is written to it.
    failed: bool,
    /// Wakes both halves: every write and flush is polled with it (see the module
    /// documentation).
    writes: Waker,
    /// What `down` and the tunnel's reader share when the reader may write messages
    /// to the socket itself ([`bridge_direct`]); unused otherwise.
    down: direct::DirectDown,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Socket<S> {
    /// Writes out what is queued; `Ready` once it is all written or a write failed.
    fn poll_flush(&mut self) -> Poll<()> {
        if self.failed {
            return Poll::Ready(());
        }
        let mut cx = Context::from_waker(&self.writes);
        if ready!(ws_io::poll_write_all(&mut self.wire, &mut self.io, &mut cx)).is_err() {
            self.failed = true;
        }
        Poll::Ready(())
    }
}

/// Half `up`'s bit in [`Woken`].
const UP: u8 = 1;
/// Half `down`'s bit in [`Woken`].
const DOWN: u8 = 2;

/// Which halves were woken since they were last polled, and the task to wake.
struct Woken {
    halves: AtomicU8,
    task: AtomicWaker,
}

/// Marks its halves woken and wakes the bridge's task.
struct HalfWaker {
    woken: Arc<Woken>,
    halves: u8,
}

impl Wake for HalfWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.halves.fetch_or(self.halves, Ordering::AcqRel);
        self.woken.task.wake();
    }
}

/// Polls the two halves of a bridge, each only when one of its wakers fired: `up`'s
/// (credit for the stream, the socket's reads), `down`'s (the stream's events), or the
/// socket writes' waker, which wakes both.
struct Halves {
    woken: Arc<Woken>,
    up: Waker,
    down: Waker,
}

impl Halves {
    fn new() -> Halves {
        let woken = Arc::new(Woken { halves: AtomicU8::new(UP | DOWN), task: AtomicWaker::new() });
        let waker = |halves| Waker::from(Arc::new(HalfWaker { woken: woken.clone(), halves }));
        Halves { up: waker(UP), down: waker(DOWN), woken }
    }

    /// The waker of the socket's writes: it wakes both halves.
    fn writes(&self) -> Waker {
        Waker::from(Arc::new(HalfWaker { woken: self.woken.clone(), halves: UP | DOWN }))
    }

    /// Polls the woken ones of `halves` (a half that is `None` is done); the first
    /// result, with the half it came from (`UP` or `DOWN`).
    fn poll<T>(
        &self,
        cx: &mut Context<'_>,
        up: Option<Pin<&mut (impl Future<Output = T> + ?Sized)>>,
        down: Option<Pin<&mut (impl Future<Output = T> + ?Sized)>>,
    ) -> Poll<(u8, T)> {
        // Registered before the marks are taken: a wake-up after the swap wakes the task.
        self.woken.task.register(cx.waker());
        let woken = self.woken.halves.swap(0, Ordering::AcqRel);
        if let Some(up) = up.filter(|_| woken & UP != 0) {
            if let Poll::Ready(end) = up.poll(&mut Context::from_waker(&self.up)) {
                // `down` was not polled: its wake-up stays for the next poll.
                self.woken.halves.fetch_or(woken & DOWN, Ordering::AcqRel);
                return Poll::Ready((UP, end));
            }
        }
        if let Some(down) = down.filter(|_| woken & DOWN != 0) {
            if let Poll::Ready(end) = down.poll(&mut Context::from_waker(&self.down)) {
                return Poll::Ready((DOWN, end));
            }
        }
        Poll::Pending
    }
}

/// Locks the socket (never contended, see [`Socket`]).
fn lock<S>(socket: &Mutex<Socket<S>>) -> MutexGuard<'_, Socket<S>> {
    socket.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends what `queue` puts in the socket's encoder, unless a close already went out
/// (nothing may follow it, RFC 6455 §5.5.1) or a write failed; returns once it is
/// written.
async fn send<S: AsyncRead + AsyncWrite + Unpin>(socket: &Mutex<Socket<S>>, queue: impl FnOnce(&mut WsEncoder)) {
    if !write_now(socket, queue) {
        flushed(socket).await;
    }
}

/// The part of [`send`] that does not wait: queues and writes what the socket takes at
/// once (usually all of it); `false` if some of it waits for [`flushed`].
fn write_now<S: AsyncRead + AsyncWrite + Unpin>(socket: &Mutex<Socket<S>>, queue: impl FnOnce(&mut WsEncoder)) -> bool {
    let mut s = lock(socket);
    if s.failed || s.wire.is_closed() {
        return true;
    }
    queue(&mut s.wire);
    // The usual write goes at once, under the same lock.
    s.poll_flush().is_ready()
}

/// Resolves once what is queued on the socket is written (or a write failed).
async fn flushed<S: AsyncRead + AsyncWrite + Unpin>(socket: &Mutex<Socket<S>>) {
    std::future::poll_fn(|_| lock(socket).poll_flush()).await;
}

/// Sends a close frame for `code` (codes that may not be sent, 1005, 1006, 1015,
/// ..., give a close without a code), once.
async fn close<S: AsyncRead + AsyncWrite + Unpin>(socket: &Mutex<Socket<S>>, code: u16, reason: &str) {
    let code = ws_close::sendable(code).then_some(code);
    send(socket, |w| w.close_with(code, reason)).await;
}

/// Sees the messages a bridge relays (the client's request inspector records them).
pub trait WsTap: Send + Sync {
    /// A message, or a later fragment of one (`first` false), went by; `from_socket`:
    /// read from the bridge's socket (else written to it).
    fn message(&self, from_socket: bool, binary: bool, first: bool, data: &[u8]);
}

/// Bridges the WebSocket on `io` (after its handshake) and the stream (`tx`, `rx`)
/// until both sides closed, either side vanished, or [`CLOSE_TIMEOUT`] passed after one
/// side closed. Messages larger than `max_message` close both sides with 1009.
pub async fn bridge<S>(io: S, tx: StreamSender, rx: StreamReceiver, leg: Leg, max_message: usize) -> BridgeEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    bridge_tapped(io, tx, rx, leg, max_message, None).await
}

/// [`bridge`], with `tap` seeing every message relayed either way.
pub async fn bridge_tapped<S>(
    io: S,
    tx: StreamSender,
    mut rx: StreamReceiver,
    leg: Leg,
    max_message: usize,
    tap: Option<&dyn WsTap>,
) -> BridgeEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let halves = Halves::new();
    let socket = Mutex::new(Socket {
        io,
        wire: ws_io::encoder(leg.role()),
        failed: false,
        writes: halves.writes(),
        down: direct::DirectDown::closed(),
    });
    let reader = WsDecoder::new(leg.role(), max_message);
    let mut up = std::pin::pin!(up(&socket, reader, &tx, tap));
    let mut down = std::pin::pin!(down(&mut rx, &tx, &socket, leg, max_message, tap));
    both_halves(&halves, up.as_mut(), down.as_mut()).await
}

/// Polls `up` and `down` until one ends; after a close, the other one too, still under
/// the same wakers, until it closes (within [`CLOSE_TIMEOUT`]). The end of the first.
async fn both_halves(
    halves: &Halves,
    up: Pin<&mut impl Future<Output = BridgeEnd>>,
    down: Pin<&mut impl Future<Output = BridgeEnd>>,
) -> BridgeEnd {
    let (mut up, mut down) = (Some(up), Some(down));
    let (first, end) =
        std::future::poll_fn(|cx| halves.poll(cx, up.as_mut().map(|f| f.as_mut()), down.as_mut().map(|f| f.as_mut())))
            .await;
    if matches!(end, BridgeEnd::Closed(_)) {
        // The other half, still under the same wakers, until it closes too.
        if first == UP {
            up = None;
        } else {
            down = None;
        }
        let rest = std::future::poll_fn(|cx| {
            halves.poll(cx, up.as_mut().map(|f| f.as_mut()), down.as_mut().map(|f| f.as_mut()))
        });
        let _ = crate::timers::timeout(CLOSE_TIMEOUT, rest).await;
    }
    end
}

/// Socket → tunnel.
async fn up<S>(
    socket: &Mutex<Socket<S>>,
    mut reader: WsDecoder,
    tx: &StreamSender,
    tap: Option<&dyn WsTap>,
) -> BridgeEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        // Messages are relayed as they are read, under the one lock of the socket the
        // read took, until the read waits (the usual message: one lock for its read and
        // the read after it that finds nothing, not two). A message comes out of this
        // poll only if its credit was short: then it is the rest, left to `send_ws`.
        // A failed send means the stream is gone or this side already closed it:
        // `down` learns why; keep reading so the socket's close is still seen.
        let read = std::future::poll_fn(|cx| {
            let mut s = lock(socket);
            loop {
                let (binary, data) = match ready!(ws_io::poll_read_message(&mut reader, &mut s.io, cx)) {
                    Ok(Some(WsMessage::Binary(data))) => (true, data),
                    Ok(Some(WsMessage::Text(data))) => (false, data),
                    other => return Poll::Ready(other),
                };
                if let Some(rest) = relay(tx, binary, data, tap) {
                    let rest = if binary { WsMessage::Binary(rest) } else { WsMessage::Text(rest) };
                    return Poll::Ready(Ok(Some(rest)));
                }
            }
        })
        .await;
        match read {
            Ok(Some(WsMessage::Binary(rest))) => {
                let _ = tx.send_ws(true, rest).await;
            }
            Ok(Some(WsMessage::Text(rest))) => {
                let _ = tx.send_ws(false, rest).await;
            }
            Ok(Some(WsMessage::Ping(payload))) => send(socket, |w| w.pong(payload)).await,
            Ok(Some(WsMessage::Pong)) => {}
            Ok(Some(WsMessage::Close(frame))) => {
                // A code that may not be sent is the peer's protocol error (as
                // tungstenite answered it); the close is relayed and answered (unless
                // it answers ours), which ends the handshake on this socket.
                let (code, reason) = match frame {
                    None => (ws_close::NO_STATUS, String::new()),
                    Some((code, reason)) if ws_close::sendable(code) => (code, reason),
                    Some(_) => (ws_close::PROTOCOL, "Protocol violation".to_string()),
                };
                // Fails only if this side of the stream already ended (a violation
                // closed it, or it was reset): nothing left to tell.
                let _ = tx.close_ws(code, &reason);
                close(socket, code, &reason).await;
                return BridgeEnd::Closed(code);
            }
            Ok(None) => return socket_lost("the connection ended", tx),
            Err(e) => return socket_failed(e, tx, socket).await,
        }
    }
}

/// Sends what the credit takes of a message read from the socket into the stream,
/// then shows the message to `tap`; the rest, if any, for [`StreamSender::send_ws`].
/// The message is usually written to the tunnel by `try_send_ws` itself (see there), so
/// the tap's record, which the peer does not wait for, follows that write; it comes
/// before any wait for credit, so a message is recorded even if the bridge ends during
/// that wait, and in the order the socket gave it.
fn relay(tx: &StreamSender, binary: bool, mut data: Bytes, tap: Option<&dyn WsTap>) -> Option<Bytes> {
    let sent = tx.try_send_ws(binary, &data);
    if let Some(tap) = tap {
        tap.message(true, binary, true, &data);
    }
    // A failed send means the stream is gone or this side already closed it (see `up`).
    let n = sent.ok()?;
    data.advance(n);
    (!data.is_empty()).then_some(data)
}

/// The socket broke the protocol or vanished: close both ways with the matching code,
/// or reset the stream if the socket is simply gone.
async fn socket_failed<S>(e: WsReadError, tx: &StreamSender, socket: &Mutex<Socket<S>>) -> BridgeEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (code, reason) = match &e {
        WsReadError::Codec(WsError::TooLarge { .. }) => (ws_close::TOO_BIG, "message too big".to_string()),
        WsReadError::Codec(WsError::Utf8(_)) => (ws_close::INVALID_DATA, e.to_string()),
        WsReadError::Codec(_) => (ws_close::PROTOCOL, "WebSocket protocol error".to_string()),
        WsReadError::Io(e) => return socket_lost(&e.to_string(), tx),
    };
    // The tunnel first: the socket may be slow to take the close frame.
    let _ = tx.close_ws(code, &reason);
    close(socket, code, &reason).await;
    BridgeEnd::Closed(code)
}

/// The socket ended without a close: the stream is reset.
fn socket_lost(why: &str, tx: &StreamSender) -> BridgeEnd {
    let message = format!("the WebSocket dropped without a close: {why}");
    tx.reset(ResetCode::Cancel, &message);
    BridgeEnd::SocketLost(message)
}

/// Tunnel → socket.
async fn down<S>(
    rx: &mut StreamReceiver,
    tx: &StreamSender,
    socket: &Mutex<Socket<S>>,
    leg: Leg,
    max_message: usize,
    tap: Option<&dyn WsTap>,
) -> BridgeEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut check = WsMessageCheck::new(max_message);
    // The last event's take left this half's waker with the stream's queue (it was the
    // last one queued), and the half has not waited since: the poll that follows the
    // event's handling would find the queue empty, so it waits without looking (see
    // `poll_recv_held_ahead`). Cleared by that poll; a wait on the socket's write
    // (another poll of the task, perhaps after the waker fired) clears it too.
    let mut waiting = false;
    loop {
        // A message's credit is released once it is written (see `poll_recv_held`):
        // after the socket's write, not on the way to it. What is held when the bridge
        // ends is released with the receiver.
        let next = std::future::poll_fn(|cx| {
            if std::mem::take(&mut waiting) {
                return Poll::Pending;
            }
            rx.poll_recv_held_ahead(cx)
        })
        .await;
        match next {
            Some((StreamEvent::WsMessage { binary, fin, data }, ahead)) => match check.push(binary, fin, &data) {
                Ok(place) => {
                    // Recorded after the socket's write (the origin does not wait for
                    // the record), before any wait for the rest of the write, so a
                    // message is recorded even if the bridge ends during that wait. A
                    // small message (the usual) is copied into the frame from here and
                    // kept for the tap, and its bytes let go of after the write and the
                    // release, not before the write (the server has no tap: ~0.03k of
                    // its echo's critical path; docs/BENCHMARKS.md, twenty-fifth round,
                    // echo); a large one goes out as its own slice, so the tap takes a
                    // second handle on its bytes.
                    let written = if data.len() < ws_codec::COPY_BELOW {
                        let written = write_now(socket, |w| w.fragment_copied(place.first, place.binary, fin, &data));
                        if let Some(tap) = tap {
                            tap.message(false, place.binary, place.first, &data);
                        }
                        written
                    } else if let Some(tap) = tap {
                        let kept = data.clone();
                        let written = write_now(socket, |w| w.fragment(place.first, place.binary, fin, data));
                        tap.message(false, place.binary, place.first, &kept);
                        written
                    } else {
                        write_now(socket, |w| w.fragment(place.first, place.binary, fin, data))
                    };
                    if written {
                        waiting = ahead;
                    } else {
                        flushed(socket).await;
                    }
                    rx.release_held();
                }
                Err(violation) => {
                    let code = violation.close_code();
                    let reason = violation.to_string();
                    let _ = tx.close_ws(code, &reason);
                    close(socket, code, &reason).await;
                    return BridgeEnd::Closed(code);
                }
            },
            Some((StreamEvent::WsClose { code, reason }, _)) => {
                close(socket, code, &reason).await;
                return BridgeEnd::Closed(code);
            }
            Some((StreamEvent::Reset { .. }, _)) | None => {
                if leg == Leg::Origin {
                    close(socket, ws_close::GOING_AWAY, "the visitor went away").await;
                    return BridgeEnd::Closed(ws_close::GOING_AWAY);
                }
                return BridgeEnd::StreamLost;
            }
            // Nothing else belongs on an accepted WebSocket (the core refuses it).
            Some((_, ahead)) => {
                rx.release_held();
                waiting = ahead;
            }
        }
    }
}
