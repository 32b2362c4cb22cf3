//! Several server nodes sharing names through a real `redis-server` (issue 18):
//! names are unique in the cluster, a reconnect token takes a name over from another
//! node, and a client whose node is killed takes its name back on another node.
//!
//! Each test starts its own Redis on a unix socket in a temp dir (no TCP port at all)
//! and `localtunnels server` processes bound to 127.0.0.1, 127.0.0.2, 127.0.0.3.

mod cli_common;
mod cluster_util;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cli_common::Proc;
use cluster_util::{node, temp_dir, Redis};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An origin answering every request with 200 and `body`.
async fn origin(body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let res =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                let _ = s.write_all(res.as_bytes()).await;
            });
        }
    });
    port
}

/// A visitor's GET of tunnel `name` through the node at `base`: status and body.
async fn visit(base: &str, name: &str) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET / HTTP/1.1\r\nHost: {name}.localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut res = Vec::new();
    let _ = s.read_to_end(&mut res).await;
    let text = String::from_utf8_lossy(&res).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn client(servers: &str, name: &str, local_port: u16, state: &[&str]) -> Proc {
    let port = local_port.to_string();
    let mut args = vec!["client", "--server", servers, "--local-port", &port, "--subdomain", name];
    args.extend_from_slice(state);
    Proc::spawn(&args, &[])
}

/// Where a client keeps its token for `server` (`http://ip:port`) and `name`.
fn state_file(dir: &Path, server: &str, name: &str) -> PathBuf {
    dir.join(server.trim_start_matches("http://").replace(':', "_")).join(name)
}

#[tokio::test]
async fn a_name_is_unique_in_the_cluster_and_its_token_takes_it_over_from_another_node() {
    let redis = Redis::start().await;
    let (_a, a) = node(&redis, "127.0.0.1", "node-a", &[]).await;
    let (_b, b) = node(&redis, "127.0.0.2", "node-b", &[]).await;
    let port = origin("from the origin").await;

    let state = temp_dir("state-a");
    let mut first = client(&a, "shared", port, &["--state-dir", state.to_str().unwrap()]);
    assert!(first.line().await.starts_with("http://shared.localhost:"));
    assert_eq!(visit(&a, "shared").await, (200, "from the origin".into()));

    // Another client asking node B for the same name is refused: exit code 4, name taken.
    let mut stranger = client(&b, "shared", port, &["--no-state"]);
    assert_eq!(stranger.exit_code().await, Some(4));
    // A random name on B is fine, and not served by A.
    let mut other = client(&b, "othername", port, &["--no-state"]);
    assert!(other.line().await.starts_with("http://othername.localhost:"));
    assert_eq!(visit(&b, "othername").await.0, 200);

    // The same client presenting its reconnect token to node B takes the name over:
    // node A is told and closes the first session (which then ends: replaced).
    let token = std::fs::read_to_string(state_file(&state, &a, "shared")).expect("the state file holds the token");
    let state_b = temp_dir("state-b");
    let file_b = state_file(&state_b, &b, "shared");
    std::fs::create_dir_all(file_b.parent().unwrap()).unwrap();
    std::fs::write(&file_b, token).unwrap();
    let mut second = client(&b, "shared", port, &["--state-dir", state_b.to_str().unwrap()]);
    assert!(second.line().await.starts_with("http://shared.localhost:"));
    let said = tokio::time::timeout(Duration::from_secs(30), first.stderr_line("not reconnecting")).await;
    assert!(said.expect("the first client is told").contains("took over"));
    tokio::time::timeout(Duration::from_secs(30), first.exit_code()).await.expect("the first client ends");
    assert_eq!(visit(&b, "shared").await, (200, "from the origin".into()));
    // Node A no longer holds it, and forwards its visitors to B.
    assert_eq!(visit(&a, "shared").await, (200, "from the origin".into()));
}

