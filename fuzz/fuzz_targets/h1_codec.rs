//! The HTTP/1 codec (`localtunnels_driver::h1`) on arbitrary bytes: request and
//! response heads, their framing, and chunked bodies. The first byte sets the size of
//! the pieces the rest is fed in (as reads from a socket would cut it).
//!
//! Checks: no panic; a head or body fed in pieces reads exactly as when fed whole
//! (same head, same error, same body and trailers); a chunked body that decodes
//! re-encodes (in pieces of any size, with its trailers) to bytes that decode to the
//! same body and trailers; what a parsed head leaves in the buffer is what followed it.
//! The server's rules on what was parsed: a `Host` (or target authority) that passes
//! `Host::parse` has a normal form that parses, is already normal and names the same
//! host; a response head checked as a list (`forwardable_response_list`, which the
//! server's HTTP/1 path writes from) gives what the `HeaderMap` check gives, in its order.
//! A request or response head read with a connection's field cache
//! (`parse_request_cached`, `parse_response_cached`), cold and warm from other heads,
//! reads as without it. A response head read for the tunnel (`parse_origin_response`:
//! the usual head straight into the RESPONSE's block, by the driver's own walk or by
//! httparse) frames, keeps the connection and gives the block that the list's rules
//! and `HeaderBlock::from_headers` give (the walk's heads held to httparse's reading).

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use localtunnels_core::{FieldCoding, HeaderBlock, ResponseHead, StreamKind};
use localtunnels_driver::h1::chunked::{write_chunk, write_last_chunk};
use localtunnels_driver::h1::origin::{
    drop_overridden_length, response_body, response_body_by_length, response_keeps_alive,
};
use localtunnels_driver::h1::{
    parse_origin_response, parse_request, parse_request_cached, parse_response, parse_response_cached, request_framing,
    response_framing, BodyDecoder, ChunkError, ChunkLimits, ChunkedDecoder, Decoded, FieldCache, HeadError, HeadLimits,
    OriginHead, ParsedRequest, ParsedResponse,
};
use localtunnels_driver::http::{forwardable_response, forwardable_response_list, header_list, retain_end_to_end};
use localtunnels_server::host::Host;

/// What a parse came to, comparable across feeds.
#[derive(Debug, PartialEq)]
enum Head {
    Partial,
    Error(String),
    /// Method or status, target, headers, bytes left after the head.
    Done(String, String, Vec<(String, Vec<u8>)>, usize),
}

fn request(buf: &mut BytesMut, limits: &HeadLimits) -> Head {
    match parse_request(buf, limits) {
        Ok(None) => Head::Partial,
        Err(e) => Head::Error(e.to_string()),
        Ok(Some(h)) => {
            // Framing decisions never panic, whatever the fields.
            if let Ok(f) = request_framing(h.version, &h.method, &h.headers) {
                let _ = BodyDecoder::new(f.body, ChunkLimits::default()).decode(&mut buf.clone());
            }
            for (_, value) in h.headers.iter().filter(|(n, _)| n == http::header::HOST) {
                if let Ok(raw) = value.to_str() {
                    host_rules(raw);
                }
            }
            if let Some(authority) = h.authority() {
                host_rules(authority.as_str());
            }
            let fields = h.headers.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect();
            assert!(h.raw.len() <= limits.max_bytes);
            Head::Done(h.method.to_string(), h.uri().to_string(), fields, buf.len())
        }
    }
}

fn response(buf: &mut BytesMut, limits: &HeadLimits) -> Head {
    match parse_response(buf, limits) {
        Ok(None) => Head::Partial,
        Err(e) => Head::Error(e.to_string()),
        Ok(Some(h)) => {
            for method in [http::Method::GET, http::Method::HEAD, http::Method::CONNECT] {
                let _ = response_framing(&method, h.status, &h.headers);
            }
            for kind in [StreamKind::Http, StreamKind::WebSocket] {
                let head = ResponseHead { status: h.status, headers: h.headers.clone() };
                let via_map = forwardable_response(&head, kind).map(|(s, m)| (s, header_list(m)));
                assert_eq!(forwardable_response_list(head, kind), via_map);
            }
            let fields = h.headers.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect();
            Head::Done(h.status.to_string(), String::new(), fields, buf.len())
        }
    }
}

