//! An end that stops reading cannot make the server or the client buffer its
//! WebSocket's traffic: a flood stops at the sender (the origin for a stalled visitor,
//! the visitor for a stalled origin), held back by the stream's window and the
//! sockets' own buffers, and flows again once the reader reads.

mod common;
mod websocket_util;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use localtunnels_server::ServerConfig;
use tokio_tungstenite::tungstenite::Message;
use websocket_util::*;

const MESSAGE: usize = 64 * 1024;
/// The test's own sockets are this small, so their buffers hide little.
const SOCKET_BUFFER: u32 = 64 * 1024;

/// The most a kernel lets a socket buffer grow to (the last field of
/// `net.ipv4.tcp_rmem` or `tcp_wmem`), or a generous guess.
fn kernel_max(name: &str) -> usize {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
        .ok()
        .and_then(|s| s.split_whitespace().last().and_then(|v| v.parse().ok()))
        .unwrap_or(32 << 20)
}

/// Lets every task run until all of them wait (on a socket, on credit): with the
/// clock paused, a sleep ends only when the runtime has nothing left to do. (Only
/// here: a paused clock jumps to the next timer whenever the runtime idles, which
/// would fire the server's connection idle timeouts during the rest of the test.)
async fn settle() {
    tokio::time::pause();
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::time::resume();
}

#[tokio::test]
async fn a_visitor_that_stops_reading_stalls_the_origin_not_the_tunnel() {
    flood(Direction::ToVisitor).await;
}

#[tokio::test]
async fn an_origin_that_stops_reading_stalls_the_visitor_not_the_tunnel() {
    flood(Direction::ToOrigin).await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToVisitor,
    ToOrigin,
}

/// One end floods while the other reads nothing.
async fn flood(direction: Direction) {
    let config = ServerConfig { response_timeout: Duration::from_secs(3600), ..ServerConfig::default() };
    let window = config.session.stream_window as usize;
    let server = server_with(config).await;
    let options = OriginOptions { socket_buffer: Some(SOCKET_BUFFER), ..OriginOptions::default() };
    let (port, mut accepted) = ws_origin(options).await;
    let tunnel = client(&server, port, None).await;
    let url = ws_url(&tunnel.url(), "/firehose");
    let options = VisitOptions { socket_buffer: Some(SOCKET_BUFFER), ..VisitOptions::default() };
    let (visitor, _) = visit_with(&server, &url, options).await.unwrap();
    let origin = accepted.recv().await.unwrap().ws;
    let (mut sender, mut reader) = match direction {
        Direction::ToVisitor => (origin, visitor),
        Direction::ToOrigin => (visitor, origin),
    };

    // What may leave the sender while nothing is read: the stream window, one message
    // being sent into the tunnel and one fragment being written out of it, the test's
    // two small sockets (the kernel doubles what is asked), the two sockets the tunnel
    // owns on this path (receive buffer on one leg, send buffer on the other, which the
    // kernel may grow up to its limits) and a MiB for the WebSocket libraries' buffers.
    let bound = window
        + 2 * MESSAGE
        + 2 * 2 * 2 * SOCKET_BUFFER as usize
        + kernel_max("tcp_rmem")
        + kernel_max("tcp_wmem")
        + (1 << 20);
    // Flood past that, so that a tunnel buffering without bound would be caught.
    let messages = (bound + (8 << 20)) / MESSAGE;
    let total = messages * MESSAGE;
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        for i in 0..messages {
            sender.send(Message::Binary(pattern(MESSAGE, i as u8).into())).await.unwrap();
            counter.fetch_add(MESSAGE, Ordering::SeqCst);
        }
        // Keep the socket open until the reader has read everything.
        while futures_util::StreamExt::next(&mut sender).await.is_some() {}
    });

    settle().await;
    let held = sent.load(Ordering::SeqCst);
    assert!(held < total, "{direction:?}: the whole flood left the sender: nothing held it back");
    assert!(held <= bound, "{direction:?}: {held} bytes left the sender while nothing was read (bound {bound})");
    assert_eq!(server.stats().streams, 1);

    // Reading again lets the rest through, in order and intact.
    for i in 0..messages {
        match next_message(&mut reader).await {
            Some(Ok(Message::Binary(b))) => assert!(b[..] == pattern(MESSAGE, i as u8)[..], "message {i} corrupted"),
            other => panic!("message {i}: {other:?}"),
        }
    }
    assert_eq!(sent.load(Ordering::SeqCst), total);
    println!("{direction:?}: held back at {held} bytes of {total} (bound {bound}, stream window {window})");
}
