//! The client: connects to the server, keeps the tunnel up (reconnecting with
//! backoff), and hands every stream the server opens to the origin.

use std::sync::Arc;
use std::time::Duration;

use localtunnels_core::{CloseCode, Hello, RefuseReason, RequestHead, Session, StreamKind, Welcome};
use localtunnels_driver::{ConnEvent, ConnEvents, Connection, StreamHandle, SUBPROTOCOL};
use rand::Rng;
use tokio::net::TcpStream;
use tokio::sync::{broadcast, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tracing::{debug, info, warn};

use crate::config::{ClientConfig, HostHeader, ServerAddr};
use crate::events::ClientEvent;
use crate::origin::{LocalOrigin, Origin, ServiceOrigin};

/// Why the tunnel could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The server could not be reached or did not speak the protocol.
    #[error("cannot reach the server at {url}: {reason}")]
    Unreachable {
        /// The control URL tried.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The server refused the tunnel.
    #[error("the server refused the tunnel ({}): {message}", reason.as_str())]
    Refused {
        /// Machine-readable reason.
        reason: RefuseReason,
        /// The server's words.
        message: String,
    },
}

/// A client that exposes an origin through a localtunnels server.
pub struct TunnelClient {
    config: ClientConfig,
    origin: Arc<dyn Origin>,
}

impl std::fmt::Debug for TunnelClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelClient").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Per-connection context every stream task needs.
pub(crate) struct Ctx {
    pub(crate) config: ClientConfig,
    pub(crate) origin: Arc<dyn Origin>,
    pub(crate) events: broadcast::Sender<ClientEvent>,
    /// The Host header the origin sees (`--host-header rewrite`), made once: `None`
    /// passes the visitor's through.
    origin_host: Option<HeaderValue>,
}

impl Ctx {
    pub(crate) fn emit(&self, ev: ClientEvent) {
        // No subscriber is fine: events are for whoever listens.
        let _ = self.events.send(ev);
    }

    /// The Host header the origin should see instead of the visitor's, if any.
    pub(crate) fn host_for_origin(&self) -> Option<&HeaderValue> {
        self.origin_host.as_ref()
    }
}

impl TunnelClient {
    /// A client exposing `config.local_host:config.local_port`.
    pub fn new(config: ClientConfig) -> Self {
        let origin = Arc::new(LocalOrigin::from_config(&config));
        TunnelClient { config, origin }
    }

    /// A client exposing an in-process `tower` service (e.g. an axum `Router`):
    /// no local port at all, as `ngrok.listen()` does.
    pub fn with_service<S>(config: ClientConfig, service: S) -> Self
    where
        ServiceOrigin<S>: Origin,
    {
        TunnelClient { config, origin: Arc::new(ServiceOrigin::new(service)) }
    }

    /// A client exposing any [`Origin`].
    pub fn with_origin(config: ClientConfig, origin: Arc<dyn Origin>) -> Self {
        TunnelClient { config, origin }
    }

    /// Connects and returns once the tunnel is up (or refused). The tunnel then runs
    /// in the background, reconnecting after drops, until [`ClientHandle::close`].
    pub async fn connect(self) -> Result<ClientHandle, ConnectError> {
        self.config.validate().map_err(ConnectError::Config)?;
        let addr = self.config.server_addr().map_err(ConnectError::Config)?;
        let (events, _) = broadcast::channel(1024);
        let origin_host = match self.config.host_header {
            HostHeader::Rewrite => self.origin.authority().and_then(|a| HeaderValue::from_str(&a).ok()),
            HostHeader::Preserve => None,
        };
        let ctx = Arc::new(Ctx { config: self.config, origin: self.origin, events, origin_host });
        let first_events = ctx.events.subscribe();
        let (conn, conn_events, welcome) = handshake_within(&ctx, &addr, None).await?;
        if let Some(inspector) = &ctx.config.inspector {
            inspector.attach(&ctx.origin, &welcome.name, &welcome.url);
        }
        ctx.emit(ClientEvent::Connected { url: welcome.url.clone() });
        let (close_tx, close_rx) = watch::channel(false);
        let (url_tx, url_rx) = watch::channel(welcome.url.clone());
        let task = tokio::spawn(run(ctx.clone(), addr, conn, conn_events, welcome.clone(), close_rx, url_tx));
        Ok(ClientHandle { welcome, url: url_rx, ctx, close: close_tx, task, first_events: Some(first_events) })
    }
}

/// A running tunnel.
#[derive(Debug)]
pub struct ClientHandle {
    welcome: Welcome,
    url: watch::Receiver<String>,
    ctx: Arc<Ctx>,
    close: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    first_events: Option<broadcast::Receiver<ClientEvent>>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").finish_non_exhaustive()
    }
}

