//! nginx as the origin (`--origin nginx`): Debian's nginx as one process (no master),
//! serving the same fixed bodies as the benchmark's own origin, so the HTTP rows can be
//! measured against the server people put behind a tunnel, not only against ours.
//!
//! - `GET /1k` and `GET /1m`: files of 1 KiB of `a` and 1 MiB of `b` (sendfile, the
//!   open-file cache on), with nginx's usual headers (`Last-Modified`, `ETag`, ...);
//! - `POST /sink`: the whole body is read (into memory, as the benchmark's origin does)
//!   before the answer `ok`. nginx's `return` would answer at once and discard the
//!   body afterwards, an early answer that is a different exchange for a proxy; reading
//!   first is what the mirror module does with `mirror_request_body on` (its default),
//!   after which the static module refuses the POST with 405, which `error_page` turns
//!   into a `GET` of the file `sink` (2 bytes, `ok`) with status 200.
//!
//! There is no WebSocket echo: the WebSocket rows use the benchmark's own origin only.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::origin::{LARGE, SMALL};
use crate::procs::{free_port, listening, ready, Proc};

/// A running nginx origin.
#[derive(Debug)]
pub struct Nginx {
    proc: Proc,
    /// 127.0.0.1 port it serves on.
    pub port: u16,
}

/// nginx's path: on PATH, or in /usr/sbin (which a non-root PATH may lack).
pub fn find() -> Option<PathBuf> {
    crate::procs::which("nginx").or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file()))
}

/// The configuration for an nginx living in `dir` (pid file, temp paths, document
/// root), listening on 127.0.0.1:`port`.
pub fn config(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "# One process that serves (no master): what a kill stops is all of it.
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    # wrk and oha keep their connections for the whole run (nginx's default closes one
    # after 1,000 requests).
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    tcp_nodelay on;
    sendfile on;
    open_file_cache max=16 inactive=1h;
    open_file_cache_valid 1h;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {d}/www;
        location = /sink {{
            client_max_body_size 0;
            # The 1 MiB body in memory, not in a temp file.
            client_body_buffer_size 2m;
            mirror /discard;
            error_page 405 =200 /sink;
        }}
        location = /discard {{
            internal;
            return 204;
        }}
    }}
}}
"
    )
}

impl Nginx {
    /// Starts nginx (`bin`) living in `dir` (its files, its logs) on a free port;
    /// returns once `GET /1k` answers 200.
    pub async fn start(bin: &Path, dir: &Path) -> anyhow::Result<Nginx> {
        let www = dir.join("www");
        std::fs::create_dir_all(&www)?;
        std::fs::write(www.join("1k"), vec![b'a'; SMALL])?;
        std::fs::write(www.join("1m"), vec![b'b'; LARGE])?;
        std::fs::write(www.join("sink"), "ok")?;
        let port = free_port()?;
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(dir, port))?;
        let prefix = format!("{}/", dir.display());
        let conf = conf.display().to_string();
        let proc = Proc::spawn(dir, "nginx", bin, &["-p", &prefix, "-c", &conf, "-g", "daemon off;"])?;
        let started = Instant::now();
        while !listening(port) {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("nginx did not listen on {port} (see {}/nginx.err)", dir.display());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let host = format!("127.0.0.1:{port}");
        ready(port, &host, "/1k", Duration::from_secs(10)).await.context("nginx never answered /1k")?;
        Ok(Nginx { proc, port })
    }

    /// Its pid (one process: `master_process off`).
    pub fn pid(&self) -> u32 {
        self.proc.pid
    }

    /// Stops nginx.
    pub async fn stop(self) {
        self.proc.terminate(Duration::from_secs(5)).await;
    }
}

/// nginx, installed with apt when missing and allowed (`scripts/setup` installs it too).
pub fn ensure(install: bool) -> anyhow::Result<PathBuf> {
    if let Some(p) = find() {
        return Ok(p);
    }
    if install {
        crate::procs::ensure_tool("nginx", "nginx", true, true);
    }
    find().ok_or_else(|| anyhow!("nginx is not installed (apt-get install nginx, or scripts/setup)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keeps_everything_in_its_directory() {
        let c = config(Path::new("/tmp/x"), 4242);
        assert!(c.contains("listen 127.0.0.1:4242"), "{c}");
        assert!(c.contains("pid /tmp/x/nginx.pid;"), "{c}");
        assert!(c.contains("worker_processes 1;"), "{c}");
        assert!(!c.contains("/var/"), "{c}");
    }
}
