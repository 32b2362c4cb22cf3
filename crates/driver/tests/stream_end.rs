//! A stream's last bytes and its end (`StreamSender::send_last`, and with the head in
//! one step, `StreamSender::respond_whole`) between two real `Connection`s over an
//! in-memory socket: whether the window takes the bytes at once or only in parts, the
//! peer gets the head, every byte and then the end, once.

// These run on `#[tokio::test]` runtimes, which have tokio's timers.
#![allow(clippy::disallowed_methods)]

use bytes::Bytes;
use localtunnels_core::{Config, RequestHead, ResponseHead, StreamKind};
use localtunnels_driver::{ConnEvent, ConnEvents, Connection, StreamEvent, StreamReceiver};

mod conn_pair;

/// A server and a client connection, handshake done.
async fn pair(stream_window: u32) -> (Connection, Connection, ConnEvents) {
    let config = Config { stream_window, ..Config::default() };
    let (a, b) = tokio::io::duplex(64 * 1024);
    conn_pair::pair_over(config, a, b).await
}

/// How the client answers.
#[derive(Clone, Copy)]
enum Answer {
    /// `respond`, then `send_last`.
    HeadThenLast,
    /// `respond_whole`, then `send_last` for what the window did not take.
    Whole,
}

/// The server opens a request; the client answers with `body` as `answer` says.
/// Returns what the server read: the status, the body, and how many events said `end`.
async fn exchange(stream_window: u32, body: Bytes, answer: Answer) -> (u16, Vec<u8>, usize) {
    let (server, _client, mut client_events) = pair(stream_window).await;
    let head = RequestHead { kind: StreamKind::Http, method: "GET".into(), target: "/".into(), headers: vec![] };
    let (_tx, rx) = server.open(head, true).expect("open").split();
    let Some(ConnEvent::Incoming { stream, .. }) = client_events.recv().await else {
        panic!("the client got no stream");
    };
    let (tx, _client_rx) = stream.split();
    let head = ResponseHead { status: 200, headers: vec![] };
    let rest = match answer {
        Answer::HeadThenLast => {
            tx.respond(head, false).expect("respond");
            body
        }
        Answer::Whole => {
            let taken = tx.respond_whole(head, &body).expect("respond_whole");
            assert!(taken <= stream_window as usize, "{taken} bytes taken past the window");
            body.slice(taken..)
        }
    };
    let sender = tokio::spawn(async move {
        match (answer, rest.is_empty()) {
            // All of it went with the head, and the end too.
            (Answer::Whole, true) => Ok(()),
            _ => tx.send_last(rest).await,
        }
    });
    // A lost end would leave the reader waiting: a bounded wait makes that a failure.
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), read_response(rx))
        .await
        .expect("the response did not end");
    sender.await.expect("sender task").expect("send_last");
    read
}

async fn read_response(mut rx: StreamReceiver) -> (u16, Vec<u8>, usize) {
    let mut status = 0;
    let mut body = Vec::new();
    let mut ends = 0;
    while let Some(event) = rx.recv().await {
        match event {
            StreamEvent::Response { head, end } => {
                status = head.status;
                ends += usize::from(end);
            }
            StreamEvent::Data { data, end } => {
                body.extend_from_slice(&data);
                if end {
                    ends += 1;
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    (status, body, ends)
}

const BOTH: [Answer; 2] = [Answer::HeadThenLast, Answer::Whole];

#[tokio::test]
async fn a_last_chunk_within_the_window_arrives_whole_and_ended() {
    let body: Bytes = (0..4000u32).map(|i| i as u8).collect::<Vec<u8>>().into();
    for answer in BOTH {
        let (status, read, ends) = exchange(256 * 1024, body.clone(), answer).await;
        assert_eq!(status, 200);
        assert_eq!(read, body);
        assert_eq!(ends, 1);
    }
}

#[tokio::test]
async fn a_last_chunk_larger_than_the_window_arrives_whole_and_ended() {
    // Six windows' worth: the first step takes one window, the rest waits for credit.
    let body: Bytes = (0..6 * 16 * 1024u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into();
    for answer in BOTH {
        let (status, read, ends) = exchange(16 * 1024, body.clone(), answer).await;
        assert_eq!(status, 200);
        assert_eq!(read.len(), body.len());
        assert_eq!(read, body);
        assert_eq!(ends, 1);
    }
}

#[tokio::test]
async fn an_empty_last_chunk_just_ends() {
    for answer in BOTH {
        let (status, read, ends) = exchange(256 * 1024, Bytes::new(), answer).await;
        assert_eq!(status, 200);
        assert!(read.is_empty());
        assert_eq!(ends, 1);
    }
}

/// `try_recv` gives what already came and never waits: nothing before the response,
/// the body that came in the head's write right after the head, nothing after that.
#[tokio::test]
async fn try_recv_takes_what_came_with_the_head_and_waits_for_nothing() {
    let (server, _client, mut client_events) = pair(64 * 1024).await;
    let head = RequestHead { kind: StreamKind::Http, method: "GET".into(), target: "/".into(), headers: vec![] };
    let (_tx, mut rx) = server.open(head, true).expect("open").split();
    assert!(rx.try_recv().is_none(), "an event before the client answered");
    let Some(ConnEvent::Incoming { stream, .. }) = client_events.recv().await else {
        panic!("the client got no stream");
    };
    let (tx, _client_rx) = stream.split();
    let body = Bytes::from_static(b"hello");
    let taken = tx.respond_whole(ResponseHead { status: 200, headers: vec![] }, &body).expect("respond_whole");
    assert_eq!(taken, 5);
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
        .await
        .expect("no response in time")
        .expect("the stream ended without a response");
    assert!(matches!(first, StreamEvent::Response { end: false, .. }), "{first:?}");
    match rx.try_recv() {
        Some(Some(StreamEvent::Data { data, end: true })) => assert_eq!(&data[..], b"hello"),
        other => panic!("not the body and its end: {other:?}"),
    }
    assert!(rx.try_recv().is_none(), "an event after the end");
}
