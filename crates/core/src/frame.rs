//! Frames: the unit of the protocol, one per WebSocket binary message.
//!
//! ```text
//! frame = type:u8 stream:u32 body
//! ```
//! All integers are big-endian. `docs/PROTOCOL.md` gives every body's layout; the
//! functions here are its reference implementation.
//!
//! A `BATCH` frame packs several frames into one message (`len:u32 frame` each), for a
//! peer that announced it accepts them (see [`crate::features`]).

use bytes::{BufMut, Bytes, BytesMut};
pub use http::{HeaderName, HeaderValue};

use crate::error::DecodeError;
use crate::handshake::{Hello, RefuseReason, Welcome};
use crate::wire::{Reader, WriteExt};

/// Identifies a stream within a session. `0` is the session itself; streams opened by
/// the client are odd, streams opened by the server even.
pub type StreamId = u32;

/// Bytes of a data or message frame that are not payload: type, stream id, flags.
pub const DATA_OVERHEAD: usize = 1 + 4 + 1;

/// Bytes a `BATCH` frame adds: its own type and stream id, then a `len:u32` per frame.
pub const BATCH_HEADER: usize = 1 + 4;
/// Bytes a `BATCH` frame adds per inner frame (its `len:u32`).
pub const BATCH_ENTRY_OVERHEAD: usize = 4;

/// One header, typed as the `http` crate types it (a lowercase token name; a value
/// without control bytes but tab). Every end turns headers into these anyway (hyper,
/// a JavaScript `Headers`), so the codec does it once, and a decoded value shares the
/// frame's bytes instead of being copied.
pub type Header = (HeaderName, HeaderValue);

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

/// What a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// One HTTP request and its response.
    Http,
    /// A WebSocket: an upgrade request, then messages both ways.
    WebSocket,
}

/// The head of a request: opens a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// HTTP exchange or WebSocket.
    pub kind: StreamKind,
    /// Method, e.g. `GET`.
    pub method: String,
    /// Path and query, e.g. `/a?b=c`.
    pub target: String,
    /// Every header in order, repeated ones included.
    pub headers: Vec<Header>,
}

/// The head of a response. For a WebSocket, status 101 accepts it; anything else
/// refuses it and is followed by the refusal's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// HTTP status code (100-999).
    pub status: u16,
    /// Every header in order, repeated ones included.
    pub headers: Vec<Header>,
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

/// One protocol frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// Client to server, first frame of a session.
    Hello(Hello),
    /// Server to client: the tunnel is up.
    Welcome(Welcome),
    /// Server to client: the tunnel is refused; the session ends.
    Refuse {
        /// Machine-readable reason.
        reason: RefuseReason,
        /// For people.
        message: String,
    },
    /// Opens a stream.
    Open {
        /// New stream id.
        id: StreamId,
        /// The request head.
        head: RequestHead,
        /// No body follows.
        end: bool,
    },
    /// The response head.
    Response {
        /// Stream.
        id: StreamId,
        /// The head.
        head: ResponseHead,
        /// No body follows.
        end: bool,
    },
    /// Body bytes.
    Data {
        /// Stream.
        id: StreamId,
        /// Raw bytes, may be empty.
        data: Bytes,
        /// Last frame of this side.
        end: bool,
    },
    /// Trailers; ends this side of the stream.
    Trailers {
        /// Stream.
        id: StreamId,
        /// Trailer fields.
        headers: Vec<Header>,
    },
    /// A WebSocket message or a fragment of one.
    WsMessage {
        /// Stream.
        id: StreamId,
        /// Binary (true) or text message.
        binary: bool,
        /// Last fragment of the message.
        fin: bool,
        /// Payload bytes.
        data: Bytes,
    },
    /// A WebSocket close; ends this side of the stream.
    WsClose {
        /// Stream.
        id: StreamId,
        /// RFC 6455 close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// Abandons a stream in both directions.
    Reset {
        /// Stream.
        id: StreamId,
        /// Why.
        code: ResetCode,
        /// For people.
        message: String,
    },
    /// Grants credit. `id` 0 is the session window.
    Window {
        /// Stream, or 0.
        id: StreamId,
        /// Bytes added to the window.
        increment: u32,
    },
    /// Heartbeat request.
    Ping(u64),
    /// Heartbeat answer, echoing the ping's payload.
    Pong(u64),
    /// No new streams from the receiver; streams up to `last_id` opened by the
    /// receiver are processed.
    GoAway {
        /// Highest peer-opened stream that will be processed.
        last_id: StreamId,
        /// Why.
        code: CloseCode,
        /// For people.
        message: String,
    },
    /// Ends the session.
    Close {
        /// Why.
        code: CloseCode,
        /// For people.
        message: String,
    },
    /// Several frames in one message, handled in order as if each had come alone.
    /// Never empty, never nested; only sent to a peer that accepts it.
    Batch(Vec<Frame>),
}

