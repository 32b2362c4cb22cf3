//! The name-to-session registry, behind one small interface.
//!
//! Today names live in this process ([`LocalRegistry`]). The [`Registry`] trait is the
//! seam for a shared directory (e.g. leases in Redis) when several server nodes share
//! tunnels: claim a name with proof, look a name up, release it into a grace hold.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::auth::{constant_time_eq, digest};
use crate::tunnel::Tunnel;

/// What a client presents to take a name back.
#[derive(Debug, Clone, Default)]
pub struct Proof {
    /// The reconnect token from an earlier welcome.
    pub reconnect_token: String,
    /// The client's auth token (empty when the server has no tokens).
    pub auth_token: String,
}

/// The result of looking a name up.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// A connected tunnel.
    Live(Arc<Tunnel>),
    /// The client dropped; the name is held for it until the grace period ends.
    Held {
        /// Time left in the hold.
        remaining: Duration,
    },
    /// No such tunnel.
    Unknown,
}

/// Why a claim failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimError {
    /// In use, or held for the client that had it.
    #[error("the name '{0}' is in use by another client")]
    Taken(String),
    /// The client's address or token already holds as many names as allowed.
    #[error("{0}")]
    Limit(String),
    /// The server holds as many names as allowed.
    #[error("the server has no room for another tunnel; try later")]
    Full,
    /// A shared directory (the cluster's Redis) cannot be reached: try again later.
    #[error("{0}")]
    Unavailable(String),
}

/// A successful claim.
#[derive(Debug)]
pub struct Claim {
    /// The secret this client can later present as [`Proof::reconnect_token`].
    pub reconnect_token: String,
    /// A live session this claim replaced (same client reconnecting): close it.
    pub replaced: Option<Arc<Tunnel>>,
}

/// How many names one client, and the server, may hold (live or held for a dropped
/// client), checked atomically with the claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Per client address ([`Tunnel::peer`], IPv6 by its /64: [`crate::addr::key`]).
    pub per_ip: usize,
    /// Per auth token ([`Tunnel::token`]).
    pub per_token: usize,
    /// On the whole server.
    pub total: usize,
}

impl Quota {
    /// No limits.
    pub const UNLIMITED: Quota = Quota { per_ip: usize::MAX, per_token: usize::MAX, total: usize::MAX };
}

/// How many names the registry holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Connected tunnels.
    pub live: usize,
    /// Names held for dropped clients (some may have just expired).
    pub held: usize,
}

/// The name directory.
///
/// Who may take a name (`docs/SECURITY.md`, "Keeping a name across drops"): a free
/// name, anyone; a held name, the client that had it (its reconnect token or the auth
/// token it registered the name with); a live name, only the session's own reconnect
/// token (the same client reconnecting over a connection the server still thinks is
/// alive). Another holder of the same auth token gets [`ClaimError::Taken`] until the
/// live session ends.
pub trait Registry: Send + Sync + std::fmt::Debug {
    /// Takes `name` for `tunnel` if it is free or the proof allows it, and the client
    /// stays within `quota` (not counting the entry the claim replaces).
    fn claim(&self, name: &str, proof: &Proof, tunnel: Arc<Tunnel>, quota: &Quota) -> Result<Claim, ClaimError>;
    /// Finds the tunnel for `name`. On every visitor request: no allocation, a read lock.
    fn lookup(&self, name: &str) -> Lookup;
    /// A count of the registry's changes: while it stays the same, every
    /// [`lookup`](Registry::lookup) answers as it did (a visitor connection keeps its
    /// last route that long). `None` (the default): not counted, nothing may be kept.
    fn generation(&self) -> Option<u64> {
        None
    }
    /// The session `tunnel` ended: hold its name for the grace period.
    fn release(&self, name: &str, tunnel: &Arc<Tunnel>);
    /// Every live tunnel.
    fn live(&self) -> Vec<Arc<Tunnel>>;
    /// How many names are live and held, without listing them.
    fn counts(&self) -> Counts;
    /// The session `tunnel` ended because its client left on purpose: free its name
    /// at once (no grace hold).
    fn free(&self, name: &str, tunnel: &Arc<Tunnel>);
    /// The live tunnel `name`, if `proof` carries the reconnect token its client was
    /// welcomed with: another control connection of that client may join it
    /// (`Hello::join`). The auth token alone does not do: it may be shared. A registry
    /// that does not say (the default) lets no connection join.
    fn joinable(&self, name: &str, proof: &Proof) -> Option<Arc<Tunnel>> {
        let _ = (name, proof);
        None
    }
}

