//! The wasm client against a scripted server, with no network: the client's
//! `WebSocket` is a JavaScript double (tests/support/mock.js) whose other end is a core
//! server `Session` driven by the test. Every protocol path runs for real (handshake,
//! streams, flow control, WebSockets, refusal, reconnect), deterministically.
//!
//! Runs under Node (`wasm-pack test --node crates/wasm`) and in Chromium
//! (`WASM_BINDGEN_USE_BROWSER=1 wasm-pack test --headless --chrome crates/wasm`).
#![cfg(target_arch = "wasm32")]

use std::collections::VecDeque;

use bytes::Bytes;
use js_sys::{Array, Promise, Uint8Array};
use localtunnels_core::{
    Config, DecodeLimits, Event, Frame, HeaderName, HeaderValue, Hello, Instant, RefuseReason, RequestHead,
    ResponseHead, Session, StreamId, StreamKind, Welcome,
};
use localtunnels_wasm::TunnelClient;
use serde_json::Value;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen(module = "/tests/support/mock.js")]
extern "C" {
    type MockSocket;
    #[wasm_bindgen(method)]
    fn open(this: &MockSocket);
    #[wasm_bindgen(method)]
    fn deliver(this: &MockSocket, bytes: &[u8]);
    #[wasm_bindgen(method, js_name = failWithoutClose)]
    fn fail_without_close(this: &MockSocket);
    #[wasm_bindgen(method, js_name = dropConnection)]
    fn drop_connection(this: &MockSocket, code: u16);
    #[wasm_bindgen(method, js_name = nextSent)]
    fn next_sent(this: &MockSocket) -> Promise;
    #[wasm_bindgen(method, getter)]
    fn url(this: &MockSocket) -> String;
    #[wasm_bindgen(method, getter)]
    fn protocols(this: &MockSocket) -> JsValue;
    #[wasm_bindgen(method, getter, js_name = closedWith)]
    fn closed_with(this: &MockSocket) -> JsValue;

    #[wasm_bindgen(js_name = delayTimers)]
    fn delay_timers(ms: u32);
    #[wasm_bindgen(js_name = restoreTimers)]
    fn restore_timers();
    fn sleep(ms: u32) -> Promise;

    #[wasm_bindgen(js_name = installMock)]
    fn install_mock();
    #[wasm_bindgen(js_name = nextSocket)]
    fn next_socket() -> Promise;
    fn handlers() -> JsValue;
    #[wasm_bindgen(js_name = openGate)]
    fn open_gate();
    #[wasm_bindgen(js_name = gateCancelCount)]
    fn gate_cancel_count() -> u32;
    #[wasm_bindgen(js_name = seenBySockets)]
    fn seen_by_sockets() -> JsValue;
    fn recorder() -> JsValue;
    #[wasm_bindgen(js_name = cookiesAllowed)]
    fn cookies_allowed() -> bool;
    #[wasm_bindgen(js_name = toJson)]
    fn to_json(v: &JsValue) -> String;
}

const PUBLIC: &str = "http://demo.tunnel.test";

fn get(v: &JsValue, key: &str) -> JsValue {
    js_sys::Reflect::get(v, &key.into()).unwrap()
}

fn json(v: &JsValue) -> Value {
    serde_json::from_str(&to_json(v)).unwrap()
}

fn handler(name: &str) -> JsValue {
    get(&handlers(), name)
}

