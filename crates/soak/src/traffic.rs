//! Visitors: a loop of mixed requests and WebSocket sessions against random tunnels,
//! counting what worked and what did not (some failures are expected while a
//! tunnel's client is reconnecting: 503s and cut connections).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use rand::Rng;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

type Body = BoxBody<Bytes, std::convert::Infallible>;

/// What the visitors did.
#[derive(Debug, Default)]
pub struct Counts {
    pub http_ok: AtomicU64,
    pub http_failed: AtomicU64,
    pub ws_ok: AtomicU64,
    pub ws_failed: AtomicU64,
    pub bytes: AtomicU64,
}

impl Counts {
    pub fn snapshot(&self) -> [u64; 5] {
        [&self.http_ok, &self.http_failed, &self.ws_ok, &self.ws_failed, &self.bytes].map(|c| c.load(Ordering::Relaxed))
    }
}

/// Runs one visitor until `stop` flips, picking a tunnel from `names` each time.
pub async fn visitor(
    port: u16,
    names: Arc<std::sync::Mutex<Vec<String>>>,
    counts: Arc<Counts>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    while !*stop.borrow() {
        let picked = {
            let names = names.lock().unwrap_or_else(|e| e.into_inner());
            let mut rng = rand::thread_rng();
            (!names.is_empty()).then(|| (names[rng.gen_range(0..names.len())].clone(), rng.gen_range(0..10u8)))
        };
        let Some((name, pick)) = picked else {
            let _ = tokio::time::timeout(Duration::from_millis(50), stop.changed()).await;
            continue;
        };
        let host = format!("{name}.localhost:{port}");
        let outcome = tokio::time::timeout(Duration::from_secs(30), async {
            match pick {
                0..=4 => get(&client, port, &host, 512).await,
                5..=6 => get(&client, port, &host, 256 * 1024).await,
                7 => post(&client, port, &host, 64 * 1024).await,
                _ => websocket(port, &host).await.map(|n| (n, true)),
            }
        })
        .await;
        let ws = pick >= 8;
        match outcome {
            Ok(Some((n, _))) => {
                counts.bytes.fetch_add(n, Ordering::Relaxed);
                if ws { &counts.ws_ok } else { &counts.http_ok }.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                if ws { &counts.ws_failed } else { &counts.http_failed }.fetch_add(1, Ordering::Relaxed);
                // Do not spin on a tunnel that is reconnecting.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

async fn send(client: &Client<HttpConnector, Body>, req: Request<Body>, expect: usize) -> Option<(u64, bool)> {
    let res = client.request(req).await.ok()?;
    if !res.status().is_success() {
        return None;
    }
    let body = res.into_body().collect().await.ok()?.to_bytes();
    (body.len() == expect).then_some((body.len() as u64, true))
}

async fn get(client: &Client<HttpConnector, Body>, port: u16, host: &str, n: usize) -> Option<(u64, bool)> {
    let req = Request::get(format!("http://127.0.0.1:{port}/bytes/{n}"))
        .header("host", host)
        .body(Full::new(Bytes::new()).boxed())
        .ok()?;
    send(client, req, n).await
}

async fn post(client: &Client<HttpConnector, Body>, port: u16, host: &str, n: usize) -> Option<(u64, bool)> {
    let req = Request::post(format!("http://127.0.0.1:{port}/echo"))
        .header("host", host)
        .body(Full::new(Bytes::from(vec![b'p'; n])).boxed())
        .ok()?;
    send(client, req, n).await
}

/// Opens a WebSocket through the tunnel, echoes 20 messages, closes. Bytes echoed.
async fn websocket(port: u16, host: &str) -> Option<u64> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{host}/ws"), tcp).await.ok()?;
    let mut total = 0u64;
    for i in 0..20u32 {
        let msg = if i % 2 == 0 {
            Message::Text(format!("hello {i}").into())
        } else {
            Message::Binary(vec![7u8; 4096].into())
        };
        let sent = msg.len();
        ws.send(msg).await.ok()?;
        match ws.next().await? {
            Ok(m) if m.len() == sent => total += sent as u64,
            _ => return None,
        }
    }
    let _ = ws.close(None).await;
    Some(total)
}
