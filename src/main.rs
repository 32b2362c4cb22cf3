//! `localtunnels`: the command line for the server and the native client.

#![forbid(unsafe_code)]

mod args;
mod demo;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use localtunnels_client::{ClientConfig, ClientEvent, ConnectError, HostHeader, TunnelClient};
use localtunnels_core::RefuseReason;
use localtunnels_server::{AuthToken, Limits, RateLimit, ServerConfig, TlsConfig, TunnelServer};

use args::{Cli, ClientArgs, Command, ConfigFile, HostHeaderArg, ServerArgs};

/// Every proxied request allocates and frees its heads, frames and buffers, often on
/// different worker threads: jemalloc's thread caches do that in far fewer
/// instructions than glibc's malloc, and keep idle memory as low (mimalloc, tried
/// first, doubled the idle RSS).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = job(cli).and_then(|job| {
        let runtime = runtime(job.threads()).map_err(|e| anyhow::anyhow!("cannot start the runtime: {e}"))?;
        runtime.block_on(run(job))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// What to run, with the config file merged in.
enum Job {
    Server(ServerArgs),
    Client(ClientArgs),
    Demo(u16),
}

impl Job {
    /// Worker threads: the server's default is one per two cores (many tunnels, and
    /// the kernel's TCP work, about as much CPU again, needs the other half: on two
    /// cores one worker gave more requests per second, less CPU per request and lower
    /// latency than two, docs/BENCHMARKS.md); the client's is one, as its requests all
    /// cross one control connection and waking a task on another thread costs more than
    /// the work itself (it doubled the latency of a small request).
    fn threads(&self) -> Option<u16> {
        match self {
            Job::Server(a) => Some(a.threads.unwrap_or_else(half_the_cores)),
            Job::Client(a) => Some(a.threads.unwrap_or(1)),
            Job::Demo(_) => None,
        }
    }
}

/// Half the machine's cores, at least one.
fn half_the_cores() -> u16 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    u16::try_from(cores / 2).unwrap_or(u16::MAX).max(1)
}

fn job(cli: Cli) -> anyhow::Result<Job> {
    let file = ConfigFile::load(cli.config.as_deref())?;
    Ok(match cli.command {
        Command::Server(a) => Job::Server(a.or(&file.server)),
        Command::Client(a) => Job::Client(a.or(&file.client)),
        Command::Http { local_port, mut client } => {
            client.local_port = Some(local_port);
            Job::Client(client.or(&file.client))
        }
        Command::Demo { port } => Job::Demo(port),
    })
}

/// A runtime with `threads` workers (`None`: one per core); one runs everything on
/// this thread.
fn runtime(threads: Option<u16>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = match threads {
        Some(0) => anyhow::bail!("threads must be at least 1"),
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(usize::from(n));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    Ok(builder.enable_all().build()?)
}

/// Maps failures to the documented exit codes.
fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<ConnectError>() {
        Some(ConnectError::Unreachable { .. }) => 3,
        Some(ConnectError::Refused { reason: RefuseReason::NameTaken, .. }) => 4,
        Some(ConnectError::Refused { reason: RefuseReason::NameInvalid, .. }) => 5,
        Some(ConnectError::Refused { reason: RefuseReason::Unauthorized, .. }) => 6,
        Some(ConnectError::Refused { .. }) => 7,
        Some(ConnectError::Config(_)) => 2,
        _ => 1,
    }
}

