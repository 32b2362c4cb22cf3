//! The store's tests: what is filed reads back as filed, and the bytes it holds are the bytes it counts.

use super::*;
use crate::frame::Header;
use crate::inspect::ring::LINK;
use crate::inspect::WsMessage;

fn exchange(store: &mut Store, uri: &str, headers: &[Header], body: &[u8]) -> EntryId {
    let ex = Exchange { method: "GET", uri: uri.as_bytes(), headers, websocket: false, replay_of: None };
    let id = store.begin(Instant::ZERO, 0, ex);
    store.respond(id, 200, headers);
    store.body_data(id, BodyOf::Response, body);
    store.body_end(id, BodyOf::Response, body.len() as u64, Instant::ZERO);
    id
}

/// A response filed whole is the entry the three steps give: the same head, body
/// (truncated past the limit), size, duration and bytes held.
#[test]
fn a_response_filed_whole_is_the_three_steps() {
    let config = InspectConfig { body_limit: 700, ..InspectConfig::default() };
    let h = [(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"))];
    let at = Instant::from_elapsed(std::time::Duration::from_millis(5));
    for body in [&b""[..], b"hello", &[7; 1000]] {
        let (mut steps, mut whole) = (Store::new(config.clone(), 1), Store::new(config.clone(), 1));
        let ex = Exchange { method: "GET", uri: b"/x", headers: &h, websocket: false, replay_of: None };
        let (a, b) = (steps.begin(Instant::ZERO, 0, ex), whole.begin(Instant::ZERO, 0, ex));
        steps.respond(a, 201, &h);
        steps.body_data(a, BodyOf::Response, body);
        steps.body_end(a, BodyOf::Response, body.len() as u64, at);
        whole.respond_whole(b, at, 201, &h, body);
        let mut rest = Store::new(config.clone(), 1);
        let c = rest.begin(Instant::ZERO, 0, ex);
        rest.respond(c, 201, &h);
        rest.respond_rest(c, at, body);
        assert_eq!((rest.get(c), rest.bytes()), (steps.get(a), steps.bytes()));
        let (ea, eb) = (steps.get(a).unwrap(), whole.get(b).unwrap());
        assert_eq!(ea, eb);
        assert_eq!(steps.response(ea), whole.response(eb));
        assert_eq!(steps.bytes(), whole.bytes());
        assert_eq!(eb.duration, Some(std::time::Duration::from_millis(5)));
    }
}

/// The heads and the response's body share one span: whatever the request head's
/// size (so wherever the response head starts), each part reads back as it was filed,
/// the response's head in a run of its own after the request's body (a link to the
/// request's head before it), and the store counts the bytes it holds.
#[test]
fn heads_and_the_response_body_read_back_apart_wherever_they_fall() {
    let res_h = [
        (http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain")),
        (
            http::HeaderName::from_static("x-long-response-header"),
            http::HeaderValue::from_static("0123456789abcdef0123"),
        ),
    ];
    for pad in (0..1200).step_by(37) {
        let value = http::HeaderValue::from_bytes(&vec![b'p'; pad]).unwrap();
        let req_h = [(http::header::HOST, http::HeaderValue::from_static("a.test")), (http::header::COOKIE, value)];
        let mut store = Store::new(InspectConfig { body_limit: 1000, ..InspectConfig::default() }, 1);
        let ex = Exchange { method: "POST", uri: b"/p?q=1", headers: &req_h, websocket: false, replay_of: None };
        let id = store.begin(Instant::ZERO, 0, ex);
        store.request_body(id, BodyCapture::of(b"request body", 1000));
        store.respond(id, 200, &res_h);
        let body: Vec<u8> = (0..1500u32).map(|i| i as u8).collect();
        store.body_data(id, BodyOf::Response, &body[..700]);
        store.body_data(id, BodyOf::Response, &body[700..]);
        store.body_end(id, BodyOf::Response, 1500, Instant::ZERO);
        let e = store.get(id).unwrap();
        let (req, res) = (store.request(e), store.response(e).unwrap());
        assert_eq!((req.method.as_str(), req.uri.as_str(), &req.headers[..]), ("POST", "/p?q=1", &req_h[..]));
        assert_eq!((req.body.data(), req.body.size()), (&b"request body"[..], 12));
        assert_eq!((res.status, &res.headers[..]), (200, &res_h[..]));
        assert_eq!((res.body.data(), res.body.size(), res.body.truncated()), (&body[..1000], 1500, true));
        let held = e.spans.iter().map(|s| s.len()).sum::<usize>() + LINK;
        assert_eq!((store.bytes(), e.weight()), (FIXED_WEIGHT + held, FIXED_WEIGHT), "pad {pad}");
    }
}

/// A target longer than the room made for a head (the head goes on field by field
/// from its first), a response head without fields, an empty body: each reads back
/// as filed, and the store counts only the bytes written.
#[test]
fn a_head_whose_first_field_is_larger_than_a_chunk_and_one_with_no_fields() {
    let uri = format!("/{}", "u".repeat(1500));
    let h = [(http::header::HOST, http::HeaderValue::from_static("a.test"))];
    let mut store = Store::new(InspectConfig::default(), 1);
    let ex = Exchange { method: "GET", uri: uri.as_bytes(), headers: &h, websocket: false, replay_of: None };
    let id = store.begin(Instant::ZERO, 0, ex);
    store.respond_whole(id, Instant::ZERO, 204, &[], b"");
    let e = store.get(id).unwrap();
    assert_eq!((store.request(e).uri, store.request(e).headers), (uri.clone(), h.to_vec()));
    let res = store.response(e).unwrap();
    assert_eq!((res.status, res.headers.len(), res.body.size()), (204, 0, 0));
    let written = 4 + 3 + 4 + uri.len() + 8 + 4 + 6;
    assert_eq!(store.bytes(), FIXED_WEIGHT + written);
}

/// A small exchange's heads and body are one run of the ring: it holds their bytes
/// (each field after its 4-byte length) and no more.
#[test]
fn a_small_exchange_holds_the_bytes_it_keeps() {
    let mut store = Store::new(InspectConfig::default(), 1);
    let h = [(http::header::HOST, http::HeaderValue::from_static("a.test"))];
    // `GET`, `/`, then `host: a.test` in the request and in the response.
    let heads = 4 + 3 + 4 + 1 + 2 * (4 + 4 + 4 + 6);
    exchange(&mut store, "/", &h, &[1; 1024]);
    assert_eq!(store.bytes(), FIXED_WEIGHT + heads + 1024);
    exchange(&mut store, "/", &h, b"tiny");
    assert_eq!(store.bytes(), 2 * FIXED_WEIGHT + 2 * heads + 1028);
}

/// A WebSocket's messages, counted as they come and go (fragments, previews cut
/// at the limit, the oldest dropped at the bound), weigh what weighing the entry
/// gives.
#[test]
fn websocket_messages_are_counted_as_the_entry_weighs() {
    let config = InspectConfig { ws_preview: 10, max_ws_messages: 5, ..InspectConfig::default() };
    let mut store = Store::new(config, 1);
    let ex = Exchange { method: "GET", uri: b"/ws", headers: &[], websocket: true, replay_of: None };
    let id = store.begin(Instant::ZERO, 0, ex);
    store.respond(id, 101, &[]);
    for i in 0..40u64 {
        let dir = if i % 3 == 0 { Direction::In } else { Direction::Out };
        let data = vec![b'm'; (i as usize * 7) % 30];
        store.ws_message(id, i, dir, i % 2 == 0, i % 4 != 1, &data);
        let e = store.get(id).unwrap();
        assert_eq!((store.bytes(), e.held), (e.weight() + store.ring.held(), e.weight()), "message {i}");
    }
    let ws = store.get(id).unwrap().websocket.as_ref().unwrap().lock();
    assert_eq!(ws.len(), 5);
    assert!(ws.messages().all(|m| m.preview.len() <= 10));
}

/// At its bound the ring turns in place: what it keeps is what a plain list that
/// drops its oldest message keeps (the most recent messages, in order, each with
/// its own direction, time, kind, size and preview, fragments added to the last
/// message of their direction), whatever the sizes of the previews it reuses.
#[test]
fn a_full_message_ring_keeps_the_most_recent_messages_as_a_plain_list_would() {
    let config = InspectConfig { ws_preview: 12, max_ws_messages: 6, ..InspectConfig::default() };
    let mut store = Store::new(config, 1);
    let ex = Exchange { method: "GET", uri: b"/ws", headers: &[], websocket: true, replay_of: None };
    let id = store.begin(Instant::ZERO, 0, ex);
    let mut model: Vec<WsMessage> = Vec::new();
    let mut dropped = 0;
    for i in 0..200u64 {
        let dir = if i % 3 == 0 { Direction::In } else { Direction::Out };
        let (binary, first) = (i % 2 == 0, i % 7 != 3);
        let data: Vec<u8> = (0..(i * 5 % 40) as u8).map(|b| b ^ i as u8).collect();
        store.ws_message(id, i, dir, binary, first, &data);
        match model.iter_mut().rev().find(|m| m.direction == dir).filter(|_| !first) {
            Some(m) => {
                m.size += data.len() as u64;
                let room = 12 - m.preview.len();
                m.preview.extend_from_slice(&data[..data.len().min(room)]);
            }
            None => {
                let preview = data[..data.len().min(12)].to_vec();
                model.push(WsMessage { direction: dir, unix_nanos: i, binary, size: data.len() as u64, preview });
                if model.len() > 6 {
                    model.remove(0);
                    dropped += 1;
                }
            }
        }
        let ws = store.get(id).unwrap().websocket.as_ref().unwrap().lock();
        assert_eq!((ws.messages().cloned().collect::<Vec<_>>(), ws.dropped), (model.clone(), dropped), "{i}");
        drop(ws);
        let e = store.get(id).unwrap();
        assert_eq!((store.bytes(), e.held), (e.weight() + store.ring.held(), e.weight()), "message {i}");
    }
}

/// A recorder's messages, filed through the session's handle (without the store's
/// lock), are counted in steps: the store's count for the session is at least what
/// its messages hold and less than two steps over it, moves only when they leave
/// their step (never for a steady session's messages), and bounds the store as
/// before: a session evicted (or cleared) under its recorder gives its messages
/// back and keeps no more.
#[test]
fn a_recorders_messages_are_counted_in_steps_and_an_evicted_session_keeps_none() {
    use crate::inspect::record::WS_WEIGHT_STEP;
    let config = InspectConfig { max_bytes: 64 * 1024, ws_preview: 100, max_ws_messages: 200, ..Default::default() };
    let mut store = Store::new(config.clone(), 1);
    let ex = Exchange { method: "GET", uri: b"/ws", headers: &[], websocket: true, replay_of: None };
    let id = store.begin(Instant::ZERO, 0, ex);
    let ws = store.ws_session(id).unwrap();
    let mut reports = 0;
    for i in 0..600u64 {
        // Sizes that vary, fragments among them, then whole messages of 50 bytes
        // each (a steady session's).
        let len = if i < 300 { (i as usize * 13) % 150 } else { 50 };
        let (dir, first) = (if i % 2 == 0 { Direction::In } else { Direction::Out }, i >= 300 || i % 5 != 4);
        if let Some(weight) = ws.record(dir, i, false, first, &vec![b'x'; len]) {
            store.ws_weight(id, weight);
            reports += 1;
            assert!(i < 500, "message {i} of a steady session moved the count");
        }
        let held = ws.lock().held;
        let e = store.get(id).unwrap();
        assert!((held..held + 2 * WS_WEIGHT_STEP).contains(&e.ws_weight), "message {i}: {} for {held}", e.ws_weight);
        assert_eq!((store.bytes(), e.held), (e.weight() + store.ring.held(), e.weight()), "message {i}");
    }
    assert!(reports <= 20, "{reports} reports for 600 messages");
    // Other entries push the session out of the store: its messages go with it.
    while store.get(id).is_some() {
        exchange(&mut store, "/x", &[], &[1; 1000]);
        assert!(store.bytes() <= config.max_bytes);
    }
    let (kept, held) = {
        let s = ws.lock();
        (s.len(), s.held)
    };
    assert_eq!((kept, held), (0, 0));
    assert_eq!(ws.record(Direction::In, 0, false, true, b"late"), None);
    assert!(ws.lock().is_empty());
    // A cleared store lets its sessions go the same way.
    let ex = Exchange { method: "GET", uri: b"/ws2", headers: &[], websocket: true, replay_of: None };
    let id = store.begin(Instant::ZERO, 0, ex);
    let ws = store.ws_session(id).unwrap();
    assert!(ws.record(Direction::In, 0, false, true, b"kept").is_some());
    store.clear();
    assert!(ws.lock().is_empty());
    assert_eq!(ws.record(Direction::In, 1, false, true, b"late"), None);
    assert!(ws.lock().is_empty());
}

/// Thousands of small entries evicted for large ones, and back: the ring the store
/// touched never exceeds its bound (nor, while only small entries came, the bound
/// less their weights), the entries' deque never holds more than its entries are
/// counted for (and its slack), and what it reads back is what it kept.
#[test]
fn memory_held_is_memory_counted_whatever_the_sizes() {
    let config = InspectConfig { max_bytes: 1 << 20, body_limit: 64 * 1024, ..InspectConfig::default() };
    let mut store = Store::new(config, 1);
    let h = [(http::header::ACCEPT, http::HeaderValue::from_static("*/*"))];
    let deque = |store: &Store| {
        let (held, counted) = (store.entries.capacity() * size_of::<Entry>(), store.len() * FIXED_WEIGHT);
        assert!(held <= counted + ENTRIES_SLACK, "{held} bytes of deque for {} entries", store.len());
    };
    for round in 0..3 {
        for i in 0..5000 {
            exchange(&mut store, &format!("/small/{round}/{i}"), &h, &[1; 100]);
            deque(&store);
        }
        if round == 0 {
            // The ring went round where the entries' weights left it room: its buffer
            // and the entries within the bound (and a step the buffer is zeroed in).
            let (ring, entries) = (store.ring.allocated(), store.len() * FIXED_WEIGHT);
            assert!(ring + entries <= (1 << 20) + 64 * 1024, "{ring} + {entries}");
        }
        for i in 0..100 {
            exchange(&mut store, &format!("/big/{round}/{i}"), &h, &vec![2; 100_000]);
            deque(&store);
        }
        assert!(store.bytes() <= 1 << 20);
        let allocated = store.ring.allocated();
        assert!(allocated <= 1 << 20, "{allocated} bytes of ring");
    }
    let newest = store.newest_first().next().unwrap();
    let res = store.response(newest).unwrap();
    assert_eq!((res.body.data().len(), res.body.size(), res.body.truncated()), (64 * 1024, 100_000, true));
    assert_eq!(store.request(newest).uri, "/big/2/99");
}

/// A head filed from a header block (a RESPONSE's, as the client files it: kept as
/// the block, one copy, [`head::Block`]) reads back as the same head filed from its
/// typed list, whatever its size against the room made for a head and the store's: field
/// counts from none to forty, values of every length up to 700 bytes, repeated
/// names, obs-text, both field codings. A store too small for a head keeps a
/// prefix of its fields, as it does of a list's (not the same prefix: the two
/// take different room), and never more than its bound.
#[test]
fn a_head_kept_as_its_block_reads_back_as_its_list() {
    use crate::frame::{FieldCoding, HeaderBlock};
    let value = |i: usize| {
        let mut v = vec![b'a' + (i % 26) as u8; (i * 37) % 700];
        if i.is_multiple_of(5) && !v.is_empty() {
            v[0] = 0x80 + (i % 100) as u8; // obs-text: not UTF-8
        }
        http::HeaderValue::from_bytes(&v).unwrap()
    };
    for max_bytes in [InspectConfig::default().max_bytes, 4096, 1024] {
        for coding in [FieldCoding::Text, FieldCoding::Indexed] {
            let config = InspectConfig { max_bytes, ..InspectConfig::default() };
            let (mut listed, mut blocked) = (Store::new(config.clone(), 1), Store::new(config, 1));
            for n in 0..40 {
                let h: Vec<Header> = (0..n)
                    .map(|i| match i % 3 {
                        0 => (http::header::ACCEPT, value(i + n)),
                        1 => (http::HeaderName::from_static("x-field"), value(i * n)),
                        _ => (http::header::USER_AGENT, value(i)),
                    })
                    .collect();
                let block = HeaderBlock::from_headers(&h, coding);
                assert!(block.block().is_some());
                let uri = format!("/{}", "u".repeat(n * 13));
                let ex =
                    Exchange { method: "GET", uri: uri.as_bytes(), headers: &h[..], websocket: false, replay_of: None };
                let a = listed.begin(Instant::ZERO, 0, ex);
                let ex_block =
                    Exchange { method: "GET", uri: uri.as_bytes(), headers: &block, websocket: false, replay_of: None };
                let b = blocked.begin(Instant::ZERO, 0, ex_block);
                listed.respond_whole(a, Instant::ZERO, 200, &h[..], b"body");
                blocked.respond_whole(b, Instant::ZERO, 200, &block, b"body");
                let what = format!("{n} fields, {coding:?}, {max_bytes} bytes");
                assert!(blocked.bytes() <= max_bytes, "{what}");
                let (Some(ea), Some(eb)) = (listed.get(a), blocked.get(b)) else { continue };
                let (qa, qb) = (listed.request(ea), blocked.request(eb));
                let (ra, rb) = (listed.response(ea).unwrap(), blocked.response(eb).unwrap());
                assert_eq!((&qb.method, &qb.uri), (&qa.method, &qa.uri), "{what}");
                assert_eq!((rb.status, rb.body.data()), (ra.status, ra.body.data()), "{what}");
                if max_bytes == InspectConfig::default().max_bytes {
                    assert_eq!((qb, rb), (qa, ra), "{what}");
                } else {
                    // Each a prefix of the head (the whole of it when it fitted).
                    assert!(h.starts_with(&qb.headers) && h.starts_with(&rb.headers), "{what}");
                    assert!(h.starts_with(&qa.headers) && h.starts_with(&ra.headers), "{what}");
                }
            }
        }
    }
}

/// A block's edits for a raw request ([`head::Edits::Origin`]) read back as the
/// list they stand for: `te` fields dropped and `te: trailers` last if one of them was
/// that (any other `te` is not forwarded); a chosen `Host`
/// first when the block has none, else each `Host` value replaced.
#[test]
fn a_raw_requests_block_reads_back_with_the_origins_rules() {
    use crate::frame::{FieldCoding, HeaderBlock};
    use head::{Block, Edits};
    let f = |n: &'static str, v: &'static str| (http::HeaderName::from_static(n), http::HeaderValue::from_static(v));
    let with_host = vec![f("te", "gzip"), f("host", "a.test"), f("x-a", "1"), f("te", "trailers"), f("x-a", "2")];
    let without = vec![f("accept", "*/*"), f("te", "x")];
    for coding in [FieldCoding::Text, FieldCoding::Indexed] {
        for (h, host, want) in [
            (&with_host, None, vec![f("host", "a.test"), f("x-a", "1"), f("x-a", "2"), f("te", "trailers")]),
            (&with_host, Some("o:1"), vec![f("host", "o:1"), f("x-a", "1"), f("x-a", "2"), f("te", "trailers")]),
            (&without, None, vec![f("accept", "*/*")]),
            (&without, Some("o:1"), vec![f("host", "o:1"), f("accept", "*/*")]),
        ] {
            let block = HeaderBlock::from_headers(h, coding);
            let first = !h.iter().any(|(n, _)| n == http::header::HOST);
            let edits = Edits::Origin { host: host.map(str::as_bytes), first };
            let edited = Block { bytes: block.encoded(), edits };
            struct Raw<'a>(Block<'a>);
            impl HeadFields for Raw<'_> {
                fn field_count(&self) -> usize {
                    self.0.each().count()
                }
                fn each(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
                    self.0.each()
                }
                fn block(&self) -> Option<Block<'_>> {
                    Some(self.0)
                }
            }
            let mut store = Store::new(InspectConfig::default(), 1);
            let ex = Exchange { method: "GET", uri: b"/", headers: &Raw(edited), websocket: false, replay_of: None };
            let id = store.begin(Instant::ZERO, 0, ex);
            assert_eq!(store.request(store.get(id).unwrap()).headers, want, "{coding:?} {host:?}");
        }
    }
}

