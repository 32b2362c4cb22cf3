//! HTTP/1.x message heads: parsed with `httparse` (the usual request head by a walk of
//! our own, `head_walk`, which leaves every other head to httparse) into the tunnel's header type
//! ([`Header`]: a `HeaderName` and a `HeaderValue` sharing the read buffer's bytes),
//! and written from it.
//!
//! Parsing takes the head off the front of the caller's buffer only when it is
//! complete; a partial head leaves the buffer as it was (read more, call again). The
//! checks and their answers are hyper's: a head over the size limit or with too many
//! fields is 431, a target over 65,534 bytes 414, anything else malformed 400
//! ([`HeadError::status`]).

use std::mem::MaybeUninit;

use bytes::{BufMut, Bytes, BytesMut};
use http::uri::Authority;
use http::{HeaderName, HeaderValue, Method, Uri, Version};
use localtunnels_core::Header;

use super::field_cache::{FieldCache, FieldRange};
use super::head_walk::walk_request;
use super::target::Target;

/// Most header fields in one head (hyper's default too).
pub const MAX_HEADERS: usize = 100;

/// Longest request target (hyper's limit).
pub const MAX_TARGET: usize = (u16::MAX - 1) as usize;

/// Bounds on one message head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Most bytes of a head, request or status line included; a buffer this full
    /// without a complete head is refused.
    pub max_bytes: usize,
    /// Most header fields (at most [`MAX_HEADERS`]).
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits { max_bytes: 64 * 1024, max_headers: MAX_HEADERS }
    }
}

/// Why a head cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeadError {
    /// Over [`HeadLimits::max_bytes`], or more fields than [`HeadLimits::max_headers`].
    #[error("message head too large")]
    TooLarge,
    /// A request target over [`MAX_TARGET`] bytes.
    #[error("request target too long")]
    TargetTooLong,
    /// A method that is not a token.
    #[error("invalid method")]
    Method,
    /// A request target that is not a URI.
    #[error("invalid request target")]
    Target,
    /// Not HTTP/1.0 or HTTP/1.1 (an HTTP/2 preface is one).
    #[error("unsupported HTTP version")]
    Version,
    /// A status code that is not three digits.
    #[error("invalid status code")]
    Status,
    /// A malformed header field or line ending.
    #[error("malformed header field")]
    Header,
}

impl HeadError {
    /// The status a server answers this error with (hyper's choice for each).
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge => 431,
            HeadError::TargetTooLong => 414,
            _ => 400,
        }
    }

    fn of(e: httparse::Error) -> HeadError {
        match e {
            httparse::Error::TooManyHeaders => HeadError::TooLarge,
            httparse::Error::Version => HeadError::Version,
            httparse::Error::Status => HeadError::Status,
            _ => HeadError::Header,
        }
    }
}

/// A request head as read from the wire.
#[derive(Debug, Clone)]
pub struct ParsedRequest {
    /// The method.
    pub method: Method,
    /// The target as sent: origin form (`/a?b`), absolute form, `*` or an authority
    /// (read through [`ParsedRequest::path_and_query`], [`ParsedRequest::authority`], ...).
    target: Target,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// Every field in order; names lowercase, values sharing the read buffer.
    pub headers: Vec<Header>,
    /// The head's bytes as they arrived (to hand the message to another parser).
    pub raw: Bytes,
}

impl ParsedRequest {
    /// The target's path and query, as the tunnel carries them (`Uri::path_and_query`'s,
    /// or `/` for a target without one; a fragment cut off).
    pub fn path_and_query(&self) -> &str {
        match &self.target {
            Target::Origin { start, end, .. } => self.text(*start..*end),
            Target::Other(uri) => uri.path_and_query().map_or("/", |p| p.as_str()),
        }
    }