/// A name's owner. Secrets are kept as SHA-256 digests only.
#[derive(Debug)]
struct Entry {
    reconnect_token: [u8; 32],
    auth_token: Option<[u8; 32]>,
    /// The owner's address key and token, which its quota counts are kept under.
    owner_ip: IpAddr,
    owner_token: Option<usize>,
    slot: Slot,
    /// Whether the name is in the expiry queue (at most once).
    queued: bool,
}

#[derive(Debug)]
enum Slot {
    Live(Arc<Tunnel>),
    Held { until: Instant },
}

/// The in-process registry. Every operation is O(1) (amortised): names in a hash map,
/// per-address and per-token counts kept as names come and go, and holds expiring
/// from a queue in the order they started (every hold lasts the same grace period).
#[derive(Debug)]
pub struct LocalRegistry {
    grace: Duration,
    inner: RwLock<Inner>,
    /// Moved on each write access, under the write lock ([`Registry::generation`]).
    generation: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Arc<str>, Entry>,
    per_ip: HashMap<IpAddr, usize>,
    per_token: HashMap<usize, usize>,
    /// Held names by the time their hold ends, oldest first.
    holds: VecDeque<(Instant, Arc<str>)>,
    live: usize,
}

impl LocalRegistry {
    /// A registry holding dropped names for `grace`.
    pub fn new(grace: Duration) -> Self {
        LocalRegistry { grace, inner: RwLock::new(Inner::default()), generation: AtomicU64::new(0) }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The write lock; every write access counts as a change. The count moves once the
    /// lock is held, so a reader that sees the new count and then looks up waits for
    /// the change; one that saw the old count keeps its result under it, to be dropped.
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        let guard = self.inner.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::Release);
        guard
    }
}

impl LocalRegistry {
    /// Forgets `name` whatever its state (another cluster node took it over, or this
    /// node's lease on it is lost), returning its live session, if any, to close.
    pub fn forget(&self, name: &str) -> Option<Arc<Tunnel>> {
        let mut inner = self.write();
        let e = inner.entries.remove(name)?;
        inner.account(&e, false);
        match e.slot {
            Slot::Live(t) => Some(t),
            Slot::Held { .. } => None,
        }
    }
}

impl Entry {
    /// Whether `proof` lets a new session take this entry's name: the reconnect token
    /// always; the auth token only once the owner's session has ended.
    fn proven_by(&self, proof: &Proof) -> bool {
        let by_reconnect = !proof.reconnect_token.is_empty()
            && constant_time_eq(&digest(&proof.reconnect_token), &self.reconnect_token);
        let by_auth = !proof.auth_token.is_empty()
            && self.auth_token.is_some_and(|t| constant_time_eq(&digest(&proof.auth_token), &t));
        by_reconnect || (by_auth && matches!(self.slot, Slot::Held { .. }))
    }
}

/// Adds one to `key`'s count (`up`) or takes one away, dropping counts that reach zero.
fn count<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: K, up: bool) {
    if up {
        *map.entry(key).or_insert(0) += 1;
    } else if let std::collections::hash_map::Entry::Occupied(mut e) = map.entry(key) {
        *e.get_mut() = e.get().saturating_sub(1);
        if *e.get() == 0 {
            e.remove();
        }
    }
}

impl Inner {
    /// Adds or removes `e` from the counts.
    fn account(&mut self, e: &Entry, up: bool) {
        count(&mut self.per_ip, e.owner_ip, up);
        if let Some(t) = e.owner_token {
            count(&mut self.per_token, t, up);
        }
        if matches!(e.slot, Slot::Live(_)) {
            self.live = if up { self.live + 1 } else { self.live.saturating_sub(1) };
        }
    }

