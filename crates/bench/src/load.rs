//! Load generators: `wrk` for request rates (light on CPU, sound rates) and `oha` for
//! latency percentiles (wrk's are unreliable on these VMs). Either can stand in for
//! the other's rate when one is missing.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};

/// One request shape.
#[derive(Debug, Clone)]
pub struct Shot {
    /// 127.0.0.1 port to hit.
    pub port: u16,
    /// Host header.
    pub host: String,
    /// Path.
    pub path: &'static str,
    /// POST this file's content instead of a GET.
    pub post: Option<PathBuf>,
}

/// What one load run measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Requests completed.
    pub requests: u64,
    /// Requests per second.
    pub rps: f64,
    /// Median latency in seconds (oha only).
    pub p50: Option<f64>,
    /// 99th percentile latency in seconds (oha only).
    pub p99: Option<f64>,
    /// Non-2xx answers and socket errors.
    pub errors: u64,
}

/// The load tools found on this machine.
#[derive(Debug, Clone)]
pub struct Tools {
    /// wrk, for rates.
    pub wrk: Option<PathBuf>,
    /// oha, for percentiles.
    pub oha: Option<PathBuf>,
    /// wrk Lua script that turns requests into 1 MiB POSTs.
    pub post_script: PathBuf,
}

impl Tools {
    /// Requests per second with `conns` keep-alive connections for `secs`.
    pub async fn rate(&self, shot: &Shot, conns: usize, secs: u64) -> anyhow::Result<Outcome> {
        match &self.wrk {
            Some(wrk) => run_wrk(wrk, shot, conns, secs, &self.post_script).await,
            None => self.latency(shot, conns, secs).await,
        }
    }

    /// Latency percentiles (and rate) with `conns` keep-alive connections for `secs`.
    pub async fn latency(&self, shot: &Shot, conns: usize, secs: u64) -> anyhow::Result<Outcome> {
        let oha = self.oha.as_ref().ok_or_else(|| anyhow!("oha is not installed"))?;
        run_oha(oha, shot, conns, secs).await
    }
}

fn url(shot: &Shot) -> String {
    format!("http://127.0.0.1:{}{}", shot.port, shot.path)
}

async fn output(program: &Path, args: &[String]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("cannot run {}", program.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("{} failed: {}{}", program.display(), text, String::from_utf8_lossy(&out.stderr));
    }
    Ok(text)
}

async fn run_wrk(wrk: &Path, shot: &Shot, conns: usize, secs: u64, post_script: &Path) -> anyhow::Result<Outcome> {
    let threads = conns.clamp(1, 2);
    let mut args = vec![
        "-t".to_string(),
        threads.to_string(),
        "-c".into(),
        conns.to_string(),
        "-d".into(),
        format!("{}s", secs.max(1)),
        "--timeout".into(),
        "10s".into(),
        "-H".into(),
        format!("Host: {}", shot.host),
    ];
    if shot.post.is_some() {
        args.push("-s".into());
        args.push(post_script.display().to_string());
    }
    args.push(url(shot));
    let text = output(wrk, &args).await?;
    parse_wrk(&text).with_context(|| format!("unexpected wrk output:\n{text}"))
}

/// Reads `N requests in`, `Requests/sec:`, `Non-2xx or 3xx responses:` and
/// `Socket errors:` from wrk's report.
pub fn parse_wrk(text: &str) -> anyhow::Result<Outcome> {
    let mut o = Outcome::default();
    for line in text.lines().map(str::trim) {
        if let Some((n, _)) = line.split_once(" requests in ") {
            o.requests = n.trim().parse()?;
        } else if let Some(v) = line.strip_prefix("Requests/sec:") {
            o.rps = v.trim().parse()?;
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            o.errors += v.trim().parse::<u64>()?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            o.errors += v.split(',').filter_map(|p| p.split_whitespace().nth(1)?.parse::<u64>().ok()).sum::<u64>();
        }
    }
    if o.rps == 0.0 && o.requests == 0 {
        bail!("no request rate");
    }
    Ok(o)
}

