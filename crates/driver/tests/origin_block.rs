//! The origin leg's response head written straight into the RESPONSE's block
//! (`h1::parse_origin_response`) against the general way (`parse_response`, then the
//! framing rules, `drop_overridden_length` and `retain_end_to_end` on the list, then
//! the block written from the list): over a corpus of heads (the usual ones, every
//! field that sends a head the general way, odd cases, malformed ones), both give the
//! same answer: the error, or the same status, body framing, connection fate and the
//! same block bytes.

use bytes::BytesMut;
use http::Method;
use localtunnels_core::{FieldCoding, HeaderBlock, StreamKind};
use localtunnels_driver::h1::origin::{
    drop_overridden_length, response_body, response_body_by_length, response_keeps_alive, ResponseFramingError,
};
use localtunnels_driver::h1::{
    parse_origin_response, parse_response, BodyLength, FieldCache, HeadError, HeadLimits, OriginHead,
};
use localtunnels_driver::http::retain_end_to_end;

#[derive(Debug, PartialEq)]
enum Outcome {
    Head(HeadError),
    Framing(ResponseFramingError),
    Incomplete,
    Ok { status: u16, length: BodyLength, keep_alive: bool, block: Vec<u8>, rest: Vec<u8>, lean: bool },
}

fn general(raw: &[u8], method: &Method, coding: FieldCoding) -> Outcome {
    let mut buf = BytesMut::from(raw);
    let head = match parse_response(&mut buf, &HeadLimits::default()) {
        Err(e) => return Outcome::Head(e),
        Ok(None) => return Outcome::Incomplete,
        Ok(Some(h)) => h,
    };
    let mut headers = head.headers;
    let length = match response_body(head.version, method, head.status, &headers) {
        Ok(l) => l,
        Err(e) => return Outcome::Framing(e),
    };
    drop_overridden_length(&mut headers);
    let keep_alive = response_keeps_alive(head.version, &headers);
    retain_end_to_end(&mut headers, StreamKind::Http);
    let block = HeaderBlock::from_headers(&headers, coding).encoded().to_vec();
    Outcome::Ok { status: head.status, length, keep_alive, block, rest: buf.to_vec(), lean: false }
}

fn lean(raw: &[u8], method: &Method, coding: FieldCoding, cache: &mut FieldCache) -> Outcome {
    let mut buf = BytesMut::from(raw);
    let head = match parse_origin_response(&mut buf, &HeadLimits::default(), cache, coding) {
        Err(e) => return Outcome::Head(e),
        Ok(None) => return Outcome::Incomplete,
        Ok(Some(h)) => h,
    };
    let rest = buf.to_vec();
    match head {
        OriginHead::Block(r) => match response_body_by_length(method, r.status, r.length) {
            Err(e) => Outcome::Framing(e),
            Ok(length) => Outcome::Ok {
                status: r.status,
                length,
                keep_alive: r.version == http::Version::HTTP_11,
                block: r.block.encoded().to_vec(),
                rest,
                lean: true,
            },
        },
        OriginHead::Listed(r) => {
            let mut headers = r.headers;
            let length = match response_body(r.version, method, r.status, &headers) {
                Ok(l) => l,
                Err(e) => return Outcome::Framing(e),
            };
            drop_overridden_length(&mut headers);
            let keep_alive = response_keeps_alive(r.version, &headers);
            retain_end_to_end(&mut headers, StreamKind::Http);
            let block = HeaderBlock::from_headers(&headers, coding).encoded().to_vec();
            Outcome::Ok { status: r.status, length, keep_alive, block, rest, lean: false }
        }
    }
}

