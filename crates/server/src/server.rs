//! The listener: one port for control connections and public traffic, routed by
//! the Host header of each request (so every request on a kept-alive connection is
//! routed on its own).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::{Either, FutureExt};
use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use localtunnels_core::CloseCode;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info};

use crate::config::ServerConfig;
use crate::limits::{IdleIo, IdleSwitch};
use crate::registry::LocalRegistry;
use crate::state::{Peer, ServerState};
use crate::write_deadline::WriteDeadlineIo;

/// A localtunnels server, configured but not yet listening.
#[derive(Debug)]
pub struct TunnelServer {
    config: ServerConfig,
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
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
        let tls = self.config.tls.as_ref().map(crate::tls::acceptor).transpose()?;
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
        let addr = listener.local_addr()?;
        let state = Arc::new(ServerState {
            public_port: self.config.public_port.unwrap_or(addr.port()),
            registry: Arc::new(LocalRegistry::new(self.config.grace_period)),
            counters: Default::default(),
            started: Instant::now(),
            config: self.config,
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, state.clone(), tls, shutdown_rx));
        info!(%addr, "listening on {}", state.apex_url());
        Ok(ServerHandle { addr, state, shutdown, task })
    }
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
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
            streams: live.iter().map(|t| t.conn.stream_count()).sum(),
            requests: self.state.counters.requests.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Graceful stop: stop accepting, tell every client it is going away, let
    /// in-flight exchanges finish up to `shutdown_timeout`, then close the rest.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<ServerState>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
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
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (io, idle) = IdleIo::new(tcp, state.config.limits.idle_timeout);
                let io = WriteDeadlineIo::new(io, state.config.limits.visitor_write_timeout, idle.clone());
                let watcher = graceful.watcher();
                match &tls {
                    None => spawn_connection(state.clone(), peer, TokioIo::new(io), idle, watcher),
                    Some(acceptor) => {
                        // The handshake runs in the connection's own task, under a deadline.
                        let (state, acceptor) = (state.clone(), acceptor.clone());
                        tokio::spawn(async move {
                            let limit = state.config.limits.handshake_timeout;
                            match tokio::time::timeout(limit, acceptor.accept(io)).await {
                                Ok(Ok(tls)) => spawn_connection(state, peer, TokioIo::new(tls), idle, watcher),
                                Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                                Err(_) => debug!(%peer, "TLS handshake timed out"),
                            }
                        });
                    }
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    info!("shutting down: no new connections, in-flight exchanges may finish");
    let tunnels = state.registry.live();
    for t in &tunnels {
        t.conn.go_away("the server is shutting down");
    }
    if tokio::time::timeout(state.config.shutdown_timeout, graceful.shutdown()).await.is_err() {
        info!("shutdown deadline passed; closing what is left");
    }
    for t in &tunnels {
        t.conn.close(CloseCode::Shutdown, "the server is shutting down");
    }
}

/// Serves one visitor or client connection (HTTP/1.1 or HTTP/2, with upgrades)
/// under the graceful-shutdown watcher.
fn spawn_connection<I>(state: Arc<ServerState>, peer: SocketAddr, io: I, idle: IdleSwitch, watcher: Watcher)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let state_limits = state.config.limits.clone();
    let visitor = Peer::new(peer, idle);
    let service =
        service_fn(move |req: Request<Incoming>| route(state.clone(), visitor.clone(), req).map(Ok::<_, Infallible>));
    let limits = &state_limits;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(crate::timer::HeadTimer::default())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let conn = builder.serve_connection_with_upgrades(io, service).into_owned();
    let watched = watcher.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = watched.await {
            debug!(%peer, error = %e, "connection ended with an error");
        }
    });
}

/// Routes by Host: `<name>.<domain>` to that tunnel, anything else to the apex pages.
/// (Not an `async fn`, for the reason given at [`crate::proxy::Answer`].)
fn route(state: Arc<ServerState>, peer: Peer, req: Request<Incoming>) -> impl crate::proxy::Answer {
    let host =
        req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()).or_else(|| req.uri().host()).unwrap_or("");
    match tunnel_name(host, &state.config.domain) {
        Some(name) => Either::Left(crate::proxy::handle(state, name, peer, req)),
        None => Either::Right(std::future::ready(crate::apex::handle(state, &peer, req))),
    }
}

/// The tunnel name in `host` (`name.domain[:port]`), if it is a tunnel host.
pub fn tunnel_name(host: &str, domain: &str) -> Option<String> {
    let host = strip_port(host).trim_end_matches('.');
    let domain = domain.trim_end_matches('.');
    let split = host.len().checked_sub(domain.len())?;
    // `get` and not slicing: `split` may fall inside a multi-byte character.
    let (prefix, suffix) = (host.get(..split)?, host.get(split..)?);
    if !suffix.eq_ignore_ascii_case(domain) {
        return None;
    }
    let prefix = prefix.strip_suffix('.')?;
    (!prefix.is_empty()).then(|| prefix.to_ascii_lowercase())
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().unwrap_or(host).trim_start_matches('[');
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::tunnel_name;

    #[test]
    fn hosts_route_to_tunnels_or_apex() {
        assert_eq!(tunnel_name("demo.localhost:3000", "localhost").as_deref(), Some("demo"));
        assert_eq!(tunnel_name("Demo.Example.com", "example.com").as_deref(), Some("demo"));
        assert_eq!(tunnel_name("localhost:3000", "localhost"), None);
        assert_eq!(tunnel_name("127.0.0.1:3000", "localhost"), None);
        assert_eq!(tunnel_name("xlocalhost", "localhost"), None);
        assert_eq!(tunnel_name("a.b.localhost", "localhost").as_deref(), Some("a.b"));
        assert_eq!(tunnel_name("localhost", "localhost"), None);
        assert_eq!(tunnel_name(".localhost", "localhost"), None);
        assert_eq!(tunnel_name("ä.localhost", "calhost"), None);
        assert_eq!(tunnel_name("démo.LOCALHOST.", "localhost").as_deref(), Some("démo"));
    }
}
