//! A visitor's WebSocket, handed to the `onWebSocket` handler as a `TunnelSocket`:
//! an object shaped like the browser's `WebSocket` (`send`, `close`, `onmessage`,
//! `onclose`, `readyState`, `protocol`, `url`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, SEC_WEBSOCKET_PROTOCOL};
use js_sys::{Function, Promise};
use localtunnels_core::{Header, RequestHead, ResponseHead, StreamId};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{Request, RequestInit};

use crate::http::{headers_of, join_url};
use crate::js;
use crate::tunnel::Slot;
use crate::tunnel::{Kind, Tunnel};

const OPEN: u16 = 1;
const CLOSING: u16 = 2;
const CLOSED: u16 = 3;

/// Largest message reassembled from fragments.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// Most bytes of complete messages kept while no `message` listener is set.
const MAX_BACKLOG: usize = 4 * 1024 * 1024;

/// A visitor's WebSocket, as seen by the `onWebSocket` handler.
#[wasm_bindgen(skip_typescript)]
pub struct TunnelSocket {
    inner: Rc<SocketInner>,
}

impl std::fmt::Debug for TunnelSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelSocket").field("url", &self.inner.url).field("id", &self.inner.id).finish()
    }
}

/// The state of one tunneled WebSocket, shared with the stream table.
pub(crate) struct SocketInner {
    tunnel: Weak<Tunnel>,
    gen: u64,
    id: StreamId,
    url: String,
    protocol: String,
    ready_state: Cell<u16>,
    onmessage: RefCell<Option<Function>>,
    onclose: RefCell<Option<Function>>,
    onerror: RefCell<Option<Function>>,
    listeners: RefCell<Vec<(&'static str, Function)>>,
    /// Messages (or their rest) waiting for send credit.
    outbox: RefCell<VecDeque<(bool, Bytes)>>,
    buffered: Cell<usize>,
    /// `close()` was called while the outbox was not empty.
    close_after: RefCell<Option<(u16, String)>>,
    /// A message being reassembled: binary flag and bytes so far.
    partial: RefCell<Option<(bool, Vec<u8>)>>,
    /// Complete messages that arrived before any `message` listener was set.
    backlog: RefCell<VecDeque<JsValue>>,
    backlog_bytes: Cell<usize>,
    sent_close: Cell<bool>,
    got_close: Cell<bool>,
}

/// A visitor opened WebSocket stream `id`: accept it and call the handler, or refuse.
pub(crate) fn on_open(t: &Rc<Tunnel>, gen: u64, id: StreamId, head: RequestHead) {
    let (base, handler) = {
        let st = t.st.borrow();
        (st.url.clone().unwrap_or_default(), st.on_web_socket.clone())
    };
    let http_url = join_url(&base, &head.target);
    let url = ws_url(&http_url);
    let event = js::object(&[
        ("id", JsValue::from(id)),
        ("method", JsValue::from_str(&head.method)),
        ("url", JsValue::from_str(&url)),
        ("websocket", JsValue::TRUE),
    ]);
    t.emit(Kind::Request, &event);
    let response = |status: u16| {
        js::object(&[
            ("id", JsValue::from(id)),
            ("method", JsValue::from_str(&head.method)),
            ("url", JsValue::from_str(&url)),
            ("status", JsValue::from(status)),
            ("duration", JsValue::from(0)),
        ])
    };

    let Some(handler) = handler else {
        let headers: Vec<Header> = vec![(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))];
        let refused = t.with_conn(gen, |c| {
            c.session.respond(id, ResponseHead { status: 404, headers }, false)?;
            c.session.send_data(id, Bytes::from_static(b"404 Not Found: this tunnel accepts no WebSockets\n"))?;
            c.session.finish(id)
        });
        if refused == Some(Ok(())) {
            t.emit(Kind::Response, &response(404));
        }
        return;
    };

