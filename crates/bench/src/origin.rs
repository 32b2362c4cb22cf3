//! The origin every target forwards to: a small hyper server run as its own process
//! (`localtunnels-bench origin`), so its CPU and memory never mix with the load
//! generators'. It prints its port on stdout, then serves:
//!
//! - `GET /1k`: 1 KiB body; `GET /1m`: 1 MiB body (both from memory, no copies);
//! - `POST /sink`: reads and discards the body, answers `ok`;
//! - `GET /ws`: a WebSocket that echoes every message.

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

/// Sizes of the two GET bodies.
pub const SMALL: usize = 1024;
/// 1 MiB.
pub const LARGE: usize = 1 << 20;

#[derive(Clone)]
struct Bodies {
    small: Bytes,
    large: Bytes,
}

/// Runs the origin until killed. Two worker threads: the machine has two cores.
pub fn run() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(serve())
}

async fn serve() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?.port());
    let bodies = Bodies { small: Bytes::from(vec![b'a'; SMALL]), large: Bytes::from(vec![b'b'; LARGE]) };
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(a) => a,
            Err(_) => continue,
        };
        let _ = tcp.set_nodelay(true);
        let bodies = bodies.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let bodies = bodies.clone();
                async move { Ok::<_, Infallible>(handle(bodies, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades()
                .await;
        });
    }
}

async fn handle(bodies: Bodies, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/1k" => Response::new(Full::new(bodies.small)),
        "/1m" => Response::new(Full::new(bodies.large)),
        "/sink" => {
            let mut body = req.into_body();
            let mut n = 0usize;
            while let Some(Ok(frame)) = body.frame().await {
                n += frame.data_ref().map_or(0, Bytes::len);
            }
            Response::new(Full::new(Bytes::from(format!("{n}"))))
        }
        "/ws" => websocket(req),
        _ => status(StatusCode::NOT_FOUND),
    }
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = code;
    res
}

/// Accepts a WebSocket upgrade and echoes every data message.
fn websocket(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let accept = derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(crate::ws::socket_config()))
                .await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_close() {
                // tungstenite queues the close reply: flush it, so the handshake ends
                // cleanly (RFC 6455 §5.5.1; Autobahn's close checks count on it).
                let _ = ws.flush().await;
                break;
            }
            if (msg.is_binary() || msg.is_text()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    let mut res = status(StatusCode::SWITCHING_PROTOCOLS);
    let h = res.headers_mut();
    h.insert(header::UPGRADE, http::HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, http::HeaderValue::from_static("upgrade"));
    if let Ok(v) = http::HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    res
}