fn options(extra: &str) -> JsValue {
    let text = format!(r#"{{ "host": "tunnel.test", "port": 8080 {extra} }}"#);
    js_sys::JSON::parse(&text).unwrap()
}

/// A client with a handler and an event recorder.
fn client(extra: &str, request_handler: Option<&str>) -> (TunnelClient, JsValue) {
    install_mock();
    let client = TunnelClient::new(options(extra)).map_err(JsValue::from).unwrap();
    if let Some(h) = request_handler {
        client.on_request(handler(h)).map_err(JsValue::from).unwrap();
    }
    let rec = recorder();
    let listener = get(&rec, "listener").unchecked_into::<js_sys::Function>();
    for name in ["connected", "disconnected", "reconnecting", "request", "response", "error"] {
        client.on(name, listener.call1(&JsValue::NULL, &name.into()).unwrap()).map_err(JsValue::from).unwrap();
    }
    (client, get(&rec, "events"))
}

fn event_names(events: &JsValue) -> Vec<String> {
    Array::from(events).iter().map(|e| get(&e, "name").as_string().unwrap()).collect()
}

/// The server's end of the client's WebSocket.
struct Server {
    ws: MockSocket,
    session: Session,
    stash: VecDeque<Event>,
    pings: usize,
    pongs: u64,
}

impl Server {
    /// Waits for the client's socket, opens it and reads the hello.
    async fn hello(config: Config) -> (Server, Hello) {
        let ws: MockSocket = JsFuture::from(next_socket()).await.unwrap().unchecked_into();
        assert_eq!(ws.url(), "ws://tunnel.test:8080/api/tunnel");
        assert_eq!(ws.protocols().as_string().as_deref(), Some("localtunnels.v1"));
        ws.open();
        let mut server =
            Server { ws, session: Session::server(config, Instant::ZERO), stash: VecDeque::new(), pings: 0, pongs: 0 };
        match server.next_event().await {
            Event::Hello(hello) => (server, hello),
            other => panic!("expected a hello, got {other:?}"),
        }
    }

    /// Handshake with the default config, granting `name`.
    async fn accept(name: &str) -> Server {
        let (mut server, hello) = Server::hello(Config::default()).await;
        assert_eq!(hello.client_kind, "wasm");
        server.welcome(name, "secret-1");
        server
    }

    fn welcome(&mut self, name: &str, token: &str) {
        let welcome = Welcome {
            name: name.to_string(),
            url: format!("http://{name}.tunnel.test"),
            reconnect_token: token.to_string(),
            ..Welcome::default()
        };
        self.session.accept(welcome, Instant::ZERO);
        self.flush();
    }

    fn flush(&mut self) {
        while let Some(frame) = self.session.poll_transmit() {
            self.ws.deliver(&frame);
        }
    }

    /// Reads one message from the client into the session.
    async fn read(&mut self) {
        let msg = JsFuture::from(self.ws.next_sent()).await.unwrap();
        assert!(!msg.is_null(), "the client closed its WebSocket");
        let bytes = Bytes::from(Uint8Array::new(&msg).to_vec());
        let limits = DecodeLimits { max_frame: 1 << 20, max_header_bytes: 1 << 16 };
        match Frame::decode(bytes.clone(), &limits) {
            Ok(Frame::Ping(_)) => self.pings += 1,
            Ok(Frame::Pong(_)) => self.pongs += 1,
            _ => {}
        }
        self.session.handle_message(Instant::ZERO, bytes).expect("the client sent a valid frame");
        self.flush();
    }

    async fn next_event(&mut self) -> Event {
        loop {
            if let Some(e) = self.stash.pop_front().or_else(|| self.session.poll_event()) {
                return e;
            }
            self.read().await;
        }
    }

    /// The next event of stream `id`; events of other streams wait in the stash.
    async fn next_for(&mut self, id: StreamId) -> Event {
        if let Some(i) = self.stash.iter().position(|e| stream_of(e) == Some(id)) {
            return self.stash.remove(i).unwrap();
        }
        loop {
            while let Some(e) = self.session.poll_event() {
                if stream_of(&e) == Some(id) {
                    return e;
                }
                self.stash.push_back(e);
            }
            self.read().await;
        }
    }

    fn open(&mut self, kind: StreamKind, method: &str, target: &str, headers: &[(&str, &str)], end: bool) -> StreamId {
        let headers = headers
            .iter()
            .map(|(n, v)| (HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap()))
            .collect();
        let head = RequestHead { kind, method: method.to_string(), target: target.to_string(), headers };
        let id = self.session.open(head, end).unwrap();
        self.flush();
        id
    }

    fn get(&mut self, target: &str) -> StreamId {
        self.open(StreamKind::Http, "GET", target, &[("host", "demo.tunnel.test")], true)
    }

    /// Sends `data` on `id` under flow control.
    async fn send(&mut self, id: StreamId, mut data: Bytes, end: bool) {
        while !data.is_empty() {
            let n = self.session.send_data(id, data.clone()).unwrap();
            self.flush();
            data = data.slice(n..);
            if !data.is_empty() {
                match self.next_for(id).await {
                    Event::Writable { .. } => {}
                    other => panic!("expected Writable, got {other:?}"),
                }
            }
        }
        if end {
            self.session.finish(id).unwrap();
            self.flush();
        }
    }

    async fn head(&mut self, id: StreamId) -> (ResponseHead, bool) {
        match self.next_for(id).await {
            Event::Response { head, end, .. } => (head, end),
            other => panic!("expected a response head on stream {id}, got {other:?}"),
        }
    }

    /// The next body chunk of `id` (released), and whether it was the last.
    async fn chunk(&mut self, id: StreamId) -> (Vec<u8>, bool) {
        match self.next_for(id).await {
            Event::Data { data, end, .. } => {
                self.session.release(id, data.len());
                self.flush();
                (data.to_vec(), end)
            }
            other => panic!("expected data on stream {id}, got {other:?}"),
        }
    }

    async fn response(&mut self, id: StreamId) -> (ResponseHead, Vec<u8>) {
        let (head, mut end) = self.head(id).await;
        let mut body = Vec::new();
        while !end {
            let (data, last) = self.chunk(id).await;
            body.extend_from_slice(&data);
            end = last;
        }
        (head, body)
    }

    /// A whole WebSocket message from the client, reassembled.
    async fn ws_message(&mut self, id: StreamId) -> (bool, Vec<u8>) {
        let mut message = Vec::new();
        loop {
            match self.next_for(id).await {
                Event::WsMessage { binary, fin, data, .. } => {
                    self.session.release(id, data.len());
                    self.flush();
                    message.extend_from_slice(&data);
                    if fin {
                        return (binary, message);
                    }
                }
                other => panic!("expected a WebSocket message, got {other:?}"),
            }
        }
    }
}

fn stream_of(e: &Event) -> Option<StreamId> {
    match e {
        Event::Response { id, .. }
        | Event::Data { id, .. }
        | Event::Trailers { id, .. }
        | Event::WsMessage { id, .. }
        | Event::WsClose { id, .. }
        | Event::Reset { id, .. }
        | Event::Writable { id } => Some(*id),
        _ => None,
    }
}

fn header<'a>(head: &'a ResponseHead, name: &str) -> Vec<&'a [u8]> {
    head.headers.iter().filter(|(n, _)| n.as_str().eq_ignore_ascii_case(name)).map(|(_, v)| v.as_bytes()).collect()
}

