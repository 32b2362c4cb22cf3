//! Child processes (killed on drop), what `/proc` says about them, free ports, and a
//! raw HTTP probe for readiness checks.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// A running child process. Killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Proc {
    /// Short name, for logs and reports.
    pub name: String,
    /// Its pid.
    pub pid: u32,
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    /// Starts `program args…` with stdout read line by line (also copied to
    /// `logs/<name>.out`) and stderr written to `logs/<name>.err`.
    pub fn spawn(logs: &Path, name: &str, program: &Path, args: &[&str]) -> anyhow::Result<Proc> {
        let err = std::fs::File::create(logs.join(format!("{name}.err")))?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let pid = child.id().ok_or_else(|| anyhow!("{name} exited at once"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (tx, lines) = mpsc::channel(64);
        let out_path = logs.join(format!("{name}.out"));
        // Drain stdout for the process's whole life (a full pipe would stall it);
        // keep the first lines for whoever waits on them.
        tokio::spawn(async move {
            let mut out = std::fs::File::create(out_path).ok();
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Some(f) = out.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                let _ = tx.try_send(line);
            }
        });
        Ok(Proc { name: name.to_string(), pid, child, lines })
    }

    /// The next stdout line, waiting at most `timeout`.
    pub async fn line(&mut self, timeout: Duration) -> anyhow::Result<String> {
        match tokio::time::timeout(timeout, self.lines.recv()).await {
            Ok(Some(l)) => Ok(l),
            Ok(None) => bail!("{} exited before printing a line (see its .err log)", self.name),
            Err(_) => bail!("{} printed nothing within {timeout:?}", self.name),
        }
    }

    /// Kills the process and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// Asks the process to stop (SIGTERM), waits up to `grace`, then kills it.
    pub async fn terminate(mut self, grace: Duration) {
        let _ = std::process::Command::new("kill").args(["-TERM", &self.pid.to_string()]).status();
        if tokio::time::timeout(grace, self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

/// CPU time of a process (all threads), in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTicks {
    /// In the process's own code.
    pub user: u64,
    /// In the kernel on its behalf (system calls, the TCP stack, scheduling).
    pub system: u64,
}

impl CpuTicks {
    /// User and system time together.
    pub fn total(self) -> u64 {
        self.user + self.system
    }

    /// What was spent since `earlier`.
    pub fn since(self, earlier: CpuTicks) -> CpuTicks {
        CpuTicks { user: self.user.saturating_sub(earlier.user), system: self.system.saturating_sub(earlier.system) }
    }
}

impl std::iter::Sum for CpuTicks {
    fn sum<I: Iterator<Item = CpuTicks>>(iter: I) -> CpuTicks {
        iter.fold(CpuTicks::default(), |a, b| CpuTicks { user: a.user + b.user, system: a.system + b.system })
    }
}

/// CPU time (user and system, all threads) of `pid`, from `/proc/PID/stat`.
pub fn cpu_ticks(pid: u32) -> Option<CpuTicks> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat)
}

/// `utime` and `stime` (fields 14 and 15) of a `/proc/PID/stat` line.
fn parse_cpu_ticks(stat: &str) -> Option<CpuTicks> {
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(CpuTicks { user: f.get(11)?.parse().ok()?, system: f.get(12)?.parse().ok()? })
}

/// The whole machine's CPU time, in clock ticks summed over its CPUs: how much of it
/// was idle (idle and iowait) out of all of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MachineTicks {
    /// No task ran.
    pub idle: u64,
    /// Everything: user, nice, system, idle, iowait, irq, softirq, steal.
    pub total: u64,
}

impl MachineTicks {
    /// The share of the time since `earlier` that was idle, in percent (`None` if no
    /// time passed).
    pub fn idle_percent_since(self, earlier: MachineTicks) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total).filter(|&t| t > 0)?;
        let idle = self.idle.saturating_sub(earlier.idle);
        Some(idle as f64 / total as f64 * 100.0)
    }
}

