//! `localtunnels`: the command line for the server and the native client.

#![forbid(unsafe_code)]

mod args;
mod cluster;
mod defaults;
mod demo;
mod logs;
mod public;
mod settings;
mod target;

use std::process::ExitCode;
use std::time::Duration;

use clap::FromArgMatches;
use localtunnels_client::{
    serve_inspector, ClientConfig, ClientEvent, ConnectError, HostHeader, InspectConfig, Inspector, TunnelClient,
    CLOSE_GRACE,
};
use localtunnels_core::RefuseReason;
use localtunnels_driver::timers::CurrentThread;
use localtunnels_server::{AuthToken, Limits, RateLimit, ServerConfig, TlsConfig, TunnelServer};

use args::{Cli, ClientArgs, Command, ConfigFile, HostHeaderArg, LogFormat, ServerArgs};

/// Every proxied request allocates and frees its heads, frames and buffers, often on
/// different worker threads: jemalloc's thread caches do that in far fewer
/// instructions than glibc's malloc, and keep idle memory as low (mimalloc, tried
/// first, doubled the idle RSS).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A usage error found after the command line was parsed (a value from the config
/// file, a flag that needs another): exit code 2, as clap's own.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The second Ctrl-C: quit at once (exit code 130, as a shell reports SIGINT).
#[derive(Debug)]
struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted: quit without waiting")
    }
}

impl std::error::Error for Interrupted {}

fn main() -> ExitCode {
    let cli = match Cli::from_arg_matches(&defaults::command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let log_format = cli.log_format;
    let result = job(cli).and_then(|job| {
        let Some(job) = job else { return Ok(()) };
        let job = JobWithLogs { job, log_format };
        let runtime =
            runtime(job.threads(), job.job.lean()).map_err(|e| anyhow::anyhow!("cannot start the runtime: {e}"))?;
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

/// A job and how it logs.
struct JobWithLogs {
    job: Job,
    log_format: LogFormat,
}

impl JobWithLogs {
    fn threads(&self) -> Option<u16> {
        self.job.threads()
    }
}

/// What to run, with the config file merged in.
// Built once per run: the size of the server's variant does not matter.
#[allow(clippy::large_enum_variant)]
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
            // Shards run on their own threads: this runtime only accepts.
            Job::Server(a) if a.shards.is_some() => Some(1),
            Job::Server(a) => Some(a.threads.unwrap_or_else(half_the_cores)),
            Job::Client(a) => Some(a.threads.unwrap_or(1)),
            Job::Demo(_) => None,
        }
    }

    /// Whether a current-thread runtime may be built without tokio's time driver (our
    /// timers then use a timerfd: `localtunnels_driver::timers`, ~0.5k instructions less
    /// per park). Not when the server's configuration has something that brings its own
    /// tokio timers: `--acme` (instant-acme) and `--cluster` (the redis client,
    /// hyper-util's connector), the flags that set `ServerConfig::needs_tokio_timers`
    /// (which `TunnelServer::start` checks against the runtime).
    fn lean(&self) -> bool {
        match self {
            Job::Server(a) => !(a.acme.unwrap_or(false) || a.cluster.as_deref().is_some_and(|u| !u.is_empty())),
            Job::Client(_) => true,
            Job::Demo(_) => false,
        }
    }
}

/// Half the machine's cores, at least one.
fn half_the_cores() -> u16 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    u16::try_from(cores / 2).unwrap_or(u16::MAX).max(1)
}

/// The job to run, or `None` for the commands done here and now (completions, man
/// page, config).
fn job(cli: Cli) -> anyhow::Result<Option<Job>> {
    let command = match cli.command {
        Command::Completions { shell } => {
            let mut cmd = defaults::command();
            clap_complete::generate(shell, &mut cmd, "localtunnels", &mut std::io::stdout());
            return Ok(None);
        }
        Command::Man => {
            clap_mangen::Man::new(defaults::command()).render(&mut std::io::stdout())?;
            return Ok(None);
        }
        Command::Config(c) => {
            settings::run(c, cli.config.as_deref())?;
            return Ok(None);
        }
        other => other,
    };
    let file = ConfigFile::load(cli.config.as_deref())?;
    Ok(Some(match command {
        Command::Server(a) => Job::Server(checked_server(a.or(&file.server))?),
        Command::Client(a) => Job::Client(checked_client(a.or(&file.client))?),
        Command::Http { target, mut client } => {
            client.local_port = Some(target.port);
            if let Some(host) = target.host {
                client.local_host = Some(host);
            }
            if let Some(https) = target.https {
                client.local_https = Some(https);
            }
            Job::Client(checked_client(client.or(&file.client))?)
        }
        Command::Demo { port } => Job::Demo(port),
        Command::Completions { .. } | Command::Man | Command::Config(_) => return Ok(None),
    }))
}

