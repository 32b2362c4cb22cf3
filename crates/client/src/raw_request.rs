//! The origin's request head written straight from the OPEN's header block
//! ([`RawRequestHead`]), with no typed header list in between: the names as the block
//! spells them (the static table's text for an indexed one), the values copied, and
//! the client's own rules applied on the way, as [`origin_request`](crate::forward::origin_request)
//! applies them to a decoded head: the `Host` the owner chose (`--host-header`) or the
//! origin's for a request without one, the `te` fields dropped and `te: trailers`
//! added last if one of them was that. The bytes are the ones the decoded head gives
//! (`write_request_head` after `origin_request`); the tests below hold them to it.
//!
//! Taken only by a request the rules cannot refuse or reframe (see [`takes_raw`]): no
//! body, at most one `Host`, no `Content-Length` or `Transfer-Encoding`.
//! The block is then never decoded into `HeaderName`s and `HeaderValue`s: after the
//! write the exchange keeps its target and what an error page needs, and lets the raw
//! head go (docs/BENCHMARKS.md, sixteenth round).

use http::{HeaderValue, Method};
use localtunnels_core::inspect::{Block, Edits, HeadFields};
use localtunnels_core::{is_te_trailers, RawRequestHead};

use crate::ctx::Ctx;

/// A request head written from its raw OPEN, and the `Host` rules it is written with.
#[derive(Debug, Clone)]
pub(crate) struct RawOutgoing<'a> {
    pub(crate) method: &'a Method,
    pub(crate) head: RawRequestHead,
    /// The owner's `Host` (`--host-header`), written in place of the visitor's.
    pub(crate) rewrite: Option<&'a HeaderValue>,
    /// The `Host` of a request without one (the origin's authority).
    pub(crate) default_host: Option<&'a HeaderValue>,
}

impl<'a> RawOutgoing<'a> {
    /// The request `head` with `ctx`'s `Host` rules.
    pub(crate) fn new(ctx: &'a Ctx, method: &'a Method, head: RawRequestHead) -> Self {
        let default_host = ctx.origin.as_local().and_then(|l| l.default_host());
        RawOutgoing { method, head, rewrite: ctx.host_for_origin(), default_host }
    }

    /// Appends the request head (see [`Self::write_over`]).
    #[cfg(test)]
    pub(crate) fn write(&self, dst: &mut Vec<u8>) {
        let end = self.write_over(dst, dst.len());
        dst.truncate(end);
    }

    /// Writes the request head into `buf` from `at` on, over the bytes there (growing
    /// `buf` when it is too short), and returns where it ends: the request line, then
    /// [`OriginFields::each`]'s fields as lines (written out here as one loop, not
    /// through the chained iterator), the blank line. The connection's head buffer
    /// keeps its bytes from one head to the next ([`HeadBuf::write_in_place`](crate::pool::HeadBuf::write_in_place)),
    /// so a line is copied into bytes that are there, its room checked once, with no
    /// length to update per piece (four `extend_from_slice` a field were ~30
    /// instructions more: docs/BENCHMARKS.md, twenty-second round).
    pub(crate) fn write_over(&self, buf: &mut Vec<u8>, at: usize) -> usize {
        let mut out = Text { buf, at };
        let (method, target) = (self.method.as_str().as_bytes(), self.head.target());
        const VERSION: &[u8; 11] = b" HTTP/1.1\r\n";
        let line = out.room(method.len() + 1 + target.len() + VERSION.len());
        if let Some((m, rest)) = line.split_at_mut_checked(method.len()) {
            m.copy_from_slice(method);
            if let Some((space, rest)) = rest.split_first_mut() {
                *space = b' ';
                if let Some((t, version)) = rest.split_at_mut_checked(target.len()) {
                    t.copy_from_slice(target);
                    if let Some(version) = version.first_chunk_mut::<11>() {
                        *version = *VERSION;
                    }
                }
            }
        }
        if self.head.hosts() == 0 {
            if let Some(host) = self.rewrite.or(self.default_host) {
                out.line(b"host", host.as_bytes());
            }
        }
        for (name, value) in self.head.fields() {
            match name {
                b"te" => {}
                b"host" => out.line(name, self.rewrite.map_or(value, HeaderValue::as_bytes)),
                _ => out.line(name, value),
            }
        }
        // Looked for after the loop, and only in a block with a `TE` (its walk noted
        // one): a flag carried through the loop cost ~18 instructions per request.
        if self.head.has_te() && te_trailers(&self.head) {
            out.line(b"te", b"trailers");
        }
        if let Some(end) = out.room(2).first_chunk_mut::<2>() {
            *end = *b"\r\n";
        }
        out.at
    }
}

