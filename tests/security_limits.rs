//! Server limits end to end: each one, when hit, answers the one offender clearly
//! (429, 413, 503, 431, a closed connection) while everyone else carries on.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use hyper::{Request, Response};
use localtunnels_client::{ClientConfig, TunnelClient};
use localtunnels_server::{Limits, RateLimit, ServerConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// An origin answering `ok`, counting the requests it saw.
async fn counting_origin() -> (u16, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let port = origin(move |req: Request<hyper::body::Incoming>| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let body = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
            Response::new(full(format!("ok {body}")))
        }
    })
    .await;
    (port, seen)
}

fn limits(l: Limits) -> ServerConfig {
    ServerConfig { limits: l, ..ServerConfig::default() }
}

#[tokio::test]
async fn past_the_rate_limit_a_tunnels_visitors_get_429_and_other_tunnels_do_not() {
    // No refill, so the test does not depend on how fast this machine is.
    let server =
        server_with(limits(Limits { rate_limit: Some(RateLimit { per_second: 0, burst: 3 }), ..Limits::default() }))
            .await;
    let (port, seen) = counting_origin().await;
    let busy = client(&server, port, Some("busy")).await;
    let calm = client(&server, port, Some("calm")).await;
    let visitor = Visitor::new(&server);
    for _ in 0..3 {
        assert_eq!(visitor.get(&host_of(&busy.url()), "/").await.0, 200);
    }
    let res = visitor.send(&host_of(&busy.url()), Request::get("/").body(full(Bytes::new())).unwrap()).await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key(hyper::header::RETRY_AFTER));
    assert_eq!(seen.load(Ordering::SeqCst), 3, "the excess request never reached the origin");
    assert_eq!(visitor.get(&host_of(&calm.url()), "/").await.0, 200);
}

#[tokio::test]
async fn bodies_over_max_body_get_413_whether_declared_or_streamed() {
    let server = server_with(limits(Limits { max_body: Some(10), ..Limits::default() })).await;
    let (port, seen) = counting_origin().await;
    let tunnel = client(&server, port, Some("upload")).await;
    let host = host_of(&tunnel.url());
    let visitor = Visitor::new(&server);

    let declared = Request::post("/").body(full(vec![b'x'; 11])).unwrap();
    let res = visitor.send(&host, declared).await;
    assert_eq!(res.status(), 413);
    assert_eq!(seen.load(Ordering::SeqCst), 0, "a declared oversized body never opens a stream");

    let fits = Request::post("/").body(full(vec![b'x'; 10])).unwrap();
    let res = visitor.send(&host, fits).await;
    assert_eq!(res.status(), 200);
    assert_eq!(&res.into_body().collect().await.unwrap().to_bytes()[..], b"ok 10");

    // Chunked: no length up front, the limit is passed while streaming.
    let chunks = futures_util::stream::iter(
        [Bytes::from_static(b"12345"), Bytes::from_static(b"6789012345")]
            .map(|b| Ok::<_, BoxError>(hyper::body::Frame::data(b))),
    );
    let streamed = Request::post("/").body(http_body_util::StreamBody::new(chunks).boxed()).unwrap();
    let res = visitor.send(&host, streamed).await;
    assert_eq!(res.status(), 413);

    // The tunnel and the server are fine.
    assert_eq!(visitor.get(&host, "/").await.0, 200);
}

#[tokio::test]
async fn concurrent_exchanges_past_the_tunnels_limit_get_503() {
    let limits = limits(Limits { max_streams_per_tunnel: 2, max_body: Some(10), ..Limits::default() });
    let server = server_with(limits).await;
    // The origin holds every request until the gate opens.
    let (gate, gate_rx) = watch::channel(false);
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel::<()>();
    let port = origin(move |_req: Request<hyper::body::Incoming>| {
        let (mut gate, arrived) = (gate_rx.clone(), arrived_tx.clone());
        async move {
            let _ = arrived.send(());
            let _ = gate.wait_for(|open| *open).await;
            Response::new(full("done"))
        }
    })
    .await;
    let tunnel = client(&server, port, Some("narrow")).await;
    let host = host_of(&tunnel.url());
    let visitor = Visitor::new(&server);
    let pending: Vec<_> = (0..2)
        .map(|_| {
            let (visitor, host) = (visitor.clone(), host.clone());
            tokio::spawn(async move { visitor.get(&host, "/slow").await.0 })
        })
        .collect();
    arrived.recv().await.unwrap();
    arrived.recv().await.unwrap();
    let (status, body) = visitor.get(&host, "/third").await;
    assert_eq!(status, 503, "{body:?}");
    assert!(String::from_utf8_lossy(&body).contains("busy"));
    // Over both limits: the tunnel's busy answer comes first, as before the body's 413
    // (the HTTP/1 path checks the stream limit in its open, and a body over the limit
    // before it); a body within the limit gets the same 503.
    for size in [11, 5] {
        let post = Request::post("/over").body(full(vec![b'x'; size])).unwrap();
        let res = visitor.send(&host, post).await;
        assert_eq!(res.status(), 503, "a body of {size} bytes");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("The tunnel 'narrow' is busy"), "{body:?}");
    }
    gate.send_replace(true);
    for p in pending {
        assert_eq!(p.await.unwrap(), 200);
    }
    assert_eq!(visitor.get(&host, "/after").await.0, 200);

    // A client may announce a lower limit of its own: the server obeys it the same way.
    gate.send_replace(false);
    while arrived.try_recv().is_ok() {}
    let config = ClientConfig {
        subdomain: Some("tiny".into()),
        session: localtunnels_core::Config { max_streams: 1, ..localtunnels_core::Config::default() },
        ..client_config(&server, port)
    };
    let tiny = TunnelClient::new(config).connect().await.unwrap();
    let tiny_host = host_of(&tiny.url());
    let first = {
        let (visitor, host) = (visitor.clone(), tiny_host.clone());
        tokio::spawn(async move { visitor.get(&host, "/slow").await.0 })
    };
    arrived.recv().await.unwrap();
    assert_eq!(visitor.get(&tiny_host, "/second").await.0, 503);
    gate.send_replace(true);
    assert_eq!(first.await.unwrap(), 200);
}