/// Checks what clap cannot see: values from the config file, and flags that go together.
fn checked_server(a: ServerArgs) -> Result<ServerArgs, UsageError> {
    if a.threads.is_some() && a.shards.is_some() {
        return Err(UsageError("--threads and --shards choose the threads two ways: give one".into()));
    }
    if a.tls_cert.is_some() != a.tls_key.is_some() {
        return Err(UsageError("--tls-cert and --tls-key go together: give both or neither".into()));
    }
    let domain =
        a.domain.as_deref().map(args::parse_domain).transpose().map_err(|e| UsageError(format!("--domain: {e}")))?;
    Ok(ServerArgs { domain, ..a })
}

/// Checks the client's values from the config file, and gives a server URL without a
/// scheme the one it most likely means (saying so).
fn checked_client(mut a: ClientArgs) -> Result<ClientArgs, UsageError> {
    for ip in a.allow_ip.iter().flatten() {
        args::parse_allow_ip(ip).map_err(|e| UsageError(format!("--allow-ip: {e}")))?;
    }
    if let Some(servers) = &mut a.server {
        for server in servers.iter_mut() {
            let (url, note) = target::normalize_server(server).map_err(UsageError)?;
            if let Some(note) = note {
                eprintln!("note: {note}");
            }
            *server = url;
        }
        servers.retain(|s| !s.is_empty());
    }
    Ok(a)
}

/// The runtime a job runs on.
enum Runtime {
    /// One thread: the defaults of the server and the client; lean (its timers on a
    /// timerfd) when the job allows it.
    One(CurrentThread),
    Many(tokio::runtime::Runtime),
}

impl Runtime {
    fn block_on<F: std::future::Future>(&self, fut: F) -> F::Output {
        match self {
            Runtime::One(rt) => rt.block_on(fut),
            Runtime::Many(rt) => rt.block_on(fut),
        }
    }
}

/// A runtime with `threads` workers (`None`: one per core); one runs everything on
/// this thread, without tokio's time driver if `lean`. Multi-threaded runtimes keep
/// tokio's timers (a timerfd per runtime fits only a runtime that polls every task
/// on one thread).
fn runtime(threads: Option<u16>, lean: bool) -> anyhow::Result<Runtime> {
    let mut builder = match threads {
        Some(0) => anyhow::bail!("threads must be at least 1"),
        Some(1) => return Ok(Runtime::One(CurrentThread::new(lean)?)),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(usize::from(n));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    Ok(Runtime::Many(builder.enable_all().build()?))
}

/// Maps failures to the documented exit codes.
fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<ConnectError>() {
        Some(ConnectError::Unreachable { .. }) => 3,
        Some(ConnectError::Refused { reason: RefuseReason::NameTaken, .. }) => 4,
        Some(ConnectError::Refused { reason: RefuseReason::NameInvalid, .. }) => 5,
        Some(ConnectError::Refused { reason: RefuseReason::Unauthorized, .. }) => 6,
        Some(ConnectError::Refused { reason: RefuseReason::HostnameNotAllowed, .. }) => 8,
        Some(ConnectError::Refused { .. }) => 7,
        Some(ConnectError::Config(_)) => 2,
        _ if e.downcast_ref::<UsageError>().is_some() => 2,
        _ if e.downcast_ref::<Interrupted>().is_some() => 130,
        _ => 1,
    }
}

