//! The client: connects to the server, keeps the tunnel up, and hands every stream
//! the server opens to the origin. When to dial, what to say in the hello, how long to
//! wait and when to give up is the core's `ClientLifecycle`; `Driver` only does what
//! it says, with tokio's sockets and timers.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use localtunnels_core::{
    features, Action, ClientLifecycle, CloseCode, GiveUp, Hello, Policy, RawRequestHead, RefuseReason, RequestHead,
    Session, StreamKind, Welcome, SUBPROTOCOL,
};
use localtunnels_driver::{ConnEvent, ConnEvents, Connection, StreamFuture, StreamHandle};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tracing::{debug, error, info, warn};

use crate::config::{ClientConfig, ServerAddr};
use crate::ctx::Ctx;
use crate::events::ClientEvent;
use crate::joined::{FirstUp, Joined};
use crate::origin::{LocalOrigin, Origin, ServiceOrigin};
use crate::state::StateFile;

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
        let addrs = self.config.server_addrs().map_err(ConnectError::Config)?;
        let ctx = Arc::new(Ctx::new(self.config, self.origin));
        let first_events = ctx.events.subscribe();
        let mut driver = Driver::new(&ctx, addrs);
        let (close_tx, mut close_rx) = watch::channel(false);
        driver.life.connect(driver.now());
        let (conn, conn_events, welcome) = driver.next_session(&ctx, &mut close_rx).await.map_err(|why| {
            let url = driver.servers[0].control_url();
            match why {
                GiveUp::Refused { reason, message } => ConnectError::Refused { reason, message },
                other => ConnectError::Unreachable { url, reason: other.message().to_string() },
            }
        })?;
        if let Some(inspector) = &ctx.config.inspector {
            inspector.attach(&ctx.origin, &welcome.name, &welcome.url);
        }
        ctx.emit(ClientEvent::Connected { url: welcome.url.clone() });
        let (url_tx, url_rx) = watch::channel(welcome.url.clone());
        let token = driver.token.clone();
        let (first_tx, first_rx) = watch::channel(driver.first_up(&welcome));
        let more = ctx.config.connections.saturating_sub(1);
        let joinable = first_rx.borrow().is_some();
        if more > 0 && !joinable {
            info!("the server does not let further connections join a tunnel: one connection");
        }
        let joined = (more > 0 && joinable).then(|| Joined::start(&ctx, more, &first_rx));
        let task = tokio::spawn(run(ctx.clone(), driver, conn, conn_events, close_rx, url_tx, first_tx));
        let first_events = Some(first_events);
        Ok(ClientHandle { welcome, url: url_rx, token, ctx, close: close_tx, task, first_events, joined })
    }
}

/// A running tunnel.
#[derive(Debug)]
pub struct ClientHandle {
    welcome: Welcome,
    url: watch::Receiver<String>,
    /// The reconnect token of the current session.
    token: Arc<std::sync::Mutex<String>>,
    ctx: Arc<Ctx>,
    close: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    first_events: Option<broadcast::Receiver<ClientEvent>>,
    /// The further connections (`ClientConfig::connections`), if any joined.
    joined: Option<Joined>,
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