    /// [`ParsedRequest::path_and_query`] as the bytes they are, for a caller that
    /// takes bytes (the OPEN's writer, which checks they are UTF-8 itself): an
    /// origin-form target's are not converted (`str::from_utf8`, ~0.06k instructions).
    pub fn path_and_query_bytes(&self) -> &[u8] {
        match &self.target {
            Target::Origin { start, end, .. } => &self.raw[*start..*end],
            Target::Other(uri) => uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes(),
        }
    }

    /// The target's path (`Uri::path`'s).
    pub fn path(&self) -> &str {
        match &self.target {
            Target::Origin { start, query, .. } => self.text(*start..*query),
            Target::Other(uri) => uri.path(),
        }
    }

    /// The target's authority: only an absolute-form or authority-form target has one.
    pub fn authority(&self) -> Option<&Authority> {
        match &self.target {
            Target::Origin { .. } => None,
            Target::Other(uri) => uri.authority(),
        }
    }

    /// The target as an `http::Uri` (built for an origin-form target: for the callers
    /// that want one, off the usual path).
    pub fn uri(&self) -> Uri {
        match &self.target {
            // The same bytes `Target::read` took as `Uri::from_maybe_shared` takes them.
            Target::Origin { start, end, .. } => {
                Uri::from_maybe_shared(self.raw.slice(*start..*end)).unwrap_or_default()
            }
            Target::Other(uri) => Uri::clone(uri),
        }
    }

    /// A part of the target as text. httparse read the whole target as UTF-8 (its
    /// `path` is a `&str`) and the parts end at ASCII bytes, so the fallback is never
    /// taken.
    fn text(&self, range: std::ops::Range<usize>) -> &str {
        std::str::from_utf8(&self.raw[range]).unwrap_or("/")
    }
}

/// A response head as read from the wire.
#[derive(Debug, Clone)]
pub struct ParsedResponse {
    /// The status code (100-999).
    pub status: u16,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// Every field in order; names lowercase, values sharing the read buffer.
    pub headers: Vec<Header>,
}

/// Header storage for one parse; uninitialised until httparse fills it, as in hyper
/// (zeroing 100 entries on every request is measurable).
pub(super) type Slots<'b> = [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS];

pub(super) fn slots<'b>() -> Slots<'b> {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// Reads a request head off the front of `buf`: `Ok(None)` while it is incomplete
/// (the buffer is left as it was), else the head, with `buf` holding what follows.
pub fn parse_request(buf: &mut BytesMut, limits: &HeadLimits) -> Result<Option<ParsedRequest>, HeadError> {
    parse_request_with(buf, limits, None)
}

/// [`parse_request`] for a connection that keeps a [`FieldCache`]: the same head, with
/// the names and values the last head had at the same places cloned instead of built
/// (a browser's or a load generator's requests repeat most of their fields).
pub fn parse_request_cached(
    buf: &mut BytesMut,
    limits: &HeadLimits,
    cache: &mut FieldCache,
) -> Result<Option<ParsedRequest>, HeadError> {
    parse_request_with(buf, limits, Some(cache))
}

fn parse_request_with(
    buf: &mut BytesMut,
    limits: &HeadLimits,
    mut cache: Option<&mut FieldCache>,
) -> Result<Option<ParsedRequest>, HeadError> {
    let max = limits.max_headers.min(MAX_HEADERS);
    // The cache's list keeps its allocation from one head to the next.
    let mut ranges = cache.as_deref_mut().map(|c| std::mem::take(&mut c.ranges)).unwrap_or_default();
    // The usual head is read by a walk of our own ([`head_walk`]); any other, by
    // httparse, which answers it as it always did.
    let window = within(buf, limits);
    let walked = walk_request(window, max, |name, _, value| {
        ranges.push(slices_range(window, name, value));
        true
    });
    let Some(walked) = walked else {
        ranges.clear();
        return parse_request_httparse(buf, limits, max, ranges, cache);
    };
    // httparse's checks after its parse, in its order (a walked head passes the rest).
    if walked.target.len() > MAX_TARGET {
        return Err(HeadError::TargetTooLong);
    }
    let method = match &window[walked.method] {
        b"GET" => Method::GET,
        method => Method::from_bytes(method).map_err(|_| HeadError::Method)?,
    };
    let line = (method, walked.target, walked.version);
    read_request(buf, walked.len, line, ranges, cache)
}

/// [`parse_request_with`] by httparse: for the heads the walk does not take (and
/// every malformed one). `ranges` is the cache's list, empty.
fn parse_request_httparse(
    buf: &mut BytesMut,
    limits: &HeadLimits,
    max: usize,
    mut ranges: Vec<FieldRange>,
    cache: Option<&mut FieldCache>,
) -> Result<Option<ParsedRequest>, HeadError> {
    let mut slots = slots();
    let mut req = httparse::Request::new(&mut []);
    let status = httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, within(buf, limits), &mut slots[..max])
        .map_err(|e| match e {
            // A bad token before the target is the method's fault, after it the target's.
            httparse::Error::Token if req.method.is_none() => HeadError::Method,
            httparse::Error::Token => HeadError::Target,
            e => HeadError::of(e),
        });
    let len = match head_len(status?, buf.len(), limits)? {
        Some(len) => len,
        None => {
            if let Some(c) = cache {
                c.ranges = ranges;
            }
            return Ok(None);
        }
    };
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Header);
    };
    if path.len() > MAX_TARGET {
        return Err(HeadError::TargetTooLong);
    }
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| HeadError::Method)?;
    let version = if minor == 1 { Version::HTTP_11 } else { Version::HTTP_10 };
    let path_range = offset_in(buf, path.as_bytes());
    // Pushed one by one: `extend` was a call of its own (~50 instructions for one field).
    ranges.reserve(req.headers.len());
    for h in req.headers.iter() {
        ranges.push(field_range(buf, h));
    }
    read_request(buf, len, (method, path_range, version), ranges, cache)
}