fn init_logs(verbose: bool) {
    let default =
        if verbose { "info,localtunnels=debug" } else { "warn,localtunnels_server=info,localtunnels_client=info" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOCALTUNNELS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only for a person at a terminal, not in files, pipes and CI logs.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(ansi).with_env_filter(filter).init();
}

async fn run(job: Job) -> anyhow::Result<()> {
    match job {
        Job::Server(a) => run_server(a).await,
        Job::Client(a) => run_client(a).await,
        Job::Demo(port) => {
            init_logs(false);
            demo::run(port).await
        }
    }
}

pub fn server_config(a: &ServerArgs) -> ServerConfig {
    let d = ServerConfig::default();
    let dl = Limits::default();
    ServerConfig {
        port: a.port.unwrap_or(d.port),
        bind: a.bind.unwrap_or(d.bind),
        domain: a.domain.clone().unwrap_or(d.domain),
        secure: a.secure.unwrap_or(d.secure),
        verbose: a.verbose.unwrap_or(d.verbose),
        public_port: a.public_port.or(d.public_port),
        response_timeout: a.response_timeout.map_or(d.response_timeout, Duration::from_secs),
        grace_period: a.grace_period.map_or(d.grace_period, Duration::from_secs),
        max_tunnels: a.max_tunnels.unwrap_or(d.max_tunnels),
        tls: match (&a.tls_cert, &a.tls_key) {
            (Some(cert), Some(key)) => Some(TlsConfig { cert: cert.clone(), key: key.clone() }),
            _ => None,
        },
        tokens: a.token.iter().flatten().filter(|t| !t.is_empty()).map(|t| AuthToken::new(t)).collect(),
        tokens_file: a.tokens_file.clone(),
        max_ws_message: a.max_ws_message.unwrap_or(d.max_ws_message),
        limits: Limits {
            max_header_bytes: a.max_header_size.unwrap_or(dl.max_header_bytes),
            header_read_timeout: a.header_read_timeout.map_or(dl.header_read_timeout, Duration::from_secs),
            idle_timeout: a.idle_timeout.map_or(dl.idle_timeout, Duration::from_secs),
            visitor_write_timeout: a.visitor_write_timeout.map_or(dl.visitor_write_timeout, Duration::from_secs),
            max_streams_per_tunnel: a.max_streams_per_tunnel.unwrap_or(dl.max_streams_per_tunnel),
            max_tunnels_per_token: a.max_tunnels_per_token.unwrap_or(dl.max_tunnels_per_token),
            max_tunnels_per_ip: a.max_tunnels_per_ip.unwrap_or(dl.max_tunnels_per_ip),
            rate_limit: a.rate_limit.map(|per_second| RateLimit {
                per_second,
                burst: a.rate_burst.unwrap_or(per_second.saturating_mul(2)),
            }),
            max_body: a.max_body.or(dl.max_body),
            ..dl
        },
        session: localtunnels_core::Config {
            max_frame: a.max_frame.unwrap_or(d.session.max_frame),
            max_peer_window: a.max_peer_window.unwrap_or(d.session.max_peer_window),
            max_session_queue: a.max_session_queue.unwrap_or(d.session.max_session_queue),
            ..d.session.clone()
        },
        ..d
    }
}

async fn run_server(a: ServerArgs) -> anyhow::Result<()> {
    if a.tls_cert.is_some() != a.tls_key.is_some() {
        anyhow::bail!("--tls-cert and --tls-key go together");
    }
    let config = server_config(&a);
    init_logs(config.verbose);
    let port = config.port;
    let server = TunnelServer::new(config)
        .start()
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the server on port {port}: {e}"))?;
    let signal = shutdown_signal();
    println!("{}", server.url());
    signal.await;
    eprintln!("shutting down (in-flight requests may finish)...");
    server.stop().await;
    Ok(())
}

pub fn client_config(a: &ClientArgs) -> ClientConfig {
    let d = ClientConfig::default();
    ClientConfig {
        server: a.server.clone(),
        host: a.host.clone().unwrap_or(d.host),
        port: a.port.unwrap_or(d.port),
        secure: a.secure.unwrap_or(d.secure),
        local_host: a.local_host.clone().unwrap_or(d.local_host),
        local_port: a.local_port.unwrap_or(d.local_port),
        local_https: a.local_https.unwrap_or(d.local_https),
        allow_invalid_cert: a.allow_invalid_cert.unwrap_or(d.allow_invalid_cert),
        subdomain: a.subdomain.clone(),
        token: a.token.clone(),
        basic_auth: a.basic_auth.clone(),
        allow_ips: a.allow_ip.clone().unwrap_or_default(),
        ca: a.ca.clone(),
        max_ws_message: a.max_ws_message.unwrap_or(d.max_ws_message),
        // Per-request events are only printed with --print-requests.
        request_events: a.print_requests.unwrap_or(false),
        host_header: match a.host_header {
            Some(HostHeaderArg::Preserve) => HostHeader::Preserve,
            _ => HostHeader::Rewrite,
        },
        ..d
    }
}

async fn run_client(a: ClientArgs) -> anyhow::Result<()> {
    init_logs(false);
    let config = client_config(&a);
    let local = format!("{}:{}", config.local_host, config.local_port);
    let mut tunnel = TunnelClient::new(config).connect().await?;
    let signal = shutdown_signal();
    println!("{}", tunnel.url());
    eprintln!("forwarding {} -> {local}", tunnel.url());
    let mut events = tunnel.events();
    let print_requests = a.print_requests.unwrap_or(false);
    let printer = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(ClientEvent::Response { method, path, status, duration, bytes }) if print_requests => {
                    let time = humantime_now();
                    println!("{time} {method} {path} {status} {}ms {bytes}B", duration.as_millis());
                }
                Ok(ClientEvent::Disconnected { reason }) => eprintln!("disconnected: {reason}"),
                Ok(ClientEvent::Reconnecting { attempt, delay }) => {
                    eprintln!("reconnecting (attempt {attempt}) in {} ms", delay.as_millis())
                }
                Ok(ClientEvent::Connected { url }) => eprintln!("connected: {url}"),
                Ok(ClientEvent::Error { message }) => eprintln!("error: {message}"),
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    eprintln!("({n} events skipped: output could not keep up)")
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    tokio::select! {
        _ = signal => {
            eprintln!("closing the tunnel (in-flight requests may finish)...");
            tunnel.close().await;
        }
        _ = tunnel.stopped() => {}
    }
    printer.abort();
    Ok(())
}

/// Wall-clock time of day as `HH:MM:SS` (UTC), for request lines.
fn humantime_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!("{h:02}:{m:02}:{s:02}")
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called,
/// not when it is first polled: call it before printing the line a script waits for,
/// so a signal sent right after that line is never lost.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    let ctrl_c = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
    async move {
        match (term, ctrl_c) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
    }
}
