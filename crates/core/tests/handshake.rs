//! The handshake: hello, then welcome or refuse; versions; what a server does with a
//! peer that is not a localtunnels client.

mod util;

use std::time::Duration;

use bytes::Bytes;
use localtunnels_core::{
    features, CloseCode, Config, DecodeLimits, Frame, Hello, Limits, ProtocolError, RefuseReason, Welcome,
    PROTOCOL_VERSION,
};
use util::{hello, Pair};

/// Decodes everything `session` wants to send.
fn transmitted(pair: &mut Pair, server: bool) -> Vec<Frame> {
    let session = if server { &mut pair.server.session } else { &mut pair.client.session };
    std::iter::from_fn(|| session.poll_transmit())
        .map(|b| Frame::decode(b, &DecodeLimits::default()).expect("own frames decode"))
        .collect()
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn client_says_hello_and_the_server_welcomes_it() {
    let client_config = Config { stream_window: 128 * 1024, ..Config::DEFAULT };
    let mut pair = Pair::new(client_config.clone(), Config::DEFAULT);
    pair.drive();

    // The server has the hello, with everything the client put in it.
    let got = pair.server.hello().expect("the server got a hello").clone();
    assert_eq!(got.version, PROTOCOL_VERSION);
    assert_eq!(got.name, "demo");
    assert_eq!(got.token, "secret");
    assert_eq!(got.client_kind, "native");
    assert_eq!(got.limits, Some(Limits::from(&client_config)));
    assert!(!pair.server.session.is_established(), "the server decides before the tunnel is up");
    assert_eq!(pair.server.session.peer_limits().stream_window, 128 * 1024);

    // It accepts; the client learns its URL, the server's limits and the timings.
    let welcome = Welcome { name: "demo".into(), url: "http://demo.localhost:3000".into(), ..Welcome::default() };
    let now = pair.now;
    pair.server.session.accept(welcome, now);
    pair.drive();
    let w = pair.client.welcome().expect("the client got a welcome").clone();
    assert_eq!(w.url, "http://demo.localhost:3000");
    assert_eq!(w.version, PROTOCOL_VERSION);
    assert_eq!(w.heartbeat_ms, 10_000);
    assert_eq!(w.idle_timeout_ms, 20_000);
    assert_eq!(w.limits, Some(Limits::from(&Config::DEFAULT)));
    assert!(pair.client.session.is_established());
    assert!(pair.server.session.is_established());
    assert_eq!(pair.client.session.peer_limits(), Limits::from(&Config::DEFAULT));
    assert!(pair.client.errors.is_empty() && pair.server.errors.is_empty());
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn server_refuses_a_taken_name() {
    let mut pair = Pair::default();
    pair.drive();
    assert!(pair.server.hello().is_some());
    pair.server.session.refuse(RefuseReason::NameTaken, "demo is in use");
    pair.drive();

    assert_eq!(pair.client.refused(), Some((RefuseReason::NameTaken, "demo is in use")));
    assert!(pair.client.session.is_closed());
    assert!(pair.server.session.is_closed());
    let (code, message, by_peer) = pair.server.closed().expect("the server reports the end");
    assert_eq!(code, CloseCode::Normal);
    assert!(message.contains("name_taken"), "{message}");
    assert!(!by_peer);
    // Nothing more is said either way, and no timer is left.
    pair.advance(Duration::from_secs(60));
    assert_eq!(pair.to_client.messages, 1);
    assert_eq!(pair.client.session.poll_timeout(), None);
    assert_eq!(pair.server.session.poll_timeout(), None);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn every_refuse_reason_reaches_the_client() {
    for reason in [
        RefuseReason::VersionUnsupported,
        RefuseReason::NameTaken,
        RefuseReason::NameInvalid,
        RefuseReason::Unauthorized,
        RefuseReason::ServerFull,
        RefuseReason::Malformed,
        RefuseReason::LimitReached,
        RefuseReason::HostnameNotAllowed,
        RefuseReason::Other(999),
    ] {
        let mut pair = Pair::default();
        pair.drive();
        pair.server.session.refuse(reason, reason.as_str());
        pair.drive();
        assert_eq!(pair.client.refused(), Some((reason, reason.as_str())));
        assert_eq!(RefuseReason::from_u16(reason.to_u16()), reason);
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_version_2_hello_is_refused_with_version_unsupported() {
    let mut pair = Pair::default();
    // A future client: version 2, and fields this version cannot know.
    let mut msg = Frame::Hello(Box::new(Hello { version: 2, ..hello() })).encode().to_vec();
    msg.extend_from_slice(&[0xee, 0xff, 0xff, 1, 2, 3]);
    pair.inject_to_server(msg).expect("a newer version is not a protocol error");

    let frames = transmitted(&mut pair, true);
    let [Frame::Refuse { reason, message }] = &frames[..] else { panic!("expected one REFUSE, got {frames:?}") };
    assert_eq!(*reason, RefuseReason::VersionUnsupported);
    assert!(message.contains("version 2"), "{message}");
    assert!(pair.server.hello().is_none(), "the application never sees an unsupported hello");
    assert!(pair.server.session.is_closed());
    assert_eq!(pair.server.closed().map(|c| c.0), Some(CloseCode::ProtocolError));
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_welcome_of_another_version_closes_the_client() {
    let mut pair = Pair::default();
    pair.drive();
    let welcome = Frame::Welcome(Box::new(Welcome { version: 2, ..Welcome::default() })).encode();
    let err = pair.inject_to_client(welcome).expect_err("a v1 client cannot speak v2");
    assert!(matches!(err, ProtocolError::Unexpected(_)), "{err}");
    assert!(pair.client.welcome().is_none());
    assert_eq!(pair.client.closed().map(|c| c.0), Some(CloseCode::ProtocolError));
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_peer_that_is_not_a_localtunnels_client_is_closed() {
    // Bad magic: no refusal (it would not understand one), a CLOSE with ProtocolError.
    let mut pair = Pair::default();
    let mut msg = Frame::Hello(Box::new(hello())).encode().to_vec();
    msg[5..9].copy_from_slice(b"HTTP");
    let err = pair.inject_to_server(msg).expect_err("bad magic");
    assert_eq!(err.close_code(), CloseCode::ProtocolError);
    let frames = transmitted(&mut pair, true);
    assert!(matches!(&frames[..], [Frame::Close { code: CloseCode::ProtocolError, .. }]), "{frames:?}");

    // Plain text where a frame should be.
    let mut pair = Pair::default();
    assert!(pair.inject_to_server(&b"GET / HTTP/1.1\r\n\r\n"[..]).is_err());
    assert_eq!(pair.server.closed().map(|c| c.0), Some(CloseCode::ProtocolError));

    // An empty message.
    let mut pair = Pair::default();
    assert!(pair.inject_to_server(Bytes::new()).is_err());
    assert!(pair.server.session.is_closed());
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn stream_frames_before_the_handshake_close_the_session() {
    let mut pair = Pair::default();
    let open = Frame::Data { id: 1, data: Bytes::from_static(b"x"), end: false }.encode();
    assert!(pair.inject_to_server(open).is_err());
    assert_eq!(pair.server.closed().map(|c| c.0), Some(CloseCode::ProtocolError));

    // A second hello after the first is not allowed either.
    let mut pair = Pair::connected();
    let err = pair.inject_to_server(Frame::Hello(Box::new(hello())).encode()).expect_err("second hello");
    assert!(matches!(err, ProtocolError::Unexpected(_)));
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_silent_peer_never_completes_the_handshake() {
    // The hello is lost; both sides give up after the idle timeout.
    let mut pair = Pair::default();
    pair.set_link_down(true);
    pair.advance(Duration::from_secs(19));
    assert!(pair.client.closed().is_none());
    pair.advance(Duration::from_secs(2));
    assert_eq!(pair.client.closed().map(|c| (c.0, c.2)), Some((CloseCode::Timeout, false)));
    assert_eq!(pair.server.closed().map(|c| (c.0, c.2)), Some((CloseCode::Timeout, false)));
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn the_server_answers_pings_while_it_decides() {
    let mut pair = Pair::default();
    pair.drive();
    assert!(pair.server.hello().is_some());
    pair.inject_to_server(Frame::Ping(7).encode()).expect("a ping while deciding is fine");
    let frames = transmitted(&mut pair, true);
    assert_eq!(frames, vec![Frame::Pong(7)]);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn either_side_may_close_and_the_other_hears_why() {
    let mut pair = Pair::connected();
    pair.client.session.close(CloseCode::Shutdown, "client shutting down");
    pair.drive();
    assert_eq!(pair.client.closed(), Some((CloseCode::Shutdown, "client shutting down", false)));
    assert_eq!(pair.server.closed(), Some((CloseCode::Shutdown, "client shutting down", true)));
    assert!(pair.server.session.is_closed());
    // Inputs after the end are ignored.
    assert!(pair.inject_to_server(&b"garbage"[..]).is_ok());
    assert_eq!(pair.server.events.iter().filter(|e| matches!(e, localtunnels_core::Event::Closed { .. })).count(), 1);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn unknown_and_empty_hello_fields_are_skipped() {
    // Found by the frame_decode fuzzer: an empty allow_ip field decoded as an entry "",
    // which re-encoded as nothing. Empty fields mean "absent"; unknown tags are skipped.
    let mut msg = Frame::Hello(Box::new(Hello { version: PROTOCOL_VERSION, ..hello() })).encode().to_vec();
    msg.extend_from_slice(&[8, 0, 0]); // allow_ip, empty
    msg.extend_from_slice(&[0x99, 0, 3, b'n', b'e', b'w']); // a tag from the future
    msg.extend_from_slice(&[8, 0, 9]);
    msg.extend_from_slice(b"10.0.0.0/8");
    msg.truncate(msg.len() - 1); // "10.0.0.0/" : 9 bytes, as announced
    let frame = Frame::decode(Bytes::from(msg), &DecodeLimits::default()).unwrap();
    let Frame::Hello(h) = &frame else { panic!("{frame:?}") };
    assert_eq!(h.allow_ips, vec!["10.0.0.0/".to_string()]);
    assert_eq!(h.name, "demo");
    assert_eq!(Frame::decode(frame.encode(), &DecodeLimits::default()), Ok(frame));
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_joining_hello_and_the_servers_join_feature_reach_the_other_side() {
    let joining = Hello { join: true, reconnect_token: "secret".into(), ..hello() };
    let mut pair = Pair::with_hello(Config::DEFAULT, Config::DEFAULT, joining);
    pair.drive();
    let seen = pair.server.hello().expect("the server read the hello").clone();
    assert!(seen.join, "the join field crossed");
    assert_eq!(seen.reconnect_token, "secret");
    // The server's own feature bits survive `accept`, which adds the session's.
    let now = pair.now;
    pair.server.session.accept(Welcome { features: features::JOIN, ..Welcome::default() }, now);
    pair.drive();
    let features = pair.client.welcome().expect("welcomed").features;
    assert_eq!(features & features::JOIN, features::JOIN);
    assert_eq!(features & features::BATCH, features::BATCH);
    // A hello without the field is not a join (what every earlier client sends).
    let plain = Frame::Hello(Box::new(Hello { version: PROTOCOL_VERSION, ..hello() })).encode();
    let Ok(Frame::Hello(h)) = Frame::decode(plain, &DecodeLimits::default()) else { panic!("a hello decodes") };
    assert!(!h.join);
}
