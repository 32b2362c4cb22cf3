//! Control connections: the WebSocket upgrade on the apex host, the handshake
//! decision ([`check_hello`], then the name claim with per-client quotas), and the
//! session's lifetime in the registry.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use localtunnels_core::{features, CloseCode, Hello, PeerStreams, RefuseReason, Session, Welcome};
use localtunnels_driver::{ConnEvent, Connection, SUBPROTOCOL};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tracing::{debug, info, info_span, Instrument};

use crate::access::Access;
use crate::auth;
use crate::config::ServerConfig;
use crate::fields::Fields;
use crate::limits::TokenBucket;
use crate::names;
use crate::registry::{ClaimError, Proof, Quota};
use crate::state::{text_response, Body, Counters, Peer, ServerState};
use crate::tunnel::Tunnel;
use crate::visitors::Visitors;

/// Answers the control endpoint's upgrade request and runs the session in a task.
pub fn upgrade<B: Send + 'static>(state: Arc<ServerState>, peer: &Peer, req: Request<B>) -> Response<Body> {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return text_response(
            StatusCode::UPGRADE_REQUIRED,
            "this is the localtunnels control endpoint: connect with a localtunnels client (WebSocket)",
        );
    };
    let offered = offers_subprotocol(req.headers());
    // The session's own heartbeats find dead clients.
    peer.idle.disable();
    let peer = peer.addr;
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(
        async move {
            match on_upgrade.await {
                Ok(upgraded) => run_session(state, peer, TokioIo::new(upgraded)).await,
                Err(e) => debug!(error = %e, "control upgrade failed"),
            }
        }
        .instrument(info_span!("control", %peer)),
    );
    let mut res = Response::new(crate::state::full(""));
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *res.headers_mut() = switching_headers(&key, offered);
    res
}

/// Whether the client offered the protocol's subprotocol ([`SUBPROTOCOL`]).
pub(crate) fn offers_subprotocol<F: Fields>(headers: &F) -> bool {
    headers
        .values_of(&header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL)
}

/// The headers of the control connection's 101, in the order hyper writes them (the
/// HTTP/1 path writes its 101 from these too).
pub(crate) fn switching_headers(key: &HeaderValue, offered: bool) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(4);
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if offered {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(SUBPROTOCOL));
    }
    h
}

/// Runs a control connection's session on `io` (after its 101) until it ends.
pub(crate) async fn run_session<S>(state: Arc<ServerState>, peer: SocketAddr, io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let epoch = std::time::Instant::now();
    // Clients never open streams in this protocol version: the session refuses them.
    let config = localtunnels_core::Config { peer_streams: PeerStreams::Refuse, ..state.config.session.clone() };
    let mut session = Session::server(config, localtunnels_core::Instant::ZERO);
    // The HTTP/1 visitor path writes a usual response head from the frame's bytes
    // (`visitor_h1::block_head`); the other readers of heads take them typed
    // (`StreamEvent::typed`).
    session.set_response_blocks(true);
    let io = crate::counting::CountingIo::new(io, state.clone());
    let (conn, mut events) = Connection::start(session, io, epoch);

    let wait_hello = async {
        loop {
            match events.recv().await {
                Some(ConnEvent::Hello(h)) => return Some(h),
                Some(ConnEvent::Closed { message, .. }) => {
                    debug!(%message, "closed before hello");
                    return None;
                }
                None => return None,
                Some(_) => {}
            }
        }
    };
    let hello = match localtunnels_driver::timers::timeout(state.config.limits.handshake_timeout, wait_hello).await {
        Ok(Some(h)) => h,
        Ok(None) => return,
        Err(_) => {
            debug!("no hello in time");
            conn.close(CloseCode::Timeout, "no hello within the handshake timeout");
            return;
        }
    };
    if hello.join {
        return run_joined(&state, &hello, conn, events).await;
    }
    let tunnel = match admit(&state, &hello, peer, &conn).await {
        Ok(t) => t,
        Err(refusal) => return refuse(&state, &conn, refusal, "tunnel refused"),
    };
    Counters::bump(&state.counters.sessions);
    info!(name = %tunnel.name, kind = %hello.client_kind, "tunnel up: {}", state.tunnel_url(&tunnel.name));
    // The client said it is leaving on purpose (Ctrl-C, `close()`): its name is freed
    // at once. A connection that just drops keeps its name held for the grace period.
    let mut leaving = false;
    while let Some(ev) = events.recv().await {
        match ev {
            ConnEvent::GoAway { .. } => leaving = true,
            ConnEvent::Closed { message, code, by_peer } => {
                leaving |= by_peer && matches!(code, CloseCode::Normal | CloseCode::Shutdown);
                info!(name = %tunnel.name, %message, leaving, "tunnel down");
                break;
            }
            _ => {}
        }
    }
    if leaving {
        state.registry.free(&tunnel.name, &tunnel);
    } else {
        state.registry.release(&tunnel.name, &tunnel);
    }
    // The tunnel lives with the connection that claimed its name: the connections that
    // joined it go too, and join again once their client has the name back.
    tunnel.close(CloseCode::Shutdown, "the tunnel's first connection ended");
}

