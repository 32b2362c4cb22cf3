//! What the inspector keeps of one exchange.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::frame::Header;
use crate::time::Instant;

use super::body::BodyCapture;
use super::ring::Span;
use super::store::{EntryId, InspectConfig};

/// Which way a WebSocket message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the visitor to the origin.
    In,
    /// From the origin to the visitor.
    Out,
}

impl Direction {
    /// `"in"` or `"out"`, as the agent API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// A request as the origin received it (read back from the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Method, e.g. `GET`.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Headers in order.
    pub headers: Vec<Header>,
    /// The body's first bytes.
    pub body: BodyCapture,
}

/// The origin's response (read back from the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers in order.
    pub headers: Vec<Header>,
    /// The body's first bytes.
    pub body: BodyCapture,
}

/// One message of a WebSocket session (its first fragment's time; its whole size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsMessage {
    /// Which way it went.
    pub direction: Direction,
    /// When it started, in nanoseconds since the Unix epoch.
    pub unix_nanos: u64,
    /// Binary (else text).
    pub binary: bool,
    /// Its size in bytes.
    pub size: u64,
    /// Its first bytes.
    pub preview: Vec<u8>,
}

/// The messages of a WebSocket session, the most recent ones when there were many.
///
/// The kept messages are a ring: below the bound a list in arrival order; at it, the
/// oldest message's slot (at `oldest`) takes the next message and `oldest` moves on
/// by one, so a message at the bound (every message of a busy session) moves nothing
/// and allocates nothing. [`WsSession::messages`] reads them oldest first.
///
/// A session lives behind a [`WsShared`] handle, held by its entry in the store and by
/// the shell's recorder, which files messages through it without the store's lock.
#[derive(Debug, Clone, Default)]
pub struct WsSession {
    /// Kept messages: from `oldest` to the end, then from the start to `oldest`.
    ring: Vec<WsMessage>,
    /// Where the oldest kept message is (0 below the bound).
    oldest: usize,
    /// Older messages dropped to keep [`super::InspectConfig::max_ws_messages`].
    pub dropped: u64,
    /// The first close code seen, once closed.
    pub close_code: Option<u16>,
    /// Bytes the kept messages hold.
    pub(crate) held: usize,
    /// Bytes kept of each message and messages kept (the store's
    /// [`super::InspectConfig::ws_preview`] and `max_ws_messages`; 0 and 0 keep none).
    preview: usize,
    max: usize,
    /// The weight the store counts for the session, in steps of [`WS_WEIGHT_STEP`]:
    /// at least `held`, and less than two steps over it ([`WsSession::recount`]).
    counted: usize,
    /// The store let the session's entry go: its messages are gone, later ones are
    /// not kept (the recorder may still file them).
    evicted: bool,
}

/// The step in which the store counts a session's weight: the store's count moves
/// when the messages' bytes leave their step, not at every message. A session holds
/// at most its count, so the store's bound still bounds the memory.
pub(crate) const WS_WEIGHT_STEP: usize = 4096;

/// Two sessions are equal when they keep the same messages in the same order (where
/// each ring turned to does not matter), and the same drops and close code.
impl PartialEq for WsSession {
    fn eq(&self, other: &Self) -> bool {
        (self.dropped, self.close_code, self.held) == (other.dropped, other.close_code, other.held)
            && self.len() == other.len()
            && self.messages().eq(other.messages())
    }
}

impl Eq for WsSession {}

/// A handle on a WebSocket session's messages, shared by its entry in the store (which
/// reads them when the API renders the entry) and the shell's recorder (which files
/// them, [`WsShared::record`], without the store's lock, the entry's look-up and its
/// weights: ~0.03k instructions a message; docs/BENCHMARKS.md, twentieth round, echo2).
///
/// Locks: the store's, then a session's, never the other way round (the recorder
/// reports a new weight to the store after it let go of the session).
#[derive(Debug, Clone)]
pub struct WsShared(Arc<Mutex<WsSession>>);

impl WsShared {
    /// A session with no messages, with the `config`'s bounds.
    pub(crate) fn new(config: &InspectConfig) -> Self {
        let session = WsSession { preview: config.ws_preview, max: config.max_ws_messages, ..WsSession::default() };
        WsShared(Arc::new(Mutex::new(session)))
    }

