//! Per-visitor-address limits inside one tunnel: how many exchanges one address may
//! have in flight (`max_streams_per_visitor`) and how fast it may start them
//! (`visitor_rate_limit`), so that one address cannot take all of a tunnel's streams or
//! its whole rate while everyone else gets 503 or 429.
//!
//! Addresses are counted by [`crate::addr::key`] (IPv6 by its /64). Each tunnel keeps
//! one small map under one lock, taken once when an exchange starts and once when it
//! ends. An address with nothing in flight stays in the map until the map is full
//! ([`MAX_REMEMBERED`]): its next exchange then finds its entry instead of inserting it
//! again (without a rate, forgetting an address at the end of each exchange made every
//! request an insert and a removal, ~0.05k instructions; docs/BENCHMARKS.md, fifteenth
//! round). A full map forgets the quiet addresses first ([`Visitors::forget_quiet`]).
//!
//! The addresses come from peers, so the maps hash them with std's keyed SipHash
//! (`RandomState`: one random key for the process, unknown to peers). An address is
//! hashed once, into a [`VisitorKey`], which a connection keeps for its peer
//! ([`crate::state::Peer`]); the map is a `hashbrown::HashTable` whose entries keep
//! their hash, and [`Admitted`] carries the key to the end of the exchange, which finds
//! the entry again without hashing (hashing and probing twice per request was ~0.7k
//! instructions, docs/BENCHMARKS.md).

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::limits::{Bucket, RateLimit};

/// Most addresses whose rate state one tunnel remembers. Past it, addresses that are
/// quiet (nothing in flight, full bucket) are forgotten first, then any with nothing in
/// flight: a visitor behind many addresses can reset its own bucket that way, which
/// `docs/SECURITY.md` lists as a known limit.
const MAX_REMEMBERED: usize = 4096;

/// One tunnel's visitors.
#[derive(Debug)]
pub struct Visitors {
    max_streams: usize,
    rate: Option<RateLimit>,
    map: Mutex<HashTable<Visitor>>,
}

type HashTable<T> = hashbrown::HashTable<T>;

/// An address as the per-visitor limits count it ([`crate::addr::key`]), with its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisitorKey {
    key: IpAddr,
    hash: u64,
}

impl VisitorKey {
    /// The key `ip` is counted under, hashed.
    pub fn of(ip: IpAddr) -> Self {
        static HASHER: OnceLock<RandomState> = OnceLock::new();
        let key = crate::addr::key(ip);
        VisitorKey { key, hash: HASHER.get_or_init(RandomState::new).hash_one(key) }
    }
}

#[derive(Debug)]
struct Visitor {
    key: VisitorKey,
    streams: usize,
    bucket: Option<Bucket>,
}

/// Why a visitor's exchange may not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VisitorRefusal {
    /// The address already has this many exchanges in flight through the tunnel.
    #[error("{0} requests from your address are already in flight")]
    Busy(usize),
    /// Over the per-visitor rate; a token is available after this long.
    #[error("too many requests from your address")]
    RateLimited(Duration),
}

impl Visitors {
    /// Limits for one tunnel's visitors.
    pub fn new(max_streams: usize, rate: Option<RateLimit>) -> Arc<Visitors> {
        Arc::new(Visitors { max_streams, rate, map: Mutex::new(HashTable::new()) })
    }

