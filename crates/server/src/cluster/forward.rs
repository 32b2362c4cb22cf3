//! Visitors of a name another node holds: found in the directory and forwarded.
//!
//! The forwarding node sends the visitor's request to the owner's `--node-url` over
//! one HTTP/2 connection per node pair (hyper's pool keeps one multiplexed
//! connection per peer: no new connection per request), with two headers: the
//! cluster secret's digest, proving the request comes from a node, and the visitor's
//! address. The owner checks the proof, takes the visitor's address as the peer's
//! (basic auth, allow lists, limits and `X-Forwarded-For` then see the visitor, never
//! a node), and serves the request from its own tunnel. A forwarded request is never
//! forwarded again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use localtunnels_driver::BodyError;

use crate::state::{Body, Counters, Peer, ServerState};
use crate::visitor_error::{retry_later, visitor_error};

/// The header carrying the hex digest of the cluster secret.
pub const NODE_PROOF: &str = "x-localtunnels-node";
/// The header carrying the visitor's address (`ip:port`), believed only with the proof.
pub const NODE_VISITOR: &str = "x-localtunnels-visitor";
/// How long an owner found in Redis is reused without asking again.
const OWNER_CACHE: Duration = Duration::from_secs(1);

/// The HTTP/2 connections to other nodes (one per peer node, multiplexed) and the owner cache.
pub struct Forwarder {
    peers: tokio::sync::Mutex<HashMap<String, SendRequest<Incoming>>>,
    proof: HeaderValue,
    owners: Mutex<HashMap<String, (String, Instant)>>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").finish_non_exhaustive()
    }
}

impl Forwarder {
    pub(crate) fn new(secret_digest: &str) -> Self {
        let proof = HeaderValue::from_str(secret_digest).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        Forwarder { peers: Default::default(), proof, owners: Mutex::default() }
    }

    /// The connection to the node at `url` (`http://host:port`), opened on first use
    /// and again after it closed.
    async fn peer(&self, url: &str) -> Result<SendRequest<Incoming>, String> {
        if let Some(p) = self.peers.lock().await.get(url).filter(|p| !p.is_closed()) {
            return Ok(p.clone());
        }
        // Not under the lock: a slow peer must not hold up forwarding to the others (two
        // racing first requests may open two connections; the later one is kept).
        let tcp = connect(url).await?;
        let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        self.peers.lock().await.insert(url.to_string(), send.clone());
        Ok(send)
    }

    /// Whether `value` is this cluster's proof.
    pub(crate) fn proven(&self, value: &HeaderValue) -> bool {
        crate::registry::constant_time_eq(value.as_bytes(), self.proof.as_bytes())
    }

    fn cached(&self, name: &str) -> Option<String> {
        let owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        owners.get(name).filter(|(_, at)| at.elapsed() < OWNER_CACHE).map(|(url, _)| url.clone())
    }

    fn remember(&self, name: &str, url: &str) {
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: an old entry is useless anyway.
        if owners.len() > 10_000 {
            owners.clear();
        }
        owners.insert(name.to_string(), (url.to_string(), Instant::now()));
    }
}

/// A TCP connection to the node at `url` (`http://host:port`).
async fn connect(url: &str) -> Result<tokio::net::TcpStream, String> {
    let authority = url.strip_prefix("http://").unwrap_or(url).trim_end_matches('/');
    let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(authority))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// A request from another node: checks its proof and stands for the visitor it names.
/// `Err` is the answer to a request whose proof is wrong (as a bad token: 401).
pub(crate) fn accept_forwarded(
    state: &ServerState,
    peer: &mut Peer,
    req: &mut Request<Incoming>,
) -> Result<bool, Box<Response<Body>>> {
    let Some(cluster) = &state.cluster else { return Ok(false) };
    let Some(proof) = req.headers_mut().remove(NODE_PROOF) else {
        req.headers_mut().remove(NODE_VISITOR);
        return Ok(false);
    };
    let visitor = req.headers_mut().remove(NODE_VISITOR);
    if !cluster.forwarder.proven(&proof) {
        Counters::bump(&state.counters.unauthorized);
        return Err(Box::new(visitor_error(StatusCode::UNAUTHORIZED, "not a node of this cluster", None)));
    }
    super::stats::Stats::bump(&cluster.stats.forwarded_in);
    if let Some(addr) = visitor.and_then(|v| v.to_str().ok()?.parse::<SocketAddr>().ok()) {
        peer.set_addr(addr);
    }
    Ok(true)
}

