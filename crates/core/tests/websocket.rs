//! WebSocket streams: upgrade accepted with 101 or refused with a response, messages
//! with their boundaries, fragments, close codes, flow control.

mod util;

use bytes::Bytes;
use localtunnels_core::{CloseCode, Frame, ProtocolError, StreamError, StreamKind};
use util::{header, pattern, Pair};

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn an_accepted_websocket_carries_messages_both_ways_and_closes() {
    let mut pair = Pair::connected();
    let id = pair.server.open_ws("/chat");
    pair.drive();
    let head = pair.client.log(id).head.clone().expect("the client got the upgrade");
    assert_eq!(head.kind, StreamKind::WebSocket);
    assert_eq!(head.target, "/chat");
    assert_eq!(head.headers, vec![header("sec-websocket-protocol", "chat")]);

    // The origin accepted: 101 with the chosen subprotocol.
    pair.client.respond(id, 101, vec![header("sec-websocket-protocol", "chat")], false);
    pair.drive();
    assert_eq!(pair.server.log(id).response.as_ref().map(|h| h.status), Some(101));

    pair.server.send_ws(id, false, "hello");
    pair.server.send_ws(id, true, vec![0u8, 1, 2, 255]);
    pair.server.send_ws(id, false, "");
    pair.client.send_ws(id, false, "héllo back");
    pair.drive();
    let expect_client = vec![(false, b"hello".to_vec()), (true, vec![0, 1, 2, 255]), (false, vec![])];
    assert_eq!(pair.client.log(id).messages, expect_client);
    assert_eq!(pair.server.log(id).messages, vec![(false, "héllo back".as_bytes().to_vec())]);

    // The visitor closes with 1000; the origin answers with its own close.
    pair.server.close_ws(id, 1000, "bye");
    pair.drive();
    assert_eq!(pair.client.log(id).ws_close, Some((1000, "bye".to_string())));
    assert_eq!(pair.server.session.stream_count(), 1, "the stream lives until both sides closed");
    // The client can still send after the peer's close, until it closes too.
    pair.client.send_ws(id, false, "last words");
    pair.client.close_ws(id, 1000, "bye too");
    pair.drive();
    assert_eq!(pair.server.log(id).messages.last().unwrap().1, b"last words");
    assert_eq!(pair.server.log(id).ws_close, Some((1000, "bye too".to_string())));
    assert_eq!(pair.server.session.stream_count() + pair.client.session.stream_count(), 0);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_refused_websocket_gets_the_origins_response() {
    let mut pair = Pair::connected();
    let id = pair.server.open_ws("/admin");
    pair.drive();
    // The origin said no: any status other than 101 refuses, and its body follows.
    pair.client.respond_with(id, 403, &b"forbidden"[..]);
    pair.drive();
    let log = pair.server.log(id);
    assert_eq!(log.response.as_ref().map(|h| h.status), Some(403));
    assert_eq!(log.body, b"forbidden");
    assert!(log.end);
    // No messages on a refused WebSocket.
    assert!(matches!(
        pair.server.session.send_ws(id, false, Bytes::from_static(b"hi"), true),
        Err(StreamError::InvalidState { .. })
    ));
    // The opener ends its side and the stream is gone.
    pair.server.session.finish(id).unwrap();
    pair.drive();
    assert_eq!(pair.server.session.stream_count() + pair.client.session.stream_count(), 0);
    assert!(pair.client.errors.is_empty() && pair.server.errors.is_empty());
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn messages_larger_than_a_frame_are_fragmented_with_fin_on_the_last() {
    let mut pair = Pair::connected();
    let id = pair.server.open_ws("/stream");
    pair.drive();
    pair.client.respond(id, 101, vec![], false);
    pair.drive();

    // 200 KB does not fit in one 64 KiB frame.
    pair.client.send_ws(id, true, pattern(200_000, 1));
    pair.client.send_ws(id, true, pattern(200_000, 2));
    pair.client.send_ws(id, false, "small");
    pair.drive();
    let log = pair.server.log(id);
    assert_eq!(
        log.messages,
        vec![(true, pattern(200_000, 1).to_vec()), (true, pattern(200_000, 2).to_vec()), (false, b"small".to_vec())]
    );
    assert!(log.data_events >= 8, "cut into frames: {}", log.data_events);
    let fins = pair
        .server
        .events
        .iter()
        .filter(|e| matches!(e, localtunnels_core::Event::WsMessage { fin: true, .. }))
        .count();
    assert_eq!(fins, 3, "one fin per message");

    // The application may send a message in parts itself.
    for (part, fin) in [("hel", false), ("", false), ("lo", true)] {
        assert_eq!(pair.client.session.send_ws(id, false, Bytes::from(part), fin).unwrap(), part.len());
    }
    pair.drive();
    assert_eq!(pair.server.log(id).messages.last(), Some(&(false, b"hello".to_vec())));
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn close_codes_and_reasons_travel_intact() {
    for (code, reason) in [(1000, "normal"), (1001, "going away"), (1011, ""), (4000, "application code")] {
        let mut pair = Pair::connected();
        let id = pair.server.open_ws("/");
        pair.drive();
        pair.client.respond(id, 101, vec![], false);
        pair.client.close_ws(id, code, reason);
        pair.drive();
        assert_eq!(pair.server.log(id).ws_close, Some((code, reason.to_string())));
    }

    // RFC 6455 allows 123 bytes of reason; longer ones are cut on a character boundary.
    let mut pair = Pair::connected();
    let id = pair.server.open_ws("/");
    pair.drive();
    pair.client.respond(id, 101, vec![], false);
    let long = "é".repeat(100); // 200 bytes
    pair.client.close_ws(id, 1000, &long);
    pair.drive();
    let (_, got) = pair.server.log(id).ws_close.clone().unwrap();
    assert_eq!(got, "é".repeat(61));
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_websocket_reader_that_stops_reading_holds_at_most_its_window() {
    let mut pair = Pair::connected();
    let window = pair.server.session.config().stream_window as usize;
    let id = pair.server.open_ws("/firehose");
    pair.drive();
    pair.client.respond(id, 101, vec![], false);
    pair.server.stall(id);
    // Messages worth more than a window.
    let count = window / 50_000 + 4;
    for i in 0..count {
        pair.client.send_ws(id, true, pattern(50_000, i as u8));
    }
    pair.drive();
    assert_eq!(pair.server.log(id).max_unreleased, window);
    assert_eq!(pair.client.pending_bytes(), count * 50_000 - window);
    pair.server.unstall(id);
    pair.drive();
    assert_eq!(pair.server.log(id).messages.len(), count);
    assert!(pair.server.log(id).messages.iter().enumerate().all(|(i, m)| m.1 == pattern(50_000, i as u8)));
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_websocket_reset_mid_stream() {
    let mut pair = Pair::connected();
    let id = pair.server.open_ws("/");
    pair.drive();
    pair.client.respond(id, 101, vec![], false);
    pair.client.send_ws(id, true, pattern(1 << 20, 0));
    pair.drive_until(|p| p.server.log(id).data_events > 2);
    pair.server.session.reset(id, localtunnels_core::ResetCode::Cancel, "visitor left");
    pair.drive();
    assert!(pair.client.log(id).reset.is_some());
    assert_eq!(pair.client.pending_bytes(), 0);
    assert!(pair.client.errors.is_empty() && pair.server.errors.is_empty());
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn messages_on_a_websocket_that_was_not_accepted_close_the_session() {
    let mut pair = Pair::connected();
    let id = pair.server.open_ws("/");
    pair.drive();
    // The client answers nothing yet, but a broken peer sends a message anyway.
    let msg = Frame::WsMessage { id, binary: false, fin: true, data: Bytes::from_static(b"early") }.encode();
    let err = pair.inject_to_server(msg).unwrap_err();
    assert!(matches!(err, ProtocolError::Unexpected(_)), "{err}");
    assert_eq!(pair.server.closed().map(|c| c.0), Some(CloseCode::ProtocolError));

    // Messages before acceptance are refused locally, too.
    let mut pair = Pair::connected();
    let id = pair.server.open_ws("/");
    pair.drive();
    assert!(matches!(
        pair.client.session.send_ws(id, false, Bytes::new(), true),
        Err(StreamError::InvalidState { .. })
    ));
}
