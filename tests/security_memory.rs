//! Issue 17, items 1-4, against a real `localtunnels server` process over loopback:
//! hostile control connections that announce huge windows and never read, or flood
//! pings and never read the answers, cannot grow the server's memory past a fixed bound
//! while an honest tunnel on the same server keeps answering; and visitors that stop
//! reading a large response cannot starve the rest of their tunnel.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures_util::SinkExt;
use http_body_util::StreamBody;
use hyper::body::Frame as BodyFrame;
use localtunnels_client::{ClientConfig, ClientHandle, TunnelClient};
use localtunnels_core::{Config, DecodeLimits, Frame, Hello, Limits, PROTOCOL_VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The bound the server's resident memory must stay under while it is attacked.
const RSS_BOUND_KIB: u64 = 64 * 1024;
/// How long each attack runs.
const ATTACK: Duration = Duration::from_secs(6);

/// A `localtunnels server` process on 127.0.0.1, port 0; returns it and its port.
async fn server_process() -> (Cli, u16) {
    server_process_with(&[]).await
}

/// As [`server_process`], with more flags.
async fn server_process_with(flags: &[&str]) -> (Cli, u16) {
    let mut args = vec!["server", "--port", "0", "--bind", "127.0.0.1"];
    args.extend_from_slice(flags);
    let mut server = Cli::spawn(&args);
    let url = server.line().await;
    let port = url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("a URL: {url}"));
    (server, port)
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the server is running");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number of KiB")
}

/// An honest tunnel named `name` to an origin that answers `ok`.
async fn honest_tunnel(port: u16, name: &str) -> ClientHandle {
    let origin_port =
        origin(|_req: hyper::Request<hyper::body::Incoming>| async { hyper::Response::new(full("ok")) }).await;
    let config = ClientConfig {
        server: Some(format!("http://127.0.0.1:{port}")),
        local_host: "127.0.0.1".into(),
        local_port: origin_port,
        subdomain: Some(name.into()),
        ..ClientConfig::default()
    };
    TunnelClient::new(config).connect().await.expect("the honest tunnel connects")
}

