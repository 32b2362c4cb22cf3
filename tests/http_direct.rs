//! The tunnel reader's own write of the usual small response to an idle plain-TCP
//! HTTP/1 visitor (`visitor_h1::direct` in the server): taken for such a response, with
//! the bytes the visitor task writes; every case outside its rules (`HEAD`, 204, 304,
//! `Connection: close`, HTTP/1.0, a body larger than one read, pipelined requests, a
//! visitor that does not read) goes the visitor task's way, and each visitor still gets
//! every response whole and in order. The server counts the reader's writes
//! (`ServerHandle::direct_writes`), so each case checks which way its response went.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use localtunnels_server::{Limits, ServerConfig, ServerHandle};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The usual response's body.
const SMALL: usize = 1024;

/// A body many reads long.
const BIG: usize = 256 * 1024;

/// An origin answering `/small` (1 KiB), `/big` (256 KiB), `/not-modified` (304),
/// `/no-content` (204), `/close` (a 1 KiB body and `Connection: close`), `/slow` (1 KiB
/// after 600 ms) and `/hang` (never).
async fn scripted() -> u16 {
    origin(|req| async move {
        match req.uri().path() {
            "/slow" => tokio::time::sleep(Duration::from_millis(600)).await,
            "/hang" => std::future::pending().await,
            _ => {}
        }
        let (status, body, close) = match req.uri().path() {
            "/big" => (200, Bytes::from(vec![b'b'; BIG]), false),
            "/not-modified" => (304, Bytes::new(), false),
            "/no-content" => (204, Bytes::new(), false),
            "/close" => (200, Bytes::from(vec![b'c'; SMALL]), true),
            _ => (200, Bytes::from(vec![b's'; SMALL]), false),
        };
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
        let mut res = hyper::Response::builder().status(status).header("x-path", path);
        if close {
            res = res.header("connection", "close");
        }
        res.body(full(body)).expect("response")
    })
    .await
}

/// A server (with `limits`) and a tunnel `direct` to the scripted origin; the host.
async fn setup(limits: Limits) -> (ServerHandle, localtunnels_client::ClientHandle, String) {
    let server = server_with(ServerConfig { limits, ..ServerConfig::default() }).await;
    let tunnel = client(&server, scripted().await, Some("direct")).await;
    let host = format!("direct.localhost:{}", server.addr().port());
    (server, tunnel, host)
}

/// A raw visitor connection to `server`.
async fn connect(server: &ServerHandle) -> TcpStream {
    let tcp = TcpStream::connect(("127.0.0.1", server.addr().port())).await.expect("visitor connects");
    tcp.set_nodelay(true).expect("nodelay");
    tcp
}

/// One response read off `tcp` (`buf` keeps what follows it): its head with the
/// `date` line left out (it changes by the second) and its body; `head_request`: no
/// body follows. `None` when the connection ends first.
async fn response(
    tcp: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
    head_request: bool,
) -> Option<(String, Vec<u8>)> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 8192];
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    buf.drain(..head_end);
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse::<usize>()))
        .map(|v| v.expect("a decimal length"))
        .unwrap_or(0);
    let length =
        if head_request || head.starts_with("HTTP/1.1 304") || head.starts_with("HTTP/1.1 204") { 0 } else { length };
    while buf.len() < length {
        let mut chunk = [0u8; 65536];
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body: Vec<u8> = buf.drain(..length).collect();
    let head = head.lines().filter(|l| !l.to_ascii_lowercase().starts_with("date:")).collect::<Vec<_>>().join("\n");
    Some((head, body))
}

fn get(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")
}

/// The usual response to a lone request goes from the tunnel's reader, and it is the
/// response the visitor task writes for the same request when it cannot (the
/// request pipelined behind another): the same head, field for field, and body.
#[tokio::test]
async fn the_reader_writes_the_usual_response_as_the_visitor_task_does() {
    let (server, _tunnel, host) = setup(Limits::default()).await;
    let mut tcp = connect(&server).await;
    let mut buf = Vec::new();
    let mut direct = Vec::new();
    for round in 1..=5u64 {
        tcp.write_all(get("/small", &host).as_bytes()).await.expect("request");
        direct.push(response(&mut tcp, &mut buf, false).await.expect("a response"));
        assert_eq!(server.direct_writes(), round, "round {round} went the visitor task's way");
    }
    // Two requests in one write: the first is answered with the second already read,
    // which the reader's write must not overtake: the visitor task writes it.
    let before = server.direct_writes();
    let two = format!("{}{}", get("/small", &host), get("/small", &host));
    tcp.write_all(two.as_bytes()).await.expect("requests");
    let first = response(&mut tcp, &mut buf, false).await.expect("the first response");
    let second = response(&mut tcp, &mut buf, false).await.expect("the second response");
    assert!(server.direct_writes() <= before + 1, "the pipelined request's response went the reader's way");
    assert!(direct[0].0.starts_with("HTTP/1.1 200 OK"), "{}", direct[0].0);
    assert_eq!(direct[0].1, vec![b's'; SMALL]);
    for (i, got) in direct.iter().chain([&first, &second]).enumerate() {
        assert_eq!(got, &direct[0], "response {i}");
    }
}

