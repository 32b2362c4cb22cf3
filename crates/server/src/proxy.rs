//! Public traffic: a visitor's request on `<name>.<domain>` becomes a stream through
//! that name's tunnel, and the stream's response goes back to the visitor.
//!
//! Errors the server answers itself, each a generic page with a request id
//! ([`crate::visitor_error`]; HTML for browsers, one line of text otherwise):
//! 404 no tunnel with that name; 503 (with `Retry-After`) the tunnel's client is offline
//! or the tunnel is busy; 502 the exchange broke (the detail goes to the log);
//! 504 the origin did not answer within `response_timeout`.

use std::future::{ready, Future};
use std::pin::Pin;
use std::sync::Arc;

use futures_util::future::Either;

use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use localtunnels_core::error_page::default_message;
use localtunnels_core::{
    Header, OpenError, ResetCode, StreamKind, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO,
};
use localtunnels_driver::http::{forwardable_response, request_head, BadResponse};
use localtunnels_driver::{StreamBody, StreamEvent, StreamReceiver, StreamSender};

use crate::registry::Lookup;
use crate::state::{text_response, Body, Counters, Peer, ServerState};
use crate::timer::Lent;
use crate::tunnel::Tunnel;
use crate::upload::Upload;
use crate::visitor_error::{accepts_html, as_html, retry_later, visitor_error};
use crate::visitors::{Admitted, CountedBody};

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
/// request (tunnel, visitor, method, path, status, time to the response head). A
/// visitor that accepts HTML gets the server's own errors as an HTML page.
pub fn handle(state: Arc<ServerState>, name: String, peer: Peer, req: Request<Incoming>) -> impl Answer {
    let html = accepts_html(req.headers());
    if !state.config.verbose && !html {
        return Either::Left(route_to_tunnel(state, name, peer, req));
    }
    Either::Right(Box::pin(logged(state, name, peer, req, html)) as Boxed)
}

async fn logged(
    state: Arc<ServerState>,
    name: String,
    peer: Peer,
    req: Request<Incoming>,
    html: bool,
) -> Response<Body> {
    let started = std::time::Instant::now();
    let verbose = state.config.verbose;
    let method = req.method().clone();
    let path = if verbose { req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string() } else { String::new() };
    let res = route_to_tunnel(state, name.clone(), peer.clone(), req).await;
    if verbose {
        let (status, ms) = (res.status().as_u16(), started.elapsed().as_millis());
        tracing::info!(tunnel = %name, %peer, %method, %path, status, ms, "request");
    }
    if html {
        as_html(res)
    } else {
        res
    }
}

fn route_to_tunnel(state: Arc<ServerState>, name: String, mut peer: Peer, mut req: Request<Incoming>) -> impl Answer {
    // Cluster mode only: a request another node forwarded stands for its visitor.
    let mut from_node = false;
    if state.cluster.is_some() {
        match crate::cluster::forward::accept_forwarded(&state, &mut peer, &mut req) {
            Ok(forwarded) => from_node = forwarded,
            Err(refused) => return Either::Left(ready(*refused)),
        }
    }
    let tunnel = match state.registry.lookup(&name) {
        Lookup::Live(t) => t,
        Lookup::Held { remaining } => {
            Counters::bump(&state.counters.unavailable);
            let secs = remaining.as_secs().clamp(1, 5);
            let message = format!("The tunnel '{name}' is offline: its client disconnected and may reconnect. Please try again in a few seconds.");
            return Either::Left(ready(retry_later(message, secs, None)));
        }
        Lookup::Unknown if state.cluster.is_some() && !from_node => {
            let forwarded: Boxed = Box::pin(crate::cluster::forward::forward(state, name, peer, req));
            return Either::Right(Either::Right(forwarded));
        }
        Lookup::Unknown => {
            Counters::bump(&state.counters.not_found);
            let message = format!("There is no tunnel named '{name}' on this server.");
            return Either::Left(ready(visitor_error(StatusCode::NOT_FOUND, message, None)));
        }
    };
    let admitted = match crate::access::check(&state, &tunnel, peer.addr, &mut req) {
        Ok(admitted) => admitted,
        Err(refused) => return Either::Left(ready(*refused)),
    };
    tunnel.count_request();
    if localtunnels_driver::http::is_websocket_upgrade(req.headers()) {
        Counters::bump(&state.counters.websockets);
        // Rare and long-lived: its larger state goes to the heap, out of every request's way.
        let ws: Boxed = Box::pin(crate::websocket::proxy(state, tunnel, peer, req, admitted));
        return Either::Right(Either::Right(ws));
    }
    Counters::bump(&state.counters.requests);
    Either::Right(Either::Left(forward_http(state, tunnel, peer, req, admitted)))
}

/// The request head sent through the tunnel: the visitor's end-to-end headers, with
/// `X-Forwarded-*` replaced by what the server saw (`X-Forwarded-Host` in the normal
/// form of [`crate::host::forwarded_host`]). A request without `Host` (HTTP/2's
/// `:authority`) gets one from its target's authority, so that `--host-header preserve`
/// passes the visitor's host on whatever protocol it came over.
pub fn tunnel_head<B>(
    state: &ServerState,
    peer: &Peer,
    req: &Request<B>,
    kind: StreamKind,
) -> localtunnels_core::RequestHead {
    let host = crate::host::forwarded_host(req, state.default_port());
    tunnel_head_for(state, peer, req, kind, host)
}

