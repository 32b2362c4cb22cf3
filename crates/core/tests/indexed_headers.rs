//! Indexed header fields (`docs/PROTOCOL.md` §2, "Indexed fields"): every session
//! announces `INDEXED_HEADERS`, writes the static table's names and fields as indexes
//! only towards a peer that announced it too, reads both forms, and refuses an index
//! past the end of the table as a protocol violation. A core built without the table
//! (`--no-default-features`, the wasm client's) never announces it: these tests need it.
#![cfg(feature = "indexed-headers")]

mod util;

use bytes::{BufMut, Bytes, BytesMut};
use localtunnels_core::{
    features, CloseCode, Config, DecodeError, DecodeLimits, FieldCoding, Frame, Header, HeaderName, HeaderValue, Hello,
    Instant, ProtocolError, RequestHead, ResponseHead, Session, StreamKind, Welcome, PROTOCOL_VERSION,
};
use util::{hello, Pair};

fn field(name: &'static str, value: &'static str) -> Header {
    (HeaderName::from_static(name), HeaderValue::from_static(value))
}

/// A request as the server forwards one: `host` and the three `x-forwarded-*` names are
/// in the table (`x-forwarded-proto: http` as a whole field), `x-custom` is not.
fn forwarded_get() -> RequestHead {
    RequestHead {
        kind: StreamKind::Http,
        method: "GET".into(),
        target: "/".into(),
        headers: vec![
            field("host", "demo.localhost:3000"),
            field("x-custom", "1"),
            field("x-forwarded-for", "127.0.0.1"),
            field("x-forwarded-proto", "http"),
            field("x-forwarded-host", "demo.localhost:3000"),
        ],
    }
}

fn response() -> ResponseHead {
    ResponseHead { status: 200, headers: vec![field("content-length", "5"), field("date", "today")] }
}

