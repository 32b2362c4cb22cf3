//! `BATCH` frames: several frames in one message, sent only to a peer that announced
//! it accepts them, held to the same limits as single frames.

mod util;

use bytes::{BufMut, Bytes, BytesMut};
use localtunnels_core::{
    features, CloseCode, Config, DecodeError, DecodeLimits, Event, Frame, Hello, Instant, ProtocolError, ResetCode,
    Session, Welcome, PROTOCOL_VERSION,
};
use util::{hello, Pair};

/// A `BATCH` message around `entries` (each already encoded), with honest lengths.
fn batch_of(entries: &[Bytes]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(0x30);
    b.put_u32(0);
    for e in entries {
        b.put_u32(e.len() as u32);
        b.put_slice(e);
    }
    b.freeze()
}

fn ping(v: u64) -> Bytes {
    Frame::Ping(v).encode()
}

/// The frames in `messages`, batches unpacked, after checking that none is over
/// `max_frame` bytes.
fn unpacked(messages: &[Bytes], max_frame: usize) -> Vec<Frame> {
    assert!(messages.iter().all(|m| m.len() <= max_frame), "{:?}", messages.iter().map(Bytes::len).collect::<Vec<_>>());
    let limits = DecodeLimits { max_frame, ..DecodeLimits::default() };
    let mut frames = Vec::new();
    for m in messages {
        match Frame::decode(m.clone(), &limits).unwrap() {
            Frame::Batch(inner) => frames.extend(inner),
            f => frames.push(f),
        }
    }
    frames
}