    /// The session, locked (a poisoned lock still holds a consistent session: its
    /// changes do not panic midway).
    pub fn lock(&self) -> MutexGuard<'_, WsSession> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Files a message as [`super::Store::ws_message`] does, through the handle: the
    /// weight the store is to count for the session when it left its step (give it to
    /// [`super::Store::ws_weight`]), `None` while it is within it (a steady session's
    /// every message).
    pub fn record(
        &self,
        direction: Direction,
        unix_nanos: u64,
        binary: bool,
        first: bool,
        data: &[u8],
    ) -> Option<usize> {
        self.lock().record(direction, unix_nanos, binary, first, data)
    }
}

/// The same handle, or two sessions that keep the same messages.
impl PartialEq for WsShared {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || *self.lock() == *other.lock()
    }
}

impl Eq for WsShared {}

impl WsSession {
    /// The kept messages, oldest first.
    pub fn messages(&self) -> impl DoubleEndedIterator<Item = &WsMessage> + '_ {
        let (newer, older) = self.ring.split_at(self.oldest);
        older.iter().chain(newer)
    }

    /// How many messages are kept.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// No message is kept.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// [`WsSession::push`], then [`WsSession::recount`]; nothing once evicted.
    pub(crate) fn record(
        &mut self,
        direction: Direction,
        unix_nanos: u64,
        binary: bool,
        first: bool,
        data: &[u8],
    ) -> Option<usize> {
        if self.evicted {
            return None;
        }
        self.push(direction, unix_nanos, binary, first, data);
        self.recount()
    }

    /// The weight for the store to count when the bytes held left their step (more
    /// than counted, or two steps less): `held` rounded up to a step. `None` while
    /// they are within it, `counted - 2 steps < held <= counted`: one subtraction and
    /// one compare for a message that changes nothing (`held` over `counted` wraps to
    /// a distance far over two steps; ~0.01k an echo less than two compares with the
    /// addition, docs/BENCHMARKS.md, twenty-first round, echo3).
    #[inline]
    fn recount(&mut self) -> Option<usize> {
        if self.counted.wrapping_sub(self.held) < 2 * WS_WEIGHT_STEP {
            return None;
        }
        self.counted = self.held.div_ceil(WS_WEIGHT_STEP).saturating_mul(WS_WEIGHT_STEP);
        Some(self.counted)
    }

    /// The store let the entry go: the messages' memory is given back, and the
    /// session keeps nothing from now on.
    pub(crate) fn evict(&mut self) {
        (self.ring, self.oldest, self.held, self.counted, self.evicted) = (Vec::new(), 0, 0, 0, true);
    }

    /// Files a message that went `direction` at `unix_nanos` (its size and preview
    /// from `data`), or adds `data` to the last message that went its way if it is a
    /// later fragment (`first` false), keeping the most recent messages and preview
    /// bytes the bounds allow; `held` follows.
    fn push(&mut self, direction: Direction, unix_nanos: u64, binary: bool, first: bool, data: &[u8]) {
        let (preview, max) = (self.preview, self.max);
        // Only a later fragment looks for the message it continues (newest first).
        if !first {
            let (newer, older) = self.ring.split_at_mut(self.oldest);
            if let Some(m) = older.iter_mut().chain(newer).rev().find(|m| m.direction == direction) {
                m.size = m.size.saturating_add(data.len() as u64);
                let room = preview.saturating_sub(m.preview.len());
                let add = &data[..data.len().min(room)];
                m.preview.extend_from_slice(add);
                self.held += add.len();
                return;
            }
        }
        if max == 0 {
            self.dropped += 1;
            return;
        }
        let want = data.len().min(preview);
        let size = data.len() as u64;
        if self.ring.len() != max {
            self.push_below_bound(
                max,
                WsMessage { direction, unix_nanos, binary, size, preview: data[..want].to_vec() },
            );
            return;
        }
        // At the bound the oldest message's slot becomes this one's, in place: its
        // preview's buffer is reused and the ring's start moves on by one (no message
        // is built, moved or dropped; `VecDeque::rotate_left` cost ~0.035k
        // instructions more a message). The weight counts a preview's length, so a
        // buffer far larger than this preview needs is dropped rather than kept.
        let Some(m) = self.ring.get_mut(self.oldest) else { return };
        self.oldest = if self.oldest + 1 == max { 0 } else { self.oldest + 1 };
        self.held = self.held.saturating_sub(m.preview.len()) + want;
        self.dropped += 1;
        if m.preview.len() == want {
            // The usual case of a steady session (messages of one size): the bytes
            // copied over the old ones, without the buffer's length and room checks.
            m.preview.copy_from_slice(&data[..want]);
        } else {
            if m.preview.capacity() > 2 * want.max(32) {
                m.preview = Vec::new();
            }
            m.preview.clear();
            m.preview.extend_from_slice(&data[..want]);
        }
        (m.direction, m.unix_nanos, m.binary, m.size) = (direction, unix_nanos, binary, size);
    }

    /// Appends `message` below the bound `max` (or at it, after dropping the oldest
    /// messages over it: a bound lowered under a session's count).
    fn push_below_bound(&mut self, max: usize, message: WsMessage) {
        if self.oldest != 0 || self.ring.len() > max {
            self.shrink_to(max - 1);
        }
        self.held += MESSAGE_WEIGHT + message.preview.len();
        self.ring.push(message);
    }

    /// Puts the ring back in arrival order and drops its oldest messages until at
    /// most `keep` are left (a bound that changed under a session).
    #[cold]
    fn shrink_to(&mut self, keep: usize) {
        self.ring.rotate_left(self.oldest);
        self.oldest = 0;
        let over = self.ring.len().saturating_sub(keep);
        for old in self.ring.drain(..over) {
            self.held = self.held.saturating_sub(MESSAGE_WEIGHT + old.preview.len());
            self.dropped += 1;
        }
    }
}