/// A head larger than the room made for one is kept whole, field by field; a store
/// too small for it keeps what fits, and one too small for any entry keeps none.
#[test]
fn large_heads_are_kept_whole_and_a_full_store_cuts_them() {
    let long = http::HeaderValue::from_bytes(&[b'v'; 3000]).unwrap();
    let h = [(http::header::COOKIE, long.clone())];
    let mut store = Store::new(InspectConfig::default(), 1);
    let id = exchange(&mut store, "/a", &h, b"ok");
    let e = store.get(id).unwrap();
    assert_eq!(store.request(e).headers, h.to_vec());
    assert_eq!(store.response(e).unwrap().headers, h.to_vec());

    let tiny = InspectConfig { max_bytes: 1024, ..InspectConfig::default() };
    let mut store = Store::new(tiny, 1);
    let id = exchange(&mut store, "/b", &h, b"ok");
    let e = store.get(id).unwrap();
    assert_eq!((store.request(e).uri.as_str(), store.request(e).headers.len()), ("/b", 0));
    assert!(store.bytes() <= 1024);
    let none = InspectConfig { max_bytes: 10, ..InspectConfig::default() };
    let mut store = Store::new(none, 1);
    let id = exchange(&mut store, "/c", &h, b"ok");
    assert!(store.get(id).is_none() && store.is_empty());
}

