//! Errors, one enum per operation.

use crate::ids::{CloseCode, StreamId};

/// A received frame could not be decoded. Decoding never panics: every malformed,
/// truncated or oversized input ends here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame is empty or ends inside a field.
    #[error("frame truncated while reading {0}")]
    Truncated(&'static str),
    /// The frame type byte is not one this version knows.
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    /// A field that must be UTF-8 is not.
    #[error("{0} is not valid UTF-8")]
    InvalidUtf8(&'static str),
    /// The frame continues after its last field.
    #[error("trailing bytes after {0}")]
    TrailingBytes(&'static str),
    /// The frame is larger than the negotiated maximum.
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    FrameTooLarge {
        /// Size of the received frame.
        size: usize,
        /// The configured maximum.
        limit: usize,
    },
    /// A header block is larger than `Config::max_header_bytes`.
    #[error("header block of {size} bytes exceeds the limit of {limit}")]
    HeadersTooLarge {
        /// Size of the header block.
        size: usize,
        /// The configured maximum.
        limit: usize,
    },
    /// A field holds a value the protocol does not allow.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// A hello that does not start with the protocol magic: not a localtunnels peer.
    #[error("not a localtunnels hello (bad magic)")]
    BadMagic,
}

/// The peer broke the protocol; the session is closed with the given code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A frame could not be decoded.
    #[error("malformed frame: {0}")]
    Decode(#[from] DecodeError),
    /// A frame arrived that is not allowed in the current state.
    #[error("unexpected frame: {0}")]
    Unexpected(&'static str),
    /// The peer sent more than its credit allowed.
    #[error("flow control violated on stream {0}")]
    FlowControl(StreamId),
    /// The peer opened more streams than we allow.
    #[error("too many concurrent streams (limit {0})")]
    TooManyStreams(u32),
    /// The peer used a stream id it may not use.
    #[error("invalid stream id {0}")]
    BadStreamId(StreamId),
    /// The peer (`clients` or `servers`) kept opening streams this side refuses
    /// ([`PeerStreams::Refuse`](crate::PeerStreams::Refuse)).
    #[error("{0} may not open streams")]
    StreamsRefused(&'static str),
}

impl ProtocolError {
    /// The session close code this error is reported with.
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::Decode(DecodeError::FrameTooLarge { .. }) => CloseCode::FrameTooLarge,
            ProtocolError::FlowControl(_) => CloseCode::FlowControl,
            ProtocolError::TooManyStreams(_) => CloseCode::TooManyStreams,
            _ => CloseCode::ProtocolError,
        }
    }
}

/// A new stream could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The handshake has not completed yet.
    #[error("the session is not established")]
    NotEstablished,
    /// Either side announced go-away: no new streams.
    #[error("the session is going away")]
    GoingAway,
    /// The session is closed.
    #[error("the session is closed")]
    Closed,
    /// The peer's concurrent stream limit is reached.
    #[error("the peer's limit of {0} concurrent streams is reached")]
    TooManyStreams(u32),
    /// The head holds something the protocol cannot carry (an empty method, a header
    /// name with `:`, a value with CR, LF or NUL, a field over 65535 bytes).
    #[error("invalid request head: {0}")]
    InvalidHead(&'static str),
    /// The head does not fit in a frame or exceeds the header limit.
    #[error("request head too large ({size} bytes, limit {limit})")]
    HeadTooLarge {
        /// Encoded size.
        size: usize,
        /// Limit.
        limit: usize,
    },
}

/// An operation on an existing stream failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// No such live stream (never opened, finished or reset).
    #[error("stream {0} is not open")]
    UnknownStream(StreamId),
    /// This half of the stream was already ended.
    #[error("stream {0} already finished sending")]
    AlreadyFinished(StreamId),
    /// The operation does not fit the stream's kind or state (e.g. a WebSocket message
    /// on an HTTP stream, or a second response head).
    #[error("{what} not allowed on stream {id} in its current state")]
    InvalidState {
        /// The stream.
        id: StreamId,
        /// What was attempted.
        what: &'static str,
    },
    /// The head or trailers hold something the protocol cannot carry (see
    /// [`OpenError::InvalidHead`]).
    #[error("invalid head on stream {id}: {what}")]
    InvalidHead {
        /// The stream.
        id: StreamId,
        /// What is wrong.
        what: &'static str,
    },
    /// The head does not fit in a frame or exceeds the header limit.
    #[error("head too large ({size} bytes, limit {limit})")]
    HeadTooLarge {
        /// Encoded size.
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// The session is closed.
    #[error("the session is closed")]
    Closed,
}
