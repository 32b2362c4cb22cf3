//! The write side of a [`Connection`](crate::Connection): the [`Outbox`] (the socket's
//! write half and the bytes encoded for it), which any task may write without waiting,
//! and the writer task, which takes over when a write would wait. See the module
//! documentation of `conn.rs` for who writes when.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Buf;
use localtunnels_core::{CloseCode, Frame, Instant, Session};
use tokio::io::AsyncWrite;

use crate::conn::Shared;
use crate::lazy_deadline::LazyDeadline;
use crate::ws_codec::{WsEncoder, COPY_BELOW};

/// Bytes of frames encoded and handed to the socket per write.
const WRITE_BATCH: usize = 256 * 1024;

/// Slices per vectored write: a batch of large frames is two slices a frame (the
/// head, the payload as it is); small frames are copied together into one.
const MAX_SLICES: usize = 32;

/// How long the writer tries to hand the last frames and the WebSocket close to a
/// peer before it drops the socket.
const CLOSE_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

/// The socket's write half and what is encoded for it.
pub(crate) struct Outbox {
    io: Pin<Box<dyn AsyncWrite + Send>>,
    wire: WsEncoder,
    /// Bytes were written that no flush has pushed yet (a TLS layer may hold some).
    unflushed: bool,
    /// The socket failed: nothing more is written; the writer closes the session.
    failed: bool,
    /// The last lone head frame `fill` encoded (an OPEN, a RESPONSE), kept to be
    /// dropped after the write ([`Outbox::drop_spent`]) rather than before it.
    spent: Option<Frame>,
}

impl Outbox {
    pub(crate) fn new(io: Pin<Box<dyn AsyncWrite + Send>>, wire: WsEncoder) -> Outbox {
        Outbox { io, wire, unflushed: false, failed: false, spent: None }
    }

    /// The encoder, to queue frames on.
    pub(crate) fn wire(&mut self) -> &mut WsEncoder {
        &mut self.wire
    }

    /// An earlier write is unfinished (or failed): the writer task owns the socket
    /// until it is done.
    pub(crate) fn busy(&self) -> bool {
        !self.wire.is_empty() || self.unflushed || self.failed
    }

    /// Encodes the session's queued frames, up to a batch: draining everything could
    /// encode a whole session window (8 MiB) of copies at once.
    /// Each message is encoded straight into the encoder's buffer after its WebSocket
    /// header; a large payload (`COPY_BELOW`) stays apart, written as it is (a server)
    /// or masked in place (a client).
    pub(crate) fn fill(&mut self, session: &mut Session) {
        let mut batch = 0;
        while batch < WRITE_BATCH {
            let Some(message) = session.poll_message() else { break };
            let len = message.len();
            batch += len;
            let spent = &mut self.spent;
            self.wire.binary_with(len, |out| session.encode_message_spent(message, out, COPY_BELOW, spent));
            // Mostly one message (a lone OPEN, a batch): asking for another would walk
            // the session's queues for nothing.
            if !session.has_transmit() {
                break;
            }
        }
    }

    /// Drops the head frame `fill` kept (its header list and strings): after the write,
    /// so that the peer gets the frame without waiting for the frees.
    pub(crate) fn drop_spent(&mut self) {
        self.spent = None;
    }

    /// Writes and flushes what is queued as far as the socket takes it now; true if
    /// all of it went. What is left stays queued for the writer task, which must then
    /// be woken (the socket holds no waker of its own for this attempt).
    pub(crate) fn write_without_waiting(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        matches!(self.poll_write_out(&mut cx), Poll::Ready(Ok(())))
    }

