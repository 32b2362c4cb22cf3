//! The inspector's store: entries, their bounds, WebSocket messages, and the
//! ngrok-shaped JSON.

use std::time::Duration;

use localtunnels_core::inspect::{BodyCapture, Direction, EntryId, Exchange, InspectConfig, Store};
use localtunnels_core::{Header, HeaderName, HeaderValue, Instant};

fn headers(pairs: &[(&'static str, &'static str)]) -> Vec<Header> {
    pairs.iter().map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v))).collect()
}

fn get(store: &mut Store, uri: &str, h: &[Header]) -> EntryId {
    let ex = Exchange { method: "GET", uri: uri.as_bytes(), headers: h, websocket: false, replay_of: None };
    store.begin(Instant::ZERO, 1_406_230_555_927_316_979, ex)
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn an_exchange_is_recorded_step_by_step() {
    let mut store = Store::new(InspectConfig::default(), 0xabcd);
    store.set_tunnel_name("demo");
    let h = headers(&[("x-forwarded-for", "203.0.113.7, 10.0.0.1"), ("accept", "*/*")]);
    let id = get(&mut store, "/a?b=c", &h);
    assert_eq!(id.to_string(), "abcd000000000000");
    assert_eq!(id.to_string().parse::<EntryId>().unwrap(), id);
    let e = store.get(id).unwrap();
    let req = store.request(e);
    assert_eq!((e.remote_addr(&req).as_str(), &*e.tunnel_name), ("203.0.113.7", "demo"));
    assert_eq!((req.method.as_str(), req.uri.as_str(), req.headers), ("GET", "/a?b=c", h));
    assert!(store.response(e).is_none() && e.duration.is_none());
    store.respond(id, 200, &headers(&[("content-type", "text/plain")]));
    store.response_body(id, Instant::from_micros(1500), BodyCapture::of(b"hello", 4));
    let e = store.get(id).unwrap();
    let res = store.response(e).unwrap();
    assert_eq!((res.status, res.body.data(), res.body.size(), res.body.truncated()), (200, &b"hell"[..], 5, true));
    assert_eq!(e.duration, Some(Duration::from_micros(1500)));
    store.clear();
    assert!(store.is_empty() && store.bytes() == 0 && store.get(id).is_none());
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn the_store_stays_within_its_bytes_and_evicts_the_oldest() {
    let config = InspectConfig { max_bytes: 64 * 1024, body_limit: 4096, ..InspectConfig::default() };
    let mut store = Store::new(config, 1);
    let mut ids = Vec::new();
    for i in 0..1000 {
        let id = get(&mut store, &format!("/{i}"), &[]);
        store.respond(id, 200, &[]);
        store.response_body(id, Instant::ZERO, BodyCapture::of(&[7u8; 10_000], 4096));
        assert!(store.bytes() <= 64 * 1024, "{} bytes after {i}", store.bytes());
        ids.push(id);
    }
    assert!(store.get(ids[0]).is_none(), "the oldest entry was evicted");
    assert!(store.get(ids[999]).is_some(), "the newest entry is kept");
    assert!(store.len() > 5, "{} entries kept", store.len());
    let newest: Vec<_> = store.newest_first().map(|e| e.id).collect();
    assert_eq!(newest[0], ids[999]);
    // Updates of an evicted entry are ignored, not misfiled.
    store.respond(ids[0], 500, &[]);
    assert!(store.newest_first().all(|e| e.status == Some(200)));
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn websocket_messages_are_kept_bounded_and_joined_across_fragments() {
    let config = InspectConfig { ws_preview: 8, max_ws_messages: 3, ..InspectConfig::default() };
    let mut store = Store::new(config, 1);
    let ex = Exchange { method: "GET", uri: b"/ws", headers: &[], websocket: true, replay_of: None };
    let id = store.begin(Instant::ZERO, 0, ex);
    store.respond(id, 101, &[]);
    store.ws_message(id, 1, Direction::In, false, true, b"hello ");
    store.ws_message(id, 2, Direction::In, false, false, b"world!");
    let ws = store.get(id).unwrap().websocket.clone().unwrap();
    let ws = ws.lock();
    assert_eq!(ws.len(), 1);
    let only = ws.messages().next().unwrap();
    assert_eq!((only.size, &only.preview[..]), (12, &b"hello wo"[..]));
    drop(ws);
    for i in 0..5u8 {
        store.ws_message(id, 3, Direction::Out, true, true, &[i]);
    }
    store.ws_closed(id, Instant::from_micros(10), Some(1000));
    let e = store.get(id).unwrap();
    let ws = e.websocket.as_ref().unwrap().lock();
    assert_eq!((ws.len(), ws.dropped, ws.close_code), (3, 3, Some(1000)));
    assert_eq!(ws.messages().next_back().unwrap().preview, vec![4]);
    // The evicted messages' buffers, reused, hold nothing of what they held before.
    let previews: Vec<&[u8]> = ws.messages().map(|m| &m.preview[..]).collect();
    assert_eq!(previews, [&[2u8][..], &[3], &[4]]);
    assert_eq!(e.duration, Some(Duration::from_micros(10)));
}

mod json {
    use base64::Engine as _;
    use localtunnels_core::inspect::json::{entry_json, ws_json};

    use super::*;

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn entries_have_ngrok_field_names_and_redaction() {
        let mut store = Store::new(InspectConfig::default(), 7);
        store.set_tunnel_name("demo");
        let id = get(&mut store, "/x", &headers(&[("authorization", "Bearer s3cret"), ("content-type", "a/b")]));
        let pending =
            serde_json::from_str::<serde_json::Value>(&entry_json(&store, store.get(id).unwrap(), false)).unwrap();
        assert!(pending["response"].is_null());
        assert_eq!(pending["uri"], format!("/api/requests/http/{id}"));
        assert_eq!(pending["start"], "2014-07-24T19:35:55.927316979Z");
        assert_eq!(pending["request"]["headers"]["Authorization"][0], "Bearer s3cret");
        store.respond(id, 404, &headers(&[("set-cookie", "a=b")]));
        store.response_body(id, Instant::from_micros(2), BodyCapture::of(b"nope", 100));
        let v = serde_json::from_str::<serde_json::Value>(&entry_json(&store, store.get(id).unwrap(), true)).unwrap();
        for key in ["uri", "id", "tunnel_name", "remote_addr", "start", "duration", "request", "response"] {
            assert!(v.get(key).is_some(), "{key} in {v}");
        }
        assert_eq!(v["duration"], 2000);
        assert_eq!(v["request"]["headers"]["Authorization"][0], "[redacted]");
        assert_eq!(v["response"]["headers"]["Set-Cookie"][0], "[redacted]");
        assert_eq!(
            (v["response"]["status"].as_str(), v["response"]["status_code"].as_u64()),
            (Some("404 Not Found"), Some(404))
        );
        let raw = base64::engine::general_purpose::STANDARD.decode(v["response"]["raw"].as_str().unwrap()).unwrap();
        assert_eq!(String::from_utf8(raw).unwrap(), "HTTP/1.1 404 Not Found\r\nSet-Cookie: [redacted]\r\n\r\nnope");
        let raw = base64::engine::general_purpose::STANDARD.decode(v["request"]["raw"].as_str().unwrap()).unwrap();
        assert!(String::from_utf8(raw).unwrap().starts_with("GET /x HTTP/1.1\r\nAuthorization: [redacted]\r\n"));
        assert!(ws_json(&store, store.get(id).unwrap(), false).is_none());
    }
}
