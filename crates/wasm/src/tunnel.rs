//! The client's state and its event loop: connect, dispatch the session's events,
//! reconnect.
//!
//! Everything runs on the JavaScript event loop. The one rule that keeps it sound:
//! **no `RefCell` borrow is held while JavaScript runs** (a handler, a listener, a
//! stream controller), because that JavaScript may call straight back into the client.
//! State is read or changed in short borrows; calls out happen between them.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use gloo_timers::callback::Timeout;
use js_sys::{Function, Promise};
use localtunnels_core::{CloseCode, Event, Hello, RefuseReason, StreamId, StreamKind};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::MessageEvent;

use crate::conn::{Conn, Slot};
use crate::options::{Handler, Options};
use crate::{backoff, http, js, socket};

/// The events a client emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Connected,
    Disconnected,
    Reconnecting,
    Request,
    Response,
    Error,
}

impl Kind {
    pub(crate) const NAMES: &'static str = "connected, disconnected, reconnecting, request, response, error";

    pub(crate) fn parse(name: &str) -> Option<Kind> {
        Some(match name {
            "connected" => Kind::Connected,
            "disconnected" => Kind::Disconnected,
            "reconnecting" => Kind::Reconnecting,
            "request" => Kind::Request,
            "response" => Kind::Response,
            "error" => Kind::Error,
            _ => return None,
        })
    }
}

/// How a connection ended.
enum End {
    Closed { code: CloseCode, message: String, by_peer: bool },
    Refused { reason: RefuseReason, message: String },
}

/// The state behind one `TunnelClient`.
pub(crate) struct State {
    pub(crate) options: Options,
    pub(crate) on_request: Option<Handler>,
    pub(crate) on_web_socket: Option<Handler>,
    listeners: Vec<(Kind, Function)>,
    pub(crate) conn: Option<Conn>,
    next_gen: u64,
    /// The name granted by the server, asked for again on reconnect.
    name: String,
    /// The secret that lets us take that name back.
    reconnect_token: String,
    /// The public URL of the current (or last) session.
    pub(crate) url: Option<String>,
    /// Failed attempts in a row.
    attempt: u32,
    /// Since the last `connect()`, the server welcomed us at least once.
    welcomed_once: bool,
    /// Between `connect()` and `close()` (or giving up).
    active: bool,
    retry: Option<Timeout>,
    /// `connect()` promises waiting for the first welcome.
    waiters: Vec<(Function, Function)>,
}

/// Shared by the `TunnelClient`, the socket listeners, timers and stream tasks.
pub(crate) struct Tunnel {
    pub(crate) st: RefCell<State>,
    pumping: Cell<bool>,
}

impl Tunnel {
    pub(crate) fn new(options: Options, on_request: Option<Handler>, on_web_socket: Option<Handler>) -> Rc<Tunnel> {
        Rc::new(Tunnel {
            st: RefCell::new(State {
                options,
                on_request,
                on_web_socket,
                listeners: Vec::new(),
                conn: None,
                next_gen: 1,
                name: String::new(),
                reconnect_token: String::new(),
                url: None,
                attempt: 0,
                welcomed_once: false,
                active: false,
                retry: None,
                waiters: Vec::new(),
            }),
            pumping: Cell::new(false),
        })
    }

    // ----- the public face (called by `TunnelClient`) -----

    pub(crate) fn add_listener(&self, kind: Kind, f: Function) {
        self.st.borrow_mut().listeners.push((kind, f));
    }

    pub(crate) fn remove_listener(&self, kind: Kind, f: &JsValue) {
        self.st.borrow_mut().listeners.retain(|(k, g)| !(*k == kind && JsValue::from(g.clone()) == *f));
    }

    /// The tunnel is up: welcomed and not closed.
    pub(crate) fn is_connected(&self) -> bool {
        let st = self.st.borrow();
        st.conn.as_ref().is_some_and(|c| c.welcomed && !c.session.is_closed())
    }

    /// The granted name, once welcomed.
    pub(crate) fn name(&self) -> Option<String> {
        let st = self.st.borrow();
        (!st.name.is_empty()).then(|| st.name.clone())
    }

    /// Starts connecting (unless already connecting); the promise resolves with the
    /// public URL at the first welcome.
    pub(crate) fn connect(self: &Rc<Self>) -> Promise {
        let mut parts = None;
        let promise = Promise::new(&mut |resolve, reject| parts = Some((resolve, reject)));
        let Some((resolve, reject)) = parts else { return promise };
        if self.is_connected() {
            let url = self.st.borrow().url.clone().unwrap_or_default();
            let _ = js::call1(&resolve, &JsValue::from_str(&url));
            return promise;
        }
        let start = {
            let mut st = self.st.borrow_mut();
            st.waiters.push((resolve, reject));
            let start = !st.active;
            if start {
                st.active = true;
                st.welcomed_once = false;
                st.attempt = 0;
            }
            start
        };
        if start {
            self.start_attempt();
        }
        promise
    }