    /// The secret that lets a new process take this tunnel's name back at once (after
    /// a crash): [`ClientConfig::reconnect_token`](crate::ClientConfig::reconnect_token).
    pub fn reconnect_token(&self) -> String {
        self.token.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// A stream of events from now on (the first call also sees `Connected`).
    /// A receiver that falls more than 1,024 events behind gets `Lagged`.
    pub fn events(&mut self) -> broadcast::Receiver<ClientEvent> {
        self.first_events.take().unwrap_or_else(|| self.ctx.events.subscribe())
    }

    /// Requests (and WebSockets) in flight through the tunnel now.
    pub fn in_flight(&self) -> usize {
        self.ctx.in_flight() + self.joined.as_ref().map_or(0, Joined::in_flight)
    }

    /// Graceful close: no new requests; in-flight ones finish (up to
    /// [`CLOSE_GRACE`]); then the session closes.
    pub async fn close(mut self) {
        self.ctx.closing.store(true, std::sync::atomic::Ordering::Relaxed);
        info!("closing the tunnel: no new requests, waiting for those in flight");
        // The joined connections first: the server closes them when the first one
        // goes, and the first one takes the new requests while they drain.
        if let Some(joined) = self.joined.take() {
            joined.close().await;
        }
        let _ = self.close.send(true);
        let _ = self.task.await;
    }

    /// Resolves when the client stopped by itself (reconnect disabled or a fatal refusal).
    pub async fn stopped(&mut self) {
        let _ = (&mut self.task).await;
    }
}

/// A session that is up: its connection, its events and the server's welcome.
type Up = (Connection, ConnEvents, Welcome);

/// Drives the core [`ClientLifecycle`]: dials, greets, waits, gives up as it says.
struct Driver {
    life: ClientLifecycle,
    servers: Vec<ServerAddr>,
    /// The lifecycle's clock starts here.
    epoch: tokio::time::Instant,
    /// Where the reconnect token is kept between runs, if anywhere.
    state: Option<StateFile>,
    /// The current session's reconnect token, for [`ClientHandle::reconnect_token`].
    token: Arc<std::sync::Mutex<String>>,
    /// Why the session or the last attempt ended, for the next `reconnecting in` line.
    cause: String,
    /// The server of the last session welcomed.
    server: usize,
}

impl Driver {
    fn new(ctx: &Ctx, servers: Vec<ServerAddr>) -> Driver {
        let config = &ctx.config;
        let policy = Policy {
            reconnect: config.reconnect,
            cap: config.max_backoff,
            handshake_timeout: config.handshake_timeout,
            // Several servers are one cluster's nodes: the name follows its token.
            shared_token: true,
            ..Policy::DEFAULT
        };
        let name = config.subdomain.clone().unwrap_or_default();
        let mut life = ClientLifecycle::new(policy, servers.len(), name.clone(), Box::new(rand::random::<f64>));
        let state = match (&config.state_dir, servers.first()) {
            (Some(dir), Some(server)) if !name.is_empty() => Some(StateFile::new(dir, server, &name)),
            _ => None,
        };
        // Another process running this tunnel holds the state: leave it alone.
        let state = state.and_then(|mut s| s.lock().then_some(s));
        let kept = config.reconnect_token.clone().or_else(|| state.as_ref().and_then(StateFile::load));
        if let Some(token) = kept {
            (0..servers.len()).for_each(|i| life.set_reconnect_token(i, token.clone()));
        }
        Driver {
            life,
            servers,
            epoch: tokio::time::Instant::now(),
            state,
            token: Default::default(),
            cause: String::new(),
            server: 0,
        }
    }

    fn now(&self) -> localtunnels_core::Instant {
        localtunnels_core::Instant::from_elapsed(self.epoch.elapsed())
    }

