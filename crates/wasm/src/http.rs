//! A visitor's HTTP request: build a real `Request`, call the handler, stream its
//! `Response` back under flow control. This module is the request half (the stream's
//! state, the `Request` and its body); `response` calls the handler and sends its answer.
//!
//! Request bodies stream into a `ReadableStream` whose bytes are granted back to the
//! server (`Session::release`) only when the handler has read them, so a handler that
//! reads slowly slows the visitor down instead of filling memory. Runtimes that cannot
//! put a stream in a `Request` get the body buffered (up to [`MAX_BUFFERED`]).

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use bytes::Bytes;
use js_sys::{Date, Function};
use localtunnels_core::error_page::wants_html;
use localtunnels_core::inspect::BodyCapture;
use localtunnels_core::{Header, RequestHead, StreamId};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{
    AbortController, AbortSignal, Headers, ReadableStream, ReadableStreamDefaultController,
    ReadableStreamDefaultReader, Request, RequestInit,
};

use crate::inspect::Record;
use crate::js;
use crate::options::Handler;
use crate::tunnel::Slot;
use crate::tunnel::{Kind, Tunnel};

mod response;

use response::{call_handler, serve, take_apart, OutBody};

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
    method: Cow<'static, str>,
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
    let meta = Meta {
        id: 0,
        method: method.into(),
        url,
        started: Date::now(),
        timeout_ms,
        html,
        record: Some(record.clone()),
    };
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
    // A `te` goes on only as `te: trailers` (the server sends it when the visitor asked
    // for trailers; any other is a peer choosing a hop-by-hop field: dropped).
    let target = request.headers();
    for (name, value) in headers {
        if name != http::header::TE || localtunnels_core::is_te_trailers(value.as_bytes()) {
            js::append_header(&target, name.as_str(), value);
        }
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
