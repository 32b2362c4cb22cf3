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
//!
//! The frame types are in `types`, their encoding in `codec`, header blocks in
//! `headers` (the static table of their indexed names and fields in `table`, the
//! values a session's decoder keeps in `recent`); the numbers (ids, type bytes, flags, codes) in the leaf module
//! `crate::ids`, re-exported here.

mod block;
mod codec;
mod headers;
mod open_fields;
mod open_raw;
mod recent;
#[cfg(feature = "indexed-headers")]
mod table;
#[cfg(not(feature = "indexed-headers"))]
#[path = "table_text.rs"]
mod table;
mod types;

pub use block::{BlockError, Fields, HeaderBlock, ReceivedBlock, SentBlock};
pub use codec::ResponseBlockFrame;
pub(crate) use codec::{batch_body, open_len, put_batch_entry, response_len, BatchEntries};
pub(crate) use headers::{check_headers, check_request_line, plan_checked, HeadPlan};
pub use headers::{
    header_block_len, is_te_trailers, FieldCoding, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO,
};
pub(crate) use open_fields::set_id;
pub use open_fields::{OpenFields, XForwarded};
pub use open_raw::RawRequestHead;
pub(crate) use recent::RecentValues;
pub use types::{DecodeLimits, Frame, Header, HeaderName, HeaderValue, RequestHead, ResponseHead, StreamKind};

pub use crate::ids::{flags, kind, CloseCode, ResetCode, StreamId, BATCH_ENTRY_OVERHEAD, BATCH_HEADER, DATA_OVERHEAD};
