//! Small helpers at the JavaScript boundary: property access, errors, bytes and strings.

use bytes::Bytes;
use http::HeaderValue;
use js_sys::{Array, ArrayBuffer, Function, Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};

/// Sets `obj[key] = value`, ignoring failures (frozen objects, proxies that throw).
pub(crate) fn set(obj: &Object, key: &str, value: impl Into<JsValue>) {
    let _ = Reflect::set(obj, &JsValue::from_str(key), &value.into());
}

/// `value[key]`, or `undefined` when it cannot be read.
pub(crate) fn get(value: &JsValue, key: &str) -> JsValue {
    if !value.is_object() && !value.is_function() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(value, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// A plain object with the given properties.
pub(crate) fn object(props: &[(&str, JsValue)]) -> Object {
    let obj = Object::new();
    for (k, v) in props {
        set(&obj, k, v.clone());
    }
    obj
}

/// A JavaScript `Error` with `message`.
pub(crate) fn error(message: &str) -> JsValue {
    js_sys::Error::new(message).into()
}

/// A message a person can read, from whatever was thrown.
pub(crate) fn error_message(e: &JsValue) -> String {
    if let Some(s) = e.as_string() {
        return s;
    }
    if let Some(m) = get(e, "message").as_string() {
        return m;
    }
    match js_sys::JSON::stringify(e) {
        Ok(s) => String::from(s),
        Err(_) => "unknown error".to_string(),
    }
}

/// `typeof value`, for error messages.
pub(crate) fn type_name(value: &JsValue) -> String {
    if value.is_null() {
        return "null".to_string();
    }
    value.js_typeof().as_string().unwrap_or_else(|| "a value".to_string())
}

/// `s` around its first `://`, as `s.split_once("://")` gives it. A `&str` pattern brings the
/// standard library's two-way substring search (~2 KB of code) into the .wasm, and a slice
/// by index its panic path (its message prints a `char` with `{:?}`, which brings Rust's
/// escaping and Unicode tables); a three-byte window and checked splits do neither.
pub(crate) fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let i = s.as_bytes().windows(3).position(|w| w == b"://")?;
    let (scheme, rest) = s.split_at_checked(i)?;
    Some((scheme, rest.get(3..)?))
}

/// `s` in double quotes, as `JSON.stringify` prints a string, for error messages. Rust's
/// `{s:?}` would bring its escaping and Unicode tables (~3 KB) into the .wasm. (Natively,
/// for the unit tests, Rust's `{:?}`: the same text for the strings without escapes.)
pub(crate) fn quoted(s: &str) -> String {
    #[cfg(target_arch = "wasm32")]
    return js_sys::JSON::stringify(&JsValue::from_str(s)).map_or_else(|_| String::new(), String::from);
    #[cfg(not(target_arch = "wasm32"))]
    return format!("{s:?}");
}

/// A number as JavaScript prints it (`String(n)`). Rust's own float formatting (`{n}` of an
/// `f64`) would bring ~15 KB of formatting code into the .wasm for a few error messages.
/// (Natively, where the unit tests run without a JavaScript engine, Rust prints it: the
/// same text for the whole numbers, NaN and infinities those messages show.)
pub(crate) fn number_text(n: f64) -> String {
    #[cfg(target_arch = "wasm32")]
    return js_sys::Number::from(n).to_string_with_radix(10).map_or_else(|_| String::new(), String::from);
    #[cfg(not(target_arch = "wasm32"))]
    return n.to_string();
}

/// Calls `f` with `this = undefined`, turning a throw into `Err(message)`.
pub(crate) fn call1(f: &Function, arg: &JsValue) -> Result<JsValue, JsValue> {
    f.call1(&JsValue::UNDEFINED, arg)
}

/// Calls every listener; a listener that throws is reported on the console and the
/// others still run.
pub(crate) fn call_all(listeners: &[Function], arg: &JsValue) {
    for f in listeners {
        if let Err(e) = call1(f, arg) {
            web_sys::console::error_2(&JsValue::from_str("localtunnels: an event listener threw:"), &e);
        }
    }
}

/// A header name as a JavaScript string, and the last value seen with it.
struct KnownHeader {
    name: JsValue,
    last: Option<(HeaderValue, JsValue)>,
}

thread_local! {
    static HEADERS_SEEN: std::cell::RefCell<std::collections::HashMap<String, KnownHeader>> = Default::default();
}

/// Most header names a client keeps as JavaScript strings.
const HEADER_NAMES_KEPT: usize = 128;
/// Longest value kept for reuse.
const HEADER_VALUE_KEPT: usize = 256;

/// `headers.append(name, value)` with `value` as a ByteString (see [`latin1`]), ignoring
/// what the runtime refuses. Every string that crosses from wasm costs a `TextDecoder`
/// call, and requests repeat the same few names, mostly with the value they had last
/// time (`host`, `x-forwarded-*`, `accept`, `user-agent`): those JavaScript strings are
/// kept and reused.
pub(crate) fn append_header(headers: &web_sys::Headers, name: &str, value: &HeaderValue) {
    let (name, value) = HEADERS_SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        if !seen.contains_key(name) {
            if seen.len() >= HEADER_NAMES_KEPT {
                return (JsValue::from_str(name), JsValue::from_str(&latin1(value.as_bytes())));
            }
            seen.insert(name.to_string(), KnownHeader { name: JsValue::from_str(name), last: None });
        }
        let Some(known) = seen.get_mut(name) else {
            return (JsValue::from_str(name), JsValue::from_str(&latin1(value.as_bytes())));
        };
        if let Some((last, js)) = &known.last {
            if last == value {
                return (known.name.clone(), js.clone());
            }
        }
        let js = JsValue::from_str(&latin1(value.as_bytes()));
        if value.len() <= HEADER_VALUE_KEPT {
            known.last = Some((value.clone(), js.clone()));
        }
        (known.name.clone(), js)
    });
    let _ = headers.unchecked_ref::<HeaderList>().append_with_name(&name, &value);
}

