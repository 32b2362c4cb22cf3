//! Reconnect delays: exponential backoff with full jitter.
//!
//! After the `n`th failed attempt in a row the client waits a random time between 0 and
//! `min(cap, base * 2^(n-1))` ("full jitter", as in the AWS architecture blog's
//! *Exponential Backoff And Jitter*): many clients dropped by one server restart then
//! come back spread out instead of all at once.

/// The first ceiling, in milliseconds.
pub(crate) const BASE_MS: f64 = 500.0;

/// The ceiling of the delay before attempt `attempt` (1-based), in milliseconds.
pub(crate) fn ceiling_ms(attempt: u32, cap_ms: f64) -> f64 {
    let exp = attempt.saturating_sub(1).min(30);
    (BASE_MS * f64::from(1u32 << exp)).min(cap_ms).max(0.0)
}

/// The delay before attempt `attempt`, given `random` uniform in `[0, 1)`.
pub(crate) fn delay_ms(attempt: u32, cap_ms: f64, random: f64) -> u32 {
    let random = if random.is_finite() { random.clamp(0.0, 1.0) } else { 0.0 };
    let ms = (ceiling_ms(attempt, cap_ms) * random).floor();
    // The ceiling is at most the cap, which options validation keeps below 2^31.
    ms.min(f64::from(i32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_doubles_up_to_the_cap() {
        let cap = 30_000.0;
        let ceilings: Vec<f64> = (1..=9).map(|n| ceiling_ms(n, cap)).collect();
        assert_eq!(ceilings, [500.0, 1000.0, 2000.0, 4000.0, 8000.0, 16000.0, 30000.0, 30000.0, 30000.0]);
        assert_eq!(ceiling_ms(u32::MAX, cap), cap);
        assert_eq!(ceiling_ms(0, cap), 500.0);
    }

    #[test]
    fn the_delay_is_spread_over_the_whole_range() {
        assert_eq!(delay_ms(3, 30_000.0, 0.0), 0);
        assert_eq!(delay_ms(3, 30_000.0, 0.5), 1000);
        assert_eq!(delay_ms(3, 30_000.0, 0.999_999), 1999);
        assert_eq!(delay_ms(40, 30_000.0, 0.999_999), 29_999);
        // Out-of-range randomness cannot push the delay past the ceiling.
        assert_eq!(delay_ms(1, 30_000.0, 7.0), 500);
        assert_eq!(delay_ms(1, 30_000.0, f64::NAN), 0);
    }
}
