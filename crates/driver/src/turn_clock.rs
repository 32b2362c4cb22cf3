//! One clock reading per reader turn, for what runs in that turn.
//!
//! A connection's reader reads the clock for each message it hands the session (the
//! session's idle timeout counts from it). The stream futures that message starts run
//! in the same turn, microseconds later, and some read the clock again (the client's
//! origin pool, to drop a connection idle too long): [`turn_instant`] gives them the
//! turn's reading instead (a clock read and its conversion, ~0.05k instructions per
//! request; docs/BENCHMARKS.md, fifteenth round). A deadline measured from it is the
//! turn's start, at most the turn's length early: fine for timeouts of seconds. The
//! state is thread-local, as `crate::after_write`'s: a turn runs on one thread, and the
//! only futures it polls then are its own.

use std::cell::Cell;
use std::time::Instant;

thread_local! {
    /// The clock as the reader on this thread read it in its current turn.
    static NOW: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The clock as the reader task polling this future read it in its current turn, if
/// it did (a turn that read a message); `None` anywhere else (then read the clock).
pub fn turn_instant() -> Option<Instant> {
    NOW.get()
}

/// The clock now, kept for the rest of the turn. Called by the reader's reading only,
/// which runs inside a [`Turn`].
pub(crate) fn read() -> Instant {
    let now = Instant::now();
    NOW.set(Some(now));
    now
}

/// Marks a reader's turn, until dropped (a panic included): the reading kept in it is
/// forgotten then.
pub(crate) struct Turn(());

impl Turn {
    pub(crate) fn enter() -> Turn {
        NOW.set(None);
        Turn(())
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        NOW.set(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reading is kept for the rest of its turn only: none before the reader read
    /// the clock, none after the turn (a panic in it included).
    #[test]
    fn a_turns_reading_lasts_as_long_as_the_turn() {
        assert_eq!(turn_instant(), None);
        let turn = Turn::enter();
        assert_eq!(turn_instant(), None, "no reading yet in this turn");
        let at = read();
        assert_eq!(turn_instant(), Some(at));
        drop(turn);
        assert_eq!(turn_instant(), None);
        let panicked = std::panic::catch_unwind(|| {
            let _turn = Turn::enter();
            read();
            panic!("a stream's handler panicked");
        });
        assert!(panicked.is_err());
        assert_eq!(turn_instant(), None, "forgotten when the turn unwound");
    }
}
