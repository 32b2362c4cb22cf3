//! The registry of a cluster node: the local registry, plus this node's leases.
//!
//! Visitors are served from the local registry as on one node; a name is served only
//! while its lease is valid by this node's own clock (renewed within the TTL), so a
//! node cut off from Redis, or paused, stops serving at the end of its last lease
//! even before its renewal task notices.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::directory::Directory;
use super::lease::{Lease, Leases};
use crate::registry::{Claim, ClaimError, Counts, LocalRegistry, Lookup, Proof, Quota, Registry};
use crate::tunnel::Tunnel;

/// [`LocalRegistry`] with leases (see the module docs; the rules are in [`super::lease`]).
#[derive(Debug)]
pub struct ClusterRegistry {
    pub(crate) local: LocalRegistry,
    leases: RwLock<Leases>,
    dir: Directory,
}

impl ClusterRegistry {
    pub(crate) fn new(grace: Duration, dir: Directory) -> Self {
        ClusterRegistry { local: LocalRegistry::new(grace), leases: RwLock::default(), dir }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Leases> {
        self.leases.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Leases> {
        self.leases.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Records this node's lease on `name`, granted at `epoch` by a claim sent at `sent`.
    pub(crate) fn granted(&self, name: &str, epoch: u64, sent: Instant, ttl: Duration, rt: String, at: String) {
        self.write().granted(name, epoch, sent, ttl, rt, at);
    }

    /// Every lease, for the renewal round.
    pub(crate) fn leases(&self) -> Vec<(Arc<str>, Lease)> {
        self.read().snapshot()
    }

    /// How many names this node holds a lease on.
    pub(crate) fn lease_count(&self) -> usize {
        self.read().len()
    }

    /// A renewal of `name` at `epoch`, sent at `sent`, succeeded.
    pub(crate) fn renewed(&self, name: &str, epoch: u64, sent: Instant, ttl: Duration) {
        self.write().renewed(name, epoch, sent, ttl);
    }

    /// The leases no longer valid at `now`, to be fenced.
    pub(crate) fn expired(&self, now: Instant) -> Vec<(Arc<str>, u64)> {
        self.read().expired(now)
    }

    /// Stops serving `name` at once (its lease is lost or stale, at `epoch` or
    /// older, or any when `None`): forgets it here and returns the live session to close.
    pub(crate) fn fence(&self, name: &str, epoch: Option<u64>) -> Option<Arc<Tunnel>> {
        if !self.write().fence(name, epoch) {
            return None;
        }
        self.local.forget(name)
    }

    /// Ends this node's lease on `name` if `tunnel` holds it, in Redis in the background.
    fn end(&self, name: &str, tunnel: &Arc<Tunnel>, hold: bool) {
        let ours = matches!(self.local.lookup(name), Lookup::Live(t) if Arc::ptr_eq(&t, tunnel));
        if !ours {
            return;
        }
        let Some(lease) = self.write().end(name) else { return };
        let (dir, name) = (self.dir.clone(), name.to_string());
        tokio::spawn(async move {
            if let Err(e) = dir.end(&name, lease.epoch, hold).await {
                tracing::warn!(%name, error = %e, "cluster: could not end the lease in Redis; it expires by itself");
            }
        });
    }
}

impl Registry for ClusterRegistry {
    /// The local part of a claim only: in cluster mode claims go through
    /// [`super::Cluster::claim`], which takes the lease first.
    fn claim(&self, name: &str, proof: &Proof, tunnel: Arc<Tunnel>, quota: &Quota) -> Result<Claim, ClaimError> {
        self.local.claim(name, proof, tunnel, quota)
    }

    fn lookup(&self, name: &str) -> Lookup {
        match self.local.lookup(name) {
            Lookup::Live(t) => {
                if self.read().is_valid(name, Instant::now()) {
                    Lookup::Live(t)
                } else {
                    // Fenced: 503 with Retry-After while its client moves.
                    Lookup::Held { remaining: Duration::ZERO }
                }
            }
            other => other,
        }
    }

    /// Only a tunnel this node holds a valid lease on: a connection that reaches
    /// another node than the tunnel's cannot join it.
    fn joinable(&self, name: &str, proof: &Proof) -> Option<Arc<Tunnel>> {
        if !self.read().is_valid(name, Instant::now()) {
            return None;
        }
        self.local.joinable(name, proof)
    }

    fn release(&self, name: &str, tunnel: &Arc<Tunnel>) {
        self.end(name, tunnel, true);
        self.local.release(name, tunnel);
    }

    fn live(&self) -> Vec<Arc<Tunnel>> {
        self.local.live()
    }

    fn counts(&self) -> Counts {
        self.local.counts()
    }

    fn free(&self, name: &str, tunnel: &Arc<Tunnel>) {
        self.end(name, tunnel, false);
        self.local.free(name, tunnel);
    }
}
