//! `StreamReceiver::release_last_on_drop`: the credit of a body's last bytes goes back
//! when the stream's handles are dropped, not as the bytes are read. Between two real
//! `Connection`s over an in-memory socket, with a session window that holds less than
//! two bodies: were that credit lost, the second response could not be sent at all.

// These run on `#[tokio::test]` runtimes, which have tokio's timers.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use bytes::Bytes;
use localtunnels_core::{Config, RequestHead, ResponseHead, StreamKind};
use localtunnels_driver::{ConnEvent, StreamEvent};

mod conn_pair;

/// Session and stream windows of 64 KiB; each body is 40 KiB, in one frame.
const WINDOW: u32 = 64 * 1024;
const BODY: usize = 40 * 1024;

/// Ten exchanges one after the other, each reading its body whole (the end with the
/// bytes) and then dropping the receiver and the sender in turn in either order:
/// every body's credit comes back, or the next response waits for it forever.
#[tokio::test]
async fn the_last_bytes_credit_comes_back_with_the_stream() {
    let config = Config { stream_window: WINDOW, session_window: WINDOW, ..Config::default() };
    let (a, b) = tokio::io::duplex(256 * 1024);
    let (server, _client, mut client_events) = conn_pair::pair_over(config, a, b).await;
    for round in 0..10 {
        let head = RequestHead { kind: StreamKind::Http, method: "GET".into(), target: "/".into(), headers: vec![] };
        let (tx, mut rx) = server.open(head, true).expect("open").split();
        rx.release_last_on_drop();
        let Some(ConnEvent::Incoming { stream, .. }) = client_events.recv().await else {
            panic!("the client got no stream");
        };
        let (client_tx, _client_rx) = stream.split();
        client_tx.respond(ResponseHead { status: 200, headers: vec![] }, false).expect("respond");
        let sender = tokio::spawn(async move { client_tx.send_last(Bytes::from(vec![7; BODY])).await });
        // A lost grant leaves the sender waiting for credit: a bounded wait makes that
        // a failure rather than a hang.
        let read = async {
            let mut body = 0;
            while let Some(event) = rx.recv().await {
                match event {
                    StreamEvent::Data { data, end } => {
                        body += data.len();
                        if end {
                            break;
                        }
                    }
                    StreamEvent::Response { .. } => {}
                    other => panic!("unexpected event {other:?}"),
                }
            }
            body
        };
        let body = tokio::time::timeout(Duration::from_secs(20), read).await.expect("the body did not end");
        assert_eq!(body, BODY, "round {round}");
        tokio::time::timeout(Duration::from_secs(20), sender)
            .await
            .expect("the response's sender waited for credit")
            .expect("sender task")
            .expect("send_last");
        if round % 2 == 0 {
            drop(rx);
            drop(tx);
        } else {
            drop(tx);
            drop(rx);
        }
    }
}
