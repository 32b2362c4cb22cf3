//! The things being measured: the origin itself (direct), and the origin behind
//! localtunnels, bore and rathole, each as the release processes a user would run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use crate::procs::{free_port, listening, ready, Proc};

/// A tunnel (or none) in front of the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Straight to the origin.
    Direct,
    /// This project.
    Localtunnels,
    /// bore (`bore-cli`), a TCP tunnel.
    Bore,
    /// rathole, a TCP tunnel.
    Rathole,
}

impl Kind {
    /// All kinds, in report order.
    pub const ALL: [Kind; 4] = [Kind::Direct, Kind::Localtunnels, Kind::Bore, Kind::Rathole];

    /// Column name.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Localtunnels => "localtunnels",
            Kind::Bore => "bore",
            Kind::Rathole => "rathole",
        }
    }

    /// Parses a column name.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.label() == s)
    }
}

/// Paths of the programs under test.
#[derive(Debug, Clone)]
pub struct Programs {
    /// The release `localtunnels` binary.
    pub localtunnels: PathBuf,
    /// `bore`, if installed.
    pub bore: Option<PathBuf>,
    /// `rathole`, if installed.
    pub rathole: Option<PathBuf>,
}

/// One running target.
#[derive(Debug)]
pub struct Target {
    /// Which.
    pub kind: Kind,
    /// Visitors connect to 127.0.0.1:`port`…
    pub port: u16,
    /// …with this Host header.
    pub host: String,
    /// The tunnel's server process (none for direct).
    pub server: Option<Proc>,
    /// The tunnel's client process (none for direct).
    pub client: Option<Proc>,
    /// What a fresh client needs (for the start-up measure).
    pub recipe: Recipe,
}

/// How to start (another) client of a target.
#[derive(Debug, Clone)]
pub enum Recipe {
    /// Nothing to start.
    None,
    /// `localtunnels client`, server at this port.
    Localtunnels { server_port: u16 },
    /// `bore local`, server on its fixed control port.
    Bore,
    /// `rathole` with this client config; its service is on `Target::port`.
    Rathole { client_toml: PathBuf },
}

impl Target {
    /// Pids of the tunnel's own processes (server first).
    pub fn pids(&self) -> Vec<u32> {
        self.server.iter().chain(self.client.iter()).map(|p| p.pid).collect()
    }

    /// Stops the target's processes.
    pub async fn stop(self) {
        for p in [self.client, self.server].into_iter().flatten() {
            p.stop().await;
        }
    }
}

const START: Duration = Duration::from_secs(20);

/// Starts `kind` in front of the origin on `origin_port`; returns once a GET of
/// `/1k` through it answers 200.
pub async fn start(kind: Kind, programs: &Programs, logs: &Path, origin_port: u16) -> anyhow::Result<Target> {
    let t = match kind {
        Kind::Direct => Target {
            kind,
            port: origin_port,
            host: format!("127.0.0.1:{origin_port}"),
            server: None,
            client: None,
            recipe: Recipe::None,
        },
        Kind::Localtunnels => start_localtunnels(programs, logs, origin_port).await?,
        Kind::Bore => start_bore(programs, logs, origin_port).await?,
        Kind::Rathole => start_rathole(programs, logs, origin_port).await?,
    };
    ready(t.port, &t.host, "/1k", START).await.with_context(|| format!("{} never answered", kind.label()))?;
    Ok(t)
}

/// The `localtunnels server` for the benchmarks: loopback, a free port.
pub async fn localtunnels_server(bin: &Path, logs: &Path, name: &str, extra: &[&str]) -> anyhow::Result<(Proc, u16)> {
    let mut args = vec!["server", "--port", "0", "--bind", "127.0.0.1"];
    args.extend_from_slice(extra);
    let mut server = Proc::spawn(logs, name, bin, &args)?;
    let url = server.line(START).await?;
    let port = url.rsplit(':').next().and_then(|p| p.trim().parse().ok()).ok_or_else(|| anyhow!("odd URL {url}"))?;
    Ok((server, port))
}

/// Spawns a `localtunnels client` for `name`; it prints its URL once connected.
pub fn localtunnels_client(
    bin: &Path,
    logs: &Path,
    server_port: u16,
    origin_port: u16,
    name: &str,
) -> anyhow::Result<Proc> {
    localtunnels_client_with(bin, logs, server_port, origin_port, name, &[])
}