    /// Closes the tunnel; no reconnect follows. `connect()` may be called again later.
    pub(crate) fn close(self: &Rc<Self>) {
        let (waiters, retry) = {
            let mut st = self.st.borrow_mut();
            st.active = false;
            if let Some(conn) = st.conn.as_mut() {
                conn.session.close(CloseCode::Normal, "the client closed the tunnel");
            }
            (std::mem::take(&mut st.waiters), st.retry.take())
        };
        drop(retry);
        let err = js::error("the tunnel was closed before it connected");
        for (_, reject) in waiters {
            let _ = js::call1(&reject, &err);
        }
        self.pump();
    }

    // ----- helpers for the stream modules -----

    /// Runs `f` on the connection of generation `gen`, if it is still the current one.
    pub(crate) fn with_conn<R>(&self, gen: u64, f: impl FnOnce(&mut Conn) -> R) -> Option<R> {
        let mut st = self.st.borrow_mut();
        let conn = st.conn.as_mut().filter(|c| c.gen == gen)?;
        Some(f(conn))
    }

    /// Someone listens for `kind`: worth building its payload.
    pub(crate) fn listens(&self, kind: Kind) -> bool {
        self.st.borrow().listeners.iter().any(|(k, _)| *k == kind)
    }

    /// Emits `kind` to its listeners.
    pub(crate) fn emit(&self, kind: Kind, payload: &JsValue) {
        let listeners: Vec<Function> =
            self.st.borrow().listeners.iter().filter(|(k, _)| *k == kind).map(|(_, f)| f.clone()).collect();
        if listeners.is_empty() && kind == Kind::Error {
            web_sys::console::warn_2(&JsValue::from_str("localtunnels:"), payload);
        }
        js::call_all(&listeners, payload);
    }

    /// Emits an `error` event with a new `Error(message)`.
    pub(crate) fn emit_error(&self, message: &str) {
        self.emit(Kind::Error, &js::error(message));
    }

    // ----- the event loop -----

    /// The driver's rule: drain the session's events and frames until both are empty,
    /// then re-arm the timer. Re-entrant calls (from JavaScript called while pumping)
    /// return at once; the outer loop picks up what they queued.
    pub(crate) fn pump(self: &Rc<Self>) {
        if self.pumping.replace(true) {
            return;
        }
        loop {
            let next = {
                let mut st = self.st.borrow_mut();
                match st.conn.as_mut() {
                    Some(conn) => {
                        conn.schedule_flush();
                        conn.session.poll_event().map(|e| (conn.gen, e))
                    }
                    None => None,
                }
            };
            let Some((gen, event)) = next else { break };
            self.on_event(gen, event);
        }
        if let Some(conn) = self.st.borrow_mut().conn.as_mut() {
            conn.schedule_flush();
            conn.rearm(self);
        }
        self.pumping.set(false);
    }

    /// The flush scheduled by the pump: what this turn of the event loop queued goes
    /// out now, in as few messages as possible.
    pub(crate) fn on_flush(self: &Rc<Self>, gen: u64) {
        if self.with_conn(gen, Conn::flush).is_some() {
            self.pump();
        }
    }

    pub(crate) fn on_socket_open(self: &Rc<Self>, gen: u64) {
        if self.with_conn(gen, |_| ()).is_some() {
            self.pump();
        }
    }

    pub(crate) fn on_socket_message(self: &Rc<Self>, gen: u64, e: &MessageEvent) {
        let data = e.data();
        let handled = self.with_conn(gen, |conn| {
            let now = conn.now();
            let Some((bytes, true)) = js::bytes_of(&data) else {
                conn.session.close(CloseCode::ProtocolError, "the server sent a text message; frames are binary");
                return;
            };
            // A protocol error closes the session, which the pump reports.
            let _ = conn.session.handle_message(now, bytes);
        });
        if handled.is_some() {
            self.pump();
        }
    }

    pub(crate) fn on_socket_close(self: &Rc<Self>, gen: u64, e: &JsValue) {
        let code = js::get(e, "code").as_f64().unwrap_or(1006.0);
        let reason = js::get(e, "reason").as_string().unwrap_or_default();
        let handled = self.with_conn(gen, |conn| {
            let message = match (conn.welcomed, reason.is_empty()) {
                (true, true) => format!("the connection to the server was lost (WebSocket close code {code})"),
                (true, false) => format!("the connection to the server was lost: {reason} (code {code})"),
                (false, true) => format!("the connection closed before the server answered (code {code})"),
                (false, false) => format!("the connection closed before the server answered: {reason} (code {code})"),
            };
            conn.session.close(CloseCode::Internal, &message);
        });
        if handled.is_some() {
            self.pump();
        }
    }