/// A request's target is filed as bytes ([`Exchange::uri`]: the client's raw OPEN's,
/// checked UTF-8 when read, with no second check) and read back as its text: the
/// request, the API's JSON (`entry_json`) and the bytes held are those of the target
/// filed field by field; for targets ASCII, UTF-8, empty and long, heads as a list and
/// as a kept block, in a roomy store and one that evicts. Bytes that are not UTF-8
/// (no shell files such) read back lossily, not as an error.
#[test]
fn a_target_filed_as_bytes_reads_back_as_its_text() {
    let long = format!("/{}", "é/x?y=1&".repeat(90));
    let h = [
        (http::header::HOST, http::HeaderValue::from_static("a.test")),
        (http::header::ACCEPT, http::HeaderValue::from_static("*/*")),
    ];
    let block = crate::frame::HeaderBlock::from_headers(&h, crate::frame::FieldCoding::Indexed);
    for max_bytes in [1 << 20, 2048] {
        let config = InspectConfig { max_bytes, ..InspectConfig::default() };
        let mut store = Store::new(config, 7);
        for (k, uri) in ["/1k", "/", "", "/ünï/cødé?q=ü", &long].iter().cycle().take(20).enumerate() {
            let at = Instant::from_elapsed(std::time::Duration::from_micros(k as u64));
            let bytes_before = store.bytes();
            let evicted_before = store.len();
            let id = if k % 2 == 0 {
                store.begin(
                    at,
                    5,
                    Exchange { method: "GET", uri: uri.as_bytes(), headers: &h[..], websocket: false, replay_of: None },
                )
            } else {
                store.begin(
                    at,
                    5,
                    Exchange {
                        method: "POST",
                        uri: uri.as_bytes(),
                        headers: &block,
                        websocket: false,
                        replay_of: None,
                    },
                )
            };
            store.respond_whole(id, at, 200, &h[..], b"body");
            let Some(e) = store.get(id) else { continue };
            let req = store.request(e);
            assert_eq!(
                (req.method.as_str(), req.uri.as_str(), &req.headers[..]),
                (["GET", "POST"][k % 2], *uri, &h[..]),
                "{k}"
            );
            let json = crate::inspect::json::entry_json(&store, e, false);
            assert!(json.contains(&format!("\"uri\":\"{uri}\"")), "{k}: {json}");
            // The target's bytes held once: its length and its length's 4 bytes.
            if store.len() > evicted_before && max_bytes == 1 << 20 {
                assert!(store.bytes() - bytes_before >= FIXED_WEIGHT + 4 + uri.len(), "{k}");
            }
        }
    }
    let mut store = Store::new(InspectConfig::default(), 7);
    let id = store.begin(
        Instant::ZERO,
        0,
        Exchange { method: "GET", uri: b"/a\xffb", headers: &h[..], websocket: false, replay_of: None },
    );
    assert_eq!(store.request(store.get(id).unwrap()).uri, "/a\u{fffd}b");
}