/// What a response parse gave, comparable.
type Summary = Result<Option<(u16, http::Version, Vec<(String, Vec<u8>)>, usize)>, HeadError>;

fn summary(parsed: Result<Option<ParsedResponse>, HeadError>, left: &BytesMut) -> Summary {
    parsed.map(|h| {
        h.map(|h| {
            let fields = h.headers.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect();
            (h.status, h.version, fields, left.len())
        })
    })
}

/// A response head, and a request head, read with a connection's field cache, cold and
/// then warm from the head before (the input itself, its second half), reads as without
/// the cache.
fn cached_as_plain(input: &[u8]) {
    let limits = HeadLimits { max_bytes: 2048, max_headers: 16 };
    let mut cache = FieldCache::default();
    let half = &input[input.len() / 2..];
    for head in [input, input, half, input] {
        let mut plain = BytesMut::from(head);
        let plain = summary(parse_response(&mut plain, &limits), &plain);
        let mut cached = BytesMut::from(head);
        let cached = summary(parse_response_cached(&mut cached, &limits, &mut cache), &cached);
        assert_eq!(plain, cached, "a response head read with the field cache differs");
    }
    let mut cache = FieldCache::default();
    for head in [input, input, half, input] {
        let mut plain = BytesMut::from(head);
        let plain = request_summary(parse_request(&mut plain, &limits), &plain);
        let mut cached = BytesMut::from(head);
        let cached = request_summary(parse_request_cached(&mut cached, &limits, &mut cache), &cached);
        assert_eq!(plain, cached, "a request head read with the field cache differs");
    }
}

/// What the framing rules made of a response head: the error, or the body's framing,
/// the connection's fate and the tunnel's block.
type Framed = Result<Option<(u16, String, bool, Vec<u8>, usize)>, String>;

/// `input` read by `parse_origin_response` answers as `parse_response` and the list's
/// rules (`drop_overridden_length`, `retain_end_to_end`) do.
fn origin_block_as_list(input: &[u8]) {
    let limits = HeadLimits { max_bytes: 2048, max_headers: 16 };
    let mut cache = FieldCache::default();
    for method in [http::Method::GET, http::Method::HEAD] {
        let listed = |r: ParsedResponse, left: usize| -> Framed {
            let mut headers = r.headers;
            let length = response_body(r.version, &method, r.status, &headers).map_err(|e| e.to_string())?;
            drop_overridden_length(&mut headers);
            let keep = response_keeps_alive(r.version, &headers);
            retain_end_to_end(&mut headers, StreamKind::Http);
            let block = HeaderBlock::from_headers(&headers, FieldCoding::Indexed).encoded().to_vec();
            Ok(Some((r.status, format!("{length:?}"), keep, block, left)))
        };
        let mut buf = BytesMut::from(input);
        let want = match parse_response(&mut buf, &limits) {
            Err(e) => Err(e.to_string()),
            Ok(None) => Ok(None),
            Ok(Some(r)) => listed(r, buf.len()),
        };
        let mut buf = BytesMut::from(input);
        let got = match parse_origin_response(&mut buf, &limits, &mut cache, FieldCoding::Indexed) {
            Err(e) => Err(e.to_string()),
            Ok(None) => Ok(None),
            Ok(Some(OriginHead::Listed(r))) => listed(r, buf.len()),
            Ok(Some(OriginHead::Block(r))) => {
                response_body_by_length(&method, r.status, r.length).map_err(|e| e.to_string()).map(|length| {
                    let keep = r.version == http::Version::HTTP_11;
                    Some((r.status, format!("{length:?}"), keep, r.block.encoded().to_vec(), buf.len()))
                })
            }
        };
        assert_eq!(want, got, "a response head read into a block differs from the list's way");
    }
}

