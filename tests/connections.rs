//! Several control connections per tunnel (`--connections`, `Hello::join`): the
//! further connections join the live tunnel with its reconnect token, the server
//! spreads requests in flight over them, a connection that goes leaves the tunnel up,
//! they follow the first one through a reconnect, and nobody else can join.

mod common;
mod relay;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use localtunnels_client::{ClientConfig, TunnelClient};
use localtunnels_core::{
    features, CloseCode, Config, DecodeLimits, Frame, Hello, Limits, RefuseReason, PROTOCOL_VERSION,
};
use localtunnels_server::{Limits as ServerLimits, ServerConfig, ServerHandle};
use relay::Relay;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const ADMIN: &str = "admin-secret";

/// A server with an admin token (for the per-tunnel status) and `max` connections
/// per tunnel.
async fn server_allowing(max: usize) -> ServerHandle {
    let limits = ServerLimits { max_connections_per_tunnel: max, ..ServerLimits::default() };
    server_with(ServerConfig {
        admin_token: Some(localtunnels_server::AuthToken::new(ADMIN)),
        limits,
        ..ServerConfig::default()
    })
    .await
}

/// The admin status's entry for the tunnel `name`.
async fn tunnel_status(server: &ServerHandle, name: &str) -> serde_json::Value {
    let admin = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    common::tunnel_status(&admin, server, ADMIN, name).await
}

