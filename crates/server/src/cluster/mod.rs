//! Several server nodes sharing one name space through Redis (`--cluster`).
//!
//! Each name is a lease in Redis ([`directory`]) taken atomically with a fencing
//! epoch, renewed by its node every third of the TTL, and served by that node only
//! while the lease is valid by its own clock ([`registry::ClusterRegistry`]). A client
//! presenting its reconnect token to another node takes the name over with a new
//! epoch; the old node is told on a pub/sub channel and closes its stale session.
//! The design and its failure matrix are in `docs/CLUSTER.md`.

pub(crate) mod connect;
pub mod directory;
pub mod forward;
pub(crate) mod lease;
pub mod registry;
pub mod stats;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use localtunnels_core::CloseCode;
use tracing::{info, warn};

use self::directory::{Acquired, Directory, Renewal, TAKEOVER_CHANNEL};
use self::registry::ClusterRegistry;
use crate::registry::{Claim, ClaimError, Proof, Quota, Registry};
use crate::tunnel::Tunnel;

/// The default `--lease-ttl`.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);

/// How a node joins a cluster.
#[derive(Clone)]
pub struct ClusterConfig {
    /// `redis://HOST:PORT[/DB]` or `redis+unix:///path/to/redis.sock`.
    pub redis_url: String,
    /// This node's id, unique in the cluster.
    pub node_id: String,
    /// Where other nodes reach this one (recorded for forwarding). Default: from the
    /// address the server listens on.
    pub node_url: Option<String>,
    /// How long a claim lasts without renewal. Default 15 s.
    pub lease_ttl: Duration,
    /// Most HTTP/2 streams one connection to this node may have open at once
    /// (`--node-streams`). Default [`NODE_STREAMS`].
    pub node_streams: u32,
    /// The secret nodes authenticate each other with.
    pub secret: String,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("redis_url", &self.redis_url)
            .field("node_id", &self.node_id)
            .field("node_url", &self.node_url)
            .field("lease_ttl", &self.lease_ttl)
            .field("node_streams", &self.node_streams)
            .finish_non_exhaustive()
    }
}

/// Where other nodes reach a node listening on `addr` (an unspecified address: loopback).
pub fn default_node_url(addr: std::net::SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", std::net::SocketAddr::new(ip, addr.port()))
}

/// The default `--node-streams`: most streams one HTTP/2 connection to a cluster node may have open at once: a
/// node-to-node connection carries every forwarded request and WebSocket between two
/// nodes (hyper's default is 200). Each stream still counts against its visitor's
/// address (`--max-streams-per-visitor`).
pub const NODE_STREAMS: u32 = 4096;

/// HTTP/2 on a cluster node: WebSockets over extended CONNECT (RFC 8441, how other
/// nodes forward them) and room for many streams per connection.
pub(crate) fn serve_http2<E>(mut h2: hyper_util::server::conn::auto::Http2Builder<'_, E>, streams: u32) {
    h2.enable_connect_protocol().max_concurrent_streams(streams);
}

/// A random node id (`node-` and 8 hex digits).
pub fn random_node_id() -> String {
    format!("node-{:08x}", rand::random::<u32>())
}

/// A running cluster membership: the directory and this node's registry.
#[derive(Debug)]
pub struct Cluster {
    pub(crate) config: ClusterConfig,
    dir: Directory,
    /// This node's registry (also the server's `Arc<dyn Registry>`).
    pub registry: Arc<ClusterRegistry>,
    /// Visitors of names other nodes hold go there.
    pub(crate) forwarder: forward::Forwarder,
    /// Counters for `/metrics`.
    pub(crate) stats: stats::Stats,
    /// Whether Redis failed the last renewal round (its loss and return are logged once).
    redis_down: std::sync::atomic::AtomicBool,
    /// The cluster's counts at the last renewal round.
    census: std::sync::Mutex<Census>,
}

