//! The block way against the list way: the same RESPONSE frames, decoded as blocks
//! where the core gives them and typed as before, must give the visitor the same bytes
//! and framing, or the same error.

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use localtunnels_core::{DecodeLimits, FieldCoding, Frame, ResponseBlockFrame};

use super::*;

fn field(name: &str, value: &str) -> Header {
    (HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap())
}

/// What the visitor gets for a head.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    /// The head's bytes, its status, how its body follows.
    Head(Vec<u8>, StatusCode, Written),
    /// Not forwardable: the server answers instead.
    Bad(BadResponse),
    /// Not writable: the connection closes.
    BadHead,
}

/// The head through [`checked_head`] and, when not written by it, [`write_listed`];
/// and whether the block way wrote it.
fn through(reply: Reply, status: u16, fields: TunnelFields, end: bool) -> (Got, bool) {
    let mut out = BytesMut::new();
    match checked_head(&mut out, reply, status, fields, end, "t", "example.test") {
        Err(e) => (Got::Bad(e), false),
        Ok((status, StreamHead::Written(w))) => (Got::Head(out.to_vec(), status, w), true),
        Ok((status, StreamHead::Listed { headers, shape })) => {
            match write_listed(&mut out, reply, status, headers, shape, end) {
                Ok(w) => (Got::Head(out.to_vec(), status, w), false),
                Err(BadHead) => (Got::BadHead, false),
            }
        }
    }
}

/// The list way: the frame decoded typed, as a server without blocks decodes it.
fn listed(msg: &Bytes, reply: Reply) -> Option<Got> {
    match Frame::decode(msg.clone(), &DecodeLimits::default()) {
        Ok(Frame::Response { head, end, .. }) => {
            Some(through(reply, head.status, TunnelFields::List(head.headers), end).0)
        }
        _ => None,
    }
}

/// Heads the block way takes, and heads with every field and shape the rules act on.
fn heads() -> Vec<Vec<Header>> {
    let usual = vec![field("content-type", "text/plain"), field("content-length", "1024")];
    let mut heads = vec![
        vec![],
        usual.clone(),
        vec![field("date", "Sun, 06 Dec 2026 14:00:00 GMT"), field("content-length", "5")],
        vec![field("content-length", "0")],
        vec![field("content-length", "05"), field("server", "x")],
        vec![field("content-length", "")],
        vec![field("content-length", "5 ")],
        vec![field("content-length", "12345678901234567890")],
        vec![field("content-length", "9999999999999999999")],
        vec![field("content-length", "5"), field("content-length", "5")],
        vec![field("content-length", "5"), field("content-length", "6")],
        vec![field("x-a", "1"), field("x-b", "2"), field("x-a", "3"), field("content-length", "1")],
        vec![field("x-a", "1"), field("x-a", "3"), field("x-b", "2"), field("content-length", "1")],
        vec![field("x-a", "1"), field("content-length", "1"), field("x-b", "2"), field("x-b", "3"), field("x-a", "4")],
        vec![field("trailer", "x-t"), field("content-length", "1")],
        vec![field("trailer", "x-t"), field("transfer-encoding", "chunked")],
        vec![field("transfer-encoding", "chunked")],
        vec![field("transfer-encoding", "gzip"), field("content-length", "3")],
        vec![field("set-cookie", "a=1; Domain=example.test"), field("content-length", "1")],
        vec![field("set-cookie", "a=1; Domain=t.example.test; Path=/"), field("content-length", "1")],
        (0..17).map(|i| field(&format!("x-{i}"), "v")).chain([field("content-length", "2")]).collect(),
        (0..15).map(|i| field(&format!("x-{i}"), "v")).chain([field("content-length", "2")]).collect(),
        vec![field("x-obs", "caf\u{e9}"), field("content-length", "2")],
    ];
    for special in [
        ("connection", "close"),
        ("connection", "keep-alive"),
        ("connection", "x-a"),
        ("keep-alive", "timeout=5"),
        ("te", "trailers"),
        ("upgrade", "h2c"),
        ("proxy-connection", "close"),
        ("proxy-authenticate", "Basic"),
        ("proxy-authorization", "Basic x"),
        ("x-a", "1"),
        ("date", "today"),
    ] {
        heads.push([usual.clone(), vec![field(special.0, special.1)]].concat());
        heads.push([vec![field(special.0, special.1)], usual.clone()].concat());
    }
    heads
}

