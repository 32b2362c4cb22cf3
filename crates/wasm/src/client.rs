//! `TunnelClient`, the class JavaScript sees.

use std::rc::Rc;

use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::js;

/// Longest wait in `close()` for the server to answer the closing handshake.
const CLOSE_WAIT_MS: i32 = 3000;

/// A promise that resolves when `socket` has closed, or after [`CLOSE_WAIT_MS`].
/// The resolve function is the listener itself: no closure to keep or free.
fn closed(socket: Option<web_sys::WebSocket>) -> Promise {
    let Some(socket) = socket.filter(|s| s.ready_state() != web_sys::WebSocket::CLOSED) else {
        return Promise::resolve(&JsValue::UNDEFINED);
    };
    Promise::new(&mut |resolve, _| {
        // Resolves with nothing, whatever the event listener is called with.
        let resolve: js_sys::Function = resolve.bind1(&JsValue::UNDEFINED, &JsValue::UNDEFINED).unchecked_into();
        let _ = socket.add_event_listener_with_callback("close", &resolve);
        let global = js_sys::global();
        if let Some(set_timeout) = js::as_function(&js::get(&global, "setTimeout")) {
            // Node: this fallback must not keep the process alive by itself.
            if let Ok(timer) = set_timeout.call2(&global, &resolve, &JsValue::from(CLOSE_WAIT_MS)) {
                if let Some(unref) = js::as_function(&js::get(&timer, "unref")) {
                    let _ = unref.call0(&timer);
                }
            }
        }
    })
}
use crate::options::{self, Handler};
use crate::tunnel::{Kind, Tunnel};

/// A tunnel client: answers the visitors of a public URL with JavaScript handlers.
///
/// The tunnel lives until `close()`; dropping the JavaScript object does not close it.
#[wasm_bindgen(skip_typescript)]
pub struct TunnelClient {
    pub(crate) tunnel: Rc<Tunnel>,
}

impl std::fmt::Debug for TunnelClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.tunnel.st.borrow();
        f.debug_struct("TunnelClient").field("server", &st.options.control_url()).field("url", &st.url).finish()
    }
}

#[wasm_bindgen]
impl TunnelClient {
    /// Checks the options; nothing connects until `connect()`.
    #[wasm_bindgen(constructor)]
    pub fn new(options: JsValue) -> Result<TunnelClient, JsError> {
        let parsed = options::parse(options).map_err(|e| JsError::new(&e))?;
        Ok(TunnelClient { tunnel: Tunnel::new(parsed.options, parsed.on_request, parsed.on_web_socket) })
    }

    /// Sets the handler for visitors' HTTP requests: `(request: Request) => Response |
    /// Promise<Response>`, or an object with such a `fetch` method.
    #[wasm_bindgen(js_name = onRequest)]
    pub fn on_request(&self, handler: JsValue) -> Result<(), JsError> {
        let handler = Handler::from_js(&handler, "the onRequest handler").map_err(|e| JsError::new(&e))?;
        self.tunnel.st.borrow_mut().on_request = Some(handler);
        Ok(())
    }

    /// Sets the handler for visitors' WebSockets: `(socket, request) => void`.
    /// Without one, WebSocket upgrades are refused with 404.
    #[wasm_bindgen(js_name = onWebSocket)]
    pub fn on_web_socket(&self, handler: JsValue) -> Result<(), JsError> {
        let Some(f) = js::as_function(&handler) else {
            return Err(JsError::new(&format!(
                "the onWebSocket handler must be a function (socket) => void, got {}",
                js::type_name(&handler)
            )));
        };
        let handler = Handler::from_js(&f, "the onWebSocket handler").map_err(|e| JsError::new(&e))?;
        self.tunnel.st.borrow_mut().on_web_socket = Some(handler);
        Ok(())
    }

    /// Adds a listener for `connected`, `disconnected`, `reconnecting`, `request`,
    /// `response` or `error`.
    pub fn on(&self, event: &str, listener: JsValue) -> Result<(), JsError> {
        let kind = Kind::parse(event).ok_or_else(|| {
            JsError::new(&format!(
                "unknown event {event}: use one of {}",
                Kind::NAMES,
                event = crate::js::quoted(event)
            ))
        })?;
        let f = js::as_function(&listener).ok_or_else(|| {
            JsError::new(&format!(
                "the {event} listener must be a function, got {}",
                js::type_name(&listener),
                event = crate::js::quoted(event)
            ))
        })?;
        self.tunnel.add_listener(kind, f);
        Ok(())
    }

    /// Removes a listener added with `on`.
    pub fn off(&self, event: &str, listener: JsValue) {
        if let Some(kind) = Kind::parse(event) {
            self.tunnel.remove_listener(kind, &listener);
        }
    }

    /// Connects; resolves with the public URL once the server has accepted the tunnel.
    /// Rejects if the server refuses (the `Error` has a `reason` such as
    /// `name_taken`) or cannot be reached on this first attempt. `options.signal`, an
    /// `AbortSignal`, closes the tunnel when aborted (and rejects a pending connect
    /// with the signal's reason).
    pub fn connect(&self, options: JsValue) -> Promise {
        let signal = js::get(&options, "signal");
        if signal.is_undefined() || signal.is_null() {
            return self.tunnel.connect();
        }
        let Some(signal) = signal.dyn_ref::<web_sys::AbortSignal>().cloned() else {
            let message = format!("`signal` must be an AbortSignal, got {}", js::type_name(&signal));
            return Promise::reject(&js::error(&message));
        };
        if signal.aborted() {
            return Promise::reject(&signal.reason());
        }
        let promise = self.tunnel.connect();
        self.tunnel.watch_abort(signal);
        promise
    }

    /// Closes the tunnel: open visitor streams are cut and no reconnect follows. The
    /// promise resolves once the connection to the server has closed (at most 3 s).
    pub fn close(&self) -> Promise {
        let socket = self.tunnel.close();
        closed(socket)
    }

    /// The secret that lets a new client take this tunnel's name back at once (after
    /// a crash, a restart, an evicted Worker): pass it as the `reconnectToken` option.
    #[wasm_bindgen(getter, js_name = reconnectToken)]
    pub fn reconnect_token(&self) -> Option<String> {
        self.tunnel.reconnect_token()
    }

    /// The public URL, once connected.
    #[wasm_bindgen(getter)]
    pub fn url(&self) -> Option<String> {
        self.tunnel.st.borrow().url.clone()
    }

    /// The name (subdomain) the server granted, once connected.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> Option<String> {
        self.tunnel.name()
    }

    /// Whether the tunnel is up right now.
    #[wasm_bindgen(getter)]
    pub fn connected(&self) -> bool {
        self.tunnel.is_connected()
    }
}
