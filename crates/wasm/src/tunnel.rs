//! The client's state and its event loop: connect, dispatch the session's events,
//! reconnect. The decisions (dial, hello, wait, give up) are the core's
//! `ClientLifecycle`'s; `drive` does what it says with the runtime's timers.
//!
//! Everything runs on the JavaScript event loop. The one rule that keeps it sound:
//! **no `RefCell` borrow is held while JavaScript runs** (a handler, a listener, a
//! stream controller), because that JavaScript may call straight back into the client.
//! State is read or changed in short borrows; calls out happen between them.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use std::time::Duration;

use gloo_timers::callback::Timeout;
use js_sys::{Date, Function, Promise};
use localtunnels_core::{
    Action, ClientLifecycle, CloseCode, Event, GiveUp, Hello, Instant, Policy, RefuseReason, StreamId, StreamKind,
};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{AbortSignal, MessageEvent, WebSocket};

use crate::conn::Conn;
use crate::options::{Handler, Options};
use crate::{http, js, socket};

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

/// What the client keeps for one live stream of a connection ([`Conn::streams`]).
pub(crate) enum Slot {
    /// A visitor's HTTP request.
    Http(http::HttpStream),
    /// A visitor's WebSocket, accepted and handed to the `onWebSocket` handler.
    Ws(Rc<socket::SocketInner>),
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
    /// When to dial, what to say, when to retry, when to stop (the core decides).
    life: ClientLifecycle,
    /// The lifecycle's clock: `Date.now()` at creation, and the last reading.
    epoch_ms: f64,
    last_micros: u64,
    /// The public URL of the current (or last) session.
    pub(crate) url: Option<String>,
    /// Armed at the lifecycle's `poll_timeout` (a reconnect wait or a handshake deadline).
    timer: Option<Timeout>,
    /// `connect()` promises waiting for the first welcome.
    waiters: Vec<(Function, Function)>,
    /// The `AbortSignal` given to `connect()`, listened to until `close()`.
    abort: Option<AbortWatch>,
}

/// An abort listener on a signal, removed when dropped.
struct AbortWatch {
    signal: AbortSignal,
    listener: Closure<dyn FnMut(JsValue)>,
}

impl Drop for AbortWatch {
    fn drop(&mut self) {
        let _ = self.signal.remove_event_listener_with_callback("abort", self.listener.as_ref().unchecked_ref());
    }
}

impl State {
    /// The lifecycle's clock: milliseconds since the client was made, never going back.
    fn now(&mut self) -> Instant {
        let elapsed_ms = Date::now() - self.epoch_ms;
        let micros = if elapsed_ms > 0.0 { (elapsed_ms * 1000.0) as u64 } else { 0 };
        self.last_micros = self.last_micros.max(micros);
        Instant::from_micros(self.last_micros)
    }
}

/// Shared by the `TunnelClient`, the socket listeners, timers and stream tasks.
pub(crate) struct Tunnel {
    pub(crate) st: RefCell<State>,
    pumping: Cell<bool>,
    /// The request inspector's store (`client.requests()`).
    pub(crate) inspect: Rc<crate::inspect::Inspect>,
}

