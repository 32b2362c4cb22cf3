//! The inspector as a library: a client with an [`Inspector`] records a tunneled
//! WebSocket session with its messages (`/api/requests/ws`), and the live feed
//! (`/api/requests/stream`, Server-Sent Events) announces entries as they change.

mod common;
mod websocket_util;

use std::net::SocketAddr;

use bytes::Bytes;
use common::{client_config, full, TestBody};
use futures_util::SinkExt;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::Request;
use localtunnels_client::{serve_inspector, InspectConfig, Inspector, TunnelClient};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use websocket_util::{close, echo_origin, next_message, visit, ws_url};

/// Reads Server-Sent Events off `body` until one named `name` satisfies `done`.
async fn wait_for_event(body: &mut Incoming, buf: &mut String, name: &str, done: impl Fn(&Value) -> bool) -> Value {
    loop {
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let kind = event.lines().find_map(|l| l.strip_prefix("event: "));
            let data = event.lines().find_map(|l| l.strip_prefix("data: "));
            if let (Some(kind), Some(data)) = (kind, data) {
                let value: Value = serde_json::from_str(data).unwrap();
                if kind == name && done(&value) {
                    return value;
                }
            }
        }
        let frame = body.frame().await.expect("the feed goes on").unwrap();
        if let Ok(data) = frame.into_data() {
            buf.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
}

/// A server, a tunnel to an echo origin recorded by an inspector made with `config`,
/// the inspector's API on a free port, and an HTTP client for it.
async fn inspected_echo(
    config: InspectConfig,
) -> (
    localtunnels_server::ServerHandle,
    localtunnels_client::ClientHandle,
    localtunnels_client::InspectServer,
    hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, TestBody>,
) {
    let server = common::server().await;
    let origin_port = echo_origin().await;
    let inspector = Inspector::new(config);
    let client = client_config(&server, origin_port);
    let tunnel = TunnelClient::new(localtunnels_client::ClientConfig { inspector: Some(inspector.clone()), ..client })
        .connect()
        .await
        .unwrap();
    let api = serve_inspector(inspector, Some(SocketAddr::from(([127, 0, 0, 1], 0)))).await.unwrap();
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, TestBody>(hyper_util::client::legacy::connect::HttpConnector::new());
    (server, tunnel, api, http)
}

#[tokio::test]
async fn websocket_sessions_are_recorded_with_their_messages_and_announced_live() {
    let (server, tunnel, api, http) = inspected_echo(InspectConfig::default()).await;
    let feed = http.request(Request::get(format!("{}/api/requests/stream", api.url())).body(full("")).unwrap());
    let feed = feed.await.unwrap();
    assert_eq!(feed.headers()["content-type"], "text/event-stream");
    let mut feed = feed.into_body();
    let mut buf = String::new();

    let mut ws = visit(&server, &ws_url(&tunnel.url(), "/chat?room=1")).await;
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next_message(&mut ws).await.unwrap().unwrap(), Message::text("hello"));
    ws.send(Message::binary(Bytes::from_static(&[1, 2, 3]))).await.unwrap();
    assert_eq!(next_message(&mut ws).await.unwrap().unwrap(), Message::binary(Bytes::from_static(&[1, 2, 3])));
    ws.send(close(1000, "bye")).await.unwrap();
    while let Some(Ok(_)) = next_message(&mut ws).await {}

    // The feed announces the session until it is closed.
    let session = wait_for_event(&mut feed, &mut buf, "ws", |s| !s["close_code"].is_null()).await;
    assert_eq!(session["close_code"], 1000);
    assert_eq!(session["request"]["uri"], "/chat?room=1");
    assert_eq!(session["response"]["status_code"], 101);
    let messages = session["messages"].as_array().unwrap();
    let summary: Vec<(&str, &str, u64)> = messages
        .iter()
        .map(|m| (m["direction"].as_str().unwrap(), m["opcode"].as_str().unwrap(), m["size"].as_u64().unwrap()))
        .collect();
    assert_eq!(summary, [("in", "text", 5), ("out", "text", 5), ("in", "binary", 3), ("out", "binary", 3)]);
    assert_eq!((messages[0]["text"].as_str(), messages[2]["base64"].as_str()), (Some("hello"), Some("AQID")));

    // The same through the API, and the upgrade in the HTTP list too (as ngrok lists it).
    let (list, sessions) = (format!("{}/api/requests/http", api.url()), format!("{}/api/requests/ws", api.url()));
    let get = |url: String| {
        let http = http.clone();
        async move {
            let res = http.request(Request::get(url).body(full("")).unwrap()).await.unwrap();
            serde_json::from_slice::<Value>(&res.into_body().collect().await.unwrap().to_bytes()).unwrap()
        }
    };
    let sessions = get(sessions).await;
    assert_eq!(sessions["sessions"][0]["messages"].as_array().unwrap().len(), 4, "{sessions}");
    let list = get(list).await;
    assert_eq!(list["requests"][0]["websocket"], true);
    assert_eq!(list["requests"][0]["response"]["status"], "101 Switching Protocols");
    tunnel.close().await;
}

/// A session with more messages than the inspector keeps, read through the API with
/// nobody listening live: the most recent ones, in order, with their directions,
/// sizes and previews (cut at the preview's bound), and the count of those dropped.
#[tokio::test]
async fn a_long_session_keeps_its_most_recent_messages_in_order() {
    let config = InspectConfig { max_ws_messages: 50, ws_preview: 8, ..InspectConfig::default() };
    let (server, tunnel, api, http) = inspected_echo(config).await;
    let sessions = format!("{}/api/requests/ws", api.url());
    let get = || {
        let (http, url) = (http.clone(), sessions.clone());
        async move {
            let res = http.request(Request::get(url).body(full("")).unwrap()).await.unwrap();
            serde_json::from_slice::<Value>(&res.into_body().collect().await.unwrap().to_bytes()).unwrap()
        }
    };

    let mut ws = visit(&server, &ws_url(&tunnel.url(), "/long")).await;
    let text = |i: usize| format!("message number {i}");
    for i in 0..130 {
        ws.send(Message::text(text(i))).await.unwrap();
        assert_eq!(next_message(&mut ws).await.unwrap().unwrap(), Message::text(text(i)));
    }
    // Mid-session: every message echoed so far is there.
    let check = |session: &Value, sent: usize| {
        let messages = session["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 50);
        assert_eq!(session["messages_dropped"], 2 * sent as u64 - 50);
        for (k, m) in messages.iter().enumerate() {
            let n = 2 * sent - 50 + k;
            let (i, dir) = (n / 2, if n.is_multiple_of(2) { "in" } else { "out" });
            assert_eq!(m["direction"], dir, "message {k}");
            assert_eq!(m["size"], text(i).len() as u64, "message {k}");
            assert_eq!(m["text"], &text(i)[..8], "message {k}");
        }
    };
    check(&get().await["sessions"][0], 130);
    for i in 130..200 {
        ws.send(Message::text(text(i))).await.unwrap();
        assert_eq!(next_message(&mut ws).await.unwrap().unwrap(), Message::text(text(i)));
    }
    check(&get().await["sessions"][0], 200);
    ws.send(close(1000, "bye")).await.unwrap();
    while let Some(Ok(_)) = next_message(&mut ws).await {}
    tunnel.close().await;
}
