//! Response heads of the HTTP/1 visitor path, written byte for byte as hyper's server
//! writes them (so a visitor cannot tell the two paths apart, and the differential
//! test can hold one to the other): lowercase names in the header map's order, the
//! values of `Connection`, `Transfer-Encoding` and `Trailer` joined on one line, one
//! `Content-Length`, the body's framing added when the headers do not give it,
//! `date` last, and hyper's rules for HTTP/1.0 visitors, keep-alive, HEAD, 1xx, 204
//! and 304.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, BytesMut};
use http::header;
use http::{HeaderName, HeaderValue, StatusCode, Version};
use localtunnels_core::Header;
use localtunnels_driver::h1::framing::{decimal, has_token, is_chunked};
use localtunnels_driver::h1::head::{write_content_length, write_status_line};

/// What the response's body says about its size (hyper's `Body::size_hint` and
/// `is_end_stream`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodySize {
    /// The body is already over (no data will come).
    Ended,
    /// Exactly this many bytes.
    Known(u64),
    /// Unknown until it ends.
    Unknown,
}

/// How the body is written after the head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Encoder {
    /// Exactly this many bytes (zero: nothing).
    Length(u64),
    /// Chunked; the trailer fields the head declared, when it declared any.
    Chunked(Option<Vec<HeaderName>>),
    /// Raw bytes until the connection closes.
    CloseDelimited,
}

/// What the visitor's request says about the response.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reply {
    /// The request's version (an HTTP/1.0 visitor gets HTTP/1.0 answers).
    pub version: Version,
    /// The request was a HEAD.
    pub head: bool,
    /// The connection may carry another request.
    pub keep_alive: bool,
}

/// A written head: how its body follows, and whether the connection ends after it.
#[derive(Debug)]
pub(crate) struct Written {
    pub encoder: Encoder,
    pub last: bool,
}

/// Why a head cannot be written (hyper's "user header" errors: a `Content-Length`
/// that does not parse or disagrees with itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadHead;