/// A writer of text into a buffer's bytes from `at` on, over what is there: each
/// line's room is found once (the buffer grown, its new bytes zeroed, only when it is
/// short), then its pieces are copied into it.
struct Text<'a> {
    buf: &'a mut Vec<u8>,
    at: usize,
}

impl Text<'_> {
    /// The next `n` bytes from `at` (`at` moves past them), the buffer grown if short.
    #[inline(always)]
    fn room(&mut self, n: usize) -> &mut [u8] {
        let (at, end) = (self.at, self.at + n);
        if end > self.buf.len() {
            self.grow(end);
        }
        self.at = end;
        self.buf.get_mut(at..end).unwrap_or_default()
    }

    /// One field's line, `name: value\r\n`.
    #[inline(always)]
    fn line(&mut self, name: &[u8], value: &[u8]) {
        let line = self.room(name.len() + 2 + value.len() + 2);
        // The room is the line's length: none of these can fail.
        let Some((n, rest)) = line.split_at_mut_checked(name.len()) else { return };
        copy(n, name);
        let Some((colon, rest)) = rest.split_first_chunk_mut::<2>() else { return };
        *colon = *b": ";
        let Some((v, crlf)) = rest.split_at_mut_checked(value.len()) else { return };
        copy(v, value);
        if let Some(crlf) = crlf.first_chunk_mut::<2>() {
            *crlf = *b"\r\n";
        }
    }

    /// Makes the buffer at least `end` bytes long (doubling it, so that a long head
    /// grows it a few times, not once a line).
    #[cold]
    #[inline(never)]
    fn grow(&mut self, end: usize) {
        let len = end.max(self.buf.len() * 2).max(256);
        self.buf.resize(len, 0);
    }
}

/// Copies `src` into `dst` (of its length): a piece of 4 to 32 bytes (the usual name
/// and value) inline, as its first and last 4, 8 or 16 bytes (overlapping when it is
/// shorter than twice that), a `memcpy` call for any other.
#[inline(always)]
fn copy(dst: &mut [u8], src: &[u8]) {
    match src.len() {
        4..=7 => ends::<4>(dst, src),
        8..=15 => ends::<8>(dst, src),
        16..=32 => ends::<16>(dst, src),
        _ => dst.copy_from_slice(src),
    }
}

/// Copies `src` to `dst` (of the same length, `K` to `2K` bytes) as its first `K`
/// bytes and its last `K`.
#[inline(always)]
fn ends<const K: usize>(dst: &mut [u8], src: &[u8]) {
    if let (Some(d), Some(s)) = (dst.first_chunk_mut::<K>(), src.first_chunk::<K>()) {
        *d = *s;
    }
    if let (Some(d), Some(s)) = (dst.last_chunk_mut::<K>(), src.last_chunk::<K>()) {
        *d = *s;
    }
}

/// A raw head's fields as the origin gets them, with the `Host` rules applied: `Host`
/// first for a request without one, every field but `TE` in order (a `Host` rewritten
/// if the owner chose one), `te: trailers` last if one of the `te` fields was that; the list [`origin_request`](crate::forward::origin_request)
/// makes of the decoded head. The inspector files a raw request's entry from it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OriginFields<'a> {
    pub(crate) head: &'a RawRequestHead,
    pub(crate) rewrite: Option<&'a HeaderValue>,
    pub(crate) default_host: Option<&'a HeaderValue>,
}