/// Every message the client sends from now on, decoded.
fn client_output(pair: &mut Pair) -> Vec<Frame> {
    std::iter::from_fn(|| pair.client.session.poll_transmit_batch())
        .map(|m| Frame::decode(m, &DecodeLimits::default()).unwrap())
        .collect()
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn both_sides_announce_batches_and_a_batched_pair_serves_every_stream_in_fewer_messages() {
    let mut pair = Pair::connected();
    assert_eq!(pair.server.hello().unwrap().features & features::BATCH, features::BATCH);
    assert_eq!(pair.client.welcome().unwrap().features & features::BATCH, features::BATCH);
    assert!(pair.client.session.peer_accepts_batch() && pair.server.session.peer_accepts_batch());

    pair.batched = true;
    let (before_up, before_down) = (pair.to_server.messages, pair.to_client.messages);
    let ids: Vec<_> = (0..50).map(|i| pair.server.get(&format!("/{i}"))).collect();
    pair.drive();
    for &id in &ids {
        pair.client.respond_with(id, 200, vec![b'x'; 1024]);
    }
    pair.drive();
    for &id in &ids {
        let log = pair.server.log(id);
        assert_eq!(log.response.as_ref().map(|r| r.status), Some(200));
        assert_eq!((log.body.len(), log.end), (1024, true), "stream {id}");
    }
    // 50 opens went down in one message; 50 heads and 50 bodies (+ a window) came up in
    // a couple, where one frame per message would have taken 100.
    assert_eq!(pair.to_client.messages - before_down, 1);
    let up = pair.to_server.messages - before_up;
    assert!(up <= 3, "{up} messages for 100 frames");
    assert!(pair.to_server.largest <= Config::DEFAULT.max_frame as usize);
    pair.client.check();
    pair.server.check();
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_batch_never_exceeds_the_peers_max_frame_and_keeps_the_order() {
    let small = Config { max_frame: 4096, ..Config::DEFAULT };
    let mut pair = Pair::connected_with(Config::DEFAULT, small);
    let ids: Vec<_> = (0..20).map(|i| pair.server.get(&format!("/{i}"))).collect();
    pair.drive();
    for &id in &ids {
        pair.client.respond_with(id, 200, util::pattern(1500, id as u8));
    }
    let messages: Vec<Bytes> = std::iter::from_fn(|| pair.client.session.poll_transmit_batch()).collect();
    // Unpacked, they are the frames poll_transmit would have sent one by one: every
    // head before its body, bodies whole and in order.
    let frames = unpacked(&messages, 4096);
    for &id in &ids {
        let mine: Vec<_> = frames.iter().filter(|f| f.stream_id() == id).collect();
        assert!(matches!(mine[0], Frame::Response { .. }), "{mine:?}");
        let body: Vec<u8> = mine[1..]
            .iter()
            .flat_map(|f| match f {
                Frame::Data { data, .. } => data.to_vec(),
                f => panic!("unexpected {f:?}"),
            })
            .collect();
        assert_eq!(body, util::pattern(1500, id as u8).to_vec());
        assert!(matches!(mine.last(), Some(Frame::Data { end: true, .. })));
    }
    assert!(messages.len() < frames.len() / 2, "{} messages for {} frames", messages.len(), frames.len());
    for m in messages {
        pair.server.session.handle_message(pair.now, m).unwrap();
    }
    pair.server.drain(pair.now);
    assert!(ids.iter().all(|&id| pair.server.log(id).end));
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn frames_longer_than_their_size_hint_still_fit_and_keep_the_order() {
    // A RESET queued behind a stream's response is sized by a guess; long messages make
    // some batches overflow on encoding, which must push the overflowing frame and every
    // frame picked after it into the next message, in order.
    let small = Config { max_frame: 4096, ..Config::DEFAULT };
    let mut pair = Pair::connected_with(Config::DEFAULT, small);
    // Uploads still going: a response that ends early is followed by a RESET.
    let ids: Vec<_> =
        (0..40).map(|i| pair.server.open(util::request("POST", &format!("/{i}"), vec![]), false)).collect();
    pair.drive();
    let why = |id: u32| format!("{id:03} {}", "r".repeat(240));
    for &id in &ids {
        pair.client.respond_with(id, 200, util::pattern(300, id as u8));
        pair.client.session.reset(id, ResetCode::Internal, &why(id));
    }
    let messages: Vec<Bytes> = std::iter::from_fn(|| pair.client.session.poll_transmit_batch()).collect();
    let frames = unpacked(&messages, 4096);
    for &id in &ids {
        let mine: Vec<_> = frames.iter().filter(|f| f.stream_id() == id).collect();
        assert!(matches!(mine[0], Frame::Response { .. }), "{mine:?}");
        assert!(matches!(mine[1], Frame::Data { end: true, .. }), "{mine:?}");
        assert!(matches!(mine[2], Frame::Reset { message, .. } if *message == why(id)), "{mine:?}");
        assert_eq!(mine.len(), 3);
    }
    // The resets went out in the order they were asked for.
    let order: Vec<_> = frames.iter().filter(|f| matches!(f, Frame::Reset { .. })).map(Frame::stream_id).collect();
    assert_eq!(order, ids);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn parts_joined_are_the_messages_a_batch_drain_sends_and_large_payloads_come_apart() {
    let drain = |parts: bool| -> (Vec<Bytes>, usize) {
        let mut pair = Pair::connected();
        let ids: Vec<_> = (0..3).map(|i| pair.server.get(&format!("/{i}"))).collect();
        pair.drive();
        for &id in &ids {
            pair.client.respond_with(id, 200, util::pattern(150_000, id as u8));
        }
        let mut apart = 0;
        let messages = std::iter::from_fn(|| {
            if !parts {
                return pair.client.session.poll_transmit_batch();
            }
            let (head, payload) = pair.client.session.poll_transmit_parts()?;
            apart += usize::from(!payload.is_empty());
            Some(Bytes::from([head, payload].concat()))
        })
        .collect();
        (messages, apart)
    };
    let (whole, _) = drain(false);
    let (joined, apart) = drain(true);
    assert_eq!(whole, joined);
    // Full-size DATA frames go alone: each one's payload came apart.
    assert!(apart >= 6, "{apart} payloads apart");
}

/// A batch that ends in a large DATA frame (a large body's RESPONSE and first piece, as
/// a client sends them) leaves that frame's payload apart: the body's own bytes, not a
/// copy; and the parts joined are the message a batch drain sends.
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_batch_ending_in_a_large_data_frame_leaves_its_payload_apart() {
    let body = util::pattern(40_000, 7);
    let first = |parts: bool| -> (Bytes, Bytes) {
        let mut pair = Pair::connected();
        let id = pair.server.get("/large");
        pair.drive();
        pair.client.respond_with(id, 200, body.clone());
        if parts {
            pair.client.session.poll_transmit_parts().expect("a message")
        } else {
            (pair.client.session.poll_transmit_batch().expect("a message"), Bytes::new())
        }
    };
    let (whole, _) = first(false);
    let (head, payload) = first(true);
    assert_eq!(head[0], 0x30, "a BATCH");
    assert_eq!(payload, body);
    assert_eq!(payload.as_ptr(), body.as_ptr(), "the body's bytes, not a copy");
    assert_eq!([head, payload].concat(), whole.to_vec());
    let frames = unpacked(&[whole], Config::DEFAULT.max_frame as usize);
    assert!(matches!(frames[..], [Frame::Response { .. }, Frame::Data { end: true, .. }]), "{frames:?}");
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_frame_as_large_as_the_peer_allows_goes_alone() {
    let mut pair = Pair::connected();
    let id = pair.server.get("/big");
    pair.drive();
    pair.client.respond_with(id, 200, vec![1u8; 200_000]);
    let limit = Config::DEFAULT.max_frame as usize;
    let sizes: Vec<usize> = std::iter::from_fn(|| pair.client.session.poll_transmit_batch()).map(|m| m.len()).collect();
    assert!(sizes.iter().all(|&n| n <= limit), "{sizes:?}");
    // Full-size DATA frames cannot share a message: they go as plain frames.
    assert_eq!(sizes.iter().filter(|&&n| n == limit).count(), 3, "{sizes:?}");
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_peer_that_did_not_announce_batches_never_receives_one() {
    // An older client: its hello has no features field.
    let mut old = hello();
    old.features = 0;
    let mut server = Session::server(Config::DEFAULT, Instant::ZERO);
    let encoded = Frame::Hello(Box::new(Hello { version: PROTOCOL_VERSION, ..old })).encode();
    server.handle_message(Instant::ZERO, encoded).unwrap();
    server.accept(Welcome::default(), Instant::ZERO);
    assert!(!server.peer_accepts_batch());
    for i in 0..30 {
        server.open(util::request("GET", &format!("/{i}"), vec![]), true).unwrap();
    }
    let mut n = 0;
    while let Some(m) = server.poll_transmit_batch() {
        let frame = Frame::decode(m, &DecodeLimits::default()).unwrap();
        assert!(!matches!(frame, Frame::Batch(_)), "sent {frame:?}");
        n += 1;
    }
    assert_eq!(n, 31, "the welcome and 30 opens, one per message");

    // An older server: its welcome has no features field.
    let mut client = Session::client(Config::DEFAULT, hello(), Instant::ZERO);
    while client.poll_transmit().is_some() {}
    let welcome = Frame::Welcome(Box::new(Welcome { version: PROTOCOL_VERSION, ..Welcome::default() })).encode();
    client.handle_message(Instant::ZERO, welcome).unwrap();
    assert!(!client.peer_accepts_batch());
    let mut opened = Vec::new();
    for id in (2..=40).step_by(2) {
        let open = Frame::Open { id, head: util::request("GET", "/", vec![]), end: true }.encode();
        client.handle_message(Instant::ZERO, open).unwrap();
        opened.push(id);
    }
    for &id in &opened {
        client.respond(id, localtunnels_core::ResponseHead { status: 204, headers: vec![] }, true).unwrap();
    }
    let mut n = 0;
    while let Some(m) = client.poll_transmit_batch() {
        let frame = Frame::decode(m, &DecodeLimits::default()).unwrap();
        assert!(!matches!(frame, Frame::Batch(_)), "sent {frame:?}");
        n += 1;
    }
    assert_eq!(n, 20);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_batch_is_handled_frame_by_frame() {
    let mut pair = Pair::connected();
    pair.inject_to_server(batch_of(&[ping(7), ping(8)])).unwrap();
    let pongs: Vec<_> = std::iter::from_fn(|| pair.server.session.poll_transmit())
        .map(|m| Frame::decode(m, &DecodeLimits::default()).unwrap())
        .collect();
    // Both pings are handled, in order: the answer owed is the latest one's (only the
    // latest ping is answered, so a peer that never reads cannot queue answers).
    assert_eq!(pongs, vec![Frame::Pong(8)]);

    // A CLOSE inside ends the session there; what follows it is ignored, even garbage.
    let close = Frame::Close { code: CloseCode::Shutdown, message: "bye".into() }.encode();
    pair.inject_to_server(batch_of(&[ping(9), close, Bytes::from_static(b"\xff")])).unwrap();
    assert!(pair.server.session.is_closed());
    assert_eq!(pair.server.closed(), Some((CloseCode::Shutdown, "bye", true)));
}

/// The CLOSE the server sent after `msg`, and the error `handle_message` returned.
fn refused(msg: Bytes) -> (ProtocolError, CloseCode) {
    let mut pair = Pair::connected();
    let err = pair.inject_to_server(msg).unwrap_err();
    let frames: Vec<_> = std::iter::from_fn(|| pair.server.session.poll_transmit())
        .map(|m| Frame::decode(m, &DecodeLimits::default()).unwrap())
        .collect();
    match frames.last() {
        Some(Frame::Close { code, .. }) => (err, *code),
        other => panic!("expected a CLOSE, got {other:?}"),
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_batch_over_max_frame_closes_with_frame_too_large() {
    let max = Config::DEFAULT.max_frame as usize;
    // Each frame alone is small; together they are over the limit.
    let entries: Vec<Bytes> = (0..max / 17 + 1).map(|i| ping(i as u64)).collect();
    let msg = batch_of(&entries);
    assert!(msg.len() > max);
    let (err, code) = refused(msg);
    assert!(matches!(err, ProtocolError::Decode(DecodeError::FrameTooLarge { .. })), "{err:?}");
    assert_eq!(code, CloseCode::FrameTooLarge);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn malformed_nested_and_empty_batches_close_with_protocol_error() {
    let mut truncated_len = batch_of(&[ping(1)]).to_vec();
    truncated_len.truncate(truncated_len.len() - 1);
    let mut short_prefix = batch_of(&[ping(1)]).to_vec();
    short_prefix.extend_from_slice(&[0, 0]);
    let cases: Vec<(&str, Bytes)> = vec![
        ("empty", batch_of(&[])),
        ("nested", batch_of(&[ping(1), batch_of(&[ping(2)])])),
        ("inner frame malformed", batch_of(&[ping(1), Bytes::from_static(&[0x20, 0, 0, 0, 0, 1])])),
        ("inner frame of unknown type", batch_of(&[Bytes::from_static(&[0x7f, 0, 0, 0, 0])])),
        ("inner frame empty", batch_of(&[Bytes::new()])),
        ("entry past the end", Bytes::from(truncated_len)),
        ("length prefix cut", Bytes::from(short_prefix)),
        ("batch with a stream id", Bytes::from_static(&[0x30, 0, 0, 0, 1, 0, 0, 0, 0])),
    ];
    for (what, msg) in cases {
        let (err, code) = refused(msg.clone());
        assert!(matches!(err, ProtocolError::Decode(_) | ProtocolError::Unexpected(_)), "{what}: {err:?}");
        assert_eq!(code, CloseCode::ProtocolError, "{what}");
        // The decoder alone refuses it too.
        assert!(Frame::decode(msg, &DecodeLimits::default()).is_err(), "{what}");
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_client_may_not_batch_before_the_welcome() {
    let mut server = Session::server(Config::DEFAULT, Instant::ZERO);
    let hello = Frame::Hello(Box::new(Hello { version: PROTOCOL_VERSION, ..hello() })).encode();
    let err = server.handle_message(Instant::ZERO, batch_of(&[hello])).unwrap_err();
    assert!(matches!(err, ProtocolError::Unexpected(_)), "{err:?}");
    assert!(server.is_closed());
    assert!(matches!(server.poll_event(), Some(Event::Closed { code: CloseCode::ProtocolError, .. })));
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_client_takes_the_welcome_and_the_first_streams_in_one_batch() {
    let mut client = Session::client(Config::DEFAULT, hello(), Instant::ZERO);
    while client.poll_transmit().is_some() {}
    let welcome = Frame::Welcome(Box::new(Welcome {
        version: PROTOCOL_VERSION,
        features: features::BATCH,
        ..Welcome::default()
    }));
    let open = Frame::Open { id: 2, head: util::request("GET", "/", vec![]), end: true };
    client.handle_message(Instant::ZERO, Frame::Batch(vec![welcome, open]).encode()).unwrap();
    assert!(matches!(client.poll_event(), Some(Event::Welcome(_))));
    assert!(matches!(client.poll_event(), Some(Event::Opened { id: 2, .. })));
    assert!(client.is_established());
    assert!(client_output_is_empty(&mut client));
}

fn client_output_is_empty(client: &mut Session) -> bool {
    client.poll_transmit_batch().is_none()
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_close_empties_what_a_batch_held_back() {
    let small = Config { max_frame: 1024, ..Config::DEFAULT };
    let mut pair = Pair::connected_with(Config::DEFAULT, small);
    let ids: Vec<_> = (0..4).map(|i| pair.server.get(&format!("/{i}"))).collect();
    pair.drive();
    for &id in &ids {
        pair.client.respond_with(id, 200, vec![0u8; 900]);
    }
    // One message out; the rest (one frame of it held back) is dropped by the close.
    assert!(pair.client.session.poll_transmit_batch().is_some());
    assert!(pair.client.session.has_transmit());
    pair.client.session.close(CloseCode::Normal, "done");
    let rest = client_output(&mut pair);
    assert!(matches!(rest.as_slice(), [Frame::Close { code: CloseCode::Normal, .. }]), "{rest:?}");
}

/// The frames a `BATCH` message carries, still encoded.
fn entries_of(batch: &Bytes) -> Vec<Bytes> {
    assert_eq!(batch[..5], [0x30, 0, 0, 0, 0]);
    let (mut at, mut out) = (5, Vec::new());
    while at < batch.len() {
        let len = u32::from_be_bytes(batch[at..at + 4].try_into().unwrap()) as usize;
        out.push(batch.slice(at + 4..at + 4 + len));
        at += 4 + len;
    }
    out
}

/// A `BATCH` handed over in two `BATCH`es cut at any of its frames' ends (as the
/// driver's decoder hands over one cut by its read buffer's end) is handled as the
/// whole one: the same events, the same frames sent back, the same errors and close;
/// also when one of its frames is bad (the frames before it handled, the session
/// closed with the same error) or is a CLOSE.
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_batch_handed_over_in_two_at_any_frames_end_is_handled_as_the_whole() {
    // The server's side after the client's responses are made, and those as batches.
    let setup = || {
        let small = Config { max_frame: 8192, ..Config::DEFAULT };
        let mut pair = Pair::connected_with(Config::DEFAULT, small);
        let ids: Vec<_> = (0..12).map(|i| pair.server.get(&format!("/{i}"))).collect();
        pair.drive();
        for &id in &ids {
            pair.client.respond_with(id, 200, util::pattern(700 + 100 * id as usize, id as u8));
        }
        let messages: Vec<Bytes> = std::iter::from_fn(|| pair.client.session.poll_transmit_batch()).collect();
        (pair, messages)
    };
    let outcome = |pair: &mut Pair, messages: &[Bytes]| {
        for m in messages {
            if let Err(e) = pair.server.session.handle_message(pair.now, m.clone()) {
                pair.server.errors.push(e);
            }
            pair.server.drain(pair.now);
        }
        let sent: Vec<Bytes> = std::iter::from_fn(|| pair.server.session.poll_transmit_batch()).collect();
        format!("{:?} {:?} {:?} {:?}", pair.server.events, pair.server.errors, sent, pair.server.session.is_closed())
    };
    let (_, messages) = setup();
    let first = entries_of(&messages[0]);
    assert!(first.len() >= 6, "{} frames", first.len());
    let mut bad = first.clone();
    bad[3] = Bytes::from_static(&[0xEE, 0, 0, 0, 1, 0]);
    let mut closing = first.clone();
    closing[4] = Frame::Close { code: CloseCode::Normal, message: "bye".into() }.encode();
    for frames in [first, bad, closing] {
        let mut whole = messages.clone();
        whole[0] = batch_of(&frames);
        let want = outcome(&mut setup().0, &whole);
        for cut in 1..frames.len() {
            let mut split = vec![batch_of(&frames[..cut]), batch_of(&frames[cut..])];
            split.extend_from_slice(&messages[1..]);
            assert_eq!(outcome(&mut setup().0, &split), want, "cut after frame {cut}");
        }
    }
}
