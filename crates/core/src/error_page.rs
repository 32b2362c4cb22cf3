//! The page a visitor sees when the tunnel, not the origin, answers with an error:
//! the server's own 404/502/503/504 and the clients' answers for an origin that
//! cannot be reached or a handler that threw.
//!
//! Visitors see a generic, friendly message and a request id, never internals
//! (addresses, OS errors, exception text): those go to the tunnel owner's terminal or
//! logs with the same request id, and reach the visitor only when the owner opts in
//! (`--expose-errors`, `exposeErrors: true`). The page is HTML when the visitor's
//! `Accept` asks for HTML (a browser), else one line of text (curl, scripts).
//!
//! One renderer for the server, the native client and the wasm client, so a visitor
//! meets the same page whichever part of the tunnel failed. Pure: the caller supplies
//! the request id (from its own random source) and the `Accept` header.

use http::StatusCode;

/// An error page to render.
#[derive(Debug, Clone, Copy)]
pub struct ErrorPage<'a> {
    /// The HTTP status (404, 502, 503, 504, ...).
    pub status: u16,
    /// What happened, for a visitor: a short sentence without internals.
    pub message: &'a str,
    /// The id that ties this page to the owner's log line.
    pub request_id: &'a str,
    /// The internal detail, shown only when the tunnel's owner opted in.
    pub detail: Option<&'a str>,
}

/// A rendered page: its `Content-Type` and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedPage {
    /// `text/html; charset=utf-8` or `text/plain; charset=utf-8`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

/// The visitor-facing sentence for a status the tunnel itself answers with.
pub fn default_message(status: u16) -> &'static str {
    match status {
        404 => "There is no tunnel at this address.",
        502 => "The tunnel is up, but the app behind it could not be reached or failed to answer.",
        503 => "This tunnel is temporarily unavailable. Please try again in a few seconds.",
        504 => "The app behind this tunnel took too long to answer.",
        413 => "The request is too large for this tunnel.",
        _ => "The tunnel could not complete this request.",
    }
}

/// The status line's reason phrase (`Bad Gateway`), or `Error` for an unknown status.
pub fn reason_phrase(status: u16) -> &'static str {
    StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error")
}

/// Whether an `Accept` header asks for HTML: `text/html` or `application/xhtml+xml`
/// with a non-zero quality. `*/*` alone (curl, most libraries) gets text.
pub fn wants_html(accept: Option<&[u8]>) -> bool {
    let Some(accept) = accept.and_then(|a| std::str::from_utf8(a).ok()) else { return false };
    accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim();
        let html = media.eq_ignore_ascii_case("text/html") || media.eq_ignore_ascii_case("application/xhtml+xml");
        // `split_at_checked`, not `p[..2]`: a parameter whose second byte is inside a
        // multi-byte character (`;aé`) made that slice panic.
        let refused = parts.any(|p| {
            let p = p.trim();
            p.len() > 2
                && p.split_at_checked(2).is_some_and(|(q, v)| q.eq_ignore_ascii_case("q=") && zero_quality(v.trim()))
        });
        html && !refused
    })
}

/// Whether a `q` value is zero or below: RFC 9110's `qvalue` is `0[.ddd]` or `1[.000]`,
/// so it is zero exactly when it is a 0 followed by nothing or by a point and zeros; a
/// negative value (invalid) counts as a refusal too. Read by hand rather than as a float:
/// float parsing would add kilobytes to the wasm client.
fn zero_quality(q: &str) -> bool {
    match q.strip_prefix('0') {
        Some(rest) => rest.is_empty() || rest.strip_prefix('.').is_some_and(|zeros| zeros.bytes().all(|b| b == b'0')),
        None => q.starts_with('-'),
    }
}

/// A request id as 16 lowercase hex digits, from a random `u64` the caller drew.
pub fn format_request_id(random: u64) -> String {
    format!("{random:016x}")
}

