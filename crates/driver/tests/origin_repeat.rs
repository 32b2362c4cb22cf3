//! The origin leg's last response head remembered per connection (`h1::repeat_head`):
//! a head read with a cache that remembers earlier heads answers exactly as the same
//! head read with a fresh cache (the walk, or httparse, reading every byte): the same
//! error, the same wait for more bytes, or the same status, version, block (its bytes,
//! its text length and count), `Content-Length` verdict, list and bytes left over.

use bytes::BytesMut;
use localtunnels_core::FieldCoding;
use localtunnels_driver::h1::{parse_origin_response, FieldCache, HeadError, HeadLimits, OriginHead};

#[derive(Debug, PartialEq)]
enum Read {
    Error(HeadError),
    Incomplete,
    Block { status: u16, version: http::Version, block: Vec<u8>, text_len: usize, fields: usize, length: String },
    Listed { status: u16, version: http::Version, headers: Vec<(String, Vec<u8>)> },
}

/// What `cache` (and what the head leaves after it) make of `raw`.
fn read(raw: &[u8], limits: &HeadLimits, coding: FieldCoding, cache: &mut FieldCache) -> (Read, Vec<u8>) {
    let mut buf = BytesMut::from(raw);
    let read = match parse_origin_response(&mut buf, limits, cache, coding) {
        Err(e) => Read::Error(e),
        Ok(None) => Read::Incomplete,
        Ok(Some(OriginHead::Block(r))) => Read::Block {
            status: r.status,
            version: r.version,
            block: r.block.encoded().to_vec(),
            text_len: r.block.text_len(),
            fields: r.block.len(),
            length: format!("{:?}", r.length),
        },
        Ok(Some(OriginHead::Listed(r))) => Read::Listed {
            status: r.status,
            version: r.version,
            headers: r.headers.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect(),
        },
    };
    (read, buf.to_vec())
}

/// Reads `raw` with `cache` and with a fresh cache: the same answer.
fn same(raw: &[u8], limits: &HeadLimits, coding: FieldCoding, cache: &mut FieldCache) -> Read {
    let got = read(raw, limits, coding, cache);
    let want = read(raw, limits, coding, &mut FieldCache::default());
    assert_eq!(got, want, "{:?} ({coding:?}, {} fields at most)", String::from_utf8_lossy(raw), limits.max_headers);
    got.0
}

const USUAL: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 1024\r\ndate: Mon, 07 Dec 2026 09:46:03 GMT\r\n\r\nbody";

fn heads() -> Vec<Vec<u8>> {
    let heads: &[&[u8]] = &[
        USUAL,
        b"HTTP/1.1 200 OK\r\ncontent-length: 1024\r\ndate: Mon, 07 Dec 2026 09:46:04 GMT\r\n\r\nbody",
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 9\r\n\r\nnot found",
        b"HTTP/1.0 200 OK\r\nServer: x\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 204 \r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nx-obs: caf\xc3\xa9\x80\r\nx-pad: \t a \t\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nACCESS-CONTROL-ALLOW-CREDENTIALS: true\r\nVary: Accept-Encoding\r\n\r\n",
        // The list way (a hop-by-hop field) and httparse's (a bare LF, obs-fold, bad bytes).
        b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
        b"HTTP/1.1 200 OK\r\nx: 1\r\n folded\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx: a\x01b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad name: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n",
    ];
    let mut all: Vec<Vec<u8>> = heads.iter().map(|h| h.to_vec()).collect();
    // A long value, and a head longer than the longest one remembered.
    all.push([&b"HTTP/1.1 200 OK\r\nx-long: "[..], &b"v".repeat(900), b"\r\ncontent-length: 0\r\n\r\n"].concat());
    all.push([&b"HTTP/1.1 200 OK\r\nx-long: "[..], &b"v".repeat(1100), b"\r\ncontent-length: 0\r\n\r\n"].concat());
    all
}

#[test]
fn every_head_read_again_answers_as_its_first_reading() {
    let limits = HeadLimits::default();
    // One cache across every head and coding, as a connection keeps one.
    let mut cache = FieldCache::default();
    let mut blocks = 0;
    for raw in heads() {
        for coding in [FieldCoding::Indexed, FieldCoding::Text, FieldCoding::Indexed] {
            for _ in 0..3 {
                blocks += usize::from(matches!(same(&raw, &limits, coding, &mut cache), Read::Block { .. }));
            }
        }
    }
    assert!(blocks > 60, "{blocks}");
}

#[test]
fn a_head_that_differs_from_the_last_in_one_byte_or_is_cut_is_read_anew() {
    let limits = HeadLimits::default();
    let mut cache = FieldCache::default();
    let head = &USUAL[..USUAL.len() - 4];
    for at in 0..head.len() {
        for c in [0u8, b'\t', b' ', b'\r', b'\n', b'0', b'9', b'a', b'A', b':', 0x7f, 0x80, 0xff] {
            // Remembered, then the head with the byte put over, then put in.
            same(USUAL, &limits, FieldCoding::Indexed, &mut cache);
            let mut changed = USUAL.to_vec();
            changed[at] = c;
            same(&changed, &limits, FieldCoding::Indexed, &mut cache);
            same(USUAL, &limits, FieldCoding::Indexed, &mut cache);
            changed.insert(at, c);
            changed[at + 1] = USUAL[at];
            same(&changed, &limits, FieldCoding::Indexed, &mut cache);
        }
        // Cut there, after the whole head was remembered: still waiting for more.
        same(USUAL, &limits, FieldCoding::Indexed, &mut cache);
        assert_eq!(same(&head[..at], &limits, FieldCoding::Indexed, &mut cache), Read::Incomplete);
    }
}

#[test]
fn a_head_remembered_under_one_field_limit_is_read_anew_under_another() {
    let mut cache = FieldCache::default();
    let wide = HeadLimits::default();
    let narrow = HeadLimits { max_headers: 1, ..HeadLimits::default() };
    assert!(matches!(same(USUAL, &wide, FieldCoding::Indexed, &mut cache), Read::Block { .. }));
    assert!(matches!(same(USUAL, &wide, FieldCoding::Indexed, &mut cache), Read::Block { .. }));
    // Two fields over a limit of one: httparse's error, remembered head or not.
    assert_eq!(same(USUAL, &narrow, FieldCoding::Indexed, &mut cache), Read::Error(HeadError::TooLarge));
    // A window shorter than the head: too large, as before.
    let tight = HeadLimits { max_bytes: 40, ..HeadLimits::default() };
    assert!(matches!(same(USUAL, &tight, FieldCoding::Indexed, &mut cache), Read::Error(_)));
}

#[test]
fn heads_that_keep_changing_are_read_alike_whatever_is_remembered() {
    let limits = HeadLimits::default();
    let mut cache = FieldCache::default();
    // A request id on every response, now and then the same head twice, past the
    // points where the cache stops and starts remembering again.
    for i in 0..200u32 {
        let raw = format!("HTTP/1.1 200 OK\r\nx-request-id: {}\r\ncontent-length: 0\r\n\r\n", i / 7 + i % 3);
        same(raw.as_bytes(), &limits, FieldCoding::Indexed, &mut cache);
        if i % 40 == 0 {
            same(raw.as_bytes(), &limits, FieldCoding::Indexed, &mut cache);
        }
    }
}