/// The request whose head, `len` bytes with this request line and fields at `ranges`,
/// is at the front of `buf`: taken off it, its target read and its fields made (with
/// `cache`, which gets `ranges` back, emptied).
fn read_request(
    buf: &mut BytesMut,
    len: usize,
    (method, path_range, version): (Method, std::ops::Range<usize>, Version),
    mut ranges: Vec<FieldRange>,
    mut cache: Option<&mut FieldCache>,
) -> Result<Option<ParsedRequest>, HeadError> {
    let raw = buf.split_to(len).freeze();
    let target = Target::read(&raw, path_range);
    let headers = match cache.as_deref_mut() {
        Some(c) => request_fields(&raw, &ranges, c),
        None => fields(&raw, &ranges, None),
    };
    if let Some(c) = cache {
        ranges.clear();
        c.ranges = ranges;
    }
    Ok(Some(ParsedRequest { method, target: target?, version, headers: headers?, raw }))
}

/// Reads a response head off the front of `buf`, as [`parse_request`] does.
pub fn parse_response(buf: &mut BytesMut, limits: &HeadLimits) -> Result<Option<ParsedResponse>, HeadError> {
    parse_response_with(buf, limits, None)
}

/// [`parse_response`] for a connection that keeps a [`FieldCache`]: the same head,
/// with the names the last head had at the same places cloned instead of built.
pub fn parse_response_cached(
    buf: &mut BytesMut,
    limits: &HeadLimits,
    cache: &mut FieldCache,
) -> Result<Option<ParsedResponse>, HeadError> {
    parse_response_with(buf, limits, Some(cache))
}