/// [`localtunnels_client`] with `extra` flags.
pub fn localtunnels_client_with(
    bin: &Path,
    logs: &Path,
    server_port: u16,
    origin_port: u16,
    name: &str,
    extra: &[&str],
) -> anyhow::Result<Proc> {
    let server = format!("http://127.0.0.1:{server_port}");
    let origin = origin_port.to_string();
    let mut args =
        vec!["client", "--server", &server, "--local-host", "127.0.0.1", "--local-port", &origin, "--subdomain", name];
    args.extend_from_slice(extra);
    Proc::spawn(logs, &format!("lt-client-{name}"), bin, &args)
}

/// The control connections the benchmark's tunnel client opens (`--connections`): two,
/// one per CPU of the machines this runs on, as bore's and rathole's multi-threaded
/// runtimes use both CPUs by default (docs/BENCHMARKS.md, twelfth round).
pub const CLIENT_CONNECTIONS: &str = "2";

async fn start_localtunnels(p: &Programs, logs: &Path, origin_port: u16) -> anyhow::Result<Target> {
    let (server, port) = localtunnels_server(&p.localtunnels, logs, "lt-server", &[]).await?;
    let extra = ["--connections", CLIENT_CONNECTIONS];
    let mut client = localtunnels_client_with(&p.localtunnels, logs, port, origin_port, "bench", &extra)?;
    client.line(START).await?;
    Ok(Target {
        kind: Kind::Localtunnels,
        port,
        host: format!("bench.localhost:{port}"),
        server: Some(server),
        client: Some(client),
        recipe: Recipe::Localtunnels { server_port: port },
    })
}

/// bore's control port is fixed.
pub const BORE_CONTROL: u16 = 7835;

/// Spawns `bore local` exposing `origin_port` at `remote_port`.
pub fn bore_client(bin: &Path, logs: &Path, origin_port: u16, remote_port: u16, tag: &str) -> anyhow::Result<Proc> {
    let (origin, remote) = (origin_port.to_string(), remote_port.to_string());
    let args = ["local", &origin, "--local-host", "127.0.0.1", "--to", "127.0.0.1", "--port", &remote];
    Proc::spawn(logs, &format!("bore-client-{tag}"), bin, &args)
}

async fn start_bore(p: &Programs, logs: &Path, origin_port: u16) -> anyhow::Result<Target> {
    let bin = p.bore.as_ref().ok_or_else(|| anyhow!("bore is not installed"))?;
    if listening(BORE_CONTROL) {
        bail!("port {BORE_CONTROL} (bore's fixed control port) is already in use");
    }
    let server = Proc::spawn(logs, "bore-server", bin, &["server", "--bind-addr", "127.0.0.1"])?;
    let started = std::time::Instant::now();
    while !listening(BORE_CONTROL) {
        if started.elapsed() > START {
            bail!("bore server did not listen on {BORE_CONTROL}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let port = free_port()?;
    let client = bore_client(bin, logs, origin_port, port, "bench")?;
    Ok(Target {
        kind: Kind::Bore,
        port,
        host: format!("127.0.0.1:{port}"),
        server: Some(server),
        client: Some(client),
        recipe: Recipe::Bore,
    })
}

async fn start_rathole(p: &Programs, logs: &Path, origin_port: u16) -> anyhow::Result<Target> {
    let bin = p.rathole.as_ref().ok_or_else(|| anyhow!("rathole is not installed"))?;
    let (control, port) = (free_port()?, free_port()?);
    let server_toml = logs.join("rathole-server.toml");
    let client_toml = logs.join("rathole-client.toml");
    std::fs::write(
        &server_toml,
        format!(
            "[server]\nbind_addr = \"127.0.0.1:{control}\"\n\n[server.services.bench]\n\
             token = \"bench-token\"\nbind_addr = \"127.0.0.1:{port}\"\n"
        ),
    )?;
    std::fs::write(
        &client_toml,
        format!(
            "[client]\nremote_addr = \"127.0.0.1:{control}\"\n\n[client.services.bench]\n\
             token = \"bench-token\"\nlocal_addr = \"127.0.0.1:{origin_port}\"\n"
        ),
    )?;
    let server = Proc::spawn(logs, "rathole-server", bin, &["--server", &server_toml.display().to_string()])?;
    let client = Proc::spawn(logs, "rathole-client", bin, &["--client", &client_toml.display().to_string()])?;
    Ok(Target {
        kind: Kind::Rathole,
        port,
        host: format!("127.0.0.1:{port}"),
        server: Some(server),
        client: Some(client),
        recipe: Recipe::Rathole { client_toml },
    })
}
