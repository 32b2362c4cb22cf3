//! What the inspector keeps of one exchange.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::frame::Header;
use crate::time::Instant;

use super::body::BodyCapture;
use super::store::EntryId;

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

/// A request as the origin received it.
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

/// The origin's response.
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WsSession {
    /// Kept messages, oldest first.
    pub messages: VecDeque<WsMessage>,
    /// Older messages dropped to keep [`super::InspectConfig::max_ws_messages`].
    pub dropped: u64,
    /// The first close code seen, once closed.
    pub close_code: Option<u16>,
    /// Bytes the kept messages hold.
    pub(crate) held: usize,
}

/// One request through the tunnel (a WebSocket upgrade included), and what came of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpEntry {
    /// Its id.
    pub id: EntryId,
    /// The tunnel it came through.
    pub tunnel_name: Arc<str>,
    /// The visitor's address (first `X-Forwarded-For` entry), or `""` for a replay.
    pub remote_addr: String,
    /// When it arrived, in nanoseconds since the Unix epoch.
    pub start_unix_nanos: u64,
    /// When it arrived, on the shell's monotonic clock.
    pub started: Instant,
    /// From arrival to the end of the response (or of the WebSocket), once over.
    pub duration: Option<Duration>,
    /// The request.
    pub request: HttpRequest,
    /// The response, once its head came back.
    pub response: Option<HttpResponse>,
    /// The entry this one replays.
    pub replay_of: Option<EntryId>,
    /// Why no response came (the origin was unreachable, the visitor left).
    pub error: Option<String>,
    /// The session's messages, for an accepted WebSocket.
    pub websocket: Option<WsSession>,
    /// What the store counts for this entry ([`HttpEntry::weight`] when last changed),
    /// kept so that a change weighs the entry once, not before and after.
    pub(crate) held: usize,
}

/// Arguments of [`super::Store::begin`]: a request as it arrives.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    /// Method.
    pub method: &'a str,
    /// Path and query.
    pub uri: &'a str,
    /// Headers in order.
    pub headers: &'a [Header],
    /// A WebSocket upgrade.
    pub websocket: bool,
    /// The entry this replays.
    pub replay_of: Option<EntryId>,
}

/// What an entry costs besides its variable parts (its struct, ids, strings' headers).
const FIXED_WEIGHT: usize = 256;
/// What one kept WebSocket message costs besides its preview.
pub(crate) const MESSAGE_WEIGHT: usize = 64;

fn headers_weight(headers: &[Header]) -> usize {
    headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 32).sum()
}

impl HttpEntry {
    /// Bytes this entry holds, as the store counts them against its bound.
    pub fn weight(&self) -> usize {
        let req = &self.request;
        let mut w = FIXED_WEIGHT + req.method.len() + req.uri.len() + self.remote_addr.len();
        w += headers_weight(&req.headers) + req.body.held();
        if let Some(res) = &self.response {
            w += headers_weight(&res.headers) + res.body.held();
        }
        w += self.error.as_ref().map_or(0, String::len);
        w + self.websocket.as_ref().map_or(0, |ws| ws.held)
    }

    /// The visitor's address from the first `X-Forwarded-For` entry the server added.
    pub(crate) fn remote_addr_of(headers: &[Header]) -> String {
        headers
            .iter()
            .find(|(n, _)| n == crate::frame::X_FORWARDED_FOR)
            .and_then(|(_, v)| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    }
}