    let protocol = offered_protocols(&head.headers).into_iter().next().unwrap_or_default();
    let mut headers: Vec<Header> = Vec::new();
    if let Ok(value) = HeaderValue::from_str(&protocol) {
        if !protocol.is_empty() {
            headers.push((SEC_WEBSOCKET_PROTOCOL, value));
        }
    }
    let inner = Rc::new(SocketInner {
        tunnel: Rc::downgrade(t),
        gen,
        id,
        url: url.clone(),
        protocol,
        ready_state: Cell::new(OPEN),
        onmessage: RefCell::new(None),
        onclose: RefCell::new(None),
        onerror: RefCell::new(None),
        listeners: RefCell::new(Vec::new()),
        outbox: RefCell::new(VecDeque::new()),
        buffered: Cell::new(0),
        close_after: RefCell::new(None),
        partial: RefCell::new(None),
        backlog: RefCell::new(VecDeque::new()),
        backlog_bytes: Cell::new(0),
        sent_close: Cell::new(false),
        got_close: Cell::new(false),
    });
    let accepted = t.with_conn(gen, |c| {
        let ok = c.session.respond(id, ResponseHead { status: 101, headers }, false).is_ok();
        if ok {
            c.streams.insert(id, Slot::Ws(inner.clone()));
        }
        ok
    });
    if accepted != Some(true) {
        return;
    }
    t.emit(Kind::Response, &response(101));

    let request = upgrade_request(&http_url, &head.headers);
    let socket: JsValue = TunnelSocket { inner: inner.clone() }.into();
    match handler.call2(&socket, &request) {
        Err(e) => inner.handler_failed(t, &e),
        Ok(returned) => {
            if returned.has_type::<Promise>() || js::as_function(&js::get(&returned, "then")).is_some() {
                let inner = inner.clone();
                let t = Rc::downgrade(t);
                spawn_local(async move {
                    if let (Err(e), Some(t)) = (JsFuture::from(Promise::resolve(&returned)).await, t.upgrade()) {
                        inner.handler_failed(&t, &e);
                    }
                });
            }
        }
    }
}

/// A message fragment for stream `id`.
pub(crate) fn on_message(t: &Rc<Tunnel>, gen: u64, id: StreamId, binary: bool, fin: bool, data: Bytes) {
    let n = data.len();
    let socket = t
        .with_conn(gen, |c| {
            // Delivered messages cannot be paused (onmessage is synchronous), so the
            // window is granted back as soon as the bytes are here; size limits bound memory.
            c.session.release(id, n);
            match c.streams.get(&id) {
                Some(Slot::Ws(s)) => Some(s.clone()),
                _ => None,
            }
        })
        .flatten();
    let Some(socket) = socket else { return };
    if socket.ready_state.get() == CLOSED {
        return;
    }
    let complete = {
        let mut partial = socket.partial.borrow_mut();
        let (first_binary, mut bytes) = partial.take().unwrap_or((binary, Vec::new()));
        bytes.extend_from_slice(&data);
        if bytes.len() > MAX_MESSAGE {
            None
        } else if fin {
            Some(Some((first_binary, bytes)))
        } else {
            *partial = Some((first_binary, bytes));
            Some(None)
        }
    };
    match complete {
        None => socket.fail_close(t, 1009, "message too big"),
        Some(None) => {}
        Some(Some((true, bytes))) => socket.deliver(js::array_buffer(&bytes).into(), bytes.len()),
        Some(Some((false, bytes))) => match String::from_utf8(bytes) {
            Ok(text) => {
                let len = text.len();
                socket.deliver(JsValue::from_str(&text), len)
            }
            Err(_) => socket.fail_close(t, 1007, "a text message is not valid UTF-8"),
        },
    }
}

/// The visitor closed its side of stream `id`.
pub(crate) fn on_peer_close(t: &Rc<Tunnel>, gen: u64, id: StreamId, code: u16, reason: &str) {
    let socket = t
        .with_conn(gen, |c| match c.streams.get(&id) {
            Some(Slot::Ws(s)) => Some(s.clone()),
            _ => None,
        })
        .flatten();
    let Some(socket) = socket else { return };
    socket.got_close.set(true);
    if !socket.sent_close.get() {
        // Echo the code, as RFC 6455 section 5.5.1 asks; codes that may not be sent become 1000.
        let echo = if matches!(code, 1005 | 1006 | 1015) || code < 1000 { 1000 } else { code };
        socket.outbox.borrow_mut().clear();
        socket.buffered.set(0);
        socket.close_after.replace(None);
        socket.send_close(t, echo, "");
    }
    socket.finish(t, code, reason, true);
}

