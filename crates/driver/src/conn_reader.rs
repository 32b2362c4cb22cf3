//! The reader task of a [`Connection`](crate::Connection): reads the socket into the
//! session and runs the stream futures the incoming handler returned, in turns. A turn
//! polls what was woken (the socket's reading, stream futures; see
//! [`crate::conn_tasks`]) and ends by writing every frame the turn produced in one
//! write (see `conn.rs`), then runs what the futures left for after that write
//! ([`crate::after_write`]).

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;

use localtunnels_core::CloseCode;
use tokio::io::AsyncRead;

use crate::conn::Shared;
use crate::conn_tasks::Tasks;
use crate::ws_codec::{WsDecoder, WsError, WsMessage};
use crate::ws_io::{self, WsReadError};

/// Runs until the socket ended and every stream future finished.
pub(crate) async fn run<R>(io: R, decoder: WsDecoder, shared: Arc<Shared>)
where
    R: AsyncRead + Unpin,
{
    // Dropped once done, with the socket's read half: stream futures that outlive the
    // socket do not keep it open.
    let mut reading = Some(Box::pin(read(io, decoder, shared.clone())));
    let mut tasks = Tasks::new();
    std::future::poll_fn(|cx| {
        tasks.begin(cx);
        shared.turn.store(true, Ordering::SeqCst);
        tasks.run(
            |cx| {
                if reading.as_mut().is_some_and(|r| r.as_mut().poll(cx).is_ready()) {
                    reading = None;
                }
            },
            // Streams the messages just read opened: they start in this turn.
            |new| shared.take_spawned(new),
        );
        // The flag is cleared before the state is locked to end the turn: a command or
        // a dropped handle that still saw it set is then in the state (or the queue of
        // dropped handles) that `write_now` reads below.
        shared.turn.store(false, Ordering::SeqCst);
        let state = shared.lock();
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
async fn read<R>(mut io: R, mut wire: WsDecoder, shared: Arc<Shared>)
where
    R: AsyncRead + Unpin,
{
    let mut lost = "the peer closed the connection".to_string();
    loop {
        let received = ws_io::read_message(&mut wire, &mut io).await;
        let mut state = shared.lock();
        if state.session.is_closed() {
            break;
        }
        match received {
            Ok(Some(WsMessage::Binary(b))) => {
                let now = shared.now();
                if let Err(e) = state.session.handle_message(now, b) {
                    tracing::debug!(error = %e, "protocol error from peer");
                }
            }
            Ok(Some(WsMessage::Text(_))) => {
                state.session.close(CloseCode::ProtocolError, "text message on the control connection");
            }
            Ok(Some(WsMessage::Close(_))) => {
                lost = "the peer closed the WebSocket".to_string();
                break;
            }
            // Answered when the turn ends (its write takes the pong).
            Ok(Some(WsMessage::Ping(payload))) => state.ws_pong = Some(payload),
            Ok(Some(WsMessage::Pong)) => {}
            Ok(None) => break,
            Err(WsReadError::Codec(WsError::TooLarge { size, max })) => {
                // A message over the frame limit, refused from its header before the
                // core saw it: the same verdict the core gives a smaller oversized frame.
                let message = format!("message over the frame limit ({size} > {max} bytes)");
                state.session.close(CloseCode::FrameTooLarge, &message);
                shared.after_command(state);
                break;
            }
            Err(WsReadError::Codec(e)) => {
                state.session.close(CloseCode::ProtocolError, &e.to_string());
                shared.after_command(state);
                break;
            }
            Err(WsReadError::Io(e)) => {
                lost = format!("connection lost: {e}");
                break;
            }
        }
        shared.after_command(state);
    }
    let mut state = shared.lock();
    if !state.session.is_closed() {
        state.session.close(CloseCode::Internal, &lost);
    }
    shared.after_command(state);
}
