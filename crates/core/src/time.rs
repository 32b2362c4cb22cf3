//! Time as the core sees it: a point given to it by the driver.
//!
//! The core never reads a clock. Drivers pick an epoch (usually when the session was
//! created) and pass `Instant::from_micros(elapsed)`; tests pass a virtual clock.

use std::ops::{Add, AddAssign};
use std::time::Duration;

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
