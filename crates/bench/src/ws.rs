//! WebSocket echo through a target: round-trip latency of 32-byte messages on one
//! connection, and messages per second over many connections (one message in
//! flight per connection).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::HeaderValue;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;

/// Message size.
pub const PAYLOAD: usize = 32;

/// The settings of the benchmark's own WebSockets (this client and the origin's echo):
/// tungstenite zero-fills its read buffer (128 KiB by default) before every read, twice
/// per message, which cost the load generator and the origin more CPU than a message.
pub fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4096)
}

/// Opens `ws://127.0.0.1:port/ws` with `Host: host`.
pub async fn connect(port: u16, host: &str) -> anyhow::Result<Ws> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    let mut req = format!("ws://127.0.0.1:{port}/ws").into_client_request()?;
    req.headers_mut().insert(http::header::HOST, HeaderValue::from_str(host)?);
    let connect = tokio_tungstenite::client_async_with_config(req, tcp, Some(socket_config()));
    let (ws, _) = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| anyhow!("WebSocket handshake timed out"))??;
    Ok(ws)
}

async fn echo(ws: &mut Ws, payload: &Bytes) -> anyhow::Result<()> {
    ws.send(Message::Binary(payload.clone())).await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) if b.len() == payload.len() => return Ok(()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(other)) => bail!("unexpected echo {other:?}"),
            Some(Err(e)) => return Err(e.into()),
            None => bail!("the WebSocket closed"),
        }
    }
}

/// Round trips of `size`-byte messages on one connection for `secs`; returns every
/// round trip's duration.
pub async fn round_trips(port: u16, host: &str, secs: u64, size: usize) -> anyhow::Result<Vec<Duration>> {
    let mut ws = connect(port, host).await?;
    let payload = Bytes::from(vec![b'w'; size]);
    // Warm the path (first message may set things up along the way).
    echo(&mut ws, &payload).await?;
    let mut samples = Vec::new();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        let t = Instant::now();
        echo(&mut ws, &payload).await?;
        samples.push(t.elapsed());
    }
    let _ = ws.close(None).await;
    Ok(samples)
}

/// Messages per second echoed over `conns` connections for `secs`.
pub async fn rate(port: u16, host: &str, conns: usize, secs: u64) -> anyhow::Result<f64> {
    let mut sockets = Vec::with_capacity(conns);
    for _ in 0..conns {
        sockets.push(connect(port, host).await?);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(conns + 1));
    let mut tasks = Vec::with_capacity(conns);
    for mut ws in sockets {
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let payload = Bytes::from(vec![b'w'; PAYLOAD]);
            barrier.wait().await;
            let end = Instant::now() + Duration::from_secs(secs);
            let mut n = 0u64;
            while Instant::now() < end {
                echo(&mut ws, &payload).await?;
                n += 1;
            }
            let _ = ws.close(None).await;
            anyhow::Ok(n)
        }));
    }
    barrier.wait().await;
    let start = Instant::now();
    let mut total = 0u64;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}