async fn run(job: JobWithLogs) -> anyhow::Result<()> {
    let format = job.log_format;
    match job.job {
        Job::Server(a) => {
            logs::init(a.verbose.unwrap_or(false), format);
            run_server(a).await
        }
        Job::Client(a) => {
            logs::init(false, format);
            run_client(a).await
        }
        Job::Demo(port) => {
            logs::init(false, format);
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
        admin_token: a.admin_token.as_deref().filter(|t| !t.is_empty()).map(AuthToken::new),
        max_ws_message: a.max_ws_message.unwrap_or(d.max_ws_message),
        limits: Limits {
            max_header_bytes: a.max_header_size.unwrap_or(dl.max_header_bytes),
            header_read_timeout: a.header_read_timeout.map_or(dl.header_read_timeout, Duration::from_secs),
            idle_timeout: a.idle_timeout.map_or(dl.idle_timeout, Duration::from_secs),
            visitor_write_timeout: a.visitor_write_timeout.map_or(dl.visitor_write_timeout, Duration::from_secs),
            max_streams_per_tunnel: a.max_streams_per_tunnel.unwrap_or(dl.max_streams_per_tunnel),
            max_connections_per_tunnel: a.max_connections_per_tunnel.map_or(dl.max_connections_per_tunnel, usize::from),
            max_tunnels_per_token: a.max_tunnels_per_token.unwrap_or(dl.max_tunnels_per_token),
            max_tunnels_per_ip: a.max_tunnels_per_ip.unwrap_or(dl.max_tunnels_per_ip),
            rate_limit: a.rate_limit.map(|per_second| RateLimit {
                per_second,
                burst: a.rate_burst.unwrap_or(per_second.saturating_mul(2)),
            }),
            max_streams_per_visitor: a.max_streams_per_visitor.unwrap_or(dl.max_streams_per_visitor),
            visitor_rate_limit: a.visitor_rate_limit.map(|per_second| RateLimit {
                per_second,
                burst: a.visitor_rate_burst.unwrap_or(per_second.saturating_mul(2)),
            }),
            max_body: a.max_body.or(dl.max_body),
            ..dl
        },
        session: localtunnels_core::Config {
            max_frame: a.max_frame.unwrap_or(d.session.max_frame),
            max_peer_window: a.max_peer_window.unwrap_or(d.session.max_peer_window),
            max_session_queue: a.max_session_queue.unwrap_or(d.session.max_session_queue),
            max_control_queue: a.max_control_queue.unwrap_or(d.session.max_control_queue),
            ..d.session.clone()
        },
        shards: a.shards.map_or(d.shards, usize::from),
        ..d
    }
}

async fn run_server(a: ServerArgs) -> anyhow::Result<()> {
    let mut config = server_config(&a);
    public::apply(&a, &mut config)?;
    cluster::apply(&a, &mut config)?;
    let (port, grace) = (config.port, config.shutdown_timeout);
    let server = TunnelServer::new(config)
        .start()
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the server on port {port}: {e}"))?;
    let mut signals = Signals::install();
    let hangups = public::hangups();
    println!("{}", server.url());
    tokio::select! {
        () = signals.recv() => {}
        () = public::reload_on(hangups, &server) => {}
    }
    let streams = server.stats().streams;
    eprintln!("stopping: {}; Ctrl-C again to quit now", waiting_for(streams, grace));
    tokio::select! {
        () = server.stop() => Ok(()),
        () = signals.recv() => Err(Interrupted.into()),
    }
}

/// `waiting up to 10 s for 1 request in flight`, or `no request in flight`.
fn waiting_for(in_flight: usize, grace: Duration) -> String {
    let secs = grace.as_secs();
    match in_flight {
        0 => "no request in flight".to_string(),
        1 => format!("waiting up to {secs} s for 1 request in flight"),
        n => format!("waiting up to {secs} s for {n} requests in flight"),
    }
}

pub fn client_config(a: &ClientArgs) -> ClientConfig {
    let d = ClientConfig::default();
    ClientConfig {
        server: a.server.as_ref().filter(|s| !s.is_empty()).map(|s| s.join(",")),
        host: a.host.clone().unwrap_or(d.host),
        port: a.port.unwrap_or(d.port),
        secure: a.secure.unwrap_or(d.secure),
        local_host: a.local_host.clone().unwrap_or(d.local_host),
        local_port: a.local_port.unwrap_or(d.local_port),
        local_https: a.local_https.unwrap_or(d.local_https),
        allow_invalid_cert: a.allow_invalid_cert.unwrap_or(d.allow_invalid_cert),
        subdomain: a.subdomain.clone(),
        hostname: a.hostname.clone(),
        state_dir: match a.no_state {
            Some(true) => None,
            _ => a.state_dir.clone().or_else(localtunnels_client::default_state_dir),
        },
        token: a.token.clone(),
        basic_auth: a.basic_auth.clone(),
        allow_ips: a.allow_ip.clone().unwrap_or_default(),
        ca: a.ca.clone(),
        max_ws_message: a.max_ws_message.unwrap_or(d.max_ws_message),
        connections: a.connections.map_or(d.connections, usize::from),
        // Per-request events are only printed with --print-requests.
        request_events: a.print_requests.unwrap_or(false),
        expose_errors: a.expose_errors.unwrap_or(false),
        host_header: match a.host_header {
            Some(HostHeaderArg::Preserve) => HostHeader::Preserve,
            _ => HostHeader::Rewrite,
        },
        ..d
    }
}

/// The request inspector the flags ask for (none with `--no-inspect`).
fn inspector(a: &ClientArgs) -> Option<Inspector> {
    if a.no_inspect.unwrap_or(false) {
        return None;
    }
    let d = InspectConfig::default();
    Some(Inspector::new(InspectConfig {
        body_limit: a.inspect_body_limit.unwrap_or(d.body_limit),
        max_bytes: a.inspect_max_bytes.unwrap_or(d.max_bytes),
        redact: a.inspect_redact.unwrap_or(false),
        ..d
    }))
}

async fn run_client(a: ClientArgs) -> anyhow::Result<()> {
    let mut config = client_config(&a);
    config.inspector = inspector(&a);
    // The inspector's port is taken before connecting: an explicit --inspect-addr that
    // cannot be had is an error; the default ports all taken only a warning.
    let inspect = match (&config.inspector, a.inspect_addr) {
        (None, _) => None,
        (Some(i), Some(addr)) => Some(
            serve_inspector(i.clone(), Some(addr))
                .await
                .map_err(|e| anyhow::anyhow!("cannot serve the inspector on {addr}: {e}"))?,
        ),
        (Some(i), None) => match serve_inspector(i.clone(), None).await {
            Ok(server) => Some(server),
            Err(e) => {
                tracing::warn!("no request inspector: {e}");
                None
            }
        },
    };
    let scheme = if config.local_https { "https://" } else { "" };
    let local = format!("{scheme}{}:{}", config.local_host, config.local_port);
    let mut tunnel = TunnelClient::new(config).connect().await?;
    let mut signals = Signals::install();
    println!("{}", tunnel.url());
    eprintln!("forwarding {} -> {local}", tunnel.url());
    if let Some(server) = &inspect {
        eprintln!("inspect: {}", server.url());
    }
    // Everything else the client has to say (disconnects, reconnects, origin errors)
    // it logs itself, once; this prints the request lines.
    let printer = a.print_requests.unwrap_or(false).then(|| {
        let mut events = tunnel.events();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(ClientEvent::Response { method, path, status, duration, bytes }) => {
                        let time = logs::local_time();
                        println!("{time} {method} {path} {status} {}ms {bytes}B", duration.as_millis());
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        eprintln!("({n} events skipped: output could not keep up)")
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        })
    });
    let result = tokio::select! {
        () = signals.recv() => {
            eprintln!("stopping: {}; Ctrl-C again to quit now", waiting_for(tunnel.in_flight(), CLOSE_GRACE));
            tokio::select! {
                () = tunnel.close() => Ok(()),
                () = signals.recv() => Err(Interrupted.into()),
            }
        }
        () = tunnel.stopped() => Ok(()),
    };
    if let Some(printer) = printer {
        printer.abort();
    }
    result
}

/// SIGINT (Ctrl-C) and SIGTERM. The handlers are installed by [`Signals::install`],
/// not when first polled: install them before printing the line a script waits for,
/// so a signal sent right after that line is never lost.
#[derive(Debug)]
pub struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    pub fn install() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        Signals { term: signal(SignalKind::terminate()).ok(), int: signal(SignalKind::interrupt()).ok() }
    }

    /// The next SIGINT or SIGTERM (never, when the handlers could not be installed).
    pub async fn recv(&mut self) {
        match (&mut self.term, &mut self.int) {
            (Some(term), Some(int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
    }
}
