//! Visitor WebSockets through a tunnel.
//!
//! The visitor's upgrade request crosses the tunnel as a WebSocket stream; the client
//! opens the origin's WebSocket and answers with the origin's handshake response. On
//! 101 the server completes the visitor's handshake (its own `Sec-WebSocket-Accept`,
//! the origin's chosen subprotocol and other headers) and bridges the two; any other
//! status reaches the visitor as is, with its body. Errors before the answer are the
//! HTTP proxy's (502, 503, 504; see [`crate::exchange`]).

use std::sync::Arc;

use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use localtunnels_core::{ResetCode, StreamKind};
use localtunnels_driver::http::forwardable_response;
use localtunnels_driver::websocket::{bridge, Leg};
use localtunnels_driver::{StreamEvent, StreamReceiver, StreamSender};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tracing::{debug, info_span};

use crate::exchange::{invalid_response, open_error, reset_response, tunnel_head, visitor_response};
use crate::fields::Fields;
use crate::state::{text_response, Body, Peer, ServerState};
use crate::tunnel::Tunnel;
use crate::visitors::{Admitted, CountedBody};

/// Carries a visitor's WebSocket upgrade through `tunnel`.
pub async fn proxy<B: Send + 'static>(
    state: Arc<ServerState>,
    tunnel: Arc<Tunnel>,
    peer: Peer,
    req: Request<B>,
    admitted: Admitted,
) -> Response<Body> {
    let key = match handshake_key(req.method(), req.headers()) {
        Ok(key) => key,
        Err(res) => return *res,
    };
    let head = tunnel_head(&state, &peer, &req, StreamKind::WebSocket);
    let target = head.target.clone();
    // The opener's side stays open: messages follow an accepted upgrade.
    let stream = match tunnel.open(head, false) {
        Ok(s) => s,
        Err(e) => return open_error(&state, &tunnel.name, e),
    };
    let (tx, mut rx) = stream.split();
    let timeout = state.config.response_timeout;
    // A WebSocket's head comes as a list (the session gives blocks for HTTP streams only).
    match localtunnels_driver::timers::timeout(timeout, rx.recv()).await.map(|ev| ev.map(StreamEvent::typed)) {
        Err(_) => {
            tx.reset(ResetCode::Timeout, "no handshake answer in time");
            let secs = timeout.as_secs_f32();
            reset_response(&state, ResetCode::Timeout, &format!("no WebSocket handshake answer within {secs} s"))
        }
        Ok(Some(StreamEvent::Response { head, end })) => {
            // Checked as any response: 101 only here, where an upgrade was asked for.
            let (status, headers) = match forwardable_response(&head, StreamKind::WebSocket) {
                Ok(checked) => checked,
                Err(e) => return invalid_response(&state, &tx, e),
            };
            if status != StatusCode::SWITCHING_PROTOCOLS {
                let mut res = refused(tx, rx, status, headers, end);
                crate::cookies::for_tunnel(res.headers_mut(), &tunnel.name, &state.config.domain);
                *res.body_mut() = CountedBody::new(std::mem::take(res.body_mut()), admitted).boxed();
                return res;
            }
            let span = info_span!("websocket", tunnel = %tunnel.name, %peer, %target);
            peer.idle.disable();
            let on_upgrade = hyper::upgrade::on(req);
            let max = state.config.max_ws_message;
            // The span is entered to log, not around the bridge: entering and leaving
            // it on every poll cost ~450 instructions per message (docs/BENCHMARKS.md).
            let run = async move {
                match on_upgrade.await {
                    Ok(upgraded) => {
                        let end = bridge(TokioIo::new(upgraded), tx, rx, Leg::Visitor, max).await;
                        span.in_scope(|| debug!(?end, "visitor WebSocket ended"));
                    }
                    // The visitor left before the switch; dropping the stream resets it.
                    Err(e) => span.in_scope(|| debug!(error = %e, "visitor upgrade failed")),
                }
                // The WebSocket counted against the visitor's address while it lasted.
                drop(admitted);
            };
            tokio::spawn(run);
            let mut res = accepted(&key, headers);
            crate::cookies::for_tunnel(res.headers_mut(), &tunnel.name, &state.config.domain);
            res
        }
        Ok(Some(StreamEvent::Reset { code, message })) => reset_response(&state, code, &message),
        Ok(_) => reset_response(&state, ResetCode::Internal, "the exchange ended without a handshake answer"),
    }
}

/// Whether a request asks for a WebSocket (`Upgrade: websocket` and `Connection:
/// upgrade`, as tokens of any of their values); an HTTP/1.0 request never does (RFC
/// 9110 §7.8: its `Upgrade` is ignored). Both visitor paths route by this.
pub(crate) fn asks_websocket<F: Fields>(version: http::Version, headers: &F) -> bool {
    let token = |name, token: &str| {
        headers
            .values_of(name)
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    version != http::Version::HTTP_10 && token(&header::UPGRADE, "websocket") && token(&header::CONNECTION, "upgrade")
}

/// The visitor's `Sec-WebSocket-Key`, or the answer to a request that is not a
/// WebSocket handshake this server can complete (RFC 6455 §4.2.1).
pub(crate) fn handshake_key<F: Fields>(method: &http::Method, headers: &F) -> Result<HeaderValue, Box<Response<Body>>> {
    if method != http::Method::GET {
        return Err(Box::new(text_response(StatusCode::METHOD_NOT_ALLOWED, "a WebSocket handshake must be a GET")));
    }
    let version = headers.first(&header::SEC_WEBSOCKET_VERSION);
    if version.is_none_or(|v| v.as_bytes() != b"13") {
        let mut res = text_response(StatusCode::UPGRADE_REQUIRED, "only WebSocket version 13 is supported");
        res.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return Err(Box::new(res));
    }
    match headers.first(&header::SEC_WEBSOCKET_KEY) {
        Some(key) if !key.is_empty() => Ok(key.clone()),
        _ => Err(Box::new(text_response(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key"))),
    }
}

/// The visitor's 101: the origin's end-to-end headers (chosen subprotocol, cookies, ...)
/// plus this leg's own handshake headers.
fn accepted(key: &HeaderValue, headers: HeaderMap) -> Response<Body> {
    let mut res = Response::new(crate::state::full(""));
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *res.headers_mut() = switching_headers(key, headers);
    res
}

/// The headers of the visitor's 101 ([`accepted`]), in the order hyper writes them.
/// The HTTP/1 path writes its 101 from these too (once per WebSocket: the `HeaderMap`
/// keeps the order of its removal and inserts exactly as hyper's path has it).
pub(crate) fn switching_headers(key: &HeaderValue, mut h: HeaderMap) -> HeaderMap {
    h.remove(header::CONTENT_LENGTH);
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    h
}

/// The origin refused the upgrade: its status, headers and body go to the visitor.
fn refused(tx: StreamSender, rx: StreamReceiver, status: StatusCode, headers: HeaderMap, end: bool) -> Response<Body> {
    // The upgrade request has no body: end this side so the stream can finish.
    let _ = tx.finish();
    visitor_response(status, headers, rx, end)
}