/// Each response the reader must not write goes the visitor task's way, whole.
#[tokio::test]
async fn other_responses_go_the_visitor_tasks_way() {
    let (server, _tunnel, host) = setup(Limits::default()).await;
    let cases: [(&str, String, bool, &str, usize); 6] = [
        ("HEAD", format!("HEAD /small HTTP/1.1\r\nHost: {host}\r\n\r\n"), true, "HTTP/1.1 200", 0),
        ("304", get("/not-modified", &host), false, "HTTP/1.1 304", 0),
        ("204", get("/no-content", &host), false, "HTTP/1.1 204", 0),
        ("a body larger than a read", get("/big", &host), false, "HTTP/1.1 200", BIG),
        ("HTTP/1.0", format!("GET /small HTTP/1.0\r\nHost: {host}\r\n\r\n"), false, "HTTP/1.0 200", SMALL),
        (
            "Connection: close",
            format!("GET /small HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
            false,
            "HTTP/1.1 200",
            SMALL,
        ),
    ];
    for (name, request, head_request, status, length) in cases {
        let mut tcp = connect(&server).await;
        let mut buf = Vec::new();
        tcp.write_all(request.as_bytes()).await.expect("request");
        let (head, body) = response(&mut tcp, &mut buf, head_request).await.expect(name);
        assert!(head.starts_with(status), "{name}: {head}");
        assert_eq!(body.len(), length, "{name}");
        assert_eq!(server.direct_writes(), 0, "{name} went the reader's way");
    }
    // The origin's `Connection: close` is its own connection's (the tunnel client drops
    // it): the visitor's response is the usual one, the reader's to write, and the
    // visitor's connection stays open.
    let mut tcp = connect(&server).await;
    let mut buf = Vec::new();
    for round in 1..=2 {
        tcp.write_all(get("/close", &host).as_bytes()).await.expect("request");
        let (head, body) = response(&mut tcp, &mut buf, false).await.expect("close");
        assert!(head.starts_with("HTTP/1.1 200") && !head.to_ascii_lowercase().contains("connection"), "{head}");
        assert_eq!(body, vec![b'c'; SMALL]);
        assert_eq!(server.direct_writes(), round, "round {round}");
    }
}

/// A visitor that sends many requests and reads nothing for a while (its socket's
/// buffers fill up, so the reader's writes find little or no room) still gets every
/// response, whole and in order.
#[tokio::test]
async fn a_visitor_that_reads_late_gets_every_response_in_order() {
    let (server, _tunnel, host) = setup(Limits::default()).await;
    let tcp = connect(&server).await;
    let (mut rd, mut wr) = tcp.into_split();
    const N: usize = 300;
    // The reader starts once this many requests are out (their responses, two of
    // them 256 KiB, are more than the sockets' buffers hold).
    const LATE: usize = 200;
    let path = |i: usize| if i % 100 == 99 { format!("/big?{i}") } else { format!("/small?{i}") };
    let (started, start) = tokio::sync::oneshot::channel();
    let sender = {
        let host = host.clone();
        tokio::spawn(async move {
            let mut started = Some(started);
            for i in 0..N {
                wr.write_all(get(&path(i), &host).as_bytes()).await.expect("request");
                if i + 1 == LATE {
                    let _ = started.take().map(|s| s.send(()));
                }
            }
            wr
        })
    };
    start.await.expect("the sender got that far");
    let mut buf = Vec::new();
    for i in 0..N {
        let got = tokio::time::timeout(Duration::from_secs(20), response(&mut rd, &mut buf, false)).await;
        let (head, body) = got.unwrap_or_else(|_| panic!("response {i} never came")).expect("a response");
        assert!(head.starts_with("HTTP/1.1 200"), "response {i}: {head}");
        assert!(head.contains(&format!("x-path: {}", path(i))), "response {i} out of order: {head}");
        assert_eq!(body.len(), if i % 100 == 99 { BIG } else { SMALL }, "response {i}");
    }
    let _wr = sender.await.expect("the sender ends");
}

/// After a response the reader wrote, the visitor task (asleep past it) still closes
/// an idle connection one header timeout after that response, not after its own
/// response deadline (30 s here: `closed_by_server` gives up after 20 s).
#[tokio::test]
async fn an_idle_connection_after_the_readers_write_closes_on_the_keep_alive_deadline() {
    let limits = Limits { header_read_timeout: Duration::from_secs(1), ..Limits::default() };
    let (server, _tunnel, host) = setup(limits).await;
    let mut tcp = connect(&server).await;
    let mut buf = Vec::new();
    tcp.write_all(get("/small", &host).as_bytes()).await.expect("request");
    let (head, _) = response(&mut tcp, &mut buf, false).await.expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(server.direct_writes(), 1, "the response went the visitor task's way");
    assert!(closed_by_server(&mut tcp).await, "the idle connection stayed open");
}

/// A request lent to the tunnel's reader whose response does not come in time is
/// answered 504 at the response deadline by the visitor task (the exchange taken back
/// from the reader), and the connection carries the next request, whose response the
/// reader writes again.
#[tokio::test]
async fn a_lent_request_without_a_response_in_time_is_answered_504_and_the_connection_goes_on() {
    let server =
        server_with(ServerConfig { response_timeout: Duration::from_millis(300), ..ServerConfig::default() }).await;
    let _tunnel = client(&server, scripted().await, Some("direct")).await;
    let host = format!("direct.localhost:{}", server.addr().port());
    let mut tcp = connect(&server).await;
    let mut buf = Vec::new();
    tcp.write_all(get("/hang", &host).as_bytes()).await.expect("request");
    let (head, body) = response(&mut tcp, &mut buf, false).await.expect("the 504");
    assert!(head.starts_with("HTTP/1.1 504"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("did not answer within 0.3 s"), "{body:?}");
    assert_eq!(server.direct_writes(), 0);
    tcp.write_all(get("/small", &host).as_bytes()).await.expect("request");
    let (head, body) = response(&mut tcp, &mut buf, false).await.expect("the next response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, vec![b's'; SMALL]);
    assert_eq!(server.direct_writes(), 1, "the next response went the visitor task's way");
}

/// The keep-alive time after a response the reader wrote counts from that write, not
/// from the request: a response that took 600 ms of a 1 s header timeout leaves the
/// idle connection open a whole second after it (the task, asleep past the lent
/// exchange, wakes at the offer's end, one header timeout after the request, and
/// sleeps on).
#[tokio::test]
async fn the_keep_alive_time_after_the_readers_write_counts_from_the_write() {
    let limits = Limits { header_read_timeout: Duration::from_secs(1), ..Limits::default() };
    let (server, _tunnel, host) = setup(limits).await;
    let mut tcp = connect(&server).await;
    let mut buf = Vec::new();
    tcp.write_all(get("/slow", &host).as_bytes()).await.expect("request");
    let (head, _) = response(&mut tcp, &mut buf, false).await.expect("a response");
    let written = std::time::Instant::now();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(server.direct_writes(), 1, "the response went the visitor task's way");
    assert!(closed_by_server(&mut tcp).await, "the idle connection stayed open");
    let open = written.elapsed();
    assert!(open >= Duration::from_millis(900), "closed {open:?} after the response, not a keep-alive time");
}

/// A response the reader does not write (a 304: not its usual head) wakes the visitor
/// task asleep past the lent exchange, which writes it; the next request on the
/// connection goes the reader's way again, and both come whole and in order.
#[tokio::test]
async fn a_lent_response_the_reader_declines_is_written_by_the_visitor_task() {
    let (server, _tunnel, host) = setup(Limits::default()).await;
    let mut tcp = connect(&server).await;
    let mut buf = Vec::new();
    for round in 1..=3u64 {
        tcp.write_all(get("/not-modified", &host).as_bytes()).await.expect("request");
        let (head, body) = response(&mut tcp, &mut buf, false).await.expect("the 304");
        assert!(head.starts_with("HTTP/1.1 304"), "{head}");
        assert!(body.is_empty());
        tcp.write_all(get("/small", &host).as_bytes()).await.expect("request");
        let (head, body) = response(&mut tcp, &mut buf, false).await.expect("the 200");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, vec![b's'; SMALL]);
        assert_eq!(server.direct_writes(), round, "round {round}");
    }
}
