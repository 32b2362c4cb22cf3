//! `Session::set_raw_request_heads`: a peer's HTTP OPEN reported with its header block
//! undecoded (`Event::OpenedRaw`) decodes to the head `Event::Opened` carries without
//! the setting, alone and batched; a WebSocket's OPEN and one with a field the typed
//! decoder drops still come typed; the stream is admitted the same way. A core without
//! `raw-heads` (the wasm client's) reports every head typed: these tests need it.
#![cfg(feature = "raw-heads")]

mod util;

use localtunnels_core::{Config, Event, Instant, RequestHead, StreamKind};
use util::{header, request, Pair};

fn heads() -> Vec<RequestHead> {
    vec![
        request("GET", "/", vec![]),
        request("GET", "/1k", vec![header("host", "cg.localhost:1"), header("x-forwarded-for", "127.0.0.1")]),
        request("OPTIONS", "*", vec![header("x-odd", "\t\u{e9}"), header("te", "gzip"), header("host", "a")]),
        RequestHead { kind: StreamKind::WebSocket, ..request("GET", "/ws", vec![header("host", "a")]) },
    ]
}

/// The events `pair`'s client has after taking `msgs`.
fn events(pair: &mut Pair, msgs: &[bytes::Bytes]) -> Vec<Event> {
    for msg in msgs {
        pair.client.session.handle_message(Instant::ZERO, msg.clone()).unwrap();
    }
    std::iter::from_fn(|| pair.client.session.poll_event()).collect()
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_raw_open_decodes_to_the_typed_one_alone_and_batched() {
    for batched in [false, true] {
        let mut raw = Pair::connected_with(Config::DEFAULT, Config::DEFAULT);
        let mut typed = Pair::connected_with(Config::DEFAULT, Config::DEFAULT);
        raw.client.session.set_raw_request_heads(true);
        let mut msgs = Vec::new();
        for (i, head) in heads().into_iter().enumerate() {
            let end = i % 2 == 0;
            raw.server.session.open(head.clone(), end).unwrap();
            typed.server.session.open(head, end).unwrap();
        }
        let session = &mut raw.server.session;
        if batched {
            msgs.extend(std::iter::from_fn(|| session.poll_transmit_batch()));
        } else {
            msgs.extend(std::iter::from_fn(|| session.poll_transmit()));
        }
        let (got, expected) = (events(&mut raw, &msgs), events(&mut typed, &msgs));
        assert_eq!(got.len(), expected.len());
        let mut taken_raw = 0;
        for (got, expected) in got.into_iter().zip(expected) {
            let got = match got {
                Event::OpenedRaw { id, head, end } => {
                    taken_raw += 1;
                    Event::Opened { id, head: head.decode(), end }
                }
                other => other,
            };
            assert_eq!(got, expected);
        }
        assert_eq!(taken_raw, 3, "every HTTP OPEN but the WebSocket's");
        assert_eq!(raw.client.session.stream_count(), typed.client.session.stream_count());
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_stream_id_out_of_order_closes_the_session_as_a_typed_one_does() {
    let mut pair = Pair::connected_with(Config::DEFAULT, Config::DEFAULT);
    pair.client.session.set_raw_request_heads(true);
    let open = |id| localtunnels_core::Frame::Open { id, head: request("GET", "/", vec![]), end: true }.encode();
    pair.client.session.handle_message(Instant::ZERO, open(4)).unwrap();
    assert!(pair.client.session.handle_message(Instant::ZERO, open(2)).is_err());
}