/// Appends the response head to `dst` as hyper would write it. `headers` is in the
/// order a `HeaderMap` iterates (each name's values together:
/// [`localtunnels_driver::http::group_by_name`]), which is the order hyper writes.
pub(crate) fn encode_head(
    dst: &mut BytesMut,
    reply: Reply,
    status: StatusCode,
    headers: &mut Vec<Header>,
    body: BodySize,
) -> Result<Written, BadHead> {
    let mut version = Version::HTTP_11;
    let keep_alive = reply.keep_alive;
    if reply.version == Version::HTTP_10 {
        // hyper's `fix_keep_alive`: an HTTP/1.0 visitor that asked to keep the
        // connection is told so; the answer speaks HTTP/1.0.
        let announces = connection(headers).any(|v| has_token(v, "keep-alive"));
        if !announces && keep_alive {
            append(headers, "keep-alive");
        }
        version = Version::HTTP_10;
    } else if !keep_alive && !connection(headers).any(|v| has_token(v, "close")) {
        append(headers, "close");
    }
    let start = dst.len();
    write_status_line(dst, version, status);
    let head_req = reply.head;
    let can_chunk = !head_req && can_have_body_status(status);
    let can_length = can_have_length_status(status);
    let mut encoder = Encoder::Length(0);
    let mut trailers: Option<Vec<HeaderName>> = None;
    let (mut wrote_len, mut wrote_date, mut open_line, mut must_chunk) = (false, false, false, false);
    let mut prev_len: Option<u64> = None;
    let mut last = !keep_alive;
    let mut current: Option<&HeaderName> = None;
    for (name, value) in headers.iter() {
        if current != Some(name) {
            close_line(dst, &mut open_line, must_chunk);
            current = Some(name);
        }
        match *name {
            header::CONTENT_LENGTH => {
                if wrote_len && !open_line {
                    dst.truncate(start);
                    return Err(BadHead);
                }
                match body {
                    BodySize::Known(n) => {
                        if !open_line {
                            encoder = Encoder::Length(n);
                            dst.put_slice(b"content-length: ");
                            dst.put_slice(value.as_bytes());
                            wrote_len = true;
                            open_line = true;
                        }
                        continue;
                    }
                    BodySize::Unknown => {
                        let Some(n) = decimal(value.as_bytes()) else {
                            dst.truncate(start);
                            return Err(BadHead);
                        };
                        match prev_len {
                            Some(prev) if prev != n => {
                                dst.truncate(start);
                                return Err(BadHead);
                            }
                            Some(_) => continue,
                            None => {
                                encoder = Encoder::Length(n);
                                dst.put_slice(b"content-length: ");
                                dst.put_slice(value.as_bytes());
                                wrote_len = true;
                                open_line = true;
                                prev_len = Some(n);
                                continue;
                            }
                        }
                    }
                    BodySize::Ended if !head_req => continue,
                    BodySize::Ended => {}
                }
                wrote_len = true;
            }
            header::TRANSFER_ENCODING => {
                if wrote_len && !open_line {
                    dst.truncate(start);
                    return Err(BadHead);
                }
                if version == Version::HTTP_10 || !can_chunk {
                    continue;
                }
                wrote_len = true;
                must_chunk = !is_chunked(value);
                if open_line {
                    dst.put_slice(b", ");
                } else {
                    encoder = Encoder::Chunked(None);
                    open_line = true;
                    dst.put_slice(b"transfer-encoding: ");
                }
                dst.put_slice(value.as_bytes());
                continue;
            }
            header::CONNECTION => {
                if !last && has_token(value, "close") {
                    last = true;
                }
                joined(dst, &mut open_line, b"connection: ", value);
                continue;
            }
            header::DATE => wrote_date = true,
            header::TRAILER => {
                if version == Version::HTTP_10 || !can_chunk {
                    continue;
                }
                joined(dst, &mut open_line, b"trailer: ", value);
                if let Ok(text) = value.to_str() {
                    let names = text.split(',').filter_map(|s| HeaderName::from_bytes(s.trim().as_bytes()).ok());
                    trailers.get_or_insert_with(Vec::new).extend(names);
                }
                continue;
            }
            _ => {}
        }
        localtunnels_driver::h1::head::write_header(dst, name.as_str().as_bytes(), value.as_bytes());
    }
    close_line(dst, &mut open_line, must_chunk);
    if !wrote_len {
        encoder = match body {
            BodySize::Unknown if version == Version::HTTP_10 || !can_chunk => Encoder::CloseDelimited,
            BodySize::Unknown => {
                dst.put_slice(b"transfer-encoding: chunked\r\n");
                Encoder::Chunked(None)
            }
            BodySize::Ended | BodySize::Known(0) => {
                if can_length && !head_req {
                    dst.put_slice(b"content-length: 0\r\n");
                }
                Encoder::Length(0)
            }
            BodySize::Known(_) if !can_length => Encoder::Length(0),
            BodySize::Known(n) => {
                write_content_length(dst, n);
                Encoder::Length(n)
            }
        };
    }
    if head_req || !can_have_body_status(status) {
        encoder = Encoder::Length(0);
    }
    if !wrote_date {
        dst.put_slice(b"date: ");
        with_date(|date| dst.put_slice(date));
        dst.put_slice(b"\r\n");
    }
    dst.put_slice(b"\r\n");
    if let (Encoder::Chunked(allowed), Some(names)) = (&mut encoder, trailers) {
        *allowed = Some(names);
    }
    if encoder == Encoder::CloseDelimited {
        last = true;
    }
    Ok(Written { encoder, last })
}

/// The values of `Connection`.
fn connection(headers: &[Header]) -> impl Iterator<Item = &HeaderValue> {
    headers.iter().filter(|(n, _)| n == header::CONNECTION).map(|(_, v)| v)
}

/// `Connection: <token>` added to what the headers already say: after the last
/// `Connection` value, or at the end when there is none (where a `HeaderMap` puts it).
fn append(headers: &mut Vec<Header>, token: &'static str) {
    let at = headers.iter().rposition(|(n, _)| n == header::CONNECTION).map_or(headers.len(), |i| i + 1);
    headers.insert(at, (header::CONNECTION, HeaderValue::from_static(token)));
}

/// Ends a field line left open for more values of the same name.
fn close_line(dst: &mut BytesMut, open: &mut bool, must_chunk: bool) {
    if std::mem::take(open) {
        dst.put_slice(if must_chunk { b", chunked\r\n" } else { b"\r\n" });
    }
}

/// Starts a field line, or adds a value to the one open for the same name.
fn joined(dst: &mut BytesMut, open: &mut bool, start: &[u8], value: &HeaderValue) {
    dst.put_slice(if *open { b", " } else { start });
    *open = true;
    dst.put_slice(value.as_bytes());
}

