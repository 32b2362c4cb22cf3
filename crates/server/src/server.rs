//! The listener: one port for control connections and public traffic, routed by
//! the Host header of each request (so every request on a kept-alive connection is
//! routed on its own).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::{Either, FutureExt};
use http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use localtunnels_core::CloseCode;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info};

use crate::config::ServerConfig;
pub use crate::hostnames::tunnel_name;
use crate::limits::{IdleIo, IdleSwitch};
use crate::registry::LocalRegistry;
use crate::shards::Shards;
use crate::state::{text_response, Counters, Peer, ServerState};
use crate::tls_port::TlsPort;

/// A localtunnels server, configured but not yet listening.
#[derive(Debug)]
pub struct TunnelServer {
    config: ServerConfig,
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    state: Arc<ServerState>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// A snapshot of the server's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Tunnels connected.
    pub tunnels: usize,
    /// Streams in flight over all tunnels.
    pub streams: usize,
    /// Visitor HTTP requests so far.
    pub requests: u64,
}

impl TunnelServer {
    /// A server with `config`.
    pub fn new(config: ServerConfig) -> Self {
        TunnelServer { config }
    }

    /// Binds the port and starts serving.
    pub async fn start(mut self) -> std::io::Result<ServerHandle> {
        if self.config.needs_tokio_timers() && localtunnels_driver::timers::lean_here() {
            return Err(std::io::Error::other(
                "ACME and the cluster need tokio's timers: run the server on a runtime built with them",
            ));
        }
        let tls = TlsPort::new(&self.config)?.map(Arc::new);
        if tls.is_some() {
            self.config.secure = true;
        }
        if let Some(path) = &self.config.tokens_file {
            let tokens = crate::auth::load_tokens_file(path)?;
            self.config.tokens.extend(tokens);
        }
        if self.config.auth_required() && self.config.tokens.is_empty() {
            tracing::warn!("auth is on but no token is configured: every client will be refused");
        }
        let listener = TcpListener::bind((self.config.bind, self.config.port)).await?;
        let lean = !self.config.needs_tokio_timers();
        let shards = (self.config.shards > 1).then(|| Shards::start(self.config.shards, lean)).transpose()?;
        let addr = listener.local_addr()?;
        let http_listener = match self.config.http_port {
            Some(port) => Some(TcpListener::bind((self.config.bind, port)).await?),
            None => None,
        };
        let http_addr = http_listener.as_ref().map(TcpListener::local_addr).transpose()?;
        let cluster = match &self.config.cluster {
            Some(c) => {
                let mut c = c.clone();
                c.node_url.get_or_insert_with(|| crate::cluster::default_node_url(addr));
                Some(crate::cluster::Cluster::start(c, self.config.grace_period).await?)
            }
            None => None,
        };
        let registry: Arc<dyn crate::registry::Registry> = match &cluster {
            Some(c) => c.registry.clone(),
            None => Arc::new(LocalRegistry::new(self.config.grace_period)),
        };
        let state = Arc::new(ServerState {
            public_port: self.config.public_port.unwrap_or(addr.port()),
            registry,
            cluster,
            counters: Default::default(),
            started: Instant::now(),
            tls: tls.clone(),
            config: self.config,
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        if let Some(listener) = http_listener {
            let acme = tls.as_ref().and_then(|t| t.acme.clone());
            tokio::spawn(crate::http_port::serve(listener, state.clone(), acme, shutdown_rx.clone()));
        }
        if let Some(tls) = &tls {
            tls.spawn_reloader(state.config.tls_reload_interval, shutdown_rx.clone());
            if let Some(acme) = &tls.acme {
                // The apex's certificate is ordered at once; every other name's on demand.
                let (acme, apex) = (acme.clone(), state.config.domain.trim_end_matches('.').to_ascii_lowercase());
                tokio::spawn(async move { acme.ensure(&apex).await });
            }
        }
        let task = tokio::spawn(accept_loop(listener, state.clone(), shutdown_rx, shards));
        info!(%addr, "listening on {}", state.apex_url());
        Ok(ServerHandle { addr, http_addr, state, shutdown, task })
    }
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the plain-HTTP port ([`ServerConfig::http_port`]), if any.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Reloads the TLS certificate files now (as SIGHUP does in the command line).
    /// `Ok(false)` when the server has no certificate files. On error the certificate
    /// in use stays.
    pub fn reload_tls(&self) -> Result<bool, crate::certs::CertError> {
        self.state.tls.as_ref().map_or(Ok(false), |t| t.reload())
    }

    /// The server's own URL, e.g. `http://localhost:3000`.
    pub fn url(&self) -> String {
        self.state.apex_url()
    }

    /// The public URL a tunnel named `name` gets.
    pub fn tunnel_url(&self, name: &str) -> String {
        self.state.tunnel_url(name)
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        let live = self.state.registry.live();
        Stats {
            tunnels: live.len(),
            streams: live.iter().map(|t| t.stream_count()).sum(),
            requests: self.state.counters.requests.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Responses the tunnels' readers wrote straight to HTTP/1 visitors' sockets
    /// (`visitor_h1`'s direct path), for tests that check which path a response took.
    #[doc(hidden)]
    pub fn direct_writes(&self) -> u64 {
        self.state.counters.direct_writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Graceful stop: stop accepting, tell every client it is going away, let
    /// in-flight exchanges finish up to `shutdown_timeout`, then close the rest.
    pub async fn stop(self) {
        if let Some(acme) = self.state.tls.as_ref().and_then(|t| t.acme.as_ref()) {
            acme.stop();
        }
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Accepts connections until shutdown and serves each here, or on the next of
/// `shards` (its socket moved to that shard's runtime).
async fn accept_loop(
    listener: TcpListener,
    state: Arc<ServerState>,
    mut shutdown: watch::Receiver<bool>,
    mut shards: Option<Shards>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        debug!(error = %e, "accept failed");
                        localtunnels_driver::timers::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // The first request head is due one header timeout after this,
                // whatever the TLS handshake and protocol detection take.
                let accepted = tokio::time::Instant::now();
                let _ = tcp.set_nodelay(true);
                let watcher = graceful.watcher();
                let conn = Accepted { peer, accepted, watcher, shutdown: shutdown.clone() };
                let Some(shards) = &mut shards else {
                    serve_accepted(&state, tcp, conn);
                    continue;
                };
                match tcp.into_std() {
                    Ok(tcp) => shards.spawn(serve_on_shard(state.clone(), tcp, conn)),
                    Err(e) => debug!(%peer, error = %e, "cannot hand the connection to a shard"),
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    info!("shutting down: no new connections, in-flight exchanges may finish");
    let tunnels = state.registry.live();
    for t in &tunnels {
        t.go_away("the server is shutting down");
    }
    if localtunnels_driver::timers::timeout(state.config.shutdown_timeout, graceful.shutdown()).await.is_err() {
        info!("shutdown deadline passed; closing what is left");
    }
    for t in &tunnels {
        t.close(CloseCode::Shutdown, "the server is shutting down");
    }
    // The shards let their tasks end (the close frames on their way out), then stop.
    drop(shards);
}

/// Serves an accepted connection on this runtime.
fn serve_accepted(state: &Arc<ServerState>, tcp: tokio::net::TcpStream, conn: Accepted) {
    if state.tls.is_none() && !expects_proxy_header(state, conn.peer) {
        let direct = second_descriptor(&tcp);
        let (io, idle) = connection_io(state, tcp);
        spawn_connection(state.clone(), conn, io, direct, idle, false);
    } else {
        // PROXY header and TLS handshake run in the connection's own task.
        tokio::spawn(prelude(state.clone(), tcp, conn));
    }
}

/// Serves an accepted connection on the shard this runs on: its socket registered with
/// the shard's runtime, so that its readiness wakes that thread.
async fn serve_on_shard(state: Arc<ServerState>, tcp: std::net::TcpStream, conn: Accepted) {
    match tokio::net::TcpStream::from_std(tcp) {
        Ok(tcp) => serve_accepted(&state, tcp, conn),
        Err(e) => debug!(peer = %conn.peer, error = %e, "a shard cannot take the connection"),
    }
}

/// A connection's socket under the idle timeout and the visitor write timeout (a peer
/// that reads nothing of what is written to it is dropped).
fn connection_io(state: &ServerState, tcp: tokio::net::TcpStream) -> (IdleIo<tokio::net::TcpStream>, IdleSwitch) {
    IdleIo::new(tcp, state.config.limits.idle_timeout, state.config.limits.visitor_write_timeout)
}

/// Whether a connection from `peer` must start with a PROXY protocol header.
fn expects_proxy_header(state: &ServerState, peer: SocketAddr) -> bool {
    state.config.proxy_protocol && state.config.trusted_proxies.contains(peer.ip())
}

/// What comes before HTTP on a connection, each step under the handshake deadline:
/// the PROXY header of a trusted load balancer (its source address becomes the peer),
/// then the TLS handshake.
async fn prelude(state: Arc<ServerState>, mut tcp: tokio::net::TcpStream, mut conn: Accepted) {
    let limit = state.config.limits.handshake_timeout;
    let peer = conn.peer;
    if expects_proxy_header(&state, peer) {
        match localtunnels_driver::timers::timeout(limit, crate::proxy_protocol::read_header(&mut tcp)).await {
            Ok(Ok(Some(source))) => conn.peer = source,
            Ok(Ok(None)) => {}
            Ok(Err(e)) => return debug!(%peer, error = %e, "PROXY header refused"),
            Err(_) => return debug!(%peer, "no PROXY header in time"),
        }
    }
    let Some(tls) = state.tls.clone() else {
        let direct = second_descriptor(&tcp);
        let (io, idle) = connection_io(&state, tcp);
        return spawn_connection(state, conn, io, direct, idle, false);
    };
    let (io, idle) = connection_io(&state, tcp);
    match localtunnels_driver::timers::timeout(
        tls.handshake_limit(limit),
        tls.accept(|name| crate::hostnames::is_served(&state, name), io),
    )
    .await
    {
        Ok(Ok(Some(stream))) => {
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            spawn_connection(state, conn, stream, None, idle, h2)
        }
        Ok(Ok(None)) => debug!(%peer, "TLS-ALPN-01 validation answered"),
        Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => debug!(%peer, "TLS handshake timed out"),
    }
}

/// An accepted connection: its peer, when it was accepted, and the server's shutdown.
struct Accepted {
    peer: SocketAddr,
    accepted: tokio::time::Instant,
    watcher: Watcher,
    shutdown: watch::Receiver<bool>,
}

/// Serves one visitor or client connection under the graceful-shutdown watcher: the
/// HTTP/1 visitor path ([`crate::visitor_h1`]) unless the connection negotiated `h2`
/// by ALPN, the server is a cluster node or [`ServerConfig::http1_by_hyper`] is set;
/// then hyper.
///
/// `direct` is a second descriptor of a plain TCP socket, for the tunnel reader's
/// writes to the HTTP/1 path's visitor ([`crate::visitor_h1`]'s `direct`).
fn spawn_connection<T>(
    state: Arc<ServerState>,
    conn: Accepted,
    io: T,
    direct: Option<std::net::TcpStream>,
    idle: IdleSwitch,
    h2: bool,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let visitor = Peer::new(conn.peer, idle);
    if h2 || state.cluster.is_some() || state.config.http1_by_hyper {
        let serve = serve_hyper(state, visitor, Some(conn.accepted), TokioIo::new(io), conn.watcher);
        tokio::spawn(serve);
        return;
    }
    // Each poll of the connection's task reads the clock once (its deadlines, its requests' times).
    let serve = crate::visitor_h1::serve(state, visitor, conn.accepted, io, direct, conn.watcher, conn.shutdown);
    tokio::spawn(crate::poll_clock::polled(serve));
}

/// A second descriptor of `tcp` (non-blocking, as the first), for writes from another
/// task without waiting; `None` where the system gives none.
fn second_descriptor(tcp: &tokio::net::TcpStream) -> Option<std::net::TcpStream> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        tcp.as_fd().try_clone_to_owned().ok().map(std::net::TcpStream::from)
    }
    #[cfg(not(unix))]
    {
        let _ = tcp;
        None
    }
}

/// Serves a connection with hyper (HTTP/1.1 or HTTP/2, with upgrades) under the
/// graceful-shutdown watcher.
///
/// With `accepted`, a connection whose first request head has not arrived one header
/// timeout after it is closed, whatever it sent: nothing, part of a head, or an HTTP/2
/// preface and then nothing. hyper's own `header_read_timeout` covers only HTTP/1
/// heads, and starts once protocol detection has seen a byte; it still bounds every
/// later head and the wait between keep-alive requests. Without it (a connection the
/// HTTP/1 path hands over after reading a head), hyper's timeout alone applies.
pub(crate) async fn serve_hyper<I>(
    state: Arc<ServerState>,
    visitor: Peer,
    accepted: Option<tokio::time::Instant>,
    io: I,
    watcher: Watcher,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let state_limits = state.config.limits.clone();
    let node_streams = state.cluster.as_ref().map(|c| c.config.node_streams);
    let peer = visitor.addr;
    let first_head = Arc::new(AtomicBool::new(accepted.is_none()));
    let seen = first_head.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        if !seen.load(Ordering::Relaxed) {
            seen.store(true, Ordering::Relaxed);
        }
        route_by_host(state.clone(), visitor.clone(), req).map(Ok::<_, Infallible>)
    });
    let limits = &state_limits;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(crate::timer::HeadTimer::default())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(localtunnels_driver::timers::HyperTimer)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    if let Some(streams) = node_streams {
        crate::cluster::serve_http2(builder.http2(), streams);
    }
    let conn = builder.serve_connection_with_upgrades(io, service).into_owned();
    let watched = watcher.watch(conn);
    let head_due = accepted.unwrap_or_else(tokio::time::Instant::now) + limits.header_read_timeout;
    let mut watched = std::pin::pin!(watched);
    let ended = tokio::select! {
        ended = &mut watched => ended,
        () = localtunnels_driver::timers::sleep_until(head_due) => {
            if !first_head.load(Ordering::Relaxed) {
                debug!(%peer, "no request head within the header timeout; closing");
                return;
            }
            watched.await
        }
    };
    if let Err(e) = ended {
        debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Routes by Host: `<name>.<domain>` to that tunnel, anything else to the apex pages.
/// (Not an `async fn`, for the reason given at [`crate::proxy::Answer`].)
/// A request whose host is refused ([`crate::host`]) gets 400.
fn route_by_host(state: Arc<ServerState>, peer: Peer, req: Request<Incoming>) -> impl crate::proxy::Answer {
    // Behind a trusted proxy, the visitor it names stands for the connection's peer.
    let peer = match state.config.trusted_proxies.visitor(peer.addr.ip(), req.headers()) {
        Some(forwarded) => forwarded.apply(&peer),
        None => peer,
    };
    let name = match crate::host::request_host(&req, state.default_port()) {
        Ok(host) => {
            host.and_then(|h| tunnel_name(h.name(), &state.config.domain).or_else(|| custom_hostname(&state, h.name())))
        }
        Err(e) => {
            Counters::bump(&state.counters.bad_request);
            return Either::Right(std::future::ready(text_response(StatusCode::BAD_REQUEST, e.to_string())));
        }
    };
    match name {
        Some(name) => Either::Left(crate::proxy::handle(state, name, peer, req)),
        None => Either::Right(std::future::ready(crate::apex::handle(state, &peer, req))),
    }
}

/// `host` (no port) as a custom hostname of a live or held tunnel, for routing by
/// exact Host; `None` for any other host (the apex pages answer it).
pub(crate) fn custom_hostname(state: &ServerState, host: &str) -> Option<String> {
    // Names and the apex are routed before this; a host without a dot is never custom.
    if !host.contains('.') || host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    let host = crate::hostnames::normalise(host)?;
    (!matches!(state.registry.lookup(&host), crate::registry::Lookup::Unknown)).then_some(host)
}
