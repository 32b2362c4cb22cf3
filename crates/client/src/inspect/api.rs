//! The agent API (ngrok's paths and field names) and the page's assets.
//!
//! - `GET /api/tunnels`: `{"tunnels":[{"name","uri","public_url","proto","config":{"addr","inspect"}}],"uri"}`
//! - `GET /api/requests/http?limit=N&tunnel_name=X`: `{"uri","requests":[...]}`, newest first
//! - `GET /api/requests/http/{id}`; `POST /api/requests/http` `{"id"}` replays (204);
//!   `DELETE /api/requests/http` clears (204)
//! - ours: `GET /api/requests/ws[/{id}]` (WebSocket sessions with their messages),
//!   `GET /api/requests/stream` (Server-Sent Events: `http`, `ws` and `clear` events),
//!   `GET /api/inspector` (the store's bounds and use)
//!
//! Only requests whose `Host` (and `Origin`, if any) is a loopback name or address are
//! answered: a page on another site whose name resolves to 127.0.0.1 (DNS rebinding)
//! gets 403, and so does a cross-site form posting a replay.

use std::convert::Infallible;
use std::net::IpAddr;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use localtunnels_core::inspect::json::{entry_json, ws_json, HTTP_PATH};
use localtunnels_core::inspect::EntryId;
use serde::Deserialize;
use serde_json::json;

use super::{assets, Edit, Inspector, ReplayError};

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Largest replay request read (an edited body included).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Answers one request to the inspector.
pub(super) async fn handle(inspector: &Inspector, req: Request<Incoming>) -> Response<Body> {
    if !loopback_request(&req) {
        let msg = "the inspector answers only requests to a loopback host (localhost, 127.0.0.1, [::1])";
        return error(StatusCode::FORBIDDEN, msg);
    }
    // What a visitor saw before this request is in the store.
    inspector.settled().await;
    let path = req.uri().path().trim_end_matches('/').to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "") => asset("text/html; charset=utf-8", assets::INDEX_HTML),
        (Method::GET, "/app.js") => asset("text/javascript; charset=utf-8", assets::APP_JS),
        (Method::GET, "/style.css") => asset("text/css; charset=utf-8", assets::STYLE_CSS),
        (Method::GET, "/api") => {
            json_response(StatusCode::OK, &json!({"uri": "/api", "tunnels": "/api/tunnels", "requests": HTTP_PATH}))
        }
        (Method::GET, "/api/inspector") => json_response(StatusCode::OK, &usage(inspector)),
        (Method::GET, "/api/tunnels") => json_response(StatusCode::OK, &tunnels(inspector)),
        (Method::GET, p) if p.starts_with("/api/tunnels/") => {
            let name = &p["/api/tunnels/".len()..];
            match tunnels(inspector)["tunnels"].as_array().and_then(|t| t.iter().find(|t| t["name"] == name)) {
                Some(t) => json_response(StatusCode::OK, t),
                None => error(StatusCode::NOT_FOUND, "no such tunnel"),
            }
        }
        (Method::GET, HTTP_PATH) => json_text(StatusCode::OK, list(inspector, &query, false)),
        (Method::GET, "/api/requests/ws") => json_text(StatusCode::OK, list(inspector, &query, true)),
        (Method::POST, HTTP_PATH) => replay(inspector, req).await,
        (Method::DELETE, HTTP_PATH) => {
            inspector.clear();
            empty(StatusCode::NO_CONTENT)
        }
        (Method::GET, "/api/requests/stream") => stream(inspector),
        (Method::GET, p) if p.starts_with("/api/requests/http/") || p.starts_with("/api/requests/ws/") => {
            let (ws, id) = match p.strip_prefix("/api/requests/http/") {
                Some(id) => (false, id),
                None => (true, &p["/api/requests/ws/".len()..]),
            };
            match one(inspector, id, ws) {
                Some(v) => json_text(StatusCode::OK, v),
                None => error(StatusCode::NOT_FOUND, &format!("no captured request with id {id}")),
            }
        }
        (_, p) if p.starts_with("/api") => error(StatusCode::NOT_FOUND, "no such API resource or method"),
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// `Host` is a loopback name or address, and so is `Origin` when present.
fn loopback_request(req: &Request<Incoming>) -> bool {
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_ok = match req.headers().get(header::ORIGIN).map(|o| o.to_str()) {
        None => true,
        Some(Ok(o)) => o.split_once("://").is_some_and(|(_, authority)| is_loopback_host(authority)),
        Some(Err(_)) => false,
    };
    origin_ok && host.is_some_and(is_loopback_host)
}

/// `localhost`, `*.localhost`, 127.0.0.0/8 or `[::1]`, with or without a port.
pub(crate) fn is_loopback_host(authority: &str) -> bool {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, _)) => h,
            None => return false,
        }
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `GET /api/inspector` (ours): the store's bounds and what it holds.
fn usage(inspector: &Inspector) -> serde_json::Value {
    let store = inspector.store();
    let c = store.config();
    json!({ "entries": store.len(), "bytes": store.bytes(), "max_bytes": c.max_bytes, "body_limit": c.body_limit,
        "redact": c.redact })
}