/// A header value as a JavaScript ByteString: each byte becomes the code point of the
/// same value, so no byte is lost (the Fetch API's own convention).
pub(crate) fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// The bytes of a ByteString (the inverse of [`latin1`]). Characters above U+00FF,
/// which a `Headers` object never holds, are encoded as UTF-8.
pub(crate) fn byte_string(s: &str) -> Bytes {
    if s.chars().all(|c| u32::from(c) <= 0xff) {
        s.chars().map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')).collect::<Vec<u8>>().into()
    } else {
        Bytes::copy_from_slice(s.as_bytes())
    }
}

/// A fresh JavaScript copy of `data` (never a view into wasm memory, which a runtime
/// that sends asynchronously could read after it changed).
pub(crate) fn u8_array(data: &[u8]) -> Uint8Array {
    Uint8Array::from(data)
}

/// A fresh `ArrayBuffer` holding `data`.
pub(crate) fn array_buffer(data: &[u8]) -> ArrayBuffer {
    u8_array(data).buffer()
}

/// The bytes of a body chunk or message: a string (as UTF-8), an `ArrayBuffer` or
/// any `ArrayBuffer` view. `None` for anything else.
pub(crate) fn bytes_of(value: &JsValue) -> Option<(Bytes, bool)> {
    // The common case first (body chunks), with no property lookups.
    if let Some(view) = value.dyn_ref::<Uint8Array>() {
        return Some((view.to_vec().into(), true));
    }
    if let Some(s) = value.as_string() {
        return Some((Bytes::from(s.into_bytes()), false));
    }
    if let Some(buf) = value.dyn_ref::<ArrayBuffer>() {
        return Some((Uint8Array::new(buf).to_vec().into(), true));
    }
    if ArrayBuffer::is_view(value) {
        let buffer = get(value, "buffer");
        let offset = get(value, "byteOffset").as_f64()?;
        let len = get(value, "byteLength").as_f64()?;
        let view = Uint8Array::new_with_byte_offset_and_length(&buffer, offset as u32, len as u32);
        return Some((view.to_vec().into(), true));
    }
    None
}