/// One request through the tunnel (a WebSocket upgrade included), and what came of it.
///
/// Its heads and bodies are bytes in the store's ring, read back with
/// [`super::Store::request`] and [`super::Store::response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpEntry {
    /// Its id.
    pub id: EntryId,
    /// The tunnel it came through.
    pub tunnel_name: Arc<str>,
    /// When it arrived, in nanoseconds since the Unix epoch.
    pub start_unix_nanos: u64,
    /// When it arrived, on the shell's monotonic clock.
    pub started: Instant,
    /// From arrival to the end of the response (or of the WebSocket), once over.
    pub duration: Option<Duration>,
    /// The response's status, once its head came back.
    pub status: Option<u16>,
    /// The entry this one replays.
    pub replay_of: Option<EntryId>,
    /// Why no response came (the origin was unreachable, the visitor left).
    pub error: Option<String>,
    /// The session's messages, for a WebSocket upgrade (read with [`WsShared::lock`]).
    pub websocket: Option<WsShared>,
    /// What the store counts for the session's messages (the last weight reported
    /// by [`WsShared::record`]).
    pub(crate) ws_weight: usize,
    /// Where its bytes are ([`Part`]): the heads and the response's body in one span,
    /// one after the other (the request's head at `begin`, the response's head when it
    /// comes back, then the body as it passes: a small exchange's response is one run
    /// of the ring, its head and body written in one step); the request's body, which
    /// may pass while the response does, in its own.
    pub(crate) spans: [Span; 2],
    /// Where the store's ring was when it began: all its bytes come after.
    pub(crate) mark: u64,
    /// The lengths of the request's and the response's heads at the start of
    /// [`Part::Exchange`]'s span.
    pub(crate) heads: [u32; 2],
    /// The request's and the response's body sizes, kept or not.
    pub(crate) sizes: [u64; 2],
    /// Whether the request's head (bit 0) and the response's (bit 1) are kept as a
    /// header block ([`super::head::Block`]) rather than field by field, and each such
    /// block's edits' kind (bits 2-3, 4-5: `Block::kept`).
    pub(crate) blocks: u8,
    /// What the store counts for this entry besides its bytes in the ring
    /// ([`HttpEntry::weight`] when last changed), kept so that a change weighs the
    /// entry once, not before and after.
    pub(crate) held: usize,
}

/// Which of an entry's spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The request's head, the response's head, the response's body.
    Exchange = 0,
    /// The request's body.
    RequestBody = 1,
}

