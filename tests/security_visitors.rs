//! Hostile visitors (issue 17): one address cannot take all of a tunnel's streams or
//! its whole rate, connections that never send a request head are closed at the
//! header timeout whatever protocol they start, and a tunnel cannot set cookies for
//! the apex or other tunnels. Visitors from a second address connect from 127.0.0.2.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use localtunnels_server::{Limits, RateLimit, ServerConfig, ServerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

const OFFENDER: [u8; 4] = [127, 0, 0, 2];
const BYSTANDER: [u8; 4] = [127, 0, 0, 1];

/// A TCP connection to `server` from the loopback address `from`.
async fn connect_from(server: &ServerHandle, from: [u8; 4]) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).expect("bind a loopback source address");
    socket.connect(SocketAddr::from(([127, 0, 0, 1], server.addr().port()))).await.expect("connect")
}

/// GET `path` on `host` from the loopback address `from`, on a connection of its own.
async fn get_from(server: &ServerHandle, from: [u8; 4], host: &str, path: &str) -> (u16, String) {
    let tcp = connect_from(server, from).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::get(path).header("host", host).body(full(Bytes::new())).unwrap();
    let res = sender.send_request(req).await.expect("a response");
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Starts an upload from `from` that never finishes: its head, then 3 of 1,000,000 bytes.
async fn slow_upload(server: &ServerHandle, from: [u8; 4], host: &str) -> TcpStream {
    let mut tcp = connect_from(server, from).await;
    let head = format!("POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000000\r\n\r\nabc");
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp
}

/// The status line's code of the response on `tcp`, within 20 s.
async fn status_of(tcp: &mut TcpStream) -> u16 {
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut buf))
        .await
        .expect("an answer within 20 s")
        .expect("read");
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not a response: {text}"))
}

/// An origin that reports each upload when its head arrives and then reads its body
/// (which never ends); other paths answer `ok` at once.
async fn upload_origin() -> (u16, mpsc::UnboundedReceiver<()>) {
    let (arrived_tx, arrived) = mpsc::unbounded_channel();
    let port = origin(move |req: Request<Incoming>| {
        let arrived = arrived_tx.clone();
        async move {
            if req.uri().path() == "/upload" {
                let _ = arrived.send(());
                let _ = req.into_body().collect().await;
            }
            Response::new(full("ok"))
        }
    })
    .await;
    (port, arrived)
}

#[tokio::test]
async fn one_address_cannot_take_all_of_a_tunnels_streams() {
    let limits = Limits { max_streams_per_tunnel: 64, max_streams_per_visitor: 8, ..Limits::default() };
    let server =
        server_with(ServerConfig { limits, response_timeout: Duration::from_secs(3), ..ServerConfig::default() }).await;
    let (port, mut arrived) = upload_origin().await;
    let tunnel = client(&server, port, Some("shared")).await;
    let host = host_of(&tunnel.url());

    // One address starts as many slow uploads as it may: each reaches the origin.
    let mut uploads = Vec::new();
    for _ in 0..8 {
        uploads.push(slow_upload(&server, OFFENDER, &host).await);
        tokio::time::timeout(Duration::from_secs(20), arrived.recv()).await.expect("the upload reaches the origin");
    }
    // The next one from that address is refused at once, without reaching the origin.
    let mut extra = slow_upload(&server, OFFENDER, &host).await;
    assert_eq!(status_of(&mut extra).await, 503, "the offender's next upload");
    let (status, body) = get_from(&server, OFFENDER, &host, "/").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("your address"), "{body}");
    assert!(arrived.try_recv().is_err(), "a refused upload never reached the origin");

    // Another address is served meanwhile.
    assert_eq!(get_from(&server, BYSTANDER, &host, "/").await, (200, "ok".to_string()));

    // When the offender's uploads end, its address may start exchanges again.
    drop(uploads);
    let again = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match get_from(&server, OFFENDER, &host, "/").await.0 {
                200 => break,
                503 => tokio::time::sleep(Duration::from_millis(20)).await,
                other => panic!("unexpected {other}"),
            }
        }
    });
    again.await.expect("the address's count goes back down");
}

/// A response the tunnel's reader wrote straight to the visitor's socket (the server's
/// direct path) ends its exchange's count against the address when it is written, as
/// one the visitor's task writes: with a limit of one exchange in flight per address,
/// the address's next request on another connection is served while the first
/// connection sits idle (its task asleep until its next request), and a request while
/// another of the address's is in flight is refused, on that first connection too.
#[tokio::test]
async fn a_response_the_tunnels_reader_wrote_ends_its_exchanges_count() {
    // Long keep-alive and response times: nothing but the write may end the count.
    let limits =
        Limits { max_streams_per_visitor: 1, header_read_timeout: Duration::from_secs(120), ..Limits::default() };
    let config = ServerConfig { limits, response_timeout: Duration::from_secs(120), ..ServerConfig::default() };
    let server = server_with(config).await;
    let (port, mut arrived) = upload_origin().await;
    let tunnel = client(&server, port, Some("one-at-a-time")).await;
    let host = host_of(&tunnel.url());
    let get = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");

    // The first connection's response is the reader's to write; the connection stays
    // open and idle.
    let mut idle = connect_from(&server, OFFENDER).await;
    idle.write_all(get.as_bytes()).await.unwrap();
    assert_eq!(status_of(&mut idle).await, 200);
    assert_eq!(server.direct_writes(), 1, "the response went the visitor task's way");
    // Its exchange is over: the address's next one is admitted.
    assert_eq!(get_from(&server, OFFENDER, &host, "/").await, (200, "ok".to_string()));
    assert_eq!(server.direct_writes(), 2);

    // An exchange in flight (an upload that never ends) holds the address's one place:
    // the next request is refused, on a connection of its own and on the idle one.
    let _upload = slow_upload(&server, OFFENDER, &host).await;
    tokio::time::timeout(Duration::from_secs(20), arrived.recv()).await.expect("the upload reaches the origin");
    assert_eq!(get_from(&server, OFFENDER, &host, "/").await.0, 503);
    idle.write_all(get.as_bytes()).await.unwrap();
    assert_eq!(status_of(&mut idle).await, 503);
    // Another address is served meanwhile, by the reader's write.
    assert_eq!(get_from(&server, BYSTANDER, &host, "/").await, (200, "ok".to_string()));
    assert_eq!(server.direct_writes(), 3);
}

