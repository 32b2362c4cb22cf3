//! `PeerStreams::Refuse`, the server's rule that clients may not open streams: each
//! stream a client opens is reset with `Refused` before the server's application sees
//! it, a flood of them closes the session as a protocol error, and the server's own
//! streams go on working meanwhile.

mod util;

use localtunnels_core::{CloseCode, Config, PeerStreams, ProtocolError, ResetCode, MAX_REFUSED_STREAMS};
use util::{request, Pair};

fn refusing_server() -> Pair {
    Pair::connected_with(Config::DEFAULT, Config { peer_streams: PeerStreams::Refuse, ..Config::DEFAULT })
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_stream_the_client_opens_is_refused_and_the_servers_own_still_work() {
    let mut pair = refusing_server();
    let up = pair.client.open(request("POST", "/", vec![]), false);
    pair.client.send_body(up, &b"never read"[..], true);
    let down = pair.server.get("/ok");
    pair.drive();
    assert!(pair.server.opened().is_empty(), "the server's application saw no stream from the client");
    let reset = pair.client.log(up).reset.clone();
    let message = "the server does not accept streams from clients".to_string();
    assert_eq!(reset, Some((ResetCode::Refused, message)));
    assert_eq!(pair.client.opened(), [down], "the server's stream reached the client");
    pair.client.respond_with(down, 200, &b"fine"[..]);
    pair.drive();
    assert_eq!(pair.server.log(down).body, b"fine");
    assert_eq!(pair.server.closed(), None);
    assert_eq!(pair.client.closed(), None);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_client_that_keeps_opening_streams_is_closed() {
    let mut pair = refusing_server();
    for i in 0..MAX_REFUSED_STREAMS {
        let id = pair.client.open(request("GET", &format!("/{i}"), vec![]), true);
        pair.drive();
        assert_eq!(pair.client.log(id).reset.as_ref().map(|r| r.0), Some(ResetCode::Refused), "stream {i}");
        assert_eq!(pair.server.closed(), None, "{} refused streams are tolerated", i + 1);
    }
    pair.client.open(request("GET", "/one-too-many", vec![]), true);
    pair.drive();
    assert_eq!(pair.server.errors, [ProtocolError::StreamsRefused("clients")]);
    let closed = pair.server.closed().map(|(code, message, by_peer)| (code, message.to_string(), by_peer));
    assert_eq!(closed, Some((CloseCode::ProtocolError, "clients may not open streams".to_string(), false)));
    assert_eq!(pair.client.closed().map(|c| (c.0, c.2)), Some((CloseCode::ProtocolError, true)));
    assert_eq!(ProtocolError::StreamsRefused("clients").close_code(), CloseCode::ProtocolError);
}

/// The default accepts the client's streams, as the core's other tests rely on.
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn by_default_the_peers_streams_are_accepted() {
    assert_eq!(Config::DEFAULT.peer_streams, PeerStreams::Accept);
    let mut pair = Pair::connected();
    let id = pair.client.open(request("GET", "/", vec![]), true);
    pair.drive();
    assert_eq!(pair.server.opened(), [id]);
}
