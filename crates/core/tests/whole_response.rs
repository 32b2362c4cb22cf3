//! A whole response in one call (`Session::respond_whole_block`): a small body goes
//! past the stream's queue, yet the peer gets the bytes the queue's path sends
//! (`respond_block`, `send_data`, `finish`), in the same messages, with the same
//! credit taken and the same streams left; a body the window, the frame or the batch
//! does not take whole goes the queue's way.

mod util;

use bytes::Bytes;
use localtunnels_core::{
    features, Config, DecodeLimits, FieldCoding, Frame, HeaderBlock, HeaderName, HeaderValue, Instant, Limits,
    RequestHead, SentBlock, Session, StreamKind, Welcome, PROTOCOL_VERSION,
};
use util::{hello, pattern, Pair};

/// A client whose peer announced `features` and `limits`, with stream 2 (a GET whose
/// request ended, or not: `end`) and stream 4 (a POST still sending) opened by the
/// server, and stream 4's response and part of its body queued, unsent.
fn client(features: u32, limits: Limits, end: bool) -> Session {
    let mut client = Session::client(Config::DEFAULT, hello(), Instant::ZERO);
    while client.poll_transmit().is_some() {}
    let welcome = Welcome { version: PROTOCOL_VERSION, features, limits: Some(limits), ..Welcome::default() };
    client.handle_message(Instant::ZERO, Frame::Welcome(Box::new(welcome)).encode()).unwrap();
    let open = |id, end| {
        let head = RequestHead { kind: StreamKind::Http, method: "GET".into(), target: "/".into(), headers: vec![] };
        Frame::Open { id, head, end }.encode()
    };
    client.handle_message(Instant::ZERO, open(2, end)).unwrap();
    client.handle_message(Instant::ZERO, open(4, false)).unwrap();
    client
}

fn block(coding: FieldCoding, len: usize) -> HeaderBlock {
    let headers = vec![
        (HeaderName::from_static("content-type"), HeaderValue::from_static("text/plain")),
        (HeaderName::from_static("content-length"), HeaderValue::from(len)),
        (HeaderName::from_static("x-request-id"), HeaderValue::from_static("abc")),
    ];
    HeaderBlock::from_headers(&headers, coding)
}

/// Everything the session sends now, as a driver packs it (`poll_message`), and what
/// it then holds: the stream count after the write, the events.
fn drain(s: &mut Session) -> (Vec<Bytes>, usize, Vec<String>) {
    let mut out = Vec::new();
    while let Some(m) = s.poll_transmit_batch() {
        out.push(m);
    }
    s.remove_finished();
    s.check_invariants();
    let mut events = Vec::new();
    while let Some(e) = s.poll_event() {
        events.push(format!("{e:?}"));
    }
    (out, s.stream_count(), events)
}

/// The frames of `messages`, batches opened, grouped by stream in their order.
fn by_stream(messages: &[Bytes]) -> Vec<Frame> {
    let limits = DecodeLimits::default();
    let mut frames = Vec::new();
    for m in messages {
        match Frame::decode(m.clone(), &limits).unwrap() {
            Frame::Batch(inner) => frames.extend(inner),
            f => frames.push(f),
        }
    }
    let id = |f: &Frame| match f {
        Frame::Response { id, .. } | Frame::Data { id, .. } => *id,
        _ => 0,
    };
    frames.sort_by_key(id);
    frames
}