#[tokio::test]
async fn a_client_whose_node_is_killed_takes_its_name_back_on_another_node() {
    let redis = Redis::start().await;
    let (mut a, url_a) = node(&redis, "127.0.0.1", "node-a", &["--lease-ttl", "30"]).await;
    let (_c, url_c) = node(&redis, "127.0.0.3", "node-c", &["--lease-ttl", "30"]).await;
    let port = origin("still here").await;

    let servers = format!("{url_a},{url_c}");
    let mut c = client(&servers, "survivor", port, &["--no-state"]);
    assert!(c.line().await.starts_with("http://survivor.localhost:"));
    assert_eq!(visit(&url_a, "survivor").await, (200, "still here".into()));

    // kill -9: no goodbye, the lease in Redis stays until its TTL (30 s) would end.
    a.child.kill().await.unwrap();
    // The client reconnects to node C with its reconnect token and takes the name back
    // at once (a new epoch; no wait for the old lease to expire).
    let started = tokio::time::Instant::now();
    c.stderr_line("reconnected").await;
    let mut answer = visit(&url_c, "survivor").await;
    while answer.0 != 200 && started.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer = visit(&url_c, "survivor").await;
    }
    assert_eq!(answer, (200, "still here".into()));
    assert!(started.elapsed() < Duration::from_secs(15), "serving again within 15 s: {:?}", started.elapsed());
}

#[tokio::test]
async fn a_cluster_node_needs_its_secret_and_a_redis_url() {
    let no_secret = Proc::run(&["server", "--port", "0", "--cluster", "redis://127.0.0.1:1"], &[]).await;
    assert_ne!(no_secret.code, Some(0));
    assert!(no_secret.stderr.contains("--cluster-secret"), "{}", no_secret.stderr);
    let bad_url = Proc::run(&["server", "--port", "0", "--cluster", "http://x", "--cluster-secret", "s"], &[]).await;
    assert!(bad_url.stderr.contains("redis://"), "{}", bad_url.stderr);
    // A random node id is printed on stderr at start.
    let redis = Redis::start().await;
    let url = redis.url();
    let mut p =
        Proc::spawn(&["server", "--port", "0", "--bind", "127.0.0.1", "--cluster", &url, "--cluster-secret", "s"], &[]);
    let line = p.stderr_line("cluster node id:").await;
    assert!(line.contains("node-"), "{line}");
}

#[tokio::test]
async fn a_node_restarted_with_the_same_id_does_not_give_a_held_name_to_a_stranger() {
    let redis = Redis::start().await;
    let (mut a, url_a) = node(&redis, "127.0.0.1", "node-a", &[]).await;
    let port = origin("mine").await;
    let mut owner = client(&url_a, "kept", port, &["--no-state"]);
    assert!(owner.line().await.starts_with("http://kept.localhost:"));
    // The node dies and comes back as a new process with the same id; its client is gone.
    a.child.kill().await.unwrap();
    owner.child.kill().await.unwrap();
    let (_a2, url_a2) = node(&redis, "127.0.0.1", "node-a", &[]).await;
    let mut stranger = client(&url_a2, "kept", port, &["--no-state"]);
    assert_eq!(stranger.exit_code().await, Some(4), "the lease and its hold are still in Redis");
}

