//! Wall-clock times as RFC 3339 text, computed (the core reads no clock).

/// `2026-12-05T20:31:07.123456789Z` for a time in nanoseconds since the Unix epoch.
pub fn rfc3339(unix_nanos: u64) -> String {
    let secs = unix_nanos / 1_000_000_000;
    let nanos = unix_nanos % 1_000_000_000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z", rem / 3600, (rem / 60) % 60, rem % 60)
}

/// Year, month and day of the `days`-th day after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn formats_known_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        // 2014-07-24T19:35:55.927316979Z, ngrok's documented example.
        assert_eq!(rfc3339(1_406_230_555_927_316_979), "2014-07-24T19:35:55.927316979Z");
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00.000000000Z");
    }
}
