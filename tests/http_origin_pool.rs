//! The client's connections to its origin: kept alive and reused from one exchange to
//! the next, and replaced when the origin closed them while they sat idle.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A keep-alive HTTP/1.1 origin that counts the connections it accepted.
async fn counting_origin() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    Ok::<_, Infallible>(Response::new(full(format!("you asked for {}", req.uri().path()))))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    });
    (port, accepted)
}

#[tokio::test]
async fn sequential_requests_reuse_one_origin_connection() {
    let server = server().await;
    let (port, accepted) = counting_origin().await;
    let tunnel = client(&server, port, Some("reuse")).await;
    let host = host_of(&tunnel.url());
    let visitor = Visitor::new(&server);
    for i in 0..50 {
        let (status, body) = visitor.get(&host, &format!("/n{i}")).await;
        assert_eq!(status, 200);
        assert_eq!(body, format!("you asked for /n{i}"));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "every exchange should reuse the first connection");
}

#[tokio::test]
async fn concurrent_requests_open_connections_then_reuse_them() {
    let server = server().await;
    let (port, accepted) = counting_origin().await;
    let tunnel = client(&server, port, Some("fanout")).await;
    let host = host_of(&tunnel.url());
    let visitor = Visitor::new(&server);
    for round in 0..5 {
        let requests = (0..8).map(|i| {
            let (visitor, host) = (visitor.clone(), host.clone());
            tokio::spawn(async move { visitor.get(&host, &format!("/r{round}/{i}")).await })
        });
        for (i, r) in futures_util::future::join_all(requests).await.into_iter().enumerate() {
            let (status, body) = r.expect("request task");
            assert_eq!(status, 200);
            assert_eq!(body, format!("you asked for /r{round}/{i}"));
        }
    }
    // At most one connection per request in flight, however many rounds ran.
    let n = accepted.load(Ordering::SeqCst);
    assert!((1..=8).contains(&n), "{n} origin connections for 8 concurrent requests");
}

#[tokio::test]
async fn an_origin_that_closed_an_idle_connection_gets_a_new_one() {
    // Answers one request per connection as if keeping it alive (no `Connection:
    // close`), then closes it, and reports each close.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
    let port = listener.local_addr().expect("addr").port();
    let (closed_tx, mut closed) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let closed_tx = closed_tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh").await;
                drop(tcp);
                let _ = closed_tx.send(());
            });
        }
    });
    let server = server().await;
    let tunnel = client(&server, port, Some("closer")).await;
    let host = host_of(&tunnel.url());
    let visitor = Visitor::new(&server);
    for _ in 0..5 {
        let (status, body) = visitor.get(&host, "/").await;
        assert_eq!((status, &body[..]), (200, &b"fresh"[..]));
        // The origin's close has happened before the next request is sent.
        closed.recv().await.expect("origin closed the connection");
    }
}