impl Tunnel {
    pub(crate) fn new(options: Options, on_request: Option<Handler>, on_web_socket: Option<Handler>) -> Rc<Tunnel> {
        let policy = Policy {
            reconnect: options.reconnect,
            cap: Duration::from_millis(options.max_reconnect_delay_ms as u64),
            // Several `servers` are one cluster's nodes: the name follows its token.
            shared_token: true,
            ..Policy::DEFAULT
        };
        let servers = options.servers.len().max(1);
        let mut life = ClientLifecycle::new(policy, servers, options.subdomain.clone(), Box::new(js_sys::Math::random));
        (0..servers).for_each(|i| life.set_reconnect_token(i, options.reconnect_token.clone()));
        Rc::new(Tunnel {
            st: RefCell::new(State {
                options,
                on_request,
                on_web_socket,
                listeners: Vec::new(),
                conn: None,
                next_gen: 1,
                life,
                epoch_ms: Date::now(),
                last_micros: 0,
                url: None,
                timer: None,
                waiters: Vec::new(),
                abort: None,
            }),
            pumping: Cell::new(false),
            inspect: crate::inspect::Inspect::new(),
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
        st.url.as_ref().map(|_| st.life.name().to_string())
    }

    /// The secret that takes the name back after a drop, once welcomed (or as given).
    pub(crate) fn reconnect_token(&self) -> Option<String> {
        let st = self.st.borrow();
        let token = st.life.reconnect_token(st.life.current_server().unwrap_or(0));
        (!token.is_empty()).then(|| token.to_string())
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
        {
            let mut st = self.st.borrow_mut();
            st.waiters.push((resolve, reject));
            let now = st.now();
            st.life.connect(now);
        }
        self.drive();
        promise
    }

    /// Closes the tunnel when `signal` aborts; a `connect()` still pending rejects
    /// with the signal's reason.
    pub(crate) fn watch_abort(self: &Rc<Self>, signal: AbortSignal) {
        let t = Rc::downgrade(self);
        let listener = Closure::new(move |_: JsValue| {
            let Some(t) = t.upgrade() else { return };
            let (watch, waiters) = {
                let mut st = t.st.borrow_mut();
                (st.abort.take(), std::mem::take(&mut st.waiters))
            };
            let reason = watch.as_ref().map_or(JsValue::UNDEFINED, |w| w.signal.reason());
            js::defer_drop(watch);
            for (_, reject) in waiters {
                let _ = js::call1(&reject, &reason);
            }
            t.close();
        });
        let _ = signal.add_event_listener_with_callback("abort", listener.as_ref().unchecked_ref());
        let old = self.st.borrow_mut().abort.replace(AbortWatch { signal, listener });
        js::defer_drop(old);
    }

    /// Closes the tunnel; no reconnect follows. `connect()` may be called again later.
    /// Returns the socket being closed, if one was open.
    pub(crate) fn close(self: &Rc<Self>) -> Option<WebSocket> {
        let socket = {
            let mut st = self.st.borrow_mut();
            js::defer_drop(st.abort.take());
            st.life.close();
            st.conn.as_mut().map(|conn| {
                conn.session.close(CloseCode::Normal, "the client closed the tunnel");
                conn.socket()
            })
        };
        self.drive();
        self.pump();
        socket
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
        // Printed by JavaScript: Rust's float formatting would add ~15 KB to the .wasm.
        let code = js::number_text(js::get(e, "code").as_f64().unwrap_or(1006.0));
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

    /// The socket failed. Browsers follow with a close event, Node 22's WebSocket
    /// does not: the error alone ends the connection (a later close finds it gone).
    pub(crate) fn on_socket_error(self: &Rc<Self>, gen: u64) {
        let handled = self.with_conn(gen, |conn| {
            let message = match conn.welcomed {
                true => "the connection to the server failed",
                false => "the WebSocket failed before the server answered",
            };
            conn.session.close(CloseCode::Internal, message);
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
                    let now = st.now();
                    st.life.handle_welcome(now, &w.name, &w.reconnect_token);
                    st.url = Some(w.url.clone());
                    std::mem::take(&mut st.waiters)
                };
                self.drive();
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

    /// A connection ended: tear it down, tell the streams and the listeners, then let
    /// the lifecycle decide (reconnect, reject `connect()`, or stop).
    fn end(self: &Rc<Self>, gen: u64, end: End) {
        let Some(was_welcomed) = self.tear_down(Some(gen)) else { return };
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
        let refused = matches!(end, End::Refused { .. });
        let reconnecting = {
            let mut st = self.st.borrow_mut();
            let now = st.now();
            let reconnecting = st.life.welcomed_once() && st.life.is_active();
            match end {
                End::Refused { reason, message } => st.life.handle_refusal(now, reason, &message),
                // A close we made ourselves (timeout, socket lost) is the socket dying.
                End::Closed { code, message, by_peer } => {
                    st.life.handle_close(now, if by_peer { code } else { CloseCode::Internal }, &message)
                }
            }
            reconnecting
        };
        // A refusal while reconnecting is worth a word: the name may be gone.
        if reconnecting && refused {
            self.emit_error(&message);
        }
        self.drive();
    }

    /// Takes connection `gen` (any, when `None`) away and fails its streams; returns
    /// whether it had been welcomed, or `None` if there was no such connection.
    fn tear_down(&self, gen: Option<u64>) -> Option<bool> {
        let mut conn = self.st.borrow_mut().conn.take_if(|c| gen.is_none_or(|g| c.gen == g))?;
        // No borrow is held: the socket may call back into the client.
        conn.flush();
        conn.close_socket();
        let slots: Vec<Slot> = conn.streams.drain().map(|(_, s)| s).collect();
        let was_welcomed = conn.welcomed;
        js::defer_drop(conn);
        for slot in slots {
            fail_slot(Some(slot), "the tunnel disconnected");
        }
        Some(was_welcomed)
    }

    /// Does what the lifecycle says until it has nothing more to say, then arms its timer.
    fn drive(self: &Rc<Self>) {
        loop {
            let action = self.st.borrow_mut().life.poll_action();
            let Some(action) = action else { break };
            match action {
                Action::Dial { server } => {
                    self.st.borrow_mut().options.select(server);
                    // A connection still here is one the lifecycle gave up on (no welcome in time).
                    self.tear_down(None);
                }
                Action::Hello { name, reconnect_token } => self.open(name, reconnect_token),
                Action::Wait { attempt, delay, .. } => {
                    // Likewise: no connection lives through a wait.
                    self.tear_down(None);
                    let ms = u32::try_from(delay.as_millis()).unwrap_or(u32::MAX);
                    let payload = js::object(&[("attempt", JsValue::from(attempt)), ("delay", JsValue::from(ms))]);
                    self.emit(Kind::Reconnecting, &payload);
                }
                Action::GiveUp(why) => self.give_up(&why),
            }
        }
        let t = self.clone();
        let mut st = self.st.borrow_mut();
        let old = st.timer.take();
        js::defer_drop(old);
        if let Some(at) = st.life.poll_timeout() {
            let now = st.now();
            let ms = at.saturating_duration_since(now).as_micros().div_ceil(1000);
            let ms = u32::try_from(ms).unwrap_or(u32::MAX).min(i32::MAX as u32);
            st.timer = Some(Timeout::new(ms, move || t.on_life_timer()));
        }
    }

    /// The lifecycle's timer fired: a reconnect wait ended, or an attempt ran out of time.
    fn on_life_timer(self: &Rc<Self>) {
        {
            let mut st = self.st.borrow_mut();
            js::defer_drop(st.timer.take());
            let now = st.now();
            st.life.handle_timeout(now);
        }
        self.drive();
    }

    /// The lifecycle stopped: reject `connect()` (before a welcome) and drop what is left.
    fn give_up(self: &Rc<Self>, why: &GiveUp) {
        let (waiters, url) = {
            let mut st = self.st.borrow_mut();
            (std::mem::take(&mut st.waiters), st.options.control_url())
        };
        if !matches!(why, GiveUp::Closed) {
            self.tear_down(None);
        }
        if waiters.is_empty() {
            return;
        }
        let error = match why {
            GiveUp::Closed => js::error("the tunnel was closed before it connected"),
            GiveUp::Refused { reason, message } => {
                js::error(&format!("the server refused the tunnel ({}): {message}", reason.as_str()))
            }
            GiveUp::Unreachable { message } => js::error(&format!("could not connect to {url}: {message}")),
            other => js::error(other.message()),
        };
        js::set(error.unchecked_ref(), "reason", JsValue::from_str(why.as_str()));
        for (_, reject) in waiters {
            let _ = js::call1(&reject, &error);
        }
    }

    /// Opens a new connection with a hello that asks for `name` with `reconnect_token`.
    fn open(self: &Rc<Self>, name: String, reconnect_token: String) {
        let opened = {
            let mut st = self.st.borrow_mut();
            let gen = st.next_gen;
            st.next_gen += 1;
            let o = &st.options;
            let hello = Hello {
                name,
                token: o.token.clone(),
                reconnect_token,
                client_kind: "wasm".to_string(),
                client_version: env!("CARGO_PKG_VERSION").to_string(),
                basic_auth: o.basic_auth.clone(),
                allow_ips: o.allow_ips.clone(),
                hostname: o.hostname.clone(),
                ..Hello::default()
            };
            let url = o.control_url();
            match Conn::open(self, gen, &url, hello) {
                Ok(conn) => {
                    st.conn = Some(conn);
                    Ok(())
                }
                Err(e) => Err(format!("the runtime refused to open a WebSocket to {url}: {}", js::error_message(&e))),
            }
        };
        match opened {
            Ok(()) => self.pump(),
            Err(message) => {
                let welcomed_once = {
                    let mut st = self.st.borrow_mut();
                    let now = st.now();
                    st.life.handle_close(now, CloseCode::Internal, &message);
                    st.life.welcomed_once()
                };
                if welcomed_once {
                    self.emit_error(&message);
                }
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