#[tokio::test]
async fn a_dead_nodes_name_goes_to_another_client_only_after_its_lease_and_hold() {
    let redis = Redis::start().await;
    let short = ["--lease-ttl", "1", "--grace-period", "2"];
    let (mut a, url_a) = node(&redis, "127.0.0.1", "node-a", &short).await;
    let (_c, url_c) = node(&redis, "127.0.0.3", "node-c", &short).await;
    let port = origin("first").await;
    let mut owner = client(&url_a, "orphan", port, &["--no-state"]);
    assert!(owner.line().await.starts_with("http://orphan.localhost:"));
    a.child.kill().await.unwrap();
    owner.child.kill().await.unwrap();
    let killed = tokio::time::Instant::now();
    // Another client is refused (name taken) until the lease (1 s) and the hold (2 s) end.
    let mut refusals = 0;
    loop {
        // A refused client exits before printing its URL: its stdout ends empty.
        let port = port.to_string();
        let mut other = tokio::process::Command::new(env!("CARGO_BIN_EXE_localtunnels"))
            .args(["client", "--server", &url_c, "--local-port", &port, "--subdomain", "orphan", "--no-state"])
            .env("XDG_CONFIG_HOME", std::env::temp_dir().join("localtunnels-tests-no-config"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = other.stdout.take().unwrap();
        let line = tokio::io::BufReader::new(stdout).lines().next_line().await.unwrap_or(None);
        match line {
            Some(line) => {
                assert!(line.starts_with("http://orphan.localhost:"), "{line}");
                break;
            }
            None => {
                assert_eq!(other.wait().await.unwrap().code(), Some(4));
                refusals += 1;
            }
        }
        assert!(killed.elapsed() < Duration::from_secs(60), "the name never came free");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(refusals > 0, "refused while the lease and hold lasted");
    assert!(killed.elapsed() >= Duration::from_secs(2), "not before the hold: {:?}", killed.elapsed());
}

/// A GET of `path` on the node at `base` for `host`: the body (empty when none came).
async fn fetch(base: &str, host: &str, path: &str) -> String {
    let mut s = TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut res = Vec::new();
    let _ = s.read_to_end(&mut res).await;
    String::from_utf8_lossy(&res).split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
}

/// The value of the counter `name` in the node's `/metrics`.
async fn metric(base: &str, name: &str) -> u64 {
    let text = fetch(base, "localhost", "/metrics").await;
    let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Script calls Redis has run so far (`EVAL` and `EVALSHA`).
async fn script_calls(redis: &Redis) -> u64 {
    let stats = redis.cli(&["INFO", "commandstats"]).await;
    stats
        .lines()
        .filter(|l| l.starts_with("cmdstat_eval:") || l.starts_with("cmdstat_evalsha:"))
        .filter_map(|l| l.split_once("calls=")?.1.split(',').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn many_tunnels_on_one_node_keep_their_leases_with_one_round_trip_per_renewal_round() {
    const N: u64 = 60;
    let redis = Redis::start().await;
    // Rounds every 4/3 s (a loaded machine may delay one by seconds: the TTL leaves room);
    // room for N tunnels from one address.
    let (_a, a) = node(&redis, "127.0.0.1", "node-a", &["--lease-ttl", "4", "--max-tunnels-per-ip", "100"]).await;
    let port = origin("kept").await;
    let mut clients = Vec::new();
    for i in 0..N {
        let config = localtunnels_client::ClientConfig {
            server: Some(a.clone()),
            local_host: "127.0.0.1".into(),
            local_port: port,
            subdomain: Some(format!("many{i}")),
            ..Default::default()
        };
        clients.push(localtunnels_client::TunnelClient::new(config).connect().await.expect("tunnel connects"));
    }
    // Past the TTL: four renewal rounds (counted by the node: each round renews all N).
    let (renewed, calls) = (metric(&a, "localtunnels_cluster_lease_renewals_total").await, script_calls(&redis).await);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let rounds = loop {
        let now = metric(&a, "localtunnels_cluster_lease_renewals_total").await;
        if now >= renewed + 4 * N {
            break (now - renewed) / N;
        }
        assert!(tokio::time::Instant::now() < deadline, "renewals stalled at {now}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // One pipeline per round: one renewal script call for all N names plus the census,
    // not one call per name.
    let used = script_calls(&redis).await - calls;
    assert!(used <= 2 * (rounds + 2), "{used} script calls for {rounds} rounds of {N} names");
    assert_eq!(metric(&a, "localtunnels_cluster_fenced_total").await, 0);
    for i in 0..N {
        assert_eq!(visit(&a, &format!("many{i}")).await, (200, "kept".into()), "many{i}");
        assert_eq!(redis.cli(&["HGET", &format!("lt:name:many{i}"), "node"]).await, "node-a");
    }
    let status: serde_json::Value = serde_json::from_str(&fetch(&a, "localhost", "/api/status").await).unwrap();
    assert_eq!((status["tunnels"].as_u64(), status["cluster"]["tunnels"].as_u64()), (Some(N), Some(N)));
    for c in clients {
        c.close().await;
    }
}
