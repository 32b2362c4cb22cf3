//! The name-to-session registry, behind one small interface.
//!
//! Today names live in this process ([`LocalRegistry`]). The [`Registry`] trait is the
//! seam for a shared directory (e.g. leases in Redis) when several server nodes share
//! tunnels: claim a name with proof, look a name up, release it into a grace hold.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::auth::digest;
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
    /// The client's address or token already holds as many tunnels as allowed.
    #[error("{0}")]
    Limit(String),
}

/// A successful claim.
#[derive(Debug)]
pub struct Claim {
    /// The secret this client can later present as [`Proof::reconnect_token`].
    pub reconnect_token: String,
    /// A live session this claim replaced (same client reconnecting): close it.
    pub replaced: Option<Arc<Tunnel>>,
}

/// How many live tunnels one client may hold, checked atomically with the claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Per client IP address ([`Tunnel::peer`]).
    pub per_ip: usize,
    /// Per auth token ([`Tunnel::token`]).
    pub per_token: usize,
}

impl Quota {
    /// No limits.
    pub const UNLIMITED: Quota = Quota { per_ip: usize::MAX, per_token: usize::MAX };
}

/// The name directory.
pub trait Registry: Send + Sync + std::fmt::Debug {
    /// Takes `name` for `tunnel` if it is free, or held/live for the same client, and
    /// the client stays within `quota` (not counting a session the claim replaces).
    fn claim(&self, name: &str, proof: &Proof, tunnel: Arc<Tunnel>, quota: &Quota) -> Result<Claim, ClaimError>;
    /// Finds the tunnel for `name`.
    fn lookup(&self, name: &str) -> Lookup;
    /// The session `tunnel` ended: hold its name for the grace period.
    fn release(&self, name: &str, tunnel: &Arc<Tunnel>);
    /// Every live tunnel.
    fn live(&self) -> Vec<Arc<Tunnel>>;
    /// The session `tunnel` ended because its client left on purpose: free its name
    /// at once (no grace hold).
    fn free(&self, name: &str, tunnel: &Arc<Tunnel>);
}

/// A name's owner. Secrets are kept as SHA-256 digests only.
#[derive(Debug)]
struct Entry {
    reconnect_token: [u8; 32],
    auth_token: Option<[u8; 32]>,
    slot: Slot,
}

#[derive(Debug)]
enum Slot {
    Live(Arc<Tunnel>),
    Held { until: Instant },
}

/// The in-process registry.
#[derive(Debug)]
pub struct LocalRegistry {
    grace: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl LocalRegistry {
    /// A registry holding dropped names for `grace`.
    pub fn new(grace: Duration) -> Self {
        LocalRegistry { grace, entries: Mutex::new(HashMap::new()) }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Compares secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Entry {
    fn proven_by(&self, proof: &Proof) -> bool {
        let by_reconnect = !proof.reconnect_token.is_empty()
            && constant_time_eq(&digest(&proof.reconnect_token), &self.reconnect_token);
        let by_auth = !proof.auth_token.is_empty()
            && self.auth_token.is_some_and(|t| constant_time_eq(&digest(&proof.auth_token), &t));
        by_reconnect || by_auth
    }
}

impl LocalRegistry {
    /// Checks `quota` for `tunnel`, counting live tunnels other than `name`'s.
    fn check_quota(
        entries: &HashMap<String, Entry>,
        name: &str,
        tunnel: &Tunnel,
        quota: &Quota,
    ) -> Result<(), ClaimError> {
        let (mut by_ip, mut by_token) = (0usize, 0usize);
        for (n, e) in entries {
            let Slot::Live(t) = &e.slot else { continue };
            if n == name {
                continue;
            }
            if t.peer.ip() == tunnel.peer.ip() {
                by_ip += 1;
            }
            if tunnel.token.is_some() && t.token == tunnel.token {
                by_token += 1;
            }
        }
        if by_ip >= quota.per_ip {
            return Err(ClaimError::Limit(format!(
                "your address already has {by_ip} tunnels open (limit {}); close one first",
                quota.per_ip
            )));
        }
        if by_token >= quota.per_token {
            return Err(ClaimError::Limit(format!(
                "your token already has {by_token} tunnels open (limit {}); close one first",
                quota.per_token
            )));
        }
        Ok(())
    }
}

impl Registry for LocalRegistry {
    fn claim(&self, name: &str, proof: &Proof, tunnel: Arc<Tunnel>, quota: &Quota) -> Result<Claim, ClaimError> {
        let mut entries = self.entries();
        let now = Instant::now();
        let mut replaced = None;
        if let Some(e) = entries.get(name) {
            let expired = matches!(e.slot, Slot::Held { until } if until <= now);
            if !expired && !e.proven_by(proof) {
                return Err(ClaimError::Taken(name.to_string()));
            }
            if let Slot::Live(old) = &e.slot {
                replaced = Some(old.clone());
            }
        }
        Self::check_quota(&entries, name, &tunnel, quota)?;
        let reconnect_token = crate::names::random_secret();
        entries.insert(
            name.to_string(),
            Entry {
                reconnect_token: digest(&reconnect_token),
                auth_token: (!proof.auth_token.is_empty()).then(|| digest(&proof.auth_token)),
                slot: Slot::Live(tunnel),
            },
        );
        Ok(Claim { reconnect_token, replaced })
    }

    fn lookup(&self, name: &str) -> Lookup {
        let mut entries = self.entries();
        let now = Instant::now();
        match entries.get(name).map(|e| &e.slot) {
            Some(Slot::Live(t)) => Lookup::Live(t.clone()),
            Some(Slot::Held { until }) if *until > now => Lookup::Held { remaining: *until - now },
            Some(Slot::Held { .. }) => {
                entries.remove(name);
                Lookup::Unknown
            }
            None => Lookup::Unknown,
        }
    }

    fn release(&self, name: &str, tunnel: &Arc<Tunnel>) {
        let mut entries = self.entries();
        if let Some(e) = entries.get_mut(name) {
            // Only the session that holds the name releases it: a replaced session
            // ending later must not evict its successor.
            if matches!(&e.slot, Slot::Live(t) if Arc::ptr_eq(t, tunnel)) {
                e.slot = Slot::Held { until: Instant::now() + self.grace };
            }
        }
        // Drop expired holds so the map does not grow without bound.
        let now = Instant::now();
        entries.retain(|_, e| !matches!(e.slot, Slot::Held { until } if until <= now));
    }

    fn live(&self) -> Vec<Arc<Tunnel>> {
        self.entries()
            .values()
            .filter_map(|e| match &e.slot {
                Slot::Live(t) => Some(t.clone()),
                Slot::Held { .. } => None,
            })
            .collect()
    }

    fn free(&self, name: &str, tunnel: &Arc<Tunnel>) {
        let mut entries = self.entries();
        // As in `release`: only the session that holds the name gives it up.
        if entries.get(name).is_some_and(|e| matches!(&e.slot, Slot::Live(t) if Arc::ptr_eq(t, tunnel))) {
            entries.remove(name);
        }
    }
}
