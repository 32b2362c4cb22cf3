//! A quiet WebSocket is not an idle connection: the server's connection idle
//! timeout, which cuts silent HTTP connections, must not cut a visitor's WebSocket
//! (or a client's control connection) that merely has nothing to say.

mod common;
mod websocket_util;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use localtunnels_server::{Limits, ServerConfig};
use tokio_tungstenite::tungstenite::Message;
use websocket_util::*;

#[tokio::test]
async fn a_quiet_websocket_outlives_the_idle_timeout() {
    let idle = Duration::from_millis(200);
    let config = ServerConfig { limits: Limits { idle_timeout: idle, ..Limits::default() }, ..ServerConfig::default() };
    let server = server_with(config).await;
    let tunnel = client(&server, echo_origin().await, Some("quiet")).await;
    let mut ws = visit(&server, &ws_url(&tunnel.url(), "/")).await;
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(next_message(&mut ws).await.unwrap().unwrap(), Message::text("before"));
    // Time passing is what is under test here: stay silent for several idle periods.
    tokio::time::sleep(idle * 5).await;
    ws.send(Message::text("after")).await.unwrap();
    assert_eq!(next_message(&mut ws).await.unwrap().unwrap(), Message::text("after"));
    // The timeout is live for plain connections on the same server.
    let mut silent = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(30), tokio::io::AsyncReadExt::read(&mut silent, &mut buf))
        .await
        .expect("the server closes a silent connection");
    assert!(matches!(n, Ok(0) | Err(_)));
}