/// Does `needle` occur in `hay`?
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn both_sides_announce_it_and_write_indexes_to_each_other() {
    let mut pair = Pair::connected();
    let announced = features::INDEXED_HEADERS;
    assert_eq!(pair.server.hello().unwrap().features & announced, announced, "the client's hello");
    assert_eq!(pair.client.welcome().unwrap().features & announced, announced, "the server's welcome");
    assert_eq!(pair.server.session.field_coding(), FieldCoding::Indexed);
    assert_eq!(pair.client.session.field_coding(), FieldCoding::Indexed);

    let id = pair.server.session.open(forwarded_get(), true).unwrap();
    let open = pair.server.session.poll_transmit().unwrap();
    let text = Frame::Open { id, head: forwarded_get(), end: true }.encode();
    assert!(open.len() < text.len(), "{} bytes indexed, {} as text", open.len(), text.len());
    assert!(!contains(&open, b"x-forwarded-for") && !contains(&open, b"\0\x04host"), "{open:?}");
    assert!(contains(&open, b"x-custom"), "a name outside the table goes as text: {open:?}");
    // `x-forwarded-proto: http` is field 0x80, with no value after it.
    assert!(contains(&open, &[0, 0, 0x80]) && !contains(&open, b"http"), "{open:?}");
    pair.inject_to_client(open).unwrap();
    assert_eq!(pair.client.log(id).head.as_ref(), Some(&forwarded_get()), "the head as it was sent");

    pair.client.session.respond(id, response(), true).unwrap();
    let head = pair.client.session.poll_transmit().unwrap();
    assert!(!contains(&head, b"content-length") && contains(&head, b"today"), "{head:?}");
    pair.inject_to_server(head).unwrap();
    assert_eq!(pair.server.log(id).response.as_ref(), Some(&response()));
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_peer_that_did_not_announce_it_gets_names_as_text() {
    // An older client: its hello announces batches but not indexes.
    let mut server = Session::server(Config::DEFAULT, Instant::ZERO);
    let old = Hello { version: PROTOCOL_VERSION, features: features::BATCH, ..hello() };
    server.handle_message(Instant::ZERO, Frame::Hello(Box::new(old)).encode()).unwrap();
    server.accept(Welcome::default(), Instant::ZERO);
    while server.poll_transmit().is_some() {}
    assert_eq!(server.field_coding(), FieldCoding::Text);
    let id = server.open(forwarded_get(), true).unwrap();
    let open = server.poll_transmit_batch().unwrap();
    assert_eq!(open, Frame::Open { id, head: forwarded_get(), end: true }.encode());

    // An older server: its welcome has no features field.
    let mut client = Session::client(Config::DEFAULT, hello(), Instant::ZERO);
    while client.poll_transmit().is_some() {}
    let welcome = Frame::Welcome(Box::new(Welcome { version: PROTOCOL_VERSION, ..Welcome::default() })).encode();
    client.handle_message(Instant::ZERO, welcome).unwrap();
    assert_eq!(client.field_coding(), FieldCoding::Text);
    // It may still send text to us, and we read it.
    let open = Frame::Open { id: 2, head: forwarded_get(), end: true }.encode();
    client.handle_message(Instant::ZERO, open).unwrap();
    client.respond(2, response(), true).unwrap();
    let head = client.poll_transmit().unwrap();
    assert_eq!(head, Frame::Response { id: 2, head: response(), end: true }.encode());
}

/// A RESPONSE for stream 2 with one field written as `field`.
fn response_with(field: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_slice(&[0x11, 0, 0, 0, 2, 1, 0, 200, 0, 1]);
    b.put_slice(field);
    b.freeze()
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn an_index_past_the_table_or_cut_short_is_refused() {
    let limits = DecodeLimits::default();
    // Name 0x01 (content-length) with a value, field 0x90 (content-type: text/plain).
    let good = Frame::decode(response_with(&[0, 0, 1, 0, 1, b'5']), &limits).unwrap();
    assert_eq!(
        good,
        Frame::Response {
            id: 2,
            head: ResponseHead { status: 200, headers: vec![field("content-length", "5")] },
            end: true
        }
    );
    let good = Frame::decode(response_with(&[0, 0, 0x90]), &limits).unwrap();
    assert_eq!(
        good,
        Frame::Response {
            id: 2,
            head: ResponseHead { status: 200, headers: vec![field("content-type", "text/plain")] },
            end: true
        }
    );

    for bad in [&[0, 0, 0x7f, 0, 0][..], &[0, 0, 0xff]] {
        assert_eq!(Frame::decode(response_with(bad), &limits), Err(DecodeError::Invalid("header index")), "{bad:?}");
    }
    for cut in [&[0, 0][..], &[0, 0, 1], &[0, 0, 1, 0]] {
        assert!(matches!(Frame::decode(response_with(cut), &limits), Err(DecodeError::Truncated(_))), "{cut:?}");
    }

    // In a session, a bad index closes it as a protocol violation.
    let mut pair = Pair::connected();
    assert_eq!(pair.server.get("/"), 2);
    let err = pair.inject_to_server(response_with(&[0, 0, 0xff])).unwrap_err();
    assert_eq!(err, ProtocolError::Decode(DecodeError::Invalid("header index")));
    assert_eq!(pair.server.closed().map(|(code, _, by_peer)| (code, by_peer)), Some((CloseCode::ProtocolError, false)));
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_long_head_is_sized_and_written_alike_past_its_first_fields() {
    // More fields than the sender plans ahead (16): table names and fields on both sides
    // of that mark, and names outside the table.
    let mut head = forwarded_get();
    for i in 0..30 {
        head.headers.push(match i % 3 {
            0 => field("accept", "*/*"),
            1 => field("cookie", "a=b"),
            _ => (HeaderName::from_bytes(format!("x-n{i}").as_bytes()).unwrap(), HeaderValue::from_static("v")),
        });
    }
    let frame = Frame::Open { id: 2, head: head.clone(), end: true };
    let indexed = frame.encode_with(FieldCoding::Indexed);
    assert_eq!(frame.encoded_len_with(FieldCoding::Indexed), Some(indexed.len()));
    assert_eq!(Frame::decode(indexed.clone(), &DecodeLimits::default()), Ok(frame));

    // And through a session, which sizes the frame when it is queued and writes it later.
    let mut pair = Pair::connected();
    let id = pair.server.session.open(head.clone(), true).unwrap();
    let open = pair.server.session.poll_transmit().unwrap();
    assert_eq!(open.len(), indexed.len());
    pair.inject_to_client(open).unwrap();
    assert_eq!(pair.client.log(id).head.as_ref(), Some(&head));
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn values_that_repeat_or_change_arrive_as_sent() {
    // The receiver keeps a value that repeats under a table name and compares every
    // later one with it: whatever the pattern, each head arrives as it was sent.
    let mut pair = Pair::connected();
    let hosts = ["a.example:80", "a.example:80", "a.example:80", "b.example:80", "a.example:80", "b.example:80"];
    let visitors = ["10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.3"];
    for (host, visitor) in hosts.into_iter().zip(visitors) {
        let mut head = forwarded_get();
        head.headers[0].1 = HeaderValue::from_static(host);
        head.headers[2].1 = HeaderValue::from_static(visitor);
        // A control byte the wire allows is dropped, kept value or not.
        head.headers.push((HeaderName::from_static("date"), HeaderValue::from_static("today")));
        let id = pair.server.session.open(head.clone(), true).unwrap();
        let mut msg = pair.server.session.poll_transmit().unwrap().to_vec();
        let at = msg.len() - "today".len();
        msg[at] = 0x01;
        pair.inject_to_client(msg).unwrap();
        head.headers.pop();
        assert_eq!(pair.client.log(id).head.as_ref(), Some(&head), "{host} {visitor}");
    }
}

/// A head with table fields, a field outside the table and a value a table name
/// carries as text.
fn varied_response() -> ResponseHead {
    ResponseHead {
        status: 200,
        headers: vec![
            field("content-type", "text/plain"),
            field("content-length", "1024"),
            field("x-request-id", "abc"),
            field("date", "Sun, 06 Dec 2026 19:00:00 GMT"),
        ],
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_response_sent_as_a_block_is_the_frame_respond_sends() {
    // Towards a peer that reads indexes, and towards one that does not (the block,
    // written with indexes, is re-encoded as text).
    for indexed in [true, false] {
        let sent = |as_block: bool| {
            let mut client = client_with_stream_2(indexed);
            let head = varied_response();
            if as_block {
                let block = localtunnels_core::HeaderBlock::from_headers(&head.headers, FieldCoding::Indexed);
                client.respond_block(2, head.status, block, true).unwrap();
            } else {
                client.respond(2, head, true).unwrap();
            }
            let frame = client.poll_transmit().unwrap();
            // The stream is done either way: a second head is refused.
            let again = localtunnels_core::HeaderBlock::new(client.field_coding());
            assert!(client.respond_block(2, 200, again, true).is_err());
            frame
        };
        let block = sent(true);
        assert_eq!(block, sent(false), "indexed: {indexed}");
        let limits = DecodeLimits::default();
        assert_eq!(
            Frame::decode(block, &limits).unwrap(),
            Frame::Response { id: 2, head: varied_response(), end: true }
        );
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_block_is_held_to_the_checks_a_head_is_held_to() {
    let mut pair = Pair::connected();
    let coding = pair.client.session.field_coding();
    let id = pair.server.session.open(forwarded_get(), true).unwrap();
    let open = pair.server.session.poll_transmit().unwrap();
    pair.inject_to_client(open).unwrap();
    let client = &mut pair.client.session;
    let block = |headers: &[Header]| localtunnels_core::HeaderBlock::from_headers(headers, coding);
    let head = varied_response();
    // The status, then the size, as `respond` refuses them.
    for status in [99, 1000] {
        let listed = client.respond(id, ResponseHead { status, headers: head.headers.clone() }, true).unwrap_err();
        assert_eq!(client.respond_block(id, status, block(&head.headers), true).unwrap_err(), listed);
    }
    let big = HeaderValue::from_bytes(&vec![b'a'; 70_000]).unwrap();
    let huge = vec![(HeaderName::from_static("x-big"), big)];
    let listed = client.respond(id, ResponseHead { status: 200, headers: huge.clone() }, true).unwrap_err();
    assert_eq!(client.respond_block(id, 200, block(&huge), true).unwrap_err(), listed);
    client.respond_block(id, 200, block(&head.headers), true).unwrap();
}

/// Each field of a head as bytes, in order.
fn field_bytes(headers: &[Header]) -> Vec<(Vec<u8>, Vec<u8>)> {
    headers.iter().map(|(n, v)| (n.as_str().as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_kept_block_is_the_frame_respond_block_sends_and_its_fields_come_back_either_way() {
    let head = varied_response();
    let want = field_bytes(&head.headers);
    let read = |kept: &localtunnels_core::SentBlock| -> Vec<(Vec<u8>, Vec<u8>)> {
        assert_eq!(kept.len(), kept.fields().count());
        kept.fields().map(|(n, v)| (n.to_vec(), v.to_vec())).collect()
    };
    // Towards a peer that reads indexes (the frame's bytes shared), and towards one
    // that does not (the block re-encoded as text; its own bytes kept).
    for indexed in [true, false] {
        let session = || client_with_stream_2(indexed);
        let block = || localtunnels_core::HeaderBlock::from_headers(&head.headers, FieldCoding::Indexed);
        let mut plain = session();
        plain.respond_block(2, head.status, block(), true).unwrap();
        let mut kept = session();
        let mut fields = localtunnels_core::SentBlock::default();
        kept.respond_block_kept(2, head.status, block(), true, &mut fields).unwrap();
        let frame = kept.poll_transmit().unwrap();
        assert_eq!(frame, plain.poll_transmit().unwrap(), "indexed: {indexed}");
        // The frame written and dropped: the fields are still there, as sent.
        drop(frame);
        assert_eq!(read(&fields), want, "indexed: {indexed}");
        // Refused (the stream's head was sent; a status out of range): the fields
        // come back all the same, with the error `respond_block` gives.
        let mut fields = localtunnels_core::SentBlock::default();
        let sent = kept.respond_block_kept(2, head.status, block(), true, &mut fields);
        assert_eq!(sent.unwrap_err(), kept.respond_block(2, head.status, block(), true).unwrap_err());
        assert_eq!(read(&fields), want);
        let mut fresh = session();
        let mut fields = localtunnels_core::SentBlock::default();
        assert!(fresh.respond_block_kept(2, 1000, block(), true, &mut fields).is_err());
        assert_eq!(read(&fields), want);
        assert!(fresh.poll_transmit().is_none(), "a refused head queues nothing");
    }
    // The default: no field.
    assert_eq!(localtunnels_core::SentBlock::default().fields().count(), 0);
}

/// A client whose welcome announced indexes (`indexed`) or not, with stream 2 opened
/// by the server (a forwarded GET), ready for its response.
fn client_with_stream_2(indexed: bool) -> Session {
    let mut client = Session::client(Config::DEFAULT, hello(), Instant::ZERO);
    while client.poll_transmit().is_some() {}
    let features = if indexed { features::INDEXED_HEADERS } else { 0 };
    let welcome = Welcome { version: PROTOCOL_VERSION, features, ..Welcome::default() };
    client.handle_message(Instant::ZERO, Frame::Welcome(Box::new(welcome)).encode()).unwrap();
    let open = Frame::Open { id: 2, head: forwarded_get(), end: true }.encode();
    client.handle_message(Instant::ZERO, open).unwrap();
    client
}
