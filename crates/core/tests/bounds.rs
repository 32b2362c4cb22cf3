//! A peer that tries to make the other side hold memory without bound: windows it
//! announces or grants beyond reason, pings it never reads the answers to, control
//! frames it leaves unread, and readers that stop reading. Each is bounded by the
//! local side's own limits (`docs/PROTOCOL.md` §7-§9, `docs/SECURITY.md`).

mod util;

use std::time::Duration;

use localtunnels_core::{CloseCode, Config, DecodeLimits, Frame};
use util::{header, pattern, request, Pair};

/// What a client that announces the largest windows the wire can carry looks like.
fn greedy() -> Config {
    Config { stream_window: u32::MAX, session_window: u32::MAX, ..Config::DEFAULT }
}

/// Every frame the server has queued for the client, decoded.
fn server_output(pair: &mut Pair) -> Vec<Frame> {
    std::iter::from_fn(|| pair.server.session.poll_transmit())
        .map(|m| Frame::decode(m, &DecodeLimits::default()).unwrap())
        .collect()
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn windows_a_peer_announces_are_clamped_to_our_own_maxima() {
    let mut pair = Pair::connected_with(greedy(), Config::DEFAULT);
    let ours = Config::DEFAULT;
    let peer = pair.server.session.peer_limits();
    assert!(peer.stream_window <= 16 << 20, "stream window taken on trust: {}", peer.stream_window);
    assert!(peer.session_window <= 16 << 20, "session window taken on trust: {}", peer.session_window);
    assert!(peer.max_frame <= ours.max_frame && peer.max_header_bytes <= ours.max_header_bytes);

    // Sixteen visitors upload 64 MiB each to a client that reads nothing: what the
    // server takes to queue for it is bounded, whatever the client announced.
    let body = pattern(64 << 20, 3);
    let ids: Vec<_> = (0..16).map(|i| pair.server.open(request("POST", &format!("/up/{i}"), vec![]), false)).collect();
    let taken: usize = ids.iter().map(|&id| pair.server.session.send_data(id, body.clone()).unwrap()).sum();
    assert!(taken <= 8 << 20, "the server queued {taken} bytes for a client that does not read");
    pair.server.check();

    // The client's application reads nothing either: what reaches it is bounded by
    // the clamped windows, not by what it announced.
    for &id in &ids {
        pair.client.stall(id);
    }
    pair.drive();
    let held: usize = ids.iter().map(|&id| pair.client.log(id).unreleased).sum();
    assert!(held <= 16 << 20, "{held} bytes in flight to a client that does not read");
    assert!(held > 0);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn window_grants_beyond_the_window_are_not_taken() {
    let mut pair = Pair::connected();
    let id = pair.server.open(request("POST", "/up", vec![]), false);
    let window = pair.server.session.peer_limits().stream_window as usize;
    pair.inject_to_server(Frame::Window { id, increment: u32::MAX }.encode()).unwrap();
    pair.inject_to_server(Frame::Window { id: 0, increment: u32::MAX }.encode()).unwrap();
    pair.inject_to_server(Frame::Window { id: 0, increment: u32::MAX }.encode()).unwrap();
    let capacity = pair.server.session.send_capacity(id);
    assert!(capacity <= window, "a forged grant raised the credit to {capacity} (window {window})");
    pair.server.check();
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn pings_from_a_peer_that_never_reads_leave_one_pong_pending() {
    let mut pair = Pair::connected();
    for seq in 0..100_000u64 {
        pair.inject_to_server(Frame::Ping(seq).encode()).unwrap();
    }
    // The same in batches.
    let mut batch = vec![Frame::Ping(1); 1000];
    batch.push(Frame::Ping(100_000));
    pair.inject_to_server(Frame::Batch(batch).encode()).unwrap();
    let pongs: Vec<_> = server_output(&mut pair).into_iter().filter(|f| matches!(f, Frame::Pong(_))).collect();
    assert_eq!(pongs, vec![Frame::Pong(100_000)], "only the latest ping is answered");
    assert!(pair.server.session.is_established());
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_peer_that_leaves_control_frames_unread_is_closed_with_slow_reader() {
    let mut pair = Pair::connected();
    // Visitors keep coming with large heads; the client reads none of them.
    let big = vec![header("x-padding", &"p".repeat(30_000))];
    let mut opened = 0;
    while pair.server.session.open(request("GET", "/", big.clone()), true).is_ok() {
        opened += 1;
        assert!(opened < 1024, "the server queued {opened} heads of 30 KB for a client that reads nothing");
    }
    pair.server.drain(pair.now);
    let (code, message, by_peer) = pair.server.closed().expect("the session closed");
    assert_eq!(code.to_u16(), 9, "SlowReader: {message}");
    assert!(!by_peer && message.contains("does not read"), "{message}");
    // The CLOSE is what is left to send.
    let frames = server_output(&mut pair);
    assert!(matches!(frames.as_slice(), [Frame::Close { code, .. }] if code.to_u16() == 9), "{frames:?}");
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_peer_that_pings_but_never_reads_is_closed_as_dead() {
    let mut pair = Pair::connected();
    let start = pair.now;
    // The client keeps sending (so it is never silent) but never reads: the server's
    // pings go unanswered.
    for second in 1..=120u64 {
        pair.now = start + Duration::from_secs(second);
        pair.inject_to_server(Frame::Ping(second).encode()).unwrap();
        let now = pair.now;
        if pair.server.session.poll_timeout().is_some_and(|t| t <= now) {
            pair.server.session.handle_timeout(now);
            pair.server.drain(now);
        }
        if pair.server.closed().is_some() {
            break;
        }
    }
    let (code, message, _) = pair.server.closed().expect("a peer that never reads is closed");
    assert_eq!(code, CloseCode::Timeout, "{message}");
    let after = pair.now.saturating_duration_since(start);
    let config = Config::DEFAULT;
    assert!(after <= config.ping_interval + config.idle_timeout + Duration::from_secs(1), "closed after {after:?}");
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn sixteen_stalled_readers_leave_the_tunnel_answering() {
    // Sixteen visitors download 4 MiB each and stop reading (the server's application
    // holds what arrives); a small GET after them still gets its whole body at once.
    const BODY: usize = 4 << 20;
    let mut pair = Pair::connected();
    let stalled: Vec<_> = (0..16).map(|i| pair.server.get(&format!("/big/{i}"))).collect();
    for &id in &stalled {
        pair.server.stall(id);
    }
    pair.drive();
    for (i, &id) in stalled.iter().enumerate() {
        pair.client.respond_with(id, 200, pattern(BODY, i as u8));
    }
    pair.drive();
    let held: usize = stalled.iter().map(|id| pair.server.log(*id).unreleased).sum();
    assert!(held < 8 << 20, "the stalled readers hold the whole session window ({held} bytes)");

    let small = pair.server.get("/small");
    let asked = pair.now;
    pair.drive_until(|p| p.client.log(small).head.is_some());
    pair.client.respond_with(small, 200, pattern(100_000, 7));
    pair.drive();
    let log = pair.server.log(small);
    assert!(log.end, "the small GET got {} of 100000 bytes", log.body.len());
    assert!(log.body == pattern(100_000, 7));
    let took = log.finished_at.unwrap().saturating_duration_since(asked);
    assert!(took < Duration::from_secs(1), "the small GET took {took:?}");

    // The readers come back: every body arrives whole.
    for &id in &stalled {
        pair.server.unstall(id);
    }
    pair.drive();
    for (i, &id) in stalled.iter().enumerate() {
        assert!(pair.server.log(id).body == pattern(BODY, i as u8), "stream {id} intact");
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_single_download_still_fills_its_whole_stream_window() {
    // Fair shares must not cost one stream alone its window's worth in flight.
    let mut pair = Pair::connected();
    let id = pair.server.get("/one");
    pair.server.stall(id);
    pair.drive();
    pair.client.respond_with(id, 200, pattern(4 << 20, 1));
    pair.drive();
    assert_eq!(pair.server.log(id).unreleased, Config::DEFAULT.stream_window as usize);
}