/// Limits applied while decoding.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest frame accepted.
    pub max_frame: usize,
    /// Largest header block accepted.
    pub max_header_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        let c = crate::Config::DEFAULT;
        DecodeLimits {
            max_frame: usize::try_from(c.max_frame).unwrap_or(usize::MAX),
            max_header_bytes: usize::try_from(c.max_header_bytes).unwrap_or(usize::MAX),
        }
    }
}

impl Frame {
    /// The stream this frame belongs to (0 for session frames).
    pub fn stream_id(&self) -> StreamId {
        match self {
            Frame::Open { id, .. }
            | Frame::Response { id, .. }
            | Frame::Data { id, .. }
            | Frame::Trailers { id, .. }
            | Frame::WsMessage { id, .. }
            | Frame::WsClose { id, .. }
            | Frame::Reset { id, .. }
            | Frame::Window { id, .. } => *id,
            _ => 0,
        }
    }

    /// Encodes the frame as one WebSocket binary message.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.encoded_len_hint());
        self.encode_into(&mut b);
        b.freeze()
    }

    /// Encodes the frame as `head` then `payload`: a DATA or WS_MESSAGE frame's
    /// payload is its data as it is (not copied); any other frame is all head.
    pub fn encode_parts(self) -> (Bytes, Bytes) {
        match self {
            Frame::Data { id, end, data } => (Frame::Data { id, end, data: Bytes::new() }.encode(), data),
            Frame::WsMessage { id, binary, fin, data } => {
                (Frame::WsMessage { id, binary, fin, data: Bytes::new() }.encode(), data)
            }
            f => (f.encode(), Bytes::new()),
        }
    }

    pub(crate) fn encoded_len_hint(&self) -> usize {
        match self {
            Frame::Data { data, .. } | Frame::WsMessage { data, .. } => DATA_OVERHEAD + data.len(),
            Frame::Open { head, .. } => 16 + head.method.len() + head.target.len() + headers_len(&head.headers),
            Frame::Response { head, .. } => 12 + headers_len(&head.headers),
            Frame::Batch(frames) => {
                BATCH_HEADER + frames.iter().map(|f| BATCH_ENTRY_OVERHEAD + f.encoded_len_hint()).sum::<usize>()
            }
            _ => 64,
        }
    }

    /// Appends the encoded frame to `b`.
    pub fn encode_into(&self, b: &mut BytesMut) {
        let (ty, id) = (self.type_byte(), self.stream_id());
        b.put_u8(ty);
        b.put_u32(id);
        match self {
            Frame::Hello(h) => h.encode_body(b),
            Frame::Welcome(w) => w.encode_body(b),
            Frame::Refuse { reason, message } => {
                b.put_u16(reason.to_u16());
                b.put_bytes16(message.as_bytes());
            }
            Frame::Open { head, end, .. } => {
                let mut f = if *end { flags::END } else { 0 };
                if head.kind == StreamKind::WebSocket {
                    f |= flags::WEBSOCKET;
                }
                b.put_u8(f);
                b.put_bytes16(head.method.as_bytes());
                b.put_bytes16(head.target.as_bytes());
                put_headers(b, &head.headers);
            }
            Frame::Response { head, end, .. } => {
                b.put_u8(if *end { flags::END } else { 0 });
                b.put_u16(head.status);
                put_headers(b, &head.headers);
            }
            Frame::Data { data, end, .. } => {
                b.put_u8(if *end { flags::END } else { 0 });
                b.put_slice(data);
            }
            Frame::Trailers { headers, .. } => put_headers(b, headers),
            Frame::WsMessage { binary, fin, data, .. } => {
                let mut f = if *fin { flags::FIN } else { 0 };
                if *binary {
                    f |= flags::BINARY;
                }
                b.put_u8(f);
                b.put_slice(data);
            }
            Frame::WsClose { code, reason, .. } => {
                b.put_u16(*code);
                b.put_bytes16(reason.as_bytes());
            }
            Frame::Reset { code, message, .. } => {
                b.put_u16(code.to_u16());
                b.put_bytes16(message.as_bytes());
            }
            Frame::Window { increment, .. } => b.put_u32(*increment),
            Frame::Ping(v) | Frame::Pong(v) => b.put_u64(*v),
            Frame::GoAway { last_id, code, message } => {
                b.put_u32(*last_id);
                b.put_u16(code.to_u16());
                b.put_bytes16(message.as_bytes());
            }
            Frame::Close { code, message } => {
                b.put_u16(code.to_u16());
                b.put_bytes16(message.as_bytes());
            }
            Frame::Batch(frames) => {
                for f in frames {
                    let at = b.len();
                    b.put_u32(0);
                    f.encode_into(b);
                    let len = u32::try_from(b.len() - at - BATCH_ENTRY_OVERHEAD).unwrap_or(u32::MAX);
                    b[at..at + BATCH_ENTRY_OVERHEAD].copy_from_slice(&len.to_be_bytes());
                }
            }
        }
    }

    fn type_byte(&self) -> u8 {
        match self {
            Frame::Hello(_) => kind::HELLO,
            Frame::Welcome(_) => kind::WELCOME,
            Frame::Refuse { .. } => kind::REFUSE,
            Frame::Open { .. } => kind::OPEN,
            Frame::Response { .. } => kind::RESPONSE,
            Frame::Data { .. } => kind::DATA,
            Frame::Trailers { .. } => kind::TRAILERS,
            Frame::WsMessage { .. } => kind::WS_MESSAGE,
            Frame::WsClose { .. } => kind::WS_CLOSE,
            Frame::Reset { .. } => kind::RESET,
            Frame::Window { .. } => kind::WINDOW,
            Frame::Ping(_) => kind::PING,
            Frame::Pong(_) => kind::PONG,
            Frame::GoAway { .. } => kind::GOAWAY,
            Frame::Close { .. } => kind::CLOSE,
            Frame::Batch(_) => kind::BATCH,
        }
    }

    /// Decodes one frame (a `BATCH` with the frames inside it). Never panics; every
    /// length is checked against `limits`.
    pub fn decode(msg: Bytes, limits: &DecodeLimits) -> Result<Frame, DecodeError> {
        if msg.len() > limits.max_frame {
            return Err(DecodeError::FrameTooLarge { size: msg.len(), limit: limits.max_frame });
        }
        Frame::decode_one(msg, limits, true)
    }

    /// `batch_ok` is false inside a batch: batches do not nest.
    fn decode_one(msg: Bytes, limits: &DecodeLimits, batch_ok: bool) -> Result<Frame, DecodeError> {
        let mut r = Reader::new(msg);
        let ty = r.u8("frame type")?;
        let id = r.u32("stream id")?;
        let needs_stream = !matches!(
            ty,
            kind::HELLO
                | kind::WELCOME
                | kind::REFUSE
                | kind::PING
                | kind::PONG
                | kind::GOAWAY
                | kind::CLOSE
                | kind::WINDOW
                | kind::BATCH
        );
        if needs_stream && id == 0 {
            return Err(DecodeError::Invalid("stream id 0 on a stream frame"));
        }
        if !needs_stream && id != 0 && ty != kind::WINDOW {
            return Err(DecodeError::Invalid("stream id on a session frame"));
        }
        let frame = match ty {
            kind::HELLO => Frame::Hello(Hello::decode_body(&mut r)?),
            kind::WELCOME => Frame::Welcome(Welcome::decode_body(&mut r)?),
            kind::REFUSE => Frame::Refuse {
                reason: RefuseReason::from_u16(r.u16("refuse reason")?),
                message: r.str16("refuse message")?,
            },
            kind::OPEN => {
                let f = r.u8("open flags")?;
                let method = r.str16("method")?;
                let target = r.str16("target")?;
                if !valid_method(&method) {
                    return Err(DecodeError::Invalid("method"));
                }
                let headers = get_headers(&mut r, limits)?;
                let kind = if f & flags::WEBSOCKET != 0 { StreamKind::WebSocket } else { StreamKind::Http };
                Frame::Open { id, head: RequestHead { kind, method, target, headers }, end: f & flags::END != 0 }
            }
            kind::RESPONSE => {
                let f = r.u8("response flags")?;
                let status = r.u16("status")?;
                if !(100..=999).contains(&status) {
                    return Err(DecodeError::Invalid("status"));
                }
                let headers = get_headers(&mut r, limits)?;
                Frame::Response { id, head: ResponseHead { status, headers }, end: f & flags::END != 0 }
            }
            kind::DATA => {
                let f = r.u8("data flags")?;
                Frame::Data { id, end: f & flags::END != 0, data: r.rest() }
            }
            kind::TRAILERS => Frame::Trailers { id, headers: get_headers(&mut r, limits)? },
            kind::WS_MESSAGE => {
                let f = r.u8("message flags")?;
                Frame::WsMessage { id, binary: f & flags::BINARY != 0, fin: f & flags::FIN != 0, data: r.rest() }
            }
            kind::WS_CLOSE => Frame::WsClose { id, code: r.u16("close code")?, reason: r.str16("close reason")? },
            kind::RESET => {
                Frame::Reset { id, code: ResetCode::from_u16(r.u16("reset code")?), message: r.str16("reset message")? }
            }
            kind::WINDOW => Frame::Window { id, increment: r.u32("window increment")? },
            kind::PING => Frame::Ping(r.u64("ping payload")?),
            kind::PONG => Frame::Pong(r.u64("pong payload")?),
            kind::GOAWAY => Frame::GoAway {
                last_id: r.u32("last stream id")?,
                code: CloseCode::from_u16(r.u16("goaway code")?),
                message: r.str16("goaway message")?,
            },
            kind::CLOSE => {
                Frame::Close { code: CloseCode::from_u16(r.u16("close code")?), message: r.str16("close message")? }
            }
            kind::BATCH if !batch_ok => return Err(DecodeError::Invalid("batch inside a batch")),
            kind::BATCH => {
                let mut entries = BatchEntries::new(r.rest());
                let mut frames = Vec::new();
                while let Some(entry) = entries.next_entry()? {
                    frames.push(Frame::decode_one(entry, limits, false)?);
                }
                Frame::Batch(frames)
            }
            other => return Err(DecodeError::UnknownType(other)),
        };
        r.finish("frame")?;
        Ok(frame)
    }
}