impl<'a> OriginFields<'a> {
    /// For `head` with `ctx`'s `Host` rules.
    pub(crate) fn new(ctx: &'a Ctx, head: &'a RawRequestHead) -> Self {
        let default_host = ctx.origin.as_local().and_then(|l| l.default_host());
        OriginFields { head, rewrite: ctx.host_for_origin(), default_host }
    }

    /// Each field's name and value, in order.
    pub(crate) fn each(self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        let first = match self.head.hosts() {
            0 => self.rewrite.or(self.default_host).map(|host| (&b"host"[..], host.as_bytes())),
            _ => None,
        };
        let rewrite = self.rewrite;
        let fields = self.head.fields().filter_map(move |(name, value)| match name {
            b"te" => None,
            b"host" => Some((name, rewrite.map_or(value, HeaderValue::as_bytes))),
            _ => Some((name, value)),
        });
        let trailers = self.head.has_te() && te_trailers(self.head);
        first.into_iter().chain(fields).chain(trailers.then_some((&b"te"[..], &b"trailers"[..])))
    }
}

impl HeadFields for OriginFields<'_> {
    /// Counted by a walk: only a head filed across the store's chunks asks.
    fn field_count(&self) -> usize {
        self.each().count()
    }

    fn each(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        OriginFields::each(*self)
    }

    /// The OPEN's block and the `Host` the origin gets: the store copies the block in
    /// one piece and applies [`Self::each`]'s rules when the entry is read (walking the
    /// block to file it field by field was ~0.4k instructions per request).
    fn block(&self) -> Option<Block<'_>> {
        let first = self.head.hosts() == 0;
        let host = if first { self.rewrite.or(self.default_host) } else { self.rewrite };
        let edits = Edits::Origin { host: host.map(HeaderValue::as_bytes), first };
        Some(Block { bytes: self.head.block(), edits })
    }
}

/// Whether one of `head`'s `te` fields is `te: trailers`, the one the origin gets.
/// Out of line: the usual head has no `TE`, and the walk's code kept out of the head
/// writer leaves the writer as it was.
#[cold]
#[inline(never)]
fn te_trailers(head: &RawRequestHead) -> bool {
    head.fields().any(|(n, v)| n == b"te" && is_te_trailers(v))
}