/// Runs a connection that joins its client's live tunnel (`Hello::join`) until it
/// ends: it carries the tunnel's streams beside the first connection, and its end
/// leaves the tunnel up.
async fn run_joined(
    state: &Arc<ServerState>,
    hello: &Hello,
    conn: Connection,
    mut events: localtunnels_driver::ConnEvents,
) {
    let (tunnel, id) = match join(state, hello, &conn) {
        Ok(joined) => joined,
        Err(refusal) => return refuse(state, &conn, refusal, "join refused"),
    };
    info!(name = %tunnel.name, connections = tunnel.connections(), "connection joined the tunnel");
    while let Some(ev) = events.recv().await {
        if let ConnEvent::Closed { message, .. } = ev {
            info!(name = %tunnel.name, %message, "joined connection down");
            break;
        }
    }
    tunnel.leave(id);
}

/// Decides on a joining hello: the same checks as a claim's, then the live tunnel it
/// names and proves with its reconnect token, within the tunnel's connection limit.
fn join(state: &Arc<ServerState>, hello: &Hello, conn: &Connection) -> Result<(Arc<Tunnel>, u64), Refusal> {
    let admission = check_hello(&state.config, hello)?;
    let Some(name) = admission.hostname.or(admission.name) else {
        return Err(Refusal::new(RefuseReason::Malformed, "a joining connection must name the tunnel it joins"));
    };
    let proof = Proof { reconnect_token: hello.reconnect_token.clone(), auth_token: hello.token.clone() };
    let tunnel = state.registry.joinable(&name, &proof).ok_or_else(|| {
        Refusal::new(RefuseReason::NameTaken, format!("no live tunnel '{name}' of this client on this server to join"))
    })?;
    let id = tunnel.join(conn.clone(), state.config.limits.max_connections_per_tunnel).map_err(|full| {
        Refusal::new(
            RefuseReason::LimitReached,
            format!("the tunnel '{name}' has {} connections, the most this server allows", full.max),
        )
    })?;
    conn.accept(Welcome {
        url: state.tunnel_url(&name),
        name,
        reconnect_token: hello.reconnect_token.clone(),
        server_version: env!("CARGO_PKG_VERSION").to_string(),
        features: join_feature(state),
        ..Welcome::default()
    });
    Ok((tunnel, id))
}

/// [`features::JOIN`] when the server lets connections join a tunnel.
fn join_feature(state: &ServerState) -> u32 {
    if state.config.limits.max_connections_per_tunnel > 1 {
        features::JOIN
    } else {
        0
    }
}

/// Refuses a hello: counted, logged with `what`, and told to the client.
fn refuse(state: &ServerState, conn: &Connection, Refusal { reason, message }: Refusal, what: &str) {
    Counters::bump(&state.counters.refused);
    state.counters.recorded.refused(reason);
    info!(reason = reason.as_str(), %message, "{what}");
    conn.refuse(reason, &message);
}

/// Why a hello is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The reason code sent to the client.
    pub reason: RefuseReason,
    /// For people; never holds a secret.
    pub message: String,
}

impl Refusal {
    fn new(reason: RefuseReason, message: impl Into<String>) -> Self {
        Refusal { reason, message: message.into() }
    }
}

/// What a hello asks for, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The requested name, validated and lowercased; `None` for a random one.
    pub name: Option<String>,
    /// The granted custom hostname, normalised; when set, the tunnel is routed by it
    /// (and `name` is `None`).
    pub hostname: Option<String>,
    /// The configured token the client presented (index into the server's tokens).
    pub token: Option<usize>,
    /// The visitor rules the client asked for.
    pub access: Access,
}

