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

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use localtunnels_core::{ResetCode, StreamKind};
use localtunnels_driver::http::forwardable_response;
use localtunnels_driver::{StreamEvent, StreamReceiver, StreamSender};

use crate::exchange::{invalid_response, open_error, reset_response, tunnel_head, visitor_response};
use crate::registry::Lookup;
use crate::state::{Body, Counters, Peer, ServerState};
use crate::timer::Lent;
use crate::tunnel::Tunnel;
use crate::upload::Upload;
use crate::visitor_error::{accepts_html, as_html, retry_later, visitor_error};
use crate::visitors::{Admitted, CountedBody};

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
    let mut connect = false;
    if state.cluster.is_some() {
        // A WebSocket over HTTP/2 (RFC 8441) runs as an HTTP/1.1 upgrade would.
        connect = crate::cluster::connect::into_upgrade(&mut req);
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
            let forwarded = crate::cluster::forward::forward(state, name, peer, req);
            let forwarded: Boxed =
                if connect { Box::pin(crate::cluster::connect::answer(forwarded)) } else { Box::pin(forwarded) };
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
    if crate::websocket::asks_websocket(req.version(), req.headers()) {
        Counters::bump(&state.counters.websockets);
        // Rare and long-lived: its larger state goes to the heap, out of every request's way.
        let ws = crate::websocket::proxy(state, tunnel, peer, req, admitted);
        let ws: Boxed = if connect { Box::pin(crate::cluster::connect::answer(ws)) } else { Box::pin(ws) };
        return Either::Right(Either::Right(ws));
    }
    Counters::bump(&state.counters.requests);
    Either::Right(Either::Left(forward_http(state, tunnel, peer, req, admitted)))
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
    let stream = match tunnel.open(head, end) {
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
        // hyper's path takes the head as a list (a block is the same head).
        r = rx.recv() => Some(r.map(StreamEvent::typed)),
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
