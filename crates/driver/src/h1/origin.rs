//! The rules of a client's side of an HTTP/1.1 exchange (the native client's leg to
//! its origin): how a response's body is delimited, which interim responses are
//! skipped, and which trailer fields a request may send. They are hyper's client's
//! rules, so that the lean origin leg and the hyper client it replaced read every
//! response the same way (`crates/client/tests/origin_differential.rs` holds them to it).

use http::{header, HeaderName, Method, Version};
use localtunnels_core::Header;

use super::framing::{decimal, is_chunked, may_trail, BodyLength};

/// Why a response's framing is refused (the exchange fails; the visitor gets a 502).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseFramingError {
    /// `Transfer-Encoding` in an HTTP/1.0 response.
    #[error("Transfer-Encoding in an HTTP/1.0 response")]
    TransferEncodingInHttp10,
    /// `Content-Length` values that are not one decimal number.
    #[error("invalid Content-Length")]
    ContentLength,
}

/// An interim response (1xx but 101), which a client reads past to the final one.
pub fn is_interim(status: u16) -> bool {
    (100..200).contains(&status) && status != 101
}

/// The framing of a final response with `status` and `headers`, in HTTP `version`, to
/// a request with `method` (RFC 9112 §6.3, as hyper's client applies it): a response
/// to HEAD, a 101, 204 or 304, or a 2xx to CONNECT has no body; otherwise
/// `Transfer-Encoding` decides (chunked last: chunked, else until the connection
/// closes; refused in HTTP/1.0) and any `Content-Length` is then ignored; else the
/// `Content-Length` values, which must all be the same decimal number (a list such as
/// `5, 5` included); else the body runs to the connection's end.
pub fn response_body(
    version: Version,
    method: &Method,
    status: u16,
    headers: &[Header],
) -> Result<BodyLength, ResponseFramingError> {
    if is_bodiless(method, status) {
        return Ok(BodyLength::Empty);
    }
    // The last Transfer-Encoding line decides (hyper reads only that one).
    if let Some((_, te)) = headers.iter().rfind(|(n, _)| n == header::TRANSFER_ENCODING) {
        if version == Version::HTTP_10 {
            return Err(ResponseFramingError::TransferEncodingInHttp10);
        }
        return Ok(if is_chunked(te) { BodyLength::Chunked } else { BodyLength::CloseDelimited });
    }
    let mut length = Ok(None);
    for (_, value) in headers.iter().filter(|(n, _)| n == header::CONTENT_LENGTH) {
        add_content_length(&mut length, value.as_bytes());
    }
    length_body(length)
}

/// Whether a response to `method` with `status` has no body whatever its fields say.
fn is_bodiless(method: &Method, status: u16) -> bool {
    matches!(status, 101 | 204 | 304)
        || status < 200
        || method == Method::HEAD
        || (method == Method::CONNECT && (200..300).contains(&status))
}

/// Folds one `Content-Length` field's value into what the values so far say: every
/// comma-separated part one decimal number, all the same.
pub fn add_content_length(length: &mut Result<Option<u64>, ResponseFramingError>, value: &[u8]) {
    let Ok(so_far) = length else { return };
    for part in value.split(|b| *b == b',') {
        match decimal(part.trim_ascii()) {
            Some(n) if so_far.is_none_or(|prev| prev == n) => *so_far = Some(n),
            _ => {
                *length = Err(ResponseFramingError::ContentLength);
                return;
            }
        }
    }
}

/// The framing a `Content-Length` verdict gives (no `Transfer-Encoding`).
fn length_body(length: Result<Option<u64>, ResponseFramingError>) -> Result<BodyLength, ResponseFramingError> {
    Ok(match length? {
        Some(0) => BodyLength::Empty,
        Some(n) => BodyLength::Known(n),
        None => BodyLength::CloseDelimited,
    })
}

/// [`response_body`] for a head without `Transfer-Encoding` whose `Content-Length`
/// values were folded by [`add_content_length`] as it was parsed (`length`).
pub fn response_body_by_length(
    method: &Method,
    status: u16,
    length: Result<Option<u64>, ResponseFramingError>,
) -> Result<BodyLength, ResponseFramingError> {
    if is_bodiless(method, status) {
        return Ok(BodyLength::Empty);
    }
    length_body(length)
}

/// Whether a response keeps its connection open for another request: HTTP/1.1 unless
/// a `Connection` line says `close`, HTTP/1.0 only if one says `keep-alive` (and none
/// says `close`).
pub fn response_keeps_alive(version: Version, headers: &[Header]) -> bool {
    let mut keep = version == Version::HTTP_11;
    for (_, value) in headers.iter().filter(|(n, _)| n == header::CONNECTION) {
        if super::framing::has_token(value, "close") {
            return false;
        }
        keep = keep || super::framing::has_token(value, "keep-alive");
    }
    keep
}