    /// Forgets holds that ended by `now`. Each queued name is looked at once per hold
    /// it was queued for, so this is O(1) amortised.
    fn expire(&mut self, now: Instant) {
        while let Some((until, _)) = self.holds.front() {
            if *until > now {
                break;
            }
            let Some((_, name)) = self.holds.pop_front() else { break };
            let Some(e) = self.entries.get_mut(&name) else { continue };
            match e.slot {
                Slot::Held { until } if until <= now => {
                    if let Some(e) = self.entries.remove(&name) {
                        self.account(&e, false);
                    }
                }
                // Held again since (a later hold): queue it for that.
                Slot::Held { until } => self.holds.push_back((until, name)),
                // Taken back: out of the queue until its next hold.
                Slot::Live(_) => e.queued = false,
            }
        }
    }

    /// Checks `quota` for a claim of `name` by `ip`/`token`, not counting the entry the
    /// claim replaces.
    fn check_quota(&self, name: &str, ip: IpAddr, token: Option<usize>, quota: &Quota) -> Result<(), ClaimError> {
        let old = self.entries.get(name);
        let total = self.entries.len().saturating_sub(usize::from(old.is_some()));
        if total >= quota.total {
            return Err(ClaimError::Full);
        }
        let by_ip = self
            .per_ip
            .get(&ip)
            .copied()
            .unwrap_or(0)
            .saturating_sub(usize::from(old.is_some_and(|e| e.owner_ip == ip)));
        if by_ip >= quota.per_ip {
            return Err(ClaimError::Limit(format!(
                "your address already has {by_ip} tunnels open or held for reconnection (limit {}); close one or wait for its hold to end",
                quota.per_ip
            )));
        }
        if let Some(t) = token {
            let by_token = self
                .per_token
                .get(&t)
                .copied()
                .unwrap_or(0)
                .saturating_sub(usize::from(old.is_some_and(|e| e.owner_token == Some(t))));
            if by_token >= quota.per_token {
                return Err(ClaimError::Limit(format!(
                    "your token already has {by_token} tunnels open or held for reconnection (limit {}); close one or wait for its hold to end",
                    quota.per_token
                )));
            }
        }
        Ok(())
    }
}

impl Registry for LocalRegistry {
    fn claim(&self, name: &str, proof: &Proof, tunnel: Arc<Tunnel>, quota: &Quota) -> Result<Claim, ClaimError> {
        let now = Instant::now();
        let mut inner = self.write();
        inner.expire(now);
        let mut replaced = None;
        if let Some(e) = inner.entries.get(name) {
            let expired = matches!(e.slot, Slot::Held { until } if until <= now);
            if !expired && !e.proven_by(proof) {
                return Err(ClaimError::Taken(name.to_string()));
            }
            if let Slot::Live(old) = &e.slot {
                replaced = Some(old.clone());
            }
        }
        let ip = crate::addr::key(tunnel.peer.ip());
        inner.check_quota(name, ip, tunnel.token, quota)?;
        let reconnect_token = crate::names::random_secret();
        let mut entry = Entry {
            reconnect_token: digest(&reconnect_token),
            auth_token: (!proof.auth_token.is_empty()).then(|| digest(&proof.auth_token)),
            owner_ip: ip,
            owner_token: tunnel.token,
            slot: Slot::Live(tunnel),
            queued: false,
        };
        let key = match inner.entries.remove_entry(name) {
            Some((key, old)) => {
                inner.account(&old, false);
                // A queued name stays queued: the queue finds it live and lets go.
                entry.queued = old.queued;
                key
            }
            None => Arc::from(name),
        };
        inner.account(&entry, true);
        inner.entries.insert(key, entry);
        Ok(Claim { reconnect_token, replaced })
    }

    fn joinable(&self, name: &str, proof: &Proof) -> Option<Arc<Tunnel>> {
        if proof.reconnect_token.is_empty() {
            return None;
        }
        let inner = self.read();
        let e = inner.entries.get(name)?;
        match &e.slot {
            Slot::Live(t) if constant_time_eq(&digest(&proof.reconnect_token), &e.reconnect_token) => Some(t.clone()),
            _ => None,
        }
    }

    fn lookup(&self, name: &str) -> Lookup {
        match self.read().entries.get(name).map(|e| &e.slot) {
            Some(Slot::Live(t)) => Lookup::Live(t.clone()),
            // The clock is read only for a held name (a live one is every request).
            Some(Slot::Held { until }) => match until.checked_duration_since(Instant::now()) {
                Some(remaining) if !remaining.is_zero() => Lookup::Held { remaining },
                // An ended hold is removed by the next claim or release.
                _ => Lookup::Unknown,
            },
            None => Lookup::Unknown,
        }
    }