/// One `GET path` on tunnel `name` (the apex for "") over a fresh connection; the
/// whole response.
async fn get(port: u16, name: &str, path: &str) -> String {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let host = if name.is_empty() { format!("localhost:{port}") } else { format!("{name}.localhost:{port}") };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

/// A control connection that completes the handshake as `name`, announcing `limits`,
/// and then reads nothing more (the caller only writes to it).
async fn hostile(port: u16, name: &str, limits: Limits) -> Ws {
    let mut req = format!("ws://127.0.0.1:{port}/api/tunnel").into_client_request().unwrap();
    req.headers_mut().insert("sec-websocket-protocol", "localtunnels.v1".parse().unwrap());
    let mut ws = tokio_tungstenite::connect_async(req).await.expect("control upgrade").0;
    let hello = Hello {
        version: PROTOCOL_VERSION,
        name: name.into(),
        client_kind: "hostile".into(),
        limits: Some(limits),
        ..Hello::default()
    };
    ws.send(Message::Binary(Frame::Hello(Box::new(hello)).encode())).await.unwrap();
    let no_limits = DecodeLimits { max_frame: usize::MAX, max_header_bytes: usize::MAX };
    loop {
        use futures_util::StreamExt;
        match ws.next().await.expect("a welcome").expect("a message") {
            Message::Binary(b) => match Frame::decode(b, &no_limits).expect("a frame") {
                Frame::Welcome(_) => return ws,
                other => panic!("expected a welcome, got {other:?}"),
            },
            _ => continue,
        }
    }
}

/// A visitor uploading an endless body to tunnel `name` as fast as the server takes it.
fn uploader(port: u16, name: &str) -> JoinHandle<()> {
    let head = format!("POST /up HTTP/1.1\r\nHost: {name}.localhost:{port}\r\nContent-Length: 1099511627776\r\n\r\n");
    tokio::spawn(async move {
        let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", port)).await else { return };
        let chunk = vec![0x42u8; 64 * 1024];
        if tcp.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        while tcp.write_all(&chunk).await.is_ok() {}
    })
}

/// While an attack runs (for [`ATTACK`]), samples the server's memory and asks the
/// honest tunnel for `/` again and again; returns the peak RSS (KiB) and how many of
/// the honest requests were answered, failing on the first that is not.
async fn under_attack(pid: u32, port: u16, honest: &str) -> (u64, u32) {
    let start = Instant::now();
    let mut peak = rss_kib(pid);
    let mut answered = 0;
    while start.elapsed() < ATTACK {
        let answer = tokio::time::timeout(Duration::from_secs(20), get(port, honest, "/")).await;
        let answer = answer.expect("the honest tunnel answers within 20 s while the server is attacked");
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"), "{answer}");
        answered += 1;
        peak = peak.max(rss_kib(pid));
        assert!(peak < RSS_BOUND_KIB, "the server's RSS reached {peak} KiB");
        // Paced, so that the probe measures service rather than competing for the CPU.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (peak, answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_announces_huge_windows_and_never_reads_cannot_grow_the_server() {
    let (server, port) = server_process().await;
    let pid = server.child.id().expect("pid");
    let _honest = honest_tunnel(port, "honest").await;
    let greedy = Limits { stream_window: u32::MAX, session_window: u32::MAX, ..Limits::from(&Config::DEFAULT) };
    let _ws = hostile(port, "greedy", greedy).await;
    let uploads: Vec<_> = (0..8).map(|_| uploader(port, "greedy")).collect();
    let (peak, answered) = under_attack(pid, port, "honest").await;
    for u in uploads {
        u.abort();
    }
    eprintln!("peak RSS {peak} KiB, {answered} honest answers");
    assert!(answered > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_floods_pings_and_never_reads_cannot_grow_the_server() {
    let (server, port) = server_process().await;
    let pid = server.child.id().expect("pid");
    let _honest = honest_tunnel(port, "honest").await;
    let mut ws = hostile(port, "pinger", Limits::from(&Config::DEFAULT)).await;
    // Protocol pings, packed 3,000 to a message, with WebSocket pings between them.
    let flood = tokio::spawn(async move {
        let batch = Frame::Batch((0..3000).map(Frame::Ping).collect()).encode();
        loop {
            if ws.send(Message::Binary(batch.clone())).await.is_err() {
                break;
            }
            if ws.send(Message::Ping(Bytes::from_static(&[7; 125]))).await.is_err() {
                break;
            }
        }
        // The server may close a client that does not read; the socket stays open.
        std::future::pending::<()>().await;
    });
    let (peak, answered) = under_attack(pid, port, "honest").await;
    flood.abort();
    eprintln!("peak RSS {peak} KiB, {answered} honest answers");
    assert!(answered > 0);
}

/// An origin whose `/big` streams [`BIG`] bytes (counted in the returned counter as it
/// hands them out) and whose other paths answer `small`, behind a tunnel named `big`.
async fn big_tunnel(port: u16) -> (ClientHandle, Arc<AtomicU64>) {
    const CHUNK: usize = 64 * 1024;
    let produced = Arc::new(AtomicU64::new(0));
    let count = produced.clone();
    let origin_port = origin(move |req: hyper::Request<hyper::body::Incoming>| {
        let count = count.clone();
        async move {
            if req.uri().path() != "/big" {
                return hyper::Response::new(full("small"));
            }
            let chunk = Bytes::from(vec![0x61u8; CHUNK]);
            let chunks = futures_util::stream::iter((0..BIG / CHUNK as u64).map(move |_| {
                count.fetch_add(CHUNK as u64, Ordering::Relaxed);
                Ok::<_, BoxError>(BodyFrame::data(chunk.clone()))
            }));
            hyper::Response::new(http_body_util::BodyExt::boxed(StreamBody::new(chunks)))
        }
    })
    .await;
    let config = ClientConfig {
        server: Some(format!("http://127.0.0.1:{port}")),
        local_host: "127.0.0.1".into(),
        local_port: origin_port,
        subdomain: Some("big".into()),
        ..ClientConfig::default()
    };
    (TunnelClient::new(config).connect().await.expect("the tunnel connects"), produced)
}

/// The size of `/big`.
const BIG: u64 = 64 << 20;

/// A visitor that asks for `/big`, reads the response head, and stops reading (with a
/// small receive buffer, so that the server soon finds it full).
async fn stalled_visitor(port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(([127, 0, 0, 1], port).into()).await.expect("connect");
    let req = format!("GET /big HTTP/1.1\r\nHost: big.localhost:{port}\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(tcp.read(&mut b).await.unwrap(), 1, "the response head arrives");
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    tcp
}

/// Waits until the origin has handed out nothing more for a second (every buffer on
/// the way to the stalled visitors is full); returns what it handed out.
async fn settled(produced: &AtomicU64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = (produced.load(Ordering::Relaxed), Instant::now());
    while last.1.elapsed() < Duration::from_secs(1) {
        assert!(Instant::now() < deadline, "the stalled downloads never settled");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = produced.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    last.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_stalled_readers_leave_a_small_get_answering() {
    let (_server, port) = server_process().await;
    let (_tunnel, produced) = big_tunnel(port).await;
    let mut stalled = Vec::new();
    for _ in 0..16 {
        stalled.push(stalled_visitor(port).await);
    }
    let handed_out = settled(&produced).await;
    assert!(handed_out < 16 * BIG, "the downloads stalled ({handed_out} bytes handed out)");

    // A small GET on the same tunnel still answers, at once (generously: within 10 s;
    // before the fix it waited for the 300 s idle timeout).
    let asked = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(10), get(port, "big", "/small")).await;
    let answer = answer.expect("a small GET answers while 16 readers are stalled");
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("small"), "{answer}");
    eprintln!("small GET answered in {:?} with {handed_out} bytes handed out", asked.elapsed());
    drop(stalled);
}

/// The server's `localtunnels_streams` gauge.
async fn streams_in_flight(port: u16) -> u64 {
    let metrics = get(port, "", "/metrics").await;
    let line = metrics.lines().find(|l| l.starts_with("localtunnels_streams ")).expect("the streams gauge");
    line.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_that_reads_nothing_is_dropped_after_the_write_timeout() {
    let (_server, port) = server_process_with(&["--visitor-write-timeout", "2"]).await;
    let (_tunnel, produced) = big_tunnel(port).await;
    let mut visitor = stalled_visitor(port).await;
    settled(&produced).await;
    // The server drops it (its stream ends) about 2 s after its writes stalled.
    let deadline = Instant::now() + Duration::from_secs(60);
    while streams_in_flight(port).await > 0 {
        assert!(Instant::now() < deadline, "the stalled visitor was never dropped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What was on its way still arrives, then the connection ends short of the body.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), visitor.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection ends");
    assert!((rest.len() as u64) < BIG, "the whole body arrived: the visitor was not dropped");
    // The tunnel is fine.
    let answer = get(port, "big", "/small").await;
    assert!(answer.ends_with("small"), "{answer}");
}
