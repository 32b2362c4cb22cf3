//! A visitor's HTTP request: build a real `Request`, call the handler, stream its
//! `Response` back under flow control.
//!
//! Request bodies stream into a `ReadableStream` whose bytes are granted back to the
//! server (`Session::release`) only when the handler has read them, so a handler that
//! reads slowly slows the visitor down instead of filling memory. Runtimes that cannot
//! put a stream in a `Request` get the body buffered (up to [`MAX_BUFFERED`]).

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::{Rc, Weak};
use std::task::Poll;

use bytes::Bytes;
use gloo_timers::future::TimeoutFuture;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, SET_COOKIE};
use js_sys::{Array, Date, Function, Promise};
use localtunnels_core::error_page::{default_message, format_request_id, wants_html, ErrorPage};
use localtunnels_core::inspect::BodyCapture;
use localtunnels_core::{Header, RequestHead, ResetCode, ResponseHead, StreamError, StreamId};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{
    AbortController, AbortSignal, Headers, ReadableStream, ReadableStreamDefaultController,
    ReadableStreamDefaultReader, Request, RequestInit, Response,
};

use crate::conn::Slot;
use crate::inspect::Record;
use crate::js;
use crate::options::Handler;
use crate::tunnel::{Kind, Tunnel};

/// Largest request body collected in runtimes without request streams.
const MAX_BUFFERED: usize = 16 * 1024 * 1024;

/// The client's side of one HTTP stream.
pub(crate) struct HttpStream {
    body: Body,
    abort: Option<AbortController>,
    /// Resolves the response task's wait for send credit.
    pub(crate) writable: Option<Function>,
    /// The response body being sent, cancelled if the visitor goes away.
    reader: Option<ReadableStreamDefaultReader>,
    /// The visitor finished sending.
    req_done: bool,
    /// We finished sending.
    resp_done: bool,
    /// The inspector's entry, and the copy of the request body so far.
    record: Option<Record>,
    capture: Option<BodyCapture>,
}

/// Where the visitor's body bytes go.
enum Body {
    /// Released and dropped as they arrive (no body expected, or nobody reads it).
    Discard,
    /// Into the request's `ReadableStream`.
    Stream(Rc<BodySource>),
    /// Collected; the handler runs once the body is complete.
    Buffer(Box<Buffered>),
}

struct Buffered {
    data: Vec<u8>,
    headers: Vec<Header>,
    handler: Handler,
    meta: Meta,
    signal: Option<AbortSignal>,
}

/// What the response side needs to know about the request.
#[derive(Clone)]
struct Meta {
    id: StreamId,
    method: String,
    url: String,
    started: f64,
    timeout_ms: u32,
    /// The visitor's `Accept` asks for HTML: error pages are HTML.
    html: bool,
    /// The inspector's entry for this exchange.
    record: Option<Record>,
}

impl Meta {
    fn head_only(&self) -> bool {
        self.method.eq_ignore_ascii_case("HEAD")
    }
}