/// The cluster's counts as the last renewal round found them (for `/api/status`).
#[derive(Debug, Clone, Copy, Default)]
struct Census {
    /// Nodes that reported within the lease TTL, this one included.
    nodes: u64,
    /// Live names on the other nodes.
    elsewhere: u64,
    /// When the round was sent; `None` before the first one succeeded.
    at: Option<Instant>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hex digest of a secret, or empty for none.
fn secret_digest(secret: &str) -> String {
    if secret.is_empty() {
        String::new()
    } else {
        hex(&crate::auth::digest(secret))
    }
}

impl Cluster {
    /// Connects to Redis and starts the renewal and takeover tasks.
    pub async fn start(config: ClusterConfig, grace: Duration) -> std::io::Result<Arc<Cluster>> {
        let io = |e: redis::RedisError| std::io::Error::other(format!("cluster: Redis at {}: {e}", config.redis_url));
        let client = redis::Client::open(config.redis_url.as_str()).map_err(io)?;
        // A stalled Redis must not stall a claim or a renewal round past a third of the TTL.
        let step = (config.lease_ttl / 3).max(Duration::from_millis(100));
        let manager = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(step))
            .set_connection_timeout(Some(step))
            .set_max_delay(Duration::from_secs(1));
        let conn = redis::aio::ConnectionManager::new_with_config(client.clone(), manager).await.map_err(io)?;
        let dir = Directory::new(conn, config.node_id.clone(), config.lease_ttl, grace);
        let registry = Arc::new(ClusterRegistry::new(grace, dir.clone()));
        let forwarder = forward::Forwarder::new(&config.secret);
        let cluster = Arc::new(Cluster {
            config,
            dir,
            registry,
            forwarder,
            stats: Default::default(),
            redis_down: Default::default(),
            census: Default::default(),
        });
        cluster.renew_all().await;
        info!(node_id = %cluster.config.node_id, ttl = ?cluster.config.lease_ttl, "cluster: joined through Redis");
        tokio::spawn(renew_loop(Arc::downgrade(&cluster)));
        tokio::spawn(takeover_loop(client, Arc::downgrade(&cluster)));
        Ok(cluster)
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.config.node_id
    }

    /// Takes `name` for `tunnel`: the lease in Redis first, then the local registry.
    /// A name another node holds is [`ClaimError::Taken`] unless the proof takes it
    /// over; Redis unreachable is [`ClaimError::Unavailable`] (the client retries).
    pub async fn claim(
        &self,
        name: &str,
        proof: &Proof,
        tunnel: Arc<Tunnel>,
        quota: &Quota,
    ) -> Result<Claim, ClaimError> {
        let rt = secret_digest(&proof.reconnect_token);
        let at = secret_digest(&proof.auth_token);
        let sent = Instant::now();
        let acquired = self.dir.acquire(name, &rt, &at).await.map_err(|e| {
            warn!(%name, error = %e, "cluster: Redis unreachable, claim refused");
            ClaimError::Unavailable("the cluster directory is unreachable; try again shortly".into())
        })?;
        let (epoch, local_proof, stale) = match acquired {
            Acquired::Taken => return Err(ClaimError::Taken(name.to_string())),
            // Ours already: the local registry checks the proof as on one node. A record
            // this process does not know (an earlier process with the same node id)
            // needs the proof Redis checked.
            Acquired::Local(epoch, proven) => {
                if !proven && matches!(self.registry.local.lookup(name), crate::registry::Lookup::Unknown) {
                    return Err(ClaimError::Taken(name.to_string()));
                }
                (epoch, proof.clone(), None)
            }
            // Proven in Redis (or free): whatever this node still had for it is stale.
            Acquired::Granted(epoch) => (epoch, Proof::default(), self.registry.fence(name, None)),
        };
        let at_new = at.clone();
        let mut claim = match self.registry.local.claim(name, &local_proof, tunnel, quota) {
            Ok(claim) => claim,
            Err(e) => {
                if matches!(acquired, Acquired::Granted(_)) {
                    let _ = self.dir.end(name, epoch, true).await;
                }
                return Err(e);
            }
        };
        let rt_new = secret_digest(&claim.reconnect_token);
        self.registry.granted(name, epoch, sent, self.config.lease_ttl, rt_new.clone(), at_new.clone());
        // Store the new session's digests now, so another node accepts its token.
        if let Err(e) = self.dir.renew(name, epoch, &rt_new, &at_new).await {
            warn!(%name, error = %e, "cluster: could not store the new session's token; the next renewal retries");
        }
        if claim.replaced.is_none() {
            claim.replaced = stale;
        }
        Ok(claim)
    }

    /// Where a live name another node holds is served, from the directory.
    pub(crate) async fn owner_url(&self, name: &str) -> redis::RedisResult<Option<String>> {
        let started = Instant::now();
        let owner = self.dir.owner_url(name).await;
        self.stats.lookup.observe(started.elapsed().as_secs_f64());
        owner
    }

    /// This node's metrics, for `/metrics`.
    pub(crate) fn register_metrics(&self, reg: &mut prometheus_client::registry::Registry) {
        self.stats.register(reg, self.registry.lease_count());
    }

    /// This node's part of `/api/status`: its id, its leases, and the cluster's counts
    /// (nodes, and live tunnels: this node's now, the others' as of the last round).
    pub(crate) fn status(&self) -> serde_json::Value {
        let leases = self.registry.lease_count();
        let census = *self.census.lock().unwrap_or_else(|e| e.into_inner());
        let counted = census.at.map(|at| at.elapsed().as_secs());
        serde_json::json!({
            "node_id": self.config.node_id,
            "node_url": self.config.node_url,
            "leases": leases,
            "lease_ttl_secs": self.config.lease_ttl.as_secs(),
            "nodes": census.nodes.max(1),
            "tunnels": census.elsewhere.saturating_add(u64::try_from(leases).unwrap_or(u64::MAX)),
            "counted_secs_ago": counted,
        })
    }