/// Which body of an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyOf {
    /// The visitor's request body.
    Request,
    /// The origin's response body.
    Response,
}

impl BodyOf {
    pub(crate) fn part(self) -> Part {
        match self {
            BodyOf::Request => Part::RequestBody,
            BodyOf::Response => Part::Exchange,
        }
    }
}

/// Arguments of [`super::Store::begin`]: a request as it arrives. Its headers are a
/// typed list, or any other [`HeadFields`](super::HeadFields) source (the client files
/// a request it writes from the OPEN's raw block as that block: [`super::Block`]).
#[derive(Debug)]
pub struct Exchange<'a, H: ?Sized = [Header]> {
    /// Method.
    pub method: &'a str,
    /// Path and query, as bytes: kept as they are and read back as text lossily (a
    /// raw OPEN's target, its UTF-8 checked when the OPEN was read, is filed with no
    /// second check; text gives its `as_bytes()`).
    pub uri: &'a [u8],
    /// Headers in order.
    pub headers: &'a H,
    /// A WebSocket upgrade.
    pub websocket: bool,
    /// The entry this replays.
    pub replay_of: Option<EntryId>,
}

// By hand: a derive would ask `H: Copy`, which an unsized list is not.
impl<H: ?Sized> Clone for Exchange<'_, H> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<H: ?Sized> Copy for Exchange<'_, H> {}

/// What an entry costs besides its bytes in the ring, error and messages (its struct in the store).
pub(crate) const FIXED_WEIGHT: usize = 256;
/// What one kept WebSocket message costs besides its preview.
pub(crate) const MESSAGE_WEIGHT: usize = 64;

impl HttpEntry {
    /// Bytes this entry holds besides its heads' and bodies' bytes (which the store
    /// counts in its ring's), as the store counts them against its bound.
    pub fn weight(&self) -> usize {
        let error = self.error.as_ref().map_or(0, String::len);
        FIXED_WEIGHT + error + self.ws_weight
    }

    /// The bytes of both heads at the start of the exchange span (the response's
    /// body follows them).
    pub(crate) fn heads_len(&self) -> usize {
        self.heads[0] as usize + self.heads[1] as usize
    }

    /// The bytes kept of body `of`.
    pub(crate) fn body_len(&self, of: BodyOf) -> usize {
        let span = self.spans[of.part() as usize].len();
        match of {
            BodyOf::Request => span,
            BodyOf::Response => span.saturating_sub(self.heads_len()),
        }
    }

    /// The visitor's address: the first `X-Forwarded-For` entry the server added to
    /// `request` (this entry's), or `""` for a replay.
    pub fn remote_addr(&self, request: &HttpRequest) -> String {
        if self.replay_of.is_some() {
            return String::new();
        }
        request
            .headers
            .iter()
            .find(|(n, _)| n == crate::frame::X_FORWARDED_FOR)
            .and_then(|(_, v)| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::{WsSession, WS_WEIGHT_STEP};

    /// The weight is reported exactly when the bytes held leave their window,
    /// `counted - 2 steps < held <= counted`, at both edges, from a count of 0 (where
    /// the subtraction wraps for any byte held) and near `usize::MAX`.
    #[test]
    fn the_weight_moves_exactly_when_the_bytes_held_leave_their_window() {
        const S: usize = WS_WEIGHT_STEP;
        let recount = |counted: usize, held: usize| WsSession { counted, held, ..WsSession::default() }.recount();
        for counted in [0, S, 2 * S, 5 * S, usize::MAX / S * S] {
            let low = counted.saturating_sub(2 * S);
            for held in [low, low + 1, counted.saturating_sub(1), counted] {
                let within = held <= counted && counted - held < 2 * S;
                let expect = (!within).then(|| held.div_ceil(S) * S);
                assert_eq!(recount(counted, held), expect, "counted {counted}, held {held}");
            }
            if let Some(over) = counted.checked_add(1) {
                assert_eq!(recount(counted, over), Some(over.div_ceil(S).saturating_mul(S)), "counted {counted}");
            }
        }
        // A report's count takes the next message of the same size without another.
        let mut s = WsSession { held: 3 * S + 1, ..WsSession::default() };
        assert_eq!(s.recount(), Some(4 * S));
        assert_eq!(s.recount(), None);
    }
}
