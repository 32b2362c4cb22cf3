//! The chat example (`examples/chat`) through a tunnel: several visitors connect to
//! its WebSocket at the public URL, and each message reaches every other visitor.

mod common;
mod websocket_util;

#[allow(dead_code)]
#[path = "../examples/chat/server.rs"]
mod chat;

use std::sync::Arc;

use common::*;
use futures_util::SinkExt;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use websocket_util::*;

const VISITORS: usize = 5;

async fn next_text(ws: &mut Ws) -> String {
    match next_message(ws).await {
        Some(Ok(Message::Text(t))) => t.to_string(),
        other => panic!("expected a chat message, got {other:?}"),
    }
}

#[tokio::test]
async fn each_message_reaches_every_other_visitor_through_the_tunnel() {
    let server = server().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let room = Arc::new(chat::Room::default());
    tokio::spawn(chat::serve(listener, room.clone()));
    let tunnel = client(&server, port, Some("chat")).await;

    // The page comes through the tunnel too.
    let (status, page) = Visitor::new(&server).get(&host_of(&tunnel.url()), "/").await;
    assert_eq!(status, 200);
    assert_eq!(&page[..], chat::PAGE.as_bytes());

    let url = ws_url(&tunnel.url(), "/ws");
    let mut visitors = Vec::new();
    for _ in 0..VISITORS {
        visitors.push(visit(&server, &url).await);
    }
    assert_eq!(room.clients(), VISITORS);

    // Everyone talks at once: each visitor gets everyone else's message, not its own.
    for (i, v) in visitors.iter_mut().enumerate() {
        v.send(Message::text(format!("hello from {i} ✓"))).await.unwrap();
    }
    for (i, v) in visitors.iter_mut().enumerate() {
        let mut got = Vec::new();
        for _ in 1..VISITORS {
            got.push(next_text(v).await);
        }
        got.sort();
        let expected: Vec<_> = (0..VISITORS).filter(|j| *j != i).map(|j| format!("hello from {j} ✓")).collect();
        assert_eq!(got, expected, "visitor {i}");
    }

    // One visitor's messages keep their order at every other visitor.
    for n in 0..20 {
        visitors[0].send(Message::text(format!("line {n}"))).await.unwrap();
    }
    for v in &mut visitors[1..] {
        for n in 0..20 {
            assert_eq!(next_text(v).await, format!("line {n}"));
        }
    }

    // A visitor leaves; the others chat on.
    let mut gone = visitors.pop().unwrap();
    gone.send(close(1000, "bye")).await.unwrap();
    expect_close(&mut gone, 1000, "bye").await;
    visitors[1].send(Message::text("still here?")).await.unwrap();
    for (i, v) in visitors.iter_mut().enumerate().filter(|(i, _)| *i != 1) {
        assert_eq!(next_text(v).await, "still here?", "visitor {i}");
    }
}
