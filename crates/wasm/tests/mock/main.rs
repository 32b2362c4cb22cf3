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
            Event::Hello(hello) => (server, *hello),
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
        let head = RequestHead { kind, method: method.to_owned().into(), target: target.into(), headers };
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

// The scenarios, by what they exercise; each module uses this harness.
mod http;
mod lifecycle;