    pub(crate) fn on_timer(self: &Rc<Self>, gen: u64) {
        let handled = self.with_conn(gen, |conn| {
            conn.timer_fired();
            let now = conn.now();
            conn.session.handle_timeout(now);
        });
        if handled.is_some() {
            self.pump();
        }
    }

    fn on_event(self: &Rc<Self>, gen: u64, event: Event) {
        match event {
            Event::Welcome(w) => {
                let waiters = {
                    let mut st = self.st.borrow_mut();
                    if let Some(conn) = st.conn.as_mut() {
                        conn.welcomed = true;
                    }
                    st.name = w.name.clone();
                    if !w.reconnect_token.is_empty() {
                        st.reconnect_token = w.reconnect_token;
                    }
                    st.url = Some(w.url.clone());
                    st.attempt = 0;
                    st.welcomed_once = true;
                    std::mem::take(&mut st.waiters)
                };
                let url = JsValue::from_str(&w.url);
                for (resolve, _) in waiters {
                    let _ = js::call1(&resolve, &url);
                }
                let payload = js::object(&[("url", url), ("name", JsValue::from_str(&w.name))]);
                self.emit(Kind::Connected, &payload);
            }
            Event::Refused { reason, message } => self.end(gen, End::Refused { reason, message }),
            Event::Closed { code, message, by_peer } => self.end(gen, End::Closed { code, message, by_peer }),
            Event::Opened { id, head, end } => match head.kind {
                StreamKind::Http => http::on_open(self, gen, id, head, end),
                StreamKind::WebSocket => socket::on_open(self, gen, id, head),
            },
            Event::Data { id, data, end } => http::on_data(self, gen, id, data, end),
            Event::Trailers { id, .. } => http::on_data(self, gen, id, bytes::Bytes::new(), true),
            Event::WsMessage { id, binary, fin, data } => socket::on_message(self, gen, id, binary, fin, data),
            Event::WsClose { id, code, reason } => socket::on_peer_close(self, gen, id, code, &reason),
            Event::Reset { id, message, .. } => {
                let slot = self.with_conn(gen, |c| c.streams.remove(&id)).flatten();
                fail_slot(slot, &format!("the visitor's stream was reset: {message}"));
            }
            Event::Writable { id } => self.on_writable(gen, id),
            // Hello and Response are for servers and stream openers; GoAway needs nothing:
            // the server closes the session once in-flight streams are done, and we reconnect.
            _ => {}
        }
    }

    fn on_writable(self: &Rc<Self>, gen: u64, id: StreamId) {
        enum Wake {
            Http(Function),
            Ws(Rc<socket::SocketInner>),
        }
        let wake = self
            .with_conn(gen, |c| match c.streams.get_mut(&id) {
                Some(Slot::Http(h)) => h.writable.take().map(Wake::Http),
                Some(Slot::Ws(s)) => Some(Wake::Ws(s.clone())),
                None => None,
            })
            .flatten();
        match wake {
            Some(Wake::Http(resolve)) => {
                let _ = resolve.call0(&JsValue::UNDEFINED);
            }
            Some(Wake::Ws(s)) => s.flush_outbox(),
            None => {}
        }
    }

    /// A connection ended: tear it down, tell the streams and the listeners, then
    /// reconnect, reject `connect()`, or stop.
    fn end(self: &Rc<Self>, gen: u64, end: End) {
        let taken = {
            let mut st = self.st.borrow_mut();
            match st.conn.take_if(|c| c.gen == gen) {
                Some(mut conn) => {
                    conn.flush();
                    conn.close_socket();
                    let slots: Vec<Slot> = conn.streams.drain().map(|(_, s)| s).collect();
                    Some((conn, slots))
                }
                None => None,
            }
        };
        let Some((conn, slots)) = taken else { return };
        let was_welcomed = conn.welcomed;
        js::defer_drop(conn);
        for slot in slots {
            fail_slot(Some(slot), "the tunnel disconnected");
        }

        let (active, welcomed_once, reconnect) = {
            let st = self.st.borrow();
            (st.active, st.welcomed_once, st.options.reconnect)
        };
        let message = match &end {
            End::Closed { message, .. } => message.clone(),
            End::Refused { reason, message } => {
                format!("the server refused the tunnel ({}): {message}", reason.as_str())
            }
        };
        if was_welcomed {
            let (code, by_server) = match &end {
                End::Closed { code, by_peer, .. } => (close_code_name(*code), *by_peer),
                _ => ("internal", false),
            };
            let payload = js::object(&[
                ("code", JsValue::from_str(code)),
                ("reason", JsValue::from_str(&message)),
                ("byServer", JsValue::from_bool(by_server)),
            ]);
            self.emit(Kind::Disconnected, &payload);
        }
        if !active {
            return;
        }

        let error = js::error(&message);
        if let End::Refused { reason, .. } = &end {
            js::set(error.unchecked_ref(), "reason", JsValue::from_str(reason.as_str()));
        }
        // A first attempt that fails rejects `connect()`: the options or the server are
        // wrong, and retrying would hide it.
        if !welcomed_once {
            let url = self.st.borrow().options.control_url();
            let error = match &end {
                End::Refused { .. } => error,
                _ => {
                    let e = js::error(&format!("could not connect to {url}: {message}"));
                    js::set(e.unchecked_ref(), "reason", JsValue::from_str("unreachable"));
                    e
                }
            };
            self.give_up(&error);
            return;
        }
        let retry = match &end {
            End::Refused { reason, .. } => {
                self.emit(Kind::Error, &error);
                matches!(reason, RefuseReason::NameTaken | RefuseReason::ServerFull | RefuseReason::LimitReached)
            }
            End::Closed { code: CloseCode::Replaced, .. } => false,
            _ => true,
        };
        if retry && reconnect {
            self.schedule_retry();
        } else {
            self.st.borrow_mut().active = false;
        }
    }