/// A RESPONSE of stream 2 with the raw text-coded `fields` (`count` of them).
fn raw_response(status: u16, count: u16, fields: &[(&[u8], &[u8])]) -> Bytes {
    let mut b = vec![0x11, 0, 0, 0, 2, 0];
    b.extend_from_slice(&status.to_be_bytes());
    b.extend_from_slice(&count.to_be_bytes());
    for (name, value) in fields {
        for part in [name, value] {
            b.extend_from_slice(&u16::try_from(part.len()).unwrap().to_be_bytes());
            b.extend_from_slice(part);
        }
    }
    Bytes::from(b)
}

fn frames() -> Vec<Bytes> {
    let mut frames = Vec::new();
    for headers in heads() {
        for status in [200, 404, 204, 304, 101, 103, 600, 999] {
            for end in [false, true] {
                for coding in [FieldCoding::Text, FieldCoding::Indexed] {
                    let head = ResponseHead { status, headers: headers.clone() };
                    frames.push(Frame::Response { id: 2, head, end }.encode_with(coding));
                }
            }
        }
    }
    let length: (&[u8], &[u8]) = (b"content-length", b"3");
    for odd in [
        (&b"Content-Length"[..], &b"3"[..]),
        (b"X-Upper", b"1"),
        (b"x-ctl", b"a\x01"),
        (b"x sp", b"1"),
        (b"Connection", b"close"),
        (b"SET-COOKIE", b"a=1"),
        (b"x-cr", b"\r"),
    ] {
        frames.push(raw_response(200, 2, &[odd, length]));
        frames.push(raw_response(200, 2, &[length, odd]));
    }
    frames.push(raw_response(200, 1, &[length, length]));
    frames
}

#[test]
fn the_block_way_gives_the_visitor_what_the_list_way_gives() {
    let replies = [
        Reply { version: Version::HTTP_11, head: false, keep_alive: true },
        Reply { version: Version::HTTP_11, head: true, keep_alive: true },
        Reply { version: Version::HTTP_11, head: false, keep_alive: false },
        Reply { version: Version::HTTP_10, head: false, keep_alive: true },
        Reply { version: Version::HTTP_10, head: false, keep_alive: false },
    ];
    let mut by_block = 0;
    let mut cases = 0;
    for msg in frames() {
        for reply in replies {
            let before = listed(&msg, reply);
            let Some(frame) = ResponseBlockFrame::decode(&msg, &DecodeLimits::default()) else {
                continue;
            };
            cases += 1;
            let (got, written) = through(reply, frame.status, TunnelFields::Block(frame.block), frame.end);
            by_block += usize::from(written);
            // The `date` a head without one gets is the second's: compare with the list
            // way before and after, one of which is in the same second.
            let after = listed(&msg, reply);
            assert!(Some(&got) == before.as_ref() || Some(&got) == after.as_ref(), "{msg:?} {reply:?}: {got:?}");
        }
    }
    assert!(cases > 2000 && by_block >= 40, "{cases} heads, {by_block} written the block way");
}

#[test]
fn only_the_usual_head_answering_the_usual_request_is_written_the_block_way() {
    let usual = Reply { version: Version::HTTP_11, head: false, keep_alive: true };
    let block = |fields: &[(&[u8], &[u8])], status: u16| {
        let msg = raw_response(status, u16::try_from(fields.len()).unwrap(), fields);
        ResponseBlockFrame::decode(&msg, &DecodeLimits::default()).unwrap().block
    };
    let length: (&[u8], &[u8]) = (b"content-length", b"11");
    let mut out = BytesMut::new();
    let (status, written) =
        write_block_head(&mut out, usual, 200, &block(&[(b"date", b"d"), length], 200), false).unwrap();
    assert_eq!((status, written), (StatusCode::OK, Written { encoder: Encoder::Length(11), last: false }));
    assert_eq!(&out[..], b"HTTP/1.1 200 OK\r\ndate: d\r\ncontent-length: 11\r\n\r\n");
    for (reply, fields, status, end) in [
        (Reply { head: true, ..usual }, &[length][..], 200, false),
        (Reply { keep_alive: false, ..usual }, &[length], 200, false),
        (Reply { version: Version::HTTP_10, ..usual }, &[length], 200, false),
        (usual, &[length], 200, true),
        (usual, &[length], 204, false),
        (usual, &[length], 304, false),
        (usual, &[length], 103, false),
        (usual, &[length], 600, false),
        (usual, &[], 200, false),
        (usual, &[length, (b"connection", b"keep-alive")], 200, false),
        (usual, &[(b"x-a", b"1"), length, (b"x-a", b"2")], 200, false),
    ] {
        let mut out = BytesMut::from(&b"before"[..]);
        let fields = block(fields, status);
        assert_eq!(write_block_head(&mut out, reply, status, &fields, end), None, "{reply:?} {status} {end}");
        assert_eq!(&out[..], b"before", "the buffer is left as it was");
    }
}
