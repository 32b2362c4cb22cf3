//! Control connections: the WebSocket upgrade on the apex host, the handshake
//! decision, and the session's lifetime in the registry.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use localtunnels_core::{CloseCode, Hello, RefuseReason, ResetCode, Session, Welcome};
use localtunnels_driver::{ConnEvent, Connection, SUBPROTOCOL};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, info, info_span, Instrument};

use crate::names;
use crate::registry::{ClaimError, Proof};
use crate::state::{text_response, Body, Counters, ServerState};
use crate::tunnel::Tunnel;

/// Answers the control endpoint's upgrade request and runs the session in a task.
pub fn upgrade<B: Send + 'static>(state: Arc<ServerState>, peer: SocketAddr, req: Request<B>) -> Response<Body> {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return text_response(
            StatusCode::UPGRADE_REQUIRED,
            "this is the localtunnels control endpoint: connect with a localtunnels client (WebSocket)",
        );
    };
    let offered = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL);
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
    let h = res.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if offered {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(SUBPROTOCOL));
    }
    res
}

async fn run_session<S>(state: Arc<ServerState>, peer: SocketAddr, io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let max = usize::try_from(state.config.session.max_frame).unwrap_or(usize::MAX);
    let ws_config = WebSocketConfig::default().max_message_size(Some(max)).max_frame_size(Some(max));
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config)).await;
    let epoch = std::time::Instant::now();
    let session = Session::server(state.config.session.clone(), localtunnels_core::Instant::ZERO);
    let (conn, mut events) = Connection::start(session, ws, epoch);

    let hello = loop {
        match events.recv().await {
            Some(ConnEvent::Hello(h)) => break h,
            Some(ConnEvent::Closed { message, .. }) => return debug!(%message, "closed before hello"),
            None => return,
            Some(_) => {}
        }
    };
    let tunnel = match admit(&state, &hello, peer, &conn) {
        Ok(t) => t,
        Err((reason, message)) => {
            Counters::bump(&state.counters.refused);
            info!(reason = reason.as_str(), %message, "tunnel refused");
            conn.refuse(reason, &message);
            return;
        }
    };
    Counters::bump(&state.counters.sessions);
    info!(name = %tunnel.name, kind = %hello.client_kind, "tunnel up: {}", state.tunnel_url(&tunnel.name));
    while let Some(ev) = events.recv().await {
        match ev {
            ConnEvent::Incoming { stream, .. } => {
                stream.sender.reset(ResetCode::Refused, "the server does not accept streams from clients")
            }
            ConnEvent::Closed { message, .. } => {
                info!(name = %tunnel.name, %message, "tunnel down");
                break;
            }
            _ => {}
        }
    }
    state.registry.release(&tunnel.name, &tunnel);
}

/// Decides on a hello: the name, and whether this client may have it.
fn admit(
    state: &Arc<ServerState>,
    hello: &Hello,
    peer: SocketAddr,
    conn: &Connection,
) -> Result<Arc<Tunnel>, (RefuseReason, String)> {
    if state.registry.live().len() >= state.config.max_tunnels {
        return Err((RefuseReason::ServerFull, "the server has no room for another tunnel; try later".into()));
    }
    let requested = !hello.name.is_empty();
    let proof = Proof { reconnect_token: hello.reconnect_token.clone(), auth_token: hello.token.clone() };
    for _ in 0..16 {
        let name = if requested {
            names::validate(&hello.name).map_err(|e| (RefuseReason::NameInvalid, e.to_string()))?
        } else {
            names::random_name()
        };
        let tunnel = Arc::new(Tunnel {
            name: name.clone(),
            conn: conn.clone(),
            peer,
            client_kind: hello.client_kind.clone(),
            connected_at: Instant::now(),
            requests: AtomicU64::new(0),
        });
        match state.registry.claim(&name, &proof, tunnel.clone()) {
            Ok(claim) => {
                if let Some(old) = claim.replaced {
                    old.conn.close(CloseCode::Replaced, "a newer session of this client took over the name");
                }
                let url = state.tunnel_url(&name);
                conn.accept(Welcome {
                    name,
                    url,
                    reconnect_token: claim.reconnect_token,
                    server_version: env!("CARGO_PKG_VERSION").to_string(),
                    ..Welcome::default()
                });
                return Ok(tunnel);
            }
            Err(ClaimError::Taken(name)) if requested => {
                return Err((
                    RefuseReason::NameTaken,
                    format!("the name '{name}' is in use by another client; choose another subdomain or omit it for a random one"),
                ))
            }
            Err(ClaimError::Taken(_)) => continue,
        }
    }
    Err((RefuseReason::ServerFull, "could not find a free name; try again".into()))
}