fn can_have_body_status(status: StatusCode) -> bool {
    !status.is_informational() && status != StatusCode::NO_CONTENT && status != StatusCode::NOT_MODIFIED
}

fn can_have_length_status(status: StatusCode) -> bool {
    can_have_body_status(status)
}

thread_local! {
    /// The formatted `date` of the current second, as hyper caches it per thread.
    static DATE: RefCell<(u64, Vec<u8>)> = const { RefCell::new((0, Vec::new())) };
}

/// Calls `f` with the current time as an HTTP date (RFC 9110 §5.6.7).
fn with_date(f: impl FnOnce(&[u8])) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs || cached.1.is_empty() {
            *cached = (secs, httpdate::fmt_http_date(now).into_bytes());
        }
        f(&cached.1);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(reply: Reply, status: u16, headers: &[(&'static str, &'static str)], body: BodySize) -> (String, Written) {
        let mut list: Vec<Header> =
            headers.iter().map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v))).collect();
        localtunnels_driver::http::group_by_name(&mut list);
        let mut dst = BytesMut::new();
        let written = encode_head(&mut dst, reply, StatusCode::from_u16(status).unwrap(), &mut list, body).unwrap();
        let text = String::from_utf8(dst.to_vec()).unwrap();
        let lines: Vec<_> = text.lines().filter(|l| !l.starts_with("date: ")).collect();
        let without_date = lines.join("\n").trim_end().to_string();
        (without_date, written)
    }

    const KEEP: Reply = Reply { version: Version::HTTP_11, head: false, keep_alive: true };

    #[test]
    fn heads_are_framed_as_hyper_frames_them() {
        let (text, w) = head(KEEP, 200, &[("content-type", "text/plain")], BodySize::Known(5));
        assert_eq!(text, "HTTP/1.1 200 OK\ncontent-type: text/plain\ncontent-length: 5");
        assert_eq!((w.encoder, w.last), (Encoder::Length(5), false));
        let (text, w) = head(KEEP, 200, &[("trailer", "x-a"), ("trailer", "x-b")], BodySize::Unknown);
        assert_eq!(text, "HTTP/1.1 200 OK\ntrailer: x-a, x-b\ntransfer-encoding: chunked");
        assert_eq!(w.encoder, Encoder::Chunked(Some(vec![HeaderName::from_static("x-a"), "x-b".parse().unwrap()])));
        let (text, _) = head(KEEP, 200, &[], BodySize::Ended);
        assert_eq!(text, "HTTP/1.1 200 OK\ncontent-length: 0");
        let (text, w) = head(KEEP, 204, &[("content-length", "0")], BodySize::Ended);
        assert_eq!((text.as_str(), w.encoder), ("HTTP/1.1 204 No Content", Encoder::Length(0)));
        let head_req = Reply { head: true, ..KEEP };
        let (text, w) = head(head_req, 200, &[("content-length", "42")], BodySize::Ended);
        assert_eq!((text.as_str(), w.encoder), ("HTTP/1.1 200 OK\ncontent-length: 42", Encoder::Length(0)));
        let (text, _) = head(head_req, 200, &[], BodySize::Unknown);
        assert_eq!(text, "HTTP/1.1 200 OK");
    }

    #[test]
    fn keep_alive_and_old_visitors_are_answered_as_hyper_answers_them() {
        let close = Reply { keep_alive: false, ..KEEP };
        let (text, w) = head(close, 200, &[], BodySize::Known(1));
        assert_eq!(text, "HTTP/1.1 200 OK\nconnection: close\ncontent-length: 1");
        assert!(w.last);
        let (_, w) = head(KEEP, 400, &[("connection", "close")], BodySize::Known(1));
        assert!(w.last);
        let old = Reply { version: Version::HTTP_10, head: false, keep_alive: false };
        let (text, w) = head(old, 200, &[], BodySize::Unknown);
        assert_eq!((text.as_str(), w.encoder, w.last), ("HTTP/1.0 200 OK", Encoder::CloseDelimited, true));
        let old_kept = Reply { keep_alive: true, ..old };
        let (text, w) = head(old_kept, 404, &[], BodySize::Known(3));
        assert_eq!(text, "HTTP/1.0 404 Not Found\nconnection: keep-alive\ncontent-length: 3");
        assert!(!w.last);
    }
}