/// Stream 2's response of a `len`-byte body, by the queue's path and in one call (with
/// and without kept fields), from the same state: the same result, the same bytes.
fn alike(features: u32, limits: Limits, end: bool, len: usize, others: bool) {
    let data = pattern(len, 7);
    let run = |how: u8| {
        let mut s = client(features, limits, end);
        if others {
            // Another stream's head and data queued first: the whole response goes
            // in the same batch, after them.
            s.respond_block(4, 200, block(s.field_coding(), 10), false).unwrap();
            s.send_data(4, pattern(10, 1)).unwrap();
        }
        let coding = FieldCoding::Indexed;
        let mut kept = SentBlock::default();
        let taken = match how {
            0 => s.respond_block(2, 200, block(coding, len), false).and_then(|()| {
                let n = if len == 0 { 0 } else { s.send_data(2, data.clone())? };
                if n == len {
                    s.finish(2)?;
                }
                Ok(n)
            }),
            1 => s.respond_whole_block(2, 200, block(coding, len), &data, None),
            _ => s.respond_whole_block(2, 200, block(coding, len), &data, Some(&mut kept)),
        };
        s.check_invariants();
        let kept: Vec<(Vec<u8>, Vec<u8>)> = kept.fields().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
        (taken, drain(&mut s), kept, s)
    };
    for how in [1, 2] {
        let (queued, queued_out, _, mut q) = run(0);
        let (taken, out, kept, mut w) = run(how);
        let case = format!("features {features:#x}, limits {limits:?}, end {end}, {len} bytes, others {others}, {how}");
        assert_eq!(taken, queued, "{case}");
        if others {
            // Another stream's frames may go on either side of this one's: each
            // stream's frames arrive in the same order, in as many messages.
            assert_eq!(out.0.len(), queued_out.0.len(), "{case}");
            assert_eq!(by_stream(&out.0), by_stream(&queued_out.0), "{case}");
            assert_eq!((out.1, &out.2), (queued_out.1, &queued_out.2), "{case}");
        } else {
            assert_eq!(out, queued_out, "{case}");
        }
        if how == 2 {
            assert_eq!(kept.len(), 3, "{case}: the kept fields");
        }
        // What is left (a body the window did not take) goes on alike.
        if let Ok(n) = taken {
            if n < len {
                for s in [&mut q, &mut w] {
                    s.handle_message(Instant::ZERO, Frame::Window { id: 2, increment: 1 << 20 }.encode()).unwrap();
                    s.handle_message(Instant::ZERO, Frame::Window { id: 0, increment: 1 << 20 }.encode()).unwrap();
                    s.send_data(2, data.slice(n..)).unwrap();
                    s.finish(2).unwrap();
                }
                assert_eq!(drain(&mut w), drain(&mut q), "{case}: the rest");
            }
        }
        // The request's end, when it comes later, removes the stream alike.
        if !end {
            let ended = Frame::Data { id: 2, data: Bytes::new(), end: true }.encode();
            q.handle_message(Instant::ZERO, ended.clone()).unwrap();
            w.handle_message(Instant::ZERO, ended).unwrap();
            assert_eq!(drain(&mut w), drain(&mut q), "{case}: the request's end");
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_whole_response_sends_what_the_queues_path_sends() {
    let wide = Limits::from(&Config::DEFAULT);
    let narrow = Limits { stream_window: 1024, session_window: 1500, ..wide };
    let small_frames = Limits { max_frame: 1200, ..wide };
    let batch = features::BATCH | features::INDEXED_HEADERS;
    for features in [batch, features::BATCH, features::INDEXED_HEADERS, 0] {
        for limits in [wide, narrow, small_frames] {
            for end in [true, false] {
                for others in [false, true] {
                    for len in [0, 1, 1023, 1024, 1025, 1100, 1200, 1500, 4096, 70_000] {
                        alike(features, limits, end, len, others);
                    }
                }
            }
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_whole_response_refused_gives_the_heads_error_and_its_fields() {
    let mut s = client(features::BATCH | features::INDEXED_HEADERS, Limits::from(&Config::DEFAULT), true);
    let data = pattern(100, 3);
    let mut kept = SentBlock::default();
    // A status out of range: `respond_block`'s error, the fields back, nothing queued.
    let refused = s.respond_whole_block(2, 1000, block(FieldCoding::Indexed, 100), &data, Some(&mut kept));
    assert_eq!(refused.unwrap_err(), s.respond_block(2, 1000, block(FieldCoding::Indexed, 100), false).unwrap_err());
    assert_eq!(kept.fields().count(), 3);
    assert!(s.poll_transmit_batch().is_none(), "a refused head queues nothing");
    // Sent once; a second is refused as a second head is, and a body after it too.
    assert_eq!(s.respond_whole_block(2, 200, block(FieldCoding::Indexed, 100), &data, None), Ok(100));
    assert!(s.respond_whole_block(2, 200, block(FieldCoding::Indexed, 100), &data, None).is_err());
    assert!(s.send_data(2, data.clone()).is_err(), "the stream's sending ended");
    // An unknown stream.
    assert!(s.respond_whole_block(8, 200, block(FieldCoding::Indexed, 100), &data, None).is_err());
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn whole_responses_arrive_whole_with_the_windows_kept() {
    // Through the harness's link, its invariants checked after every step: many
    // streams, each answered whole at once, some within the window, some not.
    let mut pair = Pair::connected();
    let ids: Vec<_> = (0..8).map(|i| pair.server.get(&format!("/{i}"))).collect();
    pair.drive();
    let coding = pair.client.session.field_coding();
    for (i, &id) in ids.iter().enumerate() {
        let len = [0, 1, 1024, 64 * 1024, 300_000, 1 << 20, 2 << 20, 17][i];
        let data = pattern(len, i as u8);
        let taken = pair.client.session.respond_whole_block(id, 200, block(coding, len), &data, None).unwrap();
        if taken < len {
            pair.client.send_body(id, data.slice(taken..), true);
        }
        pair.client.drain(pair.now);
    }
    pair.drive();
    for (i, &id) in ids.iter().enumerate() {
        let len = [0, 1, 1024, 64 * 1024, 300_000, 1 << 20, 2 << 20, 17][i];
        let log = pair.server.log(id);
        assert_eq!(log.response.as_ref().map(|r| r.status), Some(200), "stream {id}");
        assert!(log.end, "stream {id}");
        assert_eq!(log.body, pattern(len, i as u8), "stream {id}");
    }
    assert_eq!(pair.client.session.stream_count(), 0);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_small_whole_response_goes_past_the_queue_and_its_streams_data() {
    // Stream 4's head and data queued first: by the queue's path stream 2's DATA
    // would follow stream 4's (control frames go first, then the ring), past the queue
    // it follows its own head. Each stream's own order is the same.
    let mut s = client(features::BATCH | features::INDEXED_HEADERS, Limits::from(&Config::DEFAULT), true);
    s.respond_block(4, 200, block(s.field_coding(), 10), false).unwrap();
    s.send_data(4, pattern(10, 1)).unwrap();
    let data = pattern(1024, 2);
    assert_eq!(s.respond_whole_block(2, 200, block(s.field_coding(), 1024), &data, None), Ok(1024));
    let (out, streams, _) = drain(&mut s);
    assert_eq!(out.len(), 1, "one batch");
    let Frame::Batch(frames) = Frame::decode(out[0].clone(), &DecodeLimits::default()).unwrap() else {
        panic!("not a batch")
    };
    let order: Vec<_> = frames
        .iter()
        .map(|f| match f {
            Frame::Response { id, .. } => ("response", *id),
            Frame::Data { id, end, .. } => (if *end { "data end" } else { "data" }, *id),
            f => panic!("{f:?}"),
        })
        .collect();
    assert_eq!(order, [("response", 4), ("response", 2), ("data end", 2), ("data", 4)]);
    // Stream 2 is gone after the write; stream 4 still sends.
    assert_eq!(streams, 1);
}
