//! One connected client's tunnel, as the server sees it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use localtunnels_core::{CloseCode, OpenError, RequestHead};
use localtunnels_driver::{Connection, StreamHandle};

use crate::access::Access;
use crate::limits::TokenBucket;
use crate::visitors::Visitors;

/// A live tunnel: its name, its sessions and what it asked of visitors.
#[derive(Debug)]
pub struct Tunnel {
    /// The name (subdomain).
    pub name: String,
    /// The control session that claimed the name: the tunnel lives as long as it does.
    pub conn: Connection,
    /// Further control connections of the same client that joined the tunnel
    /// (`Hello::join`): they carry its streams too.
    pub(crate) joined: Joined,
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

/// The joined connections, each under the id [`Tunnel::join`] gave it. `len` mirrors
/// the list's length so that a tunnel with none (the usual case) takes no lock per
/// request.
#[derive(Debug, Default)]
pub(crate) struct Joined {
    conns: RwLock<Vec<(u64, Connection)>>,
    len: AtomicUsize,
    next_id: AtomicU64,
}

/// Why a connection could not join a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinFull {
    /// The most connections a tunnel may have, its first one included.
    pub max: usize,
}

impl Tunnel {
    /// Counts one visitor request.
    pub fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Opens a stream for a visitor on the connection with the fewest streams in
    /// flight, the first one on a tie, so that a lone visitor always meets the same
    /// connection (its caches warm) and a busy tunnel spreads over all of them. A
    /// joined connection that takes no new streams (going away, closed) is passed over.
    pub fn open(&self, head: RequestHead, end: bool) -> Result<StreamHandle, OpenError> {
        if self.joined.len.load(Ordering::Acquire) == 0 {
            return self.conn.open(head, end);
        }
        let joined = self.joined.conns.read().unwrap_or_else(|e| e.into_inner());
        let mut best = &self.conn;
        let mut fewest = self.conn.stream_count();
        for (_, c) in joined.iter() {
            if let Some(n) = c.open_load().filter(|n| *n < fewest) {
                (best, fewest) = (c, n);
            }
        }
        best.open(head, end)
    }

    /// Streams in flight over all the tunnel's connections.
    pub fn stream_count(&self) -> usize {
        let first = self.conn.stream_count();
        if self.joined.len.load(Ordering::Acquire) == 0 {
            return first;
        }
        let joined = self.joined.conns.read().unwrap_or_else(|e| e.into_inner());
        first + joined.iter().map(|(_, c)| c.stream_count()).sum::<usize>()
    }

    /// The tunnel's control connections, its first one included.
    pub fn connections(&self) -> usize {
        1 + self.joined.len.load(Ordering::Acquire)
    }

    /// The streams in flight on each connection, the first one's first (how a busy
    /// tunnel's requests spread, for the admin status).
    pub fn streams_by_connection(&self) -> Vec<usize> {
        let mut counts = vec![self.conn.stream_count()];
        let joined = self.joined.conns.read().unwrap_or_else(|e| e.into_inner());
        counts.extend(joined.iter().map(|(_, c)| c.stream_count()));
        counts
    }

    /// Adds `conn` to the tunnel's connections, unless it already has `max` (its first
    /// one included). Returns the id to [`Tunnel::leave`] with.
    pub fn join(&self, conn: Connection, max: usize) -> Result<u64, JoinFull> {
        let mut joined = self.joined.conns.write().unwrap_or_else(|e| e.into_inner());
        if joined.len() + 1 >= max {
            return Err(JoinFull { max });
        }
        let id = self.joined.next_id.fetch_add(1, Ordering::Relaxed);
        joined.push((id, conn));
        self.joined.len.store(joined.len(), Ordering::Release);
        Ok(id)
    }

    /// Removes the joined connection `id` (its session ended).
    pub fn leave(&self, id: u64) {
        let mut joined = self.joined.conns.write().unwrap_or_else(|e| e.into_inner());
        joined.retain(|(i, _)| *i != id);
        self.joined.len.store(joined.len(), Ordering::Release);
    }

    /// Announces go-away on every connection: no new streams; in-flight ones finish.
    pub fn go_away(&self, message: &str) {
        self.conn.go_away(message);
        self.each_joined(|c| c.go_away(message));
    }

    /// Closes every connection of the tunnel.
    pub fn close(&self, code: CloseCode, message: &str) {
        self.conn.close(code, message);
        self.each_joined(|c| c.close(code, message));
    }

    fn each_joined(&self, f: impl Fn(&Connection)) {
        let joined = self.joined.conns.read().unwrap_or_else(|e| e.into_inner());
        joined.iter().for_each(|(_, c)| f(c));
    }
}
