//! One connected client's tunnel, as the server sees it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use localtunnels_driver::Connection;

use crate::access::Access;
use crate::limits::TokenBucket;
use crate::visitors::Visitors;

/// A live tunnel: its name, its session and what it asked of visitors.
#[derive(Debug)]
pub struct Tunnel {
    /// The name (subdomain).
    pub name: String,
    /// The control session.
    pub conn: Connection,
    /// The client's address.
    pub peer: SocketAddr,
    /// `native`, `wasm`, ...
    pub client_kind: String,
    /// When it connected.
    pub connected_at: Instant,
    /// Visitor requests served.
    pub requests: AtomicU64,
    /// The visitor rules the client asked for (basic auth, IP allow list).
    pub access: Access,
    /// The visitor rate limit, when the server has one.
    pub rate: Option<TokenBucket>,
    /// Per-visitor-address streams and rate.
    pub visitors: Arc<Visitors>,
    /// Which configured auth token the client presented (index), if auth is on.
    pub token: Option<usize>,
}

impl Tunnel {
    /// Counts one visitor request.
    pub fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }
}