/// Splits the body of a `BATCH` (what follows its type and stream id) into the encoded
/// frames it carries, one at a time, so that a receiver handles each as it is cut.
#[derive(Debug)]
pub(crate) struct BatchEntries {
    r: Reader,
    seen: bool,
}

impl BatchEntries {
    pub(crate) fn new(body: Bytes) -> Self {
        BatchEntries { r: Reader::new(body), seen: false }
    }

    /// The next inner frame, still encoded; `None` after the last. An empty batch or an
    /// entry that runs past the end is an error.
    pub(crate) fn next_entry(&mut self) -> Result<Option<Bytes>, DecodeError> {
        if self.r.remaining() == 0 {
            return if self.seen { Ok(None) } else { Err(DecodeError::Invalid("empty batch")) };
        }
        self.seen = true;
        let len = usize::try_from(self.r.u32("batch entry length")?).unwrap_or(usize::MAX);
        self.r.bytes(len, "batch entry").map(Some)
    }
}

/// If `msg` is a well-formed `BATCH` header (type and stream id 0), its body.
pub(crate) fn batch_body(msg: &Bytes) -> Option<Bytes> {
    (msg.len() >= BATCH_HEADER && msg[0] == kind::BATCH && msg[1..BATCH_HEADER] == [0; 4])
        .then(|| msg.slice(BATCH_HEADER..))
}