fn parse_response_with(
    buf: &mut BytesMut,
    limits: &HeadLimits,
    mut cache: Option<&mut FieldCache>,
) -> Result<Option<ParsedResponse>, HeadError> {
    let mut slots = slots();
    let Some(StatusHead { len, status, version, fields: parsed }) = parse_status_head(buf, limits, &mut slots)? else {
        return Ok(None);
    };
    // The cache's list keeps its allocation from one head to the next.
    let mut ranges = cache.as_deref_mut().map(|c| std::mem::take(&mut c.ranges)).unwrap_or_default();
    ranges.extend(parsed.iter().map(|h| field_range(buf, h)));
    let raw = buf.split_to(len).freeze();
    let headers = fields(&raw, &ranges, cache.as_deref_mut());
    if let Some(c) = cache {
        ranges.clear();
        c.ranges = ranges;
    }
    Ok(Some(ParsedResponse { status, version, headers: headers? }))
}

/// A response head as httparse read it: its length, status, version and fields (in
/// the parse's slots, pointing into the buffer).
pub(super) struct StatusHead<'s, 'b> {
    pub(super) len: usize,
    pub(super) status: u16,
    pub(super) version: Version,
    pub(super) fields: &'s [httparse::Header<'b>],
}

/// Parses the response head at the front of `buf` into `slots`: `None` while it is
/// incomplete (see [`head_len`]).
pub(super) fn parse_status_head<'s, 'b>(
    buf: &'b [u8],
    limits: &HeadLimits,
    slots: &'s mut Slots<'b>,
) -> Result<Option<StatusHead<'s, 'b>>, HeadError> {
    let max = limits.max_headers.min(MAX_HEADERS);
    let mut res = httparse::Response::new(&mut []);
    let status = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, within(buf, limits), &mut slots[..max])
        .map_err(HeadError::of)?;
    let Some(len) = head_len(status, buf.len(), limits)? else { return Ok(None) };
    let (Some(status), Some(minor)) = (res.code, res.version) else {
        return Err(HeadError::Header);
    };
    let version = if minor == 1 { Version::HTTP_11 } else { Version::HTTP_10 };
    Ok(Some(StatusHead { len, status, version, fields: res.headers }))
}

/// The part of `buf` a head may take: what lies past the limit is never parsed, so a
/// head over the limit is refused as too large however the reads cut its bytes (parsing
/// it all could find a malformed field past the limit when the bytes came in one read,
/// and not when they came in several; the fuzz target `h1_codec` found this).
pub(super) fn within<'b>(buf: &'b [u8], limits: &HeadLimits) -> &'b [u8] {
    &buf[..buf.len().min(limits.max_bytes)]
}

/// The length of a complete head within the limit, `None` for a partial one that may
/// still fit.
fn head_len(status: httparse::Status<usize>, buffered: usize, limits: &HeadLimits) -> Result<Option<usize>, HeadError> {
    match status {
        httparse::Status::Complete(len) if len > limits.max_bytes => Err(HeadError::TooLarge),
        httparse::Status::Complete(len) => Ok(Some(len)),
        httparse::Status::Partial if buffered >= limits.max_bytes => Err(HeadError::TooLarge),
        httparse::Status::Partial => Ok(None),
    }
}

/// Where `part` (a slice of `whole`) starts and ends in `whole`.
fn offset_in(whole: &[u8], part: &[u8]) -> std::ops::Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    start..start + part.len()
}

/// A field's name and value as ranges of the buffer, so that the buffer can be frozen
/// and the values shared rather than copied.
pub(super) fn field_range(buf: &[u8], h: &httparse::Header<'_>) -> FieldRange {
    slices_range(buf, h.name.as_bytes(), h.value)
}

/// [`field_range`] of a field read as a name and a value (slices of `buf`).
pub(super) fn slices_range(buf: &[u8], name: &[u8], value: &[u8]) -> FieldRange {
    (offset_in(buf, name), offset_in(buf, value))
}

/// Room left in a parsed head's field list for the fields a proxy adds (`Host`, the
/// three `X-Forwarded-*`), so that adding them does not move the list.
const ADDED_FIELDS: usize = 4;

