//! The protocol's numbers: stream ids, frame type bytes and flags, reset and close
//! codes, and the fixed sizes of frame overheads. A leaf module (it uses nothing else
//! of the crate), so that `config`, `error`, `frame`, `handshake` and `bytes_reader`
//! can all name these without importing one another in a circle.

/// Identifies a stream within a session. `0` is the session itself; streams opened by
/// the client are odd, streams opened by the server even.
pub type StreamId = u32;

/// Bytes of a data or message frame that are not payload: type, stream id, flags.
pub const DATA_OVERHEAD: usize = 1 + 4 + 1;

/// Bytes a `BATCH` frame adds: its own type and stream id, then a `len:u32` per frame.
pub const BATCH_HEADER: usize = 1 + 4;
/// Bytes a `BATCH` frame adds per inner frame (its `len:u32`).
pub const BATCH_ENTRY_OVERHEAD: usize = 4;

/// Frame type bytes.
pub mod kind {
    #![allow(missing_docs)]
    pub const HELLO: u8 = 0x01;
    pub const WELCOME: u8 = 0x02;
    pub const REFUSE: u8 = 0x03;
    pub const OPEN: u8 = 0x10;
    pub const RESPONSE: u8 = 0x11;
    pub const DATA: u8 = 0x12;
    pub const TRAILERS: u8 = 0x13;
    pub const WS_MESSAGE: u8 = 0x14;
    pub const WS_CLOSE: u8 = 0x15;
    pub const RESET: u8 = 0x16;
    pub const WINDOW: u8 = 0x17;
    pub const PING: u8 = 0x20;
    pub const PONG: u8 = 0x21;
    pub const GOAWAY: u8 = 0x22;
    pub const CLOSE: u8 = 0x23;
    pub const BATCH: u8 = 0x30;
}

/// Flag bits.
pub mod flags {
    /// OPEN, RESPONSE, DATA: this is the last frame of this side of the stream.
    pub const END: u8 = 0x01;
    /// OPEN: the stream is a WebSocket, not an HTTP exchange.
    pub const WEBSOCKET: u8 = 0x02;
    /// WS_MESSAGE: last fragment of the message.
    pub const FIN: u8 = 0x01;
    /// WS_MESSAGE: the message is binary (otherwise text).
    pub const BINARY: u8 = 0x02;
}

/// Why a stream was reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResetCode {
    /// The sender no longer wants the stream (visitor went away).
    Cancel,
    /// The stream was refused before any processing (go-away, limit).
    Refused,
    /// The stream broke the protocol.
    Protocol,
    /// Something failed inside the sender.
    Internal,
    /// The client could not reach, or lost, its origin.
    OriginUnreachable,
    /// The origin did not answer in time.
    Timeout,
    /// A message or body exceeded a size limit.
    TooLarge,
    /// A code this version does not know; treated like `Internal`.
    Other(u16),
}

/// Why a session was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseCode {
    /// Orderly close.
    Normal,
    /// The peer sent something the protocol forbids.
    ProtocolError,
    /// The peer was silent longer than the idle timeout.
    Timeout,
    /// The sender is shutting down.
    Shutdown,
    /// The peer sent beyond its credit.
    FlowControl,
    /// The peer opened more streams than allowed.
    TooManyStreams,
    /// Something failed inside the sender.
    Internal,
    /// Another session of the same client took over the name.
    Replaced,
    /// The peer sent a frame over the size limit.
    FrameTooLarge,
    /// The peer does not read what we send: more control frames waited for it than
    /// our `max_control_queue` allows.
    SlowReader,
    /// A code this version does not know.
    Other(u16),
}

macro_rules! wire_codes {
    ($ty:ident { $($name:ident = $val:expr),* $(,)? }) => {
        impl $ty {
            /// The code on the wire.
            pub fn to_u16(self) -> u16 {
                match self { $($ty::$name => $val,)* $ty::Other(v) => v }
            }
            /// The code for a wire value; unknown values are kept as `Other`.
            pub fn from_u16(v: u16) -> Self {
                match v { $($val => $ty::$name,)* v => $ty::Other(v) }
            }
        }
    };
}

wire_codes!(ResetCode { Cancel = 0, Refused = 1, Protocol = 2, Internal = 3, OriginUnreachable = 4, Timeout = 5, TooLarge = 6 });
wire_codes!(CloseCode { Normal = 0, ProtocolError = 1, Timeout = 2, Shutdown = 3, FlowControl = 4, TooManyStreams = 5, Internal = 6, Replaced = 7, FrameTooLarge = 8, SlowReader = 9 });
