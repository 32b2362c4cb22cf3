//! A session's life: heartbeats and round-trip time, dead peers, go-away, close.

mod util;

use std::time::Duration;

use bytes::Bytes;
use localtunnels_core::{CloseCode, Config, Event, OpenError, ResetCode};
use util::{pattern, request, Pair};

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn heartbeats_keep_an_idle_session_alive_and_measure_the_round_trip() {
    let mut pair = Pair::connected();
    pair.set_latency(Duration::from_millis(37));
    assert_eq!(pair.client.session.rtt(), None);
    // An hour with nothing to say.
    pair.advance(Duration::from_secs(3600));
    assert!(pair.client.session.is_established() && pair.server.session.is_established());
    assert_eq!(pair.client.session.rtt(), Some(Duration::from_millis(74)));
    assert_eq!(pair.server.session.rtt(), Some(Duration::from_millis(74)));
    // Both ping every 10 s: about 360 pings and 360 pongs each way.
    assert!((700..=740).contains(&pair.to_server.messages), "{}", pair.to_server.messages);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn the_heartbeat_timings_come_from_the_server() {
    let server =
        Config { ping_interval: Duration::from_secs(2), idle_timeout: Duration::from_secs(5), ..Config::DEFAULT };
    let mut pair = Pair::connected_with(Config::DEFAULT, server);
    let w = pair.client.welcome().unwrap();
    assert_eq!((w.heartbeat_ms, w.idle_timeout_ms), (2000, 5000));
    let start = pair.to_server.messages;
    pair.advance(Duration::from_secs(20));
    // The client pings every 2 s (and answers the server's pings): ~20 messages.
    assert!((18..=22).contains(&(pair.to_server.messages - start)), "{}", pair.to_server.messages - start);
    pair.set_link_down(true);
    pair.advance(Duration::from_secs(6));
    assert_eq!(pair.client.closed().map(|c| c.0), Some(CloseCode::Timeout), "the client uses the 5 s timeout");
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_dead_peer_is_detected_by_the_idle_timeout() {
    let mut pair = Pair::connected();
    let id = pair.server.get("/slow");
    pair.drive();
    // The network dies silently (no close, no error): only the heartbeat can tell.
    pair.set_link_down(true);
    pair.advance(Duration::from_secs(19));
    assert!(pair.client.closed().is_none() && pair.server.closed().is_none());
    pair.advance(Duration::from_secs(2));
    let (code, message, by_peer) = pair.client.closed().expect("the client gave up");
    assert_eq!((code, by_peer), (CloseCode::Timeout, false));
    assert!(message.contains("20.0 s"), "{message}");
    assert_eq!(pair.server.closed().map(|c| (c.0, c.2)), Some((CloseCode::Timeout, false)));
    // Streams die with the session.
    assert_eq!(pair.server.session.stream_count(), 0);
    assert!(pair.server.session.open(request("GET", "/", vec![]), true) == Err(OpenError::Closed));
    assert!(!pair.server.log(id).end);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_one_way_outage_is_detected_by_the_side_that_hears_nothing() {
    let mut pair = Pair::connected();
    // The server's frames are lost; the client's still arrive.
    pair.to_client.down = true;
    pair.advance(Duration::from_secs(25));
    assert_eq!(pair.client.closed().map(|c| (c.0, c.2)), Some((CloseCode::Timeout, false)));
    // The client's CLOSE reached the server, which learns why.
    assert_eq!(pair.server.closed().map(|c| (c.0, c.2)), Some((CloseCode::Timeout, true)));
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn go_away_lets_in_flight_streams_finish_and_refuses_new_ones() {
    let mut pair = Pair::connected();
    // Visitors' requests are in flight when the server starts shutting down.
    let downloads: Vec<_> = (0..3).map(|i| pair.server.get(&format!("/d{i}"))).collect();
    let upload = pair.client.open(request("POST", "/upload", vec![]), false);
    pair.drive();
    // A client stream opened at the very moment the server goes away crosses it.
    let crossing = pair.client.open(request("GET", "/late", vec![]), true);
    pair.server.session.go_away(CloseCode::Shutdown, "server restarting");
    pair.drive();

    // The client heard it; the crossing stream was refused, the earlier one was not.
    assert_eq!(pair.client.go_away(), Some((CloseCode::Shutdown, "server restarting")));
    assert_eq!(pair.client.log(crossing).reset.as_ref().map(|r| r.0), Some(ResetCode::Refused));
    assert!(pair.client.log(upload).reset.is_none());
    assert!(pair.client.session.is_going_away() && pair.server.session.is_going_away());
    // No one opens anything new.
    assert_eq!(pair.client.session.open(request("GET", "/", vec![]), true), Err(OpenError::GoingAway));
    assert_eq!(pair.server.session.open(request("GET", "/", vec![]), true), Err(OpenError::GoingAway));

    // In-flight streams finish, both ways, bodies and all.
    for (i, &id) in downloads.iter().enumerate() {
        pair.client.respond_with(id, 200, pattern(500_000, i as u8));
    }
    pair.client.send_body(upload, pattern(500_000, 7), true);
    pair.drive();
    pair.server.respond_with(upload, 201, Bytes::new());
    pair.drive();
    for (i, &id) in downloads.iter().enumerate() {
        assert!(pair.server.log(id).end && pair.server.log(id).body == pattern(500_000, i as u8));
    }
    assert!(pair.server.log(upload).body == pattern(500_000, 7));
    assert_eq!(pair.client.log(upload).response.as_ref().map(|h| h.status), Some(201));
    assert_eq!(pair.server.session.stream_count() + pair.client.session.stream_count(), 0);
    assert!(pair.client.errors.is_empty() && pair.server.errors.is_empty());
    // Then the server closes.
    pair.server.session.close(CloseCode::Shutdown, "bye");
    pair.drive();
    assert_eq!(pair.client.closed(), Some((CloseCode::Shutdown, "bye", true)));
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn the_client_can_go_away_too() {
    let mut pair = Pair::connected();
    let id = pair.server.get("/in-flight");
    pair.drive();
    pair.client.session.go_away(CloseCode::Shutdown, "ctrl-c");
    // A server stream crossing the go-away is refused by the client.
    let crossing = pair.server.get("/crossing");
    pair.drive();
    assert_eq!(pair.server.go_away(), Some((CloseCode::Shutdown, "ctrl-c")));
    assert_eq!(pair.server.log(crossing).reset.as_ref().map(|r| r.0), Some(ResetCode::Refused));
    assert!(pair.client.log(id).head.is_some());
    pair.client.respond_with(id, 200, &b"done"[..]);
    pair.drive();
    assert_eq!(pair.server.log(id).body, b"done");
    // Going away twice says it once.
    pair.client.session.go_away(CloseCode::Shutdown, "again");
    pair.drive();
    assert_eq!(pair.server.events.iter().filter(|e| matches!(e, Event::GoAway { .. })).count(), 1);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn close_drops_queued_data_and_is_the_last_frame() {
    let mut pair = Pair::connected();
    let id = pair.server.get("/");
    pair.drive();
    pair.client.respond(id, 200, vec![], false);
    pair.client.session.send_data(id, pattern(100_000, 0)).unwrap();
    pair.client.session.close(CloseCode::Internal, "origin crashed");
    let mut last = None;
    let mut count = 0;
    while let Some(msg) = pair.client.session.poll_transmit() {
        count += 1;
        last = Some(msg);
    }
    assert_eq!(count, 1, "only the CLOSE is sent");
    pair.inject_to_server(last.unwrap()).unwrap();
    assert_eq!(pair.server.closed(), Some((CloseCode::Internal, "origin crashed", true)));
    assert_eq!(pair.client.session.poll_timeout(), None);
    // Commands after close fail cleanly.
    assert!(pair.client.session.send_data(id, Bytes::from_static(b"x")).is_err());
    assert_eq!(pair.client.session.open(request("GET", "/", vec![]), true), Err(OpenError::Closed));
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn long_messages_are_cut_to_fit_a_frame() {
    // A reset, go-away or close message longer than the peer could take is shortened
    // (on a character boundary), never sent as a frame the peer must reject.
    let small = Config { max_frame: 256, max_header_bytes: 128, ..Config::DEFAULT };
    let mut pair = Pair::connected_with(small, Config::DEFAULT);
    let id = pair.server.get("/");
    pair.drive();
    pair.server.session.reset(id, ResetCode::Internal, &"ü".repeat(1000));
    pair.server.session.go_away(CloseCode::Shutdown, &"ü".repeat(1000));
    pair.drive();
    assert!(pair.client.errors.is_empty(), "{:?}", pair.client.errors);
    let (_, reset_message) = pair.client.log(id).reset.clone().unwrap();
    assert!(!reset_message.is_empty() && reset_message.chars().all(|c| c == 'ü'));
    pair.server.session.close(CloseCode::Shutdown, &"ü".repeat(40_000));
    pair.drive();
    assert!(pair.client.errors.is_empty(), "{:?}", pair.client.errors);
    assert_eq!(pair.client.closed().map(|c| c.0), Some(CloseCode::Shutdown));
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_client_whose_timers_run_once_a_minute_stays_connected_with_an_idle_floor() {
    // A hidden browser tab: its timers fire on the minute, its messages on arrival.
    let mut pair = Pair::connected();
    pair.client.session.set_idle_floor(Duration::from_secs(75));
    pair.client_timer_grain = Some(Duration::from_secs(60));
    pair.advance(Duration::from_secs(3600));
    // The server's pings, answered as they arrive, keep both sides up for an hour.
    assert!(pair.client.session.is_established() && pair.server.session.is_established());
    assert_eq!(pair.client.closed(), None);
    assert_eq!(pair.server.closed(), None);
    assert!(pair.server.session.rtt().is_some(), "the server measured the client's answers");

    // A dead server is still found, by the first timer past the floor.
    pair.set_link_down(true);
    pair.advance(Duration::from_secs(180));
    assert_eq!(pair.client.closed().map(|c| c.0), Some(CloseCode::Timeout));
}