/// The machine's CPU time so far, from the `cpu` line of `/proc/stat`.
pub fn machine_ticks() -> Option<MachineTicks> {
    parse_machine_ticks(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn parse_machine_ticks(stat: &str) -> Option<MachineTicks> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line.split_whitespace().skip(1).take(8).map(|v| v.parse().ok()).collect::<Option<_>>()?;
    (f.len() == 8).then(|| MachineTicks { idle: f[3] + f[4], total: f.iter().sum() })
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
pub fn ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Resident memory of `pid` in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A port that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(StdListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// True if something accepts connections on 127.0.0.1:`port`.
pub fn listening(port: u16) -> bool {
    StdStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), Duration::from_millis(100)).is_ok()
}

/// One `GET path` on a fresh connection to 127.0.0.1:`port` with `Host: host`;
/// returns the status code, or `None` when there was no (complete) status line
/// within `timeout`. Blocking: call from `spawn_blocking` or a plain thread.
pub fn probe(port: u16, host: &str, path: &str, timeout: Duration) -> Option<u16> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = StdStream::connect_timeout(&addr, timeout).ok()?;
    let _ = s.set_nodelay(true);
    s.set_read_timeout(Some(timeout)).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => return None,
            Ok(n) => got += n,
        }
    }
    let line = std::str::from_utf8(&buf[..got]).ok()?;
    line.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Polls `probe` until it answers 200; returns how long that took. Between attempts
/// it sleeps 200 µs, which is also the resolution of the figure.
pub fn wait_for_200(port: u16, host: &str, path: &str, give_up: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while start.elapsed() < give_up {
        if probe(port, host, path, Duration::from_millis(200)) == Some(200) {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    bail!("no 200 from 127.0.0.1:{port}{path} (Host {host}) within {give_up:?}")
}

/// Async wrapper of [`wait_for_200`].
pub async fn ready(port: u16, host: &str, path: &str, give_up: Duration) -> anyhow::Result<Duration> {
    let (host, path) = (host.to_string(), path.to_string());
    tokio::task::spawn_blocking(move || wait_for_200(port, &host, &path, give_up)).await?
}

/// Finds `name` on PATH or in `~/.cargo/bin`.
pub fn which(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// Returns the path of `bin`, installing it first when missing: `cargo install
/// <krate> --locked` for cargo tools, `apt-get install -y <krate>` for apt ones.
/// Both are no-ops when already installed. `None` if it still cannot be found.
pub fn ensure_tool(bin: &str, krate: &str, apt: bool, install: bool) -> Option<PathBuf> {
    if let Some(p) = which(bin) {
        return Some(p);
    }
    if install {
        eprintln!("[bench] {bin} not found: installing {krate} ({})", if apt { "apt-get" } else { "cargo install" });
        let ok = |c: &mut std::process::Command| c.status().is_ok_and(|s| s.success());
        let done = if apt {
            ok(std::process::Command::new("apt-get").args(["install", "-y", krate]).stdout(Stdio::null()))
        } else {
            // A tool's lock file can pin a crate that no longer builds with today's
            // compiler (rathole 0.5's pins `time` 0.3.29): then let cargo resolve afresh.
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            ok(std::process::Command::new(&cargo).args(["install", krate, "--locked"]))
                || ok(std::process::Command::new(&cargo).args(["install", krate]))
        };
        if !done {
            eprintln!("[bench] installing {krate} failed");
        }
    }
    which(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_after_the_command_name() {
        // A command name may hold spaces and parentheses; utime and stime are fields 14 and 15.
        let stat = "4242 (tokio (rt) worker) S 1 4242 4242 0 -1 4194560 500 0 0 0 731 268 0 0 20 0 3 0 100";
        assert_eq!(parse_cpu_ticks(stat), Some(CpuTicks { user: 731, system: 268 }));
        assert_eq!(parse_cpu_ticks(stat).map(CpuTicks::total), Some(999));
        assert_eq!(parse_cpu_ticks("4242 (cut short) S 1"), None);
    }

    #[test]
    fn machine_ticks_count_idle_and_iowait_as_idle() {
        let stat = "cpu  100 5 50 800 20 0 25 0 0 0\ncpu0 50 2 25 400 10 0 12 0 0 0\n";
        let t = parse_machine_ticks(stat);
        assert_eq!(t, Some(MachineTicks { idle: 820, total: 1000 }));
        let later = MachineTicks { idle: 870, total: 1200 };
        assert_eq!(t.and_then(|t| later.idle_percent_since(t)), Some(25.0));
        assert_eq!(later.idle_percent_since(later), None);
        assert_eq!(parse_machine_ticks("cpu  1 2 3\n"), None);
        assert_eq!(parse_machine_ticks("intr 5\n"), None);
    }

    #[test]
    fn cpu_ticks_add_up_and_subtract() {
        let a = CpuTicks { user: 10, system: 5 };
        let b = CpuTicks { user: 25, system: 9 };
        assert_eq!([a, b].into_iter().sum::<CpuTicks>(), CpuTicks { user: 35, system: 14 });
        assert_eq!(b.since(a), CpuTicks { user: 15, system: 4 });
        assert_eq!(a.since(b), CpuTicks::default());
    }
}
