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

/// The response a scripted origin gives for `path`, written as `parts` (each its own
/// write and flush), and whether the connection stays open after it.
fn scripted(path: &str, head_request: bool) -> (Vec<Vec<u8>>, bool) {
    let body = |n: usize| (0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>();
    let with_length = |n: usize| {
        let mut r = format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\nx-path: {path}\r\n\r\n").into_bytes();
        if !head_request {
            r.extend_from_slice(&body(n));
        }
        r
    };
    match path {
        // Head and body in one write: found whole in the client's first read.
        "/small" => (vec![with_length(1024)], true),
        // Larger than the tunnel's stream window (1 MiB) and its frames.
        "/large" => (vec![with_length(3 << 20)], true),
        // The head first, the body in a later write (it may or may not be read with it).
        "/split" => {
            let whole = with_length(1024);
            let at = whole.len().saturating_sub(1024 - 10).min(whole.len());
            (vec![whole[..at].to_vec(), whole[at..].to_vec()], true)
        }
        "/chunked" => {
            let mut r = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-path: /chunked\r\n\r\n".to_vec();
            if !head_request {
                for piece in [body(100), body(1000)] {
                    r.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                    r.extend_from_slice(&piece);
                    r.extend_from_slice(b"\r\n");
                }
                r.extend_from_slice(b"0\r\n\r\n");
            }
            (vec![r], true)
        }
        "/empty" => (vec![b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()], true),
        "/not-modified" => (vec![b"HTTP/1.1 304 Not Modified\r\ncontent-length: 1024\r\n\r\n".to_vec()], true),
        // Fewer bytes than its Content-Length, then the connection's end.
        "/short" => {
            let mut r = with_length(1024);
            r.truncate(r.len() - 1000);
            (vec![r], false)
        }
        _ => (vec![b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec()], true),
    }
}

/// A keep-alive origin that answers bodiless requests as [`scripted`] says, and counts
/// the connections it accepted.
async fn scripted_origin() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut read = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read.extend_from_slice(&buf[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&read[..end]).into_owned();
                    read.drain(..end + 4);
                    let mut words = head.split(' ');
                    let method = words.next().unwrap_or_default();
                    let path = words.next().unwrap_or_default();
                    let (parts, open) = scripted(path, method == "HEAD");
                    for part in parts {
                        if tcp.write_all(&part).await.is_err() || tcp.flush().await.is_err() {
                            return;
                        }
                    }
                    if !open {
                        return;
                    }
                }
            });
        }
    });
    (port, accepted)
}

#[tokio::test]
async fn whole_small_bodies_and_every_other_kind_come_back_as_sent_on_one_connection() {
    // The small body found whole with its head takes the short way (its RESPONSE and
    // DATA past the stream's queue, its body taken without a poll); the others the
    // body's pump. Each answer as the origin sent it, the connection reused throughout.
    let server = server().await;
    let (port, accepted) = scripted_origin().await;
    let tunnel = client(&server, port, Some("scripted")).await;
    let host = host_of(&tunnel.url());
    let visitor = Visitor::new(&server);
    let body = |n: usize| (0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>();
    for round in 0..3 {
        for (path, status, len) in [
            ("/small", 200, 1024),
            ("/split", 200, 1024),
            ("/large", 200, 3 << 20),
            ("/chunked", 200, 1100),
            ("/empty", 204, 0),
            ("/not-modified", 304, 0),
            ("/small", 200, 1024),
        ] {
            let req = hyper::Request::get(path).body(full(bytes::Bytes::new())).expect("request");
            let res = visitor.send(&host, req).await;
            assert_eq!(res.status().as_u16(), status, "{path}, round {round}");
            if status == 200 {
                assert_eq!(res.headers()["x-path"], path, "{path}");
            }
            let got = http_body_util::BodyExt::collect(res.into_body()).await.expect("body").to_bytes();
            let want = if path == "/chunked" { [body(100), body(1000)].concat() } else { body(len) };
            assert_eq!(got.len(), want.len(), "{path}, round {round}");
            assert!(got == want, "{path}, round {round}: the body differs");
            // HEAD: the head alone, the length as the origin gave it.
            let req = hyper::Request::head(path).body(full(bytes::Bytes::new())).expect("request");
            let res = visitor.send(&host, req).await;
            assert_eq!(res.status().as_u16(), status, "HEAD {path}");
            let got = http_body_util::BodyExt::collect(res.into_body()).await.expect("body").to_bytes();
            assert!(got.is_empty(), "HEAD {path}");
        }
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "every exchange should reuse the first connection");
    // An origin that ends the connection inside a body: the visitor does not get a
    // whole 1,024 bytes, and the next request is answered on a new connection.
    let req = hyper::Request::get("/short").body(full(bytes::Bytes::new())).expect("request");
    if let Ok(res) = visitor.try_send(&host, req).await {
        let got = http_body_util::BodyExt::collect(res.into_body()).await.map(|b| b.to_bytes().len());
        assert!(!matches!(got, Ok(1024)), "a cut body came back whole: {got:?}");
    }
    let (status, got) = visitor.get(&host, "/small").await;
    assert_eq!((status, got.len()), (200, 1024));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}