    fn generation(&self) -> Option<u64> {
        Some(self.generation.load(Ordering::Acquire))
    }

    fn release(&self, name: &str, tunnel: &Arc<Tunnel>) {
        let now = Instant::now();
        let until = now + self.grace;
        let mut inner = self.write();
        let inner = &mut *inner;
        if let Some((key, e)) = inner.entries.get_key_value(name) {
            // Only the session that holds the name releases it: a replaced session
            // ending later must not evict its successor.
            if matches!(&e.slot, Slot::Live(t) if Arc::ptr_eq(t, tunnel)) {
                let key = key.clone();
                if let Some(e) = inner.entries.get_mut(name) {
                    e.slot = Slot::Held { until };
                    if !e.queued {
                        e.queued = true;
                        inner.holds.push_back((until, key));
                    }
                }
                inner.live = inner.live.saturating_sub(1);
            }
        }
        inner.expire(now);
    }

    fn live(&self) -> Vec<Arc<Tunnel>> {
        self.read()
            .entries
            .values()
            .filter_map(|e| match &e.slot {
                Slot::Live(t) => Some(t.clone()),
                Slot::Held { .. } => None,
            })
            .collect()
    }

    fn counts(&self) -> Counts {
        let inner = self.read();
        Counts { live: inner.live, held: inner.entries.len().saturating_sub(inner.live) }
    }

