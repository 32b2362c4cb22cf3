//! WebSockets over HTTP/2 (RFC 8441, extended CONNECT) on a cluster node.
//!
//! A node forwards a visitor's WebSocket to the owning node as one stream of their
//! shared HTTP/2 connection: a `CONNECT` request with the `:protocol` pseudo-header
//! `websocket`, answered with 200 (not 101), after which the stream carries the
//! WebSocket's bytes both ways. Cluster nodes announce `SETTINGS_ENABLE_CONNECT_PROTOCOL`
//! to every HTTP/2 peer, so a browser visiting over HTTP/2 may open its WebSockets the
//! same way.
//!
//! The owner (and a node a browser reached over HTTP/2) turns such a request into the
//! HTTP/1.1 upgrade request the rest of the server knows ([`into_upgrade`]), runs it
//! exactly as a visitor's upgrade, and turns the 101 it produces back into the 200 an
//! extended CONNECT expects ([`answer`]). hyper completes the switch on both sides
//! (`hyper::upgrade::on` works for an HTTP/2 CONNECT stream as for an HTTP/1.1 upgrade).

use std::future::Future;

use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::ext::Protocol;

use crate::state::Body;

/// The `:protocol` of a WebSocket over HTTP/2.
const WEBSOCKET: &str = "websocket";

/// Headers that belong to one HTTP/1.1 connection and are illegal in HTTP/2.
const HOP_BY_HOP: [header::HeaderName; 7] = [
    header::CONNECTION,
    header::UPGRADE,
    header::HOST,
    header::TRANSFER_ENCODING,
    header::TE,
    header::HeaderName::from_static("keep-alive"),
    header::HeaderName::from_static("proxy-connection"),
];

/// Whether `req` is an extended CONNECT for a WebSocket.
pub(crate) fn is_websocket_connect<B>(req: &Request<B>) -> bool {
    req.method() == Method::CONNECT && req.extensions().get::<Protocol>().is_some_and(|p| p.as_str() == WEBSOCKET)
}

/// Turns an extended CONNECT for a WebSocket into the HTTP/1.1 upgrade request the
/// server's WebSocket proxy takes (a GET with `Upgrade: websocket`); returns whether it
/// was one. RFC 8441 has no `Sec-WebSocket-Key`: a request without one gets a random
/// key (the accept value derived from it is removed again by [`answer`]). The upgrade
/// itself (`hyper::upgrade::on`) stays with the request.
pub(crate) fn into_upgrade<B>(req: &mut Request<B>) -> bool {
    if !is_websocket_connect(req) {
        return false;
    }
    req.extensions_mut().remove::<Protocol>();
    *req.method_mut() = Method::GET;
    let h = req.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static(WEBSOCKET));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if !h.contains_key(header::SEC_WEBSOCKET_KEY) {
        h.insert(header::SEC_WEBSOCKET_KEY, random_key());
    }
    true
}

/// The answer to an extended CONNECT from the answer to the upgrade it was turned
/// into: 101 becomes 200 without the HTTP/1.1 handshake headers; any other status
/// (a refusal, 401, 404, 503, ...) goes back as it is.
pub(crate) async fn answer(upgrade: impl Future<Output = Response<Body>>) -> Response<Body> {
    let mut res = upgrade.await;
    if res.status() == StatusCode::SWITCHING_PROTOCOLS {
        *res.status_mut() = StatusCode::OK;
        let h = res.headers_mut();
        for name in [header::UPGRADE, header::CONNECTION, header::SEC_WEBSOCKET_ACCEPT, header::CONTENT_LENGTH] {
            h.remove(name);
        }
    }
    res
}

