//! A cluster node's leases and the rules that decide when it serves a name, without
//! I/O: no Redis, no clock (every call is given `now` or the time a request was sent),
//! so the rules are tested deterministically over a virtual clock.
//!
//! - A lease is valid until the moment the request that granted or last renewed it was
//!   *sent*, plus the TTL, by this node's own monotonic clock. Redis starts the TTL
//!   later (when it runs the script), so the node always stops first.
//! - A renewal counts only for the epoch it renewed: a renewal answer that arrives
//!   after the name changed hands (a takeover, a fresh claim) changes nothing.
//! - A name is fenced (forgotten here; its session closed) when Redis says the lease
//!   moved, when another node announces a takeover of it at this epoch or later, and
//!   when a renewal round ends with its lease no longer valid. A fence for an older
//!   epoch than the one held now is stale and ignored.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// This node's claim on a live name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lease {
    /// The fencing epoch Redis granted.
    pub epoch: u64,
    /// Serve until then (see the module docs).
    pub valid_until: Instant,
    /// Hex digests of the session's reconnect and auth tokens, written with every renewal.
    pub rt: String,
    pub at: String,
}

/// Every lease this node holds.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    held: HashMap<Arc<str>, Lease>,
}

impl Leases {
    /// A claim sent at `sent` was granted at `epoch` for `ttl`.
    pub fn granted(&mut self, name: &str, epoch: u64, sent: Instant, ttl: Duration, rt: String, at: String) {
        self.held.insert(Arc::from(name), Lease { epoch, valid_until: sent + ttl, rt, at });
    }

    /// Whether `name` may be served at `now`.
    pub fn is_valid(&self, name: &str, now: Instant) -> bool {
        self.held.get(name).is_some_and(|l| l.valid_until > now)
    }

    /// Every lease, for a renewal round.
    pub fn snapshot(&self) -> Vec<(Arc<str>, Lease)> {
        self.held.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// How many names this node holds.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// A renewal of `name` at `epoch`, sent at `sent`, succeeded: valid until `sent + ttl`
    /// (never earlier than it already was), if the lease is still that epoch's.
    pub fn renewed(&mut self, name: &str, epoch: u64, sent: Instant, ttl: Duration) {
        if let Some(l) = self.held.get_mut(name).filter(|l| l.epoch == epoch) {
            l.valid_until = l.valid_until.max(sent + ttl);
        }
    }

    /// Stops holding `name` because its lease at `epoch` (or any, for `None`) is lost.
    /// `false` when the fence is stale: the lease held now is of a newer epoch.
    pub fn fence(&mut self, name: &str, epoch: Option<u64>) -> bool {
        match (self.held.get(name), epoch) {
            (Some(l), Some(e)) if l.epoch > e => false,
            _ => {
                self.held.remove(name);
                true
            }
        }
    }

    /// Ends the lease on `name` (its session ended here), returning it.
    pub fn end(&mut self, name: &str) -> Option<Lease> {
        self.held.remove(name)
    }

    /// The names whose leases are no longer valid at `now` (with their epochs), to be
    /// fenced at the end of a renewal round.
    pub fn expired(&self, now: Instant) -> Vec<(Arc<str>, u64)> {
        self.held.iter().filter(|(_, l)| l.valid_until <= now).map(|(k, l)| (k.clone(), l.epoch)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(15);

    /// A virtual clock: `at(s)` is `s` seconds after a fixed start.
    fn clock() -> impl Fn(f64) -> Instant {
        let start = Instant::now();
        move |s| start + Duration::from_secs_f64(s)
    }

    fn leases_with(name: &str, epoch: u64, sent: Instant) -> Leases {
        let mut l = Leases::default();
        l.granted(name, epoch, sent, TTL, "rt".into(), "at".into());
        l
    }

    #[test]
    fn a_lease_is_valid_for_the_ttl_from_when_its_claim_was_sent() {
        let at = clock();
        let l = leases_with("a", 1, at(0.0));
        assert!(l.is_valid("a", at(14.999)));
        assert!(!l.is_valid("a", at(15.0)));
        assert!(!l.is_valid("b", at(0.0)));
        assert_eq!(l.expired(at(14.9)), vec![]);
        assert_eq!(l.expired(at(15.0)), vec![(Arc::from("a"), 1)]);
    }

    #[test]
    fn renewals_every_third_of_the_ttl_keep_a_lease_and_a_pause_loses_it() {
        let at = clock();
        let mut l = leases_with("a", 1, at(0.0));
        for round in 1..=30 {
            let sent = at(f64::from(round) * 5.0);
            assert!(l.is_valid("a", sent), "round {round}");
            l.renewed("a", 1, sent, TTL);
        }
        // Last renewal sent at 150 s: a node paused from then on stops at 165 s, even
        // if the answer to a request it sent before the pause arrives after it.
        assert!(l.is_valid("a", at(164.9)));
        assert!(!l.is_valid("a", at(165.0)));
        l.renewed("a", 1, at(140.0), TTL);
        assert!(!l.is_valid("a", at(165.0)), "an older renewal never extends a lease");
    }

    #[test]
    fn a_renewal_for_another_epoch_changes_nothing() {
        let at = clock();
        let mut l = leases_with("a", 2, at(0.0));
        l.renewed("a", 1, at(10.0), TTL);
        assert!(!l.is_valid("a", at(15.0)));
        l.renewed("gone", 1, at(10.0), TTL);
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn a_takeover_fences_its_epoch_and_older_but_not_a_newer_lease() {
        let at = clock();
        let mut l = leases_with("a", 5, at(0.0));
        // A takeover of epoch 4 arriving after this node took the name back at 5: stale.
        assert!(!l.fence("a", Some(4)));
        assert!(l.is_valid("a", at(1.0)));
        // At its own epoch: forgotten at once, whatever the clock says.
        assert!(l.fence("a", Some(5)));
        assert!(!l.is_valid("a", at(1.0)));
        // Fencing an unknown name is harmless; `None` fences whatever is held.
        assert!(l.fence("a", Some(5)));
        let mut l = leases_with("b", 9, at(0.0));
        assert!(l.fence("b", None));
        assert_eq!(l.len(), 0);
    }

    #[test]
    fn a_round_that_fails_fences_only_what_expired() {
        let at = clock();
        let mut l = leases_with("old", 1, at(0.0));
        l.granted("new", 2, at(10.0), TTL, String::new(), String::new());
        // Redis unreachable from 0 s: no renewal succeeds.
        assert_eq!(l.expired(at(20.0)), vec![(Arc::from("old"), 1)]);
        for (name, epoch) in l.expired(at(20.0)) {
            assert!(l.fence(&name, Some(epoch)));
        }
        assert!(l.is_valid("new", at(20.0)));
        assert!(!l.is_valid("new", at(25.0)));
        assert_eq!(l.end("new").map(|l| l.epoch), Some(2));
        assert_eq!(l.end("new"), None);
    }
}
