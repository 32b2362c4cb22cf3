//! The request inspector's store, sans-IO: what passed through a tunnel (HTTP
//! exchanges and WebSocket sessions), bounded by total bytes, oldest evicted first.
//!
//! Shells (the native client, the wasm client) copy what passes into it; they never
//! wait on it. A body is captured up to [`InspectConfig::body_limit`] bytes and marked
//! truncated past that, so a large download costs one bounded copy of its first bytes.
//! What an entry keeps (its heads' fields as they are, its bodies' first bytes) lives in the
//! store's one ring of bytes, let go from its oldest end, and is parsed back only when read.
//! The wall-clock start of an entry (`start_unix_nanos`) and the monotonic time of
//! each step ([`Instant`]) are passed in, as everywhere in the core.
//!
//! Entries render as JSON in the shape of ngrok's agent API ([`json`]), so both
//! clients and the agent API server give the same records.

mod body;
mod head;
pub mod json;
mod record;
mod ring;
mod store;
mod time;

pub use body::BodyCapture;
pub use head::{Block, Edits, HeadFields};
pub use record::{BodyOf, Direction, Exchange, HttpEntry, HttpRequest, HttpResponse, WsMessage, WsSession, WsShared};
pub use store::{Entry, EntryId, InspectConfig, Store};
pub use time::rfc3339;
