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
//! their hash (hashing and probing twice per request was ~0.7k instructions,
//! docs/BENCHMARKS.md).
//!
//! An entry's count of exchanges in flight is an atomic shared with whoever counts on
//! it: each [`Admitted`] (its drop takes one off, without the map's lock), and, for a
//! tunnel without a per-visitor rate, the visitor's connection ([`VisitorSlot`]), whose
//! next exchange adds one to the same count without the lock or a probe (the lock and
//! probe at both ends were ~0.17k instructions per request; docs/BENCHMARKS.md,
//! twentieth round). The count stays exact because an address has one count at a time:
//! the map forgets an entry only by turning its count from 0 to [`FORGOTTEN`] under its
//! lock, which no exchange can then be added to, so a connection holding a forgotten
//! count goes through the map again and finds or makes the address's one entry.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// Exchanges in flight ([`Count`]).
    streams: Arc<Count>,
    bucket: Option<Bucket>,
}

/// An address's exchanges in flight through one tunnel, or [`FORGOTTEN`] once the map
/// has forgotten the address (nothing is added to it then).
#[derive(Debug, Default)]
struct Count(AtomicUsize);

/// The count of an entry the map forgot.
const FORGOTTEN: usize = usize::MAX;

impl Count {
    /// Adds one exchange unless `max` are in flight or the count is forgotten; `Err`
    /// holds the count then.
    fn try_add(&self, max: usize) -> Result<(), usize> {
        self.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then(|| n + 1)).map(drop)
    }

    fn get(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    /// Forgets the count if nothing is in flight (under the map's lock, the entry
    /// removed with it): true when it did.
    fn forget_if_idle(&self) -> bool {
        self.0.compare_exchange(0, FORGOTTEN, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }
}

/// A visitor connection's hold on its address's count in the last tunnel it sent an
/// exchange to, for the next exchange to be counted without the map's lock
/// ([`Visitors::admit_held`]). Empty at first; kept by the connection.
#[derive(Debug, Default)]
pub struct VisitorSlot(Option<Held>);

#[derive(Debug)]
struct Held {
    /// Whose count this is: the tunnel's visitors, and the address.
    visitors: Arc<Visitors>,
    key: VisitorKey,
    streams: Arc<Count>,
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
            .or_insert_with(|| Visitor { key, streams: Arc::default(), bucket: rate.map(|r| Bucket::full(r, now())) })
            .into_mut();
        // An entry in the map is never forgotten (its count is turned as it is
        // removed), so a refused add is `max_streams` in flight.
        if let Some(limit) = rate {
            // With a rate every add is made here, under the lock: the count read is
            // the one added to after the bucket's charge.
            let n = v.streams.get();
            if n >= self.max_streams {
                return Err(VisitorRefusal::Busy(n));
            }
            if let Some(bucket) = &mut v.bucket {
                bucket.try_take(limit, now()).map_err(VisitorRefusal::RateLimited)?;
            }
        }
        v.streams.try_add(self.max_streams).map_err(VisitorRefusal::Busy)?;
        Ok(Admitted { streams: v.streams.clone() })
    }

    /// [`Visitors::admit_key`] for a connection that keeps `slot`: when it holds the
    /// count of `key` here (the connection's last exchange came from the same address
    /// to this tunnel) and the tunnel has no per-visitor rate, the exchange is added to
    /// it without the map's lock; otherwise through the map, the slot then holding the
    /// address's count for the next exchange (without a rate).
    pub fn admit_held(
        self: &Arc<Self>,
        key: VisitorKey,
        slot: &mut VisitorSlot,
        now: impl FnMut() -> Instant,
    ) -> Result<Admitted, VisitorRefusal> {
        if self.rate.is_some() {
            return self.admit_key(key, now);
        }
        if let Some(held) = &slot.0 {
            // Refused (`max_streams` in flight, or forgotten): the map answers.
            if Arc::ptr_eq(&held.visitors, self) && held.key == key && held.streams.try_add(self.max_streams).is_ok() {
                return Ok(Admitted { streams: held.streams.clone() });
            }
        }
        let admitted = self.admit_key(key, now)?;
        slot.0 = Some(Held { visitors: self.clone(), key, streams: admitted.streams.clone() });
        Ok(admitted)
    }

    /// Exchanges in flight from `ip` (for tests and status).
    pub fn in_flight(&self, ip: IpAddr) -> usize {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let key = VisitorKey::of(ip);
        map.find(key.hash, |v| v.key == key).map_or(0, |v| v.streams.get())
    }

    /// Makes room: forgets addresses with nothing in flight whose bucket is full, and
    /// if that frees less than a quarter of the map, every address with nothing in
    /// flight. Each sweep frees room for many inserts, so the cost is O(1) amortised.
    /// A forgotten entry's count is turned to [`FORGOTTEN`] (only from 0: an exchange
    /// added without the lock keeps its entry), so a connection that still holds it
    /// adds nothing to it.
    fn forget_quiet(&self, map: &mut HashTable<Visitor>, now: Instant) {
        let rate = self.rate;
        map.retain(|v| {
            matches!((&v.bucket, rate), (Some(b), Some(r)) if !b.is_full(r, now)) || !v.streams.forget_if_idle()
        });
        if map.len() > MAX_REMEMBERED / 4 * 3 {
            map.retain(|v| !v.streams.forget_if_idle());
        }
    }
}