impl Frame {
    /// Decodes a frame found inside a batch (where a batch is refused).
    pub(crate) fn decode_inner(msg: Bytes, limits: &DecodeLimits) -> Result<Frame, DecodeError> {
        Frame::decode_one(msg, limits, false)
    }
}

/// Packs already encoded frames into one `BATCH` message, which the caller keeps
/// within the peer's `max_frame` (each entry costs [`BATCH_ENTRY_OVERHEAD`] bytes
/// more than the frame, the batch [`BATCH_HEADER`]).
pub(crate) fn put_batch_entry(b: &mut BytesMut, frame: &[u8]) {
    b.put_u32(u32::try_from(frame.len()).unwrap_or(u32::MAX));
    b.put_slice(frame);
}

/// Appends `frame` to a `BATCH` being built in `b`, encoded in place (no copy of its
/// payload made first), as [`put_batch_entry`] would.
pub(crate) fn encode_batch_entry(b: &mut BytesMut, frame: &Frame) {
    let at = b.len();
    b.put_u32(0);
    frame.encode_into(b);
    let len = u32::try_from(b.len() - at - BATCH_ENTRY_OVERHEAD).unwrap_or(u32::MAX);
    b[at..at + BATCH_ENTRY_OVERHEAD].copy_from_slice(&len.to_be_bytes());
}