#[tokio::test]
async fn one_address_over_its_rate_does_not_use_up_the_tunnels_rate() {
    // No refill, so the test does not depend on how fast this machine is.
    let limits = Limits {
        rate_limit: Some(RateLimit { per_second: 0, burst: 5 }),
        visitor_rate_limit: Some(RateLimit { per_second: 0, burst: 2 }),
        ..Limits::default()
    };
    let server = server_with(ServerConfig { limits, ..ServerConfig::default() }).await;
    let port = origin(|_req: Request<Incoming>| async { Response::new(full("ok")) }).await;
    let tunnel = client(&server, port, Some("metered")).await;
    let host = host_of(&tunnel.url());

    for _ in 0..2 {
        assert_eq!(get_from(&server, OFFENDER, &host, "/").await.0, 200);
    }
    for _ in 0..10 {
        let (status, body) = get_from(&server, OFFENDER, &host, "/").await;
        assert_eq!(status, 429, "{body}");
    }
    // The tunnel's own budget of 5 lost only the offender's 2.
    for _ in 0..2 {
        assert_eq!(get_from(&server, BYSTANDER, &host, "/").await.0, 200);
    }
    let third = get_from(&server, [127, 0, 0, 3], &host, "/").await.0;
    assert_eq!(third, 200, "a third address still has the tunnel's last request");
    assert_eq!(get_from(&server, [127, 0, 0, 4], &host, "/").await.0, 429, "the tunnel's budget is spent");
}

#[tokio::test]
async fn connections_without_a_request_head_are_closed_at_the_header_timeout() {
    // The idle timeout stays at its 300 s default: only the head deadline can close these.
    let limits = Limits { header_read_timeout: Duration::from_secs(2), ..Limits::default() };
    let server = server_with(ServerConfig { limits, ..ServerConfig::default() }).await;
    let port = origin(|_req: Request<Incoming>| async { Response::new(full("ok")) }).await;
    let tunnel = client(&server, port, Some("steady")).await;
    let host = host_of(&tunnel.url());

    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(server.addr()).await.unwrap());
    }
    let mut preface_only = Vec::new();
    for _ in 0..20 {
        let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
        // The HTTP/2 preface and an empty SETTINGS frame, then nothing.
        tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
        preface_only.push(tcp);
    }
    // Visitors are served meanwhile.
    assert_eq!(Visitor::new(&server).get(&host, "/").await.0, 200);
    for tcp in &mut silent {
        assert!(closed_by_server(tcp).await, "a connection that sent nothing stayed open");
    }
    for tcp in &mut preface_only {
        assert!(closed_by_server(tcp).await, "an HTTP/2 connection without a request stayed open");
    }

    // An HTTP/2 connection that has sent a request is not cut by the head deadline.
    let tcp = TcpStream::connect(server.addr()).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let uri = format!("http://{host}/");
    let res = h2.send_request(Request::get(&uri).body(full(Bytes::new())).unwrap()).await.unwrap();
    assert_eq!(res.status(), 200);
    // Past the head deadline (measured by a second connection that sends nothing).
    let mut witness = TcpStream::connect(server.addr()).await.unwrap();
    assert!(closed_by_server(&mut witness).await);
    let res = h2.send_request(Request::get(&uri).body(full(Bytes::new())).unwrap()).await.unwrap();
    assert_eq!(res.status(), 200, "the HTTP/2 connection that made a request is still served");
}

#[tokio::test]
async fn a_tunnel_cannot_set_cookies_for_the_apex_or_other_tunnels() {
    let server = server().await;
    let port = origin(|_req: Request<Incoming>| async {
        let mut res = Response::new(full("ok"));
        for cookie in [
            "apex=1; Domain=localhost; Path=/",
            "dotted=1; Path=/; domain=.LOCALHOST",
            "own=1; Domain=baker.localhost; HttpOnly",
            "plain=1; Path=/",
        ] {
            res.headers_mut().append(hyper::header::SET_COOKIE, cookie.parse().unwrap());
        }
        res
    })
    .await;
    let tunnel = client(&server, port, Some("baker")).await;
    let res = Visitor::new(&server).send(&host_of(&tunnel.url()), Request::get("/").body(full("")).unwrap()).await;
    assert_eq!(res.status(), 200);
    let cookies: Vec<_> =
        res.headers().get_all(hyper::header::SET_COOKIE).iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(
        cookies,
        ["apex=1; Path=/", "dotted=1; Path=/", "own=1; Domain=baker.localhost; HttpOnly", "plain=1; Path=/"],
        "cookies for the apex become host-only; the tunnel's own host is kept"
    );
}