/// One exchange in flight from one visitor address; dropping it ends the count.
#[derive(Debug)]
pub struct Admitted {
    /// The address's count, which this exchange is one of (never [`FORGOTTEN`] while
    /// it is: an entry is forgotten only with nothing in flight).
    streams: Arc<Count>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.streams.0.fetch_sub(1, Ordering::AcqRel);
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

    fn ip(i: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i))
    }

    #[test]
    fn connections_holding_their_count_keep_it_exact() {
        let now = Instant::now();
        let v = Visitors::new(3, None);
        let key = VisitorKey::of(ip(1));
        let (mut one, mut two) = (VisitorSlot::default(), VisitorSlot::default());
        // Two connections of one address, each holding the count after its first
        // exchange: one count between them, `max_streams` in all.
        let a = v.admit_held(key, &mut one, || now).unwrap();
        let b = v.admit_held(key, &mut two, || now).unwrap();
        let c = v.admit_held(key, &mut one, || now).unwrap();
        assert_eq!(v.admit_held(key, &mut two, || now).unwrap_err(), VisitorRefusal::Busy(3));
        assert_eq!(v.admit_key(key, || now).unwrap_err(), VisitorRefusal::Busy(3));
        assert_eq!(v.in_flight(ip(1)), 3);
        drop((a, b));
        assert_eq!(v.in_flight(ip(1)), 1);
        // Another address through a held slot: counted as its own, the slot moved to it.
        let other = VisitorKey::of(ip(2));
        let d = v.admit_held(other, &mut one, || now).unwrap();
        assert_eq!((v.in_flight(ip(1)), v.in_flight(ip(2))), (1, 1));
        // Another tunnel's visitors with the same slot: counted there.
        let w = Visitors::new(3, None);
        let e = w.admit_held(other, &mut one, || now).unwrap();
        assert_eq!((v.in_flight(ip(2)), w.in_flight(ip(2))), (1, 1));
        drop((c, d, e));
        assert_eq!((v.in_flight(ip(1)), v.in_flight(ip(2)), w.in_flight(ip(2))), (0, 0, 0));
    }

    #[test]
    fn a_held_count_the_map_forgot_is_not_counted_on() {
        let now = Instant::now();
        let v = Visitors::new(2, None);
        let (key, busy) = (VisitorKey::of(ip(1)), VisitorKey::of(ip(2)));
        let (mut idle, mut held_busy) = (VisitorSlot::default(), VisitorSlot::default());
        drop(v.admit_held(key, &mut idle, || now).unwrap());
        let in_flight = v.admit_held(busy, &mut held_busy, || now).unwrap();
        // Enough other addresses to sweep the map: the idle address is forgotten
        // (its slot still holds the count), the busy one kept.
        for i in 10..20_000 {
            drop(v.admit(ip(i), now).unwrap());
        }
        assert!(v.map.lock().unwrap().len() <= MAX_REMEMBERED);
        assert_eq!(v.in_flight(ip(2)), 1, "an address in flight is kept");
        let kept = v.admit_held(busy, &mut held_busy, || now).unwrap();
        assert_eq!(v.admit_held(busy, &mut held_busy, || now).unwrap_err(), VisitorRefusal::Busy(2));
        // The forgotten count takes no exchange: the map makes the address's one entry
        // again, which the others of the address count on too.
        let a = v.admit_held(key, &mut idle, || now).unwrap();
        let b = v.admit(ip(1), now).unwrap();
        assert_eq!(v.in_flight(ip(1)), 2);
        assert_eq!(v.admit_held(key, &mut idle, || now).unwrap_err(), VisitorRefusal::Busy(2));
        drop((a, b, in_flight, kept));
        assert_eq!((v.in_flight(ip(1)), v.in_flight(ip(2))), (0, 0));
    }

    #[test]
    fn with_a_rate_every_exchange_is_charged() {
        let now = Instant::now();
        let v = Visitors::new(8, Some(RateLimit { per_second: 0, burst: 2 }));
        let key = VisitorKey::of(ip(1));
        let mut slot = VisitorSlot::default();
        drop(v.admit_held(key, &mut slot, || now).unwrap());
        drop(v.admit_held(key, &mut slot, || now).unwrap());
        assert!(matches!(v.admit_held(key, &mut slot, || now), Err(VisitorRefusal::RateLimited(_))));
        assert_eq!(v.in_flight(ip(1)), 0);
    }
}
