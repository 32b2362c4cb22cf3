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

use super::response_fields::Shape;

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
#[derive(Debug, Clone, PartialEq, Eq)]
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
        write_date(dst);
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

/// [`encode_head`], or for a head the response's check found [`Shape::Verbatim`] and
/// the most common reply (HTTP/1.1, kept alive, not `HEAD`, a status with a body, a
/// `Content-Length`), the same bytes written without its rules: the status line, each
/// field as it is, `date` when the head has none, the blank line. None of the rules
/// would act on such a head: it has no `Connection`, `Transfer-Encoding` or `Trailer`
/// to join and its one `Content-Length` is the body's size (`encode_head` walked every
/// field through them: ~0.15k instructions for a two-field head, between the tunnel's
/// read of the response and the visitor's write; docs/BENCHMARKS.md, fifteenth round).
pub(crate) fn encode_response_head(
    dst: &mut BytesMut,
    reply: Reply,
    status: StatusCode,
    headers: &mut Vec<Header>,
    body: BodySize,
    shape: Shape,
) -> Result<Written, BadHead> {
    let plain_reply = reply.version == Version::HTTP_11 && reply.keep_alive && !reply.head;
    match (shape, body) {
        (Shape::Verbatim { .. }, BodySize::Known(n)) if plain_reply && can_have_body_status(status) => {
            write_status_line(dst, Version::HTTP_11, status);
            let mut wrote_date = false;
            for (name, value) in headers.iter() {
                wrote_date |= name == header::DATE;
                localtunnels_driver::h1::head::write_header(dst, name.as_str().as_bytes(), value.as_bytes());
            }
            if !wrote_date {
                write_date(dst);
            }
            dst.put_slice(b"\r\n");
            Ok(Written { encoder: Encoder::Length(n), last: false })
        }
        _ => encode_head(dst, reply, status, headers, body),
    }
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

pub(super) fn can_have_body_status(status: StatusCode) -> bool {
    !status.is_informational() && status != StatusCode::NO_CONTENT && status != StatusCode::NOT_MODIFIED
}

fn can_have_length_status(status: StatusCode) -> bool {
    can_have_body_status(status)
}

thread_local! {
    /// The formatted `date` of the current second, as hyper caches it per thread.
    static DATE: RefCell<(u64, Vec<u8>)> = const { RefCell::new((0, Vec::new())) };
}

/// Appends the `date` field line, as hyper adds it to a head without one.
pub(super) fn write_date(dst: &mut BytesMut) {
    dst.put_slice(b"date: ");
    with_date(|date| dst.put_slice(date));
    dst.put_slice(b"\r\n");
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

    /// The bytes of a head with its generated `date` line (if any) taken out, and
    /// how many `date` lines it had.
    fn without_generated_date(head: &[u8], had_date: bool) -> (String, usize) {
        let text = String::from_utf8(head.to_vec()).unwrap();
        let dates = text.lines().filter(|l| l.starts_with("date: ")).count();
        let kept: Vec<_> = text.lines().filter(|l| had_date || !l.starts_with("date: ")).collect();
        (kept.join("\n"), dates)
    }

    /// Whatever the reply, status and body, a head the check found verbatim is written
    /// as `encode_head` writes it (its shortcut, when taken, gives the same bytes).
    #[test]
    fn verbatim_heads_are_written_as_encode_head_writes_them() {
        let fields: &[&[(&'static str, &'static str)]] = &[
            &[("content-length", "1024")],
            &[("content-length", "0")],
            &[("date", "Sun, 06 Dec 2026 16:00:00 GMT"), ("content-length", "5")],
            &[("content-type", "text/plain"), ("x-a", "1"), ("x-a", "2"), ("content-length", "12")],
            &[("etag", "\"x\""), ("date", "d"), ("date", "e"), ("content-length", "3"), ("server", "s")],
            &[("content-type", "text/html")],
            &[],
        ];
        let replies = [
            KEEP,
            Reply { head: true, ..KEEP },
            Reply { keep_alive: false, ..KEEP },
            Reply { version: Version::HTTP_10, head: false, keep_alive: true },
            Reply { version: Version::HTTP_10, head: false, keep_alive: false },
        ];
        let bodies =
            [BodySize::Known(1024), BodySize::Known(0), BodySize::Known(5), BodySize::Ended, BodySize::Unknown];
        let mut shortcut = 0;
        for headers in fields {
            let mut list: Vec<Header> =
                headers.iter().map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v))).collect();
            localtunnels_driver::http::group_by_name(&mut list);
            let length =
                list.iter().find(|(n, _)| n == header::CONTENT_LENGTH).and_then(|(_, v)| decimal(v.as_bytes()));
            let had_date = list.iter().any(|(n, _)| n == header::DATE);
            for reply in replies {
                for status in [200, 201, 204, 304, 404, 500] {
                    let status = StatusCode::from_u16(status).unwrap();
                    for body in bodies {
                        // The body's size comes from the head's `Content-Length`, as
                        // `write_streamed` has it, or the body is over.
                        let body = match (body, length) {
                            (BodySize::Ended, _) => BodySize::Ended,
                            (_, Some(n)) => BodySize::Known(n),
                            (_, None) => BodySize::Unknown,
                        };
                        let (mut want, mut got) = (BytesMut::new(), BytesMut::new());
                        let want_written = encode_head(&mut want, reply, status, &mut list.clone(), body).unwrap();
                        let shape = Shape::Verbatim { length };
                        let got_written =
                            encode_response_head(&mut got, reply, status, &mut list.clone(), body, shape).unwrap();
                        let case = format!("{headers:?} {reply:?} {status} {body:?}");
                        assert_eq!(
                            without_generated_date(&got, had_date),
                            without_generated_date(&want, had_date),
                            "{case}"
                        );
                        assert_eq!(
                            (got_written.encoder, got_written.last),
                            (want_written.encoder, want_written.last),
                            "{case}"
                        );
                        shortcut += usize::from(reply.keep_alive && !reply.head && reply.version == Version::HTTP_11);
                    }
                }
            }
        }
        assert!(shortcut > 0);
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