impl SocketInner {
    /// The stream is gone without a close handshake (reset, or the tunnel dropped).
    pub(crate) fn gone(&self, message: &str) {
        if self.ready_state.get() == CLOSED {
            return;
        }
        self.ready_state.set(CLOSED);
        let error = js::object(&[("type", "error".into()), ("message", JsValue::from_str(message))]);
        self.fire("error", &error);
        let event = close_event(1006, message, false);
        self.fire("close", &event);
    }

    /// Sends what the outbox holds, as far as the window allows.
    pub(crate) fn flush_outbox(&self) {
        let Some(t) = self.tunnel.upgrade() else { return };
        loop {
            let Some((binary, data)) = self.outbox.borrow_mut().pop_front() else { break };
            let taken = t.with_conn(self.gen, |c| c.session.send_ws(self.id, binary, data.clone(), true));
            let Some(Ok(n)) = taken else {
                self.outbox.borrow_mut().clear();
                self.buffered.set(0);
                break;
            };
            self.buffered.set(self.buffered.get().saturating_sub(n));
            if n < data.len() {
                self.outbox.borrow_mut().push_front((binary, data.slice(n..)));
                break;
            }
        }
        if self.outbox.borrow().is_empty() {
            if let Some((code, reason)) = self.close_after.take() {
                self.send_close(&t, code, &reason);
            }
        }
        t.pump();
    }

    fn send_close(&self, t: &Rc<Tunnel>, code: u16, reason: &str) {
        if self.sent_close.replace(true) {
            return;
        }
        t.with_conn(self.gen, |c| c.session.close_ws(self.id, code, reason));
        if self.got_close.get() {
            t.with_conn(self.gen, |c| c.streams.remove(&self.id));
        }
        t.pump();
    }

    /// Both sides are closed: forget the stream and fire `close`.
    fn finish(&self, t: &Rc<Tunnel>, code: u16, reason: &str, clean: bool) {
        if self.sent_close.get() && self.got_close.get() {
            t.with_conn(self.gen, |c| c.streams.remove(&self.id));
        }
        if self.ready_state.replace(CLOSED) == CLOSED {
            return;
        }
        self.fire("close", &close_event(code, reason, clean));
    }

    /// Closes because of something the visitor sent (or the handler failing).
    fn fail_close(&self, t: &Rc<Tunnel>, code: u16, reason: &str) {
        if self.ready_state.get() != OPEN {
            return;
        }
        self.ready_state.set(CLOSING);
        self.outbox.borrow_mut().clear();
        self.buffered.set(0);
        self.send_close(t, code, reason);
    }

    fn handler_failed(&self, t: &Rc<Tunnel>, e: &JsValue) {
        let message = format!("the WebSocket handler failed: {}", js::error_message(e));
        t.emit_error(&format!("{}: {message}", self.url));
        self.fail_close(t, 1011, "the WebSocket handler failed");
    }

    /// Fires a `message` event, or keeps it until a listener is set.
    fn deliver(&self, data: JsValue, len: usize) {
        let event = js::object(&[("type", "message".into()), ("data", data)]);
        if !self.has_message_listener() {
            let total = self.backlog_bytes.get() + len;
            if total > MAX_BACKLOG {
                if let Some(t) = self.tunnel.upgrade() {
                    self.fail_close(&t, 1008, "no message listener");
                }
                return;
            }
            self.backlog_bytes.set(total);
            self.backlog.borrow_mut().push_back(event.into());
            return;
        }
        self.fire("message", &event);
    }

    fn has_message_listener(&self) -> bool {
        self.onmessage.borrow().is_some() || self.listeners.borrow().iter().any(|(k, _)| *k == "message")
    }

