//! Entries as JSON in the shape of ngrok's agent API (`GET /api/requests/http`), with
//! our extensions under keys ngrok does not use:
//!
//! ```json
//! { "uri": "/api/requests/http/5f3a000000000002", "id": "5f3a000000000002",
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
//! A WebSocket session ([`ws_json`], `/api/requests/ws`) adds `close_code`,
//! `messages_dropped` and `messages`, each
//! `{ "direction": "in"|"out", "time", "opcode": "text"|"binary", "size", "text" | "base64", "truncated" }`.
//!
//! Written by hand rather than with serde: the wasm client ships this code, and serde's
//! derive with serde-wasm-bindgen's serializer made its `.wasm` larger
//! (docs/BENCHMARKS.md); the wasm client hands this text to `JSON.parse`.

use std::fmt::Write as _;

use crate::frame::Header;

use super::record::{HttpEntry, WsMessage};
use super::store::Store;
use super::time::rfc3339;

/// The API path of the HTTP entries.
pub const HTTP_PATH: &str = "/api/requests/http";

/// What replaces a redacted header's value.
pub const REDACTED: &str = "[redacted]";

/// `entry` as the agent API shows it, with secrets masked if `redact`.
pub fn entry_json(store: &Store, entry: &HttpEntry, redact: bool) -> String {
    let mut out = String::with_capacity(512);
    out.push('{');
    entry_fields(&mut out, store, entry, redact);
    out.push('}');
    out
}

/// A WebSocket entry with its messages; `None` for a plain HTTP entry.
pub fn ws_json(store: &Store, entry: &HttpEntry, redact: bool) -> Option<String> {
    let ws = entry.websocket.as_ref()?.lock();
    let mut out = String::with_capacity(1024);
    out.push('{');
    entry_fields(&mut out, store, entry, redact);
    out.push_str(",\"close_code\":");
    match ws.close_code {
        Some(c) => number(&mut out, u64::from(c)),
        None => out.push_str("null"),
    }
    out.push_str(",\"messages_dropped\":");
    number(&mut out, ws.dropped);
    out.push_str(",\"messages\":[");
    for (i, m) in ws.messages().enumerate() {
        if i > 0 {
            out.push(',');
        }
        message(&mut out, m);
    }
    out.push_str("]}");
    Some(out)
}

fn entry_fields(out: &mut String, store: &Store, e: &HttpEntry, redact: bool) {
    let req = &store.request(e);
    let id = e.id.to_string();
    key(out, "uri", true);
    string(out, &format!("{HTTP_PATH}/{id}"));
    key(out, "id", false);
    string(out, &id);
    key(out, "tunnel_name", false);
    string(out, &e.tunnel_name);
    key(out, "remote_addr", false);
    string(out, &e.remote_addr(req));
    key(out, "start", false);
    string(out, &rfc3339(e.start_unix_nanos));
    key(out, "duration", false);
    number(out, e.duration.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)));

    key(out, "request", false);
    out.push('{');
    key(out, "method", true);
    string(out, &req.method);
    key(out, "proto", false);
    string(out, "HTTP/1.1");
    key(out, "headers", false);
    headers(out, &req.headers, redact);
    key(out, "uri", false);
    string(out, &req.uri);
    key(out, "raw", false);
    raw(out, &format!("{} {} HTTP/1.1\r\n", req.method, req.uri), &req.headers, req.body.data(), redact);
    body_fields(out, req.body.size(), req.body.truncated());
    out.push('}');

    key(out, "response", false);
    match &store.response(e) {
        None => out.push_str("null"),
        Some(res) => {
            let reason = http::StatusCode::from_u16(res.status).ok().and_then(|s| s.canonical_reason());
            let status = match reason {
                Some(r) => format!("{} {r}", res.status),
                None => res.status.to_string(),
            };
            out.push('{');
            key(out, "status", true);
            string(out, &status);
            key(out, "status_code", false);
            number(out, u64::from(res.status));
            key(out, "proto", false);
            string(out, "HTTP/1.1");
            key(out, "headers", false);
            headers(out, &res.headers, redact);
            key(out, "raw", false);
            raw(out, &format!("HTTP/1.1 {status}\r\n"), &res.headers, res.body.data(), redact);
            body_fields(out, res.body.size(), res.body.truncated());
            out.push('}');
        }
    }
    key(out, "replay_of", false);
    match e.replay_of {
        Some(r) => string(out, &r.to_string()),
        None => out.push_str("null"),
    }
    key(out, "error", false);
    match &e.error {
        Some(m) => string(out, m),
        None => out.push_str("null"),
    }
    key(out, "websocket", false);
    out.push_str(if e.websocket.is_some() { "true" } else { "false" });
}

