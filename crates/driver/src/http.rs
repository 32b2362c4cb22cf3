//! Converting between `http` types and protocol heads, and the proxy header rules
//! both ends share.

use http::{HeaderMap, Method, StatusCode};
use localtunnels_core::{Header, RequestHead, ResponseHead, StreamKind};

/// Hop-by-hop headers (RFC 9110 §7.6.1): meaningful for one connection only, never
/// forwarded. `Trailer` is end-to-end (it names the trailer fields that follow; hyper
/// only sends trailers a message declared there), so it crosses the tunnel.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Headers of the WebSocket handshake that each leg negotiates for itself.
const WS_HANDSHAKE: &[&str] =
    &["sec-websocket-key", "sec-websocket-version", "sec-websocket-accept", "sec-websocket-extensions"];

/// True for headers that must not cross the tunnel: the hop-by-hop set, anything the
/// `Connection` header names, and for WebSockets the per-leg handshake headers.
fn is_hop_by_hop(name: &str, connection_named: &[String], kind: StreamKind) -> bool {
    HOP_BY_HOP.contains(&name)
        || connection_named.iter().any(|n| n == name)
        || (kind == StreamKind::WebSocket && WS_HANDSHAKE.contains(&name))
}

fn connection_tokens(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The end-to-end headers of `headers`, in order (repeated names keep their values'
/// order), as protocol headers (names and values shared, not copied).
pub fn end_to_end_headers(headers: &HeaderMap, kind: StreamKind) -> Vec<Header> {
    let named = connection_tokens(headers);
    headers
        .iter()
        .filter(|(name, _)| !is_hop_by_hop(name.as_str(), &named, kind))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// A request head for the tunnel from a visitor's request.
pub fn request_head(method: &Method, uri: &http::Uri, headers: &HeaderMap, kind: StreamKind) -> RequestHead {
    let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    RequestHead { kind, method: method.as_str().to_string(), target, headers: end_to_end_headers(headers, kind) }
}

/// A response head for the tunnel from an origin's response.
pub fn response_head(status: StatusCode, headers: &HeaderMap, kind: StreamKind) -> ResponseHead {
    ResponseHead { status: status.as_u16(), headers: end_to_end_headers(headers, kind) }
}

/// Rebuilds a `HeaderMap` from protocol headers, in order (values keep sharing the
/// frame's bytes).
pub fn header_map(headers: &[Header]) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        map.append(name.clone(), value.clone());
    }
    map
}

/// True if the request asks for a WebSocket upgrade.
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get_all(http::header::UPGRADE)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("websocket"))));
    upgrade && connection_tokens(headers).iter().any(|t| t == "upgrade")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.append("connection", "keep-alive, x-private".parse().unwrap());
        h.append("x-private", "1".parse().unwrap());
        h.append("set-cookie", "a=1".parse().unwrap());
        h.append("transfer-encoding", "chunked".parse().unwrap());
        h.append("set-cookie", "b=2".parse().unwrap());
        let out = end_to_end_headers(&h, StreamKind::Http);
        let names: Vec<_> = out.iter().map(|(n, v)| (n.as_str(), v.as_ref())).collect();
        assert_eq!(names, vec![("set-cookie", &b"a=1"[..]), ("set-cookie", &b"b=2"[..])]);
    }

    #[test]
    fn websocket_upgrade_is_detected() {
        let mut h = HeaderMap::new();
        h.append("connection", "keep-alive, Upgrade".parse().unwrap());
        h.append("upgrade", "WebSocket".parse().unwrap());
        assert!(is_websocket_upgrade(&h));
        h.remove("connection");
        assert!(!is_websocket_upgrade(&h));
    }
}
