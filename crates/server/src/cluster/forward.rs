//! Visitors of a name another node holds: found in the directory and forwarded.
//!
//! The forwarding node sends the visitor's request to the owner's `--node-url` over
//! one HTTP/2 connection per peer node (multiplexed: no new connection per request;
//! a WebSocket is one stream of it, an extended CONNECT, see [`super::connect`]),
//! with two headers: the visitor's address, and a proof that a node sent it (an HMAC
//! with the cluster secret of the time and that address). The owner checks the proof, takes the visitor's address as the peer's
//! (basic auth, allow lists, limits and `X-Forwarded-For` then see the visitor, never
//! a node), and serves the request from its own tunnel. A forwarded request is never
//! forwarded again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use localtunnels_driver::BodyError;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::state::{Body, Counters, Peer, ServerState};
use crate::visitor_error::{retry_later, visitor_error};

/// The header carrying the hex digest of the cluster secret.
pub const NODE_PROOF: &str = "x-localtunnels-node";
/// The header carrying the visitor's address (`ip:port`), believed only with the proof.
pub const NODE_VISITOR: &str = "x-localtunnels-visitor";
/// How far a proof's time may be from the owner's clock.
const PROOF_LIFETIME_SECS: u64 = 60;
/// How long an owner found in Redis is reused without asking again.
const OWNER_CACHE: Duration = Duration::from_secs(1);

/// The HTTP/2 connection to one peer node: opened on first use, again after it closed.
/// Its own lock serialises opening it, so racing first requests share one connection,
/// and a slow peer holds up only the requests going to it.
type PeerSlot = Arc<tokio::sync::Mutex<Option<SendRequest<Incoming>>>>;

/// The HTTP/2 connections to other nodes (one per peer node, multiplexed) and the owner cache.
pub struct Forwarder {
    peers: Mutex<HashMap<String, PeerSlot>>,
    /// HMAC-SHA256 keyed with the cluster secret.
    key: ring::hmac::Key,
    owners: Mutex<HashMap<String, (String, Instant)>>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").finish_non_exhaustive()
    }
}

impl Forwarder {
    pub(crate) fn new(secret: &str) -> Self {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        Forwarder { peers: Mutex::default(), key, owners: Mutex::default() }
    }

    /// The proof for a request standing for `visitor`: `<unix secs>:<hex HMAC of
    /// "<secs>\n<visitor>">`. Bound to the visitor and the minute, so a proof seen on
    /// the wire cannot vouch for another address, nor for long.
    fn proof(&self, visitor: &str) -> HeaderValue {
        let secs = unix_secs();
        let tag = ring::hmac::sign(&self.key, format!("{secs}\n{visitor}").as_bytes());
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        HeaderValue::from_str(&format!("{secs}:{hex}")).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
    }

    /// The connection to the node at `url` (`http://host:port`), opened on first use
    /// and again after it closed (counted in `opened`).
    async fn peer(&self, url: &str, opened: &AtomicU64) -> Result<SendRequest<Incoming>, String> {
        let slot = {
            let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
            peers.entry(url.to_string()).or_default().clone()
        };
        let mut slot = slot.lock().await;
        if let Some(p) = slot.as_ref().filter(|p| !p.is_closed()) {
            return Ok(p.clone());
        }
        let tcp = connect(url).await?;
        let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        super::stats::Stats::bump(opened);
        *slot = Some(send.clone());
        Ok(send)
    }