pub(super) fn fields(
    raw: &Bytes,
    ranges: &[FieldRange],
    mut cache: Option<&mut FieldCache>,
) -> Result<Vec<Header>, HeadError> {
    let mut headers = Vec::with_capacity(ranges.len() + ADDED_FIELDS);
    for (i, (name, value)) in ranges.iter().enumerate() {
        if let Some(c) = cache.as_deref_mut() {
            headers.push(c.field(i, raw, name.clone(), value.clone())?);
            continue;
        }
        let name = HeaderName::from_bytes(&raw[name.clone()]).map_err(|_| HeadError::Header)?;
        let value = HeaderValue::from_maybe_shared(raw.slice(value.clone())).map_err(|_| HeadError::Header)?;
        headers.push((name, value));
    }
    Ok(headers)
}

/// [`fields`] of a request head read with `cache`: the last head's fields cloned whole
/// when the field region is the same bytes ([`FieldCache::same_region`]), else made
/// field by field and the region remembered for the next head.
fn request_fields(raw: &Bytes, ranges: &[FieldRange], cache: &mut FieldCache) -> Result<Vec<Header>, HeadError> {
    let (Some((first, _)), Some((_, last))) = (ranges.first(), ranges.last()) else {
        cache.forget_last();
        return Ok(Vec::with_capacity(ADDED_FIELDS));
    };
    let region = first.start..last.end;
    if let Some(same) = cache.same_region(&raw[region.clone()], ADDED_FIELDS) {
        return Ok(same);
    }
    let made = fields(raw, ranges, Some(cache))?;
    cache.remember_region(raw, region, ranges, &made);
    Ok(made)
}

/// Appends `METHOD target HTTP/1.1\r\n`.
pub fn write_request_line(dst: &mut BytesMut, method: &str, target: &str) {
    dst.reserve(method.len() + target.len() + 12);
    dst.put_slice(method.as_bytes());
    dst.put_u8(b' ');
    dst.put_slice(target.as_bytes());
    dst.put_slice(b" HTTP/1.1\r\n");
}

