//! A peer that breaks the protocol: the session closes with the matching code, and
//! nothing panics.

mod util;

use bytes::Bytes;
use localtunnels_core::{CloseCode, Config, DecodeError, DecodeLimits, Frame, ProtocolError};
use util::{request, Pair};

/// The CLOSE the victim sent, decoded.
fn close_sent_by_server(pair: &mut Pair) -> (CloseCode, String) {
    let frames: Vec<_> = std::iter::from_fn(|| pair.server.session.poll_transmit())
        .map(|m| Frame::decode(m, &DecodeLimits::default()).unwrap())
        .collect();
    match frames.last() {
        Some(Frame::Close { code, message }) => (*code, message.clone()),
        other => panic!("expected a CLOSE last, got {other:?}"),
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn sending_beyond_the_stream_window_closes_with_flow_control() {
    let mut pair = Pair::connected();
    let id = pair.client.open(request("POST", "/", vec![]), false);
    pair.drive();
    pair.server.stall(id);
    let window = pair.server.session.config().stream_window as usize;
    // A broken client ignores its credit: 60 KB frames until it is past the window.
    let mut sent = 0;
    let err = loop {
        let frame = Frame::Data { id, data: Bytes::from(vec![7u8; 60_000]), end: false }.encode();
        match pair.inject_to_server(frame) {
            Ok(()) => sent += 60_000,
            Err(e) => break e,
        }
        assert!(sent <= window, "the server took {sent} bytes on a {window} byte window");
    };
    assert_eq!(err, ProtocolError::FlowControl(id));
    assert_eq!(pair.server.log(id).max_unreleased, sent);
    assert_eq!(pair.server.closed().map(|c| c.0), Some(CloseCode::FlowControl));
    assert_eq!(close_sent_by_server(&mut pair).0, CloseCode::FlowControl);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn sending_beyond_the_session_window_closes_with_flow_control() {
    let server = Config { session_window: 100_000, ..Config::DEFAULT };
    let mut pair = Pair::connected_with(Config::DEFAULT, server);
    let a = pair.client.open(request("POST", "/a", vec![]), false);
    let b = pair.client.open(request("POST", "/b", vec![]), false);
    pair.drive();
    pair.server.stall(a);
    pair.server.stall(b);
    let data = Bytes::from(vec![1u8; 60_000]);
    pair.inject_to_server(Frame::Data { id: a, data: data.clone(), end: false }.encode()).unwrap();
    let err = pair.inject_to_server(Frame::Data { id: b, data, end: false }.encode()).unwrap_err();
    assert_eq!(err, ProtocolError::FlowControl(0));
    assert_eq!(close_sent_by_server(&mut pair).0, CloseCode::FlowControl);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn garbage_closes_with_protocol_error() {
    let garbage: &[&[u8]] = &[
        &[0x7f, 0, 0, 0, 0],                            // unknown frame type
        &[0x12, 0, 0, 0],                               // truncated stream id
        &[0x12, 0, 0, 0, 0, 0],                         // DATA on stream 0
        &[0x20, 0, 0, 0, 0, 1, 2, 3],                   // PING cut short
        &[0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 9], // PING with trailing bytes
        &[0x20, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1],    // PING on a stream
        &[0x23, 0, 0, 0, 0, 0, 0, 0, 2, 0xc3, 0x28],    // CLOSE with invalid UTF-8
        b"\x00\x01\x02 definitely not a frame",
    ];
    for msg in garbage {
        let mut pair = Pair::connected();
        let err = pair.inject_to_server(Bytes::copy_from_slice(msg)).unwrap_err();
        assert!(matches!(err, ProtocolError::Decode(_)), "{msg:?}: {err}");
        assert_eq!(pair.server.closed().map(|c| c.0), Some(CloseCode::ProtocolError), "{msg:?}");
        // The other side hears why.
        pair.drive();
        assert_eq!(pair.client.closed().map(|c| (c.0, c.2)), Some((CloseCode::ProtocolError, true)));
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn an_oversized_frame_closes_with_frame_too_large() {
    let mut pair = Pair::connected();
    let id = pair.client.open(request("POST", "/", vec![]), false);
    pair.drive();
    let max = pair.server.session.config().max_frame as usize;
    let frame = Frame::Data { id, data: Bytes::from(vec![0u8; max]), end: false }.encode();
    let err = pair.inject_to_server(frame).unwrap_err();
    assert!(matches!(err, ProtocolError::Decode(DecodeError::FrameTooLarge { .. })), "{err}");
    assert_eq!(close_sent_by_server(&mut pair).0, CloseCode::FrameTooLarge);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn stream_ids_out_of_turn_close_with_protocol_error() {
    let open = |id| Frame::Open { id, head: request("GET", "/", vec![]), end: true }.encode();
    // The client may not open an even stream.
    let mut pair = Pair::connected();
    assert_eq!(pair.inject_to_server(open(2)).unwrap_err(), ProtocolError::BadStreamId(2));
    // Ids only go up: reusing or going back is an error.
    let mut pair = Pair::connected();
    pair.inject_to_server(open(5)).unwrap();
    assert_eq!(pair.inject_to_server(open(3)).unwrap_err(), ProtocolError::BadStreamId(3));
    // Frames for a stream never opened.
    for frame in [
        Frame::Data { id: 9, data: Bytes::new(), end: true },
        Frame::Window { id: 9, increment: 10 },
        Frame::Reset { id: 4, code: localtunnels_core::ResetCode::Cancel, message: String::new() },
    ] {
        let mut pair = Pair::connected();
        let err = pair.inject_to_server(frame.encode()).unwrap_err();
        assert!(matches!(err, ProtocolError::BadStreamId(_)), "{err}");
        assert_eq!(pair.server.closed().map(|c| c.0), Some(CloseCode::ProtocolError));
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn too_many_streams_close_with_too_many_streams() {
    let server = Config { max_streams: 3, ..Config::DEFAULT };
    let mut pair = Pair::connected_with(Config::DEFAULT, server);
    for id in [1, 3, 5] {
        pair.inject_to_server(Frame::Open { id, head: request("GET", "/", vec![]), end: true }.encode()).unwrap();
    }
    let err = pair
        .inject_to_server(Frame::Open { id: 7, head: request("GET", "/", vec![]), end: true }.encode())
        .unwrap_err();
    assert_eq!(err, ProtocolError::TooManyStreams(3));
    assert_eq!(close_sent_by_server(&mut pair).0, CloseCode::TooManyStreams);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn frames_out_of_order_on_a_stream_close_the_session() {
    // Data after the end of a request.
    let mut pair = Pair::connected();
    pair.inject_to_server(Frame::Open { id: 1, head: request("POST", "/", vec![]), end: false }.encode()).unwrap();
    pair.inject_to_server(Frame::Data { id: 1, data: Bytes::from_static(b"x"), end: true }.encode()).unwrap();
    let err =
        pair.inject_to_server(Frame::Data { id: 1, data: Bytes::from_static(b"y"), end: false }.encode()).unwrap_err();
    assert!(matches!(err, ProtocolError::Unexpected(_)), "{err}");

    // A response for a stream the client opened itself, sent by the client.
    let mut pair = Pair::connected();
    pair.inject_to_server(Frame::Open { id: 1, head: request("GET", "/", vec![]), end: true }.encode()).unwrap();
    let head = localtunnels_core::ResponseHead { status: 200, headers: vec![] };
    let err = pair.inject_to_server(Frame::Response { id: 1, head, end: true }.encode()).unwrap_err();
    assert!(matches!(err, ProtocolError::Unexpected(_)), "{err}");

    // Body data on a server stream before its response head.
    let mut pair = Pair::connected();
    let id = pair.server.get("/");
    pair.drive();
    let err =
        pair.inject_to_server(Frame::Data { id, data: Bytes::from_static(b"x"), end: false }.encode()).unwrap_err();
    assert!(matches!(err, ProtocolError::Unexpected(_)), "{err}");

    // A welcome to a server.
    let mut pair = Pair::connected();
    let err = pair.inject_to_server(Frame::Welcome(Box::default()).encode()).unwrap_err();
    assert!(matches!(err, ProtocolError::Unexpected(_)), "{err}");
}
