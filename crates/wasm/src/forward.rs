//! `forward(url)`: a ready request handler that passes every request on to a local
//! HTTP server with `fetch`, so Deno or Node can tunnel `localhost:8000` without the
//! native binary.

use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};
use web_sys::{Headers, Request, RequestInit, RequestRedirect, Response, ResponseInit};

use crate::js;

/// Request headers that describe one hop, not the request; `fetch` sets its own (and
/// Node's refuses some of them outright). `te` too when it is `te: trailers`: `fetch`
/// reads no trailers, so this leg cannot pass any on.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "content-length",
    "expect",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Returns a request handler `(request) => Promise<Response>` that forwards to `target`
/// (e.g. `http://localhost:8000`), keeping the method, path, query, headers and body.
#[wasm_bindgen(skip_typescript)]
pub fn forward(target: &str) -> Result<JsValue, JsError> {
    handler(target).map_err(|e| JsError::new(&e))
}

/// The handler as a JavaScript function.
pub(crate) fn handler(target: &str) -> Result<JsValue, String> {
    let base = check_target(target)?;
    let f = Closure::<dyn Fn(JsValue) -> Promise>::new(move |request: JsValue| {
        let base = base.clone();
        future_to_promise(async move { forward_one(&base, request).await })
    });
    // The function belongs to the caller from here on; JavaScript's GC frees it.
    Ok(f.into_js_value())
}

fn check_target(target: &str) -> Result<String, String> {
    let rest = target.strip_prefix("http://").or_else(|| target.strip_prefix("https://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(target.trim_end_matches('/').to_string()),
        _ => Err(format!(
            "forward() needs an http:// or https:// URL such as 'http://localhost:8000', got {target}",
            target = crate::js::quoted(target)
        )),
    }
}

/// `http://host:1/a/b?c` -> `/a/b?c`.
fn path_of(url: &str) -> &str {
    let after_scheme = js::split_scheme(url).map_or(url, |(_, rest)| rest);
    after_scheme.find('/').and_then(|i| after_scheme.get(i..)).unwrap_or("/")
}

async fn forward_one(base: &str, request: JsValue) -> Result<JsValue, JsValue> {
    let request: Request =
        request.dyn_into().map_err(|_| js::error("forward(): the handler must be called with a Request"))?;
    let url = format!("{base}{}", path_of(&request.url()));
    let method = request.method();
    let headers = Headers::new()?;
    for (name, value) in js::pairs(&request.headers()) {
        if !HOP_BY_HOP.contains(&name.to_ascii_lowercase().as_str()) {
            let _ = headers.append(&name, &value);
        }
    }
    let init = RequestInit::new();
    init.set_method(&method);
    init.set_headers(headers.as_ref());
    init.set_redirect(RequestRedirect::Manual);
    init.set_signal(Some(&request.signal()));
    if !method.eq_ignore_ascii_case("GET") && !method.eq_ignore_ascii_case("HEAD") {
        if let Some(body) = request.body() {
            init.set_body(&body);
            js::set(&init, "duplex", "half");
        }
    }
    let fetched = js::fetch_with_init(&url, &init)?;
    let response: Response = JsFuture::from(fetched).await?.unchecked_into();
    Ok(decoded(response).into())
}

/// `fetch` already decoded a compressed body but kept `content-encoding` and the
/// compressed `content-length`; passed on as they are, the visitor would get garbage.
fn decoded(response: Response) -> Response {
    let original = response.headers();
    if !original.has("content-encoding").unwrap_or(false) {
        return response;
    }
    let Ok(headers) = Headers::new() else { return response };
    for (name, value) in js::pairs(&original) {
        let lower = name.to_ascii_lowercase();
        if lower != "content-encoding" && lower != "content-length" && lower != "set-cookie" {
            let _ = headers.append(&name, &value);
        }
    }
    if let Some(f) = js::as_function(&js::get(&original, "getSetCookie")) {
        for cookie in js_sys::Array::from(&f.call0(&original).unwrap_or(JsValue::UNDEFINED)).iter() {
            if let Some(cookie) = cookie.as_string() {
                let _ = headers.append("set-cookie", &cookie);
            }
        }
    }
    let init = ResponseInit::new();
    init.set_status(response.status());
    init.set_status_text(&response.status_text());
    init.set_headers(headers.as_ref());
    let body = response.body();
    Response::new_with_opt_readable_stream_and_init(body.as_ref(), &init).unwrap_or(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(check_target("http://localhost:8000/").unwrap(), "http://localhost:8000");
        assert_eq!(check_target("https://x.dev").unwrap(), "https://x.dev");
        assert!(check_target("localhost:8000").is_err());
        assert!(check_target("http://").is_err());
        assert!(check_target("ftp://x").is_err());
    }

    #[test]
    fn paths() {
        assert_eq!(path_of("http://a.localhost:3000/x/y?z=1"), "/x/y?z=1");
        assert_eq!(path_of("http://a.localhost:3000"), "/");
    }
}