    /// Whether `value` is this cluster's proof for `visitor`, made within a minute.
    pub(crate) fn proven(&self, value: &HeaderValue, visitor: &str) -> bool {
        let Some((secs, hex)) = value.to_str().ok().and_then(|v| v.split_once(':')) else { return false };
        let Ok(t) = secs.parse::<u64>() else { return false };
        if unix_secs().abs_diff(t) > PROOF_LIFETIME_SECS || hex.len() != 64 {
            return false;
        }
        let tag: Option<Vec<u8>> =
            (0..32).map(|i| hex.get(i * 2..i * 2 + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect();
        let Some(tag) = tag else { return false };
        ring::hmac::verify(&self.key, format!("{t}\n{visitor}").as_bytes(), &tag).is_ok()
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

fn unix_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A TCP connection to the node at `url` (`http://host:port`).
async fn connect(url: &str) -> Result<tokio::net::TcpStream, String> {
    let authority = url.strip_prefix("http://").unwrap_or(url).trim_end_matches('/');
    let tcp = localtunnels_driver::timers::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(authority))
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
    let named = visitor.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("");
    if !cluster.forwarder.proven(&proof, named) {
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
    let websocket = localtunnels_driver::http::is_websocket_upgrade(req.headers());
    // The target's authority is the visitor's host (HTTP/2 sends it as `:authority`),
    // so the owner routes it as it would the visitor's own request.
    let host = req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok());
    let host = host.or(req.uri().authority().map(|a| a.as_str())).unwrap_or(&name).to_string();
    let visitor = peer.addr.to_string();
    let proof = cluster.forwarder.proof(&visitor);
    let headers = req.headers_mut();
    headers.insert(NODE_PROOF, proof);
    if let Ok(v) = HeaderValue::from_str(&visitor) {
        headers.insert(NODE_VISITOR, v);
    }
    // A WebSocket is one stream of the same connection (RFC 8441); its upgrade stays
    // with the visitor's request.
    let (upgrade, req) = if websocket {
        let key = req.headers().get(http::header::SEC_WEBSOCKET_KEY).cloned();
        let upgrade = hyper::upgrade::on(&mut req);
        match super::connect::to_connect(req, &host) {
            Ok(req) => (Some((upgrade, key)), req),
            Err(_) => return not_found(&state, &name),
        }
    } else {
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let Ok(uri) = format!("http://{host}{path}").parse::<http::Uri>() else {
            return not_found(&state, &name);
        };
        *req.uri_mut() = uri;
        *req.version_mut() = http::Version::HTTP_2;
        let headers = req.headers_mut();
        headers.remove(http::header::HOST);
        // HTTP/2 allows `TE` only as `trailers` (hyper drops any other value): a
        // visitor's `TE` that lists `trailers` goes on as that, so the owner passes it
        // to the origin as it would the visitor's own (docs/PROTOCOL.md §5).
        if let http::header::Entry::Occupied(te) = headers.entry(http::header::TE) {
            let asked = localtunnels_driver::http::asks_for_trailers(te.iter());
            te.remove();
            if asked {
                headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
            }
        }
        (None, req)
    };
    // The owner answers within its own response timeout (504 otherwise); a paused or
    // wedged owner gets a little longer, then the visitor gets 504 here.
    let wait = state.config.response_timeout + Duration::from_secs(5);
    let sent = async {
        let mut peer = cluster.forwarder.peer(&owner, &cluster.stats.node_connections).await?;
        peer.send_request(req).await.map_err(|e| e.to_string())
    };
    let Ok(sent) = localtunnels_driver::timers::timeout(wait, sent).await else {
        Counters::bump(&state.counters.timeouts);
        tracing::warn!(%name, "cluster: node {owner} did not answer a forwarded request in time");
        return visitor_error(StatusCode::GATEWAY_TIMEOUT, localtunnels_core::error_page::default_message(504), None);
    };
    let res = match (sent, upgrade) {
        (Ok(res), None) => {
            Counters::bump(&state.counters.requests);
            Ok(res.map(|b| b.map_err(|e| BodyError(e.to_string())).boxed()))
        }
        (Ok(res), Some((visitor, key))) => {
            Counters::bump(&state.counters.websockets);
            Ok(joined(res, visitor, key.as_ref(), &peer))
        }
        (Err(e), _) => Err(e),
    };
    match res {
        Ok(res) => {
            super::stats::Stats::bump(&cluster.stats.forwarded_out);
            res
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

/// The visitor's answer to a WebSocket the owner answered `res` (to the extended
/// CONNECT): on 2xx, a 101 completing the visitor's handshake (`key`) with the owner's
/// end-to-end headers (chosen subprotocol, cookies), and a task joining the visitor's
/// upgraded connection to the owner's stream byte for byte; any other answer as it is.
fn joined(
    mut res: Response<Incoming>,
    visitor: hyper::upgrade::OnUpgrade,
    key: Option<&HeaderValue>,
    peer: &Peer,
) -> Response<Body> {
    if !res.status().is_success() {
        return res.map(|b| b.map_err(|e| BodyError(e.to_string())).boxed());
    }
    let upstream = hyper::upgrade::on(&mut res);
    // Long-lived from here: the visitor's connection is no longer idle-timed.
    peer.idle.disable();
    tokio::spawn(async move {
        let (Ok(v), Ok(u)) = tokio::join!(visitor, upstream) else { return };
        let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(v), &mut TokioIo::new(u)).await;
    });
    let mut out = Response::new(crate::state::full(bytes::Bytes::new()));
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *out.headers_mut() = std::mem::take(res.headers_mut());
    let h = out.headers_mut();
    h.remove(http::header::CONTENT_LENGTH);
    h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(http::header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Some(accept) = key.and_then(|k| HeaderValue::from_str(&derive_accept_key(k.as_bytes())).ok()) {
        h.insert(http::header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    out
}

fn not_found(state: &ServerState, name: &str) -> Response<Body> {
    Counters::bump(&state.counters.not_found);
    visitor_error(StatusCode::NOT_FOUND, format!("There is no tunnel named '{name}' on this server."), None)
}