/// Waits until the tunnel `name` has `n` control connections; panics after 30 s.
async fn connections_become(server: &ServerHandle, name: &str, n: u64) {
    let wait = async {
        loop {
            if tunnel_status(server, name).await["connections"] == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| panic!("the tunnel '{name}' never had {n} connections"));
}

fn joining_config(server_url: String, port: u16, name: &str, connections: usize) -> ClientConfig {
    ClientConfig {
        server: Some(server_url),
        local_host: "127.0.0.1".into(),
        local_port: port,
        subdomain: Some(name.into()),
        connections,
        ..ClientConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_spread_over_the_joined_connections() {
    let server = server_allowing(4).await;
    let (arrived, release) = (Arc::new(tokio::sync::Semaphore::new(0)), Arc::new(Notify::new()));
    let port = holding_origin(arrived.clone(), release.clone()).await;
    let url = format!("http://127.0.0.1:{}", server.addr().port());
    let mut tunnel = TunnelClient::new(joining_config(url, port, "spread", 3)).connect().await.expect("connects");
    connections_become(&server, "spread", 3).await;
    assert_eq!(tunnel.in_flight(), 0);

    // Three requests held at the origin at once: the server gave each to the
    // connection with the fewest in flight, so each connection carries one. Each is
    // sent once the one before is at the origin: two visitors' opens at the same
    // instant may both see the same connection as the least loaded (the choice and
    // the open are not one step), which is not what this test is about.
    let visitor = Visitor::new(&server);
    let host = host_of(&tunnel.url());
    let mut held = Vec::new();
    for i in 0..3 {
        let (visitor, host) = (visitor.clone(), host.clone());
        held.push(tokio::spawn(async move { visitor.get(&host, &format!("/hold/{i}")).await }));
        tokio::time::timeout(Duration::from_secs(30), arrived.acquire())
            .await
            .expect("the origin got the request")
            .unwrap()
            .forget();
    }
    let status = tunnel_status(&server, "spread").await;
    assert_eq!(status["streams_by_connection"], serde_json::json!([1, 1, 1]), "{status}");
    assert_eq!(tunnel.in_flight(), 3, "the handle counts the joined connections' requests too");
    release.notify_waiters();
    for (i, h) in held.into_iter().enumerate() {
        let (code, body) = h.await.unwrap();
        assert_eq!((code, &body[..]), (200, format!("answered /hold/{i}").as_bytes()));
    }
    // A lone request goes to the first connection (the others stay idle).
    assert_eq!(visitor.get(&host, "/alone").await, (200, Bytes::from("answered /alone")));
    let mut events = tunnel.events();
    tunnel.close().await;
    while let Ok(ev) = events.try_recv() {
        assert!(!matches!(ev, localtunnels_client::ClientEvent::Error { .. }), "no error on close: {ev:?}");
    }
    tunnels_become(&server, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_allows_one_connection_gets_one_and_the_tunnel_works() {
    let server = server_allowing(1).await;
    let port = origin(|_req: hyper::Request<hyper::body::Incoming>| async { hyper::Response::new(full("one")) }).await;
    let url = format!("http://127.0.0.1:{}", server.addr().port());
    let tunnel = TunnelClient::new(joining_config(url, port, "single", 4)).connect().await.expect("connects");
    assert_eq!(tunnel_status(&server, "single").await["connections"], 1);
    assert_eq!(Visitor::new(&server).get(&host_of(&tunnel.url()), "/").await, (200, Bytes::from("one")));
    assert_eq!(tunnel_status(&server, "single").await["connections"], 1, "no connection joined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joined_connections_follow_the_first_through_a_reconnect() {
    let server = server_allowing(4).await;
    let port = origin(|_req: hyper::Request<hyper::body::Incoming>| async { hyper::Response::new(full("back")) }).await;
    let relay = Relay::start(server.addr()).await;
    let config =
        ClientConfig { max_backoff: Duration::from_millis(200), ..joining_config(relay.url(), port, "follow", 2) };
    let tunnel = TunnelClient::new(config).connect().await.expect("connects");
    connections_become(&server, "follow", 2).await;
    let accepted = relay.accepted();

    // Every control connection cut at once: the first reconnects with its token, then
    // the other joins the new session again.
    relay.cut();
    relay.accepted_more_than(accepted + 1).await;
    connections_become(&server, "follow", 2).await;
    assert_eq!(Visitor::new(&server).get(&host_of(&tunnel.url()), "/").await, (200, Bytes::from("back")));
}

/// A raw control WebSocket to `server`.
async fn raw(server: &ServerHandle) -> Ws {
    let mut req = format!("ws://127.0.0.1:{}/api/tunnel", server.addr().port()).into_client_request().unwrap();
    req.headers_mut().insert("sec-websocket-protocol", "localtunnels.v1".parse().unwrap());
    tokio_tungstenite::connect_async(req).await.expect("control upgrade").0
}

/// Sends a hello for `name` with `reconnect_token`, joining or not.
async fn say_hello(ws: &mut Ws, name: &str, reconnect_token: &str, join: bool) {
    let h = Hello {
        version: PROTOCOL_VERSION,
        name: name.into(),
        reconnect_token: reconnect_token.into(),
        client_kind: "raw".into(),
        limits: Some(Limits::from(&Config::default())),
        join,
        ..Hello::default()
    };
    ws.send(Message::Binary(Frame::Hello(Box::new(h)).encode())).await.unwrap();
}

/// The next protocol frame from the server; `None` once the connection ends.
async fn next_frame(ws: &mut Ws) -> Option<Frame> {
    let read = async {
        loop {
            match ws.next().await? {
                Ok(Message::Binary(b)) => return Some(Frame::decode(b, &DecodeLimits::default()).expect("valid")),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read).await.expect("the server answers")
}

#[tokio::test]
async fn only_the_tunnels_own_client_can_join_it_and_only_up_to_the_limit() {
    let server = server_allowing(2).await;
    let mut first = raw(&server).await;
    say_hello(&mut first, "guarded", "", false).await;
    let Some(Frame::Welcome(welcome)) = next_frame(&mut first).await else { panic!("expected a welcome") };
    assert_eq!(welcome.features & features::JOIN, features::JOIN, "the server says connections may join");

    // No token, a wrong one, or a name that is not live: refused, and the tunnel has
    // its one connection still.
    for (name, token) in [("guarded", ""), ("guarded", "0123456789abcdef0123456789abcdef"), ("other", "x")] {
        let mut ws = raw(&server).await;
        say_hello(&mut ws, name, token, true).await;
        match next_frame(&mut ws).await {
            Some(Frame::Refuse { reason, .. }) => assert_eq!(reason, RefuseReason::NameTaken, "{name} {token}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    assert_eq!(tunnel_status(&server, "guarded").await["connections"], 1);

    // The session's reconnect token joins (the same welcome, the same token back)...
    let mut second = raw(&server).await;
    say_hello(&mut second, "guarded", &welcome.reconnect_token, true).await;
    match next_frame(&mut second).await {
        Some(Frame::Welcome(w)) => assert_eq!((w.name.as_str(), w.url.as_str()), ("guarded", welcome.url.as_str())),
        other => panic!("expected a welcome, got {other:?}"),
    }
    assert_eq!(tunnel_status(&server, "guarded").await["connections"], 2);
    // ...up to the server's limit.
    let mut third = raw(&server).await;
    say_hello(&mut third, "guarded", &welcome.reconnect_token, true).await;
    match next_frame(&mut third).await {
        Some(Frame::Refuse { reason, message }) => {
            assert_eq!(reason, RefuseReason::LimitReached);
            assert!(message.contains("2 connections"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // A joined connection that goes leaves the tunnel up with its first one...
    drop(second);
    connections_become(&server, "guarded", 1).await;
    assert_eq!(server.stats().tunnels, 1);
    // ...and when the first one goes, the joined ones go with it.
    let mut again = raw(&server).await;
    say_hello(&mut again, "guarded", &welcome.reconnect_token, true).await;
    assert!(matches!(next_frame(&mut again).await, Some(Frame::Welcome(_))));
    drop(first);
    loop {
        match next_frame(&mut again).await {
            Some(Frame::Close { code, message }) => {
                assert_eq!(code, CloseCode::Shutdown, "{message}");
                break;
            }
            Some(_) => {}
            None => panic!("closed without a CLOSE frame"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_opens_the_connections_it_is_asked_for_and_closes_them_all() {
    let server = server_allowing(4).await;
    let port = origin(|_req: hyper::Request<hyper::body::Incoming>| async { hyper::Response::new(full("cli")) }).await;
    let (url, port) = (format!("http://127.0.0.1:{}", server.addr().port()), port.to_string());
    let mut cli = Cli::spawn(&[
        "client",
        "--server",
        &url,
        "--local-host",
        "127.0.0.1",
        "--local-port",
        &port,
        "--subdomain",
        "by-cli",
        "--connections",
        "2",
        "--no-inspect",
        "--no-state",
    ]);
    let public = cli.line().await;
    assert!(public.starts_with("http://by-cli.localhost:"), "{public}");
    connections_become(&server, "by-cli", 2).await;
    assert_eq!(Visitor::new(&server).get(&host_of(&public), "/").await, (200, Bytes::from("cli")));
    // SIGTERM: both connections say goodbye and the name is freed at once.
    cli.terminate();
    assert_eq!(cli.child.wait().await.expect("exits").code(), Some(0));
    tunnels_become(&server, 0).await;
    // Freed, not held: another client gets the name at once.
    let again = TunnelClient::new(joining_config(url, port.parse().unwrap(), "by-cli", 1)).connect().await;
    assert!(again.is_ok(), "the name was freed: {:?}", again.err());
}
