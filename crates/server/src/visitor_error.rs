//! The server's own error answers to visitors (404 no such tunnel, 502, 503 with
//! `Retry-After`, 504), rendered by [`localtunnels_core::error_page`]: a generic
//! message and a request id; the detail goes to the server's log under that id.
//!
//! Every error is first rendered as one line of text. A visitor whose `Accept` asks
//! for HTML gets the same page as HTML instead: the proxy checks `Accept` once per
//! request and, only then, re-renders an error answer on its way out
//! ([`as_html`]), so the common path (no browser) pays nothing more.

use http::{HeaderValue, Response, StatusCode};
use localtunnels_core::error_page::{format_request_id, wants_html, ErrorPage};

use crate::state::{full, Body};

/// What an error answer carries so that it can be rendered again as HTML.
#[derive(Debug, Clone)]
struct Rendered {
    message: String,
    request_id: String,
}

/// An error answer to a visitor: `message` is what the visitor reads (no internals),
/// `detail` is logged (at debug) with the request id.
pub fn visitor_error(status: StatusCode, message: impl Into<String>, detail: Option<&str>) -> Response<Body> {
    let message = message.into();
    let request_id = format_request_id(rand::random());
    if let Some(detail) = detail {
        tracing::debug!(request_id = %request_id, status = status.as_u16(), detail, "answered a visitor with an error");
    }
    let page = ErrorPage { status: status.as_u16(), message: &message, request_id: &request_id, detail: None };
    let rendered = page.render(false);
    let mut res = Response::new(full(rendered.body));
    *res.status_mut() = status;
    res.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static(rendered.content_type));
    res.extensions_mut().insert(Rendered { message, request_id });
    res
}

/// [`visitor_error`] with `Retry-After: secs`.
pub fn retry_later(message: impl Into<String>, secs: u64, detail: Option<&str>) -> Response<Body> {
    let mut res = visitor_error(StatusCode::SERVICE_UNAVAILABLE, message, detail);
    res.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    res
}

/// Whether the request's `Accept` asks for HTML.
pub fn accepts_html<F: crate::fields::Fields>(headers: &F) -> bool {
    wants_html(headers.first(&http::header::ACCEPT).map(HeaderValue::as_bytes))
}

/// The same error answer as an HTML page (any other response is returned as it is).
pub fn as_html(mut res: Response<Body>) -> Response<Body> {
    let Some(r) = res.extensions_mut().remove::<Rendered>() else { return res };
    let page =
        ErrorPage { status: res.status().as_u16(), message: &r.message, request_id: &r.request_id, detail: None };
    let rendered = page.render(true);
    res.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static(rendered.content_type));
    res.headers_mut().remove(http::header::CONTENT_LENGTH);
    *res.body_mut() = full(rendered.body);
    res
}
