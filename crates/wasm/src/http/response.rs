//! The response half of a tunneled HTTP exchange: call the request handler (with its
//! deadline), take its `Response` (or a plain `{ status, headers, body }`) apart, and
//! stream it back under flow control; or answer with the client's own error page. The
//! request half (building the `Request`, its body stream) is the parent module.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;

use bytes::Bytes;
use gloo_timers::future::TimeoutFuture;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, SET_COOKIE};
use js_sys::{Array, Date, Promise};
use localtunnels_core::error_page::{default_message, format_request_id, ErrorPage};
use localtunnels_core::inspect::BodyCapture;
use localtunnels_core::{Header, ResetCode, ResponseHead, StreamError, StreamId};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{ReadableStream, Request, Response};

use crate::inspect::Record;
use crate::js;
use crate::options::Handler;
use crate::tunnel::Slot;
use crate::tunnel::{Kind, Tunnel};

use super::{fail, Body, Meta};

/// Calls the handler and sends what it answers, or an error page.
pub(super) async fn serve(t: Rc<Tunnel>, gen: u64, answer: Result<(Handler, Request), (u16, String)>, meta: Meta) {
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
pub(super) async fn call_handler(
    handler: &Handler,
    request: &Request,
    timeout_ms: u32,
) -> Result<JsValue, (u16, String)> {
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
pub(super) enum OutBody {
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
pub(super) fn take_apart(value: &JsValue) -> Result<(u16, Vec<Header>, OutBody), String> {
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
        let shown = js::number_text(status);
        return Err(format!("the request handler returned a Response with status {shown} (a network error?)"));
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
            } else if let Some(v) = value.as_string().or_else(|| value.as_f64().map(js::number_text)) {
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
            .map_err(|_| format!("the response header name {name} is invalid", name = crate::js::quoted(&name)))?;
        out.push((name, header_value(&value)?));
    }
    Ok(out)
}

/// A header value from a JavaScript string (a ByteString: one byte per character).
fn header_value(value: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_maybe_shared(js::byte_string(value))
        .map_err(|_| format!("the response header value {value} is invalid", value = crate::js::quoted(value)))
}
