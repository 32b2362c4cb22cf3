//! Bodies stream through the tunnel, never buffered whole.
//!
//! - Server-sent events: the visitor holds each event before the origin writes the
//!   next one (the origin waits for the test's go-ahead), which proves nothing on the
//!   way buffers.
//! - 1 GiB down and 1 GiB up through a server and a client running as `localtunnels`
//!   processes, CRC-32 on both ends, and both processes' peak resident memory
//!   (VmHWM) under 64 MiB. In a debug build on two cores this test takes about 17 s
//!   (10 s down, 7 s up; both processes peaked near 17 MiB); the SSE test takes
//!   milliseconds.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use tokio::sync::{mpsc, oneshot};

#[tokio::test]
async fn server_sent_events_arrive_one_by_one() {
    const EVENTS: usize = 5;
    let server = server().await;
    // The test hands the origin one go-ahead per event after the first.
    let (go_tx, go_rx) = mpsc::unbounded_channel::<()>();
    let go_rx = Arc::new(Mutex::new(Some(go_rx)));
    let port = origin(move |_req: Request<Incoming>| {
        let go_rx = go_rx.lock().unwrap().take();
        async move {
            let go = go_rx.expect("one SSE request");
            let events = futures_util::stream::unfold((0usize, go), move |(i, mut go)| async move {
                if i == EVENTS {
                    return None;
                }
                if i > 0 {
                    go.recv().await?;
                }
                let event = Bytes::from(format!("id: {i}\ndata: event {i}\n\n"));
                Some((Ok::<_, BoxError>(Frame::data(event)), (i + 1, go)))
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(StreamBody::new(events).boxed())
                .unwrap()
        }
    })
    .await;
    let tunnel = client(&server, port, None).await;
    let req = Request::get("/events").header("accept", "text/event-stream").body(full("")).unwrap();
    let res = Visitor::new(&server).send(&host_of(&tunnel.url()), req).await;
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert_eq!(res.headers()["transfer-encoding"], "chunked");
    let mut body = res.into_body();
    let mut pending = Vec::new();
    for i in 0..EVENTS {
        let expected = format!("id: {i}\ndata: event {i}\n\n");
        // If anything buffered, event i would never come: the origin is waiting for
        // us. The timeout turns that deadlock into a failure instead of a hang.
        let got = tokio::time::timeout(Duration::from_secs(30), async {
            while pending.len() < expected.len() {
                let frame = body.frame().await.expect("an event").expect("body ok");
                if let Ok(data) = frame.into_data() {
                    pending.extend_from_slice(&data);
                }
            }
            pending.drain(..expected.len()).collect::<Vec<u8>>()
        })
        .await
        .unwrap_or_else(|_| panic!("event {i} was held back"));
        assert_eq!(String::from_utf8(got).unwrap(), expected);
        if i + 1 < EVENTS {
            go_tx.send(()).unwrap();
        }
    }
    assert!(body.frame().await.is_none(), "the stream ends after the last event");
}

/// The deterministic test stream: byte `i` is `PATTERN[i % PATTERN.len()]`, where
/// the pattern is xorshift noise of a length (1 MiB + 13) that no frame, window or
/// chunk size divides, so a lost, repeated or reordered chunk changes the CRC.
fn pattern() -> Bytes {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity((1 << 20) + 13);
    while out.len() < (1 << 20) + 13 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate((1 << 20) + 13);
    Bytes::from(out)
}

/// `total` bytes of the test stream in chunks of at most 64 KiB (zero-copy slices of
/// the pattern); `crc` receives the CRC-32 of what was produced once it all was.
fn generate(total: u64, crc: oneshot::Sender<u32>) -> TestBody {
    let pattern = pattern();
    let state = (0u64, crc32fast::Hasher::new(), Some(crc));
    let chunks = futures_util::stream::unfold(state, move |(pos, mut hasher, mut done)| {
        let pattern = pattern.clone();
        async move {
            if pos == total {
                if let Some(tx) = done.take() {
                    let _ = tx.send(hasher.clone().finalize());
                }
                return None;
            }
            let at = usize::try_from(pos % pattern.len() as u64).unwrap();
            let left = usize::try_from((total - pos).min(64 * 1024)).unwrap();
            let chunk = pattern.slice(at..pattern.len().min(at + left));
            hasher.update(&chunk);
            let next = pos + chunk.len() as u64;
            Some((Ok::<_, BoxError>(Frame::data(chunk)), (next, hasher, done)))
        }
    });
    StreamBody::new(chunks).boxed()
}

/// Length and CRC-32 of a body, read frame by frame.
async fn consume(body: Incoming) -> (u64, u32) {
    let mut body = body;
    let mut hasher = crc32fast::Hasher::new();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("body ok").into_data() {
            hasher.update(&data);
            n += data.len() as u64;
        }
    }
    (n, hasher.finalize())
}

/// Peak and current resident memory of a process, in KiB, from /proc.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {status}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_each_way_with_checksums_and_bounded_memory() {
    const GIB: u64 = 1 << 30;
    const LIMIT_KIB: u64 = 64 * 1024;
    let mut server = Cli::spawn(&["server", "--port", "0", "--bind", "127.0.0.1"]);
    let server_url = server.line().await;
    let server_port: u16 = server_url.rsplit(':').next().unwrap().parse().unwrap();

    // The origin: GET /download streams the test stream and reports its CRC;
    // POST /upload answers with the length and CRC of what it received.
    let (sent_tx, sent_rx) = oneshot::channel::<u32>();
    let sent_tx = Arc::new(Mutex::new(Some(sent_tx)));
    let origin_port = origin(move |req: Request<Incoming>| {
        let sent_tx = sent_tx.clone();
        async move {
            match req.uri().path() {
                "/download" => {
                    let tx = sent_tx.lock().unwrap().take().expect("one download");
                    Response::new(generate(GIB, tx))
                }
                _ => {
                    let (n, crc) = consume(req.into_body()).await;
                    Response::new(full(format!("{n} {crc:08x}")))
                }
            }
        }
    })
    .await;
    let mut client = Cli::spawn(&[
        "client",
        "--server",
        &format!("http://127.0.0.1:{server_port}"),
        "--local-host",
        "127.0.0.1",
        "--local-port",
        &origin_port.to_string(),
        "--subdomain",
        "big",
    ]);
    let public = client.line().await;
    let host = host_of(&public);
    let pids = [("server", server.child.id().unwrap()), ("client", client.child.id().unwrap())];
    let visitor = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let url = |path: &str| format!("http://127.0.0.1:{server_port}{path}");

    let started = Instant::now();
    let req = Request::get(url("/download")).header("host", &host).body(full("")).unwrap();
    let res = visitor.request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let (n, got) = consume(res.into_body()).await;
    let sent = sent_rx.await.unwrap();
    assert_eq!(n, GIB);
    assert_eq!(got, sent, "download CRC");
    eprintln!("1 GiB down in {:.1?}", started.elapsed());
    for (who, pid) in pids {
        let (peak, now) = memory_kib(pid);
        eprintln!("{who}: peak {peak} KiB, now {now} KiB after the download");
        assert!(peak < LIMIT_KIB, "{who} peaked at {peak} KiB");
    }

    let started = Instant::now();
    let (up_tx, up_rx) = oneshot::channel::<u32>();
    let req = Request::post(url("/upload")).header("host", &host).body(generate(GIB, up_tx)).unwrap();
    let res = visitor.request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let answer = res.into_body().collect().await.unwrap().to_bytes();
    let sent = up_rx.await.unwrap();
    assert_eq!(String::from_utf8_lossy(&answer), format!("{GIB} {sent:08x}"), "upload length and CRC");
    eprintln!("1 GiB up in {:.1?}", started.elapsed());
    for (who, pid) in pids {
        let (peak, now) = memory_kib(pid);
        eprintln!("{who}: peak {peak} KiB, now {now} KiB after the upload");
        assert!(peak < LIMIT_KIB, "{who} peaked at {peak} KiB");
    }

    client.terminate();
    server.terminate();
    assert!(client.child.wait().await.unwrap().success());
    assert!(server.child.wait().await.unwrap().success());
}
