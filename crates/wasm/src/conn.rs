//! One attempt at a tunnel: the runtime's `WebSocket`, the core `Session` it carries,
//! the heartbeat timer, and the streams in flight.
//!
//! A `Conn` only moves bytes: messages from the socket go into the session, frames from
//! the session go out on the socket, and the session's deadline arms a timer. What the
//! session's events mean is decided in `tunnel.rs`.
//!
//! Sending is deferred to the next task of the event loop and packed: every
//! `WebSocket.send` costs far more than the bytes it carries (it was the top function of
//! the tab's CPU profile), and a request's frames (head, body, end) appear over several
//! microtasks. So frames wait until the current task and its microtasks are done, then
//! go out as few `BATCH` messages as the server accepts (`Session::poll_transmit_batch`).

use std::collections::HashMap;
use std::rc::Rc;

use gloo_timers::callback::Timeout;
use js_sys::Date;
use localtunnels_core::{CloseCode, Config, Hello, Instant, Session, StreamId, SUBPROTOCOL};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{BinaryType, MessageChannel, MessageEvent, MessagePort, WebSocket};

use crate::js;
use crate::tunnel::{Slot, Tunnel};

/// The shortest time without a frame after which a browser client declares the server
/// dead: Chromium runs a hidden tab's timers about once a minute, so the timer that
/// checks may fire a minute late. The server's pings, answered as they arrive, keep
/// the session alive on the server's side meanwhile.
const BROWSER_IDLE_FLOOR: std::time::Duration = std::time::Duration::from_secs(75);

/// `WebSocket.OPEN`.
const OPEN: u16 = 1;
/// `WebSocket.CLOSING`.
const CLOSING: u16 = 2;

/// One connection attempt and, once welcomed, one tunnel session.
pub(crate) struct Conn {
    /// Distinguishes this attempt from earlier ones: stream ids restart at each session.
    pub(crate) gen: u64,
    pub(crate) session: Session,
    /// The streams in flight, kept for the tunnel (`tunnel.rs` decides what they are).
    pub(crate) streams: HashMap<StreamId, Slot>,
    /// The server accepted the hello.
    pub(crate) welcomed: bool,
    ws: WebSocket,
    epoch_ms: f64,
    last_micros: u64,
    timer: Option<Timeout>,
    timer_at: Option<Instant>,
    listeners: Option<Listeners>,
    /// Runs `Tunnel::on_flush` on a later task.
    flusher: Flusher,
    /// A flush is scheduled and has not run yet.
    flush_pending: bool,
}

/// Schedules a call on a new task of the event loop: a `MessageChannel` message where
/// the runtime has one (no timer clamping, one closure for the connection's life),
/// else `setTimeout(0)`.
enum Flusher {
    Channel { port: MessagePort, send: MessagePort, _on_message: Closure<dyn FnMut(JsValue)> },
    Timer { run: Rc<dyn Fn()>, timer: Option<Timeout> },
}

impl Flusher {
    fn new(run: Rc<dyn Fn()>) -> Flusher {
        let Ok(channel) = MessageChannel::new() else { return Flusher::Timer { run, timer: None } };
        let on_message = {
            let run = run.clone();
            Closure::new(move |_: JsValue| run())
        };
        let port = channel.port1();
        port.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        // Node keeps running while a port listens; this one must not hold it open.
        if let Some(unref) = js::as_function(&js::get(&port, "unref")) {
            let _ = unref.call0(&port);
        }
        Flusher::Channel { port, send: channel.port2(), _on_message: on_message }
    }