fn tunnels(inspector: &Inspector) -> serde_json::Value {
    let t = inspector.tunnel();
    let list = if t.public_url.is_empty() {
        vec![]
    } else {
        let proto = if t.public_url.starts_with("https") { "https" } else { "http" };
        vec![json!({
            "name": t.name,
            "uri": format!("/api/tunnels/{}", t.name),
            "public_url": t.public_url,
            "proto": proto,
            "config": { "addr": t.addr, "inspect": true },
        })]
    };
    json!({ "tunnels": list, "uri": "/api/tunnels" })
}

/// `limit` and `tunnel_name` of a list query.
fn query_params(query: &str) -> (Option<usize>, Option<String>) {
    let mut limit = None;
    let mut name = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("limit", v)) => limit = v.parse().ok(),
            Some(("tunnel_name", v)) => name = Some(percent_decode(v)),
            _ => {}
        }
    }
    (limit, name)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The entries (or the WebSocket sessions), newest first.
fn list(inspector: &Inspector, query: &str, ws: bool) -> String {
    let (limit, name) = query_params(query);
    let redact = inspector.shared.redact;
    let store = inspector.store();
    let matching = store
        .newest_first()
        .filter(|e| name.as_deref().is_none_or(|n| &*e.tunnel_name == n))
        .filter(|e| !ws || e.websocket.is_some())
        .take(limit.unwrap_or(usize::MAX));
    if ws {
        let sessions: Vec<_> = matching.filter_map(|e| ws_json(&store, e, redact)).collect();
        format!("{{\"uri\":\"/api/requests/ws\",\"sessions\":[{}]}}", sessions.join(","))
    } else {
        let requests: Vec<_> = matching.map(|e| entry_json(&store, e, redact)).collect();
        format!("{{\"uri\":\"{HTTP_PATH}\",\"requests\":[{}]}}", requests.join(","))
    }
}

fn one(inspector: &Inspector, id: &str, ws: bool) -> Option<String> {
    let id: EntryId = id.parse().ok()?;
    let redact = inspector.shared.redact;
    let store = inspector.store();
    let e = store.get(id)?;
    if ws {
        ws_json(&store, e, redact)
    } else {
        Some(entry_json(&store, e, redact))
    }
}

/// `POST /api/requests/http`: `{"id": ..., "tunnel_name"?: ..., "edit"?: {...}}`.
#[derive(Deserialize)]
struct ReplayRequest {
    id: String,
    #[serde(default)]
    #[allow(dead_code)] // ngrok's field: there is one tunnel per client.
    tunnel_name: Option<String>,
    #[serde(default)]
    edit: Option<Edit>,
}

async fn replay(inspector: &Inspector, req: Request<Incoming>) -> Response<Body> {
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("cannot read the request: {e}")),
    };
    let ask: ReplayRequest = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("expected {{\"id\": \"...\"}}: {e}")),
    };
    match inspector.replay(&ask.id, ask.edit.unwrap_or_default()).await {
        Ok(_) => empty(StatusCode::NO_CONTENT),
        Err(e @ ReplayError::NotFound(_)) => error(StatusCode::NOT_FOUND, &e.to_string()),
        Err(e @ ReplayError::Origin(_)) => error(StatusCode::BAD_GATEWAY, &e.to_string()),
        Err(e @ ReplayError::NoOrigin) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// `GET /api/requests/stream`: a change of any entry as an SSE event (`http` or `ws`
/// with the entry as data, `clear`). A listener that falls 256 events behind skips
/// ahead (it can re-read the list).
fn stream(inspector: &Inspector) -> Response<Body> {
    let listener = super::Listener::new(inspector);
    let hello = futures_util::stream::once(async { Ok(Frame::data(Bytes::from_static(b": connected\n\n"))) });
    let events = futures_util::stream::unfold(listener, |mut l| async move {
        loop {
            match l.rx.recv().await {
                Ok(line) => return Some((Ok(Frame::data(Bytes::from(line.as_bytes().to_vec()))), l)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let body = http_body_util::StreamBody::new(hello.chain(events));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-store")
        .body(UnsyncBoxBody::new(body))
        .unwrap_or_else(|_| empty(StatusCode::INTERNAL_SERVER_ERROR))
}

fn asset(content_type: &'static str, text: &'static str) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed_unsync());
    res.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    res
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    json_text(status, value.to_string())
}

fn json_text(status: StatusCode, text: String) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from(text)).boxed_unsync());
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    res.headers_mut().insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    res
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({ "error_code": status.as_u16(), "status_code": status.as_u16(), "msg": message }))
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::new()).boxed_unsync());
    *res.status_mut() = status;
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for ok in ["localhost", "localhost:4040", "127.0.0.1:4040", "127.9.9.9", "[::1]:4040", "a.localhost:1"] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in ["evil.example:4040", "10.0.0.1", "localhost.evil.com", "[::2]:1", "", "0.0.0.0:4040"] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn list_queries() {
        assert_eq!(query_params("limit=5&tunnel_name=a%20b"), (Some(5), Some("a b".into())));
        assert_eq!(query_params(""), (None, None));
    }
}