fn body_fields(out: &mut String, size: u64, truncated: bool) {
    key(out, "body_size", false);
    number(out, size);
    key(out, "truncated", false);
    out.push_str(if truncated { "true" } else { "false" });
}

fn message(out: &mut String, m: &WsMessage) {
    out.push('{');
    key(out, "direction", true);
    string(out, m.direction.as_str());
    key(out, "time", false);
    string(out, &rfc3339(m.unix_nanos));
    key(out, "opcode", false);
    string(out, if m.binary { "binary" } else { "text" });
    key(out, "size", false);
    number(out, m.size);
    if m.binary {
        key(out, "base64", false);
        out.push('"');
        base64(out, &m.preview);
        out.push('"');
    } else {
        key(out, "text", false);
        string(out, &String::from_utf8_lossy(&m.preview));
    }
    key(out, "truncated", false);
    out.push_str(if m.size > m.preview.len() as u64 { "true" } else { "false" });
    out.push('}');
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

/// `{"Name": ["value", ...]}`, names in canonical case and sorted. (A sorted `Vec`
/// rather than a `BTreeMap`: heads have a few dozen headers, and the map's code was
/// kilobytes of the wasm client.)
fn headers(out: &mut String, headers: &[Header], redact: bool) {
    let mut map: Vec<(String, Vec<String>)> = Vec::new();
    for (name, value) in headers {
        let text = if redact && is_secret(name.as_str()) {
            REDACTED.to_string()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        let name = canonical_name(name.as_str());
        match map.binary_search_by(|(n, _)| n.as_str().cmp(&name)) {
            Ok(i) => map[i].1.push(text),
            Err(i) => map.insert(i, (name, vec![text])),
        }
    }
    out.push('{');
    for (i, (name, values)) in map.iter().enumerate() {
        key(out, name, i == 0);
        out.push('[');
        for (j, v) in values.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            string(out, v);
        }
        out.push(']');
    }
    out.push('}');
}

/// The captured bytes as they would cross the wire, in base64: `head`, headers, a
/// blank line, the body's first bytes.
fn raw(out: &mut String, head: &str, headers: &[Header], body: &[u8], redact: bool) {
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
    out.push('"');
    base64(out, &bytes);
    out.push('"');
}

/// `,"name":` (no comma before the first key of an object).
fn key(out: &mut String, name: &str, first: bool) {
    if !first {
        out.push(',');
    }
    string(out, name);
    out.push(':');
}

fn number(out: &mut String, n: u64) {
    let _ = write!(out, "{n}");
}

/// A JSON string: quotes, backslashes and control characters escaped.
fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64(out: &mut String, data: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    out.reserve(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_strings() {
        let enc = |d: &[u8]| {
            let mut s = String::new();
            base64(&mut s, d);
            s
        };
        assert_eq!(enc(b""), "");
        assert_eq!(enc(b"f"), "Zg==");
        assert_eq!(enc(b"fo"), "Zm8=");
        assert_eq!(enc(b"foo"), "Zm9v");
        assert_eq!(enc(&[1, 2, 3, 255]), "AQID/w==");
        let mut s = String::new();
        string(&mut s, "a\"b\\c\n\u{1}é");
        assert_eq!(s, "\"a\\\"b\\\\c\\n\\u0001é\"");
    }
}
