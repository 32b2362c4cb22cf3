//! The request inspector: every exchange through the tunnel copied into a bounded
//! store ([`localtunnels_core::inspect`]), served by an ngrok-compatible agent API and
//! a web page ([`serve_inspector`]), and replayable to the origin.
//!
//! Capture never waits on anything: bodies are copied into the store as they pass (up
//! to `body_limit` bytes each) by taps that file the size when the body ends; the
//! store's lock is held only to copy. A response that is whole when its head comes
//! back (no body, or one piece read with the head: most small ones) is filed in one
//! step; when its exchange is the connection's only one in flight, that step comes
//! after the write of its frames, from the fields the RESPONSE frame carried
//! ([`Inspector::respond_whole`], [`Filing`], [`pending`]). An exchange of a bodiless
//! request and such a response takes the store's lock twice and reads the clock once,
//! for its end, with the origin connection's return to the pool (its start is the
//! reading the reader took for the OPEN: `turn_clock`), and the API waits for what is
//! pending.

mod api;
mod assets;
mod pending;
mod replay;
mod server;
mod tap;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use localtunnels_core::inspect::json::{entry_json, ws_json};
use localtunnels_core::inspect::{EntryId, Exchange, HeadFields, Store, WsShared};
use localtunnels_core::{Header, Instant};
use tokio::sync::broadcast;

use crate::origin::Origin;

pub use localtunnels_core::inspect::InspectConfig;
pub(crate) use pending::Filing;
pub use replay::{Edit, ReplayError};
pub use server::{serve_inspector, InspectServer, DEFAULT_PORTS};
pub(crate) use tap::{BodyRecorder, WsRecorder};

/// The tunnel the inspector reports on (`GET /api/tunnels`).
#[derive(Debug, Clone, Default)]
struct TunnelInfo {
    name: String,
    public_url: String,
    /// The origin, e.g. `http://localhost:8000`.
    addr: String,
}

struct Shared {
    store: Mutex<Store>,
    redact: bool,
    /// The bytes kept of each body (the store's setting, read without its lock).
    body_limit: usize,
    /// Live feed of changes (Server-Sent Events lines), only built while someone listens.
    feed: broadcast::Sender<Arc<str>>,
    /// Open feeds ([`Listener`]s): read on every change without the channel's lock.
    listeners: AtomicUsize,
    epoch: std::time::Instant,
    /// The wall clock at `epoch`, in nanoseconds since the Unix epoch: an entry's
    /// start is this plus its monotonic time, one clock read instead of two.
    epoch_unix_nanos: u64,
    tunnel: Mutex<TunnelInfo>,
    origin: Mutex<Option<Arc<dyn Origin>>>,
    /// Captures filed after the write of their response, which API readers wait for.
    holds: pending::Holds,
}

/// A request inspector: give it to [`ClientConfig::inspector`](crate::ClientConfig::inspector)
/// to capture, to [`serve_inspector`] to serve. Clones share one store.
#[derive(Clone)]
pub struct Inspector {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Inspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inspector").field("entries", &self.store().len()).finish_non_exhaustive()
    }
}

impl Inspector {
    /// An empty inspector with these bounds.
    pub fn new(config: InspectConfig) -> Self {
        let (redact, body_limit) = (config.redact, config.body_limit);
        let (feed, _) = broadcast::channel(256);
        let prefix = rand::random::<u32>();
        Inspector {
            shared: Arc::new(Shared {
                store: Mutex::new(Store::new(config, prefix)),
                redact,
                body_limit,
                feed,
                listeners: AtomicUsize::new(0),
                epoch: std::time::Instant::now(),
                epoch_unix_nanos: Self::unix_nanos(),
                tunnel: Mutex::new(TunnelInfo::default()),
                origin: Mutex::new(None),
                holds: pending::Holds::default(),
            }),
        }
    }

    /// The store, locked (a poisoned lock still holds consistent entries: every
    /// update is one assignment).
    fn store(&self) -> MutexGuard<'_, Store> {
        self.shared.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Entries held and the bytes they hold.
    pub fn usage(&self) -> (usize, usize) {
        let store = self.store();
        (store.len(), store.bytes())
    }

    /// The bytes kept of each body.
    pub(crate) fn body_limit(&self) -> usize {
        self.shared.body_limit
    }

    /// Monotonic now, for the store: in a tunnel reader's turn the turn's reading for
    /// its streams' steps (`turn_clock::now`: a response filed after its write takes
    /// the reading its origin connection's return to the pool took).
    pub(crate) fn now(&self) -> Instant {
        self.instant_at(localtunnels_driver::turn_clock::now())
    }

    /// The monotonic clock reading `at` on the inspector's epoch (read as nanoseconds,
    /// not through `Instant`'s subtraction: `localtunnels_driver::mono_nanos`, ~0.05k
    /// instructions fewer per conversion).
    fn instant_at(&self, at: std::time::Instant) -> Instant {
        localtunnels_driver::mono_nanos::instant_since(at, self.shared.epoch)
    }