/// Checks a hello against the server's configuration, without touching any state:
/// the token (fail closed when auth is on), the requested name and the token's
/// name restrictions, and the visitor rules. The fuzz target `handshake` drives this.
pub fn check_hello(config: &ServerConfig, hello: &Hello) -> Result<Admission, Refusal> {
    let token = if config.auth_required() {
        if hello.token.is_empty() {
            return Err(Refusal::new(
                RefuseReason::Unauthorized,
                "this server requires an auth token: pass --token (or LOCALTUNNELS_TOKEN)",
            ));
        }
        match auth::find(&config.tokens, &hello.token) {
            Some(i) => Some(i),
            None => return Err(Refusal::new(RefuseReason::Unauthorized, "the auth token is not valid on this server")),
        }
    } else {
        None
    };
    let hostname = match hello.hostname.as_str() {
        "" => None,
        h => Some(
            crate::hostnames::grant(config, token.and_then(|i| config.tokens.get(i)), h)
                .map_err(|message| Refusal::new(RefuseReason::HostnameNotAllowed, message))?,
        ),
    };
    // With a hostname, the name field is ignored: a reconnecting client may send the
    // hostname it was welcomed with there.
    let name = match hello.name.as_str() {
        _ if hostname.is_some() => None,
        "" => None,
        n => Some(names::validate(n).map_err(|e| Refusal::new(RefuseReason::NameInvalid, e.to_string()))?),
    };
    if let Some(t) = token.and_then(|i| config.tokens.get(i)).filter(|_| hostname.is_none()) {
        if !t.names().is_empty() {
            let allowed = t.names().join(", ");
            match &name {
                None => {
                    return Err(Refusal::new(
                        RefuseReason::Unauthorized,
                        format!("this token may only use the names {allowed}: pass --subdomain"),
                    ))
                }
                Some(n) if !t.allows_name(n) => {
                    return Err(Refusal::new(
                        RefuseReason::Unauthorized,
                        format!("this token may not use the name '{n}'; it may use {allowed}"),
                    ))
                }
                Some(_) => {}
            }
        }
    }
    let access = Access::from_hello(&hello.basic_auth, &hello.allow_ips)
        .map_err(|e| Refusal::new(RefuseReason::Malformed, format!("invalid visitor access rules: {e}")))?;
    Ok(Admission { name, hostname, token, access })
}

/// Decides on a hello: the checks, the name, and the per-client quotas.
async fn admit(
    state: &Arc<ServerState>,
    hello: &Hello,
    peer: SocketAddr,
    conn: &Connection,
) -> Result<Arc<Tunnel>, Refusal> {
    let admission = check_hello(&state.config, hello)?;
    let limits = &state.config.limits;
    let quota = Quota {
        per_ip: limits.max_tunnels_per_ip,
        per_token: limits.max_tunnels_per_token,
        total: state.config.max_tunnels,
    };
    let proof = Proof { reconnect_token: hello.reconnect_token.clone(), auth_token: hello.token.clone() };
    for _ in 0..16 {
        let name = admission.hostname.clone().or_else(|| admission.name.clone()).unwrap_or_else(names::random_name);
        let tunnel = Arc::new(Tunnel {
            name: name.clone(),
            conn: conn.clone(),
            joined: Default::default(),
            peer,
            client_kind: hello.client_kind.clone(),
            connected_at: Instant::now(),
            requests: AtomicU64::new(0),
            access: admission.access.clone(),
            rate: limits.rate_limit.map(|r| TokenBucket::new(r, Instant::now())),
            visitors: Visitors::new(limits.max_streams_per_visitor, limits.visitor_rate_limit),
            token: admission.token,
        });
        match crate::cluster::claim(state, &name, &proof, tunnel.clone(), &quota).await {
            Ok(claim) => {
                if let Some(old) = claim.replaced {
                    old.close(CloseCode::Replaced, "a newer session of this client took over the name");
                }
                let url = state.tunnel_url(&name);
                conn.accept(Welcome {
                    name,
                    url,
                    reconnect_token: claim.reconnect_token,
                    server_version: env!("CARGO_PKG_VERSION").to_string(),
                    features: join_feature(state),
                    ..Welcome::default()
                });
                return Ok(tunnel);
            }
            Err(ClaimError::Taken(name)) if admission.hostname.is_some() => {
                return Err(Refusal::new(
                    RefuseReason::NameTaken,
                    format!("the hostname '{name}' is in use by another client"),
                ))
            }
            Err(ClaimError::Taken(name)) if admission.name.is_some() => {
                return Err(Refusal::new(
                    RefuseReason::NameTaken,
                    format!("the name '{name}' is in use by another client; choose another subdomain or omit it for a random one"),
                ))
            }
            Err(ClaimError::Taken(_)) => continue,
            Err(ClaimError::Limit(message)) => return Err(Refusal::new(RefuseReason::LimitReached, message)),
            Err(e @ ClaimError::Full) => return Err(Refusal::new(RefuseReason::ServerFull, e.to_string())),
            Err(ClaimError::Unavailable(message)) => return Err(Refusal::new(RefuseReason::ServerFull, message)),
        }
    }
    Err(Refusal::new(RefuseReason::ServerFull, "could not find a free name; try again"))
}
