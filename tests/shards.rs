//! Sharded serving (`ServerConfig::shards`, `--shards N`): accepted connections go to
//! each shard in turn, a tunnel's control connections land on different shards, a
//! visitor's request or WebSocket opens its stream on its own shard's connection of the
//! tunnel (nothing crosses threads when there is one), a tunnel with one connection
//! still serves the visitors of every shard, and a graceful stop drains every shard.
//!
//! What runs where is read from the admin status: `shard_by_connection`,
//! `streams_by_connection` and `cross_shard_opens` of each tunnel.

mod common;
mod websocket_util;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use localtunnels_client::{ClientConfig, ClientHandle, TunnelClient};
use localtunnels_server::{AuthToken, ServerConfig, ServerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};
use tokio_tungstenite::tungstenite::Message;
use websocket_util::{echo_origin, next_message, visit_addr, ws_url};

const ADMIN: &str = "admin-secret";
const WAIT: Duration = Duration::from_secs(30);

/// A two-shard server with an admin token, and one kept-alive connection to its admin
/// status: made first, it is the first accepted connection, and polling the status
/// adds no connection (so the accepts after it are the test's own, in order). The
/// connection is a plain socket, not a pooling client's: a pool may open a second
/// connection when a request starts before the last one's connection is back in it,
/// which would shift every later accept to the other shard.
struct Sharded {
    server: ServerHandle,
    admin: tokio::sync::Mutex<TcpStream>,
}

impl Sharded {
    async fn start() -> Sharded {
        let config = ServerConfig { admin_token: Some(AuthToken::new(ADMIN)), shards: 2, ..ServerConfig::default() };
        let server = server_with(config).await;
        let admin = TcpStream::connect(server.addr()).await.expect("admin connects");
        let sharded = Sharded { server, admin: tokio::sync::Mutex::new(admin) };
        assert!(sharded.status("none").await.is_null());
        sharded
    }

    /// The admin status's entry for the tunnel `name` (null when there is none).
    async fn status(&self, name: &str) -> serde_json::Value {
        let mut admin = self.admin.lock().await;
        let port = self.server.addr().port();
        let head =
            format!("GET /api/status HTTP/1.1\r\nHost: localhost:{port}\r\nAuthorization: Bearer {ADMIN}\r\n\r\n");
        admin.write_all(head.as_bytes()).await.expect("status request written");
        let (code, body) = read_response(&mut admin).await;
        assert_eq!(code, 200, "{body}");
        let status: serde_json::Value = serde_json::from_str(&body).expect("status is JSON");
        status["tunnels"]
            .as_array()
            .and_then(|list| list.iter().find(|t| t["name"] == name).cloned())
            .unwrap_or(serde_json::Value::Null)
    }

    /// A tunnel `name` with `connections` control connections to `port`, once the
    /// server counts them all.
    async fn tunnel(&self, port: u16, name: &str, connections: usize) -> ClientHandle {
        let config = ClientConfig { subdomain: Some(name.into()), connections, ..client_config(&self.server, port) };
        let tunnel = TunnelClient::new(config).connect().await.expect("connects");
        let wait = async {
            while self.status(name).await["connections"] != connections {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(WAIT, wait).await.expect("every connection joined");
        tunnel
    }

    /// `n` visitor connections, opened one after the other (so each shard in turn
    /// gets one).
    async fn visitors(&self, n: usize) -> Vec<TcpStream> {
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            conns.push(TcpStream::connect(self.server.addr()).await.expect("visitor connects"));
        }
        conns
    }
}

/// Writes a GET for `path` to `host` on `tcp`.
async fn send_get(tcp: &mut TcpStream, host: &str, path: &str) {
    let head = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    tcp.write_all(head.as_bytes()).await.expect("request written");
}

/// Reads one response with a `Content-Length` body from `tcp`: its status and body.
async fn read_response(tcp: &mut TcpStream) -> (u16, String) {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let status = head[9..12].parse::<u16>().expect("a status code");
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse::<usize>().expect("a length"));
                if buf.len() >= end + 4 + length {
                    return (status, String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned());
                }
            }
            let n = tcp.read(&mut chunk).await.expect("response read");
            assert!(n > 0, "the server closed the connection mid-response: {:?}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(WAIT, read).await.expect("a response in time")
}

