//! Public traffic: a visitor's request on `<name>.<domain>` becomes a stream through
//! that name's tunnel, and the stream's response goes back to the visitor.
//!
//! Errors the server answers itself, each with a one-line body:
//! 404 no tunnel with that name; 503 (with `Retry-After`) the tunnel's client is offline
//! or the tunnel is busy; 502 the client could not reach its origin or the exchange
//! broke; 504 the origin did not answer within `response_timeout`.

use std::future::{ready, Future};
use std::pin::Pin;
use std::sync::Arc;

use futures_util::future::Either;

use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either as EitherBody};
use hyper::body::{Body as _, Incoming};
use localtunnels_core::{
    Header, OpenError, ResetCode, StreamKind, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO,
};
use localtunnels_driver::http::{header_map, request_head};
use localtunnels_driver::{pump_body, StreamBody, StreamEvent, StreamReceiver, StreamSender};

use crate::limits::TooLargeSignal;
use crate::registry::Lookup;
use crate::state::{text_response, Body, Counters, Peer, ServerState};
use crate::timer::Lent;
use crate::tunnel::Tunnel;

/// Headers a visitor may not set: the server sets them from what it saw.
const FORWARDED: &[&str] = &["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded", "expect"];

/// A response still to come (through the tunnel, or from the server itself at once).
///
/// The proxy's steps are plain functions returning futures rather than nested `async
/// fn`s: each `async fn` layer kept its arguments twice and the whole state of the next
/// layer, and the request's future was copied into every layer on its way to hyper
/// (~1,000 instructions of `memcpy` per request, docs/BENCHMARKS.md). Only the wait for
/// the tunnel's response is a state machine of its own, and a small one.
pub trait Answer: Future<Output = Response<Body>> + Send + 'static {}
impl<F: Future<Output = Response<Body>> + Send + 'static> Answer for F {}

type Boxed = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// Routes one visitor request to tunnel `name`. With `verbose`, logs one line per
/// request (tunnel, visitor, method, path, status, time to the response head).
pub fn handle(state: Arc<ServerState>, name: String, peer: Peer, req: Request<Incoming>) -> impl Answer {
    if !state.config.verbose {
        return Either::Left(route(state, name, peer, req));
    }
    Either::Right(Box::pin(logged(state, name, peer, req)) as Boxed)
}

async fn logged(state: Arc<ServerState>, name: String, peer: Peer, req: Request<Incoming>) -> Response<Body> {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    let res = route(state, name.clone(), peer.clone(), req).await;
    let (status, ms) = (res.status().as_u16(), started.elapsed().as_millis());
    tracing::info!(tunnel = %name, %peer, %method, %path, status, ms, "request");
    res
}

fn route(state: Arc<ServerState>, name: String, peer: Peer, mut req: Request<Incoming>) -> impl Answer {
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
            return Either::Left(ready(res));
        }
        Lookup::Unknown => {
            Counters::bump(&state.counters.not_found);
            return Either::Left(ready(text_response(StatusCode::NOT_FOUND, format!("no tunnel named {name}"))));
        }
    };
    if let Some(refused) = crate::access::check(&state, &tunnel, peer.addr, &mut req) {
        return Either::Left(ready(refused));
    }
    tunnel.count_request();
    if localtunnels_driver::http::is_websocket_upgrade(req.headers()) {
        Counters::bump(&state.counters.websockets);
        // Rare and long-lived: its larger state goes to the heap, out of every request's way.
        let ws: Boxed = Box::pin(crate::websocket::proxy(state, tunnel, peer, req));
        return Either::Right(Either::Right(ws));
    }
    Counters::bump(&state.counters.requests);
    Either::Right(Either::Left(forward_http(state, tunnel, peer, req)))
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
    let proto = peer
        .proto
        .clone()
        .unwrap_or_else(|| HeaderValue::from_static(if state.config.secure { "https" } else { "http" }));
    let forwarded: [Option<Header>; 3] = [
        Some((X_FORWARDED_FOR, peer.forwarded_for.clone())),
        Some((X_FORWARDED_PROTO, proto)),
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

/// Sends the request into the tunnel (the head at once, the body from a task of its
/// own) and returns the wait for its response.
fn forward_http(state: Arc<ServerState>, tunnel: Arc<Tunnel>, peer: Peer, req: Request<Incoming>) -> impl Answer {
    let head = tunnel_head(&state, &peer, &req, StreamKind::Http);
    let body = req.into_body();
    let end = body.is_end_stream();
    let stream = match tunnel.conn.open(head, end) {
        Ok(s) => s,
        Err(e) => return Either::Left(ready(open_error(&state, &tunnel.name, e))),
    };
    let (tx, rx) = stream.split();
    let too_large = if end { None } else { send_body(body, tx.clone(), state.config.limits.max_body) };
    let deadline = peer.response_deadline.lend(tokio::time::Instant::now() + state.config.response_timeout);
    // A `Box` of the zero-sized `pending()` allocates nothing.
    let too_large = too_large.unwrap_or_else(|| Box::pin(std::future::pending()));
    Either::Right(await_response(state, tx, rx, deadline, too_large))
}

/// Streams a visitor's request body into the tunnel from a task of its own, under the
/// server's `max_body` when one is set: the returned signal then resolves if the body
/// passes it. Without a limit the body goes as it is (no wrapper, no signal).
fn send_body(body: Incoming, tx: StreamSender, max_body: Option<u64>) -> Option<TooLargeSignal> {
    let (body, signal) = match max_body {
        Some(max) => {
            let (limited, signal) = crate::limits::limit_body(body, max);
            (EitherBody::Right(limited), Some(signal))
        }
        None => (EitherBody::Left(body), None),
    };
    tokio::spawn(async move {
        // A failed body resets the stream; the visitor's answer comes from that.
        let _ = pump_body(body, &tx).await;
    });
    signal
}

/// The wait for the response head of an exchange, under the response timeout and the
/// body limit.
async fn await_response(
    state: Arc<ServerState>,
    tx: StreamSender,
    mut rx: StreamReceiver,
    deadline: Lent,
    too_large: TooLargeSignal,
) -> Response<Body> {
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
            let secs = state.config.response_timeout.as_secs_f32();
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