/// The stream `id` of the connection `gen` opened: build the request and serve it.
pub(crate) fn on_open(t: &Rc<Tunnel>, gen: u64, id: StreamId, head: RequestHead, end: bool) {
    let (base, handler, timeout_ms) = {
        let st = t.st.borrow();
        (st.url.clone().unwrap_or_default(), st.on_request.clone(), st.options.response_timeout_ms)
    };
    let accept = head.headers.iter().find(|(n, _)| n == http::header::ACCEPT).map(|(_, v)| v.as_bytes());
    let html = wants_html(accept);
    let record = t.inspect.begin(&head.method, &head.target, &head.headers);
    let url = join_url(&base, &head.target);
    let meta = Meta { id, method: head.method, url, started: Date::now(), timeout_ms, html, record: record.clone() };
    // Events cost objects and strings per request: only built for someone listening.
    if t.listens(Kind::Request) {
        let event = js::object(&[
            ("id", JsValue::from(id)),
            ("method", JsValue::from_str(&meta.method)),
            ("url", JsValue::from_str(&meta.url)),
            ("websocket", JsValue::FALSE),
            ("recordId", Record::js_id(meta.record.as_ref())),
        ]);
        t.emit(Kind::Request, &event);
    }

    let abort = AbortController::new().ok();
    let signal = abort.as_ref().map(AbortController::signal);
    let capture = record.as_ref().filter(|_| !end).map(|r| r.inspect.capture());
    let mut stream = HttpStream {
        body: Body::Discard,
        abort,
        writable: None,
        reader: None,
        req_done: end,
        resp_done: false,
        record,
        capture,
    };
    let bodiless = end || meta.method.eq_ignore_ascii_case("GET") || meta.head_only();
    let answer = match handler {
        None => Err((503, "no request handler: call client.onRequest(handler) first".to_string())),
        Some(handler) => {
            let headers = head.headers;
            if bodiless {
                build_request(&meta, &headers, None, signal.as_ref()).map(|r| (handler, r))
            } else if request_streams_supported() {
                match BodySource::new(t, gen, id) {
                    Ok((body, source)) => {
                        stream.body = Body::Stream(Rc::new(source));
                        build_request(&meta, &headers, Some(&body), signal.as_ref()).map(|r| (handler, r))
                    }
                    Err(e) => Err((500, format!("cannot create the request body stream: {}", js::error_message(&e)))),
                }
            } else {
                let buffered = Buffered { data: Vec::new(), headers, handler, meta, signal };
                stream.body = Body::Buffer(Box::new(buffered));
                t.with_conn(gen, |c| c.streams.insert(id, Slot::Http(stream)));
                return;
            }
        }
    };
    t.with_conn(gen, |c| c.streams.insert(id, Slot::Http(stream)));
    spawn_local(serve(t.clone(), gen, answer, meta));
}

/// Body bytes (or its end) for stream `id`.
pub(crate) fn on_data(t: &Rc<Tunnel>, gen: u64, id: StreamId, data: Bytes, end: bool) {
    enum Next {
        Nothing,
        Enqueue(Rc<BodySource>),
        Serve(Box<Buffered>),
        TooLarge(Meta),
    }
    let n = data.len();
    let next = t.with_conn(gen, |c| {
        let Some(Slot::Http(h)) = c.streams.get_mut(&id) else {
            c.session.release(id, n);
            return Next::Nothing;
        };
        h.req_done |= end;
        if let Some(c) = h.capture.as_mut() {
            c.push(&data);
        }
        if end {
            if let (Some(c), Some(r)) = (h.capture.take(), h.record.as_ref()) {
                r.request_body(c);
            }
        }
        let next = match &mut h.body {
            Body::Discard => {
                c.session.release(id, n);
                Next::Nothing
            }
            Body::Stream(source) => {
                if source.shared.cancelled.get() {
                    c.session.release(id, n);
                } else {
                    source.shared.unreleased.set(source.shared.unreleased.get() + n);
                }
                Next::Enqueue(source.clone())
            }
            Body::Buffer(b) => {
                c.session.release(id, n);
                b.data.extend_from_slice(&data);
                if b.data.len() > MAX_BUFFERED {
                    let meta = b.meta.clone();
                    h.body = Body::Discard;
                    Next::TooLarge(meta)
                } else if end {
                    match std::mem::replace(&mut h.body, Body::Discard) {
                        Body::Buffer(b) => Next::Serve(b),
                        _ => Next::Nothing,
                    }
                } else {
                    Next::Nothing
                }
            }
        };
        if h.req_done && h.resp_done {
            c.streams.remove(&id);
        }
        next
    });
    match next.unwrap_or(Next::Nothing) {
        Next::Nothing => {}
        Next::Enqueue(source) => source.push(t, gen, id, &data, end),
        Next::Serve(b) => {
            let body = js::u8_array(&b.data);
            let b = *b;
            let answer = build_request(&b.meta, &b.headers, Some(&body), b.signal.as_ref()).map(|r| (b.handler, r));
            spawn_local(serve(t.clone(), gen, answer, b.meta));
        }
        Next::TooLarge(meta) => {
            let message = format!("the request body is larger than {MAX_BUFFERED} bytes");
            spawn_local(serve(t.clone(), gen, Err((413, message)), meta));
        }
    }
}