/// The trailer fields a request may send: those its `Trailer` header declares, less
/// the fields no trailer may carry (framing, routing, authentication). Trailers a
/// request's body ends with that are not among them are dropped, as hyper's client
/// drops them.
pub fn declared_trailers(headers: &[Header]) -> Vec<HeaderName> {
    let mut names = Vec::new();
    for (_, value) in headers.iter().filter(|(n, _)| n == header::TRAILER) {
        let Ok(text) = value.to_str() else { continue };
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
                if may_trail(&name) && !names.contains(&name) {
                    names.push(name);
                }
            }
        }
    }
    names
}

/// The response's fields as a proxy passes them on: a `Content-Length` that came with
/// a `Transfer-Encoding` is removed (RFC 9112 §6.3: the coding frames the body, and
/// the length beside the decoded body would frame the next hop's copy wrongly).
pub fn drop_overridden_length(headers: &mut Vec<Header>) {
    if headers.iter().any(|(n, _)| n == header::TRANSFER_ENCODING) {
        headers.retain(|(n, _)| n != header::CONTENT_LENGTH);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(name: &'static str, value: &'static str) -> Header {
        (HeaderName::from_static(name), HeaderValue::from_static(value))
    }

    #[test]
    fn a_length_beside_a_transfer_coding_is_dropped() {
        let mut both = vec![h("content-length", "7"), h("transfer-encoding", "chunked"), h("x", "1")];
        drop_overridden_length(&mut both);
        assert_eq!(both, vec![h("transfer-encoding", "chunked"), h("x", "1")]);
        let mut length = vec![h("content-length", "7")];
        drop_overridden_length(&mut length);
        assert_eq!(length, vec![h("content-length", "7")]);
    }

    #[test]
    fn response_bodies_are_framed_as_hypers_client_frames_them() {
        let (v11, v10, get) = (Version::HTTP_11, Version::HTTP_10, &Method::GET);
        let cl = [h("content-length", "7")];
        assert_eq!(response_body(v11, &Method::HEAD, 200, &cl), Ok(BodyLength::Empty));
        for status in [101, 204, 304] {
            assert_eq!(response_body(v11, get, status, &cl), Ok(BodyLength::Empty));
        }
        assert_eq!(response_body(v11, &Method::CONNECT, 200, &[]), Ok(BodyLength::Empty));
        assert_eq!(response_body(v11, get, 200, &cl), Ok(BodyLength::Known(7)));
        assert_eq!(response_body(v11, get, 200, &[h("content-length", "7, 7")]), Ok(BodyLength::Known(7)));
        let differ = [h("content-length", "7"), h("content-length", "8")];
        assert_eq!(response_body(v11, get, 200, &differ), Err(ResponseFramingError::ContentLength));
        assert_eq!(response_body(v11, get, 200, &[h("content-length", "x")]), Err(ResponseFramingError::ContentLength));
        // With Transfer-Encoding, Content-Length is not even read.
        let both = [h("content-length", "x"), h("transfer-encoding", "chunked")];
        assert_eq!(response_body(v11, get, 200, &both), Ok(BodyLength::Chunked));
        let gzip_last = [h("transfer-encoding", "chunked"), h("transfer-encoding", "gzip")];
        assert_eq!(response_body(v11, get, 200, &gzip_last), Ok(BodyLength::CloseDelimited));
        let te = [h("transfer-encoding", "chunked")];
        assert_eq!(response_body(v10, get, 200, &te), Err(ResponseFramingError::TransferEncodingInHttp10));
        assert_eq!(response_body(v10, get, 204, &te), Ok(BodyLength::Empty));
        assert_eq!(response_body(v11, get, 200, &[]), Ok(BodyLength::CloseDelimited));
        assert!(is_interim(100) && is_interim(103) && !is_interim(101) && !is_interim(200));
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection() {
        assert!(response_keeps_alive(Version::HTTP_11, &[]));
        assert!(!response_keeps_alive(Version::HTTP_11, &[h("connection", "Close")]));
        assert!(!response_keeps_alive(Version::HTTP_10, &[]));
        assert!(response_keeps_alive(Version::HTTP_10, &[h("connection", "keep-alive")]));
        let both = [h("connection", "keep-alive"), h("connection", "close")];
        assert!(!response_keeps_alive(Version::HTTP_10, &both));
    }

    #[test]
    fn only_declared_trailers_that_may_trail_are_sent() {
        let headers = [h("trailer", "x-sum, content-length"), h("trailer", "X-Other")];
        let names: Vec<_> = declared_trailers(&headers).iter().map(|n| n.as_str().to_string()).collect();
        assert_eq!(names, ["x-sum", "x-other"]);
        assert!(declared_trailers(&[]).is_empty());
    }
}
