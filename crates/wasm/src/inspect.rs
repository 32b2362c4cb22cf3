//! The request inspector of the wasm client: every exchange copied into the core's
//! bounded store (the native client's, same bounds by default: 64 KiB per body,
//! 3 MiB in all, oldest evicted), read back as `client.requests()` in the agent API's
//! shape, and sent again to the handler with `client.replay(id)`.
//!
//! The store is borrowed only for a copy or a read, never while JavaScript runs.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::Bytes;
use js_sys::{Array, Date, Promise};
use localtunnels_core::inspect::json::entry_json;
use localtunnels_core::inspect::{BodyCapture, EntryId, Exchange, InspectConfig, Store};
use localtunnels_core::{Header, Instant};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::client::TunnelClient;
use crate::http;
use crate::js;

/// The store of one client, shared by its streams.
pub(crate) struct Inspect {
    store: RefCell<Store>,
    enabled: Cell<bool>,
    /// `Date.now()` when the client was made: the store's monotonic zero.
    epoch: f64,
}

/// An entry being recorded: the store and the entry's id.
#[derive(Clone)]
pub(crate) struct Record {
    pub(crate) inspect: Rc<Inspect>,
    pub(crate) id: EntryId,
}

impl Inspect {
    pub(crate) fn new() -> Rc<Inspect> {
        Rc::new(Inspect {
            store: RefCell::new(new_store(InspectConfig::default())),
            enabled: Cell::new(true),
            epoch: Date::now(),
        })
    }

    fn now(&self) -> Instant {
        Instant::from_micros(((Date::now() - self.epoch).max(0.0) * 1000.0) as u64)
    }

    /// A request arrived: its record, unless the inspector is off.
    pub(crate) fn begin(self: &Rc<Self>, method: &str, uri: &str, headers: &[Header]) -> Option<Record> {
        self.begin_exchange(Exchange { method, uri: uri.as_bytes(), headers, websocket: false, replay_of: None })
    }

    fn begin_exchange(self: &Rc<Self>, ex: Exchange<'_>) -> Option<Record> {
        if !self.enabled.get() {
            return None;
        }
        let (now, wall) = (self.now(), (Date::now() * 1e6) as u64);
        let id = self.store.borrow_mut().begin(now, wall, ex);
        Some(Record { inspect: self.clone(), id })
    }

    /// A capture for one body of this store's entries.
    pub(crate) fn capture(&self) -> BodyCapture {
        BodyCapture::new(self.store.borrow().config().body_limit)
    }
}

impl Record {
    /// The id as JavaScript sees it (16 hex digits).
    pub(crate) fn js_id(record: Option<&Record>) -> JsValue {
        record.map_or(JsValue::UNDEFINED, |r| JsValue::from_str(&r.id.to_string()))
    }

    pub(crate) fn request_body(&self, body: BodyCapture) {
        self.inspect.store.borrow_mut().request_body(self.id, body);
    }

    pub(crate) fn respond(&self, status: u16, headers: &[Header]) {
        self.inspect.store.borrow_mut().respond(self.id, status, headers);
    }

    pub(crate) fn response_body(&self, body: BodyCapture) {
        let now = self.inspect.now();
        self.inspect.store.borrow_mut().response_body(self.id, now, body);
    }

    pub(crate) fn fail(&self, message: &str) {
        let now = self.inspect.now();
        self.inspect.store.borrow_mut().fail(self.id, now, message);
    }
}

fn new_store(config: InspectConfig) -> Store {
    Store::new(config, (js_sys::Math::random() * f64::from(u32::MAX)) as u32)
}

/// A whole number option of `client.inspect(options)`, if given.
fn size_option(options: &JsValue, name: &str) -> Result<Option<usize>, JsError> {
    let v = js::get(options, name);
    if v.is_undefined() {
        return Ok(None);
    }
    match v.as_f64() {
        Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_991.0 => Ok(Some(n as usize)),
        _ => Err(JsError::new(&format!("inspect options: {name} must be a whole number of bytes"))),
    }
}

// The TypeScript declarations of the request inspector, written by hand (wasm-bindgen
// appends them to pkg/localtunnels.d.ts).
#[wasm_bindgen(typescript_custom_section)]
const TYPESCRIPT: &'static str = include_str!("inspect.d.ts");

#[wasm_bindgen]
impl TunnelClient {
    /// The recent requests, newest first, as the agent API shows them.
    pub fn requests(&self) -> Result<Array, JsError> {
        let inspect = &self.tunnel.inspect;
        let store = inspect.store.borrow();
        let redact = store.config().redact;
        let out = Array::new();
        for e in store.newest_first() {
            let value = js_sys::JSON::parse(&entry_json(&store, e, redact))
                .map_err(|e| JsError::new(&js::error_message(&e)))?;
            out.push(&value);
        }
        Ok(out)
    }

    /// Forgets the captured requests.
    #[wasm_bindgen(js_name = clearRequests)]
    pub fn clear_requests(&self) {
        self.tunnel.inspect.store.borrow_mut().clear();
    }

    /// Sets the inspector's bounds; what it held is forgotten.
    pub fn inspect(&self, options: JsValue) -> Result<(), JsError> {
        if !options.is_object() {
            return Err(JsError::new("inspect options must be an object"));
        }
        let d = InspectConfig::default();
        let config = InspectConfig {
            body_limit: size_option(&options, "bodyLimit")?.unwrap_or(d.body_limit),
            max_bytes: size_option(&options, "maxBytes")?.unwrap_or(d.max_bytes),
            redact: js::get(&options, "redact").as_bool().unwrap_or(false),
            ..d
        };
        let inspect = &self.tunnel.inspect;
        inspect.enabled.set(js::get(&options, "enabled").as_bool().unwrap_or(true));
        *inspect.store.borrow_mut() = new_store(config);
        Ok(())
    }

    /// Sends captured request `id` to the request handler again (not through the
    /// tunnel); the exchange is recorded as a new entry marked `replay_of`. Resolves
    /// with its id.
    pub fn replay(&self, id: String) -> Promise {
        let tunnel = self.tunnel.clone();
        future_to_promise(async move {
            let inspect = tunnel.inspect.clone();
            let (method, uri, headers, body) = snapshot(&inspect, &id).map_err(|e| js::error(&e))?;
            let replay_of: EntryId = id.parse().map_err(|_| js::error("bad id"))?;
            let ex = Exchange {
                method: &method,
                uri: uri.as_bytes(),
                headers: &headers[..],
                websocket: false,
                replay_of: Some(replay_of),
            };
            let record = inspect.begin_exchange(ex).ok_or_else(|| js::error("the inspector is off"))?;
            let new_id = record.id.to_string();
            http::replay(&tunnel, record, method, uri, headers, body).await.map_err(|e| js::error(&e))?;
            Ok(JsValue::from_str(&new_id))
        })
    }
}

/// Method, target, headers and body of captured request `id`, if whole.
fn snapshot(inspect: &Inspect, id: &str) -> Result<(String, String, Vec<Header>, Bytes), String> {
    let not_found = || format!("no captured request with id {id}");
    let parsed: EntryId = id.parse().map_err(|_| not_found())?;
    let store = inspect.store.borrow();
    let e = store.get(parsed).ok_or_else(not_found)?;
    let r = store.request(e);
    if r.body.truncated() {
        let (kept, size) = (r.body.data().len(), r.body.size());
        return Err(format!("the request body was captured only in part ({kept} of {size} bytes)"));
    }
    let body = Bytes::copy_from_slice(r.body.data());
    Ok((r.method, r.uri, r.headers, body))
}