/// The stream is gone (reset by the visitor, or the tunnel dropped).
pub(crate) fn fail(h: HttpStream, message: &str) {
    if let Some(r) = &h.record {
        r.fail(message);
    }
    if let Body::Stream(source) = &h.body {
        source.controller.error_with_e(&js::error(message));
    }
    if let Some(reader) = &h.reader {
        js::ignore(reader.cancel());
    }
    if let Some(abort) = &h.abort {
        abort.abort();
    }
    if let Some(resolve) = &h.writable {
        let _ = resolve.call0(&JsValue::UNDEFINED);
    }
}

/// Calls the handler and sends what it answers, or an error page.
async fn serve(t: Rc<Tunnel>, gen: u64, answer: Result<(Handler, Request), (u16, String)>, meta: Meta) {
    let outcome = match answer {
        Ok((handler, request)) => call_handler(&handler, &request, meta.timeout_ms).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(response) => send_response(&t, gen, response, &meta).await,
        Err((status, message)) => send_error(&t, gen, &meta, status, &message),
    }
}

/// Runs the handler with a deadline. `Err` holds the status and message for the visitor.
async fn call_handler(handler: &Handler, request: &Request, timeout_ms: u32) -> Result<JsValue, (u16, String)> {
    let returned = handler
        .call(request.as_ref())
        .map_err(|e| (502, format!("the request handler threw: {}", js::error_message(&e))))?;
    // A handler that answered at once needs no promise, no deadline and no timer.
    if returned.is_instance_of::<Response>() {
        return Ok(returned);
    }
    let answer = JsFuture::from(Promise::resolve(&returned));
    let timeout = TimeoutFuture::new(timeout_ms);
    let mut answer = pin!(answer);
    let mut timeout = pin!(timeout);
    let settled = poll_fn(|cx| {
        if let Poll::Ready(r) = answer.as_mut().poll(cx) {
            return Poll::Ready(Some(r));
        }
        timeout.as_mut().poll(cx).map(|()| None)
    })
    .await;
    match settled {
        None => Err((504, format!("the request handler did not answer within {timeout_ms} ms"))),
        Some(Err(e)) => Err((502, format!("the request handler failed: {}", js::error_message(&e)))),
        Some(Ok(value)) => {
            let kind = js::type_name(&value);
            as_response(value).ok_or_else(|| (502, format!("the request handler returned {kind}, not a Response")))
        }
    }
}

/// A `Response`, or a plain object shaped like one: `{ status, headers?, body? }`.
/// The plain form exists for browsers, whose `Response` silently drops `set-cookie`.
fn as_response(value: JsValue) -> Option<JsValue> {
    let ok = value.is_instance_of::<Response>() || js::get(&value, "status").as_f64().is_some();
    ok.then_some(value)
}

/// A response body to send.
enum OutBody {
    None,
    Stream(ReadableStream),
    Bytes(Bytes),
}

impl OutBody {
    fn cancel(self) {
        if let OutBody::Stream(body) = self {
            js::ignore(body.cancel());
        }
    }
}

/// Status, headers and body of a `Response` or of a response-shaped object.
fn take_apart(value: &JsValue) -> Result<(u16, Vec<Header>, OutBody), String> {
    // A real Response through its typed getters; a plain object by property name.
    let response = value.dyn_ref::<Response>();
    let status = match response {
        Some(r) => f64::from(r.status()),
        None => js::get(value, "status").as_f64().unwrap_or(0.0),
    };
    let body = match response {
        Some(r) => r.body().map_or(JsValue::NULL, JsValue::from),
        None => js::get(value, "body"),
    };
    let body = if body.is_null() || body.is_undefined() {
        OutBody::None
    } else if body.is_instance_of::<ReadableStream>() || js::as_function(&js::get(&body, "getReader")).is_some() {
        OutBody::Stream(body.unchecked_into())
    } else if let Some((bytes, _)) = js::bytes_of(&body) {
        OutBody::Bytes(bytes)
    } else {
        return Err(format!(
            "the response body must be a ReadableStream, a string or bytes, got {}",
            js::type_name(&body)
        ));
    };
    if !(200.0..=999.0).contains(&status) || status.fract() != 0.0 {
        body.cancel();
        return Err(format!("the request handler returned a Response with status {status} (a network error?)"));
    }
    let headers = match response {
        Some(r) => r.headers().into(),
        None => js::get(value, "headers"),
    };
    let headers = if headers.is_undefined() || headers.is_null() { Vec::new() } else { response_headers(&headers)? };
    Ok((status as u16, headers, body))
}

