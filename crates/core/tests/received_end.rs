//! A stream finished by a frame received is removed after its event, not before it
//! (`Session::remove_finished`, or the session's next call): what the peer sees must
//! not change. A frame for the stream after its end, in the same batch or in a
//! message of its own, gets the answer it got when the removal came at once, and a
//! batch of any number of ends keeps one stream waiting, not one per end.

mod util;

use bytes::{BufMut, Bytes, BytesMut};
use localtunnels_core::{Frame, ResetCode, ResponseHead, StreamId};
use util::Pair;

/// A `BATCH` message around `frames`.
fn batch_of(frames: &[Frame]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(0x30);
    b.put_u32(0);
    for f in frames {
        let e = f.encode();
        b.put_u32(e.len() as u32);
        b.put_slice(&e);
    }
    b.freeze()
}

/// A response of `body` to stream `id`, its end on the body, then a frame of each kind
/// the stream can no longer take: a late DATA and a RESET.
fn ended_then_late(id: StreamId, body: &'static [u8]) -> Vec<Frame> {
    vec![
        Frame::Response { id, head: ResponseHead { status: 200, headers: vec![] }, end: false },
        Frame::Data { id, data: Bytes::from_static(body), end: true },
        Frame::Data { id, data: Bytes::from_static(b"late"), end: false },
        Frame::Reset { id, code: ResetCode::Cancel, message: "late".into() },
    ]
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn frames_after_a_streams_end_are_ignored_in_a_batch_as_they_are_alone() {
    let mut pair = Pair::connected();
    let (batched, alone) = (pair.server.get("/batched"), pair.server.get("/alone"));
    pair.drive();

    // One message: the end, then the late frames behind it in the same batch, which
    // must find the stream gone (else the DATA is an error that closes the session).
    pair.inject_to_server(batch_of(&ended_then_late(batched, b"one"))).unwrap();
    // The same frames, a message each.
    for frame in ended_then_late(alone, b"two") {
        pair.inject_to_server(frame.encode()).unwrap();
    }
    for (id, body) in [(batched, b"one"), (alone, b"two")] {
        let log = pair.server.log(id);
        assert_eq!((log.body.as_slice(), log.end, log.reset.is_none()), (&body[..], true, true), "stream {id}");
    }
    assert!(pair.server.closed().is_none(), "{:?}", pair.server.closed());
    assert_eq!(pair.server.session.stream_count(), 0);
    // The late payload was granted back to the session: the peer may send as much again.
    pair.drive();
    pair.server.check();
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_batch_of_a_thousand_ends_keeps_one_stream_waiting_for_its_removal() {
    let mut pair = Pair::connected();
    let ids: Vec<StreamId> = (0..1000).map(|i| pair.server.get(&format!("/{i}"))).collect();
    pair.drive();
    assert_eq!(pair.server.session.stream_count(), 1000);

    // Every response whole in its head (no body): each ends its stream.
    let ends: Vec<Frame> = ids
        .iter()
        .map(|&id| Frame::Response { id, head: ResponseHead { status: 204, headers: vec![] }, end: true })
        .collect();
    pair.server.session.handle_message(pair.now, batch_of(&ends)).unwrap();
    // Each end was removed before the next frame: only the last waits for the driver.
    assert_eq!(pair.server.session.stream_count(), 1, "streams left after the batch");
    assert!(pair.server.session.has_finished());
    pair.server.drain(pair.now);
    pair.server.session.remove_finished();
    assert_eq!(pair.server.session.stream_count(), 0);
    assert!(!pair.server.session.has_finished());
    assert!(ids.iter().all(|&id| pair.server.log(id).end));
    pair.server.check();
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_finished_stream_waiting_for_its_removal_is_gone_at_the_next_call() {
    let mut pair = Pair::connected();
    let id = pair.server.get("/");
    pair.drive();
    let end = Frame::Response { id, head: ResponseHead { status: 204, headers: vec![] }, end: true };
    pair.server.session.handle_message(pair.now, end.encode()).unwrap();
    assert_eq!(pair.server.session.stream_count(), 1, "removed after the driver handled the event");
    // A command on the stream (a reset the driver would send) settles first: the stream
    // is gone, as it was when the end came, and nothing is sent for it.
    pair.server.session.reset(id, ResetCode::Cancel, "gone");
    assert_eq!(pair.server.session.stream_count(), 0);
    assert!(pair.server.session.poll_transmit().is_none());
    pair.server.drain(pair.now);
    assert!(pair.server.log(id).end);
}
