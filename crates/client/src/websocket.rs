//! Tunneled WebSockets on the client: bridged to a WebSocket on the origin.
//!
//! The visitor's upgrade request is replayed to the origin (same path and query,
//! offered subprotocols, cookies and other end-to-end headers; Host per the
//! [`HostHeader`](crate::HostHeader) policy) with this leg's own key, over a new
//! connection from [`Origin::connect_stream`](crate::Origin::connect_stream) (`ws://`,
//! or `wss://` for an HTTPS origin). The handshake runs over hyper, so a refusal
//! reaches the visitor whole: status, headers and body.
//! On 101 the origin's answer (chosen subprotocol, cookies) goes back and the socket is
//! bridged to the stream.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::TokioIo;
use localtunnels_core::{Header, RequestHead, ResetCode, ResponseHead, StreamKind};
use localtunnels_driver::http::{final_status, header_map, response_head};
use localtunnels_driver::websocket::{bridge_tapped, BridgeEnd, Leg, WsTap};
use localtunnels_driver::ws_io::take_upgraded;
use localtunnels_driver::{pump_body, StreamHandle, StreamSender};
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tracing::debug;

use crate::ctx::Ctx;
use crate::events::ClientEvent;
use crate::inspect::WsRecorder;
use crate::origin::{ConnectFuture, OriginStream};

/// Serves one WebSocket stream.
pub(crate) async fn serve(ctx: Arc<Ctx>, stream: StreamHandle, head: RequestHead) {
    let started = Instant::now();
    let (tx, rx) = stream.split();
    let (method, path) = (head.method.clone(), head.target.clone());
    ctx.emit(ClientEvent::Request { method: method.to_string(), path: path.clone() });
    let (Some(authority), Some(connect)) = (ctx.origin.authority(), ctx.origin.connect_stream()) else {
        let why = "this origin takes no WebSockets (in-process services do not, yet)";
        return refuse(&tx, StatusCode::NOT_IMPLEMENTED, why).await;
    };
    let key = generate_key();
    let req = match origin_request(&ctx, &head, &key) {
        Ok(r) => r,
        Err(message) => return tx.reset(ResetCode::Protocol, &message),
    };
    let recorder = ctx.config.inspector.as_ref().map(|i| {
        let headers: Vec<Header> = req.headers().iter().map(|(n, v)| (n.clone(), v.clone())).collect();
        WsRecorder::new(i, i.begin(&method, &path, &headers, true))
    });
    let mut res = match handshake(connect, req).await {
        Ok(res) => res,
        Err(cause) => {
            if let Some(r) = &recorder {
                r.inspector.update(r.id, |s, now| s.fail(r.id, now, &cause));
            }
            let message = if cause.contains("refused") {
                format!("{authority}: {cause} (is the local server running?)")
            } else {
                format!("{authority}: {cause}")
            };
            ctx.error(message.clone());
            return tx.reset(ResetCode::OriginUnreachable, &message);
        }
    };
    let status = res.status();
    if let Some(r) = &recorder {
        let headers: Vec<Header> = res.headers().iter().map(|(n, v)| (n.clone(), v.clone())).collect();
        r.inspector.update(r.id, |s, _| s.respond(r.id, status.as_u16(), &headers));
    }
    let report = |ctx: &Ctx| {
        let duration = started.elapsed();
        let status = status.as_u16();
        ctx.emit(ClientEvent::Response { method: method.to_string(), path: path.clone(), status, duration, bytes: 0 });
    };
    if status != StatusCode::SWITCHING_PROTOCOLS {
        // A refusal is a final response: 200-599 (hyper skipped any interim ones).
        if let Err(e) = final_status(status.as_u16(), StreamKind::Http) {
            let message = format!("{method} {path}: the origin's handshake answer was refused: {e}");
            ctx.emit(ClientEvent::Error { message: message.clone() });
            return tx.reset(ResetCode::Protocol, &message);
        }
        report(&ctx);
        forward_refusal(&tx, res).await;
        if let Some(r) = &recorder {
            r.closed(None);
        }
        return;
    }
    if let Err(message) = check_accept(&res, &key, &head) {
        ctx.error(format!("{method} {path}: {message}"));
        return tx.reset(ResetCode::Protocol, &message);
    }
    let upgraded = match hyper::upgrade::on(&mut res).await {
        Ok(u) => u,
        Err(e) => return tx.reset(ResetCode::OriginUnreachable, &format!("{authority}: upgrade failed: {e}")),
    };
    // The origin's socket itself, out of hyper's hands (the handshake ran over
    // `TokioIo<OriginStream>`, so this always succeeds).
    let Ok(upgraded) = take_upgraded::<OriginStream>(upgraded) else {
        return tx.reset(ResetCode::Internal, &format!("{authority}: upgrade failed: the socket stayed with hyper"));
    };
    let max = ctx.config.max_ws_message;
    let answer =
        ResponseHead { status: 101, headers: response_head(status, res.headers(), StreamKind::WebSocket).headers };
    if tx.respond(answer, false).is_err() {
        return; // The visitor left meanwhile; dropping the socket closes it.
    }
    report(&ctx);
    let tap = recorder.as_ref().map(|r| r as &dyn WsTap);
    let end = bridge_tapped(upgraded, tx, rx, Leg::Origin, max, tap).await;
    if let Some(r) = &recorder {
        r.closed(match end {
            BridgeEnd::Closed(code) => Some(code),
            _ => None,
        });
    }
    debug!(?end, %path, "origin WebSocket ended");
}