/// [`tunnel_head`] with the request's `X-Forwarded-Host` already worked out (the
/// HTTP/1 path has checked the host while routing: no second parse).
pub fn tunnel_head_for<B>(
    state: &ServerState,
    peer: &Peer,
    req: &Request<B>,
    kind: StreamKind,
    host: Option<HeaderValue>,
) -> localtunnels_core::RequestHead {
    let mut head = request_head(req.method(), req.uri(), req.headers(), kind);
    head.headers.retain(|(n, _)| !FORWARDED.contains(&n.as_str()));
    if !req.headers().contains_key(http::header::HOST) {
        if let Some(authority) = req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
            head.headers.push((http::header::HOST, authority));
        }
    }
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
            let detail = format!("tunnel '{name}': {n} requests in flight");
            retry_later(format!("The tunnel '{name}' is busy. Please try again in a moment."), 1, Some(&detail))
        }
        e => {
            Counters::bump(&state.counters.unavailable);
            let detail = format!("tunnel '{name}': {e}");
            retry_later(format!("The tunnel '{name}' is going offline. Please try again shortly."), 1, Some(&detail))
        }
    }
}

/// The visitor's response: a head checked by [`forwardable_response`], and the
/// stream's body.
pub fn visitor_response(status: StatusCode, headers: http::HeaderMap, rx: StreamReceiver, end: bool) -> Response<Body> {
    let length = headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let mut res = Response::new(StreamBody::new(rx, end, length).boxed());
    *res.status_mut() = status;
    *res.headers_mut() = headers;
    res
}

/// The answer to a response head the client should not have sent (a 1xx where the
/// final response was due, a status over 599, a broken `Content-Length`): the stream
/// is reset and the visitor gets 502, never a 500 or the bad head itself.
pub fn invalid_response(state: &ServerState, tx: &StreamSender, e: BadResponse) -> Response<Body> {
    let message = format!("the tunnel's origin sent an invalid response: {e}");
    tx.reset(ResetCode::Protocol, &message);
    Counters::bump(&state.counters.bad_gateway);
    visitor_error(StatusCode::BAD_GATEWAY, default_message(502), Some(&message))
}

/// Maps a stream that ended before its response head to the visitor's answer: 504
/// for a timeout, 503 + `Retry-After` for a refusal (never processed), else 502.
pub fn reset_response(state: &ServerState, code: ResetCode, message: &str) -> Response<Body> {
    // The client's message may name its origin's address or an OS error: it goes to
    // the log, not to the visitor.
    if code == ResetCode::Timeout {
        Counters::bump(&state.counters.timeouts);
        return visitor_error(StatusCode::GATEWAY_TIMEOUT, default_message(504), Some(message));
    }
    if code == ResetCode::Refused {
        // Refused before any processing (the client is going away): safe to retry.
        Counters::bump(&state.counters.unavailable);
        return retry_later("The tunnel did not take the request. Please try again shortly.", 1, Some(message));
    }
    Counters::bump(&state.counters.bad_gateway);
    visitor_error(StatusCode::BAD_GATEWAY, default_message(502), Some(message))
}

/// Sends the request into the tunnel (the head at once, the body from a task of its
/// own) and returns the wait for its response.
fn forward_http(
    state: Arc<ServerState>,
    tunnel: Arc<Tunnel>,
    peer: Peer,
    req: Request<Incoming>,
    admitted: Admitted,
) -> impl Answer {
    let started = std::time::Instant::now();
    let head = tunnel_head(&state, &peer, &req, StreamKind::Http);
    let body = req.into_body();
    let end = body.is_end_stream();
    let stream = match tunnel.conn.open(head, end) {
        Ok(s) => s,
        Err(e) => return Either::Left(ready(open_error(&state, &tunnel.name, e))),
    };
    let (tx, rx) = stream.split();
    let upload = (!end).then(|| crate::upload::send_body(body, tx.clone(), state.config.limits.max_body));
    let deadline = peer.response_deadline.lend(tokio::time::Instant::now() + state.config.response_timeout);
    let exchange = Exchange { tunnel, admitted };
    Either::Right(async move {
        let res = await_response(&state, tx, rx, deadline, upload, exchange).await;
        state.counters.recorded.answered(started.elapsed());
        res
    })
}

/// The tunnel an exchange goes through, and its count against the visitor's address.
struct Exchange {
    tunnel: Arc<Tunnel>,
    admitted: Admitted,
}

/// The wait for the response head of an exchange, under the response timeout, ended
/// early by a failure of the visitor's body (413 over the body limit, 400 malformed).
async fn await_response(
    state: &ServerState,
    tx: StreamSender,
    mut rx: StreamReceiver,
    deadline: Lent,
    upload: Option<Upload>,
    exchange: Exchange,
) -> Response<Body> {
    let response = tokio::select! {
        biased;
        failure = crate::upload::failed(upload) => return crate::upload::answer(state, &tx, failure),
        r = rx.recv() => Some(r),
        () = deadline => None,
    };
    match response {
        None => {
            tx.reset(ResetCode::Timeout, "no response in time");
            Counters::bump(&state.counters.timeouts);
            let secs = state.config.response_timeout.as_secs_f32();
            let message = format!("The app behind this tunnel did not answer within {secs} s.");
            visitor_error(StatusCode::GATEWAY_TIMEOUT, message, None)
        }
        Some(Some(StreamEvent::Response { head, end })) => match forwardable_response(&head, StreamKind::Http) {
            Ok((status, mut headers)) => {
                crate::cookies::for_tunnel(&mut headers, &exchange.tunnel.name, &state.config.domain);
                let mut res = visitor_response(status, headers, rx, end);
                *res.body_mut() = CountedBody::new(std::mem::take(res.body_mut()), exchange.admitted).boxed();
                res
            }
            Err(e) => invalid_response(state, &tx, e),
        },
        Some(Some(StreamEvent::Reset { code, message })) => reset_response(state, code, &message),
        Some(_) => reset_response(state, ResetCode::Internal, "the exchange ended without a response"),
    }
}
