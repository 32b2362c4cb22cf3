//! Pipelined requests on a kept-alive HTTP/1 visitor connection: each is answered in
//! turn, whatever reaches the server first. A response and the next pipelined request
//! arrive in the same poll of the runtime's I/O driver here, so the connection's task
//! takes the response with the socket's wake-up for the request pending: a server that
//! skipped a read of the visitor's socket after an exchange (tried twice, docs/BENCHMARKS.md)
//! must not lose that wake-up.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use hyper::body::Incoming;
use hyper::{Request, Response};
use localtunnels_client::{ClientConfig, TunnelClient};
use localtunnels_server::{Limits, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Notify};

/// Requests per connection.
const ROUNDS: usize = 20;

/// What a request that nothing answered would wait for: the next head's deadline.
const HEADER_TIMEOUT: Duration = Duration::from_secs(120);

/// Far below `HEADER_TIMEOUT`, far above a response's time on a loaded machine.
const ANSWERED_WITHIN: Duration = Duration::from_secs(20);

/// The next chunk from the client to the server, handed to the test instead.
type Hold = Arc<Mutex<Option<oneshot::Sender<Bytes>>>>;

/// A relay between the tunnel client and the server whose client-to-server direction
/// can hand one chunk to the test and wait until the test has written it itself.
struct Relay {
    addr: std::net::SocketAddr,
    /// Armed by the origin when a request reaches it: its response is held.
    hold: Hold,
    /// Lets the relay go on after a held chunk.
    release: Arc<Notify>,
    /// The server side of the relay's one connection, once the client connected.
    to_server: oneshot::Receiver<Arc<OwnedWriteHalf>>,
}

impl Relay {
    async fn start(server: std::net::SocketAddr, hold: Hold) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let release = Arc::new(Notify::new());
        let (tx, to_server) = oneshot::channel();
        let (held, go) = (hold.clone(), release.clone());
        tokio::spawn(async move {
            let (client, _) = listener.accept().await.expect("the tunnel client connects");
            let upstream = TcpStream::connect(server).await.expect("relay connects");
            let (mut client_r, mut client_w) = client.into_split();
            let (mut server_r, server_w) = upstream.into_split();
            let server_w = Arc::new(server_w);
            let _ = tx.send(server_w.clone());
            tokio::spawn(async move { tokio::io::copy(&mut server_r, &mut client_w).await });
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match client_r.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let armed = held.lock().expect("hold").take();
                match armed {
                    Some(test) => {
                        let _ = test.send(Bytes::copy_from_slice(&buf[..n]));
                        go.notified().await;
                    }
                    None => write_all(&server_w, &buf[..n]).await,
                }
            }
        });
        Relay { addr, hold, release, to_server }
    }
}

/// Writes all of `data` through a shared write half.
async fn write_all(w: &OwnedWriteHalf, mut data: &[u8]) {
    while !data.is_empty() {
        if w.writable().await.is_err() {
            return;
        }
        match w.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// Reads one response (`Content-Length` framed) off `tcp`; returns its body.
async fn read_response(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> String {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            assert!(head.starts_with("http/1.1 200"), "{head}");
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .expect("a Content-Length");
            if buf.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
                buf.drain(..end + 4 + length);
                return body;
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tcp.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The response to each request and the next request reach the server at once (its
/// tunnel's bytes first, so that the tunnel's reader runs before the visitor's task
/// on this one-thread runtime): the task, woken by its socket, takes the response
/// first and must still read the pipelined request, not wait for the head's deadline.
#[tokio::test]
async fn a_request_that_arrives_with_the_last_response_is_answered() {
    let limits = Limits { header_read_timeout: HEADER_TIMEOUT, ..Limits::default() };
    let server = server_with(ServerConfig { limits, ..ServerConfig::default() }).await;
    let hold: Hold = Arc::default();
    // The test puts the hold for the next response here; the origin arms it.
    let next_hold: Arc<Mutex<Option<oneshot::Sender<Bytes>>>> = Arc::default();
    let (armed, to_arm) = (hold.clone(), next_hold.clone());
    let port = origin(move |req: Request<Incoming>| {
        let (armed, to_arm) = (armed.clone(), to_arm.clone());
        async move {
            *armed.lock().expect("hold") = to_arm.lock().expect("next hold").take();
            Response::new(full(format!("ok {}", req.uri().path())))
        }
    })
    .await;
    let mut relay = Relay::start(server.addr(), hold).await;
    let config = ClientConfig {
        server: Some(format!("http://{}", relay.addr)),
        subdomain: Some("piped".into()),
        ..client_config(&server, port)
    };
    let tunnel = TunnelClient::new(config).connect().await.expect("tunnel connects");
    let to_server = (&mut relay.to_server).await.expect("the relay is connected");
    let host = host_of(&tunnel.url());
    let request = |i: usize| format!("GET /{i} HTTP/1.1\r\nHost: {host}\r\n\r\n");

    let mut visitor = TcpStream::connect(server.addr()).await.expect("connect");
    let mut buf = Vec::new();
    let (tx, mut held) = oneshot::channel();
    *next_hold.lock().expect("next hold") = Some(tx);
    visitor.write_all(request(0).as_bytes()).await.expect("write");
    for i in 0..ROUNDS {
        let chunk = held.await.expect("the response is held");
        let (tx, rx) = oneshot::channel();
        held = rx;
        if i + 1 < ROUNDS {
            *next_hold.lock().expect("next hold") = Some(tx);
        }
        // No await from here to the release: both sockets become readable before the
        // server's runtime next polls its I/O driver.
        assert_eq!(to_server.try_write(&chunk).expect("relay write"), chunk.len());
        if i + 1 < ROUNDS {
            let next = request(i + 1);
            assert_eq!(visitor.try_write(next.as_bytes()).expect("visitor write"), next.len());
        }
        relay.release.notify_one();
        let body = tokio::time::timeout(ANSWERED_WITHIN, read_response(&mut visitor, &mut buf))
            .await
            .unwrap_or_else(|_| panic!("request {i} was not answered (it came pipelined behind the one before)"));
        assert_eq!(body, format!("ok /{i}"));
    }
    assert!(relay.hold.lock().expect("hold").is_none());
}
