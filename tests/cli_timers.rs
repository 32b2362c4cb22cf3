//! The binary's lean runtimes (built without tokio's time driver; their timers on one
//! timerfd per runtime, `localtunnels_driver::timers`) over real sockets: which runtimes
//! are lean (a lean runtime's timerfd shows in `/proc/PID/fd`; tokio's time driver has
//! none), one that must not be (ACME brings its own tokio timers), and the timers that
//! matter firing on them: a silent visitor's header deadline, an idle visitor's
//! timeout, the response deadline, the client's reconnect after the server restarts.
//! Nothing here asserts how promptly a timer fires, only that it does (generous bounds).

#![cfg(target_os = "linux")]

mod cli_common;
mod common;

use std::time::Duration;

use cli_common::{server, Proc};
use common::{full, host_of, origin};
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far longer than any timer here (1 s) takes on a loaded machine.
const BOUND: Duration = Duration::from_secs(60);

/// How many timerfds the process `pid` holds (one per lean runtime).
fn timerfds(pid: u32) -> usize {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("the process's fds");
    fds.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|link| link.to_string_lossy() == "anon_inode:[timerfd]")
        .count()
}

fn pid(p: &Proc) -> u32 {
    p.child.id().expect("running")
}

async fn hello_origin() -> u16 {
    origin(|req: Request<Incoming>| async move { Response::new(full(format!("hello {}", req.uri().path()))) }).await
}

/// A client of the server on `port` for `origin_port`, with `extra` flags; its host.
async fn client(port: u16, origin_port: u16, extra: &[&str]) -> (Proc, String) {
    let (origin_port, server_url) = (origin_port.to_string(), format!("http://127.0.0.1:{port}"));
    let mut args = vec!["http", &origin_port, "--server", &server_url, "--local-host", "127.0.0.1"];
    args.extend_from_slice(extra);
    let mut client = Proc::spawn(&args, &[]);
    let host = host_of(&client.line().await);
    (client, host)
}

/// A GET on a new connection to the server on `port`, kept open: the status line.
async fn get(port: u16, host: &str, path: &str) -> (TcpStream, String) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(BOUND, tcp.read(&mut buf)).await.expect("an answer in time").unwrap();
        assert!(n > 0, "closed before the answer");
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    (tcp, text.lines().next().unwrap_or_default().to_string())
}

/// The server closes `tcp` (reads drain whatever it sent, then end) within [`BOUND`].
async fn closed_in_time(tcp: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let drained = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(BOUND, drained).await.is_ok()
}

#[tokio::test]
async fn the_current_thread_runtimes_are_lean_with_a_timerfd_each_and_multi_threaded_ones_are_not() {
    let (one, port) = server(&["--threads", "1"]).await;
    assert_eq!(timerfds(pid(&one)), 1, "the server's one runtime");
    let origin_port = hello_origin().await;
    let (client_one, _) = client(port, origin_port, &[]).await;
    assert_eq!(timerfds(pid(&client_one)), 1, "the client's one runtime");
    let (mut joined, _) = client(port, origin_port, &["--connections", "2"]).await;
    joined.stderr_line("connection 1 joined the tunnel").await;
    assert_eq!(timerfds(pid(&joined)), 2, "the client's runtime and its joined connection's");

    let (sharded, _) = server(&["--shards", "2"]).await;
    assert_eq!(timerfds(pid(&sharded)), 3, "the accepting runtime and each shard's");
    let (many, _) = server(&["--threads", "2"]).await;
    assert_eq!(timerfds(pid(&many)), 0, "a multi-threaded runtime keeps tokio's timers");
}

/// ACME (instant-acme) brings its own tokio timers: the server keeps tokio's time
/// driver, and starts (the directory is only contacted for a certificate).
#[tokio::test]
async fn a_server_with_acme_keeps_tokios_timers() {
    let dir = std::env::temp_dir().join(format!("localtunnels-timers-acme-{}", std::process::id()));
    let dir = dir.to_string_lossy().into_owned();
    let flags = [
        "--threads",
        "1",
        "--domain",
        "tunnels.test",
        "--acme",
        "--acme-email",
        "ops@example.com",
        "--acme-cache",
        &dir,
    ];
    let local = ["server", "--port", "0", "--bind", "127.0.0.1", "--acme-directory", "https://127.0.0.1:9/directory"];
    let mut acme = Proc::spawn(&[&local[..], &flags[..]].concat(), &[]);
    let url = acme.line().await;
    assert!(url.starts_with("https://tunnels.test:"), "{url}");
    assert_eq!(timerfds(pid(&acme)), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn on_a_lean_server_a_silent_visitor_is_closed_at_the_header_deadline() {
    let (_srv, port) = server(&["--threads", "1", "--header-read-timeout", "1"]).await;
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    assert!(closed_in_time(&mut tcp).await, "never closed");
}

#[tokio::test]
async fn on_a_lean_server_an_idle_keep_alive_visitor_is_closed() {
    let flags = ["--threads", "1", "--idle-timeout", "1", "--header-read-timeout", "3600"];
    let (_srv, port) = server(&flags).await;
    let (_client, host) = client(port, hello_origin().await, &[]).await;
    let (mut tcp, status) = get(port, &host, "/idle").await;
    assert!(status.contains(" 200 "), "{status}");
    assert!(closed_in_time(&mut tcp).await, "an idle visitor was never closed");
}

#[tokio::test]
async fn on_a_lean_server_an_unanswered_request_is_a_504_at_the_response_deadline() {
    let (_srv, port) = server(&["--threads", "1", "--response-timeout", "1"]).await;
    let silent = origin(|_req: Request<Incoming>| std::future::pending()).await;
    let (_client, host) = client(port, silent, &[]).await;
    let (_tcp, status) = get(port, &host, "/slow").await;
    assert!(status.contains(" 504 "), "{status}");
}

/// The client's backoff sleep fires on its lean runtime: it reconnects to the
/// restarted server (same port) and serves again.
#[tokio::test]
async fn a_lean_client_reconnects_after_the_server_restarts() {
    let (mut srv, port) = server(&["--threads", "1"]).await;
    let (mut client, host) = client(port, hello_origin().await, &["--subdomain", "again"]).await;
    srv.child.start_kill().unwrap();
    srv.child.wait().await.unwrap();
    client.stderr_line("reconnecting in ").await;
    let port_arg = port.to_string();
    let mut again = Proc::spawn(&["server", "--port", &port_arg, "--bind", "127.0.0.1", "--threads", "1"], &[]);
    again.line().await;
    client.stderr_line("reconnected").await;
    let (_tcp, status) = get(port, &host, "/back").await;
    assert!(status.contains(" 200 "), "{status}");
}
