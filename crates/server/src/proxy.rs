//! Public traffic: a visitor's request on `<name>.<domain>` becomes a stream through
//! that name's tunnel, and the stream's response goes back to the visitor.
//!
//! Errors the server answers itself, each with a one-line body:
//! 404 no tunnel with that name; 503 (with `Retry-After`) the tunnel's client is offline
//! or the tunnel is busy; 502 the client could not reach its origin or the exchange
//! broke; 504 the origin did not answer within `response_timeout`.

use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use localtunnels_core::{
    Header, OpenError, ResetCode, StreamKind, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO,
};
use localtunnels_driver::http::{header_map, request_head};
use localtunnels_driver::{pump_body, StreamBody, StreamEvent};

use crate::registry::Lookup;
use crate::state::{text_response, Body, Counters, Peer, ServerState};
use crate::tunnel::Tunnel;

/// Headers a visitor may not set: the server sets them from what it saw.
const FORWARDED: &[&str] = &["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded", "expect"];

/// Routes one visitor request to tunnel `name`. With `verbose`, logs one line per
/// request (tunnel, visitor, method, path, status, time to the response head).
pub async fn handle(state: Arc<ServerState>, name: String, peer: Peer, req: Request<Incoming>) -> Response<Body> {
    if !state.config.verbose {
        return route(state, name, peer, req).await;
    }
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    let res = route(state, name.clone(), peer.clone(), req).await;
    let (status, ms) = (res.status().as_u16(), started.elapsed().as_millis());
    tracing::info!(tunnel = %name, %peer, %method, %path, status, ms, "request");
    res
}

async fn route(state: Arc<ServerState>, name: String, peer: Peer, mut req: Request<Incoming>) -> Response<Body> {
    let tunnel = match state.registry.lookup(&name) {
        Lookup::Live(t) => t,
        Lookup::Held { remaining } => {
            Counters::bump(&state.counters.unavailable);
            let mut res = text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("tunnel '{name}' is offline: its client disconnected and may reconnect"),
            );
            let secs = remaining.as_secs().clamp(1, 5);
            res.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
            return res;
        }
        Lookup::Unknown => {
            Counters::bump(&state.counters.not_found);
            return text_response(StatusCode::NOT_FOUND, format!("no tunnel named {name}"));
        }
    };
    if let Some(refused) = crate::access::check(&state, &tunnel, peer.addr, &mut req) {
        return refused;
    }
    tunnel.count_request();
    if localtunnels_driver::http::is_websocket_upgrade(req.headers()) {
        Counters::bump(&state.counters.websockets);
        return crate::websocket::proxy(state, tunnel, peer, req).await;
    }
    Counters::bump(&state.counters.requests);
    forward_http(state, tunnel, peer, req).await
}

/// The request head sent through the tunnel: the visitor's end-to-end headers, with
/// `X-Forwarded-*` replaced by what the server saw.
pub fn tunnel_head<B>(
    state: &ServerState,
    peer: &Peer,
    req: &Request<B>,
    kind: StreamKind,
) -> localtunnels_core::RequestHead {
    let mut head = request_head(req.method(), req.uri(), req.headers(), kind);
    head.headers.retain(|(n, _)| !FORWARDED.contains(&n.as_str()));
    let host = req
        .headers()
        .get(http::header::HOST)
        .cloned()
        .or_else(|| req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
    let proto = if state.config.secure { "https" } else { "http" };
    let forwarded: [Option<Header>; 3] = [
        Some((X_FORWARDED_FOR, peer.forwarded_for.clone())),
        Some((X_FORWARDED_PROTO, HeaderValue::from_static(proto))),
        host.map(|h| (X_FORWARDED_HOST, h)),
    ];
    head.headers.extend(forwarded.into_iter().flatten());
    head
}

/// Maps a failure to open a stream to the visitor's answer.
pub fn open_error(state: &ServerState, name: &str, e: OpenError) -> Response<Body> {
    match e {
        OpenError::HeadTooLarge { .. } => {
            text_response(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "request headers too large for the tunnel")
        }
        OpenError::InvalidHead(why) => {
            text_response(StatusCode::BAD_REQUEST, format!("the tunnel cannot carry this request: {why}"))
        }
        OpenError::TooManyStreams(n) => {
            Counters::bump(&state.counters.unavailable);
            let mut res = text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("tunnel '{name}' is busy ({n} requests in flight); retry shortly"),
            );
            res.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(1));
            res
        }
        _ => {
            Counters::bump(&state.counters.unavailable);
            let mut res = text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("tunnel '{name}' is going offline; retry shortly"),
            );
            res.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(1));
            res
        }
    }
}

/// Maps a stream that ended before its response head to the visitor's answer: 504
/// for a timeout, 503 + `Retry-After` for a refusal (never processed), else 502.
pub fn reset_response(state: &ServerState, code: ResetCode, message: &str) -> Response<Body> {
    if code == ResetCode::Timeout {
        Counters::bump(&state.counters.timeouts);
        return text_response(StatusCode::GATEWAY_TIMEOUT, format!("the origin did not answer in time: {message}"));
    }
    if code == ResetCode::Refused {
        // Refused before any processing (the client is going away): safe to retry.
        Counters::bump(&state.counters.unavailable);
        let mut res = text_response(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the tunnel's client did not take the request ({message}); retry shortly"),
        );
        res.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(1));
        return res;
    }
    Counters::bump(&state.counters.bad_gateway);
    text_response(StatusCode::BAD_GATEWAY, format!("the tunnel could not reach the origin: {message}"))
}

async fn forward_http(
    state: Arc<ServerState>,
    tunnel: Arc<Tunnel>,
    peer: Peer,
    req: Request<Incoming>,
) -> Response<Body> {
    let head = tunnel_head(&state, &peer, &req, StreamKind::Http);
    let body = req.into_body();
    let end = body.is_end_stream();
    let (body, too_large) = crate::limits::limit_body(body, state.config.limits.max_body);
    let stream = match tunnel.conn.open(head, end) {
        Ok(s) => s,
        Err(e) => return open_error(&state, &tunnel.name, e),
    };
    let (tx, mut rx) = stream.split();
    if !end {
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = pump_body(body, &tx).await;
        });
    }
    let timeout = state.config.response_timeout;
    let deadline = peer.response_deadline.lend(tokio::time::Instant::now() + timeout);
    let response = tokio::select! {
        r = rx.recv() => Some(r),
        () = deadline => None,
        limit = too_large => {
            tx.reset(ResetCode::TooLarge, "the request body is over the server's limit");
            return crate::access::too_large(&state, limit);
        }
    };
    match response {
        None => {
            tx.reset(ResetCode::Timeout, "no response in time");
            Counters::bump(&state.counters.timeouts);
            let secs = timeout.as_secs_f32();
            text_response(StatusCode::GATEWAY_TIMEOUT, format!("the origin did not answer within {secs} s"))
        }
        Some(Some(StreamEvent::Response { head, end })) => {
            let mut res = Response::new(Body::default());
            *res.status_mut() = StatusCode::from_u16(head.status).unwrap_or(StatusCode::BAD_GATEWAY);
            *res.headers_mut() = header_map(&head.headers);
            let length = res
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            *res.body_mut() = StreamBody::new(rx, end, length).boxed();
            drop(tx);
            res
        }
        Some(Some(StreamEvent::Reset { code, message })) => reset_response(&state, code, &message),
        Some(_) => reset_response(&state, ResetCode::Internal, "the exchange ended without a response"),
    }
}
