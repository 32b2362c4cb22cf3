//! The origin's request head written straight from the OPEN's header block
//! ([`RawRequestHead`]), with no typed header list in between: the names as the block
//! spells them (the static table's text for an indexed one), the values copied, and
//! the client's own rules applied on the way, as [`origin_request`](crate::forward::origin_request)
//! applies them to a decoded head: the `Host` the owner chose (`--host-header`) or the
//! origin's for a request without one, the visitor's `TE` fields dropped and
//! `te: trailers` added. The bytes are the ones the decoded head gives
//! (`write_request_head` after `origin_request`); the tests below hold them to it.
//!
//! Taken only by a request the rules cannot refuse or reframe (see [`takes_raw`]): no
//! body, at most one `Host`, no `Content-Length` or `Transfer-Encoding`, no inspector.
//! The block is then never decoded into `HeaderName`s and `HeaderValue`s: after the
//! write the exchange keeps its target and what an error page needs, and lets the raw
//! head go (docs/BENCHMARKS.md, sixteenth round).

use http::{HeaderValue, Method};
use localtunnels_core::RawRequestHead;

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

    /// Appends the request head: the request line, `Host` first for a request without
    /// one, every field but `TE` in order, `te: trailers`, the blank line.
    pub(crate) fn write(&self, dst: &mut Vec<u8>) {
        dst.extend_from_slice(self.method.as_str().as_bytes());
        dst.push(b' ');
        dst.extend_from_slice(self.head.target());
        dst.extend_from_slice(b" HTTP/1.1\r\n");
        if self.head.hosts() == 0 {
            if let Some(host) = self.rewrite.or(self.default_host) {
                line(dst, b"host", host.as_bytes());
            }
        }
        for (name, value) in self.head.fields() {
            match name {
                b"te" => {}
                b"host" => line(dst, name, self.rewrite.map_or(value, HeaderValue::as_bytes)),
                _ => line(dst, name, value),
            }
        }
        dst.extend_from_slice(b"te: trailers\r\n\r\n");
    }
}

fn line(dst: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    dst.extend_from_slice(name);
    dst.extend_from_slice(b": ");
    dst.extend_from_slice(value);
    dst.extend_from_slice(b"\r\n");
}

/// Whether a request goes to the origin from its raw head: it has no body, at most one
/// `Host` (more are refused, by the decoded head's path), no framing field (a
/// `Content-Length` frames or refuses the body, a `Transfer-Encoding` is refused), the
/// origin is one this client speaks HTTP/1.1 to, and no inspector records it (its
/// entry takes the decoded head: decoding it after the write cost more than it saved
/// before, docs/BENCHMARKS.md).
pub(crate) fn takes_raw(ctx: &Ctx, head: &RawRequestHead, end: bool) -> bool {
    end && head.hosts() <= 1 && !head.has_framing() && ctx.config.inspector.is_none() && ctx.origin.as_local().is_some()
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
        assert_eq!(raw_heads, 2 * 7 * 2, "every head but the three left to the decoded path, both codings");
    }
}
