//! `Session::open_fields`: a request whose fields its sender writes straight into the
//! OPEN gives the frame `Session::open` gives for the same head, byte for byte, in
//! either field coding, and the same errors; the peer takes it as any OPEN, alone or
//! in a batch.

mod util;

use bytes::Bytes;
use localtunnels_core::{
    features, Config, Event, FieldCoding, Frame, Hello, Instant, OpenError, OpenFields, RequestHead, Session,
    StreamKind, Welcome, PROTOCOL_VERSION,
};
use util::{hello, request, Pair};

fn heads() -> Vec<RequestHead> {
    let browser = [
        ("host", "a.localhost:8080"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"),
        ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("sec-fetch-mode", "navigate"),
        ("x-forwarded-proto", "https"),
        ("x-custom", ""),
    ];
    vec![
        request("GET", "/", vec![]),
        request("GET", "/1k", vec![util::header("host", "cg.localhost:1")]),
        request("POST", "/a?b=c", browser.iter().map(|(n, v)| util::header(n, v)).collect()),
        RequestHead { kind: StreamKind::WebSocket, ..request("GET", "/ws", vec![util::header("host", "a")]) },
    ]
}

fn write(w: &mut OpenFields<'_>, head: &RequestHead) {
    for (name, value) in &head.headers {
        w.push(name, value);
    }
}

/// The messages `session` sends now.
fn sent(session: &mut Session) -> Vec<Bytes> {
    std::iter::from_fn(|| session.poll_transmit()).collect()
}

fn open_both(
    a: &mut Session,
    b: &mut Session,
    head: &RequestHead,
    end: bool,
) -> (Result<u32, OpenError>, Result<u32, OpenError>) {
    let listed = a.open(head.clone(), end);
    let written = b.open_fields(head.kind, &head.method, head.target.as_bytes(), end, |w| write(w, head));
    (listed, written)
}

/// A server session whose client announced `features` in its hello, with `config`.
fn server(features: u32, config: Config) -> Session {
    let mut server = Session::server(config, Instant::ZERO);
    let hello = Hello { version: PROTOCOL_VERSION, features, ..hello() };
    server.handle_message(Instant::ZERO, Frame::Hello(Box::new(hello)).encode()).unwrap();
    server.accept(Welcome::default(), Instant::ZERO);
    while server.poll_transmit().is_some() {}
    server
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn the_written_open_is_the_listed_one_in_both_codings() {
    let mut codings = vec![(features::BATCH, FieldCoding::Text)];
    // A core without the table (the wasm client's) writes text whatever the peer announced.
    if cfg!(feature = "indexed-headers") {
        codings.push((features::BATCH | features::INDEXED_HEADERS, FieldCoding::Indexed));
    }
    for (announced, coding) in codings {
        let (mut a, mut b) = (server(announced, Config::DEFAULT), server(announced, Config::DEFAULT));
        assert_eq!(b.field_coding(), coding);
        for head in heads() {
            for end in [false, true] {
                let (listed, written) = open_both(&mut a, &mut b, &head, end);
                assert_eq!(listed, written);
                let id = listed.unwrap();
                let sent = sent(&mut b);
                assert_eq!(sent, [Frame::Open { id, head: head.clone(), end }.encode_with(coding)], "{head:?}");
                assert_eq!(sent, self::sent(&mut a));
            }
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn the_errors_are_the_listed_ones() {
    // The limit is the peer's: a client that takes heads of at most 64 bytes.
    let small = || Config { max_header_bytes: 64, ..Config::DEFAULT };
    let mut a = Pair::connected_with(small(), Config::DEFAULT);
    let mut b = Pair::connected_with(small(), Config::DEFAULT);
    let (a, b) = (&mut a.server.session, &mut b.server.session);
    let long = request("GET", "/", vec![util::header("x-long", &"v".repeat(80))]);
    let bad = request("G T", "/", vec![]);
    for head in [long, bad] {
        let (listed, written) = open_both(a, b, &head, true);
        assert!(matches!(listed, Err(OpenError::HeadTooLarge { .. } | OpenError::InvalidHead(_))), "{listed:?}");
        assert_eq!(listed, written);
    }
    // Nothing was queued, and the next request opens as usual.
    assert!(sent(b).is_empty());
    let head = request("GET", "/", vec![]);
    let (listed, written) = open_both(a, b, &head, true);
    assert_eq!((listed.is_ok(), listed), (true, written));
    // Before the handshake: the fields are not even written.
    let mut early = Pair::new(Config::DEFAULT, Config::DEFAULT);
    let mut called = false;
    let refused = early.server.session.open_fields(StreamKind::Http, "GET", b"/", true, |_| called = true);
    assert_eq!((refused, called), (Err(OpenError::NotEstablished), false));
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn the_peer_takes_written_opens_alone_and_batched() {
    for batched in [false, true] {
        let mut pair = Pair::connected();
        pair.batched = batched;
        let heads = heads();
        for head in &heads {
            pair.server
                .session
                .open_fields(head.kind, &head.method, head.target.as_bytes(), true, |w| write(w, head))
                .unwrap();
        }
        pair.drive();
        let opened: Vec<RequestHead> = pair
            .client
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Opened { head, .. } => Some(head.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(opened, heads, "batched={batched}");
    }
}

/// OPENs written back to back share the session's buffer until they are sent (several
/// to an allocation): many queued before any is sent, then more while the messages
/// already sent are held (their memory not yet taken back) and after they were dropped
/// (taken back); every message is the listed session's, byte for byte, when sent and
/// still after all the later OPENs were written.
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn opens_queued_back_to_back_are_each_their_own_bytes() {
    for announced in [0, features::BATCH] {
        let (mut a, mut b) = (server(announced, Config::DEFAULT), server(announced, Config::DEFAULT));
        let mut held = Vec::new();
        for round in 0..6 {
            // 4 heads x 10 (a browser's ~0.4 KiB among them): past one buffer's room.
            for i in 0..10 {
                for head in heads() {
                    let head = RequestHead { target: format!("{}?r={round}&i={i}", head.target), ..head };
                    let (listed, written) = open_both(&mut a, &mut b, &head, true);
                    assert_eq!((listed.is_ok(), &listed), (true, &written));
                }
            }
            let (want, got) = (sent(&mut a), sent(&mut b));
            assert_eq!(got, want, "round {round}");
            if round % 2 == 0 {
                held.push((got, want));
            }
        }
        for (got, want) in &held {
            assert_eq!(got, want);
        }
    }
}
