//! A sans-IO HTTP/1.x codec: message heads parsed with `httparse` straight into the
//! tunnel's header types ([`head`]), how a message's body is delimited (RFC 9112 §6.3,
//! [`framing`]), and chunked transfer coding both ways ([`chunked`]). The origin leg's
//! usual response head, and the usual request head, are read by a walk of our own
//! instead (`head_walk`, held to httparse's reading; [`origin_head`], [`head`]).
//!
//! Nothing here reads a socket or a clock: bytes come in as a `BytesMut` the caller
//! filled, parsed heads and body pieces go out (sharing the buffer's memory, not
//! copied), and what to write is appended to a buffer the caller sends. The server's
//! HTTP/1 visitor path and the client's origin leg both use it. Its rules follow
//! hyper's HTTP/1 code (the differential test `tests/http1_differential.rs` holds the
//! server's path to hyper's answers), so a message is read and framed the same way
//! whichever path serves it.
//!
//! Every bound is explicit ([`HeadLimits`], [`chunked::ChunkLimits`]); malformed
//! input is an error value, never a panic.

pub mod chunked;
pub mod field_cache;
pub mod framing;
pub mod head;
mod head_walk;
pub mod origin;
pub mod origin_head;
mod repeat_head;
mod target;

pub use chunked::{ChunkError, ChunkLimits, ChunkedDecoder, Decoded};
pub use field_cache::FieldCache;
pub use framing::{request_framing, response_framing, BodyDecoder, BodyLength, FramingError, RequestFraming};
pub use head::{
    parse_request, parse_request_cached, parse_response, parse_response_cached, HeadError, HeadLimits, ParsedRequest,
    ParsedResponse,
};
pub use origin_head::{parse_origin_response, BlockResponse, OriginHead};