    /// The epoch of the inspector's monotonic stamps. A client's connections take it as
    /// theirs (`client::connect`), so that a request's start is the instant its session
    /// took for the message ([`localtunnels_driver::turn_clock::turn_since`]) as it is,
    /// with no conversion of the reading of its own (~0.05k instructions per request).
    pub(crate) fn epoch(&self) -> std::time::Instant {
        self.shared.epoch
    }

    /// Now on the wall clock, as the wall clock at the inspector's creation plus the
    /// monotonic time since (one clock read, as for an entry's start). In a tunnel
    /// reader's turn that read a message (a message from the tunnel, relayed to the
    /// origin's WebSocket in that turn) the turn's reading is now, as for an entry's
    /// start: no clock read of its own (~0.06k instructions per WebSocket echo). The
    /// reading's distance from the epoch is taken as nanoseconds
    /// (`localtunnels_driver::mono_nanos`: the same count, ~0.05k instructions fewer
    /// than `Instant`'s subtraction).
    pub(crate) fn wall_nanos(&self) -> u64 {
        let at = localtunnels_driver::turn_clock::turn_instant().unwrap_or_else(std::time::Instant::now);
        let since = localtunnels_driver::mono_nanos::since(at, self.shared.epoch);
        self.shared.epoch_unix_nanos.saturating_add(since)
    }