    /// Writes and flushes everything queued.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.failed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let r = self.poll_write_inner(cx);
        if let Poll::Ready(Err(_)) = r {
            self.failed = true;
        }
        r
    }

    fn poll_write_inner(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.wire.is_empty() {
            let mut out = self.wire.transmit();
            // As tokio's `write_all_buf`: one vectored write of many frames when the
            // socket takes it; a plain one when the frames are in one piece (small
            // frames, copied together).
            let n = if out.chunk().len() < out.remaining() && self.io.is_write_vectored() {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let count = out.chunks_vectored(&mut slices);
                std::task::ready!(self.io.as_mut().poll_write_vectored(cx, &slices[..count]))?
            } else {
                std::task::ready!(self.io.as_mut().poll_write(cx, out.chunk()))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            out.advance(n);
            self.unflushed = true;
        }
        if self.unflushed {
            std::task::ready!(self.io.as_mut().poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }
}

/// Polls the outbox's write under its lock, which is held only for the poll.
fn poll_flush(shared: &Shared, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    lock_out(shared).poll_write_out(cx)
}

fn lock_out(shared: &Shared) -> MutexGuard<'_, Outbox> {
    shared.out.lock().unwrap_or_else(|e| e.into_inner())
}

/// The writer task: sends what the other tasks could not write without waiting, runs
/// the session's timer, and sends the close.
pub(crate) async fn run(shared: Arc<Shared>) {
    // One timer for the connection's life, moved only when the session's next
    // deadline changes (a new one per wake-up cost a timer-wheel insert and removal),
    // and lazily: the deadline mostly moves later (each ping, each message received).
    let mut timer: Option<LazyDeadline> = None;
    let mut timer_at: Option<Instant> = None;
    loop {
        let notified = shared.wake_writer.notified();
        let (deadline, closed, busy) = {
            let mut state = shared.lock();
            let mut out = lock_out(&shared);
            shared.reap_dropped(&mut state, out.wire());
            // Nothing more while an earlier batch is still unwritten (a write the peer
            // stalled, interrupted below).
            if !out.busy() {
                out.fill(&mut state.session);
                out.drop_spent();
                // The writer's frames wait for other work: their finished streams go at once.
                state.session.remove_finished();
            }
            shared.pump(&mut state);
            let deadline = state.session.poll_timeout();
            state.armed = deadline;
            (deadline, state.session.is_closed(), out.busy())
        };
        if busy {
            // Written at once as a rule. A peer that does not read stalls the write: the
            // session's timers and commands still run meanwhile (the write resumes where
            // it stopped), so that its unanswered pings, or a close, end the session
            // instead of leaving this task waiting on the socket for good.
            let flushed = {
                let mut notified = std::pin::pin!(notified);
                let mut armed = false;
                std::future::poll_fn(|cx| {
                    if let Poll::Ready(r) = poll_flush(&shared, cx) {
                        return Poll::Ready(Some(r));
                    }
                    if !armed {
                        armed = true;
                        if let Some(at) = deadline {
                            arm(&mut timer, &mut timer_at, at, shared.now());
                        }
                    }
                    if notified.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(None);
                    }
                    match &mut timer {
                        Some(t) if deadline.is_some() => t.poll_expired(cx).map(|()| {
                            timer_at = None;
                            None
                        }),
                        _ => Poll::Pending,
                    }
                })
                .await
            };
            match flushed {
                Some(Ok(())) => {}
                Some(Err(_)) => {
                    let mut state = shared.lock();
                    state.session.close(CloseCode::Internal, "could not write to the connection");
                    shared.pump(&mut state);
                    break;
                }
                None => {
                    let mut state = shared.lock();
                    if timer_at.is_none() {
                        let now = shared.now();
                        state.session.handle_timeout(now);
                        shared.pump(&mut state);
                    }
                    if state.session.is_closed() {
                        // The peer is not reading: what is left unwritten is dropped
                        // with the socket.
                        break;
                    }
                }
            }
            continue;
        }
        if closed {
            break;
        }
        match deadline {
            Some(at) => {
                arm(&mut timer, &mut timer_at, at, shared.now());
                let mut notified = std::pin::pin!(notified);
                let fired = std::future::poll_fn(|cx| {
                    if notified.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(false);
                    }
                    match &mut timer {
                        Some(t) => t.poll_expired(cx).map(|()| true),
                        None => Poll::Pending,
                    }
                })
                .await;
                if fired {
                    timer_at = None;
                    let mut state = shared.lock();
                    let now = shared.now();
                    state.session.handle_timeout(now);
                    shared.pump(&mut state);
                }
            }
            None => notified.await,
        }
    }
    // The session's last frames (its CLOSE, with the code and reason) follow whatever
    // is still unwritten, then the WebSocket close. A peer that does not read gets a
    // bounded wait for them, not an endless one.
    {
        let mut state = shared.lock();
        let mut out = lock_out(&shared);
        out.fill(&mut state.session);
        out.drop_spent();
        out.wire.close(1000);
    }
    let _ = crate::timers::timeout(CLOSE_FLUSH, async {
        let _ = std::future::poll_fn(|cx| poll_flush(&shared, cx)).await;
        let _ = std::future::poll_fn(|cx| lock_out(&shared).io.as_mut().poll_shutdown(cx)).await;
    })
    .await;
}

/// Sets the writer's timer for the session instant `at`, if it is not set for it yet.
fn arm(timer: &mut Option<LazyDeadline>, timer_at: &mut Option<Instant>, at: Instant, now: Instant) {
    if *timer_at != Some(at) {
        let wait = at.saturating_duration_since(now);
        let tokio_at = tokio::time::Instant::now() + wait;
        match timer {
            Some(t) => t.set(tokio_at),
            none => *none = Some(LazyDeadline::new(tokio_at)),
        }
        *timer_at = Some(at);
    }
}
