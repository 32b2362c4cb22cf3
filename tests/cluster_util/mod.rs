//! Shared by the cluster tests: a real `redis-server` on a unix socket in a temp dir,
//! and `localtunnels server` nodes joined to it, as processes.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use crate::cli_common::Proc;

pub const SECRET: &str = "cluster-test-secret";

/// A fresh directory under the system's temporary directory.
pub fn temp_dir(what: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let dir = std::env::temp_dir().join(format!("lt-{what}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A `redis-server` on a unix socket in its own directory, killed on drop.
pub struct Redis {
    child: tokio::process::Child,
    dir: PathBuf,
}

impl Redis {
    pub async fn start() -> Redis {
        let dir = temp_dir("redis");
        let child = Redis::spawn(&dir).await;
        Redis { child, dir }
    }

    /// Starts `redis-server` on `dir`/redis.sock and waits until it answers PING.
    async fn spawn(dir: &std::path::Path) -> tokio::process::Child {
        let sock = dir.join("redis.sock");
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&sock)
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server (scripts/setup installs it)");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if self::cli_at(dir, &["ping"]).await == "PONG" {
                return child;
            }
            assert!(tokio::time::Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills Redis (its data is gone: no persistence).
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_file(self.dir.join("redis.sock"));
    }

    /// Starts an empty Redis on the same socket.
    pub async fn restart(&mut self) {
        self.child = Redis::spawn(&self.dir).await;
    }

    /// A `redis-cli` command's output, trimmed.
    pub async fn cli(&self, args: &[&str]) -> String {
        cli_at(&self.dir, args).await
    }

    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.dir.join("redis.sock").display())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A cluster node on `ip` and a free port; returns it and its base URL.
pub async fn node(redis: &Redis, ip: &str, id: &str, extra: &[&str]) -> (Proc, String) {
    let url = redis.url();
    let mut args = vec!["server", "--port", "0", "--bind", ip, "--cluster", &url, "--node-id", id];
    if !extra.contains(&"--grace-period") {
        args.extend_from_slice(&["--grace-period", "600"]);
    }
    args.extend_from_slice(extra);
    let mut p = Proc::spawn(&args, &[("LOCALTUNNELS_CLUSTER_SECRET", SECRET)]);
    let line = p.line().await;
    let port: u16 = line.rsplit(':').next().unwrap().parse().unwrap_or_else(|_| panic!("{line}"));
    (p, format!("http://{ip}:{port}"))
}

async fn cli_at(dir: &std::path::Path, args: &[&str]) -> String {
    let out = tokio::process::Command::new("redis-cli").arg("-s").arg(dir.join("redis.sock")).args(args).output().await;
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
}