fn headers_len(headers: &[Header]) -> usize {
    2 + headers.iter().map(|(n, v)| 4 + n.as_str().len() + v.len()).sum::<usize>()
}

/// Encoded size of a header block, as checked against `max_header_bytes`.
pub fn header_block_len(headers: &[Header]) -> usize {
    headers_len(headers)
}

fn put_headers(b: &mut BytesMut, headers: &[Header]) {
    b.put_u16(u16::try_from(headers.len()).unwrap_or(u16::MAX));
    for (name, value) in headers.iter().take(usize::from(u16::MAX)) {
        b.put_bytes16(name.as_str().as_bytes());
        b.put_bytes16(value.as_bytes());
    }
}

fn get_headers(r: &mut Reader, limits: &DecodeLimits) -> Result<Vec<Header>, DecodeError> {
    let start = r.remaining();
    let count = usize::from(r.u16("header count")?);
    // Each header takes at least 4 bytes: refuse impossible counts before allocating.
    if count.saturating_mul(4) > r.remaining() {
        return Err(DecodeError::Truncated("headers"));
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let name = r.bytes16("header name")?;
        let value = r.bytes16("header value")?;
        match (header_name(&name), HeaderValue::from_maybe_shared(value.clone())) {
            (Ok(name), Ok(value)) => headers.push((name, value)),
            // What the wire allows but HTTP cannot carry (a separator in a name, a
            // control byte in a value) is dropped here, as either end's HTTP stack
            // would drop it; what the wire forbids is an error.
            _ if !valid_header_name(&name) => return Err(DecodeError::Invalid("header name")),
            _ if !valid_header_value(&value) => return Err(DecodeError::Invalid("header value")),
            _ => {}
        }
        let used = start - r.remaining();
        if used > limits.max_header_bytes {
            return Err(DecodeError::HeadersTooLarge { size: used, limit: limits.max_header_bytes });
        }
    }
    Ok(headers)
}

/// `X-Forwarded-For`: the server adds it to every request (the visitor's address).
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`: the server adds it to every request (`http` or `https`).
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`: the server adds it to every request (the public host).
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Names every request carries, decoded to these shared constants instead of being
/// parsed and allocated each time (`HeaderName` allocates any name outside its
/// standard set).
const FORWARDED_NAMES: [HeaderName; 3] = [X_FORWARDED_FOR, X_FORWARDED_PROTO, X_FORWARDED_HOST];

fn header_name(name: &[u8]) -> Result<HeaderName, http::header::InvalidHeaderName> {
    match FORWARDED_NAMES.iter().find(|n| n.as_str().as_bytes() == name) {
        Some(known) => Ok(known.clone()),
        None => HeaderName::from_bytes(name),
    }
}

/// A method is one or more visible ASCII characters.
fn valid_method(method: &str) -> bool {
    !method.is_empty() && method.bytes().all(|c| c.is_ascii_graphic())
}

/// A header name is one or more visible ASCII characters other than `:`.
fn valid_header_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&c| c.is_ascii_graphic() && c != b':')
}

/// A header value is any bytes but CR, LF and NUL.
fn valid_header_value(value: &[u8]) -> bool {
    !value.iter().any(|&c| c == b'\r' || c == b'\n' || c == 0)
}

fn fits16(len: usize) -> bool {
    len <= usize::from(u16::MAX)
}

/// Checks, before sending, what the peer's decoder would reject, so that a bad head
/// from the application fails one command instead of closing the session.
pub(crate) fn check_headers(headers: &[Header]) -> Result<(), &'static str> {
    if !fits16(headers.len()) {
        return Err("more than 65535 headers");
    }
    // The types make names and values valid; only their lengths are left to check.
    for (name, value) in headers {
        if !fits16(name.as_str().len()) {
            return Err("header name");
        }
        if !fits16(value.len()) {
            return Err("header value");
        }
    }
    Ok(())
}

/// See [`check_headers`].
pub(crate) fn check_request_head(head: &RequestHead) -> Result<(), &'static str> {
    if !valid_method(&head.method) || !fits16(head.method.len()) {
        return Err("method");
    }
    if !fits16(head.target.len()) {
        return Err("target longer than 65535 bytes");
    }
    check_headers(&head.headers)
}

/// See [`check_headers`].
pub(crate) fn check_response_head(head: &ResponseHead) -> Result<(), &'static str> {
    if !(100..=999).contains(&head.status) {
        return Err("status");
    }
    check_headers(&head.headers)
}