/// The upgrade request for the origin: the visitor's end-to-end headers and this
/// leg's handshake headers.
fn origin_request(ctx: &Ctx, head: &RequestHead, key: &str) -> Result<Request<Empty<Bytes>>, String> {
    let mut req = Request::new(Empty::new());
    *req.uri_mut() = head.target.parse().map_err(|_| format!("invalid target {}", head.target))?;
    let headers = req.headers_mut();
    *headers = header_map(&head.headers);
    crate::forward::one_host(headers.get_all(header::HOST).iter().count())?;
    if let Some(host) = ctx.host_for_origin() {
        headers.insert(header::HOST, host.clone());
    }
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    headers.insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_str(key).map_err(|e| e.to_string())?);
    Ok(req)
}

/// Sends the upgrade request on a fresh connection to the origin (plain or TLS).
async fn handshake(connect: ConnectFuture, req: Request<Empty<Bytes>>) -> Result<Response<Incoming>, String> {
    let io = connect.await.map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        // Ends when the connection is upgraded (handing the socket over) or closed.
        let _ = conn.with_upgrades().await;
    });
    sender.send_request(req).await.map_err(|e| e.to_string())
}

/// Checks the origin's 101: its accept key matches ours, and any subprotocol it
/// chose is one the visitor offered.
fn check_accept(res: &Response<Incoming>, key: &str, head: &RequestHead) -> Result<(), String> {
    let accept = res.headers().get(header::SEC_WEBSOCKET_ACCEPT).map(|v| v.as_bytes());
    if accept != Some(derive_accept_key(key.as_bytes()).as_bytes()) {
        return Err("the origin's WebSocket handshake has a wrong Sec-WebSocket-Accept".into());
    }
    let Some(chosen) = res.headers().get(header::SEC_WEBSOCKET_PROTOCOL) else { return Ok(()) };
    let chosen = chosen.to_str().unwrap_or_default().trim();
    let offered = head
        .headers
        .iter()
        .filter(|(n, _)| n == header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|(_, v)| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == chosen);
    if offered {
        Ok(())
    } else {
        Err(format!("the origin chose the subprotocol '{chosen}', which the visitor did not offer"))
    }
}

/// The origin refused the upgrade: its status, headers and body go back.
async fn forward_refusal(tx: &StreamSender, res: Response<Incoming>) {
    let (parts, body) = res.into_parts();
    let end = body.is_end_stream();
    if tx.respond(response_head(parts.status, &parts.headers, StreamKind::WebSocket), end).is_ok() && !end {
        let _ = pump_body(body, tx).await;
    }
}

/// Refuses the upgrade here with `status` and a one-line body.
async fn refuse(tx: &StreamSender, status: StatusCode, message: &str) {
    let headers = vec![(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))];
    if tx.respond(ResponseHead { status: status.as_u16(), headers }, false).is_ok()
        && tx.send_data(Bytes::from(format!("{message}\n"))).await.is_ok()
    {
        let _ = tx.finish();
    }
}
