//! `localtunnels-soak`: runs a `localtunnels server` process and pushes mixed HTTP and
//! WebSocket traffic through it for a while, with tunnel clients whose links are cut
//! (they reconnect by themselves) and tunnels that come and go, and prints the
//! server's resident memory and open file descriptors over time. Not part of CI.
//!
//! ```sh
//! cargo build --release -p localtunnels -p localtunnels-soak
//! target/release/localtunnels-soak --minutes 10
//! ```

#![forbid(unsafe_code)]

mod origin;
mod traffic;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use localtunnels_client::{ClientConfig, TunnelClient};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Soak a localtunnels server with mixed traffic and reconnecting clients.
#[derive(Debug, Parser)]
struct Args {
    /// How long to run.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Tunnel clients that stay (their links get cut and they reconnect).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Concurrent visitors.
    #[arg(long, default_value_t = 16)]
    visitors: usize,
    /// Seconds between cuts of every stable client's link.
    #[arg(long, default_value_t = 20)]
    cut_every: u64,
    /// Seconds between replacing the short-lived tunnel with a new one (new name).
    #[arg(long, default_value_t = 5)]
    churn_every: u64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10)]
    sample_every: u64,
    /// The `localtunnels` binary [default: next to this one].
    #[arg(long)]
    server_bin: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = match &args.server_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("localtunnels"),
    };
    let mut server = tokio::process::Command::new(&bin)
        .args(["server", "--port", "0", "--bind", "127.0.0.1", "--grace-period", "30"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {} (build it first: cargo build --release)", bin.display()))?;
    let pid = server.id().context("server pid")?;
    let mut lines = BufReader::new(server.stdout.take().context("server stdout")?).lines();
    let url = lines.next_line().await?.context("the server printed no URL")?;
    let port: u16 = url.rsplit(':').next().and_then(|p| p.parse().ok()).context("no port in the server's URL")?;
    let server_addr = SocketAddr::from(([127, 0, 0, 1], port));
    println!("server pid {pid} at {url}; {} min, {} clients, {} visitors", args.minutes, args.clients, args.visitors);

    let origin_port = origin::start().await?;
    let (cut, cut_rx) = watch::channel(0u64);
    let relay = relay(server_addr, cut_rx).await?;
    let names = Arc::new(Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for i in 0..args.clients {
        let config = ClientConfig {
            server: Some(format!("http://{relay}")),
            local_host: "127.0.0.1".into(),
            local_port: origin_port,
            subdomain: Some(format!("soak-{i}")),
            max_backoff: Duration::from_secs(2),
            ..ClientConfig::default()
        };
        let handle = TunnelClient::new(config).connect().await?;
        names.lock().unwrap_or_else(|e| e.into_inner()).push(handle.name().to_string());
        clients.push(handle);
    }

    let counts = Arc::new(traffic::Counts::default());
    let (stop, stop_rx) = watch::channel(false);
    let mut visitors = Vec::new();
    for _ in 0..args.visitors {
        visitors.push(tokio::spawn(traffic::visitor(port, names.clone(), counts.clone(), stop_rx.clone())));
    }

    let started = Instant::now();
    let total = Duration::from_secs_f64(args.minutes * 60.0);
    let mut samples: Vec<(f64, u64, usize)> = Vec::new();
    let mut churn: Option<localtunnels_client::ClientHandle> = None;
    let (mut churned, mut cuts) = (0u64, 0u64);
    let mut next_cut = Duration::from_secs(args.cut_every);
    let mut next_churn = Duration::ZERO;
    let mut next_sample = Duration::ZERO;
    println!(
        "{:>7} {:>9} {:>5} {:>7} {:>9} {:>7} {:>7} {:>7} {:>9} {:>5} {:>6}",
        "secs", "rss_kib", "fds", "tunnels", "http_ok", "http_x", "ws_ok", "ws_x", "MiB", "cuts", "churn"
    );
    while started.elapsed() < total {
        let now = started.elapsed();
        if now >= next_cut {
            cut.send_modify(|n| *n += 1);
            cuts += 1;
            next_cut += Duration::from_secs(args.cut_every);
        }
        if now >= next_churn {
            if let Some(old) = churn.take() {
                let name = old.name().to_string();
                names.lock().unwrap_or_else(|e| e.into_inner()).retain(|n| *n != name);
                old.close().await;
            }
            let config = ClientConfig {
                server: Some(format!("http://{server_addr}")),
                local_host: "127.0.0.1".into(),
                local_port: origin_port,
                subdomain: Some(format!("churn-{churned}")),
                ..ClientConfig::default()
            };
            if let Ok(handle) = TunnelClient::new(config).connect().await {
                names.lock().unwrap_or_else(|e| e.into_inner()).push(handle.name().to_string());
                churn = Some(handle);
            }
            churned += 1;
            next_churn += Duration::from_secs(args.churn_every);
        }
        if now >= next_sample {
            let (rss, fds) = (rss_kib(pid), fd_count(pid));
            let tunnels = tunnels(port).await;
            let [http_ok, http_x, ws_ok, ws_x, bytes] = counts.snapshot();
            println!(
                "{:>7.0} {rss:>9} {fds:>5} {tunnels:>7} {http_ok:>9} {http_x:>7} {ws_ok:>7} {ws_x:>7} {:>9.1} {cuts:>5} {churned:>6}",
                now.as_secs_f64(),
                bytes as f64 / (1 << 20) as f64
            );
            samples.push((now.as_secs_f64(), rss, fds));
            next_sample += Duration::from_secs(args.sample_every);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let _ = stop.send(true);
    for v in visitors {
        let _ = v.await;
    }
    for c in clients.into_iter().chain(churn) {
        c.close().await;
    }
    // Once everyone left, what does the server hold on to?
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss, fds) = (rss_kib(pid), fd_count(pid));
    println!("after all clients and visitors left: rss {rss} KiB, fds {fds}");
    summarize(&samples);
    let _ = server.start_kill();
    let _ = server.wait().await;
    Ok(())
}

/// Memory: the largest RSS of each third of the run; a plateau means the last third
/// grows less than 10% over the middle one.
fn summarize(samples: &[(f64, u64, usize)]) {
    if samples.len() < 6 {
        println!("too few samples to judge a plateau; run longer");
        return;
    }
    let third = samples.len() / 3;
    let max = |s: &[(f64, u64, usize)]| s.iter().map(|x| x.1).max().unwrap_or(0);
    let (first, middle, last) = (max(&samples[..third]), max(&samples[third..2 * third]), max(&samples[2 * third..]));
    let fds = |s: &[(f64, u64, usize)]| s.iter().map(|x| x.2).max().unwrap_or(0);
    println!(
        "peak rss by third: {first} / {middle} / {last} KiB; peak fds by third: {} / {} / {}",
        fds(&samples[..third]),
        fds(&samples[third..2 * third]),
        fds(&samples[2 * third..])
    );
    let growth = (last as f64 - middle as f64) / middle.max(1) as f64 * 100.0;
    let verdict = if growth <= 10.0 { "plateau" } else { "STILL GROWING" };
    println!("memory: {verdict} ({growth:+.1}% last third over middle third)");
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Tunnels the server reports in `/api/status`.
async fn tunnels(port: u16) -> usize {
    let fetch = async {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.ok()?;
        tokio::spawn(conn);
        let req = hyper::Request::get("/api/status")
            .header("host", format!("localhost:{port}"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .ok()?;
        let res = sender.send_request(req).await.ok()?;
        let body = http_body_util::BodyExt::collect(res.into_body()).await.ok()?.to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).ok()?;
        match &json["tunnels"] {
            serde_json::Value::Array(a) => Some(a.len()),
            v => v.as_u64().and_then(|n| usize::try_from(n).ok()),
        }
    };
    tokio::time::timeout(Duration::from_secs(5), fetch).await.ok().flatten().unwrap_or(0)
}

/// A relay to `target` that drops every open connection when `cut` changes, so the
/// clients behind it reconnect.
async fn relay(target: SocketAddr, cut: watch::Receiver<u64>) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let mut cut = cut.clone();
            cut.mark_unchanged();
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = cut.changed() => {}
                }
            });
        }
    });
    Ok(addr)
}
