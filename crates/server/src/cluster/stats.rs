//! What a cluster node counts, for `/metrics` and `/api/status`.
//!
//! | metric | type | what |
//! |---|---|---|
//! | `localtunnels_cluster_forwarded_out_total` | counter | visitor requests and WebSockets this node forwarded to the owner |
//! | `localtunnels_cluster_forwarded_in_total` | counter | requests other nodes forwarded here |
//! | `localtunnels_cluster_node_connections_total` | counter | HTTP/2 connections this node opened to other nodes (one per peer, reopened only after it closed) |
//! | `localtunnels_cluster_lease_renewals_total`, `..._lease_renewal_failures_total` | counter | renewals that succeeded, failed (Redis unreachable) |
//! | `localtunnels_cluster_fenced_total` | counter | names this node stopped serving (lease lost, stale or taken over) |
//! | `localtunnels_cluster_leases` | gauge | names this node holds a lease on |
//! | `localtunnels_cluster_lookup_seconds` | histogram | directory lookups of a name's owner (cache misses) |

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A cluster node's counters.
#[derive(Debug)]
pub struct Stats {
    pub(crate) forwarded_out: AtomicU64,
    pub(crate) forwarded_in: AtomicU64,
    pub(crate) node_connections: AtomicU64,
    pub(crate) renewals: AtomicU64,
    pub(crate) renewal_failures: AtomicU64,
    pub(crate) fenced: AtomicU64,
    pub(crate) lookup: Histogram,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            forwarded_out: AtomicU64::new(0),
            forwarded_in: AtomicU64::new(0),
            node_connections: AtomicU64::new(0),
            renewals: AtomicU64::new(0),
            renewal_failures: AtomicU64::new(0),
            fenced: AtomicU64::new(0),
            // 100 µs to about 3 s, doubling.
            lookup: Histogram::new(exponential_buckets(0.0001, 2.0, 15)),
        }
    }
}

impl Stats {
    /// Adds one to `c`.
    pub(crate) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Registers the node's metrics, with `leases` held now.
    pub(crate) fn register(&self, reg: &mut Registry, leases: usize) {
        let load = |a: &AtomicU64| ConstCounter::new(a.load(Ordering::Relaxed));
        reg.register(
            "localtunnels_cluster_forwarded_out",
            "Visitor requests forwarded to the owning node",
            load(&self.forwarded_out),
        );
        reg.register(
            "localtunnels_cluster_forwarded_in",
            "Requests other nodes forwarded here",
            load(&self.forwarded_in),
        );
        reg.register(
            "localtunnels_cluster_node_connections",
            "HTTP/2 connections opened to other nodes",
            load(&self.node_connections),
        );
        reg.register("localtunnels_cluster_lease_renewals", "Lease renewals that succeeded", load(&self.renewals));
        reg.register(
            "localtunnels_cluster_lease_renewal_failures",
            "Lease renewals that failed",
            load(&self.renewal_failures),
        );
        reg.register("localtunnels_cluster_fenced", "Names this node stopped serving", load(&self.fenced));
        reg.register(
            "localtunnels_cluster_leases",
            "Names this node holds a lease on",
            ConstGauge::new(i64::try_from(leases).unwrap_or(i64::MAX)),
        );
        reg.register(
            "localtunnels_cluster_lookup_seconds",
            "Seconds to look a name's owner up in Redis",
            self.lookup.clone(),
        );
    }
}