    fn schedule(&mut self) {
        match self {
            Flusher::Channel { send, .. } => {
                if send.post_message(&JsValue::UNDEFINED).is_err() {
                    web_sys::console::warn_1(&JsValue::from_str("localtunnels: cannot schedule a send"));
                }
            }
            Flusher::Timer { run, timer } => {
                let run = run.clone();
                js::defer_drop(timer.replace(Timeout::new(0, move || run())));
            }
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        if let Flusher::Channel { port, send, .. } = self {
            port.set_onmessage(None);
            port.close();
            send.close();
        }
    }
}

/// The socket's listeners, owned here and detached when the connection is dropped.
struct Listeners {
    _open: Closure<dyn FnMut(JsValue)>,
    _message: Closure<dyn FnMut(MessageEvent)>,
    _close: Closure<dyn FnMut(JsValue)>,
    _error: Closure<dyn FnMut(JsValue)>,
}

impl Conn {
    /// Opens the control WebSocket to `url`; the hello goes out once it is open.
    pub(crate) fn open(t: &Rc<Tunnel>, gen: u64, url: &str, hello: Hello) -> Result<Conn, JsValue> {
        let ws = WebSocket::new_with_str(url, SUBPROTOCOL)?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let listeners = Listeners {
            _open: {
                let t = t.clone();
                Closure::new(move |_: JsValue| t.on_socket_open(gen))
            },
            _message: {
                let t = t.clone();
                Closure::new(move |e: MessageEvent| t.on_socket_message(gen, &e))
            },
            // Closing a socket may fire its error and close events at once, inside our
            // own `close()` call (Node 22's WebSocket does): those two are handled on a
            // later microtask, never re-entering the client.
            _close: {
                let t = t.clone();
                Closure::new(move |e: JsValue| {
                    let t = t.clone();
                    wasm_bindgen_futures::spawn_local(async move { t.on_socket_close(gen, &e) });
                })
            },
            _error: {
                let t = t.clone();
                Closure::new(move |_: JsValue| {
                    let t = t.clone();
                    wasm_bindgen_futures::spawn_local(async move { t.on_socket_error(gen) });
                })
            },
        };
        ws.set_onopen(Some(listeners._open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(listeners._message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(listeners._close.as_ref().unchecked_ref()));
        // Browsers follow an error with a close event; Node 22's WebSocket does not, so
        // the error itself ends the connection. (Node's `ws` also throws on an error
        // nobody listens to.)
        ws.set_onerror(Some(listeners._error.as_ref().unchecked_ref()));
        let flusher = {
            let t = Rc::downgrade(t);
            Flusher::new(Rc::new(move || {
                if let Some(t) = t.upgrade() {
                    t.on_flush(gen);
                }
            }))
        };
        let mut session = Session::client(Config::DEFAULT, hello, Instant::ZERO);
        if js::is_browser() {
            session.set_idle_floor(BROWSER_IDLE_FLOOR);
        }
        Ok(Conn {
            gen,
            session,
            streams: HashMap::new(),
            welcomed: false,
            ws,
            epoch_ms: Date::now(),
            last_micros: 0,
            timer: None,
            timer_at: None,
            listeners: Some(listeners),
            flusher,
            flush_pending: false,
        })
    }

    /// The session's clock: microseconds since this attempt began, never going back.
    pub(crate) fn now(&mut self) -> Instant {
        let elapsed_ms = Date::now() - self.epoch_ms;
        let micros = if elapsed_ms > 0.0 { (elapsed_ms * 1000.0) as u64 } else { 0 };
        self.last_micros = self.last_micros.max(micros);
        Instant::from_micros(self.last_micros)
    }

    /// The socket is open: frames can be sent.
    pub(crate) fn is_open(&self) -> bool {
        self.ws.ready_state() == OPEN
    }

    /// Arranges for [`Conn::flush`] to run on a later task, if the session has
    /// anything to send and no flush is pending.
    pub(crate) fn schedule_flush(&mut self) {
        if !self.flush_pending && self.session.has_transmit() && self.is_open() {
            self.flush_pending = true;
            self.flusher.schedule();
        }
    }

    /// Sends every frame the session has queued, if the socket is open, packed into
    /// as few messages as the server accepts.
    pub(crate) fn flush(&mut self) {
        self.flush_pending = false;
        if !self.is_open() {
            return;
        }
        while let Some(frame) = self.session.poll_transmit_batch() {
            if let Err(e) = self.ws.send_with_array_buffer(&js::array_buffer(&frame)) {
                // A socket that refuses a send is dead, whatever its events say.
                let message = format!("sending to the server failed: {}", js::error_message(&e));
                self.session.close(CloseCode::Internal, &message);
                return;
            }
        }
    }

    /// Arms the timer for the session's next deadline (heartbeat or idle timeout).
    /// A deadline that moved later (every received message pushes the idle deadline)
    /// keeps the armed timer: it fires early, the session finds nothing due, and the
    /// timer is armed again then. Re-arming at every message cost a `clearTimeout` and a
    /// `setTimeout` each.
    pub(crate) fn rearm(&mut self, t: &Rc<Tunnel>) {
        let deadline = self.session.poll_timeout();
        if self.timer.is_some() && deadline.is_some() && self.timer_at.is_some_and(|at| Some(at) <= deadline) {
            return;
        }
        if deadline == self.timer_at && (self.timer.is_some() || deadline.is_none()) {
            return;
        }
        self.timer_at = deadline;
        let old = self.timer.take();
        js::defer_drop(old);
        if let Some(at) = deadline {
            let now = self.now();
            let ms = at.saturating_duration_since(now).as_micros().div_ceil(1000);
            let ms = u32::try_from(ms).unwrap_or(u32::MAX).min(i32::MAX as u32);
            let t = t.clone();
            let gen = self.gen;
            self.timer = Some(Timeout::new(ms, move || t.on_timer(gen)));
        }
    }

    /// The timer fired: forget it so that the next `rearm` sets a new one.
    pub(crate) fn timer_fired(&mut self) {
        self.timer_at = None;
        js::defer_drop(self.timer.take());
    }

    /// The socket, e.g. to wait for its close event.
    pub(crate) fn socket(&self) -> WebSocket {
        self.ws.clone()
    }

    /// Closes the socket (after the frames already handed to it).
    pub(crate) fn close_socket(&mut self) {
        let state = self.ws.ready_state();
        if state < CLOSING {
            let _ = self.ws.close_with_code(1000);
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        // The error listener stays: Node's `ws` throws on an error nobody listens to.
        self.ws.set_onerror(Some(&js::noop()));
        self.close_socket();
        if let Some(l) = self.listeners.take() {
            js::defer_drop(l);
        }
    }
}
