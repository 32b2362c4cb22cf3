//! `TunnelClient`, the class JavaScript sees.

use std::rc::Rc;

use js_sys::Promise;
use wasm_bindgen::prelude::*;

use crate::js;
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
        let kind = Kind::parse(event)
            .ok_or_else(|| JsError::new(&format!("unknown event {event:?}: use one of {}", Kind::NAMES)))?;
        let f = js::as_function(&listener).ok_or_else(|| {
            JsError::new(&format!("the {event:?} listener must be a function, got {}", js::type_name(&listener)))
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
    /// `name_taken`) or cannot be reached on this first attempt.
    pub fn connect(&self) -> Promise {
        self.tunnel.connect()
    }

    /// Closes the tunnel. Open visitor streams are cut; no reconnect follows.
    pub fn close(&self) {
        self.tunnel.close();
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
