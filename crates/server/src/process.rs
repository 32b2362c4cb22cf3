//! The `process_*` metrics of the Prometheus conventions (what the official client
//! libraries export), read from `/proc/self` at each scrape. Linux only: elsewhere only
//! the start time is exported.

use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::metrics::encode_const;

/// Clock ticks per second of `/proc/self/stat`'s CPU times: `USER_HZ`, 100 on every
/// Linux architecture we build for (reading it needs `sysconf`, an unsafe FFI call).
const TICKS_PER_SECOND: f64 = 100.0;

/// Exports the process metrics at each scrape.
#[derive(Debug)]
pub struct ProcessCollector {
    /// When the server started (the process, for the command line).
    pub start: SystemTime,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let start = self.start.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let help = "Start time of the process since unix epoch in seconds";
        encode_const(&mut encoder, "process_start_time_seconds", help, &ConstGauge::new(start))?;
        if let Some(cpu) = cpu_seconds() {
            let help = "Total user and system CPU time spent in seconds";
            encode_const(&mut encoder, "process_cpu_seconds", help, &ConstCounter::new(cpu))?;
        }
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        if let Some(kib) = status_kib(&status, "VmRSS:") {
            let help = "Resident memory size in bytes";
            encode_const(&mut encoder, "process_resident_memory_bytes", help, &gauge(kib * 1024))?;
        }
        if let Some(kib) = status_kib(&status, "VmSize:") {
            let help = "Virtual memory size in bytes";
            encode_const(&mut encoder, "process_virtual_memory_bytes", help, &gauge(kib * 1024))?;
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            let help = "Number of open file descriptors";
            encode_const(&mut encoder, "process_open_fds", help, &gauge(fds.count() as u64))?;
        }
        if let Some(max) = max_fds() {
            let help = "Maximum number of open file descriptors";
            encode_const(&mut encoder, "process_max_fds", help, &gauge(max))?;
        }
        Ok(())
    }
}

fn gauge(n: u64) -> ConstGauge<i64> {
    ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
}

/// utime + stime from `/proc/self/stat` (fields 14 and 15, counted after the
/// parenthesised command name, which may itself hold spaces).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime.saturating_add(stime) as f64 / TICKS_PER_SECOND)
}

/// A `Key:   1234 kB` line of `/proc/self/status`.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn max_fds() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}