    /// Does what the lifecycle says until a session is up, or returns why it gave up.
    async fn next_session(&mut self, ctx: &Ctx, close: &mut watch::Receiver<bool>) -> Result<Up, GiveUp> {
        let mut server = 0;
        while let Some(action) = self.life.poll_action() {
            match action {
                Action::Dial { server: s } => server = s,
                Action::Hello { name, reconnect_token } => {
                    let index = server.min(self.servers.len() - 1);
                    let addr = &self.servers[index];
                    let attempt = tokio::select! {
                        r = handshake_within(ctx, addr, name, reconnect_token, false) => r,
                        _ = close.changed() => {
                            self.life.close();
                            continue;
                        }
                    };
                    let now = self.now();
                    match attempt {
                        Ok((conn, events, welcome)) => {
                            self.life.handle_welcome(now, &welcome.name, &welcome.reconnect_token);
                            self.keep_token(server);
                            self.server = index;
                            return Ok((conn, events, welcome));
                        }
                        Err(e) => {
                            self.cause = e.to_string();
                            if self.life.welcomed_once() {
                                debug!(error = %e, "reconnect attempt failed");
                                ctx.emit(ClientEvent::Error { message: e.to_string() });
                            }
                            match e {
                                ConnectError::Refused { reason, message } => {
                                    self.life.handle_refusal(now, reason, &message)
                                }
                                // The URL goes back in when the error is made (`connect`).
                                ConnectError::Unreachable { reason, .. } => {
                                    self.life.handle_close(now, CloseCode::Internal, &reason)
                                }
                                other => self.life.handle_close(now, CloseCode::Internal, &other.to_string()),
                            }
                        }
                    }
                }
                Action::Wait { until, attempt, delay } => {
                    ctx.emit(ClientEvent::Reconnecting { attempt, delay });
                    // Expected while a server restarts: a warning once it has failed
                    // before, never an error line.
                    let ms = delay.as_millis();
                    if attempt == 1 {
                        info!("reconnecting in {ms} ms (attempt {attempt}): {}", self.cause);
                    } else {
                        warn!("reconnecting in {ms} ms (attempt {attempt}): {}", self.cause);
                    }
                    let at = self.epoch + until.saturating_duration_since(localtunnels_core::Instant::ZERO);
                    tokio::select! {
                        _ = localtunnels_driver::timers::sleep_until(at) => {
                            let now = self.now();
                            self.life.handle_timeout(now);
                        }
                        _ = close.changed() => self.life.close(),
                    }
                }
                Action::GiveUp(why) => return Err(why),
            }
        }
        Err(GiveUp::Closed)
    }

    /// What joined connections need of the session just `welcome`d: `None` when its
    /// server does not let connections join.
    fn first_up(&self, welcome: &Welcome) -> Option<FirstUp> {
        (welcome.features & features::JOIN != 0).then(|| FirstUp {
            server: self.servers[self.server].clone(),
            name: welcome.name.clone(),
            token: welcome.reconnect_token.clone(),
        })
    }