    /// Starts one exchange from `ip`: charges its rate and counts it in flight until the
    /// returned [`Admitted`] is dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<Admitted, VisitorRefusal> {
        self.admit_key(VisitorKey::of(ip), || now)
    }

    /// [`Visitors::admit`] for an address already hashed, with the time read from `now`
    /// only when it is needed (a rate to charge, a full map to sweep).
    pub fn admit_key(
        self: &Arc<Self>,
        key: VisitorKey,
        mut now: impl FnMut() -> Instant,
    ) -> Result<Admitted, VisitorRefusal> {
        let hash = key.hash;
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_REMEMBERED && map.find(hash, |v| v.key == key).is_none() {
            self.forget_quiet(&mut map, now());
        }
        let rate = self.rate;
        let v = map
            .entry(hash, |v| v.key == key, |v| v.key.hash)
            .or_insert_with(|| Visitor { key, streams: 0, bucket: rate.map(|r| Bucket::full(r, now())) })
            .into_mut();
        if v.streams >= self.max_streams {
            return Err(VisitorRefusal::Busy(v.streams));
        }
        if let (Some(bucket), Some(limit)) = (&mut v.bucket, rate) {
            bucket.try_take(limit, now()).map_err(VisitorRefusal::RateLimited)?;
        }
        v.streams += 1;
        Ok(Admitted { visitors: self.clone(), key })
    }

    /// Exchanges in flight from `ip` (for tests and status).
    pub fn in_flight(&self, ip: IpAddr) -> usize {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let key = VisitorKey::of(ip);
        map.find(key.hash, |v| v.key == key).map_or(0, |v| v.streams)
    }

    /// Ends one exchange of the address `key` (its entry stays, for its next one).
    fn leave(&self, key: VisitorKey) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = map.find_mut(key.hash, |v| v.key == key) {
            v.streams = v.streams.saturating_sub(1);
        }
    }

    /// Makes room: forgets addresses with nothing in flight whose bucket is full, and
    /// if that frees less than a quarter of the map, every address with nothing in
    /// flight. Each sweep frees room for many inserts, so the cost is O(1) amortised.
    fn forget_quiet(&self, map: &mut HashTable<Visitor>, now: Instant) {
        let rate = self.rate;
        map.retain(|v| v.streams > 0 || matches!((&v.bucket, rate), (Some(b), Some(r)) if !b.is_full(r, now)));
        if map.len() > MAX_REMEMBERED / 4 * 3 {
            map.retain(|v| v.streams > 0);
        }
    }
}

/// One exchange in flight from one visitor address; dropping it ends the count.
#[derive(Debug)]
pub struct Admitted {
    visitors: Arc<Visitors>,
    key: VisitorKey,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.visitors.leave(self.key);
    }
}

/// A response body that keeps its exchange counted against the visitor's address
/// until the body is done or dropped.
#[derive(Debug)]
pub struct CountedBody<B> {
    inner: B,
    admitted: Option<Admitted>,
}

impl<B> CountedBody<B> {
    /// `inner`, counted by `admitted`.
    pub fn new(inner: B, admitted: Admitted) -> Self {
        CountedBody { inner, admitted: Some(admitted) }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, std::task::Poll::Ready(None | Some(Err(_)))) {
            // Done: the address may start another exchange before hyper drops the body.
            self.admitted = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_streams_and_rate() {
        let now = Instant::now();
        let v = Visitors::new(2, Some(RateLimit { per_second: 0, burst: 3 }));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = v.admit(a, now).unwrap();
        let second = v.admit(a, now).unwrap();
        assert_eq!(v.admit(a, now).unwrap_err(), VisitorRefusal::Busy(2));
        assert!(v.admit(b, now).is_ok(), "another address is not affected");
        drop(first);
        assert_eq!(v.in_flight(a), 1);
        let third = v.admit(a, now).unwrap();
        drop((second, third));
        assert!(matches!(v.admit(a, now), Err(VisitorRefusal::RateLimited(_))), "a burst of 3, no refill");
        assert_eq!(v.in_flight(a), 0);
    }

    #[test]
    fn the_map_stays_bounded_under_many_addresses() {
        let now = Instant::now();
        let v = Visitors::new(8, Some(RateLimit { per_second: 1, burst: 1 }));
        for i in 0..20_000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            drop(v.admit(ip, now));
        }
        assert!(v.map.lock().unwrap().len() <= MAX_REMEMBERED);
        // Without a rate, idle addresses are forgotten as soon as the map is full, and
        // one in flight is kept (and counted) through the sweeps.
        let plain = Visitors::new(8, None);
        let busy: IpAddr = "192.168.0.1".parse().unwrap();
        let kept = plain.admit(busy, now).unwrap();
        for i in 0..20_000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            drop(plain.admit(ip, now).unwrap());
        }
        assert!(plain.map.lock().unwrap().len() <= MAX_REMEMBERED);
        assert_eq!(plain.in_flight(busy), 1);
        drop(kept);
        assert_eq!(plain.in_flight(busy), 0);
    }
}
