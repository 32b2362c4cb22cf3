//! Taps: copies of what passes, handed to the store when a body ends.

use localtunnels_core::inspect::{BodyOf, Direction, EntryId, WsShared};
use localtunnels_core::Instant;
use localtunnels_driver::websocket::WsTap;
use localtunnels_driver::BodyTap;

use super::Inspector;

/// Copies a body's first bytes into the store as they pass (no buffer of its own);
/// files its size when dropped (the body ended, failed, or was abandoned). A response
/// body's end is the exchange's end.
#[derive(Debug)]
pub(crate) struct BodyRecorder {
    inspector: Inspector,
    id: EntryId,
    of: BodyOf,
    size: u64,
    /// Bytes still to keep: past the body limit only the size is counted, and the
    /// store is not locked again until the end.
    room: usize,
    /// The end was filed already ([`BodyRecorder::finish`]).
    filed: bool,
}

impl BodyRecorder {
    /// For entry `id`'s request body.
    pub(crate) fn request(inspector: &Inspector, id: EntryId) -> Self {
        Self::new(inspector, id, BodyOf::Request)
    }

    /// For entry `id`'s response body.
    pub(crate) fn response(inspector: &Inspector, id: EntryId) -> Self {
        Self::new(inspector, id, BodyOf::Response)
    }

    fn new(inspector: &Inspector, id: EntryId, of: BodyOf) -> Self {
        BodyRecorder { inspector: inspector.clone(), id, of, size: 0, room: inspector.body_limit(), filed: false }
    }

    /// Copies what fits of `chunk`.
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        let kept = self.count(chunk);
        if !kept.is_empty() {
            self.inspector.record(|s| s.body_data(self.id, self.of, kept));
        }
    }

    /// Copies what fits of `chunk`, the body's last, and files the end with it (one
    /// lock, not two: a small body is one chunk).
    pub(crate) fn finish(mut self, chunk: &[u8]) {
        let kept = self.count(chunk);
        self.filed = true;
        let (id, of, size) = (self.id, self.of, self.size);
        self.inspector.update(id, |s, now| {
            s.body_data(id, of, kept);
            s.body_end(id, of, size, now);
        });
    }

    /// Counts `chunk`; the part of it still to keep.
    fn count<'a>(&mut self, chunk: &'a [u8]) -> &'a [u8] {
        self.size = self.size.saturating_add(chunk.len() as u64);
        let kept = &chunk[..chunk.len().min(self.room)];
        self.room -= kept.len();
        kept
    }
}

impl BodyTap for BodyRecorder {
    fn data(&mut self, chunk: &[u8]) {
        self.push(chunk);
    }
}

impl Drop for BodyRecorder {
    fn drop(&mut self) {
        if self.filed {
            return;
        }
        let (id, of, size) = (self.id, self.of, self.size);
        match of {
            // The request's end changes nothing the live list shows.
            BodyOf::Request => self.inspector.record(|s| s.body_end(id, of, size, Instant::ZERO)),
            BodyOf::Response => self.inspector.update(id, |s, now| s.body_end(id, of, size, now)),
        }
    }
}

/// Records the messages of a bridged WebSocket (on the origin's socket: read from it
/// is `out`, towards the visitor) into its session through the session's handle: no
/// store lock, entry look-up or weights per message (the store counts the session's
/// weight in steps, [`WsShared::record`]).
#[derive(Debug)]
pub(crate) struct WsRecorder {
    pub(crate) inspector: Inspector,
    pub(crate) id: EntryId,
    /// The session's messages; `None` if its entry was evicted before the recorder
    /// began (its messages are not kept, as the store keeps none of an evicted entry).
    session: Option<WsShared>,
}

impl WsRecorder {
    /// For the WebSocket of entry `id`.
    pub(crate) fn new(inspector: &Inspector, id: EntryId) -> Self {
        WsRecorder { inspector: inspector.clone(), id, session: inspector.ws_session(id) }
    }

    /// The session ended (`code`: its close code, if it closed cleanly).
    pub(crate) fn closed(&self, code: Option<u16>) {
        self.inspector.update(self.id, |s, now| s.ws_closed(self.id, now, code));
    }
}

impl WsTap for WsRecorder {
    fn message(&self, from_socket: bool, binary: bool, first: bool, data: &[u8]) {
        let Some(session) = &self.session else { return };
        let dir = if from_socket { Direction::Out } else { Direction::In };
        // One clock read, as nanoseconds (no monotonic `now` for the store: a message
        // changes no duration).
        let nanos = self.inspector.wall_nanos();
        // The store's lock only when the session's weight left its step (the session's
        // own lock is let go first: the store's comes first where both are taken).
        if let Some(weight) = session.record(dir, nanos, binary, first, data) {
            self.inspector.record(|s| s.ws_weight(self.id, weight));
        }
        self.inspector.changed(self.id);
    }
}
