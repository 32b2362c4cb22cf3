//! Time as the core sees it: a point given to it by the driver.
//!
//! The core never reads a clock. Drivers pick an epoch (usually when the session was
//! created) and pass `Instant::from_micros(elapsed)`; tests pass a virtual clock.

use std::ops::{Add, AddAssign};
use std::time::Duration;

/// `d` in seconds to a tenth, as `{:.1}` prints them (`30.0`, `0.5`), without Rust's float
/// formatting: that is ~15 KB of the wasm client's .wasm for a few messages (docs/BENCHMARKS.md,
/// "Sixteenth round (session 17): memory and size").
pub(crate) fn secs_tenths(d: Duration) -> String {
    let tenths = millis(d).saturating_add(50) / 100;
    format!("{}.{}", tenths / 10, tenths % 10)
}

/// `d` in seconds to the millisecond, the shortest text (`10`, `0.5`, `1.25`), as `{}` of the
/// `f32` printed them; no float formatting (see [`secs_tenths`]).
pub(crate) fn secs_text(d: Duration) -> String {
    let ms = millis(d);
    match ms % 1000 {
        0 => format!("{}", ms / 1000),
        frac => format!("{}.{}", ms / 1000, format!("{frac:03}").trim_end_matches('0')),
    }
}

/// `d` in whole milliseconds, as a `u64` (a `u128` would bring its own formatting code).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A monotonic point in time, in microseconds since a driver-chosen epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The epoch itself.
    pub const ZERO: Instant = Instant(0);

    /// A point `micros` microseconds after the epoch.
    pub const fn from_micros(micros: u64) -> Self {
        Instant(micros)
    }

    /// A point `elapsed` after the epoch (saturating at ~584,000 years).
    pub fn from_elapsed(elapsed: Duration) -> Self {
        Instant(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX))
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(micros))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_print_as_the_float_formatting_did() {
        for ms in [0, 1, 50, 100, 500, 999, 1000, 1250, 2500, 10_000, 30_000, 45_678, 3_600_000] {
            let d = Duration::from_millis(ms);
            assert_eq!(secs_text(d), format!("{}", d.as_secs_f32()), "{ms} ms");
        }
        // Not at exact ties (x.x5 s), which `{:.1}` rounds to even and this up.
        for ms in [0, 1, 49, 100, 500, 999, 1000, 1260, 2500, 10_000, 30_000, 45_678, 3_600_000] {
            let d = Duration::from_millis(ms);
            assert_eq!(secs_tenths(d), format!("{:.1}", d.as_secs_f64()), "{ms} ms");
        }
    }
}
