//! The time between two monotonic clock readings (`std::time::Instant`s) in
//! nanoseconds, without `Instant`'s own subtraction.
//!
//! `later.saturating_duration_since(epoch)` and its conversion to a count (`as_micros`,
//! `as_nanos`) cost ~0.055k instructions: `Timespec::sub_timespec`'s borrow and checks
//! (~37), `Duration`'s normalisation, then `u128` arithmetic. The readings that stamp a
//! session's messages and the inspector's entries are converted so once each (the
//! reader's reading of every tunnel message, the inspector's WebSocket messages and
//! response ends: docs/BENCHMARKS.md, twenty-first round, stamp). Here a reading is
//! read as the one integer it is, its clock's nanoseconds ([`nanos`]), and two readings'
//! distance is one subtraction: ~8 instructions in all, the same count to the
//! nanosecond.
//!
//! `Instant` has no accessor for its value, but it implements `Hash` (a stable trait
//! impl), and on the unix targets (a `timespec`) and on Windows (a `Duration`) its hash
//! writes two integers: whole seconds, then nanoseconds (below 10^9). [`nanos`] reads
//! them with a hasher that keeps what is written ([`Fields`]). How std writes them is
//! not a promise, so it is checked once per process ([`verified`]): an instant's hash
//! must write exactly those two integers ([`Shape`]), and instants a known distance
//! apart must read that distance. Where it fails, [`since`] subtracts as `Instant`
//! does. Safe code (the crate forbids `unsafe`), and the answer is the same either way.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// Nanoseconds from `epoch` to `at`, 0 if `at` is earlier (what
/// `at.saturating_duration_since(epoch).as_nanos()` gives, for distances under ~292
/// years).
#[inline]
pub fn since(at: Instant, epoch: Instant) -> u64 {
    if !verified() {
        return u64::try_from(at.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX);
    }
    // Modulo 2^64, so a clock whose seconds are negative subtracts right too; a
    // distance with the top bit set is `at` before `epoch`.
    let distance = nanos(at).wrapping_sub(nanos(epoch));
    if distance >> 63 == 0 {
        distance
    } else {
        0
    }
}

/// [`since`] as the core's instant on `epoch` (microseconds, rounded down: what
/// `Instant::from_elapsed(at.saturating_duration_since(epoch))` gives).
#[inline]
pub fn instant_since(at: Instant, epoch: Instant) -> localtunnels_core::Instant {
    localtunnels_core::Instant::from_micros(since(at, epoch) / 1000)
}

/// The reading `at` as its clock's nanoseconds (on the clock's own zero, modulo 2^64),
/// read off its hash; meaningful only once [`verified`].
#[inline]
fn nanos(at: Instant) -> u64 {
    let mut fields = Fields::default();
    at.hash(&mut fields);
    fields.secs.wrapping_mul(1_000_000_000).wrapping_add(u64::from(fields.nanos))
}

/// The two integers an `Instant`'s hash writes ([`Shape`] checks that it writes
/// exactly these): its seconds and its nanoseconds.
#[derive(Default)]
struct Fields {
    secs: u64,
    nanos: u32,
}

impl Hasher for Fields {
    fn finish(&self) -> u64 {
        0
    }

    fn write(&mut self, _: &[u8]) {}

    fn write_i64(&mut self, secs: i64) {
        self.secs = secs as u64;
    }

    fn write_u64(&mut self, secs: u64) {
        self.secs = secs;
    }

    fn write_u32(&mut self, nanos: u32) {
        self.nanos = nanos;
    }
}

/// What an `Instant`'s hash wrote, in order: `true` if it was one 64-bit integer then
/// one 32-bit integer below 10^9, and nothing else.
#[derive(Default)]
struct Shape {
    writes: Vec<u8>,
    nanos_ok: bool,
}

impl Shape {
    fn of(at: Instant) -> bool {
        let mut shape = Shape::default();
        at.hash(&mut shape);
        shape.writes == [64, 32] && shape.nanos_ok
    }
}

impl Hasher for Shape {
    fn finish(&self) -> u64 {
        0
    }

    fn write(&mut self, _: &[u8]) {
        self.writes.push(0);
    }

    fn write_i64(&mut self, _: i64) {
        self.writes.push(64);
    }

    fn write_u64(&mut self, _: u64) {
        self.writes.push(64);
    }

    fn write_u32(&mut self, nanos: u32) {
        self.writes.push(32);
        self.nanos_ok = nanos < 1_000_000_000;
    }
}

/// Whether [`nanos`] reads this platform's instants right: checked once per process.
#[inline]
fn verified() -> bool {
    /// Unknown, yes, no.
    static VERIFIED: AtomicU8 = AtomicU8::new(0);
    match VERIFIED.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let ok = check();
            VERIFIED.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
            ok
        }
    }
}

/// An instant's hash has the expected [`Shape`], and instants 1.234567891 s and
/// 0.999999999 s after one read those distances from it and from each other (the
/// nanoseconds' carry either way round).
#[cold]
fn check() -> bool {
    let a = Instant::now();
    let (Some(b), Some(c)) =
        (a.checked_add(Duration::new(1, 234_567_891)), a.checked_add(Duration::new(0, 999_999_999)))
    else {
        return false;
    };
    let distance = |later: Instant, earlier: Instant| nanos(later).wrapping_sub(nanos(earlier));
    [a, b, c].into_iter().all(Shape::of)
        && distance(b, a) == 1_234_567_891
        && distance(c, a) == 999_999_999
        && distance(b, c) == 234_567_892
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On this platform the readings are read as integers (the fast path is taken),
    /// and a distance is `Instant`'s own to the nanosecond, rounded down to the
    /// microsecond as the core's instant; an earlier reading is 0.
    #[test]
    fn a_distance_is_instants_own_to_the_nanosecond() {
        assert!(verified(), "std's Instant no longer hashes as seconds and nanoseconds");
        let epoch = Instant::now();
        for n in [0, 1, 999, 1_000, 999_999_999, 1_000_000_000, 1_000_000_001, 86_400_123_456_789] {
            let at = epoch + Duration::from_nanos(n);
            assert_eq!(since(at, epoch), n);
            assert_eq!(nanos(at).wrapping_sub(nanos(epoch)), n);
            let core = localtunnels_core::Instant::from_elapsed(at.saturating_duration_since(epoch));
            assert_eq!(instant_since(at, epoch), core);
        }
        let later = epoch + Duration::from_millis(5);
        assert_eq!(since(epoch, later), 0, "saturates");
        let now = Instant::now();
        assert_eq!(u128::from(since(now, epoch)), now.duration_since(epoch).as_nanos());
    }

    /// A hash of another shape is not taken for an instant's.
    #[test]
    fn other_shapes_are_not_taken_for_an_instants() {
        let shape = |f: &dyn Fn(&mut Shape)| {
            let mut s = Shape::default();
            f(&mut s);
            s.writes == [64, 32] && s.nanos_ok
        };
        assert!(shape(&|s| {
            s.write_i64(5);
            s.write_u32(7);
        }));
        assert!(Shape::of(Instant::now()));
        assert!(!shape(&|s| s.write_u32(7)), "no seconds");
        assert!(!shape(&|s| {
            s.write_u32(7);
            s.write_u64(5);
        }));
        assert!(!shape(&|s| {
            s.write_u64(5);
            s.write_u32(1_000_000_000);
        }));
        assert!(!shape(&|s| {
            s.write_u64(5);
            s.write_u32(7);
            s.write_u32(8);
        }));
        assert!(!shape(&|s| {
            s.write_u64(5);
            s.write(&[1]);
            s.write_u32(7);
        }));
    }
}
