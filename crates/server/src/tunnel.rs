//! One connected client's tunnel, as the server sees it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use localtunnels_core::{CloseCode, OpenError, RequestHead, StreamKind};
use localtunnels_driver::{Connection, OpenWithinError, StreamHandle};

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

/// The joined connections, each under the id [`Tunnel::join`] gave it and with the
/// shard it runs on ([`crate::shards`]). `len` mirrors the list's length so that a
/// tunnel with none (the usual case) takes no lock per request.
#[derive(Debug)]
pub(crate) struct Joined {
    conns: RwLock<Vec<(u64, Option<u16>, Connection)>>,
    len: AtomicUsize,
    next_id: AtomicU64,
    /// The shard of the first connection: the tunnel is made by its session's task.
    first_shard: Option<u16>,
    /// Streams opened on a connection of another shard than the visitor's.
    cross_shard: AtomicU64,
}

impl Default for Joined {
    /// Made where the first connection's session runs: its shard is the caller's.
    fn default() -> Self {
        Joined {
            conns: RwLock::default(),
            len: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            first_shard: crate::shards::current(),
            cross_shard: AtomicU64::new(0),
        }
    }
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

    /// Opens a stream for a visitor on a connection of the caller's shard
    /// ([`crate::shards`]) when one takes new streams, else on any: among those, the one
    /// with the fewest streams in flight, the first one on a tie, so that a lone visitor
    /// always meets the same connection (its caches warm) and a busy tunnel spreads over
    /// all of them. A joined connection that takes no new streams (going away, closed)
    /// is passed over. Without shards every connection is the caller's.
    pub fn open(&self, head: RequestHead, end: bool) -> Result<StreamHandle, OpenError> {
        self.on_chosen(|c| c.open(head, end))
    }

