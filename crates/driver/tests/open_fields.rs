//! `Connection::open_fields` between two real `Connection`s over an in-memory socket:
//! an OPEN written straight into the write half's buffer (no stream in flight, nothing
//! queued) and one queued behind a stream in flight reach the peer as the heads they
//! were written from, in order, whatever WebSocket header length their size takes; a
//! refused head leaves nothing behind on the wire.

// These run on `#[tokio::test]` runtimes, which have tokio's timers.
#![allow(clippy::disallowed_methods)]

use bytes::Bytes;
use localtunnels_core::{
    Config, HeaderName, HeaderValue, OpenError, RequestHead, ResponseHead, StreamKind, XForwarded,
};
use localtunnels_driver::{ConnEvent, ConnEvents, Connection, OpenWithinError, StreamEvent};

mod conn_pair;

/// The next stream the client gets: its head and end flag.
async fn incoming(events: &mut ConnEvents) -> (RequestHead, bool) {
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Some(ConnEvent::Incoming { head, end, .. }) => return (head, end),
                Some(_) => {}
                None => panic!("the client lost the connection"),
            }
        }
    });
    next.await.expect("no stream came")
}

/// Opens `target` on `server` with a field `x-pad` of `pad` bytes and an
/// `X-Forwarded-For`.
fn open(
    server: &Connection,
    method: &str,
    target: &str,
    pad: usize,
) -> Result<localtunnels_driver::StreamHandle, OpenError> {
    let pad = HeaderValue::from_str(&"p".repeat(pad)).unwrap();
    server.open_fields(StreamKind::Http, method, target.as_bytes(), true, |w| {
        w.push(&HeaderName::from_static("x-pad"), &pad);
        w.push_forwarded(XForwarded::For, &HeaderValue::from_static("10.0.0.1"));
    })
}

#[tokio::test]
async fn written_and_queued_opens_arrive_as_written() {
    // Sizes around the WebSocket header's 125-byte edge and past it (the OPEN adds its
    // own bytes around the pad; the 65535-byte edge is over the head's limit, and
    // `ws_codec`'s tests hold `binary_built` there).
    for pad in [0, 60, 100, 130, 1_000, 20_000] {
        // A new pair each time: the first OPEN meets an idle connection.
        let (a, b) = tokio::io::duplex(256 * 1024);
        let (server, _client, mut events) = conn_pair::pair_over(Config::default(), a, b).await;
        // Alone: written straight into the write half. A refused head first, which must
        // leave nothing on the wire and not take the stream.
        assert!(matches!(open(&server, "G T", "/", pad), Err(OpenError::InvalidHead("method"))));
        let first = open(&server, "GET", &format!("/first/{pad}"), pad).expect("open");
        // With the first in flight: queued, for the writer or the next write.
        let second = open(&server, "POST", &format!("/second/{pad}"), pad).expect("open");
        for (method, target) in [("GET", format!("/first/{pad}")), ("POST", format!("/second/{pad}"))] {
            let (head, end) = incoming(&mut events).await;
            assert_eq!((&*head.method, &*head.target, end), (method, target.as_str(), true));
            let fields: Vec<(&str, usize)> = head.headers.iter().map(|(n, v)| (n.as_str(), v.len())).collect();
            assert_eq!(fields, [("x-pad", pad), ("x-forwarded-for", 8)], "{target}");
        }
        drop((first, second));
    }
}

/// An OPEN written straight into the write half goes out before its stream's slot is
/// made, under the connection's lock: a peer that answers at once, from another
/// thread, finds the stream there. On a runtime of two threads the client answers each
/// stream as it comes (its events and its reader beside the opener's task); every
/// response reaches its handle (one dispatched before its slot existed would be
/// dropped, and the wait for it would time out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_that_comes_at_once_reaches_its_stream() {
    let (a, b) = tokio::io::duplex(256 * 1024);
    let (server, _client, mut events) = conn_pair::pair_over(Config::default(), a, b).await;
    let answerer = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let ConnEvent::Incoming { stream, .. } = event {
                let (tx, _rx) = stream.split();
                let head = ResponseHead { status: 200, headers: vec![] };
                tx.respond_whole(head, &Bytes::from_static(b"ok")).expect("respond_whole");
            }
        }
    });
    for i in 0..300 {
        // Read to its end, so that the next OPEN finds no stream in flight and takes
        // the straight way again.
        let (_tx, mut rx) = open(&server, "GET", &format!("/{i}"), 0).expect("open").split();
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            let (mut status, mut body) = (0, Vec::new());
            while let Some(event) = rx.recv().await {
                match event.typed() {
                    StreamEvent::Response { head, .. } => status = head.status,
                    StreamEvent::Data { data, end } => {
                        body.extend_from_slice(&data);
                        if end {
                            break;
                        }
                    }
                    other => panic!("request {i}: {other:?}"),
                }
            }
            (status, body)
        });
        let read = read.await.unwrap_or_else(|_| panic!("request {i}: its response never came to its stream"));
        assert_eq!(read, (200, b"ok".to_vec()), "request {i}");
    }
    drop(server);
    answerer.abort();
}

/// `open_fields_within` opens nothing at the caller's limit: `Busy` with the streams in
/// flight, the fields not written, nothing on the wire (the next open within the limit
/// is the one the peer sees next), and opens again once a stream is gone.
#[tokio::test]
async fn an_open_at_the_callers_limit_is_busy_and_sends_nothing() {
    let (a, b) = tokio::io::duplex(256 * 1024);
    let (server, _client, mut events) = conn_pair::pair_over(Config::default(), a, b).await;
    let within = |max: usize, target: &str| {
        let mut called = false;
        let opened = server.open_fields_within(max, StreamKind::Http, "GET", target.as_bytes(), true, |w| {
            called = true;
            w.push(&HeaderName::from_static("x-pad"), &HeaderValue::from_static("p"));
        });
        (opened, called)
    };
    let (first, called) = within(1, "/first");
    let first = first.expect("no stream in flight: opened");
    assert!(called);
    let (busy, called) = within(1, "/refused");
    assert_eq!(busy.err(), Some(OpenWithinError::Busy(1)));
    assert!(!called, "a busy open writes no field");
    let (second, _) = within(2, "/second");
    let second = second.expect("within a limit of 2: opened");
    for target in ["/first", "/second"] {
        assert_eq!(&*incoming(&mut events).await.0.target, target, "the refused open sent nothing");
    }
    // A refusal of the session's own comes through as `Open`.
    let refused = server.open_fields_within(8, StreamKind::Http, "G T", b"/", true, |_| {});
    assert_eq!(refused.err(), Some(OpenWithinError::Open(OpenError::InvalidHead("method"))));
    drop((first, second));
}