/// What a request parse gave, comparable: method, target, version, fields, bytes left.
type RequestSummary = Result<Option<(String, String, http::Version, Vec<(String, Vec<u8>)>, usize)>, HeadError>;

fn request_summary(parsed: Result<Option<ParsedRequest>, HeadError>, left: &BytesMut) -> RequestSummary {
    parsed.map(|h| {
        h.map(|h| {
            let fields = h.headers.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect();
            (h.method.to_string(), h.uri().to_string(), h.version, fields, left.len())
        })
    })
}

/// A host the server accepts has a normal form that is a host, already normal, the same.
fn host_rules(raw: &str) {
    let Ok(host) = Host::parse(raw) else { return };
    for port in [80, 443] {
        let normal = host.normalized(port).unwrap_or_else(|| raw.to_string());
        let again = Host::parse(&normal).expect("a normal form parses");
        assert_eq!(again.normalized(port), None, "{raw:?} -> {normal:?} is not normal");
        assert!(again.same_as(&host, port), "{raw:?} -> {normal:?} names another host");
    }
}

/// Parses `input` whole, then fed `step` bytes at a time: the same verdict.
fn same_in_pieces(input: &[u8], step: usize, parse: fn(&mut BytesMut, &HeadLimits) -> Head) {
    let limits = HeadLimits { max_bytes: 2048, max_headers: 16 };
    let whole = parse(&mut BytesMut::from(input), &limits);
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let pieces = loop {
        let end = (fed + step).min(input.len());
        buf.extend_from_slice(&input[fed..end]);
        fed = end;
        match parse(&mut buf, &limits) {
            Head::Partial if fed < input.len() => continue,
            Head::Done(a, b, c, left) => break Head::Done(a, b, c, left + input.len() - fed),
            verdict => break verdict,
        }
    };
    assert_eq!(whole, pieces, "a head read in pieces of {step} differs");
}

/// The body, trailers and outcome of a chunked body fed `step` bytes at a time.
fn chunked(
    input: &[u8],
    step: usize,
    limits: ChunkLimits,
) -> (Vec<u8>, Vec<(String, Vec<u8>)>, Result<bool, ChunkError>) {
    let mut d = ChunkedDecoder::new(limits);
    let (mut buf, mut body, mut trailers) = (BytesMut::new(), Vec::new(), Vec::new());
    for piece in input.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(Decoded::Data(data))) => body.extend_from_slice(&data),
                Ok(Some(Decoded::Trailers(t))) => {
                    trailers = t.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect()
                }
                Ok(Some(Decoded::End)) => {}
                Ok(None) => break,
                Err(e) => return (body, trailers, Err(e)),
            }
        }
        if d.is_done() {
            break;
        }
    }
    (body, trailers, Ok(d.is_done()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else { return };
    let step = usize::from(split % 64) + 1;
    same_in_pieces(input, step, request);
    same_in_pieces(input, step, response);
    cached_as_plain(input);
    origin_block_as_list(input);

    let limits = ChunkLimits { max_trailer_bytes: 1024, max_trailers: 8 };
    let whole = chunked(input, input.len().max(1), limits);
    let pieces = chunked(input, step, limits);
    assert_eq!(whole, pieces, "a chunked body read in pieces of {step} differs");
    if let (body, trailers, Ok(true)) = whole {
        let mut wire = BytesMut::new();
        for part in body.chunks(step) {
            write_chunk(&mut wire, part);
        }
        let fields: Vec<_> = trailers
            .iter()
            .map(|(n, v)| {
                (n.parse().expect("a parsed name"), http::HeaderValue::from_bytes(v).expect("a parsed value"))
            })
            .collect();
        write_last_chunk(&mut wire, &fields);
        // Written trailers may take more bytes than they arrived in (`a:b` becomes `a: b`):
        // the re-read's trailer limit is the wire's length.
        let again = chunked(&wire, step, ChunkLimits { max_trailer_bytes: wire.len(), max_trailers: 8 });
        assert_eq!(again, (body, trailers, Ok(true)), "a re-encoded chunked body decodes differently");
    }
});
