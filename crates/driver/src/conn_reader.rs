//! The reader task of a [`Connection`](crate::Connection): reads the socket into the
//! session and runs the stream futures the incoming handler returned, in turns. A turn
//! polls what was woken (the socket's reading, stream futures; see
//! [`crate::conn_tasks`]) and ends by writing every frame the turn produced in one
//! write (see `conn.rs`), then runs what the futures left for after that write
//! ([`crate::after_write`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use localtunnels_core::CloseCode;
use tokio::io::AsyncRead;

use crate::conn::Shared;
use crate::conn_tasks::{Tasks, Wakeups};
use crate::turn_clock;
use crate::ws_codec::{WsDecoder, WsError, WsMessage};
use crate::ws_io::{self, WsReadError};

/// The reader sizes its buffers for the frames coming ([`WsDecoder::set_frame_sized`])
/// while the payload bytes its streams hold unreleased
/// ([`localtunnels_core::Session::received_held`]), plus [`PINNED_PER_STREAM`] for
/// each live stream, come to at most this: one stream's whole window (1 MiB, the
/// default) and one frame. Sized, a run of 64 KiB frames is read one frame to a buffer,
/// nothing copied (a 1 MiB response at one connection ~0.63M -> ~0.41M instructions
/// on the server); but a payload keeps its whole buffer alive while it waits for its
/// visitor, and a small one (a response's first piece) can keep a 64 KiB buffer made
/// for a large frame. Past the bound the reader takes the usual 16 KiB reads, whose
/// copies give each large frame an allocation of its size, so that under a load the
/// visitors cannot keep up with (32 x 1 MiB) the peak RSS stays the baseline's
/// (docs/BENCHMARKS.md, twenty-fourth round, flowbuf). Nothing is read later or more
/// slowly for it: a slow visitor holds back only its own stream, by its window.
const SIZED_WHILE_HELD: u64 = 1024 * 1024 + 64 * 1024;

/// What each live stream is counted to pin in frame-sized buffers beyond its bytes
/// (see [`SIZED_WHILE_HELD`]): one frame's buffer, kept by its oldest piece.
const PINNED_PER_STREAM: u64 = 64 * 1024;

/// Messages from this size on refresh the decoder's [`WsDecoder::set_frame_sized`];
/// smaller ones (a 1 KiB exchange's) leave it as it was, for ~10 instructions less
/// each. The switch sizes a buffer only after a frame of 64 KiB (the decoder's
/// `SIZED_FROM`), whose message refreshed it; for smaller frames it only lets a frame's
/// rest be read into the room its buffer has left, which allocates nothing.
const SIZED_CHECK_FROM: usize = 16 * 1024;