/// Waits until `arrived` has `n` permits, and takes them.
async fn arrivals(arrived: &Semaphore, n: u32) {
    tokio::time::timeout(WAIT, arrived.acquire_many(n)).await.expect("the origin got them all").unwrap().forget();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_stay_on_their_shard_when_the_tunnel_has_a_connection_there() {
    let sharded = Sharded::start().await;
    let (arrived, release) = (Arc::new(Semaphore::new(0)), Arc::new(Notify::new()));
    let port = holding_origin(arrived.clone(), release.clone()).await;
    let tunnel = sharded.tunnel(port, "local", 2).await;
    let status = sharded.status("local").await;
    let shards = status["shard_by_connection"].as_array().expect("shards listed").clone();
    assert_eq!(shards.len(), 2, "{status}");
    assert!(shards[0].is_u64() && shards[1].is_u64() && shards[0] != shards[1], "one on each shard: {status}");

    // Four visitor connections, two on each shard, each with a request held at the
    // origin: each shard's requests went to its own connection.
    let host = host_of(&tunnel.url());
    let mut visitors = sharded.visitors(4).await;
    for (i, v) in visitors.iter_mut().enumerate() {
        send_get(v, &host, &format!("/hold/{i}")).await;
    }
    arrivals(&arrived, 4).await;
    let status = sharded.status("local").await;
    assert_eq!(status["streams_by_connection"], serde_json::json!([2, 2]), "{status}");
    assert_eq!(status["cross_shard_opens"], 0, "{status}");
    release.notify_waiters();
    for (i, v) in visitors.iter_mut().enumerate() {
        assert_eq!(read_response(v).await, (200, format!("answered /hold/{i}")));
    }

    // Lone requests, one at a time on each connection: the least-loaded choice alone
    // would give them all to the first connection; each stays on its shard instead.
    for round in 0..3 {
        for (i, v) in visitors.iter_mut().enumerate() {
            send_get(v, &host, &format!("/lone/{round}/{i}")).await;
            assert_eq!(read_response(v).await, (200, format!("answered /lone/{round}/{i}")));
        }
    }
    let status = sharded.status("local").await;
    assert_eq!(status["cross_shard_opens"], 0, "{status}");
    assert_eq!(status["requests"], 16, "{status}");
    tunnel.close().await;
    sharded.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_with_one_connection_serves_the_visitors_of_every_shard() {
    let sharded = Sharded::start().await;
    let (arrived, release) = (Arc::new(Semaphore::new(0)), Arc::new(Notify::new()));
    let port = holding_origin(arrived.clone(), release.clone()).await;
    let tunnel = sharded.tunnel(port, "single", 1).await;
    let host = host_of(&tunnel.url());
    let mut visitors = sharded.visitors(4).await;
    for (i, v) in visitors.iter_mut().enumerate() {
        send_get(v, &host, &format!("/one/{i}")).await;
        assert_eq!(read_response(v).await, (200, format!("answered /one/{i}")));
    }
    // Two of the four connections are on the other shard than the tunnel's one.
    let status = sharded.status("single").await;
    assert_eq!(status["cross_shard_opens"], 2, "{status}");
    tunnel.close().await;
    sharded.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_drains_every_shard() {
    let sharded = Sharded::start().await;
    let (arrived, release) = (Arc::new(Semaphore::new(0)), Arc::new(Notify::new()));
    let port = holding_origin(arrived.clone(), release.clone()).await;
    let tunnel = sharded.tunnel(port, "drain", 2).await;
    let host = host_of(&tunnel.url());
    let addr = sharded.server.addr();
    let mut visitors = sharded.visitors(2).await;
    for (i, v) in visitors.iter_mut().enumerate() {
        send_get(v, &host, &format!("/hold/{i}")).await;
    }
    arrivals(&arrived, 2).await;
    let status = sharded.status("drain").await;
    assert_eq!(status["streams_by_connection"], serde_json::json!([1, 1]), "one on each shard: {status}");

    let Sharded { server, admin } = sharded;
    drop(admin);
    let stopping = tokio::spawn(server.stop());
    // The listener is closed once the stop has begun; the held requests then finish.
    let closed = async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(WAIT, closed).await.expect("the server stops accepting");
    release.notify_waiters();
    for (i, v) in visitors.iter_mut().enumerate() {
        assert_eq!(read_response(v).await, (200, format!("answered /hold/{i}")));
    }
    tokio::time::timeout(WAIT, stopping).await.expect("the stop ends").unwrap();
    drop(tunnel);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitor_websockets_on_every_shard_stay_on_their_shard() {
    let sharded = Sharded::start().await;
    let port = echo_origin().await;
    let tunnel = sharded.tunnel(port, "sockets", 2).await;
    let url = ws_url(&tunnel.url(), "/echo");
    // Four WebSockets, opened one after the other: two on each shard, all open at once.
    let mut sockets = Vec::new();
    for _ in 0..4 {
        sockets.push(visit_addr(sharded.server.addr(), &url).await);
    }
    let status = sharded.status("sockets").await;
    assert_eq!(status["streams_by_connection"], serde_json::json!([2, 2]), "{status}");
    assert_eq!(status["cross_shard_opens"], 0, "{status}");
    for round in 0..3 {
        for (i, ws) in sockets.iter_mut().enumerate() {
            let text = format!("message {round} on socket {i}");
            ws.send(Message::text(text.clone())).await.expect("sent");
            let echoed = tokio::time::timeout(WAIT, next_message(ws)).await.expect("an echo in time");
            assert_eq!(echoed.expect("open").expect("a message"), Message::text(text));
        }
    }
    drop(sockets);
    tunnel.close().await;
    sharded.server.stop().await;
}