impl ErrorPage<'_> {
    /// Renders the page as HTML when `html`, else as one line of text.
    pub fn render(&self, html: bool) -> RenderedPage {
        if html {
            RenderedPage { content_type: "text/html; charset=utf-8", body: self.html() }
        } else {
            RenderedPage { content_type: "text/plain; charset=utf-8", body: self.text() }
        }
    }

    /// `502 Bad Gateway: <message> (request id <id>)`, plus `: <detail>` when shown;
    /// one line, ending in a newline.
    pub fn text(&self) -> String {
        let reason = reason_phrase(self.status);
        let mut line = format!("{} {reason}: {} (request id {})", self.status, self.message, self.request_id);
        if let Some(detail) = self.detail {
            line.push_str(" detail: ");
            line.extend(detail.chars().map(|c| if c.is_control() { ' ' } else { c }));
        }
        line.push('\n');
        line
    }

    /// A small self-contained HTML page (no external resources).
    pub fn html(&self) -> String {
        let status = self.status;
        let reason = escape(reason_phrase(status));
        let message = escape(self.message);
        let id = escape(self.request_id);
        let detail = match self.detail {
            Some(d) => format!("<h2>Detail (shown because the tunnel exposes errors)</h2><pre>{}</pre>", escape(d)),
            None => String::new(),
        };
        format!(
            "<!doctype html>\n<html lang=en><head><meta charset=utf-8>\
             <meta name=viewport content=\"width=device-width, initial-scale=1\">\
             <title>{status} {reason}</title><style>\
             body{{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}}\
             h1{{font-size:1.6em}}code,pre{{background:#f4f4f4;padding:.2em .4em;border-radius:4px}}\
             pre{{padding:1em;white-space:pre-wrap}}footer{{color:#777;font-size:.85em;margin-top:3em}}\
             </style></head><body><h1>{status} {reason}</h1><p>{message}</p>\
             <p>Request id: <code>{id}</code></p>{detail}\
             <footer>Served by localtunnels</footer></body></html>\n"
        )
    }
}

/// Escapes text for HTML element content and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(detail: Option<&str>) -> ErrorPage<'_> {
        ErrorPage { status: 502, message: default_message(502), request_id: "00000000000000ab", detail }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn browsers_get_html_and_tools_get_text() {
        let chrome = b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(wants_html(Some(chrome)));
        assert!(wants_html(Some(b"application/xhtml+xml")));
        assert!(!wants_html(Some(b"*/*")));
        assert!(!wants_html(None));
        assert!(!wants_html(Some(b"application/json")));
        assert!(!wants_html(Some(b"text/html;q=0, text/plain")));
        assert!(!wants_html(Some(b"text/html; q=0.000")));
        assert!(!wants_html(Some(b"text/html;Q=0.")));
        assert!(wants_html(Some(b"text/html;q=0.001")));
        assert!(wants_html(Some(b"text/html;q=1.0")));
    }

    /// A parameter whose second byte falls inside a multi-byte character is no `q`, and
    /// reading it does not panic (`p[..2]` did: an `Accept` header a visitor sends).
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn parameters_with_multibyte_characters_are_read_without_panicking() {
        assert!(wants_html(Some("text/html;aé".as_bytes())));
        assert!(wants_html(Some("text/html; aé=1, */*".as_bytes())));
        assert!(!wants_html(Some("text/plain;aé".as_bytes())));
        assert!(!wants_html(Some("text/html;aé;q=0".as_bytes())));
        assert!(wants_html(Some("text/html;q=é".as_bytes())));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn text_is_one_line_with_the_request_id_and_no_detail_unless_exposed() {
        let text = page(None).text();
        assert_eq!(text.lines().count(), 1);
        assert!(text.starts_with("502 Bad Gateway: "), "{text}");
        assert!(text.ends_with("(request id 00000000000000ab)\n"), "{text}");
        let exposed = page(Some("127.0.0.1:8001: connection refused\n(os error 111)")).text();
        assert_eq!(exposed.lines().count(), 1, "{exposed}");
        assert!(exposed.contains("connection refused (os error 111)"), "{exposed}");
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn html_escapes_everything_it_shows() {
        let html = page(Some("<script>alert(1)</script>")).render(true);
        assert_eq!(html.content_type, "text/html; charset=utf-8");
        assert!(html.body.contains("<title>502 Bad Gateway</title>"));
        assert!(html.body.contains("00000000000000ab"));
        assert!(html.body.contains("&lt;script&gt;") && !html.body.contains("<script>"));
        assert!(!page(None).html().contains("Detail"));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn reason_phrases_come_from_the_status_table() {
        assert_eq!(reason_phrase(504), "Gateway Timeout");
        assert_eq!(reason_phrase(413), "Payload Too Large");
        assert_eq!(reason_phrase(599), "Error");
    }
}
