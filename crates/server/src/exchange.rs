//! What the HTTP proxy ([`crate::proxy`]) and the WebSocket upgrade
//! ([`crate::websocket`]) share about one exchange through a tunnel: the request head
//! sent to the client, the visitor's response made from the stream, and the visitor's
//! answers when opening the stream or its response fails (503, 502, 504).

use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use localtunnels_core::error_page::default_message;
use localtunnels_core::{
    Header, OpenError, ResetCode, StreamKind, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO,
};
use localtunnels_driver::http::{request_head, request_head_from_list, BadResponse};
use localtunnels_driver::{StreamBody, StreamReceiver, StreamSender};

use crate::state::{text_response, Body, Counters, Peer, ServerState};
use crate::visitor_error::{retry_later, visitor_error};

/// Headers a visitor may not set: the server sets them from what it saw.
const FORWARDED: &[&str] = &["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded", "expect"];

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
    let head = request_head(req.method(), req.uri(), req.headers(), kind);
    let authority = if req.headers().contains_key(http::header::HOST) { None } else { req.uri().authority() };
    with_forwarded(state, peer, head, authority, host)
}

/// [`tunnel_head_for`] for a request the HTTP/1 visitor path parsed: from its header
/// list (moved into the head, not copied).
pub(crate) fn tunnel_head_of(
    state: &ServerState,
    peer: &Peer,
    method: &http::Method,
    uri: &http::Uri,
    headers: Vec<Header>,
    host: Option<HeaderValue>,
    kind: StreamKind,
) -> localtunnels_core::RequestHead {
    let has_host = headers.iter().any(|(n, _)| n == http::header::HOST);
    let head = request_head_from_list(method, uri, headers, kind);
    let authority = if has_host { None } else { uri.authority() };
    with_forwarded(state, peer, head, authority, host)
}

/// `head` with the visitor's `X-Forwarded-*` replaced by the server's, and a `Host`
/// from the target's `authority` when the request had none. On every request: the
/// list is filtered only when it holds such a field (rarely), and the fields are
/// pushed one by one (an iterator over an array of optional fields moved each one
/// twice: ~0.1k instructions per request, docs/BENCHMARKS.md, twelfth round).
fn with_forwarded(
    state: &ServerState,
    peer: &Peer,
    mut head: localtunnels_core::RequestHead,
    authority: Option<&http::uri::Authority>,
    host: Option<HeaderValue>,
) -> localtunnels_core::RequestHead {
    let visitors = |(n, _): &Header| is_forwarding(n);
    if head.headers.iter().any(visitors) {
        head.headers.retain(|h| !visitors(h));
    }
    let headers = &mut head.headers;
    headers.reserve(3 + usize::from(authority.is_some()));
    if let Some(authority) = authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
        headers.push((http::header::HOST, authority));
    }
    headers.push((X_FORWARDED_FOR, peer.forwarded_for.clone()));
    headers.push((X_FORWARDED_PROTO, forwarded_proto(state, peer).clone()));
    if let Some(host) = host {
        headers.push((X_FORWARDED_HOST, host));
    }
    head
}

/// Whether `name` is one a visitor may not set (the server sets it: [`FORWARDED`]).
pub(crate) fn is_forwarding(name: &http::HeaderName) -> bool {
    FORWARDED.contains(&name.as_str())
}

/// The request's `X-Forwarded-Proto`: what a trusted proxy said, else the server's own
/// scheme.
pub(crate) fn forwarded_proto<'a>(state: &ServerState, peer: &'a Peer) -> &'a HeaderValue {
    static HTTP: HeaderValue = HeaderValue::from_static("http");
    static HTTPS: HeaderValue = HeaderValue::from_static("https");
    match &peer.proto {
        Some(proto) => proto,
        None if state.config.secure => &HTTPS,
        None => &HTTP,
    }
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