    fn free(&self, name: &str, tunnel: &Arc<Tunnel>) {
        let mut inner = self.write();
        let inner = &mut *inner;
        // As in `release`: only the session that holds the name gives it up. A stale
        // entry of its in the expiry queue is skipped when it comes up.
        let ours = inner.entries.get(name).is_some_and(|e| matches!(&e.slot, Slot::Live(t) if Arc::ptr_eq(t, tunnel)));
        if ours {
            if let Some(e) = inner.entries.remove(name) {
                inner.account(&e, false);
            }
        }
        inner.expire(Instant::now());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tunnel from `ip` (its session goes nowhere: the registry never touches it).
    pub(crate) fn tunnel(name: &str, ip: [u8; 4], token: Option<usize>) -> Arc<Tunnel> {
        let session = localtunnels_core::Session::server(Default::default(), localtunnels_core::Instant::ZERO);
        let (io, _far) = tokio::io::duplex(64);
        let (conn, _events) = localtunnels_driver::Connection::start(session, io, Instant::now());
        Arc::new(Tunnel {
            name: name.into(),
            conn,
            joined: Default::default(),
            peer: std::net::SocketAddr::from((ip, 1000)),
            client_kind: "test".into(),
            connected_at: Instant::now(),
            requests: AtomicU64::new(0),
            access: Default::default(),
            rate: None,
            visitors: crate::visitors::Visitors::new(1, None),
            token,
        })
    }

    fn proof(reconnect_token: &str, auth_token: &str) -> Proof {
        Proof { reconnect_token: reconnect_token.into(), auth_token: auth_token.into() }
    }

    const QUOTA: Quota = Quota { per_ip: 2, per_token: 10, total: 100 };

    #[tokio::test]
    async fn the_generation_moves_with_every_change_and_only_then() {
        let reg = LocalRegistry::new(Duration::from_secs(60));
        let at = |reg: &LocalRegistry| reg.generation().expect("the local registry counts its changes");
        let start = at(&reg);
        let a = tunnel("a", [10, 0, 0, 1], None);
        let claim = reg.claim("a", &Proof::default(), a.clone(), &QUOTA).unwrap();
        let claimed = at(&reg);
        assert_ne!(claimed, start, "a claim");
        assert!(matches!(reg.lookup("a"), Lookup::Live(_)));
        let _ = (reg.live(), reg.counts(), reg.lookup("nobody"));
        assert_eq!(at(&reg), claimed, "reading changes nothing");
        let b = tunnel("a", [10, 0, 0, 1], None);
        reg.claim("a", &proof(&claim.reconnect_token, ""), b.clone(), &QUOTA).unwrap();
        let replaced = at(&reg);
        assert_ne!(replaced, claimed, "a session replaced by its successor");
        reg.release("a", &b);
        let released = at(&reg);
        assert_ne!(released, replaced, "a release");
        reg.free("a", &b);
        assert_ne!(at(&reg), released, "a free");
    }

    #[tokio::test]
    async fn held_names_count_until_their_hold_ends() {
        let reg = LocalRegistry::new(Duration::from_millis(50));
        let a = tunnel("a", [10, 0, 0, 1], None);
        reg.claim("a", &Proof::default(), a.clone(), &QUOTA).unwrap();
        reg.release("a", &a);
        assert_eq!(reg.counts(), Counts { live: 0, held: 1 });
        assert!(matches!(reg.lookup("a"), Lookup::Held { .. }));
        reg.claim("b", &Proof::default(), tunnel("b", [10, 0, 0, 1], None), &QUOTA).unwrap();
        let third = reg.claim("c", &Proof::default(), tunnel("c", [10, 0, 0, 1], None), &QUOTA);
        assert!(matches!(third, Err(ClaimError::Limit(_))), "the held name counts");
        // Another address is not affected.
        reg.claim("d", &Proof::default(), tunnel("d", [10, 0, 0, 2], None), &QUOTA).unwrap();
        // Once the hold ends, the next operation forgets it and its count.
        while matches!(reg.lookup("a"), Lookup::Held { .. }) {
            localtunnels_driver::timers::sleep(Duration::from_millis(10)).await;
        }
        reg.claim("c", &Proof::default(), tunnel("c", [10, 0, 0, 1], None), &QUOTA).unwrap();
        assert_eq!(reg.counts(), Counts { live: 3, held: 0 });
        assert!(matches!(reg.lookup("a"), Lookup::Unknown));
    }

    #[tokio::test]
    async fn a_live_name_needs_its_reconnect_token_and_a_held_one_the_auth_token() {
        let reg = LocalRegistry::new(Duration::from_secs(60));
        let owner = tunnel("n", [10, 0, 0, 1], Some(0));
        let claim = reg.claim("n", &proof("", "shared"), owner.clone(), &QUOTA).unwrap();
        let same_token = reg.claim("n", &proof("", "shared"), tunnel("n", [10, 0, 0, 2], Some(0)), &QUOTA);
        assert_eq!(same_token.unwrap_err(), ClaimError::Taken("n".into()));
        // The session's reconnect token takes over, and says whom it replaced.
        let again = tunnel("n", [10, 0, 0, 1], Some(0));
        let taken = reg.claim("n", &proof(&claim.reconnect_token, "shared"), again.clone(), &QUOTA).unwrap();
        assert!(taken.replaced.is_some_and(|t| Arc::ptr_eq(&t, &owner)));
        assert_eq!(reg.counts(), Counts { live: 1, held: 0 });
        // The old token no longer works; the replaced session's end does not release.
        reg.release("n", &owner);
        assert!(matches!(reg.lookup("n"), Lookup::Live(_)));
        let old = reg.claim("n", &proof(&claim.reconnect_token, "shared"), tunnel("n", [10, 0, 0, 1], Some(0)), &QUOTA);
        assert!(old.is_err());
        // Held: the auth token it was registered with takes it back.
        reg.release("n", &again);
        let heir = reg.claim("n", &proof("", "shared"), tunnel("n", [10, 0, 0, 3], Some(0)), &QUOTA).unwrap();
        assert!(heir.replaced.is_none());
        assert_eq!(reg.counts(), Counts { live: 1, held: 0 });
    }

    #[tokio::test]
    async fn names_are_held_and_expired_in_order_however_many() {
        let reg = LocalRegistry::new(Duration::ZERO);
        let many = Quota { per_ip: usize::MAX, per_token: usize::MAX, total: 20_000 };
        for i in 0..10_000u32 {
            let name = format!("n{i}");
            let t = tunnel(&name, [10, 0, 0, 1], None);
            reg.claim(&name, &Proof::default(), t.clone(), &many).unwrap();
            reg.release(&name, &t);
        }
        // Every hold ended at once (grace zero): the last release forgot all but itself.
        assert!(reg.counts().held <= 1, "{:?}", reg.counts());
        assert!(reg.read().holds.len() <= 1);
        assert!(reg.read().per_ip.values().all(|&n| n <= 1));
    }
}