/// Appends a whole request head to `dst`: `METHOD target HTTP/1.1`, every field of
/// `headers` in order, `extra` (a line of the caller's own, such as
/// `transfer-encoding: chunked\r\n`, or nothing) and the blank line. Into a `Vec` that
/// its owner keeps from one request to the next: a piece is then a copy and a length
/// update, with no `BytesMut` to split off and reclaim per request.
pub fn write_request_head(dst: &mut Vec<u8>, method: &str, target: &str, headers: &[Header], extra: &[u8]) {
    dst.extend_from_slice(method.as_bytes());
    dst.push(b' ');
    dst.extend_from_slice(target.as_bytes());
    dst.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        dst.extend_from_slice(name.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    dst.extend_from_slice(extra);
    dst.extend_from_slice(b"\r\n");
}

/// Appends a status line, `HTTP/1.1 200 OK\r\n` (the reason is the status's
/// canonical one, `<none>` for a code without one, as hyper writes it).
pub fn write_status_line(dst: &mut BytesMut, version: Version, status: http::StatusCode) {
    if version == Version::HTTP_11 && status == http::StatusCode::OK {
        dst.put_slice(b"HTTP/1.1 200 OK\r\n");
        return;
    }
    dst.put_slice(if version == Version::HTTP_10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    dst.put_slice(status.as_str().as_bytes());
    dst.put_u8(b' ');
    dst.put_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
    dst.put_slice(b"\r\n");
}

/// Appends one field line, `name: value\r\n`.
pub fn write_header(dst: &mut BytesMut, name: &[u8], value: &[u8]) {
    dst.reserve(name.len() + value.len() + 4);
    dst.put_slice(name);
    dst.put_slice(b": ");
    dst.put_slice(value);
    dst.put_slice(b"\r\n");
}

/// Appends every field of `headers`, in order.
pub fn write_headers(dst: &mut BytesMut, headers: &[Header]) {
    for (name, value) in headers {
        write_header(dst, name.as_str().as_bytes(), value.as_bytes());
    }
}

/// Appends `content-length: n\r\n`.
pub fn write_content_length(dst: &mut BytesMut, n: u64) {
    let mut digits = [0u8; 20];
    write_header(dst, b"content-length", decimal(n, &mut digits));
}

/// `n` in decimal, written into the end of `out`.
fn decimal(mut n: u64, out: &mut [u8; 20]) -> &[u8] {
    let mut i = out.len();
    loop {
        i -= 1;
        // n % 10 < 10: the cast cannot truncate.
        out[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &out[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Result<Option<ParsedRequest>, HeadError> {
        parse_request(&mut BytesMut::from(s), &HeadLimits::default())
    }

    #[test]
    fn a_request_head_is_read_and_what_follows_kept() {
        let mut buf = BytesMut::from("GET /a?b=1 HTTP/1.1\r\nHost: demo.localhost\r\nX-A: 1\r\nx-a: 2\r\n\r\nBODY");
        let head = parse_request(&mut buf, &HeadLimits::default()).unwrap().unwrap();
        assert_eq!(head.method, Method::GET);
        assert_eq!((head.path_and_query(), head.path(), head.uri()), ("/a?b=1", "/a", Uri::from_static("/a?b=1")));
        assert_eq!(head.version, Version::HTTP_11);
        let names: Vec<_> = head.headers.iter().map(|(n, v)| (n.as_str(), v.to_str().unwrap())).collect();
        assert_eq!(names, [("host", "demo.localhost"), ("x-a", "1"), ("x-a", "2")]);
        assert_eq!(&buf[..], b"BODY");
        assert!(head.raw.ends_with(b"\r\n\r\n"));
    }

    #[test]
    fn a_partial_head_leaves_the_buffer_alone() {
        let mut buf = BytesMut::from("GET / HTTP/1.1\r\nHost: a\r\n");
        assert!(parse_request(&mut buf, &HeadLimits::default()).unwrap().is_none());
        assert_eq!(buf.len(), 25);
        let small = HeadLimits { max_bytes: 20, ..HeadLimits::default() };
        assert_eq!(parse_request(&mut buf, &small).unwrap_err(), HeadError::TooLarge);
    }

    #[test]
    fn malformed_heads_get_hypers_statuses() {
        let cases = [
            ("G@T / HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/2.0\r\n\r\n", 400),
            ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nA\x01: b\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", 400),
            ("GET /\x7f HTTP/1.1\r\n\r\n", 400),
        ];
        for (head, status) in cases {
            assert_eq!(req(head).map(|_| ()).unwrap_err().status(), status, "{head:?}");
        }
        let many: String = (0..101).map(|i| format!("x-{i}: 1\r\n")).collect();
        assert_eq!(req(&format!("GET / HTTP/1.1\r\n{many}\r\n")).unwrap_err().status(), 431);
        let long = "a".repeat(MAX_TARGET);
        let limits = HeadLimits { max_bytes: 128 * 1024, ..HeadLimits::default() };
        let mut buf = BytesMut::from(format!("GET /{long} HTTP/1.1\r\n\r\n").as_str());
        assert_eq!(parse_request(&mut buf, &limits).unwrap_err().status(), 414);
    }

    #[test]
    fn what_lies_past_the_limit_is_not_parsed() {
        // A malformed field past the limit: too large, whole or fed byte by byte.
        let head = format!("GET / HTTP/1.1\r\nX-A: {}\r\nBad Name: x\r\n\r\n", "a".repeat(40));
        let limits = HeadLimits { max_bytes: 40, ..HeadLimits::default() };
        assert_eq!(parse_request(&mut BytesMut::from(head.as_str()), &limits).unwrap_err(), HeadError::TooLarge);
        let mut buf = BytesMut::new();
        let fed = head.bytes().find_map(|b| {
            buf.extend_from_slice(&[b]);
            parse_request(&mut buf, &limits).err()
        });
        assert_eq!(fed, Some(HeadError::TooLarge));
        // Within the limit, the same field is malformed.
        assert_eq!(req(&head).unwrap_err(), HeadError::Header);
    }

    #[test]
    fn bare_lf_line_endings_are_read_as_httparse_reads_them() {
        let head = req("GET / HTTP/1.1\nHost: a\n\n").unwrap().unwrap();
        assert_eq!(head.headers.len(), 1);
    }

    #[test]
    fn a_response_head_is_read() {
        let mut buf = BytesMut::from("HTTP/1.0 404 Not Found\r\nContent-Length: 3\r\n\r\nabc");
        let head = parse_response(&mut buf, &HeadLimits::default()).unwrap().unwrap();
        assert_eq!((head.status, head.version), (404, Version::HTTP_10));
        assert_eq!(head.headers[0].0, http::header::CONTENT_LENGTH);
        assert_eq!(&buf[..], b"abc");
        let mut bad = BytesMut::from("HTTP/1.1 2x0 OK\r\n\r\n");
        assert_eq!(parse_response(&mut bad, &HeadLimits::default()).unwrap_err(), HeadError::Status);
    }

    #[test]
    fn a_cached_parse_reads_every_head_as_the_plain_one() {
        let heads = [
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nDate: x\r\n\r\nabc",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nDate: y\r\n\r\nabc",
            "HTTP/1.1 404 Not Found\r\nX-Other: 1\r\ncontent-length: 0\r\nDATE: z\r\nX-More: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
        ];
        let mut cache = FieldCache::default();
        for head in heads {
            let limits = HeadLimits::default();
            let (mut a, mut b) = (BytesMut::from(head), BytesMut::from(head));
            let plain = parse_response(&mut a, &limits).map(|h| h.map(|h| (h.status, h.version, h.headers)));
            let cached =
                parse_response_cached(&mut b, &limits, &mut cache).map(|h| h.map(|h| (h.status, h.version, h.headers)));
            assert_eq!(plain, cached, "{head:?}");
            assert_eq!(a, b);
        }
    }

    #[test]
    fn a_cached_request_parse_reads_every_head_as_the_plain_one() {
        let heads = [
            "GET /a HTTP/1.1\r\nHost: demo.localhost\r\nUser-Agent: x\r\n\r\n",
            "GET /b?c HTTP/1.1\r\nHost: demo.localhost\r\nUser-Agent: x\r\n\r\nBODY",
            "POST /c HTTP/1.0\r\nhost: demo.localhost\r\nContent-Length: 4\r\nUSER-AGENT: y\r\n\r\nBODY",
            "GET /d HTTP/1.1\r\nHost: demo.localhost\r\nBad Name: 1\r\n\r\n",
            "GET /e HTTP/1.1\r\nHost: demo.localhost\r\nX-A: b\rc\r\n\r\n",
            "GET /\x7f HTTP/1.1\r\nHost: demo.localhost\r\n\r\n",
            "GET /f HTTP/1.1\r\nHost: other\r\n",
            "GET /g HTTP/1.1\r\n\r\n",
            // The same fields whole after another target, then one byte changed, moved or cut.
            "GET /h HTTP/1.1\r\nHost: demo.localhost\r\nUser-Agent: x\r\n\r\n",
            "PUT /i HTTP/1.1\r\nHost: demo.localhost\r\nUser-Agent: x\r\n\r\n",
            "GET /j HTTP/1.1\r\nHost: demo.localhost\r\nUser-Agent: y\r\n\r\n",
            "GET /k HTTP/1.1\r\nHost: demo.localhost\r\nUser-Agent:  y\r\n\r\n",
            "GET /l HTTP/1.1\r\nHost: demo.localhost\r\nUser-Agent:\r\n\r\n",
            "GET /m HTTP/1.1\r\nHost: demo.localhost\r\nUser-Agent:\r\n\r\n",
            "GET /n HTTP/1.1\r\nHost: demo.localhost\r\n\r\n",
            "GET /o HTTP/1.1\r\nHost: demo.localhost\r\nX-A: caf\u{e9}\r\n\r\n",
            "GET /p HTTP/1.1\r\nHost: demo.localhost\r\nX-A: caf\u{e9}\r\n\r\n",
        ];
        let mut cache = FieldCache::default();
        for head in heads {
            let limits = HeadLimits::default();
            let (mut a, mut b) = (BytesMut::from(head), BytesMut::from(head));
            let plain = parse_request(&mut a, &limits).map(|h| h.map(|h| (h.uri(), h.method, h.version, h.headers)));
            let cached = parse_request_cached(&mut b, &limits, &mut cache)
                .map(|h| h.map(|h| (h.uri(), h.method, h.version, h.headers)));
            assert_eq!(plain, cached, "{head:?}");
            assert_eq!(a, b);
        }
    }

    #[test]
    fn a_cached_request_parse_reads_repeated_and_changing_heads_as_the_plain_one() {
        let long = "v".repeat(REGION_BYTES_FOR_TEST);
        let mut heads = Vec::new();
        for i in 0..80 {
            // Changing on every head for a while, then the same, then long ones.
            let id = if (20..40).contains(&i) { 0 } else { i };
            heads.push(format!("GET /{i} HTTP/1.1\r\nHost: a\r\nX-Id: {id}\r\nAccept: */*\r\n\r\n"));
            if i >= 60 {
                heads.push(format!("GET /{i} HTTP/1.1\r\nHost: a\r\nX-Long: {long}\r\n\r\n"));
            }
        }
        let mut cache = FieldCache::default();
        for head in &heads {
            let limits = HeadLimits::default();
            let (mut a, mut b) = (BytesMut::from(head.as_str()), BytesMut::from(head.as_str()));
            let plain = parse_request(&mut a, &limits).map(|h| h.map(|h| (h.uri(), h.headers)));
            let cached = parse_request_cached(&mut b, &limits, &mut cache).map(|h| h.map(|h| (h.uri(), h.headers)));
            assert_eq!(plain, cached, "{head:?}");
        }
    }

    /// Over the field cache's bound on a remembered region.
    const REGION_BYTES_FOR_TEST: usize = 1100;

    #[test]
    fn heads_are_written() {
        let mut dst = BytesMut::new();
        write_request_line(&mut dst, "GET", "/x");
        write_headers(&mut dst, &[(http::header::HOST, HeaderValue::from_static("a"))]);
        write_content_length(&mut dst, 1024);
        write_status_line(&mut dst, Version::HTTP_10, http::StatusCode::NOT_FOUND);
        write_status_line(&mut dst, Version::HTTP_11, http::StatusCode::OK);
        write_status_line(&mut dst, Version::HTTP_11, http::StatusCode::from_u16(599).unwrap());
        let text = std::str::from_utf8(&dst).unwrap();
        assert_eq!(
            text,
            "GET /x HTTP/1.1\r\nhost: a\r\ncontent-length: 1024\r\nHTTP/1.0 404 Not Found\r\nHTTP/1.1 200 OK\r\nHTTP/1.1 599 <none>\r\n"
        );
        let mut head = Vec::new();
        let fields = [
            (http::header::HOST, HeaderValue::from_static("a")),
            (http::header::TE, HeaderValue::from_static("trailers")),
        ];
        write_request_head(&mut head, "POST", "/x?y", &fields, b"transfer-encoding: chunked\r\n");
        assert_eq!(head, b"POST /x?y HTTP/1.1\r\nhost: a\r\nte: trailers\r\ntransfer-encoding: chunked\r\n\r\n");
        let mut line = BytesMut::new();
        write_request_line(&mut line, "POST", "/x?y");
        write_headers(&mut line, &fields);
        assert!(head.starts_with(&line), "the same lines as the piecewise writers");
        let mut digits = [0u8; 20];
        assert_eq!(decimal(0, &mut digits), b"0");
        assert_eq!(decimal(u64::MAX, &mut digits), b"18446744073709551615");
    }
}