#[wasm_bindgen_test]
async fn a_request_reaches_the_handler_and_its_response_comes_back() {
    let (client, events) = client("", Some("describe"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let mut server = Server::accept("demo").await;
    assert_eq!(JsFuture::from(connecting).await.unwrap().as_string().unwrap(), PUBLIC);
    assert_eq!(client.url().as_deref(), Some(PUBLIC));
    assert_eq!(client.name().as_deref(), Some("demo"));
    assert!(client.connected());

    let headers = [("host", "demo.tunnel.test"), ("x-repeat", "a"), ("x-repeat", "b"), ("accept", "*/*")];
    let id = server.open(StreamKind::Http, "GET", "/hello?x=1", &headers, true);
    let (head, body) = server.response(id).await;
    assert_eq!(head.status, 201);
    if cookies_allowed() {
        assert_eq!(header(&head, "set-cookie"), [&b"a=1; Path=/"[..], b"b=2, c=3"], "set-cookie stays separate");
    }
    assert_eq!(header(&head, "x-multi"), [&b"one, two"[..]]);
    let seen: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen["method"], "GET");
    assert_eq!(seen["url"], format!("{PUBLIC}/hello?x=1"));
    assert!(seen["headers"].as_array().unwrap().contains(&serde_json::json!(["x-repeat", "a, b"])), "{seen}");
    assert_eq!(seen["body"], "");

    let names = event_names(&events);
    assert_eq!(names, ["connected", "request", "response"]);
    let log = json(&events);
    assert_eq!(log[1]["payload"]["url"], format!("{PUBLIC}/hello?x=1"));
    assert_eq!(log[2]["payload"]["status"], 201);

    // The client reuses the JavaScript strings of names and values it saw last time:
    // a value that changed must still arrive as it is now.
    let headers = [("host", "demo.tunnel.test"), ("x-repeat", "c"), ("accept", "text/html")];
    let id = server.open(StreamKind::Http, "GET", "/again", &headers, true);
    let (_, body) = server.response(id).await;
    let seen: Value = serde_json::from_slice(&body).unwrap();
    let seen = seen["headers"].as_array().unwrap();
    assert!(seen.contains(&serde_json::json!(["x-repeat", "c"])), "{seen:?}");
    assert!(seen.contains(&serde_json::json!(["accept", "text/html"])), "{seen:?}");
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn a_handler_may_answer_with_a_plain_object_to_set_cookies_anywhere() {
    let (client, _events) = client("", Some("plain"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let mut server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();
    let id = server.get("/");
    let (head, body) = server.response(id).await;
    assert_eq!(head.status, 202);
    assert_eq!(header(&head, "set-cookie"), [&b"a=1"[..], b"b=2, c=3"]);
    assert_eq!(header(&head, "x-kind"), [&b"plain"[..]]);
    assert_eq!(body, b"plain body");

    client.on_request(handler("record")).map_err(JsValue::from).unwrap();
    let id = server.get("/");
    let (head, body) = server.response(id).await;
    assert_eq!(head.status, 200);
    assert_eq!(header(&head, "set-cookie"), [&b"x=1"[..], b"y=2"]);
    assert_eq!(header(&head, "content-length"), [&b"3"[..]]);
    assert_eq!(body, [1, 2, 3]);
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn request_and_response_bodies_stream_both_ways() {
    let (client, _events) = client("", Some("streamEcho"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let mut server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();

    let id = server.open(StreamKind::Http, "POST", "/echo", &[("content-type", "text/plain")], false);
    server.send(id, Bytes::from_static(b"abc"), false).await;
    // The answer to the first chunk arrives while the visitor is still sending.
    let (head, end) = server.head(id).await;
    assert_eq!((head.status, end), (200, false));
    assert_eq!(server.chunk(id).await, (b"ABC".to_vec(), false));
    server.send(id, Bytes::from_static(b"def"), true).await;
    let mut rest = Vec::new();
    loop {
        let (data, end) = server.chunk(id).await;
        rest.extend(data);
        if end {
            break;
        }
    }
    assert_eq!(rest, b"DEF");
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn large_bodies_move_under_flow_control() {
    let (client, _events) = client("", Some("big"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let mut server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();

    // Download: 1 MiB, four times the stream window.
    let id = server.get("/big");
    let (head, body) = server.response(id).await;
    assert_eq!(head.status, 200);
    assert_eq!(body.len(), 1024 * 1024);
    assert!(body.iter().enumerate().all(|(i, &b)| usize::from(b) == i % 251));

    // Upload: 1 MiB that the handler counts.
    client.on_request(handler("count")).map_err(JsValue::from).unwrap();
    let id = server.open(StreamKind::Http, "POST", "/count", &[], false);
    server.send(id, Bytes::from(vec![9u8; 1024 * 1024]), true).await;
    let (head, body) = server.response(id).await;
    assert_eq!((head.status, &body[..]), (200, &b"1048576"[..]));
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn a_streamed_response_flows_chunk_by_chunk() {
    let (client, _events) = client("", Some("gated"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let mut server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();

    let id = server.get("/events");
    let (head, end) = server.head(id).await;
    assert_eq!((head.status, end), (200, false));
    assert_eq!(header(&head, "content-type"), [&b"text/event-stream"[..]]);
    // Each chunk only exists once the previous one has reached the visitor.
    for i in 0..3 {
        open_gate();
        assert_eq!(server.chunk(id).await, (format!("data: {i}\n\n").into_bytes(), false));
    }
    open_gate();
    assert_eq!(server.chunk(id).await, (Vec::new(), true));
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn a_visitor_leaving_cancels_the_response_body_quietly() {
    let (client, events) = client("", Some("gated"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let mut server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();

    let id = server.get("/events");
    assert_eq!(server.head(id).await.0.status, 200);
    open_gate();
    assert_eq!(server.chunk(id).await, (b"data: 0\n\n".to_vec(), false));
    let cancels = gate_cancel_count();
    server.session.reset(id, localtunnels_core::ResetCode::Cancel, "the visitor left");
    server.flush();
    // The client handles frames in order: once this answer is back, it has seen the reset.
    client.on_request(handler("describe")).map_err(JsValue::from).unwrap();
    let probe = server.get("/probe");
    assert_eq!(server.response(probe).await.0.status, 201);
    assert_eq!(gate_cancel_count(), cancels + 1, "the response body was cancelled");
    assert!(!event_names(&events).contains(&"error".to_string()));
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn handler_failures_become_502_and_504_and_others_keep_being_served() {
    let (client, events) = client(r#", "responseTimeout": 200"#, Some("failing"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let mut server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();

    // The visitor sees a generic page with a request id; the exception text goes to
    // the `error` event under the same id.
    let cases = [
        ("/throw", 502, "boom"),
        ("/reject", 502, "nope"),
        ("/not-a-response", 502, "returned number, not a Response"),
        ("/silent", 504, "did not answer within 200 ms"),
        ("/ok", 200, "still serving"),
    ];
    let ids: Vec<StreamId> = cases.iter().map(|(path, _, _)| server.get(path)).collect();
    let mut failed = Vec::new();
    for (id, (path, status, text)) in ids.into_iter().zip(cases) {
        let (head, body) = server.response(id).await;
        let body = String::from_utf8(body).unwrap();
        assert_eq!(head.status, status, "{path}: {body}");
        if status == 200 {
            assert!(body.contains(text), "{path}: {body}");
            continue;
        }
        assert!(!body.contains(text), "{path} leaks the detail: {body}");
        assert_eq!(header(&head, "content-type"), [&b"text/plain; charset=utf-8"[..]], "{path}");
        let request_id = body.trim_end().rsplit("(request id ").next().unwrap().trim_end_matches(')').to_string();
        assert_eq!(request_id.len(), 16, "{path}: {body}");
        failed.push((request_id, text));
    }
    let messages: Vec<String> = Array::from(&events)
        .iter()
        .filter(|e| get(e, "name").as_string().as_deref() == Some("error"))
        .map(|e| get(&get(&e, "payload"), "message").as_string().unwrap())
        .collect();
    assert_eq!(messages.len(), 4, "{messages:?}");
    for (request_id, text) in failed {
        assert!(
            messages.iter().any(|m| m.contains(&request_id) && m.contains(text)),
            "{request_id} {text}: {messages:?}"
        );
    }
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn expose_errors_shows_the_exception_and_browsers_get_html() {
    let (client, _events) = client(r#", "exposeErrors": true"#, Some("failing"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let mut server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();
    let id = server.open(StreamKind::Http, "GET", "/throw", &[("accept", "text/html,*/*;q=0.8")], true);
    let (head, body) = server.response(id).await;
    let body = String::from_utf8(body).unwrap();
    assert_eq!(head.status, 502);
    assert_eq!(header(&head, "content-type"), [&b"text/html; charset=utf-8"[..]]);
    assert!(body.starts_with("<!doctype html>") && body.contains("boom") && body.contains("Request id"), "{body}");
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn a_websocket_reaches_the_handler_and_messages_flow_both_ways() {
    let (client, _events) = client("", None);
    client.on_web_socket(handler("wsEcho")).map_err(JsValue::from).unwrap();
    let connecting = client.connect(JsValue::UNDEFINED);
    let mut server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();

    let offer = [("host", "demo.tunnel.test"), ("sec-websocket-protocol", "chat, superchat")];
    let id = server.open(StreamKind::WebSocket, "GET", "/chat", &offer, false);
    let (head, _) = server.head(id).await;
    assert_eq!(head.status, 101);
    assert_eq!(header(&head, "sec-websocket-protocol"), [&b"chat"[..]]);

    server.session.send_ws(id, false, Bytes::from_static("héllo".as_bytes()), true).unwrap();
    server.flush();
    assert_eq!(server.ws_message(id).await, (false, "héllo".as_bytes().to_vec()));

    // A binary message in two fragments comes back whole.
    server.session.send_ws(id, true, Bytes::from_static(&[1, 2, 3]), false).unwrap();
    server.session.send_ws(id, true, Bytes::from_static(&[4, 5]), true).unwrap();
    server.flush();
    assert_eq!(server.ws_message(id).await, (true, vec![1, 2, 3, 4, 5]));

    server.session.close_ws(id, 1000, "done").unwrap();
    server.flush();
    match server.next_for(id).await {
        Event::WsClose { code, .. } => assert_eq!(code, 1000),
        other => panic!("expected the close echoed, got {other:?}"),
    }
    let seen = json(&seen_by_sockets());
    assert_eq!(seen[0]["url"], "ws://demo.tunnel.test/chat");
    assert_eq!(seen[0]["protocol"], "chat");
    assert_eq!(seen[0]["requestUrl"], format!("{PUBLIC}/chat"));
    assert_eq!(seen[1], serde_json::json!({ "closed": 1000, "reason": "done", "clean": true }));
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn websocket_messages_wait_for_a_late_listener_and_handlers_close_with_their_code() {
    let (client, _events) = client("", Some("describe"));
    client.on_web_socket(handler("wsLate")).map_err(JsValue::from).unwrap();
    let connecting = client.connect(JsValue::UNDEFINED);
    let mut server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();

    let id = server.open(StreamKind::WebSocket, "GET", "/late", &[], false);
    assert_eq!(server.head(id).await.0.status, 101);
    server.session.send_ws(id, false, Bytes::from_static(b"early"), true).unwrap();
    server.flush();
    assert_eq!(server.ws_message(id).await, (false, b"late:early".to_vec()));

    client.on_web_socket(handler("wsCloser")).map_err(JsValue::from).unwrap();
    let id = server.open(StreamKind::WebSocket, "GET", "/closer", &[], false);
    assert_eq!(server.head(id).await.0.status, 101);
    server.session.send_ws(id, false, Bytes::from_static(b"bye?"), true).unwrap();
    server.flush();
    match server.next_for(id).await {
        Event::WsClose { code, reason, .. } => assert_eq!((code, reason.as_str()), (4001, "bye")),
        other => panic!("expected the handler's close, got {other:?}"),
    }
    server.session.close_ws(id, 4001, "").unwrap();
    server.flush();
    // The close event fired once the handshake completed; an HTTP exchange after it
    // proves the client has processed it.
    let probe = server.get("/probe");
    assert_eq!(server.response(probe).await.0.status, 201);
    assert_eq!(json(&seen_by_sockets()), serde_json::json!([{ "closed": 4001, "reason": "" }]));
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn a_websocket_without_a_handler_is_refused_with_404() {
    let (client, _events) = client("", Some("describe"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let mut server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();
    let id = server.open(StreamKind::WebSocket, "GET", "/ws", &[], false);
    let (head, body) = server.response(id).await;
    assert_eq!(head.status, 404);
    assert!(String::from_utf8(body).unwrap().contains("accepts no WebSockets"));
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn a_refusal_rejects_connect_with_its_reason() {
    let (client, _events) = client(r#", "subdomain": "demo""#, Some("describe"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let (mut server, hello) = Server::hello(Config::default()).await;
    assert_eq!(hello.name, "demo");
    server.session.refuse(RefuseReason::NameTaken, "demo is taken");
    server.flush();
    let err = JsFuture::from(connecting).await.unwrap_err();
    assert_eq!(get(&err, "reason").as_string().as_deref(), Some("name_taken"));
    let message = get(&err, "message").as_string().unwrap();
    assert!(message.contains("demo is taken") && message.contains("name_taken"), "{message}");
    assert!(!client.connected());
}

#[wasm_bindgen_test]
async fn an_unreachable_server_rejects_connect() {
    let (client, _events) = client("", Some("describe"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let ws: MockSocket = JsFuture::from(next_socket()).await.unwrap().unchecked_into();
    ws.drop_connection(1006);
    let err = JsFuture::from(connecting).await.unwrap_err();
    assert_eq!(get(&err, "reason").as_string().as_deref(), Some("unreachable"));
    let message = get(&err, "message").as_string().unwrap();
    assert!(message.contains("could not connect to ws://tunnel.test:8080/api/tunnel"), "{message}");
}

#[wasm_bindgen_test]
async fn it_reconnects_by_itself_and_keeps_its_name() {
    let (client, events) = client("", Some("describe"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();

    server.ws.drop_connection(1006);
    let (mut server, hello) = Server::hello(Config::default()).await;
    assert_eq!((hello.name.as_str(), hello.reconnect_token.as_str()), ("demo", "secret-1"));
    server.welcome("demo", "secret-2");
    let id = server.get("/again");
    assert_eq!(server.response(id).await.0.status, 201);
    assert_eq!(client.url().as_deref(), Some(PUBLIC));
    assert_eq!(event_names(&events), ["connected", "disconnected", "reconnecting", "connected", "request", "response"]);
    let log = json(&events);
    assert_eq!(log[2]["payload"]["attempt"], 1);
    assert!(log[2]["payload"]["delay"].as_u64().unwrap() <= 500);

    // The next drop asks with the newest token.
    server.ws.drop_connection(1006);
    let (_server, hello) = Server::hello(Config::default()).await;
    assert_eq!(hello.reconnect_token, "secret-2");
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn it_sends_heartbeats_on_the_servers_schedule() {
    let (client, _events) = client("", Some("describe"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let config = Config { ping_interval: std::time::Duration::from_millis(20), ..Config::default() };
    let (mut server, _) = Server::hello(config).await;
    server.welcome("demo", "t");
    JsFuture::from(connecting).await.unwrap();
    while server.pings < 2 {
        server.read().await;
    }
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn close_ends_the_session_cleanly() {
    let (client, events) = client("", Some("describe"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let mut server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();
    let _ = client.close();
    match server.next_event().await {
        Event::Closed { by_peer, .. } => assert!(by_peer),
        other => panic!("expected the client's close, got {other:?}"),
    }
    assert!(!client.connected());
    assert_eq!(get(&server.ws.closed_with(), "code").as_f64(), Some(1000.0));
    assert_eq!(event_names(&events), ["connected", "disconnected"]);
    assert_eq!(json(&events)[1]["payload"]["code"], "normal");
}

#[wasm_bindgen_test]
async fn an_error_event_without_a_close_event_ends_the_connection() {
    // Node 22's WebSocket fires `error` and never `close`: the first connect still rejects...
    let (client, _events) = client("", Some("describe"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let ws: MockSocket = JsFuture::from(next_socket()).await.unwrap().unchecked_into();
    ws.fail_without_close();
    let err = JsFuture::from(connecting).await.unwrap_err();
    assert_eq!(get(&err, "reason").as_string().as_deref(), Some("unreachable"));

    // ...and a live tunnel reconnects.
    let connecting = client.connect(JsValue::UNDEFINED);
    let server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();
    server.ws.fail_without_close();
    let (mut server, hello) = Server::hello(Config::default()).await;
    assert_eq!(hello.reconnect_token, "secret-1");
    server.welcome("demo", "secret-2");
    let id = server.get("/back");
    assert_eq!(server.response(id).await.0.status, 201);
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn the_reconnect_token_is_readable_and_can_be_presented_by_a_new_client() {
    let (first, _events) = client(r#", "subdomain": "demo""#, Some("describe"));
    assert_eq!(first.reconnect_token(), None);
    let connecting = first.connect(JsValue::UNDEFINED);
    let server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();
    assert_eq!(first.reconnect_token().as_deref(), Some("secret-1"));
    // The process dies without a word; a new one presents the token.
    server.ws.drop_connection(1006);
    let _ = first.close();

    let extra = r#", "subdomain": "demo", "reconnectToken": "secret-1""#;
    let (second, _events) = client(extra, Some("describe"));
    let connecting = second.connect(JsValue::UNDEFINED);
    let (mut server, hello) = Server::hello(Config::default()).await;
    assert_eq!((hello.name.as_str(), hello.reconnect_token.as_str()), ("demo", "secret-1"));
    server.welcome("demo", "secret-2");
    JsFuture::from(connecting).await.unwrap();
    assert_eq!(second.reconnect_token().as_deref(), Some("secret-2"));
    let _ = second.close();
}

#[wasm_bindgen_test]
async fn a_server_url_close_as_a_promise_and_an_abort_signal() {
    install_mock();
    let options = js_sys::JSON::parse(r#"{ "server": "ws://tunnel.test:8080" }"#).unwrap();
    let client = TunnelClient::new(options).map_err(JsValue::from).unwrap();
    client.on_request(handler("describe")).map_err(JsValue::from).unwrap();
    let connecting = client.connect(JsValue::UNDEFINED);
    let mut server = Server::accept("demo").await; // checks the URL the server option made
    JsFuture::from(connecting).await.unwrap();
    // close() resolves once the socket has closed.
    JsFuture::from(client.close()).await.unwrap();
    assert_eq!(get(&server.ws.closed_with(), "code").as_f64(), Some(1000.0));
    assert!(matches!(server.next_event().await, Event::Closed { by_peer: true, .. }));

    // An aborted signal rejects a pending connect with its reason and closes the tunnel.
    let abort = web_sys::AbortController::new().unwrap();
    let with_signal = js_sys::Object::new();
    js_sys::Reflect::set(&with_signal, &"signal".into(), &abort.signal()).unwrap();
    let connecting = client.connect(with_signal.clone().into());
    let ws: MockSocket = JsFuture::from(next_socket()).await.unwrap().unchecked_into();
    abort.abort_with_reason(&"stop now".into());
    let err = JsFuture::from(connecting).await.unwrap_err();
    assert_eq!(err.as_string().as_deref(), Some("stop now"));
    assert!(!ws.closed_with().is_null(), "the socket was closed");
    assert!(!client.connected());

    // A signal aborted already: rejected at once, nothing dialled.
    let err = JsFuture::from(client.connect(with_signal.into())).await.unwrap_err();
    assert_eq!(err.as_string().as_deref(), Some("stop now"));
}

#[wasm_bindgen_test]
async fn the_session_lives_on_the_servers_pings_while_the_clients_timers_run_late() {
    // A hidden browser tab runs its timers late (Chromium: about once a minute). Here every
    // timer the client sets fires 400 ms late, with a 150 ms idle timeout from the server.
    let (client, events) = client("", Some("describe"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let config = Config { idle_timeout: std::time::Duration::from_millis(150), ..Config::default() };
    let (mut server, _) = Server::hello(config).await;
    server.welcome("demo", "t");
    JsFuture::from(connecting).await.unwrap();
    delay_timers(400);
    // The server pings every 40 ms for 1.2 s, longer than the timeout and the delay together:
    // each ping is answered from the message handler, and the session stays up.
    for seq in 1..=30u64 {
        server.ws.deliver(&Frame::Ping(seq).encode());
        while server.pongs < seq {
            server.read().await;
        }
        JsFuture::from(sleep(40)).await.unwrap();
    }
    assert!(client.connected());
    assert_eq!(event_names(&events), ["connected"]);
    // A server that falls silent is still noticed, by a timer that fires late (in a
    // browser the floor of 75 s applies instead of 150 ms: the tunnel stays up there).
    if get(&js_sys::global(), "document").is_undefined() {
        while client.connected() {
            JsFuture::from(sleep(50)).await.unwrap();
        }
        assert_eq!(event_names(&events)[1], "disconnected");
        assert_eq!(json(&events)[1]["payload"]["code"], "timeout");
    }
    restore_timers();
    let _ = client.close();
}

fn construct_error(options: JsValue) -> String {
    let shown = format!("{options:?}");
    let Err(err) = TunnelClient::new(options) else { panic!("{shown} was accepted") };
    let err = JsValue::from(err);
    get(&err, "message").as_string().unwrap()
}

#[wasm_bindgen_test]
fn options_are_checked_with_clear_messages() {
    let parse = |s: &str| js_sys::JSON::parse(s).unwrap();
    assert!(construct_error(JsValue::UNDEFINED).contains("needs an options object"));
    assert!(construct_error(parse("{}")).contains("`server` or `host` is required"));
    assert!(construct_error(parse(r#"{"server": "tunnel.test"}"#)).contains("`server` must be a URL"));
    let both = construct_error(parse(r#"{"server": "https://x.dev", "port": 443}"#));
    assert!(both.contains("either `server` or `port`"), "{both}");
    assert!(construct_error(parse(r#"{"host": "https://x.dev"}"#)).contains("without a scheme"));
    assert!(construct_error(parse(r#"{"host": "x.dev", "port": 70000}"#)).contains("`port` must be a whole number"));
    assert!(construct_error(parse(r#"{"host": "x.dev", "port": "80"}"#)).contains("`port` must be a number"));
    assert!(construct_error(parse(r#"{"host": "x.dev", "subDomain": "a"}"#)).contains("unknown option `subDomain`"));
    assert!(construct_error(parse(r#"{"host": "x.dev", "onRequest": 3}"#)).contains("must be a function"));
    assert!(construct_error(parse(r#"{"host": "x.dev", "responseTimeout": -1}"#)).contains("responseTimeout"));

    let client = TunnelClient::new(parse(r#"{"host": "x.dev"}"#)).map_err(JsValue::from).unwrap();
    let err = JsValue::from(client.on_request(JsValue::from(5)).unwrap_err());
    assert!(get(&err, "message").as_string().unwrap().contains("must be a function"));
    let err = JsValue::from(client.on("bogus", handler("describe")).unwrap_err());
    assert!(get(&err, "message").as_string().unwrap().contains("unknown event \"bogus\""));
    let err = JsValue::from(localtunnels_wasm::forward("localhost:8000").unwrap_err());
    assert!(get(&err, "message").as_string().unwrap().contains("http:// or https://"));
}
