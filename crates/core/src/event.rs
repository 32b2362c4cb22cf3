//! What a [`Session`](crate::Session) reports to its driver through `poll_event`.

use bytes::Bytes;

use crate::frame::{CloseCode, Header, RawRequestHead, ReceivedBlock, RequestHead, ResetCode, ResponseHead, StreamId};
use crate::handshake::{Hello, RefuseReason, Welcome};

/// Something the driver must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Server: a client said hello. Answer with [`Session::accept`] or [`Session::refuse`].
    /// Boxed, as `Welcome`, so that every event is not as large as these (see [`crate::Frame`]).
    Hello(Box<Hello>),
    /// Client: the server accepted; streams may flow.
    Welcome(Box<Welcome>),
    /// Client: the server refused. The session is closed.
    Refused {
        /// Machine-readable reason.
        reason: RefuseReason,
        /// For people.
        message: String,
    },
    /// The peer opened a stream.
    Opened {
        /// The new stream.
        id: StreamId,
        /// Its request head.
        head: RequestHead,
        /// No request body follows.
        end: bool,
    },
    /// The peer opened an HTTP stream whose header block is kept as it came
    /// ([`Session::set_raw_request_heads`](crate::Session::set_raw_request_heads)):
    /// [`RawRequestHead::decode`] gives the [`RequestHead`] that [`Event::Opened`]
    /// would have carried.
    OpenedRaw {
        /// The new stream.
        id: StreamId,
        /// Its request head, the header block undecoded.
        head: RawRequestHead,
        /// No request body follows.
        end: bool,
    },
    /// The response head for a stream we opened.
    Response {
        /// Stream.
        id: StreamId,
        /// The head.
        head: ResponseHead,
        /// No body follows.
        end: bool,
    },
    /// The response head for an HTTP stream we opened, its fields as the frame carries
    /// them: given instead of [`Event::Response`] by a session told to
    /// ([`Session::set_response_blocks`](crate::Session::set_response_blocks)) when the fields decode to themselves
    /// ([`ReceivedBlock`]); the same head as `Response` gives.
    ResponseBlock {
        /// Stream.
        id: StreamId,
        /// HTTP status code (100-999).
        status: u16,
        /// The fields.
        block: ReceivedBlock,
        /// No body follows.
        end: bool,
    },
    /// Body bytes. Call [`Session::release`] once they are consumed.
    Data {
        /// Stream.
        id: StreamId,
        /// Bytes, possibly empty when only `end` is news.
        data: Bytes,
        /// The peer finished sending.
        end: bool,
    },
    /// Trailers; the peer finished sending.
    Trailers {
        /// Stream.
        id: StreamId,
        /// Trailer fields.
        headers: Vec<Header>,
    },
    /// A WebSocket message fragment. Call [`Session::release`] once consumed.
    WsMessage {
        /// Stream.
        id: StreamId,
        /// Binary or text.
        binary: bool,
        /// Last fragment of the message.
        fin: bool,
        /// Payload.
        data: Bytes,
    },
    /// The peer closed its side of a WebSocket.
    WsClose {
        /// Stream.
        id: StreamId,
        /// RFC 6455 code.
        code: u16,
        /// Reason.
        reason: String,
    },
    /// The peer reset a stream, or it was refused by the peer's go-away.
    Reset {
        /// Stream.
        id: StreamId,
        /// Why.
        code: ResetCode,
        /// For people.
        message: String,
    },
    /// A stream whose send was cut short by its window can take more bytes.
    Writable {
        /// Stream.
        id: StreamId,
    },
    /// The peer will accept no new streams; in-flight ones continue.
    GoAway {
        /// Why.
        code: CloseCode,
        /// For people.
        message: String,
    },
    /// The session is over. Emitted once.
    Closed {
        /// Why.
        code: CloseCode,
        /// For people.
        message: String,
        /// The peer closed it (otherwise we did, or a timeout or error did).
        by_peer: bool,
    },
}

impl Event {
    /// The stream this event is about (`None`: the whole session's), as
    /// [`crate::Frame::stream_id`] is for a frame.
    pub fn stream_id(&self) -> Option<StreamId> {
        match self {
            Event::Opened { id, .. }
            | Event::OpenedRaw { id, .. }
            | Event::Response { id, .. }
            | Event::ResponseBlock { id, .. }
            | Event::Data { id, .. }
            | Event::Trailers { id, .. }
            | Event::WsMessage { id, .. }
            | Event::WsClose { id, .. }
            | Event::Reset { id, .. }
            | Event::Writable { id } => Some(*id),
            Event::Hello(_)
            | Event::Welcome(_)
            | Event::Refused { .. }
            | Event::GoAway { .. }
            | Event::Closed { .. } => None,
        }
    }
}