/// Runs until the socket ended and every stream future finished.
pub(crate) async fn run<R>(io: R, decoder: WsDecoder, shared: Arc<Shared>)
where
    R: AsyncRead + Unpin,
{
    let mut tasks = Tasks::new();
    // Dropped once done, with the socket's read half: stream futures that outlive the
    // socket do not keep it open.
    let mut reading = Some(Reading {
        io,
        wire: decoder,
        shared: shared.clone(),
        wakeups: tasks.wakeups(),
        handled: false,
        later: false,
    });
    std::future::poll_fn(|cx| {
        tasks.begin(cx);
        shared.turn.store(true, Ordering::SeqCst);
        let clock = turn_clock::Turn::enter();
        tasks.run(
            |cx| match reading.as_mut() {
                Some(r) => {
                    if r.poll(cx).is_ready() {
                        reading = None;
                        return false;
                    }
                    std::mem::take(&mut r.later)
                }
                None => false,
            },
            // Streams the messages just read opened: they start in this turn.
            |new| shared.take_spawned(new),
        );
        // The flag is cleared before the state is locked to end the turn: a command or
        // a dropped handle that still saw it set is then in the state (or the queue of
        // dropped handles) that `write_now` reads below.
        shared.turn.store(false, Ordering::SeqCst);
        let mut state = shared.lock();
        // What the turn's WebSocket bridges released, granted before the write.
        shared.take_turn_release(&mut state);
        let closed = state.session.is_closed();
        let mut wake = closed || crate::conn::timer_earlier(&state);
        if !closed && shared.has_output(&state) {
            wake |= shared.write_now(state);
        } else {
            drop(state);
        }
        if wake {
            shared.wake_writer.notify_one();
        }
        // What the stream futures left for after the write (`crate::after_write`): it
        // overlaps the peer's work instead of delaying the write. Outside the turn
        // (`turn` is clear), what it sends or drops is written or applied at once.
        if tasks.has_after() {
            tasks.run_after();
        }
        // The turn's clock readings (`crate::turn_clock`) serve its work after the
        // write too: a response's filing there takes the reading its connection's
        // return to the pool took.
        drop(clock);
        tasks.end();
        if reading.is_none() && tasks.live() == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

/// Reads the socket into the session until it ends; then closes the session.
///
/// After a message that opened a stream run on this task, or woke one (a request's
/// body, a bridged WebSocket message), when the decoder holds no whole message more,
/// the socket is polled again only after those streams ran in the turn (`later` tells
/// [`Tasks::run`] so): the stream's work (the request's write to the origin) then does
/// not wait for that poll, which usually finds the socket empty (~0.2k instructions:
/// tokio's readiness check and the read that would block; docs/BENCHMARKS.md,
/// fifteenth round). The poll still comes in the same turn, before its write. A poll
/// method rather than an `async fn`: returning between the message and the socket's
/// poll suspends and resumes the future once more per request, which an async state
/// machine makes dearer.
struct Reading<R> {
    io: R,
    wire: WsDecoder,
    shared: Arc<Shared>,
    wakeups: Arc<Wakeups>,
    /// A message was handled since the last poll of the socket.
    handled: bool,
    /// The last poll put the socket's poll off until after the streams.
    later: bool,
}

impl<R: AsyncRead + Unpin> Reading<R> {
    /// `Ready` once the socket ended and the session is closed.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let shared = &self.shared;
        loop {
            let received =
                if std::mem::take(&mut self.handled) && (shared.spawned_waiting() || self.wakeups.stream_queued()) {
                    match self.wire.poll_message() {
                        Ok(Some(message)) => Ok(Some(message)),
                        Ok(None) => {
                            // Polled again in the turn's next round, after the streams.
                            self.later = true;
                            return Poll::Pending;
                        }
                        Err(e) => Err(e.into()),
                    }
                } else {
                    match ws_io::poll_read_message(&mut self.wire, &mut self.io, cx) {
                        Poll::Ready(received) => received,
                        Poll::Pending => return Poll::Pending,
                    }
                };
            self.handled = true;
            let mut state = shared.lock();
            if state.session.is_closed() {
                drop(state);
                return self.close("the peer closed the connection");
            }
            match received {
                Ok(Some(WsMessage::Binary(b))) => {
                    // Kept for the streams this turn starts (`crate::turn_clock`).
                    let now = shared.read_clock();
                    let large = b.len() >= SIZED_CHECK_FROM;
                    if let Err(e) = state.session.handle_message(now, b) {
                        tracing::debug!(error = %e, "protocol error from peer");
                    }
                    if large {
                        // What the streams hold now sizes the next buffer the reader makes.
                        let session = &state.session;
                        let pinned = (session.stream_count() as u64).saturating_mul(PINNED_PER_STREAM);
                        let held = session.received_held().saturating_add(pinned);
                        self.wire.set_frame_sized(held <= SIZED_WHILE_HELD);
                    }
                    // The streams the message finished are removed after its events.
                    shared.after_message(state);
                    continue;
                }
                Ok(Some(WsMessage::Text(_))) => {
                    state.session.close(CloseCode::ProtocolError, "text message on the control connection");
                }
                Ok(Some(WsMessage::Close(_))) => {
                    drop(state);
                    return self.close("the peer closed the WebSocket");
                }
                // Answered when the turn ends (its write takes the pong).
                Ok(Some(WsMessage::Ping(payload))) => state.ws_pong = Some(payload),
                Ok(Some(WsMessage::Pong)) => {}
                Ok(None) => {
                    drop(state);
                    return self.close("the peer closed the connection");
                }
                Err(WsReadError::Codec(WsError::TooLarge { size, max })) => {
                    // A message over the frame limit, refused from its header before the
                    // core saw it: the same verdict the core gives a smaller oversized frame.
                    let message = format!("message over the frame limit ({size} > {max} bytes)");
                    state.session.close(CloseCode::FrameTooLarge, &message);
                    shared.after_command(state);
                    return self.close("the peer closed the connection");
                }
                Err(WsReadError::Codec(e)) => {
                    state.session.close(CloseCode::ProtocolError, &e.to_string());
                    shared.after_command(state);
                    return self.close("the peer closed the connection");
                }
                Err(WsReadError::Io(e)) => {
                    drop(state);
                    return self.close(&format!("connection lost: {e}"));
                }
            }
            shared.after_command(state);
        }
    }

    /// The socket ended (`lost` says how): closes the session if nothing closed it yet.
    fn close(&self, lost: &str) -> Poll<()> {
        let mut state = self.shared.lock();
        if !state.session.is_closed() {
            state.session.close(CloseCode::Internal, lost);
        }
        self.shared.after_command(state);
        Poll::Ready(())
    }
}
