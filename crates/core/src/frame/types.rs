//! The frame types: [`Frame`] and the heads and headers it carries, and the limits
//! applied while decoding them. Encoding and decoding are in `codec`, header blocks in
//! `headers`.

use std::borrow::Cow;

use bytes::Bytes;
pub use http::{HeaderName, HeaderValue};

use crate::handshake::{Hello, RefuseReason, Welcome};
use crate::ids::{CloseCode, ResetCode, StreamId};

/// One header, typed as the `http` crate types it (a lowercase token name; a value
/// without control bytes but tab). Every end turns headers into these anyway (hyper,
/// a JavaScript `Headers`), so the codec does it once, and a decoded value shares the
/// frame's bytes instead of being copied.
pub type Header = (HeaderName, HeaderValue);

/// What a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// One HTTP request and its response.
    Http,
    /// A WebSocket: an upgrade request, then messages both ways.
    WebSocket,
}

/// The head of a request: opens a stream.
///
/// A standard method is static text (`Cow::Borrowed`): no allocation and free per
/// request on either end (docs/BENCHMARKS.md, fifteenth round, for why the target stays
/// a `String`: a `Bytes` cut from the frame held the reader's buffer, a larger head made
/// the moves of a queued frame `memcpy` calls, an inline string cost more than it saved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// HTTP exchange or WebSocket.
    pub kind: StreamKind,
    /// Method, e.g. `GET` ([`RequestHead::method_of`] borrows a standard one).
    pub method: Cow<'static, str>,
    /// Path and query, e.g. `/a?b=c`.
    pub target: String,
    /// Every header in order, repeated ones included.
    pub headers: Vec<Header>,
}

impl RequestHead {
    /// `method` as a head's method: one of the nine standard methods as static text
    /// (no allocation), any other copied.
    pub fn method_of(method: &http::Method) -> Cow<'static, str> {
        match standard_method(method.as_str().as_bytes()) {
            Some(known) => Cow::Borrowed(known),
            None => Cow::Owned(method.as_str().to_owned()),
        }
    }
}

/// The standard method spelled by `raw`, as static text.
pub(crate) fn standard_method(raw: &[u8]) -> Option<&'static str> {
    Some(match raw {
        b"GET" => "GET",
        b"POST" => "POST",
        b"HEAD" => "HEAD",
        b"PUT" => "PUT",
        b"DELETE" => "DELETE",
        b"OPTIONS" => "OPTIONS",
        b"PATCH" => "PATCH",
        b"CONNECT" => "CONNECT",
        b"TRACE" => "TRACE",
        _ => return None,
    })
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

/// One protocol frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// Client to server, first frame of a session. Boxed, as `Welcome`: once per
    /// session, they would otherwise make every frame as large as they are (a frame is
    /// moved several times on its way in and out; 224 bytes were a `memcpy` call each).
    Hello(Box<Hello>),
    /// Server to client: the tunnel is up.
    Welcome(Box<Welcome>),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn a_method_keeps_its_text_and_a_standard_one_is_borrowed() {
        let standard = ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE"];
        for (m, borrowed) in standard.iter().map(|m| (*m, true)).chain([("PURGE", false), ("M-SEARCH", false)]) {
            let method = http::Method::from_bytes(m.as_bytes()).expect("a token");
            let text = RequestHead::method_of(&method);
            assert_eq!(text, m);
            assert_eq!(matches!(text, Cow::Borrowed(_)), borrowed, "{m}");
        }
    }
}
