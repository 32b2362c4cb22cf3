//! The worked example of `docs/PROTOCOL.md` §12, byte for byte: if this test fails,
//! the spec or the code is wrong.
// The worked example needs the static table; without it (the wasm client's core) only
// the other frames are checked, and the example's constants and imports go unused.
#![cfg_attr(not(feature = "indexed-headers"), allow(unused_imports, dead_code))]

use bytes::Bytes;
use localtunnels_core::{
    CloseCode, Config, DecodeLimits, Event, FieldCoding, Frame, HeaderName, HeaderValue, Hello, Instant, RefuseReason,
    RequestHead, ResetCode, ResponseHead, Session, StreamKind, Welcome,
};

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace().map(|b| u8::from_str_radix(b, 16).expect("hex byte")).collect()
}

const HELLO: &str = "01 00 00 00 00 4c 54 55 4e 00 01
    01 00 04 64 65 6d 6f 02 00 06 73 65 63 72 65 74 04 00 06 6e 61 74 69 76 65 05 00 05 30 2e 31 2e 30
    06 00 14 00 01 00 40 00 00 04 00 00 10 00 00 00 80 00 00 00 00 80 00
    09 00 04 00 00 00 0b";
const WELCOME: &str = "02 00 00 00 00 00 01 01 00 04 64 65 6d 6f
    02 00 1a 68 74 74 70 3a 2f 2f 64 65 6d 6f 2e 6c 6f 63 61 6c 68 6f 73 74 3a 33 30 30 30
    04 00 04 00 00 27 10 06 00 04 00 00 4e 20
    05 00 14 00 01 00 40 00 00 04 00 00 10 00 00 00 80 00 00 00 00 80 00
    08 00 04 00 00 00 0b";
/// Both sides announced `INDEXED_HEADERS`: `host` is name 0 of the static table.
const OPEN: &str = "10 00 00 00 02 01 00 03 47 45 54 00 03 2f 68 69 00 01 00 00 00
    00 13 64 65 6d 6f 2e 6c 6f 63 61 6c 68 6f 73 74 3a 33 30 30 30";
/// `content-type: text/plain` is field 16 of the static table, `content-length` name 1.
const RESPONSE: &str = "11 00 00 00 02 00 00 c8 00 02 00 00 90 00 00 01 00 01 35";
/// The same two frames as text, for a peer that did not announce `INDEXED_HEADERS`.
const OPEN_TEXT: &str = "10 00 00 00 02 01 00 03 47 45 54 00 03 2f 68 69 00 01 00 04 68 6f 73 74
    00 13 64 65 6d 6f 2e 6c 6f 63 61 6c 68 6f 73 74 3a 33 30 30 30";
const RESPONSE_TEXT: &str = "11 00 00 00 02 00 00 c8 00 02
    00 0c 63 6f 6e 74 65 6e 74 2d 74 79 70 65 00 0a 74 65 78 74 2f 70 6c 61 69 6e
    00 0e 63 6f 6e 74 65 6e 74 2d 6c 65 6e 67 74 68 00 01 35";
const DATA: &str = "12 00 00 00 02 01 68 65 6c 6c 6f";
/// BATCH, stream 0, then each frame after its `len:u32`.
const BATCH_HEAD: &str = "30 00 00 00 00";