fn corpus() -> Vec<Vec<u8>> {
    let heads: &[&str] = &[
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1024\r\ndate: Sun, 06 Dec 2026 19:00:00 GMT\r\n\r\nbody",
        "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 5\r\nConnection: keep-alive\r\nETag: \"x\"\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5,6\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n",
        "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nConnection: x-drop\r\nX-Drop: 1\r\nx-keep: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nProxy-Connection: x\r\nTE: trailers\r\nUpgrade: h2c\r\n\r\n",
        "HTTP/1.1 200 OK\r\nProxy-Authenticate: Basic\r\nProxy-Authorization: x\r\nTrailer: x-t\r\n\r\n",
        "HTTP/1.1 200 OK\r\nCONTENT-LENGTH: 3\r\ncOnNeCtIoN: CLOSE\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTRANSFER-ENCODING: CHUNKED\r\nUpGrade: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent_length: 3\r\ncontent-lengtH: 4\r\nx-connection: close\r\n\r\n",
        "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n",
        "HTTP/1.1 200 OK\r\n\r\n",
        "HTTP/1.1 404 Not Found\r\nX-Obs: caf\u{e9}\r\nX-Empty:\r\nX-Tab: a\tb\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nx-a: 1\r\nContent-Length: 2\r\n\r\nhi",
        "HTTP/1.1 200 OK\r\nbad name: 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nx-ctl: a\x01b\r\n\r\n",
        "HTTP/1.1 200 OK\r\nx-del: a\x7fb\r\n\r\n",
        "HTTP/1.1 200 OK\r\nx-lf: a\nb: c\r\n\r\n",
        "HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    ];
    let mut all: Vec<Vec<u8>> = heads.iter().map(|h| h.as_bytes().to_vec()).collect();
    // More fields than a plan keeps, names with every case.
    let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..40 {
        many.extend_from_slice(format!("X-Field-{i}: value {i}\r\nVARY: Accept\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    all.push(many);
    // Over httparse's field limit.
    let mut too_many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..101 {
        too_many.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
    }
    too_many.extend_from_slice(b"\r\n");
    all.push(too_many);
    all
}

#[test]
fn the_block_way_answers_as_the_list_way_over_the_corpus() {
    let methods = [Method::GET, Method::HEAD, Method::CONNECT, Method::POST];
    let mut leans = 0;
    for coding in [FieldCoding::Indexed, FieldCoding::Text] {
        // One cache across the corpus, as a connection keeps one across its responses.
        let mut cache = FieldCache::default();
        for raw in corpus() {
            for method in &methods {
                let want = general(&raw, method, coding);
                let mut got = lean(&raw, method, coding, &mut cache);
                if let Outcome::Ok { lean, .. } = &mut got {
                    leans += usize::from(*lean);
                    *lean = false;
                }
                let same = want == got;
                assert!(same, "{method} {:?}\n want {want:?}\n  got {got:?}", String::from_utf8_lossy(&raw));
            }
        }
    }
    assert!(leans > 20, "the usual heads take the block way ({leans})");
}

#[test]
fn a_head_cut_anywhere_waits_for_more_either_way() {
    // The usual head (the block way) and one with a hop-by-hop field (the list way).
    let usual = &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nhi"[..];
    let listed = &b"HTTP/1.1 200 OK\r\nServer: x\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi"[..];
    let mut cache = FieldCache::default();
    for raw in [usual, listed] {
        for cut in 0..raw.len() - 2 {
            let part = &raw[..cut];
            assert_eq!(lean(part, &Method::GET, FieldCoding::Indexed, &mut cache), Outcome::Incomplete, "cut {cut}");
            assert_eq!(general(part, &Method::GET, FieldCoding::Indexed), Outcome::Incomplete, "cut {cut}");
        }
        let mut whole = lean(raw, &Method::GET, FieldCoding::Indexed, &mut cache);
        if let Outcome::Ok { lean, .. } = &mut whole {
            *lean = false;
        }
        assert_eq!(whole, general(raw, &Method::GET, FieldCoding::Indexed));
    }
}

#[test]
fn every_byte_in_a_name_or_a_value_is_taken_or_refused_alike() {
    // What httparse lets through, the block takes unchecked (`push_parsed`): it must be
    // what the list's `HeaderName`/`HeaderValue` take.
    let mut cache = FieldCache::default();
    for b in 0..=255u8 {
        let mut name = b"HTTP/1.1 200 OK\r\nx".to_vec();
        name.extend_from_slice(&[b, b'y']);
        name.extend_from_slice(b": v\r\ncontent-length: 0\r\n\r\n");
        let mut value = b"HTTP/1.1 200 OK\r\nx: a".to_vec();
        value.extend_from_slice(&[b, b'b']);
        value.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
        for raw in [name, value] {
            let want = general(&raw, &Method::GET, FieldCoding::Indexed);
            let mut got = lean(&raw, &Method::GET, FieldCoding::Indexed, &mut cache);
            if let Outcome::Ok { lean, .. } = &mut got {
                *lean = false;
            }
            assert_eq!(want, got, "byte {b:#x} in {:?}", String::from_utf8_lossy(&raw));
        }
    }
}

/// The static header table's names (`docs/PROTOCOL.md` §2), in wire order, and the
/// values it holds whole for some of them.
const TABLE_NAMES: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "date",
    "user-agent",
    "accept",
    "accept-encoding",
    "accept-language",
    "connection",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "cache-control",
    "cookie",
    "set-cookie",
    "etag",
    "last-modified",
    "server",
    "location",
    "referer",
    "origin",
    "authorization",
    "content-encoding",
    "transfer-encoding",
    "vary",
    "accept-ranges",
    "if-modified-since",
    "if-none-match",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "keep-alive",
    "te",
    "trailer",
    "expires",
    "pragma",
    "age",
    "allow",
    "content-disposition",
    "content-language",
    "content-location",
    "content-range",
    "range",
    "if-match",
    "if-range",
    "if-unmodified-since",
    "expect",
    "from",
    "link",
    "max-forwards",
    "proxy-authenticate",
    "proxy-authorization",
    "retry-after",
    "refresh",
    "strict-transport-security",
    "via",
    "www-authenticate",
    "accept-charset",
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-headers",
    "access-control-allow-methods",
    "access-control-expose-headers",
    "access-control-max-age",
    "access-control-request-headers",
    "access-control-request-method",
    "content-security-policy",
    "x-content-type-options",
    "x-frame-options",
    "x-xss-protection",
    "x-requested-with",
    "x-real-ip",
    "forwarded",
    "dnt",
    "upgrade-insecure-requests",
    "sec-fetch-dest",
    "sec-fetch-mode",
    "sec-fetch-site",
    "sec-fetch-user",
    "sec-ch-ua",
    "sec-ch-ua-mobile",
    "sec-ch-ua-platform",
    "priority",
    "referrer-policy",
    "alt-svc",
];
const TABLE_VALUES: &[&str] = &[
    "http",
    "https",
    "keep-alive",
    "close",
    "upgrade",
    "Upgrade",
    "websocket",
    "13",
    "*/*",
    "gzip, deflate, br, zstd",
    "gzip, deflate",
    "gzip",
    "bytes",
    "text/html",
    "text/html; charset=utf-8",
    "text/plain; charset=utf-8",
    "application/json",
    "no-cache",
    "max-age=0",
    "chunked",
    "Accept-Encoding",
    "br",
    "nosniff",
    "0",
    "1",
    "?1",
    "?0",
    "document",
    "empty",
    "navigate",
    "cors",
    "none",
    "same-origin",
    "cross-site",
];

#[test]
fn every_table_name_in_any_case_with_any_value_writes_the_list_ways_bytes() {
    // Each name of the static table lowercase, uppercase and mixed, near misses of it
    // (one byte more, one less), with every value the table holds whole (under its own
    // name and under every other), values outside the table, and blanks around them:
    // the block way writes the bytes the list way writes, in both codings.
    let mut cache = FieldCache::default();
    let mut heads = 0;
    for name in TABLE_NAMES {
        let mixed: String =
            name.chars().enumerate().map(|(i, c)| if i % 2 == 0 { c.to_ascii_uppercase() } else { c }).collect();
        let names = [name.to_string(), name.to_ascii_uppercase(), mixed, format!("{name}s"), name[1..].to_string()];
        for n in names.iter().filter(|n| !n.is_empty()) {
            let values = TABLE_VALUES.iter().copied().chain(["", "x", "gzip ", "0 ", "text/html;", "GZIP"]);
            for value in values {
                for pad in ["", " ", "\t \t"] {
                    let raw = format!("HTTP/1.1 200 OK\r\n{n}:{pad}{value}{pad}\r\nx-after: 1\r\n\r\n");
                    for coding in [FieldCoding::Indexed, FieldCoding::Text] {
                        let want = general(raw.as_bytes(), &Method::GET, coding);
                        let mut got = lean(raw.as_bytes(), &Method::GET, coding, &mut cache);
                        if let Outcome::Ok { lean, .. } = &mut got {
                            *lean = false;
                        }
                        assert_eq!(want, got, "{coding:?} {raw:?}");
                        heads += 1;
                    }
                }
            }
        }
    }
    assert!(heads > 50_000, "{heads}");
}

/// A connection's repeated heads get their blocks copied into memory the connection
/// keeps (`repeat_head`'s room): responses back to back on one connection, two heads
/// that differ in a value, each read several times in a row, some of the blocks held
/// while the next heads are read (a frame not sent yet) and some dropped at once (the
/// memory taken back): every block is the general way's, byte for byte, when it is read
/// and still after all the others were.
#[test]
fn repeated_heads_back_to_back_keep_each_block_their_own() {
    let a = &b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nx-a: first\r\n\r\nhi"[..];
    let b = &b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 2\r\nx-a: second one\r\n\r\nhi"[..];
    for coding in [FieldCoding::Indexed, FieldCoding::Text] {
        let mut cache = FieldCache::default();
        let mut held = Vec::new();
        for (i, raw) in [a, a, a, b, b, b, a, a, b, b, a, a, a].into_iter().enumerate() {
            let want = general(raw, &Method::GET, coding);
            let Outcome::Ok { block: want, .. } = want else { panic!("{want:?}") };
            let mut buf = BytesMut::from(raw);
            let head = parse_origin_response(&mut buf, &HeadLimits::default(), &mut cache, coding).unwrap().unwrap();
            let OriginHead::Block(r) = head else { panic!("the usual head takes the block way") };
            assert_eq!(r.block.encoded(), &want[..], "{i} {coding:?}");
            assert_eq!(r.block.len(), 3);
            assert_eq!(&buf[..], b"hi");
            if i % 3 != 2 {
                held.push((r.block, want));
            }
        }
        for (i, (block, want)) in held.iter().enumerate() {
            assert_eq!(block.encoded(), &want[..], "held {i} {coding:?}");
        }
    }
}
