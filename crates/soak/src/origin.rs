//! The soak's origin: one port answering HTTP (`/bytes/N`, POST echo) and WebSocket
//! echo (any path with an upgrade), as a tunnel client's local server.

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

type Body = BoxBody<Bytes, hyper::Error>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// Starts the origin on 127.0.0.1:0 and returns its port.
pub async fn start() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req| async move { Ok::<_, Infallible>(handle(req).await) });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Ok(port)
}

async fn handle(req: Request<Incoming>) -> Response<Body> {
    if let Some(key) = req.headers().get("sec-websocket-key").cloned() {
        let upgrade = hyper::upgrade::on(req);
        tokio::spawn(async move {
            let Ok(io) = upgrade.await else { return };
            let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None).await;
            while let Some(Ok(m)) = ws.next().await {
                if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                    break;
                }
            }
        });
        let mut res = Response::new(full(Bytes::new()));
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = res.headers_mut();
        h.insert("upgrade", "websocket".parse().expect("static"));
        h.insert("connection", "Upgrade".parse().expect("static"));
        if let Ok(v) = derive_accept_key(key.as_bytes()).parse() {
            h.insert("sec-websocket-accept", v);
        }
        return res;
    }
    if req.method() == hyper::Method::POST {
        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        return Response::new(full(body));
    }
    let n = req.uri().path().strip_prefix("/bytes/").and_then(|n| n.parse::<usize>().ok()).unwrap_or(16);
    Response::new(full(vec![b'x'; n.min(16 << 20)]))
}