    /// [`Tunnel::open`] of a request whose header fields `fields` writes straight into
    /// the OPEN ([`Connection::open_fields`]), in the chosen connection's field coding.
    pub fn open_fields(
        &self,
        kind: StreamKind,
        method: &str,
        target: &[u8],
        end: bool,
        fields: impl FnOnce(&mut localtunnels_core::OpenFields<'_>),
    ) -> Result<StreamHandle, OpenError> {
        self.on_chosen(|c| c.open_fields(kind, method, target, end, fields))
    }

    /// [`Tunnel::open_fields`] unless the tunnel has `max_streams` streams in flight or
    /// more over all its connections ([`OpenWithinError::Busy`] with their count, as
    /// [`Tunnel::stream_count`] counts them). A tunnel of one connection counts them
    /// under the lock its open takes ([`Connection::open_fields_within`]); one with joined
    /// connections counts them first, as a separate check did.
    pub fn open_fields_within(
        &self,
        max_streams: usize,
        kind: StreamKind,
        method: &str,
        target: &[u8],
        end: bool,
        fields: impl FnOnce(&mut localtunnels_core::OpenFields<'_>),
    ) -> Result<StreamHandle, OpenWithinError> {
        if self.joined.len.load(Ordering::Acquire) == 0 {
            let opened = self.conn.open_fields_within(max_streams, kind, method, target, end, fields);
            // Counted as `on_chosen` counts an open tried, after the OPEN's send here:
            // the thread's shard does not change meanwhile.
            if !matches!(opened, Err(OpenWithinError::Busy(_))) {
                self.count_shard(crate::shards::current(), self.joined.first_shard);
            }
            return opened;
        }
        let in_flight = self.stream_count();
        if in_flight >= max_streams {
            return Err(OpenWithinError::Busy(in_flight));
        }
        Ok(self.on_chosen(|c| c.open_fields(kind, method, target, end, fields))?)
    }

    /// `open` on the connection a new stream goes to (see [`Tunnel::open`]).
    #[inline]
    fn on_chosen<R>(&self, open: impl FnOnce(&Connection) -> R) -> R {
        let here = crate::shards::current();
        if self.joined.len.load(Ordering::Acquire) == 0 {
            self.count_shard(here, self.joined.first_shard);
            return open(&self.conn);
        }
        let joined = self.joined.conns.read().unwrap_or_else(|e| e.into_inner());
        // Connections of other shards are looked at (their locks taken) only when the
        // caller's shard has none.
        let best = match self.least_loaded(&joined, Some(here)) {
            Some((local, _)) => local,
            None => {
                let (any, shard) = self.least_loaded(&joined, None).unwrap_or((&self.conn, self.joined.first_shard));
                self.count_shard(here, shard);
                any
            }
        };
        open(best)
    }

    /// The connection with the fewest streams in flight (the first one on a tie) among
    /// those on shard `on` (all with `None`), and its shard. The first connection is
    /// always a candidate; a joined one only while it takes new streams.
    fn least_loaded<'a>(
        &'a self,
        joined: &'a [(u64, Option<u16>, Connection)],
        on: Option<Option<u16>>,
    ) -> Option<(&'a Connection, Option<u16>)> {
        let wanted = |shard: Option<u16>| on.is_none_or(|on| on == shard);
        let mut best =
            wanted(self.joined.first_shard).then(|| (&self.conn, self.joined.first_shard, self.conn.stream_count()));
        for (_, shard, c) in joined.iter().filter(|(_, shard, _)| wanted(*shard)) {
            if let Some(n) = c.open_load().filter(|n| best.is_none_or(|(_, _, fewest)| *n < fewest)) {
                best = Some((c, *shard, n));
            }
        }
        best.map(|(c, shard, _)| (c, shard))
    }

    /// Counts a stream opened from shard `here` on a connection of shard `there`.
    fn count_shard(&self, here: Option<u16>, there: Option<u16>) {
        if here != there {
            self.joined.cross_shard.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Streams opened on a connection of another shard than the visitor's (a tunnel
    /// with no connection on the visitor's shard); always 0 without shards.
    pub fn cross_shard_opens(&self) -> u64 {
        self.joined.cross_shard.load(Ordering::Relaxed)
    }

    /// Streams in flight over all the tunnel's connections.
    pub fn stream_count(&self) -> usize {
        let first = self.conn.stream_count();
        if self.joined.len.load(Ordering::Acquire) == 0 {
            return first;
        }
        let joined = self.joined.conns.read().unwrap_or_else(|e| e.into_inner());
        first + joined.iter().map(|(_, _, c)| c.stream_count()).sum::<usize>()
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
        counts.extend(joined.iter().map(|(_, _, c)| c.stream_count()));
        counts
    }

    /// The shard each connection runs on, the first one's first (all `None` without
    /// shards), for the admin status.
    pub fn shard_by_connection(&self) -> Vec<Option<u16>> {
        let joined = self.joined.conns.read().unwrap_or_else(|e| e.into_inner());
        std::iter::once(self.joined.first_shard).chain(joined.iter().map(|(_, shard, _)| *shard)).collect()
    }

    /// Adds `conn`, whose session runs on the caller's shard, to the tunnel's
    /// connections, unless it already has `max` (its first one included). Returns the
    /// id to [`Tunnel::leave`] with.
    pub fn join(&self, conn: Connection, max: usize) -> Result<u64, JoinFull> {
        let mut joined = self.joined.conns.write().unwrap_or_else(|e| e.into_inner());
        if joined.len() + 1 >= max {
            return Err(JoinFull { max });
        }
        let id = self.joined.next_id.fetch_add(1, Ordering::Relaxed);
        joined.push((id, crate::shards::current(), conn));
        self.joined.len.store(joined.len(), Ordering::Release);
        Ok(id)
    }

    /// Removes the joined connection `id` (its session ended).
    pub fn leave(&self, id: u64) {
        let mut joined = self.joined.conns.write().unwrap_or_else(|e| e.into_inner());
        joined.retain(|(i, _, _)| *i != id);
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
        joined.iter().for_each(|(_, _, c)| f(c));
    }
}
