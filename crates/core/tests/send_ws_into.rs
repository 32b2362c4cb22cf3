//! `Session::send_ws_into`: a whole WebSocket message written straight into the
//! driver's buffer is the frame `send_ws` then `poll_transmit` would send, with the
//! same bookkeeping after it; it declines, changing nothing, whenever the queued path
//! would not send the message at once, whole and first.

mod util;

use bytes::{Bytes, BytesMut};
use localtunnels_core::StreamError;
use util::{pattern, Pair};

/// A pair with a WebSocket open (the server's visitor side sends), and its stream id.
fn open_ws() -> (Pair, u32) {
    let mut pair = Pair::connected();
    let id = pair.server.open_ws("/echo");
    pair.drive();
    pair.client.respond(id, 101, vec![], false);
    pair.drive();
    (pair, id)
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_message_written_straight_is_the_queued_paths_frame() {
    let (mut queued, id) = open_ws();
    let (mut direct, _) = open_ws();
    for (binary, data) in [
        (true, pattern(32, 1)),
        (false, Bytes::from_static(b"hello")),
        (true, Bytes::new()),
        (true, pattern(60_000, 2)),
    ] {
        let n = queued.server.session.send_ws(id, binary, data.clone(), true).unwrap();
        assert_eq!(n, data.len());
        let want = queued.server.session.poll_transmit().expect("the queued message");
        assert!(queued.server.session.poll_transmit().is_none());

        let mut out = BytesMut::new();
        assert_eq!(direct.server.session.send_ws_into(id, binary, &data, &mut out), Ok(true));
        assert_eq!(&out[..], &want[..], "a {}-byte message", data.len());
        assert!(!direct.server.session.has_transmit(), "nothing queued behind it");
        assert!(direct.server.session.poll_event().is_none() && queued.server.session.poll_event().is_none());
        // The peer gets it as it would the queued one.
        direct.inject_to_client(Bytes::from(out.to_vec())).unwrap();
        queued.inject_to_client(want).unwrap();
    }
    queued.drive();
    direct.drive();
    assert_eq!(direct.client.log(id).messages, queued.client.log(id).messages);
    assert_eq!(direct.client.log(id).messages.len(), 4);
    // The credit was taken as the queued path takes it: the next large message is
    // cut at the same place on both.
    let big = pattern(1024 * 1024, 3);
    assert_eq!(
        direct.server.session.send_ws(id, true, big.clone(), true),
        queued.server.session.send_ws(id, true, big, true)
    );
    direct.server.check();
    queued.server.check();
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn it_declines_what_the_queued_path_would_not_send_whole_and_first() {
    let (mut pair, id) = open_ws();
    let s = &mut pair.server.session;
    let mut out = BytesMut::new();
    // Over the frame's payload limit: the queued path cuts it into fragments.
    assert_eq!(s.send_ws_into(id, true, &pattern(70_000, 1), &mut out), Ok(false));
    // Over the stream's credit (1 MiB): only part of it would go.
    assert_eq!(s.send_ws_into(id, true, &pattern(1024 * 1024 + 1, 2), &mut out), Ok(false));
    assert!(out.is_empty() && !s.has_transmit(), "nothing written, nothing queued");
    // Something queued first: it must go first.
    s.send_ws(id, false, Bytes::from_static(b"first"), true).unwrap();
    assert_eq!(s.send_ws_into(id, false, b"second", &mut out), Ok(false));
    assert!(out.is_empty());
    s.send_ws(id, false, Bytes::from_static(b"second"), true).unwrap();
    // Errors are send_ws's, with nothing written.
    pair.drive();
    let s = &mut pair.server.session;
    assert_eq!(s.send_ws_into(id + 2, true, b"x", &mut out), Err(StreamError::UnknownStream(id + 2)));
    assert!(out.is_empty() && !s.has_transmit());
    pair.drive();
    let got: Vec<Vec<u8>> = pair.client.log(id).messages.iter().map(|(_, m)| m.clone()).collect();
    assert_eq!(got, vec![b"first".to_vec(), b"second".to_vec()]);
    pair.server.check();
}