/// Sends the handler's response: head, then the body chunk by chunk.
async fn send_response(t: &Rc<Tunnel>, gen: u64, response: JsValue, meta: &Meta) {
    let id = meta.id;
    let (status, headers, body) = match take_apart(&response) {
        Ok(parts) => parts,
        Err(message) => {
            send_error(t, gen, meta, 502, &message);
            return;
        }
    };
    let body = if meta.head_only() {
        body.cancel();
        OutBody::None
    } else {
        body
    };
    let recorded = meta.record.as_ref().map(|r| (r, headers.clone()));
    let head = ResponseHead { status, headers };
    let sent = t.with_conn(gen, |c| c.session.respond(id, head, matches!(body, OutBody::None)));
    t.pump();
    match sent {
        Some(Ok(())) => {}
        Some(Err(StreamError::HeadTooLarge { size, limit })) => {
            body.cancel();
            let message = format!("the response headers are too large ({size} bytes, limit {limit})");
            send_error(t, gen, meta, 502, &message);
            return;
        }
        _ => {
            body.cancel();
            return;
        }
    }
    let mut capture = recorded.map(|(r, headers)| {
        r.respond(status, &headers);
        r.inspect.capture()
    });
    emit_response(t, meta, status);
    match body {
        OutBody::None => {}
        OutBody::Stream(body) => send_body(t, gen, id, &body, capture.as_mut()).await,
        OutBody::Bytes(bytes) => {
            if let Some(c) = capture.as_mut() {
                c.push(&bytes);
            }
            if send_all(t, gen, id, bytes).await && t.with_conn(gen, |c| c.session.finish(id)).is_some() {
                t.pump();
            }
        }
    }
    if let (Some(r), Some(c)) = (&meta.record, capture) {
        r.response_body(c);
    }
    response_done(t, gen, id);
}

/// Copies a response body into the stream, honouring the stream's send window.
async fn send_body(
    t: &Rc<Tunnel>,
    gen: u64,
    id: StreamId,
    body: &ReadableStream,
    mut capture: Option<&mut BodyCapture>,
) {
    let reader = match js::try_get_reader(body) {
        Ok(reader) => reader,
        Err(e) => {
            let message = format!("cannot read the response body: {}", js::error_message(&e));
            t.emit_error(&message);
            reset(t, gen, id, ResetCode::Internal, &message);
            return;
        }
    };
    let stored = t.with_conn(gen, |c| match c.streams.get_mut(&id) {
        Some(Slot::Http(h)) => {
            h.reader = Some(reader.clone());
            true
        }
        _ => false,
    });
    if stored != Some(true) {
        js::ignore(reader.cancel());
        return;
    }
    loop {
        let chunk = match JsFuture::from(reader.read()).await {
            Ok(chunk) => chunk,
            Err(e) => {
                // A body that fails because the visitor left (its stream was reset) is no news.
                let live = t.with_conn(gen, |c| c.streams.contains_key(&id)) == Some(true);
                if live {
                    let message = format!("the response body failed: {}", js::error_message(&e));
                    t.emit_error(&message);
                    reset(t, gen, id, ResetCode::Internal, &message);
                }
                return;
            }
        };
        let chunk: js::ReadResult = chunk.unchecked_into();
        if chunk.done().as_bool() != Some(false) {
            if t.with_conn(gen, |c| c.session.finish(id)).is_some() {
                t.pump();
            }
            return;
        }
        let value = chunk.value();
        let Some((bytes, _)) = js::bytes_of(&value) else {
            let message = format!("response body chunks must be Uint8Array, got {}", js::type_name(&value));
            t.emit_error(&message);
            js::ignore(reader.cancel());
            reset(t, gen, id, ResetCode::Internal, &message);
            return;
        };
        if let Some(c) = capture.as_deref_mut() {
            c.push(&bytes);
        }
        if !send_all(t, gen, id, bytes).await {
            js::ignore(reader.cancel());
            return;
        }
    }
}

