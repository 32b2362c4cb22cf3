//! HTTP streams: heads, bodies, trailers, resets, flow control and fairness.

mod util;

use std::time::Duration;

use bytes::Bytes;
use localtunnels_core::{
    Config, DecodeLimits, Event, Frame, HeaderName, HeaderValue, OpenError, ResetCode, ResponseHead, StreamError,
    StreamKind,
};
use util::{header, pattern, request, Pair};

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_visitor_get_travels_to_the_origin_and_back() {
    let mut pair = Pair::connected();
    // A visitor asks the server; the server opens a stream to the client.
    let id = pair.server.open(request("GET", "/hello?x=1", vec![header("host", "demo.localhost:3000")]), true);
    assert_eq!(id, 2, "the server opens even streams");
    pair.drive();

    // The client sees the request as sent, and answers from its origin.
    let head = pair.client.log(id).head.clone().expect("the client got the request");
    assert_eq!((head.kind, &*head.method, head.target.as_str()), (StreamKind::Http, "GET", "/hello?x=1"));
    assert_eq!(head.headers, vec![header("host", "demo.localhost:3000")]);
    assert!(pair.client.log(id).end, "a GET has no body");
    pair.client.respond_with(id, 200, &b"hello, visitor"[..]);
    pair.drive();

    let log = pair.server.log(id);
    assert_eq!(log.response.as_ref().map(|h| h.status), Some(200));
    assert_eq!(log.body, b"hello, visitor");
    assert!(log.end);
    assert_eq!(pair.server.session.stream_count(), 0, "finished streams are forgotten");
    assert_eq!(pair.client.session.stream_count(), 0);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn repeated_headers_stay_separate_and_in_order() {
    let mut pair = Pair::connected();
    let request_headers = vec![
        header("cookie", "a=1"),
        header("accept", "*/*"),
        header("cookie", "b=2"),
        header("X-Mixed-Case", "name lowercased, as HTTP/2 and hyper have it"),
        (HeaderName::from_static("x-binary"), HeaderValue::from_bytes(&[0x80, 0xff, b'\t', b' ']).unwrap()),
        header("cookie", "c=3"),
    ];
    let id = pair.server.open(request("GET", "/", request_headers.clone()), true);
    pair.drive();
    let got = &pair.client.log(id).head.as_ref().unwrap().headers;
    assert_eq!(got, &request_headers);
    assert_eq!(got[3].0.as_str(), "x-mixed-case");

    let response_headers =
        vec![header("set-cookie", "a=1; Path=/"), header("content-type", "text/plain"), header("set-cookie", "b=2")];
    pair.client.respond(id, 200, response_headers.clone(), true);
    pair.drive();
    assert_eq!(pair.server.log(id).response.as_ref().unwrap().headers, response_headers);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn either_side_opens_streams_with_its_own_parity() {
    let mut pair = Pair::connected();
    let c: Vec<_> = (0..3).map(|i| pair.client.open(request("POST", &format!("/c{i}"), vec![]), false)).collect();
    let s: Vec<_> = (0..3).map(|i| pair.server.get(&format!("/s{i}"))).collect();
    assert_eq!(c, vec![1, 3, 5]);
    assert_eq!(s, vec![2, 4, 6]);
    for &id in &c {
        pair.client.send_body(id, pattern(100_000, id as u8), true);
    }
    pair.drive();
    assert_eq!(pair.server.opened(), c);
    assert_eq!(pair.client.opened(), s);
    for &id in &c {
        assert_eq!(pair.server.log(id).body, pattern(100_000, id as u8), "request body of {id}");
        assert!(pair.server.log(id).end);
        pair.server.respond_with(id, 201, &b"created"[..]);
    }
    for &id in &s {
        pair.client.respond_with(id, 204, Bytes::new());
    }
    pair.drive();
    assert!(c.iter().all(|id| pair.client.log(*id).body == b"created"));
    assert!(s.iter().all(|id| pair.server.log(*id).response.as_ref().unwrap().status == 204));
    assert_eq!(pair.client.session.stream_count() + pair.server.session.stream_count(), 0);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn trailers_end_a_body() {
    let mut pair = Pair::connected();
    let id = pair.server.get("/grpc");
    pair.drive();
    pair.client.respond(id, 200, vec![header("te", "trailers")], false);
    pair.client.send_body(id, &b"payload"[..], false);
    pair.client.session.send_trailers(id, vec![header("grpc-status", "0"), header("grpc-message", "ok")]).unwrap();
    pair.drive();
    let log = pair.server.log(id);
    assert_eq!(log.body, b"payload");
    assert_eq!(log.trailers, Some(vec![header("grpc-status", "0"), header("grpc-message", "ok")]));
    assert!(log.end);
    assert_eq!(pair.client.session.stream_count(), 0);
    // Nothing can follow trailers.
    assert_eq!(pair.client.session.finish(id), Err(StreamError::UnknownStream(id)));
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_hundred_streams_with_one_stalled_reader() {
    const BODY: usize = 300 * 1024; // more than one stream window
    let small = Config { stream_window: 256 * 1024, ..Config::DEFAULT };
    let mut pair = Pair::connected_with(small.clone(), small);
    let window = pair.server.session.config().stream_window as usize;
    assert!(BODY > window);

    // A hundred visitors download at once; visitor 37 stops reading.
    let ids: Vec<_> = (0..100).map(|i| pair.server.get(&format!("/file/{i}"))).collect();
    let stalled = ids[37];
    pair.server.stall(stalled);
    pair.drive();
    for (i, &id) in ids.iter().enumerate() {
        pair.client.respond_with(id, 200, pattern(BODY, i as u8));
    }
    pair.drive();

    // The other 99 finish, intact.
    for (i, &id) in ids.iter().enumerate().filter(|(_, id)| **id != stalled) {
        let log = pair.server.log(id);
        assert!(log.end, "stream {id} finished");
        assert!(log.body == pattern(BODY, i as u8), "stream {id} body intact");
    }
    // The stalled one holds at most its window, and its sender waits with the rest.
    let log = pair.server.log(stalled);
    assert!(!log.end);
    assert!(log.max_unreleased <= window, "{} > {window}", log.max_unreleased);
    assert_eq!(log.unreleased, window, "the sender filled the window exactly");
    assert_eq!(pair.client.pending_bytes(), BODY - window);
    assert_eq!(pair.client.session.send_capacity(stalled), 0);
    assert_eq!(pair.client.session.stream_count(), 1);

    // The reader resumes; the rest flows and the stream finishes.
    pair.server.unstall(stalled);
    pair.drive();
    let log = pair.server.log(stalled);
    assert!(log.end);
    assert!(log.body == pattern(BODY, 37));
    assert_eq!(pair.server.session.stream_count() + pair.client.session.stream_count(), 0);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_huge_download_does_not_starve_small_exchanges() {
    const HUGE: usize = 32 * 1024 * 1024;
    let mut pair = Pair::connected();
    pair.to_server.bytes_per_sec = Some(50_000_000);
    pair.to_client.bytes_per_sec = Some(50_000_000);
    let max_frame = pair.server.session.config().max_frame as usize;

    let huge = pair.server.get("/huge.iso");
    pair.drive();
    pair.client.respond_with(huge, 200, pattern(HUGE, 1));
    // Let the download get going.
    pair.drive_until(|p| p.server.log(huge).body.len() >= 4 * 1024 * 1024);

    // Twenty small requests, one every 5 ms, while the huge body is flowing.
    let mut small = Vec::new();
    for i in 0..20 {
        let id = pair.server.get(&format!("/small/{i}"));
        let opened_at = pair.now;
        pair.drive_until(|p| p.client.log(id).head.is_some());
        pair.client.respond_with(id, 200, pattern(1000, i));
        small.push((id, opened_at));
        pair.advance(Duration::from_millis(5));
    }
    pair.drive_until(|p| small.iter().all(|(id, _)| p.server.log(*id).end));
    assert!(!pair.server.log(huge).end, "every small exchange finished while the huge one was still flowing");
    for (i, &(id, opened_at)) in small.iter().enumerate() {
        let log = pair.server.log(id);
        assert_eq!(log.body, pattern(1000, i as u8));
        let took = log.finished_at.unwrap().saturating_duration_since(opened_at);
        assert!(took < Duration::from_millis(100), "small exchange {i} took {took:?}");
    }

    pair.drive();
    let log = pair.server.log(huge);
    assert!(log.end && log.body.len() == HUGE && log.body == pattern(HUGE, 1));
    assert!(pair.to_server.largest <= max_frame, "frames are bounded by the receiver's max_frame");
    assert!(log.data_events >= HUGE / max_frame, "the body was cut into frames");
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn streams_take_turns_frame_by_frame() {
    // With windows large enough to queue a whole 16 MiB body at once, a small response
    // queued after it still goes out within a frame or two.
    let big = Config { stream_window: 32 * 1024 * 1024, session_window: 64 * 1024 * 1024, ..Config::DEFAULT };
    // The client must be willing to take windows and a queue that large from its peer.
    let client = Config { max_peer_window: 64 << 20, max_session_queue: 64 << 20, ..Config::DEFAULT };
    let mut pair = Pair::connected_with(client, big);
    let huge = pair.server.get("/huge");
    let small = pair.server.get("/small");
    pair.drive();
    pair.client.respond(huge, 200, vec![], false);
    assert_eq!(pair.client.session.send_data(huge, pattern(16 << 20, 0)).unwrap(), 16 << 20);
    pair.client.session.finish(huge).unwrap();
    pair.client.respond(small, 200, vec![], false);
    pair.client.session.send_data(small, Bytes::from_static(b"tiny")).unwrap();
    pair.client.session.finish(small).unwrap();

    let limits = DecodeLimits::default();
    let mut order = Vec::new();
    while let Some(msg) = pair.client.session.poll_transmit() {
        let frame = Frame::decode(msg.clone(), &limits).expect("valid frame");
        order.push((frame.stream_id(), matches!(frame, Frame::Data { end: true, .. })));
        pair.inject_to_server(msg).unwrap();
    }
    let small_done = order.iter().position(|&(id, end)| id == small && end).expect("small finished");
    assert!(small_done <= 4, "the small response went out at position {small_done}: {order:?}");
    assert!(pair.server.log(small).end && pair.server.log(huge).end);
    assert_eq!(pair.server.log(huge).body.len(), 16 << 20);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn send_is_bounded_by_the_window_and_writable_follows() {
    let mut pair = Pair::connected();
    let id = pair.client.open(request("PUT", "/upload", vec![]), false);
    let window = pair.client.session.peer_limits().stream_window as usize;
    assert_eq!(pair.client.session.send_capacity(id), window);
    let taken = pair.client.session.send_data(id, pattern(1 << 20, 0)).unwrap();
    assert_eq!(taken, window, "the session took one window's worth");
    assert_eq!(pair.client.session.send_capacity(id), 0);
    assert_eq!(pair.client.session.send_data(id, Bytes::from_static(b"more")).unwrap(), 0);
    pair.drive();
    // The server's application read it all, so credit came back and the client was told.
    assert!(pair.client.events.iter().any(|e| matches!(e, Event::Writable { id: w } if *w == id)));
    assert!(pair.client.session.send_capacity(id) > 0);
    assert_eq!(pair.server.log(id).body.len(), window);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn what_all_streams_queue_is_bounded_by_the_peers_session_window() {
    // The server takes 128 KiB per stream and 256 KiB in all: eight responses of
    // 300 KiB offered at once queue 256 KiB between them, not eight windows.
    const BODY: usize = 300 * 1024;
    let (mut pair, ids) = downloads_through_a_small_queue(8, BODY);
    assert_eq!(pair.client.pending_bytes(), 8 * BODY - 256 * 1024, "the queue took the session window");
    assert_eq!(pair.client.session.send_capacity(ids[7]), 0, "the last streams were refused");

    // The session window is open, so all of it leaves at once: the queue drains, and
    // refused streams are told at once (not at the server's next grant), queueing the
    // next 256 KiB.
    pair.flush();
    assert_eq!(pair.client.pending_bytes(), 8 * BODY - 2 * 256 * 1024, "the refused streams offered again");

    // As frames leave and the server reads them, the refused streams are told to send
    // again (the harness offers more only on `Writable`): every body arrives whole.
    pair.drive();
    for (i, &id) in ids.iter().enumerate() {
        let log = pair.server.log(id);
        assert!(log.end, "stream {id} finished");
        assert!(log.body == pattern(BODY, i as u8), "stream {id} body intact");
    }
    assert_eq!(pair.client.pending_bytes(), 0);
    assert!(pair.client.events.iter().any(|e| matches!(e, Event::Writable { id } if *id == ids[7])));
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn streams_refused_for_queue_room_take_turns() {
    // Sixteen 1 MiB responses through a queue of 256 KiB: while a quarter of the bytes
    // has arrived, every stream has had a turn, not only the first ones woken.
    const BODY: usize = 1 << 20;
    let (mut pair, ids) = downloads_through_a_small_queue(16, BODY);
    let total = |p: &Pair| ids.iter().map(|id| p.server.log(*id).body.len()).sum::<usize>();
    pair.drive_until(|p| total(p) >= ids.len() * BODY / 4);
    let starved: Vec<_> = ids.iter().filter(|id| pair.server.log(**id).body.is_empty()).collect();
    assert!(starved.is_empty(), "streams with nothing yet: {starved:?}");
    pair.drive();
    assert!(ids.iter().enumerate().all(|(i, id)| pair.server.log(*id).body == pattern(BODY, i as u8)));
}

/// `count` downloads of `body` bytes each (stream `i` carries `pattern(body, i)`),
/// all offered at once by a client whose peer takes 128 KiB per stream and 256 KiB in
/// all; nothing delivered yet.
fn downloads_through_a_small_queue(count: usize, body: usize) -> (Pair, Vec<localtunnels_core::StreamId>) {
    let server = Config { stream_window: 128 * 1024, session_window: 256 * 1024, ..Config::DEFAULT };
    let mut pair = Pair::connected_with(Config::DEFAULT, server);
    let ids: Vec<_> = (0..count).map(|i| pair.server.get(&format!("/file/{i}"))).collect();
    pair.drive();
    for (i, &id) in ids.iter().enumerate() {
        pair.client.respond_with(id, 200, pattern(body, i as u8));
    }
    (pair, ids)
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_stream_reset_mid_body_leaves_the_session_healthy() {
    let mut pair = Pair::connected();
    let id = pair.server.get("/big");
    pair.drive();
    pair.client.respond_with(id, 200, pattern(4 << 20, 9));
    pair.drive_until(|p| p.server.log(id).body.len() > 300 * 1024);

    // The visitor went away: the server cancels the stream while data is in flight.
    pair.server.session.reset(id, ResetCode::Cancel, "visitor went away");
    pair.drive();
    let log = pair.client.log(id);
    assert_eq!(log.reset, Some((ResetCode::Cancel, "visitor went away".to_string())));
    assert_eq!(pair.client.pending_bytes(), 0, "the client stopped sending");
    assert_eq!(pair.client.session.stream_count() + pair.server.session.stream_count(), 0);
    assert!(pair.server.errors.is_empty() && pair.client.errors.is_empty(), "late frames are not errors");
    assert!(pair.server.log(id).body.len() < 4 << 20);

    // The session window was not leaked: three more full windows' worth still flow.
    let window = pair.server.session.config().session_window as usize;
    let next = pair.server.get("/again");
    pair.drive();
    pair.client.respond_with(next, 200, pattern(3 * window, 3));
    pair.drive();
    assert!(pair.server.log(next).end && pair.server.log(next).body == pattern(3 * window, 3));

    // The opener can be reset too: the origin failed.
    let other = pair.server.get("/broken");
    pair.drive();
    pair.client.session.reset(other, ResetCode::OriginUnreachable, "connection refused");
    pair.drive();
    assert_eq!(pair.server.log(other).reset.as_ref().map(|r| r.0), Some(ResetCode::OriginUnreachable));
    // Resetting an unknown or finished stream is a no-op.
    pair.client.session.reset(other, ResetCode::Cancel, "again");
    pair.client.session.reset(999, ResetCode::Cancel, "never existed");
    pair.drive();
    assert!(pair.server.errors.is_empty());
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_stream_reset_with_data_queued_leaves_none_of_it_to_the_next_stream() {
    // The session keeps a removed stream's emptied queue for the next stream: what was
    // still queued on it must be gone, not sent on the new one.
    let mut pair = Pair::connected();
    let first = pair.server.get("/first");
    pair.drive();
    pair.client.respond(first, 200, vec![], false);
    pair.client.session.send_data(first, pattern(500, 1)).unwrap();
    pair.client.session.reset(first, ResetCode::Cancel, "origin failed");
    let next = pair.server.get("/next");
    pair.drive();
    pair.client.respond_with(next, 200, pattern(300, 2));
    pair.drive();
    assert_eq!(pair.server.log(first).reset.as_ref().map(|r| r.0), Some(ResetCode::Cancel));
    assert!(pair.server.log(first).body.is_empty(), "the reset stream's data was dropped with it");
    assert!(pair.server.log(next).end && pair.server.log(next).body == pattern(300, 2));
    assert!(pair.server.errors.is_empty() && pair.client.errors.is_empty());
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn frames_respect_the_receivers_max_frame() {
    // The client accepts only small frames; the server must cut its bodies to fit.
    let small = Config { max_frame: 1024, max_header_bytes: 512, ..Config::DEFAULT };
    let mut pair = Pair::connected_with(small.clone(), Config::DEFAULT);
    let id = pair.client.open(request("GET", "/", vec![]), true);
    pair.drive();
    pair.server.respond_with(id, 200, pattern(100_000, 5));
    pair.drive();
    assert_eq!(pair.client.log(id).body, pattern(100_000, 5));
    assert!(pair.to_client.largest <= 1024, "largest frame {}", pair.to_client.largest);

    // A head that cannot fit the peer's limits is refused locally, not sent.
    let fat = vec![header("x-big", &"a".repeat(600))];
    let err = pair.server.session.open(request("GET", "/", fat.clone()), true).unwrap_err();
    assert!(matches!(err, OpenError::HeadTooLarge { limit: 512, .. }), "{err}");
    let id = pair.client.open(request("GET", "/", vec![]), true);
    pair.drive();
    let err = pair.server.session.respond(id, ResponseHead { status: 200, headers: fat.clone() }, true).unwrap_err();
    assert!(matches!(err, StreamError::HeadTooLarge { .. }), "{err}");
    pair.server.respond(id, 200, vec![], false);
    let err = pair.server.session.send_trailers(id, fat).unwrap_err();
    assert!(matches!(err, StreamError::HeadTooLarge { .. }), "{err}");
    pair.server.session.finish(id).unwrap();
    pair.drive();
    assert!(pair.client.log(id).end);
    assert!(pair.client.errors.is_empty(), "{:?}", pair.client.errors);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn the_peers_stream_limit_is_obeyed() {
    let client = Config { max_streams: 2, ..Config::DEFAULT };
    let mut pair = Pair::connected_with(client, Config::DEFAULT);
    let a = pair.server.get("/a");
    pair.server.get("/b");
    assert_eq!(pair.server.session.open(request("GET", "/c", vec![]), true), Err(OpenError::TooManyStreams(2)));
    pair.drive();
    // One finishes; a new one may open.
    pair.client.respond_with(a, 200, Bytes::new());
    pair.drive();
    pair.server.get("/c");
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn commands_on_the_wrong_stream_or_state_are_errors_not_frames() {
    let mut pair = Pair::connected();
    let id = pair.server.get("/");
    pair.drive();
    // The opener cannot respond; the responder cannot send a body before its head.
    assert!(matches!(
        pair.server.session.respond(id, ResponseHead { status: 200, headers: vec![] }, true),
        Err(StreamError::InvalidState { .. })
    ));
    assert!(matches!(
        pair.client.session.send_data(id, Bytes::from_static(b"x")),
        Err(StreamError::InvalidState { .. })
    ));
    // A GET sent END: its opener has nothing more to send.
    assert_eq!(pair.server.session.send_data(id, Bytes::from_static(b"x")), Err(StreamError::AlreadyFinished(id)));
    // WebSocket messages do not go on HTTP streams.
    pair.client.respond(id, 200, vec![], false);
    assert!(matches!(
        pair.client.session.send_ws(id, false, Bytes::new(), true),
        Err(StreamError::InvalidState { .. })
    ));
    assert!(matches!(pair.client.session.close_ws(id, 1000, ""), Err(StreamError::InvalidState { .. })));
    // A second head is refused.
    assert!(matches!(
        pair.client.session.respond(id, ResponseHead { status: 200, headers: vec![] }, true),
        Err(StreamError::InvalidState { .. })
    ));
    assert_eq!(pair.client.session.send_data(404, Bytes::new()), Err(StreamError::UnknownStream(404)));
    pair.client.session.finish(id).unwrap();
    pair.drive();
    assert!(pair.client.errors.is_empty() && pair.server.errors.is_empty());
    assert!(pair.server.log(id).end);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_reset_after_a_complete_response_lets_the_response_out_first() {
    let mut pair = Pair::connected();
    // A visitor uploads 4 MiB; the origin answers 413 at once and wants none of it.
    let id = pair.client.open(request("POST", "/upload", vec![]), false);
    pair.client.send_body(id, pattern(4 << 20, 0), true);
    pair.drive_until(|p| p.server.log(id).head.is_some());
    pair.server.respond(id, 413, vec![], false);
    pair.server.send_body(id, &b"too large"[..], true);
    pair.server.session.reset(id, ResetCode::Cancel, "body not wanted");
    pair.drive();

    // The client got the whole response, then the reset, and stopped uploading.
    let log = pair.client.log(id);
    assert_eq!(log.response.as_ref().map(|h| h.status), Some(413));
    assert_eq!(log.body, b"too large");
    assert!(log.end);
    assert_eq!(log.reset.as_ref().map(|r| r.0), Some(ResetCode::Cancel));
    assert_eq!(pair.client.pending_bytes(), 0);
    assert!(pair.server.log(id).body.len() < 4 << 20, "the server stopped reading");
    assert!(pair.server.log(id).reset.is_none(), "the side that reset hears no reset");
    assert_eq!(pair.server.session.stream_count() + pair.client.session.stream_count(), 0);
    assert!(pair.client.errors.is_empty() && pair.server.errors.is_empty());
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn many_stalled_readers_do_not_stop_the_others() {
    // As many readers stop as the session window holds full stream windows, but one
    // (7 of 1 MiB each in the 8 MiB session window with the defaults; 30 of 256 KiB
    // with smaller streams). The rest of the session window must keep cycling for the
    // others.
    for stream_window in [Config::DEFAULT.stream_window, 256 * 1024] {
        let config = Config { stream_window, ..Config::DEFAULT };
        stalled_readers_leave_the_rest_cycling(Pair::connected_with(config.clone(), config));
    }
}

fn stalled_readers_leave_the_rest_cycling(mut pair: Pair) {
    let config = pair.server.session.config();
    let window = config.stream_window as usize;
    let session_window = config.session_window as usize;
    let count = (config.session_window / config.stream_window) as usize - 1;
    let stalled: Vec<_> = (0..count).map(|i| pair.server.get(&format!("/stalled/{i}"))).collect();
    for &id in &stalled {
        pair.server.stall(id);
    }
    pair.drive();
    for &id in &stalled {
        pair.client.respond_with(id, 200, pattern(window + 1000, 0));
    }
    pair.drive();
    // Each holds at most its window; with fair shares the later ones hold less than that
    // (each keeps a share of what the ones before it left), never all that is left.
    let held: usize = stalled.iter().map(|id| pair.server.log(*id).unreleased).sum();
    assert!(held <= count * window && held < session_window, "{held}");
    assert!(stalled.iter().all(|id| pair.server.log(*id).unreleased > 0));

    let id = pair.server.get("/still-flowing");
    pair.drive();
    pair.client.respond_with(id, 200, pattern(4 << 20, 1));
    pair.drive();
    assert!(pair.server.log(id).end, "got {} of {} bytes", pair.server.log(id).body.len(), 4 << 20);
    assert!(pair.server.log(id).body == pattern(4 << 20, 1));

    for &id in &stalled {
        pair.server.unstall(id);
    }
    pair.drive();
    assert!(stalled.iter().all(|id| pair.server.log(*id).end));
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn headers_the_wire_allows_but_http_cannot_carry_are_dropped_alone() {
    // Encode three headers, then change the second name and the third value in place to
    // what the wire format allows (visible ASCII; any byte but CR, LF, NUL) and HTTP
    // does not (a separator in a name, a control byte in a value).
    let head = request(
        "GET",
        "/",
        vec![header("x-aaaa", "one"), header("x-bbbb", "two"), header("x-cccc", "thr"), header("x-dddd", "4")],
    );
    let frame = Frame::Open { id: 1, head, end: true };
    let mut wire = frame.encode().to_vec();
    let mut patch = |from: &[u8], to: &[u8]| {
        let at = wire.windows(from.len()).position(|w| w == from).unwrap();
        wire[at..at + to.len()].copy_from_slice(to);
    };
    patch(b"x-bbbb", b"x(bbbb");
    patch(b"thr", b"t\x01r");
    patch(b"x-dddd", b"X-DDDD");
    match Frame::decode(wire.into(), &DecodeLimits::default()).unwrap() {
        Frame::Open { head, .. } => {
            let names: Vec<_> = head.headers.iter().map(|(n, v)| (n.as_str(), v.to_str().unwrap())).collect();
            assert_eq!(names, [("x-aaaa", "one"), ("x-dddd", "4")]);
        }
        other => panic!("{other:?}"),
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_header_value_the_wire_forbids_fails_the_frame() {
    // CR, LF and NUL are not allowed in a value on the wire: the frame is refused (where
    // a control byte the wire allows only drops its field, above).
    for bad in [&b"t\rr"[..], b"t\nr", b"t\0r"] {
        let head = request("GET", "/", vec![header("x-aaaa", "one"), header("x-cccc", "thr")]);
        let mut wire = Frame::Open { id: 1, head, end: true }.encode().to_vec();
        let at = wire.windows(3).position(|w| w == b"thr").unwrap();
        wire[at..at + 3].copy_from_slice(bad);
        let decoded = Frame::decode(wire.into(), &DecodeLimits::default());
        assert!(
            matches!(decoded, Err(localtunnels_core::DecodeError::Invalid("header value"))),
            "{bad:?}: {decoded:?}"
        );
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_stream_finished_both_ways_is_not_reset_when_let_go_before_its_last_frames_left() {
    let mut pair = Pair::connected();
    let id = pair.server.get("/done");
    pair.drive();
    let c = &mut pair.client.session;
    c.respond(id, ResponseHead { status: 200, headers: vec![] }, false).unwrap();
    c.send_data(id, bytes::Bytes::from_static(b"body")).unwrap();
    c.finish(id).unwrap();
    // The application lets go before any of it was sent (a native driver resets the
    // stream of every dropped handle): the request had ended too, so nothing of the
    // peer's is unwanted and no RESET follows the response.
    c.reset(id, ResetCode::Cancel, "the other end went away");
    let limits = DecodeLimits::default();
    let frames: Vec<Frame> =
        std::iter::from_fn(|| c.poll_transmit()).map(|m| Frame::decode(m, &limits).unwrap()).collect();
    assert!(frames.iter().any(|f| matches!(f, Frame::Data { end: true, .. })), "{frames:?}");
    assert!(!frames.iter().any(|f| matches!(f, Frame::Reset { .. })), "{frames:?}");
}

/// A stream finished by its last frame taken with `poll_message` (the native driver's
/// way) stays, counted, until `remove_finished` after the write; meanwhile the next
/// call of the session removes it first, so a peer's late frame for it is handled as
/// for a stream that is gone (ignored), not as one that cannot take it (a protocol
/// error that would close the session).
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_stream_finished_by_its_last_frame_is_removed_after_the_write() {
    for late_frame in [false, true] {
        let mut pair = Pair::connected();
        let id = pair.server.open(request("GET", "/", vec![]), true);
        pair.drive();
        pair.client.respond_with(id, 200, &b"whole"[..]);
        let session = &mut pair.client.session;
        let mut wire = bytes::BytesMut::new();
        while let Some(message) = session.poll_message() {
            session.encode_message(message, &mut wire, usize::MAX);
        }
        assert!(!wire.is_empty(), "the response was taken to send");
        assert!(session.has_finished());
        assert_eq!(session.stream_count(), 1, "counted until it is removed");
        if late_frame {
            let data = Frame::Data { id, data: Bytes::from_static(b"late"), end: false };
            session.handle_message(localtunnels_core::Instant::ZERO, data.encode()).expect("a late frame is ignored");
            assert!(!session.is_closed());
        } else {
            session.remove_finished();
        }
        assert!(!session.has_finished());
        assert_eq!(session.stream_count(), 0, "removed");
        session.check_invariants();
    }
}