    fn unix_nanos() -> u64 {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Files a change to the store, then tells live listeners about entry `id`.
    pub(crate) fn update(&self, id: EntryId, change: impl FnOnce(&mut Store, Instant)) {
        let now = self.now();
        let mut store = self.store();
        change(&mut store, now);
        self.publish(id, store);
    }

    /// Files a change nobody listening live needs to hear of (a body's bytes).
    pub(crate) fn record(&self, change: impl FnOnce(&mut Store)) {
        change(&mut self.store());
    }

    /// [`Self::update`] for a change that needs no clock (a head, a request body).
    pub(crate) fn change(&self, id: EntryId, change: impl FnOnce(&mut Store)) {
        let mut store = self.store();
        change(&mut store);
        self.publish(id, store);
    }

    /// Tells live listeners about entry `id` if anyone listens (a change filed without
    /// the store's lock: a WebSocket message). Inlined: the check is one load.
    #[inline]
    pub(crate) fn changed(&self, id: EntryId) {
        if self.shared.listeners.load(Ordering::Relaxed) > 0 {
            self.announce(id, self.store());
        }
    }

    /// The handle on entry `id`'s WebSocket session, if it is one and still held.
    pub(crate) fn ws_session(&self, id: EntryId) -> Option<WsShared> {
        self.store().ws_session(id)
    }

    /// Tells live listeners about entry `id` (if anyone listens), after the lock.
    /// Inlined: at every capture step nobody listens, and the check is one load.
    #[inline]
    fn publish(&self, id: EntryId, store: MutexGuard<'_, Store>) {
        if self.shared.listeners.load(Ordering::Relaxed) > 0 {
            self.announce(id, store);
        }
    }

    /// [`Self::publish`] for a listener: the entry rendered, sent after the lock.
    fn announce(&self, id: EntryId, store: MutexGuard<'_, Store>) {
        if let Some(e) = store.get(id) {
            let kind = if e.websocket.is_some() { "ws" } else { "http" };
            let redact = self.shared.redact;
            let json = ws_json(&store, e, redact).unwrap_or_else(|| entry_json(&store, e, redact));
            drop(store);
            let _ = self.shared.feed.send(Arc::from(format!("event: {kind}\ndata: {json}\n\n")));
        }
    }

    /// A request arrived: its entry's id.
    pub(crate) fn begin(&self, method: &str, uri: &str, headers: &[Header], websocket: bool) -> EntryId {
        self.begin_exchange(Exchange { method, uri: uri.as_bytes(), headers, websocket, replay_of: None })
    }

    /// [`Self::begin`] of a request whose fields are not a typed list (one written to
    /// the origin from the OPEN's raw block: `raw_request`).
    /// Its target as bytes (a raw OPEN's, checked UTF-8 when read: not converted to
    /// `&str` again: `Exchange::uri` is bytes).
    pub(crate) fn begin_fields(&self, method: &str, target: &[u8], headers: &(impl HeadFields + ?Sized)) -> EntryId {
        self.begin_exchange(Exchange { method, uri: target, headers, websocket: false, replay_of: None })
    }

    fn begin_exchange<H: HeadFields + ?Sized>(&self, ex: Exchange<'_, H>) -> EntryId {
        // The request arrived when the tunnel's reader read its message: in that
        // reader's turn (where a tunneled request begins) the turn's clock reading
        // says when, without a clock read of its own.
        let now = match localtunnels_driver::turn_clock::turn_since() {
            // The session's instant on the inspector's epoch (its connection's).
            Some((epoch, at)) if epoch == self.shared.epoch => at,
            _ => match localtunnels_driver::turn_clock::turn_instant() {
                Some(at) => self.instant_at(at),
                None => self.now(),
            },
        };
        let unix_nanos = self.shared.epoch_unix_nanos.saturating_add(now.as_micros().saturating_mul(1000));
        let mut store = self.store();
        let id = store.begin(now, unix_nanos, ex);
        self.publish(id, store);
        id
    }

    /// Entry `id`'s response came back whole (`body`: all of it, possibly empty). With
    /// `later` (the exchange is its connection's only one in flight, so its latency is
    /// the request's: `localtunnels_driver::after_write::pays`), nothing is filed now:
    /// the returned [`Filing`] files the status, the head's fields (given to it with
    /// [`Filing::fields`]: the RESPONSE frame's, kept past the write) and the body in one
    /// lock when it is dropped (by the exchange, after its response is written), API
    /// readers waiting for it meanwhile. Else all of it is filed now, in one lock, and
    /// there is nothing to file later (`None`): with other exchanges in flight the work
    /// per request counts, not where it runs.
    pub(crate) fn respond_whole<'a>(
        &'a self,
        id: EntryId,
        status: u16,
        headers: &(impl HeadFields + ?Sized),
        body: &'a [u8],
        later: bool,
    ) -> Option<Filing<'a>> {
        if !later {
            self.update(id, |s, now| s.respond_whole(id, now, status, headers, body));
            return None;
        }
        let which = self.shared.holds.hold();
        Some(Filing::new(self, id, status, body, which))
    }

    /// Waits until every capture pending when it was called is filed: what a visitor
    /// saw before it asks the API is in the store (see [`pending`]).
    pub(crate) async fn settled(&self) {
        self.shared.holds.settled().await;
    }

    /// The tunnel is up (again): what `/api/tunnels` reports, and the origin replays go to.
    pub(crate) fn attach(&self, origin: &Arc<dyn Origin>, name: &str, public_url: &str) {
        let scheme = if origin.secure() { "https" } else { "http" };
        let addr = origin.authority().map(|a| format!("{scheme}://{a}")).unwrap_or_else(|| "in-process".into());
        *self.shared.origin.lock().unwrap_or_else(|p| p.into_inner()) = Some(origin.clone());
        *self.shared.tunnel.lock().unwrap_or_else(|p| p.into_inner()) =
            TunnelInfo { name: name.to_string(), public_url: public_url.to_string(), addr };
        self.store().set_tunnel_name(name);
    }

    fn tunnel(&self) -> TunnelInfo {
        self.shared.tunnel.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn origin(&self) -> Option<Arc<dyn Origin>> {
        self.shared.origin.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Forgets every entry.
    pub fn clear(&self) {
        self.store().clear();
        let _ = self.shared.feed.send(Arc::from("event: clear\ndata: {}\n\n"));
    }
}

/// An open live feed: changes are rendered for it while it lives.
pub(crate) struct Listener {
    shared: Arc<Shared>,
    pub(crate) rx: broadcast::Receiver<Arc<str>>,
}

impl Listener {
    pub(crate) fn new(inspector: &Inspector) -> Self {
        let rx = inspector.shared.feed.subscribe();
        inspector.shared.listeners.fetch_add(1, Ordering::Relaxed);
        Listener { shared: inspector.shared.clone(), rx }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shared.listeners.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WebSocket message's stamp is the wall clock: near `SystemTime::now`, and it
    /// never goes back between two messages.
    #[test]
    fn wall_nanos_follows_the_wall_clock_and_never_goes_back() {
        let inspector = Inspector::new(InspectConfig::default());
        let first = inspector.wall_nanos();
        let wall = Inspector::unix_nanos();
        let second = inspector.wall_nanos();
        assert!(second >= first);
        assert!(first.abs_diff(wall) < 1_000_000_000, "stamp {first}, wall clock {wall}");
    }

    /// A reading on the inspector's epoch is the instant `Instant`'s own subtraction
    /// gives (read as nanoseconds instead: `mono_nanos`), and one before the epoch is 0.
    #[test]
    fn a_reading_on_the_epoch_is_what_instants_subtraction_gives() {
        let inspector = Inspector::new(InspectConfig::default());
        let epoch = inspector.epoch();
        for nanos in [0, 999, 1_000, 1_999, 999_999_999, 1_000_000_000, 3_600_000_000_123] {
            let at = epoch + std::time::Duration::from_nanos(nanos);
            assert_eq!(inspector.instant_at(at), Instant::from_elapsed(at.saturating_duration_since(epoch)));
            assert_eq!(inspector.instant_at(at).as_micros(), nanos / 1000);
        }
        let before = epoch.checked_sub(std::time::Duration::from_millis(1)).unwrap_or(epoch);
        assert_eq!(inspector.instant_at(before), Instant::ZERO);
    }
}