// The example's sessions announce and write indexed fields: a core without the table
// (the wasm client's) writes text.
#[cfg(feature = "indexed-headers")]
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn the_worked_example_is_what_the_sessions_send() {
    let now = Instant::ZERO;
    let hello = Hello {
        name: "demo".into(),
        token: "secret".into(),
        client_kind: "native".into(),
        client_version: "0.1.0".into(),
        ..Hello::default()
    };
    let mut client = Session::client(Config::DEFAULT, hello, now);
    let mut server = Session::server(Config::DEFAULT, now);

    let msg = client.poll_transmit().unwrap();
    assert_eq!(msg.to_vec(), hex(HELLO));
    assert_eq!(msg.len(), 74);
    server.handle_message(now, msg).unwrap();
    assert!(matches!(server.poll_event(), Some(Event::Hello(_))));
    let welcome = Welcome { name: "demo".into(), url: "http://demo.localhost:3000".into(), ..Welcome::default() };
    server.accept(welcome, now);
    let msg = server.poll_transmit().unwrap();
    assert_eq!(msg.to_vec(), hex(WELCOME));
    client.handle_message(now, msg).unwrap();

    let head = RequestHead {
        kind: StreamKind::Http,
        method: "GET".into(),
        target: "/hi".into(),
        headers: vec![(HeaderName::from_static("host"), HeaderValue::from_static("demo.localhost:3000"))],
    };
    let id = server.open(head, true).unwrap();
    assert_eq!(id, 2);
    let msg = server.poll_transmit().unwrap();
    assert_eq!(msg.to_vec(), hex(OPEN));
    client.handle_message(now, msg).unwrap();

    let headers = vec![
        (HeaderName::from_static("content-type"), HeaderValue::from_static("text/plain")),
        (HeaderName::from_static("content-length"), HeaderValue::from_static("5")),
    ];
    client.respond(id, ResponseHead { status: 200, headers }, false).unwrap();
    assert_eq!(client.send_data(id, Bytes::from_static(b"hello")).unwrap(), 5);
    client.finish(id).unwrap();
    // The welcome announced BATCH: the two frames go out in one message.
    assert!(client.peer_accepts_batch());
    let batch = client.poll_transmit_batch().unwrap();
    let expected = [hex(BATCH_HEAD), hex("00 00 00 13"), hex(RESPONSE), hex("00 00 00 0b"), hex(DATA)].concat();
    assert_eq!(batch.to_vec(), expected);
    assert_eq!(batch.len(), 43);
    assert_eq!(client.poll_transmit(), None);
    assert_eq!(client.stream_count(), 0);
    let frames = [RESPONSE, DATA].map(|f| Frame::decode(Bytes::from(hex(f)), &DecodeLimits::default()).unwrap());
    assert_eq!(Frame::decode(batch.clone(), &DecodeLimits::default()), Ok(Frame::Batch(frames.to_vec())));
    // Each frame is as described on its own, and the server takes the batch as both.
    server.handle_message(now, batch).unwrap();
    assert!(matches!(server.poll_event(), Some(Event::Response { id: 2, end: false, .. })));
    assert!(matches!(server.poll_event(), Some(Event::Data { id: 2, end: true, .. })));

    // The text forms are the same frames, and what a frame encodes to without the
    // peer's `INDEXED_HEADERS`.
    for (indexed, text) in [(OPEN, OPEN_TEXT), (RESPONSE, RESPONSE_TEXT)] {
        let frame = Frame::decode(Bytes::from(hex(indexed)), &DecodeLimits::default()).unwrap();
        assert_eq!(Frame::decode(Bytes::from(hex(text)), &DecodeLimits::default()).as_ref(), Ok(&frame));
        assert_eq!(frame.encode().to_vec(), hex(text));
        assert_eq!(frame.encode_with(FieldCoding::Indexed).to_vec(), hex(indexed));
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn the_other_example_frames() {
    let cases = [
        (Frame::Window { id: 2, increment: 65536 }, "17 00 00 00 02 00 01 00 00"),
        (Frame::Window { id: 0, increment: 2097152 }, "17 00 00 00 00 00 20 00 00"),
        (Frame::Ping(1), "20 00 00 00 00 00 00 00 00 00 00 00 01"),
        (Frame::Pong(1), "21 00 00 00 00 00 00 00 00 00 00 00 01"),
        (
            Frame::WsMessage { id: 4, binary: false, fin: true, data: Bytes::from_static(b"hi") },
            "14 00 00 00 04 01 68 69",
        ),
        (Frame::WsClose { id: 4, code: 1000, reason: "bye".into() }, "15 00 00 00 04 03 e8 00 03 62 79 65"),
        (
            Frame::Reset { id: 2, code: ResetCode::Cancel, message: "gone".into() },
            "16 00 00 00 02 00 00 00 04 67 6f 6e 65",
        ),
        (
            Frame::GoAway { last_id: 0, code: CloseCode::Shutdown, message: "bye".into() },
            "22 00 00 00 00 00 00 00 00 00 03 00 03 62 79 65",
        ),
        (Frame::Close { code: CloseCode::Normal, message: String::new() }, "23 00 00 00 00 00 00 00 00"),
        (
            Frame::Refuse { reason: RefuseReason::NameTaken, message: "demo is in use".into() },
            "03 00 00 00 00 00 02 00 0e 64 65 6d 6f 20 69 73 20 69 6e 20 75 73 65",
        ),
    ];
    for (frame, bytes) in cases {
        assert_eq!(frame.encode().to_vec(), hex(bytes), "{frame:?}");
        assert_eq!(Frame::decode(Bytes::from(hex(bytes)), &DecodeLimits::default()), Ok(frame));
    }
}
