//! RESPONSE heads kept as their header block (`Session::set_response_blocks`,
//! `ResponseBlockFrame`): a block is given only where it decodes to what the typed
//! decoder gives for the same frame, and a session told to reports it for HTTP streams
//! with the same checks and state as a typed head.
// The session's tests need `raw-heads`; without it their imports go unused.
#![cfg_attr(not(feature = "raw-heads"), allow(unused_imports))]

mod util;

use bytes::{BufMut, Bytes, BytesMut};
use localtunnels_core::{
    DecodeLimits, Event, FieldCoding, Frame, Header, HeaderName, HeaderValue, ProtocolError, ResponseBlockFrame,
    ResponseHead,
};
use util::{request, Pair};

fn field(name: &str, value: &[u8]) -> Header {
    (HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_bytes(value).unwrap())
}

/// A RESPONSE of stream 2, status `status`, flags `flags`, with `count` and then the
/// raw `fields` as its block.
fn raw_response(status: u16, flags: u8, count: u16, fields: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    let [s0, s1] = status.to_be_bytes();
    b.put_slice(&[0x11, 0, 0, 0, 2, flags, s0, s1]);
    b.put_u16(count);
    b.put_slice(fields);
    b.freeze()
}

/// A text-coded field's bytes.
fn text(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&u16::try_from(name.len()).unwrap().to_be_bytes());
    b.extend_from_slice(name);
    b.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
    b.extend_from_slice(value);
    b
}