impl ClientHandle {
    /// The public URL.
    pub fn url(&self) -> String {
        self.url.borrow().clone()
    }

    /// The granted name.
    pub fn name(&self) -> &str {
        &self.welcome.name
    }

    /// A stream of events from now on (the first call also sees `Connected`).
    /// A receiver that falls more than 1,024 events behind gets `Lagged`.
    pub fn events(&mut self) -> broadcast::Receiver<ClientEvent> {
        self.first_events.take().unwrap_or_else(|| self.ctx.events.subscribe())
    }

    /// Graceful close: no new requests; in-flight ones finish (up to 10 s); then the
    /// session closes.
    pub async fn close(self) {
        let _ = self.close.send(true);
        let _ = self.task.await;
    }

    /// Resolves when the client stopped by itself (reconnect disabled or a fatal refusal).
    pub async fn stopped(&mut self) {
        let _ = (&mut self.task).await;
    }
}

/// [`handshake`] under `config.handshake_timeout`: a server that accepts the TCP
/// connection and then says nothing must not hold the client forever.
async fn handshake_within(
    ctx: &Ctx,
    addr: &ServerAddr,
    previous: Option<&Welcome>,
) -> Result<(Connection, ConnEvents, Welcome), ConnectError> {
    let limit = ctx.config.handshake_timeout;
    tokio::time::timeout(limit, handshake(ctx, addr, previous)).await.unwrap_or_else(|_| {
        let reason = format!("no handshake within {} s", limit.as_secs_f32());
        Err(ConnectError::Unreachable { url: addr.control_url(), reason })
    })
}

/// Opens the control WebSocket and completes the handshake.
async fn handshake(
    ctx: &Ctx,
    addr: &ServerAddr,
    previous: Option<&Welcome>,
) -> Result<(Connection, ConnEvents, Welcome), ConnectError> {
    let url = addr.control_url();
    let unreachable = |reason: String| ConnectError::Unreachable { url: url.clone(), reason };
    let mut request = url.as_str().into_client_request().map_err(|e| unreachable(e.to_string()))?;
    request.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static(SUBPROTOCOL));
    let tcp = TcpStream::connect((addr.host.as_str(), addr.port)).await.map_err(|e| unreachable(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let stream = crate::tls::connect(tcp, addr, &ctx.config).await.map_err(unreachable)?;
    let ws = localtunnels_driver::wire::client_upgrade(stream, request).await.map_err(unreachable)?;
    let hello = Hello {
        name: previous.map(|w| w.name.clone()).or_else(|| ctx.config.subdomain.clone()).unwrap_or_default(),
        token: ctx.config.token.clone().unwrap_or_default(),
        reconnect_token: previous.map(|w| w.reconnect_token.clone()).unwrap_or_default(),
        client_kind: "native".to_string(),
        client_version: env!("CARGO_PKG_VERSION").to_string(),
        basic_auth: ctx.config.basic_auth.clone().unwrap_or_default(),
        allow_ips: ctx.config.allow_ips.clone(),
        ..Hello::default()
    };
    let epoch = std::time::Instant::now();
    let session = Session::client(ctx.config.session.clone(), hello, localtunnels_core::Instant::ZERO);
    let (conn, mut events) = Connection::start(session, ws, epoch);
    loop {
        match events.recv().await {
            Some(ConnEvent::Welcome(w)) => return Ok((conn, events, w)),
            Some(ConnEvent::Refused { reason, message }) => return Err(ConnectError::Refused { reason, message }),
            Some(ConnEvent::Closed { message, .. }) => return Err(unreachable(message)),
            None => return Err(unreachable("connection closed during the handshake".into())),
            Some(_) => {}
        }
    }
}

/// Serves one session until it ends, then reconnects (unless closing).
async fn run(
    ctx: Arc<Ctx>,
    addr: ServerAddr,
    mut conn: Connection,
    mut events: ConnEvents,
    mut welcome: Welcome,
    mut close: watch::Receiver<bool>,
    url: watch::Sender<String>,
) {
    loop {
        let (reason, code) = serve(&ctx, &conn, &mut events, &mut close).await;
        if *close.borrow() {
            return;
        }
        ctx.emit(ClientEvent::Disconnected { reason: reason.clone() });
        warn!(%reason, "tunnel disconnected");
        if !ctx.config.reconnect {
            return;
        }
        if code == CloseCode::Replaced {
            // Another process with this client's token took the name: taking it back
            // would only start a tug of war.
            let message = "another session took over this tunnel's name; not reconnecting".to_string();
            ctx.emit(ClientEvent::Error { message });
            return;
        }
        let mut attempt = 0u32;
        loop {
            attempt = attempt.saturating_add(1);
            let delay = backoff(attempt, ctx.config.max_backoff);
            ctx.emit(ClientEvent::Reconnecting { attempt, delay });
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = close.changed() => return,
            }
            match handshake_within(&ctx, &addr, Some(&welcome)).await {
                Ok((c, e, w)) => {
                    info!(url = %w.url, "tunnel reconnected");
                    let _ = url.send(w.url.clone());
                    if let Some(inspector) = &ctx.config.inspector {
                        inspector.attach(&ctx.origin, &w.name, &w.url);
                    }
                    ctx.emit(ClientEvent::Connected { url: w.url.clone() });
                    (conn, events, welcome) = (c, e, w);
                    break;
                }
                Err(ConnectError::Refused { reason: RefuseReason::Unauthorized, message }) => {
                    ctx.emit(ClientEvent::Error { message: format!("reconnect refused: {message}") });
                    return;
                }
                Err(e) => {
                    debug!(error = %e, attempt, "reconnect failed");
                    ctx.emit(ClientEvent::Error { message: e.to_string() });
                }
            }
        }
    }
}

