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
//!
//! [`now`] is the same for the clock reads a turn's streams make for their own ends
//! (the origin connection's return to the pool, the inspector's filing of a response:
//! both after the write of the turn woken by the origin's answer): the first reads the
//! clock, the others in the turn take its reading (~0.05k instructions per request).
//!
//! [`turn_since`] gives the turn's reading as the reader's session took it (the
//! connection's epoch and the microseconds since it): a stamp on that epoch (the client's
//! inspector's, whose epoch the client's connections share, for an entry's start) is that
//! instant, with no conversion of the reading of its own (~0.05k instructions per request).

use std::cell::Cell;
use std::time::Instant;

/// A reader's reading: the clock, its connection's epoch and the session's instant for
/// the clock on that epoch.
type Reading = (Instant, Instant, localtunnels_core::Instant);

thread_local! {
    /// The clock as the reader on this thread read it in its current turn, with the
    /// session's instant for it (one cell: set once per message, forgotten at once).
    static NOW: Cell<Option<Reading>> = const { Cell::new(None) };
    /// The clock as [`now`] first read it in the current turn.
    static LATER: Cell<Option<Instant>> = const { Cell::new(None) };
    /// A reader's turn (its work after the write included) is running on this thread.
    static IN_TURN: Cell<bool> = const { Cell::new(false) };
}

/// The clock as the reader task polling this future read it in its current turn, if
/// it did (a turn that read a message); `None` anywhere else (then read the clock).
pub fn turn_instant() -> Option<Instant> {
    NOW.get().map(|(at, _, _)| at)
}

/// The turn's reading ([`turn_instant`]) as the reader's session took it, when there is
/// one: the connection's epoch and the session's instant for the reading (microseconds
/// from that epoch, rounded down).
pub fn turn_since() -> Option<(Instant, localtunnels_core::Instant)> {
    NOW.get().map(|(_, epoch, since)| (epoch, since))
}

/// The clock for a stream's step in a reader's turn (its work after the write
/// included): read by the first call after the turn's start or its last message's
/// reading, that reading for the calls after it; anywhere else the clock now. Never
/// before the message's reading ([`turn_instant`]): an exchange begun at it and ended
/// in the same turn (an origin that answered at once) ends after it. At most the
/// turn's length early, for stamps of microseconds and timeouts of seconds.
pub fn now() -> Instant {
    if let Some(at) = LATER.get() {
        return at;
    }
    let now = Instant::now();
    if IN_TURN.get() {
        LATER.set(Some(now));
    }
    now
}

/// The clock now, kept for the rest of the turn, as the instant of a session whose
/// connection started at `epoch`. Called by the reader's reading only, which runs inside
/// a [`Turn`].
pub(crate) fn read_since(epoch: Instant) -> localtunnels_core::Instant {
    let now = Instant::now();
    // `Instant::from_elapsed(now.saturating_duration_since(epoch))`, ~0.05k instructions
    // fewer (`crate::mono_nanos`).
    let at = crate::mono_nanos::instant_since(now, epoch);
    NOW.set(Some((now, epoch, at)));
    // A step after this message (its exchange's end) reads the clock after it: an
    // entry begun at this reading never ends before it.
    LATER.set(None);
    at
}

/// The clock now, kept for the rest of the turn ([`read_since`] on an epoch of now: the
/// tests' reading).
#[cfg(test)]
pub(crate) fn read() -> Instant {
    read_since(Instant::now());
    turn_instant().unwrap_or_else(Instant::now)
}

/// Marks a reader's turn, until dropped (a panic included): the reading kept in it is
/// forgotten then.
pub(crate) struct Turn(());

impl Turn {
    pub(crate) fn enter() -> Turn {
        NOW.set(None);
        LATER.set(None);
        IN_TURN.set(true);
        Turn(())
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        NOW.set(None);
        LATER.set(None);
        IN_TURN.set(false);
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

    /// A reading for a session is kept with its epoch and its instant for the rest of
    /// the turn (a later reading's in place of it); the turn's end forgets them.
    #[test]
    fn a_readings_session_instant_is_kept_with_its_epoch() {
        let epoch = Instant::now();
        assert_eq!(turn_since(), None);
        let turn = Turn::enter();
        let at = read_since(epoch);
        assert_eq!(turn_since(), Some((epoch, at)));
        let reading = turn_instant().unwrap();
        assert_eq!(at, localtunnels_core::Instant::from_elapsed(reading.saturating_duration_since(epoch)));
        let later = Instant::now();
        let again = read_since(later);
        assert_eq!(turn_since(), Some((later, again)), "the last reading's");
        drop(turn);
        assert_eq!((turn_since(), turn_instant()), (None, None));
    }

    /// `now` reads the clock once per turn, after the message's reading if any, and
    /// every time outside a turn.
    #[test]
    fn now_is_one_reading_per_turn_and_the_clock_outside() {
        // Waits (spinning) until the clock has moved past `at`.
        let past = |at: Instant| while Instant::now() <= at {};
        let (a, b) = (now(), now());
        assert!(b >= a);
        let turn = Turn::enter();
        let message = read();
        let first = now();
        assert!(first >= message);
        past(first);
        assert_eq!(now(), first, "the turn's reading");
        // A message read later in the turn: the next step reads the clock after it.
        let second = read();
        assert!(second > first);
        assert!(now() >= second);
        let first = now();
        drop(turn);
        let outside = now();
        assert!(outside > first, "a reading of its own outside the turn");
        past(outside);
        assert!(now() > outside);
        let _next = Turn::enter();
        assert!(now() > outside, "a new turn reads again");
    }
}
