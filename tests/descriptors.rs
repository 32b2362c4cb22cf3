//! File descriptors per connection: a plain-TCP HTTP/1 visitor's connection holds a
//! second descriptor of its socket for the tunnel reader's writes (`visitor_h1::direct`
//! in the server), and a connection that leaves that path (a client's control
//! connection, here) closes it: 10,000 idle tunnels must not take 20,000 descriptors.
//! One test in its own binary, so that no other test's sockets are open meanwhile.

mod common;

use std::collections::HashMap;

use bytes::Bytes;
use common::*;
use localtunnels_server::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How many sockets (listeners included) this process holds under more than one descriptor.
fn sockets_held_twice() -> usize {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd") {
        let Ok(target) = std::fs::read_link(entry.expect("fd entry").path()) else { continue };
        let target = target.to_string_lossy().into_owned();
        if target.starts_with("socket:") {
            *seen.entry(target).or_default() += 1;
        }
    }
    seen.values().filter(|&&n| n > 1).count()
}

#[tokio::test]
async fn a_control_connection_holds_one_descriptor_and_a_visitor_two() {
    let origin = origin(|_req| async move { hyper::Response::new(full(Bytes::from(vec![b's'; 1024]))) }).await;
    let server = server_with(ServerConfig::default()).await;
    // The server may hold a listener twice: count from here.
    let before = sockets_held_twice();
    let _tunnel = client(&server, origin, Some("fds")).await;
    // The client's control connection is up: its server side left the HTTP/1 path.
    assert_eq!(sockets_held_twice(), before, "a control connection kept its second descriptor");

    // A visitor's keep-alive connection, answered: it keeps its second descriptor.
    let mut visitor = TcpStream::connect(("127.0.0.1", server.addr().port())).await.expect("visitor connects");
    let request = format!("GET / HTTP/1.1\r\nHost: fds.localhost:{}\r\n\r\n", server.addr().port());
    visitor.write_all(request.as_bytes()).await.expect("request written");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = visitor.read(&mut buf).await.expect("response read");
        assert!(n > 0, "the connection closed before the response: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            if got.len() >= end + 4 + 1024 {
                break;
            }
        }
    }
    assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
    assert_eq!(sockets_held_twice(), before + 1, "the visitor's connection holds its socket twice");
}
