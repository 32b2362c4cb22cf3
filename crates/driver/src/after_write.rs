//! Work the peer does not wait for, run after the write that ends a reader's turn.
//!
//! A connection's reader task writes the frames its turn produced when the turn ends
//! (see `conn.rs`). Whatever a stream future still does in the poll that queued its
//! answer (the inspector's capture, dropping the exchange's state, returning a stream)
//! delays that write; done after it, it overlaps the peer's work instead. A stream
//! future the reader runs (see [`Connection::on_incoming`](crate::Connection::on_incoming))
//! awaits [`after_write`] where what follows can wait: it yields, and the reader polls
//! it again right after its write, in the same turn (nothing else runs in between).
//! Anywhere else (a spawned task, the server's visitors, after the write) it is ready
//! at once. The state is thread-local: a reader's turn runs on one thread, and the only
//! futures it polls then are its own.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

thread_local! {
    /// A reader task on this thread is polling its futures before its turn's write.
    static BEFORE_WRITE: Cell<bool> = const { Cell::new(false) };
    /// The stream future being polled yielded until after the write.
    static YIELDED: Cell<bool> = const { Cell::new(false) };
    /// The stream future being polled is the only one its reader runs.
    static ALONE: Cell<bool> = const { Cell::new(false) };
}

/// Resolves after the write that ends the current turn of the connection's reader
/// task, if a reader is polling this future before that write; at once otherwise.
///
/// Await it only in the stream future itself, not inside a combinator that polls only
/// the futures it was woken for (`FuturesUnordered`, a bridge's halves): the yield
/// wakes nothing, the reader polls the stream future again by itself.
pub fn after_write() -> AfterWrite {
    AfterWrite(())
}

/// Whether work put after the write with [`after_write`] pays here: the future is
/// polled before its reader's write and is the only stream future that reader runs
/// (one exchange in flight on the connection: its answer's latency is the request's).
///
/// With other stream futures in flight, what each puts off runs after the write
/// outside the turn: its clean-up (a handle dropped then) takes the state lock again
/// and wakes the writer for the streams still open, and the future is polled twice.
/// That costs more than it moves (the inspector's filing: +0.24k instructions per
/// request at 32 connections, docs/BENCHMARKS.md, sixteenth round), and the
/// connection is busy, so its rate (the work per request) matters more than one
/// request's latency: do the work at once. False outside a reader's turn, where
/// [`after_write`] is ready at once.
pub fn pays() -> bool {
    BEFORE_WRITE.get() && ALONE.get()
}

/// Marks the stream future about to be polled as its reader's only one, or not
/// (see [`pays`]).
pub(crate) fn set_alone(alone: bool) {
    ALONE.set(alone);
}

/// [`after_write`]'s future.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct AfterWrite(());

impl Future for AfterWrite {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        // Polled again before the write (a wake-up in the same turn), it yields again.
        if BEFORE_WRITE.get() {
            YIELDED.set(true);
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }
}

/// Marks the polls before a turn's write, until dropped (a panic included).
pub(crate) struct BeforeWrite(());

impl BeforeWrite {
    pub(crate) fn enter() -> BeforeWrite {
        BEFORE_WRITE.set(true);
        BeforeWrite(())
    }
}

impl Drop for BeforeWrite {
    fn drop(&mut self) {
        BEFORE_WRITE.set(false);
    }
}

/// The future just polled yielded with [`after_write`] (the mark is cleared).
pub(crate) fn take_yielded() -> bool {
    YIELDED.replace(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_turn_it_is_ready_at_once() {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert_eq!(std::pin::pin!(after_write()).poll(&mut cx), Poll::Ready(()));
        assert!(!take_yielded());
    }

    #[test]
    fn before_the_write_it_yields_and_after_it_is_ready() {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut fut = std::pin::pin!(after_write());
        {
            let _turn = BeforeWrite::enter();
            assert_eq!(fut.as_mut().poll(&mut cx), Poll::Pending);
            assert!(take_yielded() && !take_yielded());
            // Polled again before the write, it yields again.
            assert_eq!(fut.as_mut().poll(&mut cx), Poll::Pending);
            assert!(take_yielded());
        }
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(()));
        assert!(!take_yielded());
    }
}