    /// Delivers the backlog on a later turn, once a listener exists.
    fn schedule_backlog(self: &Rc<Self>) {
        if self.backlog.borrow().is_empty() {
            return;
        }
        let this = self.clone();
        spawn_local(async move {
            while this.has_message_listener() {
                let Some(event) = this.backlog.borrow_mut().pop_front() else { break };
                this.fire("message", &event);
            }
            if this.backlog.borrow().is_empty() {
                this.backlog_bytes.set(0);
            }
        });
    }

    /// Calls the `on<kind>` property and the listeners for `kind`.
    fn fire(&self, kind: &str, event: &JsValue) {
        let property = match kind {
            "message" => self.onmessage.borrow().clone(),
            "close" => self.onclose.borrow().clone(),
            _ => self.onerror.borrow().clone(),
        };
        let mut targets: Vec<Function> = property.into_iter().collect();
        targets.extend(self.listeners.borrow().iter().filter(|(k, _)| *k == kind).map(|(_, f)| f.clone()));
        js::call_all(&targets, event);
    }
}

#[wasm_bindgen]
impl TunnelSocket {
    /// Sends a message: a string (text) or an `ArrayBuffer` / typed array (binary).
    pub fn send(&self, data: JsValue) -> Result<(), JsError> {
        let Some((bytes, binary)) = js::bytes_of(&data) else {
            return Err(JsError::new(&format!(
                "send() takes a string, an ArrayBuffer or a typed array, got {}",
                js::type_name(&data)
            )));
        };
        let s = &self.inner;
        if s.ready_state.get() != OPEN {
            // Like a browser WebSocket: data sent after close() is dropped.
            return Ok(());
        }
        s.buffered.set(s.buffered.get() + bytes.len());
        s.outbox.borrow_mut().push_back((binary, bytes));
        s.flush_outbox();
        Ok(())
    }

    /// Starts the closing handshake. `code` is 1000 or 3000-4999; `reason` is at
    /// most 123 bytes of UTF-8.
    pub fn close(&self, code: Option<u16>, reason: Option<String>) -> Result<(), JsError> {
        if let Some(code) = code {
            if code != 1000 && !(3000..=4999).contains(&code) {
                return Err(JsError::new(&format!("close() code must be 1000 or from 3000 to 4999, got {code}")));
            }
        }
        let reason = reason.unwrap_or_default();
        if reason.len() > 123 {
            return Err(JsError::new("close() reason must be at most 123 bytes of UTF-8"));
        }
        let s = &self.inner;
        if s.ready_state.get() != OPEN {
            return Ok(());
        }
        s.ready_state.set(CLOSING);
        let Some(t) = s.tunnel.upgrade() else { return Ok(()) };
        let code = code.unwrap_or(1000);
        if s.outbox.borrow().is_empty() {
            s.send_close(&t, code, &reason);
        } else {
            s.close_after.replace(Some((code, reason)));
        }
        Ok(())
    }

    /// Adds a listener for `message`, `close` or `error`.
    #[wasm_bindgen(js_name = addEventListener)]
    pub fn add_event_listener(&self, kind: &str, listener: JsValue) -> Result<(), JsError> {
        let kind = match kind {
            "message" => "message",
            "close" => "close",
            "error" => "error",
            other => {
                return Err(JsError::new(&format!(
                    "unknown event {other}: use message, close or error",
                    other = crate::js::quoted(other)
                )))
            }
        };
        let Some(f) = js::as_function(&listener) else {
            return Err(JsError::new(&format!("the listener must be a function, got {}", js::type_name(&listener))));
        };
        self.inner.listeners.borrow_mut().push((kind, f));
        self.inner.schedule_backlog();
        Ok(())
    }

    /// Removes a listener added with `addEventListener`.
    #[wasm_bindgen(js_name = removeEventListener)]
    pub fn remove_event_listener(&self, kind: &str, listener: JsValue) {
        self.inner.listeners.borrow_mut().retain(|(k, f)| !(*k == kind && JsValue::from(f.clone()) == listener));
    }

    /// `0` connecting (never seen), `1` open, `2` closing, `3` closed.
    #[wasm_bindgen(getter, js_name = readyState)]
    pub fn ready_state(&self) -> u16 {
        self.inner.ready_state.get()
    }