/// Whether a request goes to the origin from its raw head: it has no body, at most one
/// `Host` (more are refused, by the decoded head's path), no framing field (a
/// `Content-Length` frames or refuses the body, a `Transfer-Encoding` is refused), the
/// origin is one this client speaks HTTP/1.1 to. An inspector files its entry from
/// the same fields ([`OriginFields`]), with no decode.
pub(crate) fn takes_raw(ctx: &Ctx, head: &RawRequestHead, end: bool) -> bool {
    end && head.hosts() <= 1 && !head.has_framing() && ctx.origin.as_local().is_some()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use localtunnels_core::{DecodeLimits, FieldCoding, Frame, Header, HeaderName, StreamKind};
    use localtunnels_driver::h1::head::write_request_head;

    use super::*;
    use crate::config::{ClientConfig, HostHeader};
    use crate::forward::origin_method;
    use crate::forward::origin_request;
    use crate::origin::LocalOrigin;
    use localtunnels_core::RequestHead;

    fn head(method: &str, target: &str, fields: &[(&str, &[u8])]) -> RequestHead {
        let headers: Vec<Header> = fields
            .iter()
            .map(|(n, v)| (HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_bytes(v).unwrap()))
            .collect();
        RequestHead { kind: StreamKind::Http, method: method.to_owned().into(), target: target.into(), headers }
    }

    /// Heads the server sends: the bench's, a browser's, odd names and values, `TE`s,
    /// with and without `Host`, and heads the raw path leaves to the decoded one.
    fn corpus() -> Vec<RequestHead> {
        let forwarded: [(&str, &[u8]); 3] =
            [("x-forwarded-for", b"127.0.0.1"), ("x-forwarded-proto", b"http"), ("x-forwarded-host", b"a.localhost")];
        let bench = [&[("host", &b"a.localhost"[..])][..], &forwarded].concat();
        vec![
            head("GET", "/1k", &bench),
            head("GET", "/", &[]),
            head("HEAD", "/a?b=c", &forwarded),
            head(
                "GET",
                "/index.html?q=1&r=%20",
                &[
                    ("host", b"demo.example.com"),
                    ("user-agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"),
                    ("accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                    ("accept-encoding", b"gzip, deflate, br, zstd"),
                    ("accept-language", b"en-US,en;q=0.9"),
                    ("cookie", b"session=abc; theme=dark"),
                    ("sec-fetch-dest", b"document"),
                    ("sec-fetch-mode", b"navigate"),
                    ("upgrade-insecure-requests", b"1"),
                    ("cache-control", b"max-age=0"),
                    ("x-forwarded-for", b"203.0.113.9"),
                    ("x-forwarded-proto", b"https"),
                    ("x-forwarded-host", b"demo.example.com"),
                ],
            ),
            head("OPTIONS", "*", &[("te", b"gzip"), ("x-a", b"1"), ("te", b"trailers"), ("host", b"b")]),
            // `TE`s a server should not send: only `te: trailers` goes on, once, last.
            head("GET", "/te1", &[("te", b"trailers, gzip"), ("host", b"c"), ("te", b"x")]),
            head("GET", "/te2", &[("te", b"TRAILERS"), ("te", b"trailers"), ("accept", b"*/*")]),
            head("GET", "/te3", &[("accept", b"*/*"), ("te", b"trailers")]),
            head("PURGE", "/p", &[("x-odd!#$%&'*+-.^_`|~09", b"\tobs \x80\xff\t"), ("x-empty", b""), ("date", b"")]),
            head("DELETE", "/d", &[("x-a", b"1"), ("x-a", b"2"), ("connection", b"keep-alive, x-a")]),
            // Left to the decoded head: two Hosts, a length, a transfer coding.
            head("GET", "/two", &[("host", b"a"), ("host", b"b")]),
            head("GET", "/len", &[("content-length", b"0")]),
            head("GET", "/te", &[("transfer-encoding", b"chunked")]),
        ]
    }

    fn ctx(host_header: HostHeader) -> Ctx {
        let config = ClientConfig { host_header, ..ClientConfig::default() };
        Ctx::new(config, Arc::new(LocalOrigin::new("127.0.0.1", 8000)))
    }

    /// The head the origin got before raw heads: decoded, `origin_request`, then
    /// `write_request_head` (no body: no chunked line).
    fn decoded_bytes(ctx: &Ctx, mut head: RequestHead) -> Result<Vec<u8>, String> {
        let method = origin_request(ctx, &head.method, &mut head.headers)?;
        let mut dst = Vec::new();
        write_request_head(&mut dst, method.as_str(), &head.target, &head.headers, b"");
        Ok(dst)
    }

    /// The origin gets `te: trailers` (once, last) only when the tunnel head carries it,
    /// and no other `te` a server sends.
    #[test]
    fn the_origin_gets_te_trailers_only_when_the_head_carries_it() {
        let ctx = ctx(HostHeader::Preserve);
        type Fields<'a> = &'a [(&'a str, &'a [u8])];
        let cases: &[(Fields<'_>, bool)] = &[
            (&[("host", b"a")], false),
            (&[("host", b"a"), ("te", b"trailers")], true),
            (&[("te", b"Trailers"), ("host", b"a"), ("te", b"trailers")], true),
            (&[("te", b"gzip"), ("host", b"a")], false),
            (&[("te", b"trailers, gzip"), ("host", b"a")], false),
            (&[("te", b"gzip"), ("host", b"a"), ("te", b"trailers"), ("x-a", b"1")], true),
        ];
        for (fields, kept) in cases {
            let bytes = decoded_bytes(&ctx, head("GET", "/", fields)).unwrap();
            let text = String::from_utf8(bytes).unwrap();
            let want = if *kept { "te: trailers\r\n\r\n" } else { "\r\n\r\n" };
            assert!(text.ends_with(want), "{fields:?}: {text:?}");
            let te = text.matches("\nte:").count();
            assert_eq!(te, usize::from(*kept), "{fields:?}: {text:?}");
            if !*kept {
                assert!(!text.contains("te: trailers"), "{fields:?}: {text:?}");
            }
        }
    }

    #[test]
    fn the_origin_gets_the_same_bytes_from_a_raw_head_as_from_the_decoded_one() {
        let limits = DecodeLimits::default();
        let mut raw_heads = 0;
        for host_header in [HostHeader::Rewrite, HostHeader::Preserve] {
            let ctx = ctx(host_header);
            for sent in corpus() {
                for coding in [FieldCoding::Text, FieldCoding::Indexed] {
                    for end in [true, false] {
                        let msg = Frame::Open { id: 3, head: sent.clone(), end }.encode_with(coding);
                        let Ok(Frame::Open { head: typed, .. }) = Frame::decode(msg.clone(), &limits) else {
                            panic!("the OPEN decodes")
                        };
                        let (_, raw, _) = RawRequestHead::decode_open(&msg, &limits).expect("carried whole");
                        if !takes_raw(&ctx, &raw, end) {
                            let left = !end || raw.hosts() > 1 || raw.has_framing();
                            assert!(left, "{sent:?} taken raw");
                            continue;
                        }
                        raw_heads += 1;
                        let method = origin_method(&raw.method).unwrap();
                        let mut written = Vec::new();
                        RawOutgoing::new(&ctx, &method, raw.clone()).write(&mut written);
                        let expected = decoded_bytes(&ctx, typed.clone()).unwrap();
                        assert_eq!(
                            String::from_utf8_lossy(&written),
                            String::from_utf8_lossy(&expected),
                            "{host_header:?} {coding:?}"
                        );
                    }
                }
            }
        }
        assert_eq!(raw_heads, 2 * 10 * 2, "every head but the three left to the decoded path, both codings");
    }

    /// A head written over a buffer's old bytes (shorter, longer, at an offset) is the
    /// same bytes as the decoded head's: names and values of every length from 0 to 40
    /// (each of the inline copies' sizes and the `memcpy` beyond), a long head that
    /// grows the buffer, and the bytes after the head left as they were.
    #[test]
    fn a_head_written_over_old_bytes_is_the_decoded_heads_bytes() {
        let limits = DecodeLimits::default();
        let text: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        let mut heads: Vec<RequestHead> = (0..=40)
            .map(|n| {
                let name = format!("x{}", "n".repeat(n.max(1) - 1));
                let target = format!("/{}", "t".repeat(n));
                head("GET", &target, &[(name.as_str(), &text[..n]), ("x-b", &text[..40 - n])])
            })
            .collect();
        heads.extend(corpus());
        heads.extend(large());
        for host_header in [HostHeader::Rewrite, HostHeader::Preserve] {
            let ctx = ctx(host_header);
            let mut kept = Vec::new();
            for sent in &heads {
                for coding in [FieldCoding::Text, FieldCoding::Indexed] {
                    let msg = Frame::Open { id: 3, head: sent.clone(), end: true }.encode_with(coding);
                    let (_, raw, _) = RawRequestHead::decode_open(&msg, &limits).expect("carried whole");
                    if !takes_raw(&ctx, &raw, true) {
                        continue;
                    }
                    let expected = decoded_bytes(&ctx, sent.clone()).unwrap();
                    let method = origin_method(&raw.method).unwrap();
                    let out = RawOutgoing::new(&ctx, &method, raw);
                    // Over the last head's bytes, as a connection's head buffer is.
                    let end = out.write_over(&mut kept, 0);
                    assert_eq!(kept.get(..end), Some(&expected[..]), "{host_header:?} {coding:?}");
                    // At an offset in bytes that are all 0xff, which stay after the head.
                    let mut buf = vec![0xff; 7 + expected.len() + 3];
                    let end = out.write_over(&mut buf, 7);
                    assert_eq!((&buf[..7], &buf[7..end], &buf[end..]), (&[0xff; 7][..], &expected[..], &[0xff; 3][..]));
                    // Appended to a buffer too short for it.
                    let mut short = b"old".to_vec();
                    out.write(&mut short);
                    assert_eq!((&short[..3], &short[3..]), (&b"old"[..], &expected[..]));
                }
            }
        }
    }

    /// Heads larger than the store's chunks (512 bytes): many fields, a long value,
    /// with and without `Host`.
    fn large() -> Vec<RequestHead> {
        let long = vec![b'v'; 3000];
        let many: Vec<(String, Vec<u8>)> = (0..60)
            .map(|i| (format!("x-field-{}", i % 7), format!("value {i} {}", "z".repeat(i)).into_bytes()))
            .collect();
        let many: Vec<(&str, &[u8])> = many.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
        let mut hosted = vec![("host", &b"big.example"[..]), ("cookie", &long[..])];
        hosted.extend_from_slice(&many);
        vec![head("GET", "/many", &hosted), head("GET", "/long", &[("cookie", &long[..]), ("te", b"x")])]
    }

    /// The raw head's entry (the OPEN's block kept as it is, the origin's rules applied
    /// when read) is the decoded head's, through the store's API, for the corpus and
    /// heads larger than a chunk; a store too small for a head keeps a prefix of it.
    #[test]
    fn the_inspector_files_a_raw_head_as_it_files_the_decoded_one() {
        use localtunnels_core::inspect::{Exchange, InspectConfig, Store};
        use localtunnels_core::Instant;
        let limits = DecodeLimits::default();
        for host_header in [HostHeader::Rewrite, HostHeader::Preserve] {
            let ctx = ctx(host_header);
            for coding in [FieldCoding::Text, FieldCoding::Indexed] {
                for max_bytes in [InspectConfig::default().max_bytes, 2048] {
                    let config = InspectConfig { max_bytes, ..InspectConfig::default() };
                    let (mut listed, mut raws) = (Store::new(config.clone(), 1), Store::new(config, 1));
                    let mut filed = 0;
                    // Enough heads, of every length, that many go across the store's chunks.
                    for sent in corpus().into_iter().cycle().take(100).chain(large()) {
                        let msg = Frame::Open { id: 3, head: sent, end: true }.encode_with(coding);
                        let Ok(Frame::Open { head: mut typed, .. }) = Frame::decode(msg.clone(), &limits) else {
                            panic!("the OPEN decodes")
                        };
                        let (_, raw, _) = RawRequestHead::decode_open(&msg, &limits).expect("carried whole");
                        if !takes_raw(&ctx, &raw, true) {
                            continue;
                        }
                        origin_request(&ctx, &typed.method, &mut typed.headers).expect("taken");
                        let fields = OriginFields::new(&ctx, &raw);
                        let each: Vec<_> = fields.each().collect();
                        let list: Vec<_> =
                            typed.headers.iter().map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())).collect();
                        assert_eq!(each, list, "{host_header:?} {coding:?}");
                        assert_eq!(HeadFields::field_count(&fields), list.len());
                        let (method, uri) = (&*typed.method, &*typed.target);
                        let ex = Exchange {
                            method,
                            uri: uri.as_bytes(),
                            headers: &typed.headers[..],
                            websocket: false,
                            replay_of: None,
                        };
                        listed.begin(Instant::ZERO, 0, ex);
                        let uri = raw.target();
                        raws.begin(
                            Instant::ZERO,
                            0,
                            Exchange { method, uri, headers: &fields, websocket: false, replay_of: None },
                        );
                        filed += 1;
                        if max_bytes < InspectConfig::default().max_bytes {
                            // The newest entry, a prefix of the head (the whole of it when it fitted).
                            let newest = |s: &Store| s.newest_first().next().map(|e| s.request(e));
                            let (a, b) = (newest(&listed).expect("kept"), newest(&raws).expect("kept"));
                            assert_eq!((&b.method, &b.uri), (&a.method, &a.uri));
                            assert!(typed.headers.starts_with(&b.headers), "{host_header:?} {coding:?} {}", a.uri);
                            assert!(raws.bytes() <= max_bytes);
                        }
                    }
                    assert_eq!(
                        filed, 81,
                        "ten of every thirteen heads taken raw (the cycle ends after nine), and the two large ones"
                    );
                    if max_bytes == InspectConfig::default().max_bytes {
                        let requests = |s: &Store| s.newest_first().map(|e| s.request(e)).collect::<Vec<_>>();
                        assert_eq!(requests(&raws), requests(&listed), "{host_header:?} {coding:?}");
                    }
                }
            }
        }
    }

    /// Reads one request head (to its blank line); empty at the connection's end.
    async fn read_head(tcp: &mut tokio::net::TcpStream) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            match tcp.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => return Vec::new(),
            }
        }
        head
    }

    #[tokio::test]
    async fn a_raw_request_sent_again_on_a_new_connection_is_the_same_bytes() {
        use http_body_util::BodyExt;
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, mut heads) = tokio::sync::mpsc::unbounded_channel::<(usize, Vec<u8>)>();
        // The first connection answers one request, then reads the next and closes
        // without an answer (an idle connection the origin dropped under a request).
        tokio::spawn(async move {
            let mut conns = 0;
            while let Ok((mut tcp, _)) = listener.accept().await {
                conns += 1;
                let (conn, tx) = (conns, tx.clone());
                tokio::spawn(async move {
                    for answered in 0.. {
                        let head = read_head(&mut tcp).await;
                        if head.is_empty() || tx.send((conn, head)).is_err() || (conn == 1 && answered == 1) {
                            return;
                        }
                        let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                    }
                });
            }
        });
        let ctx = Ctx::new(ClientConfig::default(), Arc::new(LocalOrigin::new("127.0.0.1", port)));
        let local = ctx.origin.as_local().expect("a local origin");
        let limits = DecodeLimits::default();
        for target in ["/first", "/again"] {
            let sent = head("GET", target, &[("x-forwarded-for", b"127.0.0.1"), ("accept", b"*/*")]);
            let msg = Frame::Open { id: 3, head: sent, end: true }.encode_with(FieldCoding::Indexed);
            let (_, raw, _) = RawRequestHead::decode_open(&msg, &limits).expect("carried whole");
            let method = Method::GET;
            let res = local.pool().send_raw(RawOutgoing::new(&ctx, &method, raw)).await;
            let res = res.expect("answered");
            assert_eq!(res.head.status(), 200);
            assert_eq!(&res.body.collect().await.expect("the body").to_bytes()[..], b"ok");
        }
        let mut got = Vec::new();
        while got.len() < 3 {
            got.push(heads.recv().await.expect("a head"));
        }
        let expected = |target: &str| {
            format!(
                "GET {target} HTTP/1.1\r\nhost: 127.0.0.1:8000\r\nx-forwarded-for: 127.0.0.1\r\naccept: */*\r\n\r\n"
            )
            .replace("8000", &port.to_string())
            .into_bytes()
        };
        assert_eq!(got, [(1, expected("/first")), (1, expected("/again")), (2, expected("/again"))]);
    }
}