/// Exponential backoff with full jitter: uniform in [0, min(cap, 250 ms * 2^attempt)].
pub fn backoff(attempt: u32, cap: Duration) -> Duration {
    let base = Duration::from_millis(250).saturating_mul(1u32 << attempt.min(16));
    let ceiling = base.min(cap);
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(rand::thread_rng().gen_range(0..=millis))
}

/// Hands each incoming stream to the origin until the session ends; returns why it ended.
async fn serve(
    ctx: &Arc<Ctx>,
    conn: &Connection,
    events: &mut ConnEvents,
    close: &mut watch::Receiver<bool>,
) -> (String, CloseCode) {
    // Each stream goes from the connection's reader straight to a task of its own.
    let handler_ctx = ctx.clone();
    conn.on_incoming(Arc::new(move |stream, head, end| accept(&handler_ctx, stream, head, end)));
    loop {
        let ev = tokio::select! {
            ev = events.recv() => ev,
            _ = close.changed() => {
                conn.go_away("the client is shutting down");
                let drained = async { while conn.stream_count() > 0 { tokio::task::yield_now().await; tokio::time::sleep(Duration::from_millis(20)).await; } };
                let _ = tokio::time::timeout(Duration::from_secs(10), drained).await;
                conn.close(CloseCode::Shutdown, "the client is shutting down");
                return ("closed".into(), CloseCode::Shutdown);
            }
        };
        match ev {
            Some(ConnEvent::Incoming { stream, head, end }) => accept(ctx, stream, head, end),
            Some(ConnEvent::GoAway { message }) => info!(%message, "server going away"),
            Some(ConnEvent::Closed { message, code }) => return (message, code),
            None => return ("connection lost".into(), CloseCode::Internal),
            Some(_) => {}
        }
    }
}

/// Serves one stream the server opened, in a task of its own. The exchange's future is
/// boxed: tokio copies a task's whole future in and out of its cell as the task starts
/// and ends, a few KiB per request unboxed.
fn accept(ctx: &Arc<Ctx>, stream: StreamHandle, head: RequestHead, end: bool) {
    let ctx = ctx.clone();
    match head.kind {
        StreamKind::Http => tokio::spawn(Box::pin(crate::http::serve(ctx, stream, head, end))),
        StreamKind::WebSocket => tokio::spawn(crate::websocket::serve(ctx, stream, head)),
    };
}
