//! The cost of a cluster hop (docs/CLUSTER.md): a `redis-server` on a unix socket, two
//! `localtunnels server --cluster` nodes and one client on the first (the owner). The
//! 1 KiB rate and p50 through the second node, which forwards every request over its
//! HTTP/2 connection to the owner, are reported as ratios to the same figures through
//! the owner, measured right before them in the same run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail};

use crate::load::{Shot, Tools};
use crate::procs::{ready, which, Proc};
use crate::report::Results;
use crate::targets::{localtunnels_client, localtunnels_server, Kind};

/// The tunnel's subdomain.
const NAME: &str = "bench-cluster";
const START: Duration = Duration::from_secs(20);

/// Redis, two nodes and a client of the first.
#[derive(Debug)]
pub struct Cluster {
    redis: Proc,
    owner: Proc,
    other: Proc,
    client: Proc,
    owner_port: u16,
    other_port: u16,
}

impl Cluster {
    /// Starts everything; returns once a GET through either node answers 200.
    pub async fn start(bin: &Path, logs: &Path, origin_port: u16) -> anyhow::Result<Cluster> {
        let redis_server = which("redis-server").ok_or_else(|| anyhow!("redis-server is not installed"))?;
        let sock = logs.join("redis.sock");
        let _ = std::fs::remove_file(&sock);
        let (sock_arg, dir_arg) = (sock.display().to_string(), logs.display().to_string());
        let redis_args =
            ["--port", "0", "--unixsocket", &sock_arg, "--save", "", "--appendonly", "no", "--dir", &dir_arg];
        let redis = Proc::spawn(logs, "redis", &redis_server, &redis_args)?;
        wait_for_socket(&sock).await?;
        let url = format!("redis+unix://{sock_arg}");
        let node = |id: &'static str| {
            let url = url.clone();
            async move {
                let args = ["--cluster", &url, "--node-id", id, "--cluster-secret", "bench-secret"];
                localtunnels_server(bin, logs, &format!("lt-{id}"), &args).await
            }
        };
        let (owner, owner_port) = node("bench-owner").await?;
        let (other, other_port) = node("bench-other").await?;
        let mut client = localtunnels_client(bin, logs, owner_port, origin_port, NAME)?;
        client.line(START).await?;
        for port in [owner_port, other_port] {
            ready(port, &format!("{NAME}.localhost:{port}"), "/1k", START).await?;
        }
        Ok(Cluster { redis, owner, other, client, owner_port, other_port })
    }

    /// The 1 KiB GET through the owning node, or through the other one.
    fn shot(&self, through_owner: bool) -> Shot {
        let port = if through_owner { self.owner_port } else { self.other_port };
        Shot { port, host: format!("{NAME}.localhost:{port}"), path: "/1k", post: None }
    }

    /// One run: rate (`conns` connections) and p50 (one connection), through the owner
    /// and then through the other node, for `secs` each; records the ratios.
    pub async fn measure(&self, tools: &Tools, results: &mut Results, conns: usize, secs: u64) -> anyhow::Result<()> {
        let k = Kind::Localtunnels;
        let owner = tools.rate(&self.shot(true), conns, secs).await?;
        let other = tools.rate(&self.shot(false), conns, secs).await?;
        results.push("cluster_rps_1k_owner", k, owner.rps);
        results.push("cluster_rps_1k_other", k, other.rps);
        if owner.rps > 0.0 {
            results.push("cluster_rps_1k", k, other.rps / owner.rps);
        }
        let owner = tools.latency(&self.shot(true), 1, secs).await?;
        let other = tools.latency(&self.shot(false), 1, secs).await?;
        if let (Some(a), Some(b)) = (owner.p50, other.p50) {
            results.push("cluster_p50_1k_owner", k, a * 1e3);
            results.push("cluster_p50_1k_other", k, b * 1e3);
            if a > 0.0 {
                results.push("cluster_p50_1k_1", k, b / a);
            }
        }
        Ok(())
    }

    /// A footnote with the medians behind the ratios.
    pub fn note(results: &mut Results) {
        let k = Kind::Localtunnels;
        let m = |id| results.median(id, k).map_or("?".to_string(), crate::report::fmt);
        let text = format!(
            "Cluster (two nodes and redis-server on this machine): 1 KiB rate {} req/s through the owning node, \
             {} through the other; p50 {} ms and {} ms.",
            m("cluster_rps_1k_owner"),
            m("cluster_rps_1k_other"),
            m("cluster_p50_1k_owner"),
            m("cluster_p50_1k_other"),
        );
        results.note(text);
    }

    /// Stops every process.
    pub async fn stop(self) {
        for p in [self.client, self.other, self.owner, self.redis] {
            p.stop().await;
        }
    }
}

/// Waits until Redis accepts connections on `sock`.
async fn wait_for_socket(sock: &PathBuf) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    while tokio::net::UnixStream::connect(sock).await.is_err() {
        if started.elapsed() > START {
            bail!("redis-server did not listen on {}", sock.display());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