/// Offers `data` to the session until all of it is taken, waiting for `Writable`
/// whenever the window is shut. `false` when the stream is gone.
async fn send_all(t: &Rc<Tunnel>, gen: u64, id: StreamId, mut data: Bytes) -> bool {
    while !data.is_empty() {
        let taken = t.with_conn(gen, |c| c.session.send_data(id, data.clone()));
        let Some(Ok(n)) = taken else { return false };
        t.pump();
        data = data.slice(n.min(data.len())..);
        if data.is_empty() {
            break;
        }
        let mut resolve = None;
        let wake = Promise::new(&mut |res, _| resolve = Some(res));
        let waiting = t.with_conn(gen, |c| match c.streams.get_mut(&id) {
            Some(Slot::Http(h)) => {
                h.writable = resolve.take();
                true
            }
            _ => false,
        });
        if waiting != Some(true) {
            return false;
        }
        let _ = JsFuture::from(wake).await;
    }
    true
}

/// The client's own error answer, rendered by [`localtunnels_core::error_page`]. A
/// 4xx is about the visitor's request and says so; a 5xx (the handler threw, timed
/// out, answered something that is not a `Response`) shows the visitor a generic page
/// with a request id and sends `detail` to the `error` event under that id, unless the
/// owner set `exposeErrors: true` (then the page shows it too).
fn send_error(t: &Rc<Tunnel>, gen: u64, meta: &Meta, status: u16, detail: &str) {
    let id = meta.id;
    // 53 random bits are plenty for an id that only has to tell requests apart.
    let request_id = format_request_id((js_sys::Math::random() * 9_007_199_254_740_992.0) as u64);
    let (message, shown) = if status < 500 {
        (detail, None)
    } else {
        let message = format!("{} {} (request id {request_id}): {detail}", meta.method, meta.url);
        // Nobody listens for `error`: the owner still gets the detail, on the console.
        if t.listens(Kind::Error) {
            t.emit_error(&message);
        } else {
            web_sys::console::warn_1(&JsValue::from_str(&format!("localtunnels: {message}")));
        }
        let expose = t.st.borrow().options.expose_errors;
        (default_message(status), expose.then_some(detail))
    };
    let page = ErrorPage { status, message, request_id: &request_id, detail: shown }.render(meta.html);
    let body = Bytes::from(page.body);
    let head_only = meta.head_only();
    let headers: Vec<Header> = vec![
        (CONTENT_TYPE, HeaderValue::from_static(page.content_type)),
        (CONTENT_LENGTH, HeaderValue::from(body.len())),
        (http::header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    if let Some(r) = &meta.record {
        r.respond(status, &headers);
        let mut capture = r.inspect.capture();
        if !head_only {
            capture.push(&body);
        }
        r.response_body(capture);
    }
    let sent = t.with_conn(gen, |c| {
        c.session.respond(id, ResponseHead { status, headers }, head_only)?;
        if !head_only {
            c.session.send_data(id, body)?;
            c.session.finish(id)?;
        }
        Ok::<(), StreamError>(())
    });
    t.pump();
    if sent == Some(Ok(())) {
        emit_response(t, meta, status);
    }
    response_done(t, gen, id);
}

fn emit_response(t: &Rc<Tunnel>, meta: &Meta, status: u16) {
    if !t.listens(Kind::Response) {
        return;
    }
    let event = js::object(&[
        ("id", JsValue::from(meta.id)),
        ("method", JsValue::from_str(&meta.method)),
        ("url", JsValue::from_str(&meta.url)),
        ("status", JsValue::from(status)),
        ("duration", JsValue::from(Date::now() - meta.started)),
        ("recordId", Record::js_id(meta.record.as_ref())),
    ]);
    t.emit(Kind::Response, &event);
}

/// Our side is finished. A body the visitor is still sending is dropped from now on.
fn response_done(t: &Rc<Tunnel>, gen: u64, id: StreamId) {
    t.with_conn(gen, |c| {
        let Some(Slot::Http(h)) = c.streams.get_mut(&id) else { return };
        h.resp_done = true;
        h.reader = None;
        h.writable = None;
        if h.req_done {
            c.streams.remove(&id);
            return;
        }
        if let Body::Stream(source) = &h.body {
            source.shared.cancelled.set(true);
            c.session.release(id, source.shared.unreleased.take());
        }
    });
    t.pump();
}

/// Abandons the stream both ways.
fn reset(t: &Rc<Tunnel>, gen: u64, id: StreamId, code: ResetCode, message: &str) {
    let slot = t
        .with_conn(gen, |c| {
            c.session.reset(id, code, message);
            c.streams.remove(&id)
        })
        .flatten();
    if let Some(Slot::Http(mut h)) = slot {
        h.reader = None;
        fail(h, message);
    }
    t.pump();
}

/// The underlying source of a request body `ReadableStream`.
pub(crate) struct BodySource {
    controller: ReadableStreamDefaultController,
    shared: Rc<BodyShared>,
    _pull: Closure<dyn FnMut(JsValue)>,
    _cancel: Closure<dyn FnMut(JsValue)>,
}

#[derive(Default)]
struct BodyShared {
    /// Bytes enqueued and not yet granted back to the visitor.
    unreleased: Cell<usize>,
    /// The reader cancelled the stream (or the response is done): drop what comes.
    cancelled: Cell<bool>,
}

impl BodySource {
    fn new(t: &Rc<Tunnel>, gen: u64, id: StreamId) -> Result<(ReadableStream, BodySource), JsValue> {
        let shared = Rc::new(BodyShared::default());
        let weak = Rc::downgrade(t);
        // `pull` runs when the stream's queue is empty: every byte enqueued so far
        // has been read, so it can all be granted back.
        let pull = {
            let (shared, weak) = (shared.clone(), weak.clone());
            Closure::new(move |_: JsValue| release_later(&weak, gen, id, shared.unreleased.take()))
        };
        let cancel = {
            let shared = shared.clone();
            Closure::new(move |_: JsValue| {
                shared.cancelled.set(true);
                release_later(&weak, gen, id, shared.unreleased.take());
            })
        };
        let slot = Rc::new(RefCell::new(None));
        let start = {
            let slot = slot.clone();
            Closure::<dyn FnMut(ReadableStreamDefaultController)>::new(move |c| *slot.borrow_mut() = Some(c))
        };
        let source = js::object(&[
            ("start", start.as_ref().clone()),
            ("pull", pull.as_ref().clone()),
            ("cancel", cancel.as_ref().clone()),
        ]);
        // `start` runs inside the constructor.
        let stream = ReadableStream::new_with_underlying_source(&source)?;
        drop(start);
        let controller = slot.borrow_mut().take().ok_or_else(|| js::error("ReadableStream did not call start"))?;
        Ok((stream, BodySource { controller, shared, _pull: pull, _cancel: cancel }))
    }

    /// Hands a chunk (and the end) to the reader. Must run with nothing borrowed:
    /// `enqueue` may call `pull` synchronously.
    fn push(&self, t: &Rc<Tunnel>, gen: u64, id: StreamId, data: &[u8], end: bool) {
        if !data.is_empty()
            && !self.shared.cancelled.get()
            && self.controller.enqueue_with_chunk(&js::u8_array(data)).is_err()
        {
            self.shared.cancelled.set(true);
        }
        if end || self.shared.cancelled.get() {
            if end {
                let _ = self.controller.close();
            }
            let n = self.shared.unreleased.take();
            if n > 0 {
                t.with_conn(gen, |c| c.session.release(id, n));
            }
        }
    }
}

fn release_later(weak: &Weak<Tunnel>, gen: u64, id: StreamId, n: usize) {
    if n == 0 {
        return;
    }
    let weak = weak.clone();
    spawn_local(async move {
        if let Some(t) = weak.upgrade() {
            t.with_conn(gen, |c| c.session.release(id, n));
            t.pump();
        }
    });
}

/// Sends a captured request to the request handler again (`client.replay`), recording
/// the exchange in `record`; the handler's body is read whole (its first bytes kept).
pub(crate) async fn replay(
    t: &Rc<Tunnel>,
    record: Record,
    method: String,
    target: String,
    headers: Vec<Header>,
    body: Bytes,
) -> Result<(), String> {
    let (base, handler, timeout_ms) = {
        let st = t.st.borrow();
        (st.url.clone().unwrap_or_default(), st.on_request.clone(), st.options.response_timeout_ms)
    };
    let failed = |message: String| {
        record.fail(&message);
        message
    };
    let handler = handler.ok_or_else(|| failed("no request handler: call client.onRequest(handler) first".into()))?;
    let url = join_url(&base, &target);
    let html = wants_html(headers.iter().find(|(n, _)| n == http::header::ACCEPT).map(|(_, v)| v.as_bytes()));
    let meta = Meta { id: 0, method, url, started: Date::now(), timeout_ms, html, record: Some(record.clone()) };
    let mut capture = record.inspect.capture();
    capture.push(&body);
    record.request_body(capture);
    let body = (!body.is_empty()).then(|| JsValue::from(js::u8_array(&body)));
    let request = build_request(&meta, &headers, body.as_ref(), None).map_err(|(_, m)| failed(m))?;
    let response = call_handler(&handler, &request, timeout_ms).await.map_err(|(_, m)| failed(m))?;
    let (status, headers, body) = take_apart(&response).map_err(failed)?;
    record.respond(status, &headers);
    let mut capture = record.inspect.capture();
    match body {
        OutBody::None => {}
        OutBody::Bytes(bytes) => capture.push(&bytes),
        OutBody::Stream(body) => {
            let reader = js::try_get_reader(&body).map_err(|e| failed(js::error_message(&e)))?;
            loop {
                let chunk = JsFuture::from(reader.read()).await.map_err(|e| failed(js::error_message(&e)))?;
                let chunk: js::ReadResult = chunk.unchecked_into();
                if chunk.done().as_bool() != Some(false) {
                    break;
                }
                if let Some((bytes, _)) = js::bytes_of(&chunk.value()) {
                    capture.push(&bytes);
                }
            }
        }
    }
    record.response_body(capture);
    Ok(())
}

fn build_request(
    meta: &Meta,
    headers: &[Header],
    body: Option<&JsValue>,
    signal: Option<&AbortSignal>,
) -> Result<Request, (u16, String)> {
    let init = RequestInit::new();
    if meta.method != "GET" {
        init.set_method(&meta.method);
    }
    if let Some(body) = body {
        init.set_body(body);
        js::set(&init, "duplex", "half");
    }
    init.set_signal(signal);
    let request = Request::new_with_str_and_init(&meta.url, &init)
        .map_err(|e| (400, format!("the request cannot be represented as a Request: {}", js::error_message(&e))))?;
    // Straight into the request's own headers: a separate `Headers` in the init would
    // be built, then copied. The request's guard drops forbidden names as the copy did.
    let target = request.headers();
    for (name, value) in headers {
        js::append_header(&target, name.as_str(), value);
    }
    Ok(request)
}

/// A `Headers` with every header in order. Names or values the runtime rejects, and in
/// browsers the forbidden request headers (`cookie`, `host`, ...), are left out.
pub(crate) fn headers_of(headers: &[Header]) -> Headers {
    let out = Headers::new().unwrap_or_else(|_| js::object(&[]).unchecked_into());
    for (name, value) in headers {
        let _ = out.append(name.as_str(), &js::latin1(value.as_bytes()));
    }
    out
}

/// The response's headers in order, from a `Headers`, an array of pairs or a plain
/// object (whose values may be arrays). `Headers` joins repeated headers with `, `,
/// which breaks `set-cookie`: those come from `getSetCookie()` one by one where it exists.
/// A name or value HTTP cannot carry (only a plain object can hold one) is an error.
pub(crate) fn response_headers(headers: &JsValue) -> Result<Vec<Header>, String> {
    let mut get_set_cookie = None;
    let mut cookies_done = false;
    let mut out = Vec::new();
    let pairs = if js_sys::Reflect::has(headers, &js_sys::Symbol::iterator()).unwrap_or(false) {
        js::pairs(headers)
    } else {
        let mut pairs = Vec::new();
        for entry in js_sys::Object::entries(headers.unchecked_ref()).iter() {
            let entry: Array = entry.unchecked_into();
            let Some(name) = entry.get(0).as_string() else { continue };
            let value = entry.get(1);
            if Array::is_array(&value) {
                pairs.extend(Array::from(&value).iter().filter_map(|v| v.as_string()).map(|v| (name.clone(), v)));
            } else if let Some(v) = value.as_string().or_else(|| value.as_f64().map(|n| n.to_string())) {
                pairs.push((name, v));
            }
        }
        pairs
    };
    for (name, value) in pairs {
        if name.eq_ignore_ascii_case("set-cookie") {
            let get_set_cookie =
                get_set_cookie.get_or_insert_with(|| js::as_function(&js::get(headers, "getSetCookie")));
            if let Some(f) = get_set_cookie {
                if !cookies_done {
                    cookies_done = true;
                    let list = f.call0(headers).unwrap_or(JsValue::UNDEFINED);
                    for cookie in Array::from(&list).iter() {
                        if let Some(cookie) = cookie.as_string() {
                            out.push((SET_COOKIE, header_value(&cookie)?));
                        }
                    }
                }
                continue;
            }
        }
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("the response header name {name:?} is invalid"))?;
        out.push((name, header_value(&value)?));
    }
    Ok(out)
}

/// A header value from a JavaScript string (a ByteString: one byte per character).
fn header_value(value: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_maybe_shared(js::byte_string(value))
        .map_err(|_| format!("the response header value {value:?} is invalid"))
}

/// The public URL of a request target.
pub(crate) fn join_url(base: &str, target: &str) -> String {
    if target.starts_with("http://") || target.starts_with("https://") {
        return target.to_string();
    }
    let base = base.trim_end_matches('/');
    if target.starts_with('/') {
        format!("{base}{target}")
    } else {
        format!("{base}/{target}")
    }
}

thread_local! {
    static REQUEST_STREAMS: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Whether `new Request(url, { body: ReadableStream, duplex: 'half' })` keeps the
/// stream (Chromium, Node, Deno, workerd) rather than failing or turning it into the
/// text "[object ReadableStream]" (which adds a content-type).
fn request_streams_supported() -> bool {
    REQUEST_STREAMS.with(|cell| {
        if let Some(known) = cell.get() {
            return known;
        }
        let supported = (|| {
            let stream = ReadableStream::new().ok()?;
            let init = RequestInit::new();
            init.set_method("POST");
            init.set_body(&stream);
            js::set(&init, "duplex", "half");
            let request = Request::new_with_str_and_init("http://localhost/", &init).ok()?;
            Some(!request.headers().has("content-type").unwrap_or(true))
        })()
        .unwrap_or(false);
        cell.set(Some(supported));
        supported
    })
}

#[cfg(test)]
mod tests {
    use super::join_url;

    #[test]
    fn urls() {
        assert_eq!(join_url("http://demo.localhost:3000", "/a?b=c"), "http://demo.localhost:3000/a?b=c");
        assert_eq!(join_url("http://demo.localhost:3000/", "/"), "http://demo.localhost:3000/");
        assert_eq!(join_url("https://x.dev", "*"), "https://x.dev/*");
        assert_eq!(join_url("https://x.dev", "http://other/"), "http://other/");
    }
}