    fn give_up(&self, error: &JsValue) {
        let waiters = {
            let mut st = self.st.borrow_mut();
            st.active = false;
            std::mem::take(&mut st.waiters)
        };
        for (_, reject) in waiters {
            let _ = js::call1(&reject, error);
        }
    }

    fn schedule_retry(self: &Rc<Self>) {
        let (attempt, delay) = {
            let mut st = self.st.borrow_mut();
            st.attempt = st.attempt.saturating_add(1);
            let delay = backoff::delay_ms(st.attempt, st.options.max_reconnect_delay_ms, js_sys::Math::random());
            let t = self.clone();
            st.retry = Some(Timeout::new(delay, move || {
                let fired = t.st.borrow_mut().retry.take();
                js::defer_drop(fired);
                t.start_attempt();
            }));
            (st.attempt, delay)
        };
        let payload = js::object(&[("attempt", JsValue::from(attempt)), ("delay", JsValue::from(delay))]);
        self.emit(Kind::Reconnecting, &payload);
    }

    /// Opens a new connection with a hello that asks for the name held so far.
    fn start_attempt(self: &Rc<Self>) {
        let opened = {
            let mut st = self.st.borrow_mut();
            if !st.active || st.conn.is_some() {
                return;
            }
            let gen = st.next_gen;
            st.next_gen += 1;
            let o = &st.options;
            let hello = Hello {
                name: if st.name.is_empty() { o.subdomain.clone() } else { st.name.clone() },
                token: o.token.clone(),
                reconnect_token: st.reconnect_token.clone(),
                client_kind: "wasm".to_string(),
                client_version: env!("CARGO_PKG_VERSION").to_string(),
                basic_auth: o.basic_auth.clone(),
                allow_ips: o.allow_ips.clone(),
                ..Hello::default()
            };
            let url = o.control_url();
            match Conn::open(self, gen, &url, hello) {
                Ok(conn) => {
                    st.conn = Some(conn);
                    Ok(())
                }
                Err(e) => Err(js::error_message(&e)),
            }
        };
        if let Err(message) = opened {
            let (url, welcomed_once) = {
                let st = self.st.borrow();
                (st.options.control_url(), st.welcomed_once)
            };
            let message = format!("the runtime refused to open a WebSocket to {url}: {message}");
            if welcomed_once {
                self.emit_error(&message);
                self.schedule_retry();
            } else {
                self.give_up(&js::error(&message));
            }
        }
    }
}

/// Tells a stream's owner that it is gone.
fn fail_slot(slot: Option<Slot>, message: &str) {
    match slot {
        Some(Slot::Http(h)) => http::fail(h, message),
        Some(Slot::Ws(s)) => s.gone(message),
        None => {}
    }
}

/// A stable name for a close code, for the `disconnected` event.
fn close_code_name(code: CloseCode) -> &'static str {
    match code {
        CloseCode::Normal => "normal",
        CloseCode::ProtocolError => "protocol_error",
        CloseCode::Timeout => "timeout",
        CloseCode::Shutdown => "shutdown",
        CloseCode::FlowControl => "flow_control",
        CloseCode::TooManyStreams => "too_many_streams",
        CloseCode::Internal => "internal",
        CloseCode::Replaced => "replaced",
        CloseCode::FrameTooLarge => "frame_too_large",
        CloseCode::SlowReader => "slow_reader",
        _ => "other",
    }
}
