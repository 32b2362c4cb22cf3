//! The tokio shell around the localtunnels core, shared by the server and the native
//! client: a [`Connection`] drives a core `Session` over a WebSocket, [`StreamHandle`]s
//! carry one exchange each, [`http`] holds the proxy header rules both ends apply and
//! [`websocket`] bridges a real WebSocket and a stream, [`h1`] is the sans-IO HTTP/1
//! codec of both ends' lean HTTP/1 paths, [`ws_codec`] is the sans-IO WebSocket codec
//! and [`ws_io`] runs it on a socket, [`lazy_deadline`] is the cheap timer they share,
//! [`timers`] is every timer of both (tokio's, or a lean runtime's timerfd), and
//! [`turn_clock`] lends a reader turn's clock reading to the streams that turn runs.

#![forbid(unsafe_code)]

pub mod after_write;
mod body;
mod conn;
mod conn_reader;
mod conn_tasks;
mod conn_writer;
pub mod direct;
pub mod h1;
pub mod http;
pub mod lazy_deadline;
pub mod mono_nanos;
mod rewind;
mod stream;
mod stream_queue;
pub mod timers;
pub mod turn_clock;
pub mod websocket;
pub mod ws_codec;
pub mod ws_io;

pub use after_write::after_write;
pub use body::{pump_body, BodyError, BodyTap, StreamBody};
pub use conn::open::OpenWithinError;
pub use conn::{ConnEvent, ConnEvents, Connection, IncomingHandler, IncomingRawHandler, StreamFuture};
pub use rewind::Rewind;
pub use stream::{StreamEvent, StreamHandle, StreamReceiver, StreamSender};

/// The control endpoint's path and subprotocol, defined by the core for every side.
pub use localtunnels_core::{CONTROL_PATH, SUBPROTOCOL};
