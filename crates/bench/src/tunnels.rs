//! Server memory per idle tunnel: a fresh `localtunnels server`, then N control
//! sessions opened from this process (the driver's `Connection` over
//! tokio-tungstenite, as the native client does, minus its origin), then the growth
//! of the server's resident memory divided by N.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use http::HeaderValue;
use localtunnels_core::{Config, Hello, Session};
use localtunnels_driver::{ConnEvent, ConnEvents, Connection, CONTROL_PATH, SUBPROTOCOL};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::procs::rss_kib;
use crate::targets::localtunnels_server;

/// What one measurement found.
#[derive(Debug, Clone, Copy)]
pub struct TunnelMemory {
    /// Server RSS before any tunnel, KiB.
    pub base_kib: u64,
    /// Server RSS with N idle tunnels, KiB.
    pub loaded_kib: u64,
    /// (loaded - base) / N, KiB.
    pub per_tunnel_kib: f64,
    /// Seconds it took to connect them all.
    pub connect_secs: f64,
}

/// An open idle tunnel. Kept alive (heartbeats answered) until dropped and closed.
struct Idle {
    conn: Connection,
    _events: ConnEvents,
}

async fn open(port: u16, name: String) -> anyhow::Result<Idle> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    let mut req = format!("ws://127.0.0.1:{port}{CONTROL_PATH}").into_client_request()?;
    req.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static(SUBPROTOCOL));
    let ws = localtunnels_driver::ws_io::client_upgrade(tcp, req).await.map_err(anyhow::Error::msg)?;
    let hello = Hello { name, client_kind: "bench".into(), client_version: "0".into(), ..Hello::default() };
    let session = Session::client(Config::default(), hello, localtunnels_core::Instant::ZERO);
    let (conn, mut events) = Connection::start(session, ws, std::time::Instant::now());
    loop {
        match events.recv().await {
            Some(ConnEvent::Welcome(_)) => return Ok(Idle { conn, _events: events }),
            Some(ConnEvent::Refused { message, .. }) => bail!("refused: {message}"),
            Some(ConnEvent::Closed { message, .. }) => bail!("closed: {message}"),
            None => bail!("connection lost during the handshake"),
            Some(_) => {}
        }
    }
}

/// Measures a fresh server with `n` idle tunnels.
pub async fn measure(bin: &Path, logs: &Path, n: usize) -> anyhow::Result<TunnelMemory> {
    let max = (n + 16).to_string();
    let (server, port) =
        localtunnels_server(bin, logs, &format!("lt-idle-{n}"), &["--max-tunnels", &max, "--max-tunnels-per-ip", &max])
            .await?;
    // One tunnel up and down first, so lazily created server state is in the base.
    drop(open(port, "warmup".into()).await?);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base_kib = rss_kib(server.pid).ok_or_else(|| anyhow!("no RSS for the server"))?;
    let started = std::time::Instant::now();
    let gate = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            open(port, format!("idle{i}")).await
        }));
    }
    let mut idle = Vec::with_capacity(n);
    for t in tasks {
        idle.push(t.await??);
    }
    let connect_secs = started.elapsed().as_secs_f64();
    // Let the server settle (handshake buffers freed) before reading its RSS.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let loaded_kib = rss_kib(server.pid).ok_or_else(|| anyhow!("no RSS for the server"))?;
    for t in &idle {
        t.conn.close(localtunnels_core::CloseCode::Shutdown, "benchmark done");
    }
    server.stop().await;
    drop(idle);
    let per_tunnel_kib = loaded_kib.saturating_sub(base_kib) as f64 / n as f64;
    Ok(TunnelMemory { base_kib, loaded_kib, per_tunnel_kib, connect_secs })
}