    /// The public URL the visitor connected to (`ws:` or `wss:`).
    #[wasm_bindgen(getter)]
    pub fn url(&self) -> String {
        self.inner.url.clone()
    }

    /// The subprotocol accepted: the visitor's first offer, or `""`.
    #[wasm_bindgen(getter)]
    pub fn protocol(&self) -> String {
        self.inner.protocol.clone()
    }

    /// Bytes passed to `send` and not yet handed to the tunnel.
    #[wasm_bindgen(getter, js_name = bufferedAmount)]
    pub fn buffered_amount(&self) -> usize {
        self.inner.buffered.get()
    }

    /// Always `"arraybuffer"`: binary messages arrive as `ArrayBuffer`s.
    #[wasm_bindgen(getter, js_name = binaryType)]
    pub fn binary_type(&self) -> String {
        "arraybuffer".to_string()
    }

    #[wasm_bindgen(getter)]
    pub fn onmessage(&self) -> JsValue {
        self.inner.onmessage.borrow().clone().map_or(JsValue::NULL, Into::into)
    }

    #[wasm_bindgen(setter)]
    pub fn set_onmessage(&self, f: JsValue) {
        self.inner.onmessage.replace(js::as_function(&f));
        self.inner.schedule_backlog();
    }

    #[wasm_bindgen(getter)]
    pub fn onclose(&self) -> JsValue {
        self.inner.onclose.borrow().clone().map_or(JsValue::NULL, Into::into)
    }

    #[wasm_bindgen(setter)]
    pub fn set_onclose(&self, f: JsValue) {
        self.inner.onclose.replace(js::as_function(&f));
    }

    #[wasm_bindgen(getter)]
    pub fn onerror(&self) -> JsValue {
        self.inner.onerror.borrow().clone().map_or(JsValue::NULL, Into::into)
    }

    #[wasm_bindgen(setter)]
    pub fn set_onerror(&self, f: JsValue) {
        self.inner.onerror.replace(js::as_function(&f));
    }
}

fn close_event(code: u16, reason: &str, clean: bool) -> JsValue {
    js::object(&[
        ("type", "close".into()),
        ("code", JsValue::from(code)),
        ("reason", JsValue::from_str(reason)),
        ("wasClean", JsValue::from_bool(clean)),
    ])
    .into()
}

/// The subprotocols the visitor offered, in order.
fn offered_protocols(headers: &[Header]) -> Vec<String> {
    headers
        .iter()
        .filter(|(name, _)| name == SEC_WEBSOCKET_PROTOCOL)
        .flat_map(|(_, value)| {
            String::from_utf8_lossy(value.as_bytes()).split(',').map(|p| p.trim().to_string()).collect::<Vec<_>>()
        })
        .filter(|p| !p.is_empty())
        .collect()
}

/// `http://x/y` -> `ws://x/y`, `https://x/y` -> `wss://x/y`.
fn ws_url(http_url: &str) -> String {
    if let Some(rest) = http_url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = http_url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        http_url.to_string()
    }
}

/// The upgrade request as a `Request` (for its URL and headers), or `undefined`.
fn upgrade_request(url: &str, headers: &[Header]) -> JsValue {
    let init = RequestInit::new();
    init.set_method("GET");
    init.set_headers(headers_of(headers).as_ref());
    Request::new_with_str_and_init(url, &init).map_or(JsValue::UNDEFINED, Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_in_order() {
        let headers: Vec<Header> = vec![
            (SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("chat, superchat")),
            (http::HeaderName::from_static("x"), HeaderValue::from_static("y")),
            (SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(" v2 ")),
        ];
        assert_eq!(offered_protocols(&headers), ["chat", "superchat", "v2"]);
        assert!(offered_protocols(&[]).is_empty());
    }

    #[test]
    fn ws_urls() {
        assert_eq!(ws_url("http://a.localhost:3000/x"), "ws://a.localhost:3000/x");
        assert_eq!(ws_url("https://a.dev/"), "wss://a.dev/");
    }
}
