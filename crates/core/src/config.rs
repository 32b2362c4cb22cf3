//! Limits and timings of a session.

use std::time::Duration;

/// Every limit the core enforces. Both sides announce their receive limits in the
/// handshake; each side then obeys the peer's (see `docs/PROTOCOL.md`, "Limits").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Largest frame (one WebSocket binary message) we accept, in bytes.
    pub max_frame: u32,
    /// Most streams the peer may have open towards us at once.
    pub max_streams: u32,
    /// Receive window per stream: bytes the peer may send on one stream before we
    /// grant more credit.
    pub stream_window: u32,
    /// Receive window for the whole session, across all streams.
    pub session_window: u32,
    /// Largest encoded header block (request or response head, trailers).
    pub max_header_bytes: u32,
    /// How often a ping is sent.
    pub ping_interval: Duration,
    /// How long without hearing anything from the peer before it is declared dead
    /// (and how long a ping may go unanswered: a peer that does not read is dead too).
    pub idle_timeout: Duration,
    /// Largest stream or session window taken from the peer: a larger announced window
    /// is clamped to this, and `WINDOW` grants never raise a credit above the clamped
    /// window. See `docs/PROTOCOL.md`, "Limits".
    pub max_peer_window: u32,
    /// Most payload bytes all streams together may queue unsent, whatever the peer's
    /// session window (the queue is bounded by the smaller of the two).
    pub max_session_queue: u32,
    /// Most bytes of control frames (heads, windows, resets, pings, go-away) that may
    /// wait unsent. A peer that lets more pile up does not read what we send: the
    /// session is closed with [`CloseCode::SlowReader`](crate::CloseCode::SlowReader).
    pub max_control_queue: u32,
    /// Whether the peer may open streams towards this side. A server refuses them:
    /// clients never open streams in this protocol version.
    pub peer_streams: PeerStreams,
}

/// Whether a session accepts the streams its peer opens ([`Config::peer_streams`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PeerStreams {
    /// The peer opens streams as far as [`Config::max_streams`] allows.
    #[default]
    Accept,
    /// Each stream the peer opens is reset with `Refused` at once, unseen by the
    /// application; a peer that opens more than [`MAX_REFUSED_STREAMS`] breaks the
    /// protocol and the session is closed (`ProtocolError`).
    Refuse,
}

/// Streams a peer may open under [`PeerStreams::Refuse`] (each refused) before its
/// session is closed: a few are refused politely, a flood is a protocol violation.
pub const MAX_REFUSED_STREAMS: u32 = 16;

impl Config {
    /// The default limits (documented in `docs/PROTOCOL.md`).
    pub const DEFAULT: Config = Config {
        max_frame: 64 * 1024 + 64,
        max_streams: 1024,
        stream_window: 1024 * 1024,
        session_window: 8 * 1024 * 1024,
        max_header_bytes: 32 * 1024,
        ping_interval: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(20),
        max_peer_window: 16 * 1024 * 1024,
        max_session_queue: 8 * 1024 * 1024,
        max_control_queue: 4 * 1024 * 1024,
        peer_streams: PeerStreams::Accept,
    };

    /// The peer's announced limits, clamped to what this side is willing to honour:
    /// windows to [`Config::max_peer_window`], and frame size, header block and stream
    /// count to our own limits (or the defaults, if ours are smaller), so that nothing
    /// the peer announces makes us queue, batch or open more than we would accept.
    pub fn clamp_peer(&self, peer: Limits) -> Limits {
        let own = |ours: u32, default: u32| ours.max(default);
        Limits {
            max_frame: peer.max_frame.min(own(self.max_frame, Config::DEFAULT.max_frame)),
            max_streams: peer.max_streams.min(own(self.max_streams, Config::DEFAULT.max_streams)),
            stream_window: peer.stream_window.min(self.max_peer_window),
            session_window: peer.session_window.min(self.max_peer_window),
            max_header_bytes: peer.max_header_bytes.min(own(self.max_header_bytes, Config::DEFAULT.max_header_bytes)),
        }
    }

    /// Largest payload a data or message frame may carry under a peer's `max_frame`.
    pub(crate) fn payload_limit(max_frame: u32) -> usize {
        usize::try_from(max_frame).unwrap_or(usize::MAX).saturating_sub(crate::ids::DATA_OVERHEAD).max(1)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::DEFAULT
    }
}

/// The receive limits a side announces in its hello or welcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// See [`Config::max_frame`].
    pub max_frame: u32,
    /// See [`Config::max_streams`].
    pub max_streams: u32,
    /// See [`Config::stream_window`].
    pub stream_window: u32,
    /// See [`Config::session_window`].
    pub session_window: u32,
    /// See [`Config::max_header_bytes`].
    pub max_header_bytes: u32,
}

impl From<&Config> for Limits {
    fn from(c: &Config) -> Self {
        Limits {
            max_frame: c.max_frame,
            max_streams: c.max_streams,
            stream_window: c.stream_window,
            session_window: c.session_window,
            max_header_bytes: c.max_header_bytes,
        }
    }
}