/// The extended CONNECT that carries a visitor's WebSocket upgrade `req` (a GET with
/// `Upgrade: websocket`, its own upgrade already taken with `hyper::upgrade::on`) to
/// another node, for the authority `host` (the visitor's host, so the owner routes it
/// as the visitor's own). The body stays: an upgrade request has none.
pub(crate) fn to_connect<B>(mut req: Request<B>, host: &str) -> Result<Request<B>, http::Error> {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    *req.uri_mut() = format!("http://{host}{path}").parse::<http::Uri>()?;
    *req.method_mut() = Method::CONNECT;
    *req.version_mut() = http::Version::HTTP_2;
    strip_hop_by_hop(req.headers_mut());
    req.extensions_mut().insert(Protocol::from_static(WEBSOCKET));
    Ok(req)
}

/// Removes what HTTP/2 forbids, and the headers a `Connection` header names.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<String> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    for name in named {
        h.remove(name.as_str());
    }
    for name in &HOP_BY_HOP {
        h.remove(name);
    }
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes in base64.
fn random_key() -> HeaderValue {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
    HeaderValue::from_str(&key).unwrap_or_else(|_| HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect() -> Request<()> {
        let mut req = Request::connect("http://chat.localhost/ws?x=1").body(()).unwrap();
        req.extensions_mut().insert(Protocol::from_static(WEBSOCKET));
        req.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        req
    }

    #[test]
    fn an_extended_connect_becomes_an_upgrade_with_a_key() {
        let mut req = connect();
        assert!(into_upgrade(&mut req));
        assert_eq!(req.method(), Method::GET);
        assert!(localtunnels_driver::http::is_websocket_upgrade(req.headers()));
        assert_eq!(req.headers()[header::SEC_WEBSOCKET_KEY].len(), 24);
        assert!(req.extensions().get::<Protocol>().is_none());
        // Only once, and only a WebSocket CONNECT.
        assert!(!into_upgrade(&mut req));
        let mut plain = Request::connect("http://x.localhost/").body(()).unwrap();
        assert!(!into_upgrade(&mut plain));
        assert_eq!(plain.method(), Method::CONNECT);
    }

    #[test]
    fn a_key_the_forwarding_node_sent_is_kept() {
        let mut req = connect();
        req.headers_mut().insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="));
        into_upgrade(&mut req);
        assert_eq!(req.headers()[header::SEC_WEBSOCKET_KEY], "dGhlIHNhbXBsZSBub25jZQ==");
    }

    #[test]
    fn an_upgrade_goes_to_another_node_as_an_extended_connect() {
        let req = Request::get("/ws?x=1")
            .header(header::HOST, "chat.localhost:3000")
            .header(header::CONNECTION, "Upgrade, X-Private")
            .header(header::UPGRADE, "websocket")
            .header("x-private", "1")
            .header("keep-alive", "5")
            .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
            .header(header::SEC_WEBSOCKET_PROTOCOL, "chat")
            .body(())
            .unwrap();
        let out = to_connect(req, "chat.localhost:3000").unwrap();
        assert!(is_websocket_connect(&out));
        assert_eq!(out.uri(), "http://chat.localhost:3000/ws?x=1");
        assert_eq!(out.version(), http::Version::HTTP_2);
        let names: Vec<&str> = out.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["sec-websocket-key", "sec-websocket-protocol"]);
    }

    #[tokio::test]
    async fn a_switch_is_answered_200_and_a_refusal_as_it_is() {
        let switched = async {
            let mut res = Response::new(crate::state::full(""));
            *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            for (n, v) in [("upgrade", "websocket"), ("connection", "Upgrade"), ("sec-websocket-accept", "x")] {
                res.headers_mut().insert(n, HeaderValue::from_static(v));
            }
            res.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("chat"));
            res
        };
        let res = answer(switched).await;
        assert_eq!(res.status(), StatusCode::OK);
        let names: Vec<&str> = res.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["sec-websocket-protocol"]);
        let refused = async { crate::state::text_response(StatusCode::UNAUTHORIZED, "no") };
        assert_eq!(answer(refused).await.status(), StatusCode::UNAUTHORIZED);
    }
}