/// Forwards a visitor's request for `name`, which this node does not hold, to its owner.
pub(crate) async fn forward(
    state: Arc<ServerState>,
    name: String,
    peer: Peer,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let Some(cluster) = state.cluster.clone() else { return not_found(&state, &name) };
    let owner = match cluster.forwarder.cached(&name) {
        Some(url) => Some(url),
        None => match cluster.owner_url(&name).await {
            Ok(Some(url)) => {
                cluster.forwarder.remember(&name, &url);
                Some(url)
            }
            Ok(None) => None,
            Err(e) => {
                Counters::bump(&state.counters.unavailable);
                let detail = format!("cluster directory: {e}");
                return retry_later(
                    format!("The tunnel '{name}' cannot be reached right now. Please try again shortly."),
                    2,
                    Some(&detail),
                );
            }
        },
    };
    let Some(owner) = owner else { return not_found(&state, &name) };
    if localtunnels_driver::http::is_websocket_upgrade(req.headers()) {
        return match websocket(&cluster.forwarder, &owner, &peer, req).await {
            Ok(res) => {
                Counters::bump(&state.counters.websockets);
                super::stats::Stats::bump(&cluster.stats.forwarded_out);
                res
            }
            Err(e) => {
                Counters::bump(&state.counters.bad_gateway);
                let detail = format!("forwarding a WebSocket to node {owner}: {e}");
                tracing::warn!(%name, "cluster: {detail}");
                retry_later(
                    format!("The tunnel '{name}' cannot be reached right now. Please try again shortly."),
                    2,
                    Some(&detail),
                )
            }
        };
    }
    // The target's authority is the visitor's host (HTTP/2 sends it as `:authority`),
    // so the owner routes it as it would the visitor's own request.
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let host = req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok());
    let host = host.or(req.uri().authority().map(|a| a.as_str())).unwrap_or(&name);
    let Ok(uri) = format!("http://{host}{path}").parse::<http::Uri>() else {
        return not_found(&state, &name);
    };
    *req.uri_mut() = uri;
    *req.version_mut() = http::Version::HTTP_2;
    req.headers_mut().remove(http::header::HOST);
    let headers = req.headers_mut();
    headers.insert(NODE_PROOF, cluster.forwarder.proof.clone());
    if let Ok(v) = HeaderValue::from_str(&peer.addr.to_string()) {
        headers.insert(NODE_VISITOR, v);
    }
    // The owner answers within its own response timeout (504 otherwise); a paused or
    // wedged owner gets a little longer, then the visitor gets 504 here.
    let wait = state.config.response_timeout + Duration::from_secs(5);
    let sent = async {
        let mut peer = cluster.forwarder.peer(&owner).await?;
        peer.send_request(req).await.map_err(|e| e.to_string())
    };
    let Ok(sent) = tokio::time::timeout(wait, sent).await else {
        Counters::bump(&state.counters.timeouts);
        tracing::warn!(%name, "cluster: node {owner} did not answer a forwarded request in time");
        return visitor_error(StatusCode::GATEWAY_TIMEOUT, localtunnels_core::error_page::default_message(504), None);
    };
    match sent {
        Ok(res) => {
            Counters::bump(&state.counters.requests);
            super::stats::Stats::bump(&cluster.stats.forwarded_out);
            res.map(|b| b.map_err(|e| BodyError(e.to_string())).boxed())
        }
        Err(e) => {
            Counters::bump(&state.counters.bad_gateway);
            let detail = format!("forwarding to node {owner}: {e}");
            tracing::warn!(%name, "cluster: {detail}");
            retry_later(
                format!("The tunnel '{name}' cannot be reached right now. Please try again shortly."),
                2,
                Some(&detail),
            )
        }
    }
}

/// A visitor's WebSocket upgrade, forwarded on a connection of its own (HTTP/1.1
/// upgrades cannot share the nodes' HTTP/2 connection): the owner's answer goes back to
/// the visitor and, on 101, the two upgraded connections are joined byte for byte.
async fn websocket(
    fwd: &Forwarder,
    owner: &str,
    peer: &Peer,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, String> {
    let visitor = hyper::upgrade::on(&mut req);
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut out = Request::builder().method(req.method()).uri(path);
    if let Some(h) = out.headers_mut() {
        *h = req.headers().clone();
        h.insert(NODE_PROOF, fwd.proof.clone());
        if let Ok(v) = HeaderValue::from_str(&peer.addr.to_string()) {
            h.insert(NODE_VISITOR, v);
        }
    }
    let out = out.body(http_body_util::Empty::<bytes::Bytes>::new()).map_err(|e| e.to_string())?;
    let tcp = connect(owner).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn.with_upgrades());
    let mut res = send.send_request(out).await.map_err(|e| e.to_string())?;
    if res.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(res.map(|b| b.map_err(|e| BodyError(e.to_string())).boxed()));
    }
    let upstream = hyper::upgrade::on(&mut res);
    // Long-lived from here: the visitor's connection is no longer idle-timed.
    peer.idle.disable();
    tokio::spawn(async move {
        let (Ok(v), Ok(u)) = tokio::join!(visitor, upstream) else { return };
        let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(v), &mut TokioIo::new(u)).await;
    });
    Ok(res.map(|_| crate::state::full(bytes::Bytes::new())))
}

fn not_found(state: &ServerState, name: &str) -> Response<Body> {
    Counters::bump(&state.counters.not_found);
    visitor_error(StatusCode::NOT_FOUND, format!("There is no tunnel named '{name}' on this server."), None)
}