async fn run_oha(oha: &Path, shot: &Shot, conns: usize, secs: u64) -> anyhow::Result<Outcome> {
    let mut args = vec![
        "--no-tui".to_string(),
        "--output-format".into(),
        "json".into(),
        "--worker-threads".into(),
        "2".into(),
        "-c".into(),
        conns.to_string(),
        "-z".into(),
        format!("{}s", secs.max(1)),
        "-t".into(),
        "10s".into(),
        "-H".into(),
        format!("Host: {}", shot.host),
    ];
    if let Some(body) = &shot.post {
        args.extend(["-m".into(), "POST".into(), "-D".into(), body.display().to_string()]);
    }
    args.push(url(shot));
    let text = output(oha, &args).await?;
    parse_oha(&text).with_context(|| format!("unexpected oha output:\n{text}"))
}

/// Reads oha's `--output-format json` report.
pub fn parse_oha(text: &str) -> anyhow::Result<Outcome> {
    let v: serde_json::Value = serde_json::from_str(text)?;
    let num = |p: &str| v.pointer(p).and_then(serde_json::Value::as_f64);
    let statuses = v.get("statusCodeDistribution").and_then(|s| s.as_object());
    let ok: u64 = statuses.and_then(|s| s.get("200")).and_then(|n| n.as_u64()).unwrap_or(0);
    let all: u64 = statuses.map(|s| s.values().filter_map(|n| n.as_u64()).sum()).unwrap_or(0);
    // Requests cut by the deadline are expected; anything else is an error.
    let errors: u64 = v
        .get("errorDistribution")
        .and_then(|e| e.as_object())
        .map(|e| e.iter().filter(|(k, _)| !k.contains("deadline")).filter_map(|(_, n)| n.as_u64()).sum())
        .unwrap_or(0);
    Ok(Outcome {
        requests: ok,
        rps: num("/summary/requestsPerSec").ok_or_else(|| anyhow!("no requestsPerSec"))?,
        p50: num("/latencyPercentiles/p50"),
        p99: num("/latencyPercentiles/p99"),
        errors: errors + (all - ok),
    })
}

/// Writes the wrk script for 1 MiB POSTs and the body file for oha into `dir`.
pub fn write_post_files(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let script = dir.join("post-1m.lua");
    std::fs::write(
        &script,
        "wrk.method = \"POST\"\nwrk.body = string.rep(\"p\", 1048576)\n\
         wrk.headers[\"Content-Type\"] = \"application/octet-stream\"\n",
    )?;
    let body = dir.join("post-1m.bin");
    std::fs::write(&body, vec![b'p'; 1 << 20])?;
    Ok((script, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_report_is_parsed() {
        let text = "Running 5s test @ http://127.0.0.1:1/1k\n  2 threads and 32 connections\n\
            \x20 123456 requests in 5.00s, 130.00MB read\n  Non-2xx or 3xx responses: 5\n\
            \x20 Socket errors: connect 0, read 2, write 0, timeout 1\nRequests/sec:  24691.20\nTransfer/sec:     26.00MB\n";
        let o = parse_wrk(text).unwrap();
        assert_eq!(o.requests, 123456);
        assert_eq!(o.errors, 8);
        assert!((o.rps - 24691.2).abs() < 1e-6);
    }

    #[test]
    fn oha_report_is_parsed() {
        let text = r#"{"summary":{"requestsPerSec":1000.5},"latencyPercentiles":{"p50":0.0001,"p99":0.002},
            "statusCodeDistribution":{"200":5000,"404":2},"errorDistribution":{"aborted due to deadline":1}}"#;
        let o = parse_oha(text).unwrap();
        assert_eq!((o.requests, o.errors), (5000, 2));
        assert_eq!(o.p99, Some(0.002));
    }
}
