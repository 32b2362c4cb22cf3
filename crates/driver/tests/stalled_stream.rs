//! A stream whose reader stalls holds back only itself: between two real
//! `Connection`s with the default windows (1 MiB a stream, 8 MiB the session), bodies
//! of 64 KiB frames larger than a stream window, one of them never read while another
//! is read to its end. The tunnel's reader sizes its buffers by the bytes its streams
//! hold (`conn_reader::SIZED_WHILE_HELD`): before the stall it reads one frame to a
//! buffer, during it the usual way; either way every body comes whole, and what the
//! stalled stream keeps in the process is bounded by its window.

// These run on `#[tokio::test]` runtimes, which have tokio's timers.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use bytes::Bytes;
use localtunnels_core::{Config, RequestHead, ResponseHead, StreamKind};
use localtunnels_driver::{ConnEvent, ConnEvents, Connection, StreamEvent, StreamReceiver};

mod conn_pair;

/// Each body: three stream windows, in frames of 64 KiB.
const BODY: usize = 3 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

/// The body's bytes: which stream, and where in it.
fn chunk(tag: u8, at: usize) -> Bytes {
    (at..at + CHUNK).map(|i| (i % 251) as u8 ^ tag).collect()
}

/// Opens a GET from the server's side; the client answers it with [`BODY`] bytes of
/// `tag`'s pattern, on a task of its own. Returns the server's receiver.
async fn download(server: &Connection, client_events: &mut ConnEvents, tag: u8) -> StreamReceiver {
    let head = RequestHead { kind: StreamKind::Http, method: "GET".into(), target: "/".into(), headers: vec![] };
    let (_tx, rx) = server.open(head, true).expect("open").split();
    let Some(ConnEvent::Incoming { stream, .. }) = client_events.recv().await else {
        panic!("the client got no stream");
    };
    let (client_tx, _client_rx) = stream.split();
    tokio::spawn(async move {
        client_tx.respond(ResponseHead { status: 200, headers: vec![] }, false).expect("respond");
        for at in (0..BODY).step_by(CHUNK) {
            if client_tx.send_data(chunk(tag, at)).await.is_err() {
                return;
            }
        }
        client_tx.finish().expect("finish");
    });
    rx
}

/// Reads `rx`'s body to its end and checks it byte by byte.
async fn read_whole(rx: &mut StreamReceiver, tag: u8) {
    let read = async {
        let mut body = Vec::with_capacity(BODY);
        while let Some(event) = rx.recv().await {
            match event {
                StreamEvent::Data { data, end } => {
                    body.extend_from_slice(&data);
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
    let body = tokio::time::timeout(Duration::from_secs(30), read).await.expect("the body did not end");
    assert_eq!(body.len(), BODY, "stream {tag}");
    let want: Vec<u8> = (0..BODY).step_by(CHUNK).flat_map(|at| chunk(tag, at)).collect();
    assert!(body == want, "stream {tag}'s bytes differ");
}

fn held(server: &Connection) -> u64 {
    server.with_session(|s| s.received_held())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_holds_its_window_and_another_is_still_served() {
    let config = Config::default();
    let window = u64::from(config.stream_window);
    let (a, b) = tokio::io::duplex(256 * 1024);
    let (server, _client, mut client_events) = conn_pair::pair_over(config, a, b).await;

    // Nothing held: read through frame-sized buffers.
    let mut first = download(&server, &mut client_events, 1).await;
    read_whole(&mut first, 1).await;
    drop(first);

    // One reader stalls; another stream is read to its end meanwhile.
    let mut stalled = download(&server, &mut client_events, 2).await;
    let mut served = download(&server, &mut client_events, 3).await;
    read_whole(&mut served, 3).await;
    drop(served);
    // The stalled stream holds at most its window in the process, however much its
    // sender has left to send.
    let during = held(&server);
    assert!(during > 0 && during <= window, "{during} bytes held: none, or over the stream window");
    // And the tunnel still serves a new stream while it holds them.
    let mut next = download(&server, &mut client_events, 4).await;
    read_whole(&mut next, 4).await;
    drop(next);

    // Once read, the stalled stream's body comes whole too, and nothing stays held.
    read_whole(&mut stalled, 2).await;
    drop(stalled);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while held(&server) > 0 {
        assert!(tokio::time::Instant::now() < deadline, "{} bytes still held", held(&server));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