/// Heads in both codings (table names and whole fields, names outside the table,
/// repeats, empty and obs-text values, 20 fields), and raw frames the typed decoder
/// changes or refuses: an uppercase name, a name with a separator, a control byte in a
/// value (dropped), CR, LF and NUL (refused), a bad index, a cut block, bytes after
/// the block, a count past the fields, statuses out of range, stream 0.
fn corpus() -> Vec<(Bytes, bool)> {
    let lists = vec![
        vec![],
        vec![field("content-length", b"1024"), field("date", b"Sun, 06 Dec 2026 19:00:00 GMT")],
        vec![field("content-type", b"text/plain"), field("connection", b"keep-alive"), field("x-a", b"")],
        vec![field("set-cookie", b"a=1"), field("set-cookie", b"b=2"), field("x-obs", b"caf\xe9\t!")],
        vec![field("transfer-encoding", b"chunked"), field("content-type", b"text/html; charset=utf-8")],
        (0..20).map(|i| field(if i % 3 == 0 { "etag" } else { "x-many" }, format!("\"{i}\"").as_bytes())).collect(),
    ];
    let mut frames = Vec::new();
    for headers in lists {
        for coding in [FieldCoding::Text, FieldCoding::Indexed] {
            for (status, end) in [(200, false), (204, true), (101, false), (999, false)] {
                let head = ResponseHead { status, headers: headers.clone() };
                frames.push((Frame::Response { id: 2, head, end }.encode_with(coding), true));
            }
        }
    }
    let raw: Vec<Vec<u8>> = vec![
        text(b"Content-Type", b"a"),
        text(b"x a", b"1"),
        text(b"x(a", b"1"),
        text(b"x-a", b"1\x01"),
        text(b"x-a", b"1\x7f"),
        text(b"x-a", b"1\r"),
        text(b"x-a", b"\n"),
        text(b"x-a", b"\0"),
        [&[0, 0, 0xff][..]].concat(),
        [&[0, 0, 0x7f, 0, 0][..]].concat(),
        [&[0, 0, 1, 0, 1][..], b"\x01"].concat(),
        [&[0, 0, 1, 0, 1][..], b"5"].concat(),
        [&[0, 0, 0x90][..]].concat(),
    ];
    for fields in &raw {
        frames.push((raw_response(200, 0, 1, fields), false));
        frames.push((raw_response(200, 0, 2, &[&text(b"x-b", b"2")[..], fields].concat()), false));
    }
    let usual = text(b"x-b", b"2");
    frames.push((raw_response(200, 0, 1, &usual), true));
    frames.push((raw_response(200, 0, 1, &usual[..usual.len() - 1]), false));
    frames.push((raw_response(200, 0, 1, &[&usual[..], b"!"].concat()), false));
    frames.push((raw_response(200, 0, 2, &usual), false));
    frames.push((raw_response(200, 0, 0, &[]), true));
    frames.push((raw_response(99, 0, 0, &[]), false));
    frames.push((raw_response(1000, 0, 0, &[]), false));
    frames.push((Bytes::from_static(&[0x11, 0, 0, 0, 0, 0, 0, 200, 0, 0]), false));
    frames.push((Bytes::from_static(&[0x11, 0, 0, 0, 2, 0, 0]), false));
    frames.push((Bytes::from_static(&[0x12, 0, 0, 0, 2, 1, b'x']), false));
    frames
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_block_is_what_the_typed_decoder_gives_for_the_same_frame() {
    let small = DecodeLimits { max_header_bytes: 24, ..DecodeLimits::default() };
    let tiny = DecodeLimits { max_frame: 12, ..DecodeLimits::default() };
    let mut taken = 0;
    for (msg, usual) in corpus() {
        for (i, limits) in [DecodeLimits::default(), small, tiny].into_iter().enumerate() {
            let typed = Frame::decode(msg.clone(), &limits);
            let Some(block) = ResponseBlockFrame::decode(&msg, &limits) else {
                // Only an odd frame or a limit sends a frame the typed way.
                assert!(!usual || i > 0, "{msg:?} not taken: {typed:?}");
                continue;
            };
            taken += 1;
            let head = ResponseHead { status: block.status, headers: block.block.headers() };
            assert_eq!(typed, Ok(Frame::Response { id: block.id, head, end: block.end }), "{msg:?}");
            assert_eq!(block.block.len(), block.block.fields().count());
            assert!(block.block.fields().all(|(n, _)| !n.iter().any(u8::is_ascii_uppercase)));
        }
    }
    assert!(taken >= 40, "only {taken} frames taken as blocks");
}

// A session reports blocks only with `raw-heads` (the native shells').
#[cfg(feature = "raw-heads")]
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_session_told_to_reports_http_heads_as_blocks_with_the_same_checks() {
    let mut pair = Pair::connected();
    pair.server.session.set_response_blocks(true);
    let get = pair.server.get("/");
    let ws = pair.server.open_ws("/ws");
    let odd = pair.server.get("/odd");
    pair.drive();
    let head = vec![field("content-length", b"5"), field("date", b"today"), field("x-custom", b"1")];
    pair.client.respond(get, 200, head.clone(), false);
    pair.client.respond(ws, 101, vec![field("upgrade", b"websocket")], false);
    pair.drive();
    assert_eq!(pair.server.log(get).response, Some(ResponseHead { status: 200, headers: head }));
    assert_eq!(pair.server.log(get).blocks, 1, "an HTTP stream's head comes as a block");
    let ws_head = ResponseHead { status: 101, headers: vec![field("upgrade", b"websocket")] };
    assert_eq!(pair.server.log(ws).response, Some(ws_head));
    assert_eq!(pair.server.log(ws).blocks, 0, "a WebSocket's head comes as a list");
    assert!(pair.server.events.iter().any(|e| matches!(e, Event::Response { id, .. } if *id == ws)));

    // A head the typed decoder changes (an uppercase name, a dropped field) comes typed.
    let fields = [text(b"X-Upper", b"1"), text(b"x-ctl", b"\x01")].concat();
    let mut msg = raw_response(200, 0, 2, &fields).to_vec();
    msg[1..5].copy_from_slice(&odd.to_be_bytes());
    pair.inject_to_server(msg).unwrap();
    assert_eq!(
        pair.server.log(odd).response,
        Some(ResponseHead { status: 200, headers: vec![field("x-upper", b"1")] })
    );
    assert_eq!(pair.server.log(odd).blocks, 0);

    // A second head is refused as before.
    let mut again = raw_response(200, 0, 0, &[]).to_vec();
    again[1..5].copy_from_slice(&get.to_be_bytes());
    let err = pair.inject_to_server(again).unwrap_err();
    assert_eq!(err, ProtocolError::Unexpected("response head on a stream that cannot take one"));
}

// A session reports blocks only with `raw-heads` (the native shells').
#[cfg(feature = "raw-heads")]
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn blocks_arrive_in_batches_and_end_their_streams() {
    let mut pair = Pair::connected();
    pair.batched = true;
    pair.server.session.set_response_blocks(true);
    let ids: Vec<_> = (0..8).map(|i| pair.server.open(request("GET", &format!("/{i}"), vec![]), true)).collect();
    pair.drive();
    for &id in &ids {
        pair.client.respond_with(id, 200, "hello");
    }
    pair.drive();
    for &id in &ids {
        let log = pair.server.log(id);
        assert_eq!(log.blocks, 1);
        assert_eq!(log.body, b"hello");
        assert!(log.end);
    }
    assert!(pair.idle());
}