    /// One renewal round, one round trip to Redis: this node's URL, every lease, the
    /// census; then fence what has not been renewed in time.
    async fn renew_all(&self) {
        let ttl = self.config.lease_ttl;
        let leases = self.registry.leases();
        let renewals: Vec<Renewal<'_>> =
            leases.iter().map(|(name, l)| Renewal { name, epoch: l.epoch, rt: &l.rt, at: &l.at }).collect();
        let sent = Instant::now();
        let round = self.dir.renew_round(self.config.node_url.as_deref(), &renewals, leases.len()).await;
        let failed = match round {
            Ok(round) => {
                for ((name, lease), ours) in leases.iter().zip(round.ours) {
                    if ours {
                        stats::Stats::bump(&self.stats.renewals);
                        self.registry.renewed(name, lease.epoch, sent, ttl);
                    } else {
                        stats::Stats::bump(&self.stats.fenced);
                        info!(%name, "cluster: the lease moved to another node; closing this session");
                        close(self.registry.fence(name, Some(lease.epoch)), "the tunnel moved to another node");
                    }
                }
                let reported = u64::try_from(leases.len()).unwrap_or(u64::MAX);
                let elsewhere = round.live.saturating_sub(reported);
                *self.census.lock().unwrap_or_else(|e| e.into_inner()) =
                    Census { nodes: round.nodes, elsewhere, at: Some(sent) };
                None
            }
            Err(e) => {
                for _ in &leases {
                    stats::Stats::bump(&self.stats.renewal_failures);
                }
                Some(e)
            }
        };
        let was_down = self.redis_down.swap(failed.is_some(), std::sync::atomic::Ordering::Relaxed);
        match (&failed, was_down) {
            (Some(e), false) => {
                warn!(error = %e, "cluster: Redis unreachable, leases not renewed; names are fenced after the TTL")
            }
            (None, true) => info!("cluster: Redis reachable again; leases renewed"),
            _ => {}
        }
        for (name, epoch) in self.registry.expired(Instant::now()) {
            warn!(%name, "cluster: lease not renewed within its TTL; no longer serving it");
            stats::Stats::bump(&self.stats.fenced);
            close(
                self.registry.fence(&name, Some(epoch)),
                "this node lost its lease on the name; reconnect to another node",
            );
        }
    }
}

/// Closes a fenced session so that its client reconnects (not `Replaced`: that ends the client).
fn close(tunnel: Option<Arc<Tunnel>>, why: &str) {
    if let Some(t) = tunnel {
        t.close(CloseCode::Shutdown, why);
    }
}

/// Renews leases every third of the TTL while the cluster lives.
async fn renew_loop(cluster: std::sync::Weak<Cluster>) {
    let Some(period) = cluster.upgrade().map(|c| c.config.lease_ttl / 3) else { return };
    let mut tick = localtunnels_driver::timers::interval(period.max(Duration::from_millis(100)));
    loop {
        tick.tick().await;
        let Some(c) = cluster.upgrade() else { return };
        c.renew_all().await;
    }
}

/// Listens for takeovers of this node's names and closes the stale sessions; resubscribes after errors.
async fn takeover_loop(client: redis::Client, cluster: std::sync::Weak<Cluster>) {
    let mut logged = false;
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.subscribe(TAKEOVER_CHANNEL).await.is_ok() {
                    logged = false;
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        let Some(c) = cluster.upgrade() else { return };
                        let Ok(text) = msg.get_payload::<String>() else { continue };
                        let mut parts = text.splitn(3, '\n');
                        let (Some(node), Some(name), Some(epoch)) = (parts.next(), parts.next(), parts.next()) else {
                            continue;
                        };
                        if node != c.node_id() {
                            continue;
                        }
                        let epoch = epoch.parse::<u64>().unwrap_or(0);
                        info!(%name, "cluster: another node took the name over; closing this session");
                        stats::Stats::bump(&c.stats.fenced);
                        if let Some(t) = c.registry.fence(name, Some(epoch)) {
                            t.close(CloseCode::Replaced, "a newer session of this client took over the name");
                        }
                    }
                }
            }
            Err(e) if !logged => {
                warn!(error = %e, "cluster: cannot subscribe to takeovers; retrying");
                logged = true;
            }
            Err(_) => {}
        }
        if cluster.strong_count() == 0 {
            return;
        }
        localtunnels_driver::timers::sleep(Duration::from_secs(1)).await;
    }
}

/// Claims `name` through the cluster when there is one, else in the local registry
/// (the single-node path: no Redis, no extra work).
pub(crate) async fn claim(
    state: &crate::state::ServerState,
    name: &str,
    proof: &Proof,
    tunnel: Arc<Tunnel>,
    quota: &Quota,
) -> Result<Claim, ClaimError> {
    match &state.cluster {
        Some(c) => c.claim(name, proof, tunnel, quota).await,
        None => state.registry.claim(name, proof, tunnel, quota),
    }
}
