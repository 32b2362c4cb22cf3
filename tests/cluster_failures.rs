//! Cluster failures with real processes (issue 18): a node paused past its lease stops
//! serving the name (fencing) while its client moves; Redis stopped and restarted
//! degrades and reconciles without dropping a client.

mod cli_common;
mod cluster_util;

use std::time::Duration;

use cli_common::Proc;
use cluster_util::{node, Redis};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An origin answering every request with 200 `ok`.
async fn origin() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").await;
            });
        }
    });
    port
}

/// A visitor's GET of `name` through the node at `base`: the status (0: no answer in 10 s).
async fn status(base: &str, name: &str) -> u16 {
    let visit = async {
        let mut s = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.ok()?;
        let req = format!("GET / HTTP/1.1\r\nHost: {name}.localhost\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut res = Vec::new();
        let _ = s.read_to_end(&mut res).await;
        String::from_utf8_lossy(&res).split(' ').nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(10), visit).await.ok().flatten().unwrap_or(0)
}

fn client(servers: &str, name: &str, port: u16) -> Proc {
    let port = port.to_string();
    Proc::spawn(&["client", "--server", servers, "--local-port", &port, "--subdomain", name, "--no-state"], &[])
}

fn signal(p: &Proc, which: &str) {
    let pid = p.child.id().expect("running").to_string();
    assert!(std::process::Command::new("kill").args([which, &pid]).status().unwrap().success());
}

#[tokio::test]
async fn a_node_paused_past_its_lease_stops_serving_and_its_client_moves() {
    let redis = Redis::start().await;
    let (mut a, url_a) = node(&redis, "127.0.0.1", "node-a", &["--lease-ttl", "2"]).await;
    let (_c, url_c) = node(&redis, "127.0.0.3", "node-c", &["--lease-ttl", "2"]).await;
    let port = origin().await;
    let mut c = client(&format!("{url_a},{url_c}"), "paused", port);
    assert!(c.line().await.starts_with("http://paused.localhost:"));
    assert_eq!(status(&url_a, "paused").await, 200);

    signal(&a, "-STOP");
    // The client's heartbeat times out, node A does not answer its hello either, and it
    // takes its name over on node C with its reconnect token.
    c.stderr_line("reconnected").await;
    assert_eq!(redis.cli(&["HGET", "lt:name:paused", "node"]).await, "node-c");
    assert_eq!(status(&url_c, "paused").await, 200);

    // Node A resumes: its lease is stale by its own clock, so it never serves the name
    // from its old session again; it closes that session and forwards visitors to C.
    signal(&a, "-CONT");
    let status_a = status(&url_a, "paused").await;
    assert!(status_a == 503 || status_a == 200, "{status_a}");
    let fenced = async {
        loop {
            let line = a.stderr_line("cluster:").await;
            let why = ["lease not renewed within its TTL", "moved to another node", "took the name over"];
            if why.iter().any(|w| line.contains(w)) {
                return line;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), fenced).await.expect("node A fences the name");
    assert_eq!(status(&url_a, "paused").await, 200, "forwarded to node C");
    assert_eq!(redis.cli(&["HGET", "lt:name:paused", "node"]).await, "node-c");
}

#[tokio::test]
async fn redis_stopped_then_restarted_degrades_and_reconciles_without_dropping_a_client() {
    let mut redis = Redis::start().await;
    let (_a, url_a) = node(&redis, "127.0.0.1", "node-a", &["--lease-ttl", "30"]).await;
    let port = origin().await;
    let mut live = client(&url_a, "steady", port);
    assert!(live.line().await.starts_with("http://steady.localhost:"));

    redis.stop().await;
    // Shorter than the TTL: the live tunnel is served as before...
    assert_eq!(status(&url_a, "steady").await, 200);
    // ...and a new claim is refused with a retryable reason.
    let refused = Proc::run(
        &["client", "--server", &url_a, "--local-port", &port.to_string(), "--subdomain", "newcomer", "--no-state"],
        &[],
    )
    .await;
    assert_ne!(refused.code, Some(0));
    assert!(refused.stderr.contains("cluster directory is unreachable"), "{}", refused.stderr);

    // Redis comes back empty: the next renewal (every TTL/3) re-registers the name.
    redis.restart().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while redis.cli(&["HGET", "lt:name:steady", "node"]).await != "node-a" {
        assert!(tokio::time::Instant::now() < deadline, "the name was not re-registered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status(&url_a, "steady").await, 200);
    // The client never noticed.
    live.interrupt();
    live.exit_code().await;
    let said = live.stderr_rest().await;
    assert!(!said.iter().any(|l| l.contains("reconnecting")), "{said:?}");
}
