//! The localtunnels protocol, sans-IO.
//!
//! A client and a server exchange [`Frame`]s, one per WebSocket binary message (or
//! several packed in a `BATCH`, for a peer that accepts them), over one WebSocket that
//! the client opened. This crate encodes and decodes those frames
//! and runs the [`Session`] state machine: handshake, multiplexed streams with flow
//! control, heartbeats, go-away and close, and the client's [`ClientLifecycle`]
//! (dial, hello, reconnect with backoff, give up). It owns no socket, clock, thread or
//! executor: bytes come in, frames go out, time is passed in. The same code runs under
//! tokio (server, native client) and in a browser tab (the wasm client).
//!
//! The wire format is specified in `docs/PROTOCOL.md`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bytes_reader;
mod config;
mod error;
pub mod error_page;
mod event;
mod frame;
mod handshake;
mod idmap;
mod ids;
pub mod inspect;
mod lifecycle;
mod relay;
mod session;
mod stream;
mod time;

pub use config::{Config, Limits, PeerStreams, MAX_REFUSED_STREAMS};
pub use error::{DecodeError, OpenError, ProtocolError, StreamError};
pub use event::Event;
pub use frame::{
    flags, header_block_len, is_te_trailers, kind, BlockError, CloseCode, DecodeLimits, FieldCoding, Fields, Frame,
    Header, HeaderBlock, HeaderName, HeaderValue, OpenFields, RawRequestHead, ReceivedBlock, RequestHead, ResetCode,
    ResponseBlockFrame, ResponseHead, SentBlock, StreamId, StreamKind, XForwarded, BATCH_ENTRY_OVERHEAD, BATCH_HEADER,
    DATA_OVERHEAD, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO,
};
pub use handshake::{features, Hello, RefuseReason, Welcome, CONTROL_PATH, HELLO_MAGIC, PROTOCOL_VERSION, SUBPROTOCOL};
pub use lifecycle::{Action, ClientLifecycle, GiveUp, Policy};
pub use relay::{ws_close, WsFragment, WsMessageCheck, WsViolation, DEFAULT_MAX_WS_MESSAGE};
pub use session::{OutMessage, Role, Session};
pub use time::Instant;
