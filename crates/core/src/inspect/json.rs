//! Entries in the shape of ngrok's agent API (`GET /api/requests/http`), with our
//! extensions under keys ngrok does not use:
//!
//! ```json
//! { "uri": "/api/requests/http/5f3a9c1200000002", "id": "5f3a9c1200000002",
//!   "tunnel_name": "demo", "remote_addr": "203.0.113.7",
//!   "start": "2026-12-05T20:31:07.123456789Z", "duration": 3893202,
//!   "request": { "method": "GET", "proto": "HTTP/1.1", "headers": { "Accept": ["*/*"] },
//!                "uri": "/a?b=c", "raw": "<base64>", "body_size": 0, "truncated": false },
//!   "response": { "status": "200 OK", "status_code": 200, "proto": "HTTP/1.1",
//!                 "headers": {}, "raw": "<base64>", "body_size": 5, "truncated": false },
//!   "replay_of": null, "error": null, "websocket": false }
//! ```
//!
//! `duration` is in nanoseconds (0 while pending); `raw` is the captured bytes (head
//! and the body's first bytes) in base64; `response` is null while pending.
//! A WebSocket session ([`WsJson`], `/api/requests/ws`) adds `messages`, each
//! `{ "direction": "in"|"out", "time", "opcode": "text"|"binary", "size", "text" | "base64", "truncated" }`.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Serialize;

use crate::frame::Header;

use super::record::{HttpEntry, WsMessage};
use super::time::rfc3339;

/// The API path of the HTTP entries.
pub const HTTP_PATH: &str = "/api/requests/http";

/// What replaces a redacted header's value.
pub const REDACTED: &str = "[redacted]";

/// An entry as the agent API shows it.
#[derive(Debug, Serialize)]
pub struct EntryJson {
    uri: String,
    id: String,
    tunnel_name: String,
    remote_addr: String,
    start: String,
    duration: u64,
    request: RequestJson,
    response: Option<ResponseJson>,
    replay_of: Option<String>,
    error: Option<String>,
    websocket: bool,
}

#[derive(Debug, Serialize)]
struct RequestJson {
    method: String,
    proto: &'static str,
    headers: BTreeMap<String, Vec<String>>,
    uri: String,
    raw: String,
    body_size: u64,
    truncated: bool,
}

#[derive(Debug, Serialize)]
struct ResponseJson {
    status: String,
    status_code: u16,
    proto: &'static str,
    headers: BTreeMap<String, Vec<String>>,
    raw: String,
    body_size: u64,
    truncated: bool,
}

/// A WebSocket session: its entry and its messages.
#[derive(Debug, Serialize)]
pub struct WsJson {
    #[serde(flatten)]
    entry: EntryJson,
    close_code: Option<u16>,
    messages_dropped: u64,
    messages: Vec<MessageJson>,
}

#[derive(Debug, Serialize)]
struct MessageJson {
    direction: &'static str,
    time: String,
    opcode: &'static str,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    base64: Option<String>,
    truncated: bool,
}

impl EntryJson {
    /// `entry` as shown, with secrets masked if `redact`.
    pub fn new(entry: &HttpEntry, redact: bool) -> Self {
        let id = entry.id.to_string();
        let req = &entry.request;
        let head = format!("{} {} HTTP/1.1\r\n", req.method, req.uri);
        let request = RequestJson {
            method: req.method.clone(),
            proto: "HTTP/1.1",
            headers: header_object(&req.headers, redact),
            uri: req.uri.clone(),
            raw: raw(&head, &req.headers, req.body.data(), redact),
            body_size: req.body.size(),
            truncated: req.body.truncated(),
        };
        let response = entry.response.as_ref().map(|res| {
            let reason = http::StatusCode::from_u16(res.status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
            let status = format!("{} {reason}", res.status).trim_end().to_string();
            ResponseJson {
                raw: raw(&format!("HTTP/1.1 {status}\r\n"), &res.headers, res.body.data(), redact),
                status,
                status_code: res.status,
                proto: "HTTP/1.1",
                headers: header_object(&res.headers, redact),
                body_size: res.body.size(),
                truncated: res.body.truncated(),
            }
        });
        EntryJson {
            uri: format!("{HTTP_PATH}/{id}"),
            id,
            tunnel_name: entry.tunnel_name.to_string(),
            remote_addr: entry.remote_addr.clone(),
            start: rfc3339(entry.start_unix_nanos),
            duration: entry.duration.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            request,
            response,
            replay_of: entry.replay_of.map(|r| r.to_string()),
            error: entry.error.clone(),
            websocket: entry.websocket.is_some(),
        }
    }
}

impl WsJson {
    /// A WebSocket entry with its messages; `None` for a plain HTTP entry.
    pub fn new(entry: &HttpEntry, redact: bool) -> Option<Self> {
        let ws = entry.websocket.as_ref()?;
        Some(WsJson {
            entry: EntryJson::new(entry, redact),
            close_code: ws.close_code,
            messages_dropped: ws.dropped,
            messages: ws.messages.iter().map(message).collect(),
        })
    }
}

fn message(m: &WsMessage) -> MessageJson {
    let text = (!m.binary).then(|| String::from_utf8_lossy(&m.preview).into_owned());
    let base64 = m.binary.then(|| base64::engine::general_purpose::STANDARD.encode(&m.preview));
    MessageJson {
        direction: m.direction.as_str(),
        time: rfc3339(m.unix_nanos),
        opcode: if m.binary { "binary" } else { "text" },
        size: m.size,
        text,
        base64,
        truncated: m.size > m.preview.len() as u64,
    }
}

/// Whether `--inspect-redact` masks this header's value.
pub fn is_secret(name: &str) -> bool {
    ["authorization", "proxy-authorization", "cookie", "set-cookie"].iter().any(|s| name.eq_ignore_ascii_case(s))
}

/// `content-type` → `Content-Type` (Go's canonical form, which ngrok shows).
pub fn canonical_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper { c.to_ascii_uppercase() } else { c });
        upper = c == '-';
    }
    out
}

fn value_text(name: &str, value: &http::HeaderValue, redact: bool) -> String {
    if redact && is_secret(name) {
        REDACTED.to_string()
    } else {
        String::from_utf8_lossy(value.as_bytes()).into_owned()
    }
}

fn header_object(headers: &[Header], redact: bool) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        map.entry(canonical_name(name.as_str())).or_default().push(value_text(name.as_str(), value, redact));
    }
    map
}

/// The captured bytes as they would cross the wire: `head`, headers, blank line, body.
fn raw(head: &str, headers: &[Header], body: &[u8], redact: bool) -> String {
    let mut bytes = head.as_bytes().to_vec();
    for (name, value) in headers {
        bytes.extend_from_slice(canonical_name(name.as_str()).as_bytes());
        bytes.extend_from_slice(b": ");
        if redact && is_secret(name.as_str()) {
            bytes.extend_from_slice(REDACTED.as_bytes());
        } else {
            bytes.extend_from_slice(value.as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(body);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
