//! Taps: copies of what passes, handed to the store when a body ends.

use localtunnels_core::inspect::{BodyCapture, Direction, EntryId};
use localtunnels_driver::websocket::WsTap;
use localtunnels_driver::BodyTap;

use super::Inspector;

/// Which body a recorder copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Request,
    Response,
}

/// Copies a body's first bytes; files them with the store when dropped (the body
/// ended, failed, or was abandoned). A response body's end is the exchange's end.
#[derive(Debug)]
pub(crate) struct BodyRecorder {
    inspector: Inspector,
    id: EntryId,
    side: Side,
    capture: BodyCapture,
}

impl BodyRecorder {
    /// For entry `id`'s request body.
    pub(crate) fn request(inspector: &Inspector, id: EntryId) -> Self {
        let capture = BodyCapture::new(inspector.body_limit());
        BodyRecorder { inspector: inspector.clone(), id, side: Side::Request, capture }
    }

    /// For entry `id`'s response body.
    pub(crate) fn response(inspector: &Inspector, id: EntryId) -> Self {
        let capture = BodyCapture::new(inspector.body_limit());
        BodyRecorder { inspector: inspector.clone(), id, side: Side::Response, capture }
    }

    /// Copies what fits of `chunk`.
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        self.capture.push(chunk);
    }
}

impl BodyTap for BodyRecorder {
    fn data(&mut self, chunk: &[u8]) {
        self.push(chunk);
    }
}

impl Drop for BodyRecorder {
    fn drop(&mut self) {
        let capture = std::mem::take(&mut self.capture);
        match self.side {
            Side::Request => self.inspector.change(self.id, |s| s.request_body(self.id, capture)),
            Side::Response => self.inspector.update(self.id, |s, now| s.response_body(self.id, now, capture)),
        }
    }
}

/// Records the messages of a bridged WebSocket (on the origin's socket: read from it
/// is `out`, towards the visitor).
#[derive(Debug)]
pub(crate) struct WsRecorder {
    pub(crate) inspector: Inspector,
    pub(crate) id: EntryId,
}

impl WsTap for WsRecorder {
    fn message(&self, from_socket: bool, binary: bool, first: bool, data: &[u8]) {
        let dir = if from_socket { Direction::Out } else { Direction::In };
        let nanos = Inspector::unix_nanos();
        self.inspector.update(self.id, |s, _| s.ws_message(self.id, nanos, dir, binary, first, data));
    }
}

impl WsRecorder {
    /// The session ended (`code`: its close code, if it closed cleanly).
    pub(crate) fn closed(&self, code: Option<u16>) {
        self.inspector.update(self.id, |s, now| s.ws_closed(self.id, now, code));
    }
}