    /// Publishes the token of the session just welcomed by `server`, and keeps it.
    fn keep_token(&self, server: usize) {
        let token = self.life.reconnect_token(server).to_string();
        if let Some(state) = &self.state {
            if let Err(e) = state.save(&token) {
                warn!(path = %state.path().display(), error = %e, "cannot keep the reconnect token");
            }
        }
        if let Ok(mut t) = self.token.lock() {
            *t = token;
        }
    }
}

/// Opens the control WebSocket and completes the handshake with a hello asking for
/// `name` (or joining its live tunnel, `join`) and presenting `reconnect_token`, all
/// within `config.handshake_timeout`: a server that accepts the TCP connection and
/// then says nothing must not hold the client forever.
pub(crate) async fn handshake_within(
    ctx: &Ctx,
    addr: &ServerAddr,
    name: String,
    reconnect_token: String,
    join: bool,
) -> Result<Up, ConnectError> {
    let handshake = async {
        let url = addr.control_url();
        debug!("connecting to {url}");
        let unreachable = |reason: String| ConnectError::Unreachable { url: url.clone(), reason };
        let mut request = url.as_str().into_client_request().map_err(|e| unreachable(e.to_string()))?;
        request.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static(SUBPROTOCOL));
        let tcp = TcpStream::connect((addr.host.as_str(), addr.port)).await.map_err(|e| unreachable(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let stream = crate::tls::connect(tcp, addr, &ctx.config).await.map_err(unreachable)?;
        let ws = localtunnels_driver::ws_io::client_upgrade(stream, request).await.map_err(unreachable)?;
        let hello = Hello {
            name,
            token: ctx.config.token.clone().unwrap_or_default(),
            reconnect_token,
            client_kind: "native".to_string(),
            client_version: env!("CARGO_PKG_VERSION").to_string(),
            basic_auth: ctx.config.basic_auth.clone().unwrap_or_default(),
            allow_ips: ctx.config.allow_ips.clone(),
            hostname: ctx.config.hostname.clone().unwrap_or_default(),
            join,
            ..Hello::default()
        };
        // The inspector's epoch, when there is one: its stamps of a request's start are
        // then the session's instants as they are (`Inspector::epoch`).
        let epoch = ctx.config.inspector.as_ref().map_or_else(std::time::Instant::now, |i| i.epoch());
        let start = localtunnels_core::Instant::from_elapsed(epoch.elapsed());
        let session = Session::client(ctx.config.session.clone(), hello, start);
        let (conn, mut events) = Connection::start(session, ws, epoch);
        loop {
            match events.recv().await {
                Some(ConnEvent::Welcome(w)) => {
                    debug!(name = %w.name, "handshake done: {}", w.url);
                    // A server that predates custom hostnames ignores the field and grants a
                    // name under its domain: that is not what was asked for.
                    if let Some(host) = &ctx.config.hostname {
                        if !w.name.eq_ignore_ascii_case(host.trim_end_matches('.')) {
                            let message = format!("the server does not grant custom hostnames (it offered {})", w.url);
                            conn.close(CloseCode::Normal, "custom hostname not granted");
                            return Err(ConnectError::Refused { reason: RefuseReason::HostnameNotAllowed, message });
                        }
                    }
                    return Ok((conn, events, w));
                }
                Some(ConnEvent::Refused { reason, message }) => return Err(ConnectError::Refused { reason, message }),
                Some(ConnEvent::Closed { message, .. }) => return Err(unreachable(message)),
                None => return Err(unreachable("connection closed during the handshake".into())),
                Some(_) => {}
            }
        }
    };
    let limit = ctx.config.handshake_timeout;
    localtunnels_driver::timers::timeout(limit, handshake).await.unwrap_or_else(|_| {
        let reason = format!("no handshake within {} s", limit.as_secs_f32());
        Err(ConnectError::Unreachable { url: addr.control_url(), reason })
    })
}

/// How long [`ClientHandle::close`] waits for requests in flight.
pub const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// Serves one session until it ends, then reconnects as the lifecycle says (unless
/// closing).
async fn run(
    ctx: Arc<Ctx>,
    mut driver: Driver,
    mut conn: Connection,
    mut events: ConnEvents,
    mut close: watch::Receiver<bool>,
    url: watch::Sender<String>,
    first: watch::Sender<Option<FirstUp>>,
) {
    loop {
        let (reason, code) = serve(&ctx, &conn, &mut events, &mut close).await;
        first.send_replace(None);
        if *close.borrow() {
            driver.life.close();
            // The server freed the name on our close: the token is of no more use.
            if let Some(state) = &driver.state {
                state.remove();
            }
            return;
        }
        ctx.emit(ClientEvent::Disconnected { reason: reason.clone() });
        warn!("disconnected: {reason}");
        driver.cause = reason.clone();
        let now = driver.now();
        driver.life.handle_close(now, code, &reason);
        match driver.next_session(&ctx, &mut close).await {
            Ok((c, e, w)) => {
                info!("reconnected: {}", w.url);
                first.send_replace(driver.first_up(&w));
                let _ = url.send(w.url.clone());
                if let Some(inspector) = &ctx.config.inspector {
                    inspector.attach(&ctx.origin, &w.name, &w.url);
                }
                ctx.emit(ClientEvent::Connected { url: w.url });
                (conn, events) = (c, e);
            }
            Err(GiveUp::Replaced { .. }) => {
                let message = "another session took over this tunnel's name; not reconnecting".to_string();
                error!("{message}");
                ctx.emit(ClientEvent::Error { message });
                return;
            }
            Err(GiveUp::Closed | GiveUp::Disconnected { .. }) => return,
            Err(why) => {
                let message = format!("not reconnecting: {}", why.message());
                error!("{message}");
                ctx.emit(ClientEvent::Error { message });
                return;
            }
        }
    }
}

/// Exponential backoff with full jitter: uniform in [0, min(cap, 500 ms * 2^(attempt-1))],
/// the core [`Policy`]'s curve.
pub fn backoff(attempt: u32, cap: Duration) -> Duration {
    Policy { cap, ..Policy::DEFAULT }.delay(attempt, rand::random::<f64>())
}

/// Hands each incoming stream to the origin until the session ends; returns why it ended.
pub(crate) async fn serve(
    ctx: &Arc<Ctx>,
    conn: &Connection,
    events: &mut ConnEvents,
    close: &mut watch::Receiver<bool>,
) -> (String, CloseCode) {
    // Each stream goes from the connection's reader straight to its work, which that
    // task runs: reading the request, the origin's I/O and writing the answer need no
    // other task.
    let handler_ctx = ctx.clone();
    conn.on_incoming(Arc::new(move |stream, head, end| Some(accept(&handler_ctx, stream, head, end))));
    // A request the client writes to a local origin as it came (its header block
    // never decoded: `raw_request`; an inspector files it from the same fields),
    // unless someone reports each request before it is sent (`--print-requests`).
    if ctx.origin.as_local().is_some() && !ctx.config.request_events {
        let raw_ctx = ctx.clone();
        conn.on_incoming_raw(Arc::new(move |stream, head, end| Some(accept_raw(&raw_ctx, stream, head, end))));
    }
    ctx.serving(conn);
    loop {
        let ev = tokio::select! {
            ev = events.recv() => ev,
            _ = close.changed() => {
                conn.go_away("the client is shutting down");
                let drained = async { while conn.stream_count() > 0 { tokio::task::yield_now().await; localtunnels_driver::timers::sleep(Duration::from_millis(20)).await; } };
                let _ = localtunnels_driver::timers::timeout(CLOSE_GRACE, drained).await;
                conn.close(CloseCode::Shutdown, "the client is shutting down");
                return ("closed".into(), CloseCode::Shutdown);
            }
        };
        match ev {
            // Streams opened before the handler was set: each in a task of its own.
            Some(ConnEvent::Incoming { stream, head, end }) => drop(tokio::spawn(accept(ctx, stream, head, end))),
            Some(ConnEvent::GoAway { message }) => info!("server going away: {message}"),
            Some(ConnEvent::Closed { message, code, .. }) => return (message, code),
            None => return ("connection lost".into(), CloseCode::Internal),
            Some(_) => {}
        }
    }
}

/// [`accept`] of an HTTP stream whose head came raw: written to the origin as it came
/// if [`crate::raw_request::takes_raw`] says so, else decoded first.
fn accept_raw(ctx: &Arc<Ctx>, stream: StreamHandle, head: RawRequestHead, end: bool) -> StreamFuture {
    if !crate::raw_request::takes_raw(ctx, &head, end) {
        return accept(ctx, stream, head.decode(), end);
    }
    let fut: Pin<Box<_>> =
        Box::into_pin(Box::write(Box::new_uninit(), crate::http::serve_raw(ctx.clone(), stream, head)));
    fut
}

/// The work of one stream the server opened, for the connection's reader task to run
/// (see [`Connection::on_incoming`]): HTTP exchanges and WebSockets alike. A WebSocket
/// lives long, but its bridge only waits on sockets and credit like an exchange does,
/// and running it there spares its messages the hop to a task of their own.
///
/// Each future is written straight into its allocation, made first (`Box::write` on
/// `Box::new_uninit`): `Box::pin(serve(..))` builds it on the stack and then copies
/// all of it into the box (1,592 bytes for an HTTP exchange, though only its
/// arguments are set before its first poll: ~0.18k instructions a request).
fn accept(ctx: &Arc<Ctx>, stream: StreamHandle, head: RequestHead, end: bool) -> StreamFuture {
    let ctx = ctx.clone();
    match head.kind {
        StreamKind::Http => {
            let fut: Pin<Box<_>> =
                Box::into_pin(Box::write(Box::new_uninit(), crate::http::serve(ctx, stream, head, end)));
            fut
        }
        StreamKind::WebSocket => {
            let fut: Pin<Box<_>> =
                Box::into_pin(Box::write(Box::new_uninit(), crate::websocket::serve(ctx, stream, head)));
            fut
        }
    }
}