/// The function `value` is, if it is one.
pub(crate) fn as_function(value: &JsValue) -> Option<Function> {
    value.dyn_ref::<Function>().cloned()
}

/// Iterates a JavaScript iterable of `[name, value]` pairs (a `Headers` object).
pub(crate) fn pairs(iterable: &JsValue) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(Some(iter)) = js_sys::try_iter(iterable) else { return out };
    for entry in iter.flatten() {
        let entry: Array = entry.unchecked_into();
        if let (Some(k), Some(v)) = (entry.get(0).as_string(), entry.get(1).as_string()) {
            out.push((k, v));
        }
    }
    out
}

/// Drops `value` on a later turn of the event loop. Used for objects that own the
/// closure currently running (a socket's listeners, a fired timer).
pub(crate) fn defer_drop<T: 'static>(value: T) {
    wasm_bindgen_futures::spawn_local(async move { drop(value) });
}

/// Runs in a page (a `document` exists), as opposed to Node, Deno or a Worker.
pub(crate) fn is_browser() -> bool {
    !get(&js_sys::global().into(), "document").is_undefined()
}

/// A function that does nothing: `Function.prototype`, which needs no closure.
pub(crate) fn noop() -> Function {
    let constructor = get(&js_sys::global().into(), "Function");
    get(&constructor, "prototype").unchecked_into()
}

/// Lets a promise settle unobserved (an unhandled rejection would crash Node).
pub(crate) fn ignore(promise: js_sys::Promise) {
    wasm_bindgen_futures::spawn_local(async move {
        let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
    });
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    /// What `reader.read()` resolves to, read with plain property accesses (no
    /// property-name strings cross from wasm).
    pub(crate) type ReadResult;
    /// `result.done`.
    #[wasm_bindgen(method, getter)]
    pub(crate) fn done(this: &ReadResult) -> JsValue;
    /// `result.value`.
    #[wasm_bindgen(method, getter)]
    pub(crate) fn value(this: &ReadResult) -> JsValue;

    /// A `Headers`, for [`append_header`].
    type HeaderList;
    /// `headers.append(name, value)` with the name already a JavaScript string.
    #[wasm_bindgen(method, js_name = append, catch)]
    fn append_with_name(this: &HeaderList, name: &JsValue, value: &JsValue) -> Result<(), JsValue>;

    /// The global `fetch`, whichever runtime provides it.
    #[wasm_bindgen(js_name = fetch, catch)]
    pub(crate) fn fetch_with_init(input: &str, init: &web_sys::RequestInit) -> Result<js_sys::Promise, JsValue>;
}

/// `stream.getReader()`, which throws for a locked stream.
pub(crate) fn try_get_reader(
    stream: &web_sys::ReadableStream,
) -> Result<web_sys::ReadableStreamDefaultReader, JsValue> {
    let get_reader = as_function(&get(stream, "getReader")).ok_or_else(|| error("the body has no getReader()"))?;
    Ok(get_reader.call0(stream)?.unchecked_into())
}

#[cfg(test)]
mod tests {
    use super::split_scheme;

    #[test]
    fn split_scheme_is_split_once() {
        for s in [
            "",
            ":",
            "://",
            "https://tunnel.example.com",
            "ws://a:1/b://c",
            "a:/b//c",
            ":://",
            "::://x",
            "é://ü",
            "héllo:/://",
            "//:",
            "tunnel.example.com",
        ] {
            assert_eq!(split_scheme(s), s.split_once("://"), "{s}");
        }
    }
}