#[tokio::test]
async fn oversized_request_heads_get_431() {
    let server = server_with(limits(Limits { max_header_bytes: 8192, ..Limits::default() })).await;
    let (port, seen) = counting_origin().await;
    let tunnel = client(&server, port, Some("heads")).await;
    let host = host_of(&tunnel.url());
    let visitor = Visitor::new(&server);
    let big = Request::get("/").header("x-big", "y".repeat(20_000)).body(full(Bytes::new())).unwrap();
    assert_eq!(visitor.send(&host, big).await.status(), 431);
    assert_eq!(seen.load(Ordering::SeqCst), 0);
    assert_eq!(Visitor::new(&server).get(&host, "/").await.0, 200);
}

#[tokio::test]
async fn slow_header_clients_are_cut_and_hold_no_one_up() {
    let server =
        server_with(limits(Limits { header_read_timeout: Duration::from_millis(300), ..Limits::default() })).await;
    let (port, _) = counting_origin().await;
    let tunnel = client(&server, port, Some("steady")).await;
    let host = host_of(&tunnel.url());
    // Fifty slowloris connections, each a request head that never ends.
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
        tcp.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-Slow: 1").as_bytes()).await.unwrap();
        slow.push(tcp);
    }
    // Everyone else is served meanwhile.
    let visitor = Visitor::new(&server);
    for _ in 0..5 {
        assert_eq!(visitor.get(&host, "/").await.0, 200);
    }
    for tcp in &mut slow {
        assert!(closed_by_server(tcp).await, "a slow-headers connection stayed open");
    }
}

/// A kept-alive HTTP/1 connection is served request after request (each takes the
/// connection's kept route and its one response deadline, set again each time), then
/// closed at the header timeout once it goes quiet.
#[tokio::test]
async fn a_kept_alive_connection_is_served_again_then_closed_at_the_header_timeout() {
    let server =
        server_with(limits(Limits { header_read_timeout: Duration::from_millis(500), ..Limits::default() })).await;
    let (port, seen) = counting_origin().await;
    let tunnel = client(&server, port, Some("steady")).await;
    let host = host_of(&tunnel.url());
    let tcp = TcpStream::connect(server.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
    let conn = tokio::spawn(conn);
    for i in 1..=20 {
        let req = Request::get("/").header("host", &host).body(full(Bytes::new())).unwrap();
        sender.ready().await.expect("the connection stays open between requests");
        let res = sender.send_request(req).await.expect("response");
        assert_eq!(res.status(), 200, "request {i}");
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), Bytes::from_static(b"ok 0"));
    }
    assert_eq!(seen.load(Ordering::SeqCst), 20);
    let closed = tokio::time::timeout(Duration::from_secs(20), conn).await;
    assert!(closed.is_ok(), "a quiet kept-alive connection stayed open past the header timeout");
}

#[tokio::test]
async fn silent_connections_are_closed_after_the_idle_timeout() {
    let server = server_with(limits(Limits {
        idle_timeout: Duration::from_millis(300),
        header_read_timeout: Duration::from_secs(600),
        ..Limits::default()
    }))
    .await;
    // An HTTP/2 connection that says hello and then nothing: hyper's header timeout
    // does not apply to HTTP/2, the idle timeout does.
    let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    assert!(closed_by_server(&mut tcp).await, "an idle HTTP/2 connection stayed open");
    // A connection that never sends a byte.
    let mut quiet = TcpStream::connect(server.addr()).await.unwrap();
    assert!(closed_by_server(&mut quiet).await, "a silent connection stayed open");
}
