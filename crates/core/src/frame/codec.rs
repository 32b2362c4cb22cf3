//! Encoding and decoding of [`Frame`]s, and the `BATCH` frame's packing and cutting.
//! Decoding never panics: every length is checked against [`DecodeLimits`] before
//! anything is allocated.

use std::borrow::Cow;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::block::ReceivedBlock;
use super::headers::{
    get_headers, header_block_len, plan_headers, put_headers, received_block, valid_method, FieldCoding, HeadPlan,
};
use super::recent::RecentValues;
use super::types::{standard_method, DecodeLimits, Frame, RequestHead, ResponseHead, StreamKind};
use crate::bytes_reader::{Reader, WriteExt};
use crate::error::DecodeError;
use crate::handshake::{Hello, RefuseReason, Welcome};
use crate::ids::{flags, kind, CloseCode, ResetCode, StreamId, BATCH_ENTRY_OVERHEAD, BATCH_HEADER, DATA_OVERHEAD};

impl Frame {
    /// Encodes the frame as one WebSocket binary message, its header fields as text
    /// (what any peer reads).
    pub fn encode(&self) -> Bytes {
        self.encode_with(FieldCoding::Text)
    }

    /// Encodes the frame as one WebSocket binary message, its header fields written as
    /// `coding` says ([`FieldCoding::Indexed`] only towards a peer that announced
    /// [`features::INDEXED_HEADERS`](crate::features::INDEXED_HEADERS)).
    pub fn encode_with(&self, coding: FieldCoding) -> Bytes {
        let Some((len, plan)) = self.sized(coding) else {
            let mut b = BytesMut::with_capacity(self.encoded_len_hint());
            self.encode_into_with(&mut b, coding);
            return b.freeze();
        };
        let mut b = BytesMut::with_capacity(len);
        self.encode_planned(&mut b, &plan);
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

    /// The exact size [`Frame::encode`] gives, for the frames a session sends without
    /// encoding them first (stream frames, heads, windows, resets, pings); `None` for
    /// the rest (the handshake's frames and batches), which are encoded when queued. A
    /// driver writes the WebSocket header from it before the frame is encoded after it
    /// (`Session::encode_message`), so it must match the encoding byte for byte,
    /// including `put_bytes16`'s and `put_headers`' cuts at `u16::MAX`.
    pub fn encoded_len(&self) -> Option<usize> {
        self.encoded_len_with(FieldCoding::Text)
    }

    /// [`Frame::encoded_len`] for [`Frame::encode_with`] and the same `coding`.
    pub fn encoded_len_with(&self, coding: FieldCoding) -> Option<usize> {
        self.sized(coding).map(|(len, _)| len)
    }

    /// [`Frame::encoded_len_with`], and the plan of the frame's header block that
    /// [`Frame::encode_planned`] follows to write exactly that many bytes.
    pub(crate) fn sized(&self, coding: FieldCoding) -> Option<(usize, HeadPlan)> {
        let (body, plan) = match self {
            Frame::Open { head, .. } => {
                let (headers, plan) = plan_headers(&head.headers, coding);
                return Some((open_len(head, headers), plan));
            }
            Frame::Response { head, .. } => {
                let (headers, plan) = plan_headers(&head.headers, coding);
                return Some((response_len(headers), plan));
            }
            Frame::Trailers { headers, .. } => plan_headers(headers, coding),
            Frame::Data { data, .. } | Frame::WsMessage { data, .. } => (1 + data.len(), HeadPlan::TEXT),
            Frame::WsClose { reason: text, .. }
            | Frame::Reset { message: text, .. }
            | Frame::Close { message: text, .. }
            | Frame::Refuse { message: text, .. } => (2 + bytes16_len(text.len()), HeadPlan::TEXT),
            Frame::GoAway { message, .. } => (4 + 2 + bytes16_len(message.len()), HeadPlan::TEXT),
            Frame::Window { .. } => (4, HeadPlan::TEXT),
            Frame::Ping(_) | Frame::Pong(_) => (8, HeadPlan::TEXT),
            Frame::Hello(_) | Frame::Welcome(_) | Frame::Batch(_) => return None,
        };
        Some((FRAME_HEADER + body, plan))
    }

    /// The plan of the frame's header block, if it has one.
    fn head_plan(&self, coding: FieldCoding) -> HeadPlan {
        match self {
            Frame::Open { head: RequestHead { headers, .. }, .. }
            | Frame::Response { head: ResponseHead { headers, .. }, .. }
            | Frame::Trailers { headers, .. } => plan_headers(headers, coding).1,
            _ => HeadPlan::TEXT,
        }
    }

    /// Appends the encoded frame to `b`, except the payload of a DATA or WS_MESSAGE
    /// frame of at least `apart_from` bytes, which it returns (as it is, not copied)
    /// to be sent right after: the message is what `b` got, then that payload.
    /// A DATA or WS_MESSAGE frame, every message of a body or a WebSocket, is written
    /// here without the general encoder's matches (type, id, body) and with one
    /// capacity check for its 6-byte head (~0.03k instructions a frame; the bytes are
    /// `encode_planned`'s). Always inlined in the native build: a batch's last frame
    /// and a frame alone both call it, and out of line (`#[inline]` was not enough)
    /// the call cost the lone frame's usual path, a WebSocket echo's message, ~0.02k;
    /// not in the wasm build, whose size it would grow (+127 bytes gzipped).
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    pub(crate) fn encode_apart(self, b: &mut BytesMut, apart_from: usize, plan: &HeadPlan) -> Bytes {
        let (ty, id, f, data) = match self {
            Frame::Data { id, end, data } => (kind::DATA, id, if end { flags::END } else { 0 }, data),
            Frame::WsMessage { id, binary, fin, data } => {
                (kind::WS_MESSAGE, id, if fin { flags::FIN } else { 0 } | if binary { flags::BINARY } else { 0 }, data)
            }
            f => {
                f.encode_planned(b, plan);
                return Bytes::new();
            }
        };
        let [i0, i1, i2, i3] = id.to_be_bytes();
        b.put_slice(&[ty, i0, i1, i2, i3, f]);
        if data.len() >= apart_from {
            return data;
        }
        b.put_slice(&data);
        Bytes::new()
    }

    pub(crate) fn encoded_len_hint(&self) -> usize {
        match self {
            Frame::Data { data, .. } | Frame::WsMessage { data, .. } => DATA_OVERHEAD + data.len(),
            Frame::Open { head, .. } => 16 + head.method.len() + head.target.len() + header_block_len(&head.headers),
            Frame::Response { head, .. } => 12 + header_block_len(&head.headers),
            Frame::Batch(frames) => {
                BATCH_HEADER + frames.iter().map(|f| BATCH_ENTRY_OVERHEAD + f.encoded_len_hint()).sum::<usize>()
            }
            _ => 64,
        }
    }

    /// Appends the encoded frame to `b`, its header fields as text.
    pub fn encode_into(&self, b: &mut BytesMut) {
        self.encode_into_with(b, FieldCoding::Text);
    }

    /// Appends the encoded frame to `b`, its header fields written as `coding` says.
    pub fn encode_into_with(&self, b: &mut BytesMut, coding: FieldCoding) {
        self.encode_planned(b, &self.head_plan(coding));
    }

    /// Appends the encoded frame to `b`, its header block written as `plan` (from
    /// [`Frame::sized`] for this frame) says.
    pub(crate) fn encode_planned(&self, b: &mut BytesMut, plan: &HeadPlan) {
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
                put_headers(b, &head.headers, plan);
            }
            Frame::Response { head, end, .. } => {
                b.put_u8(if *end { flags::END } else { 0 });
                b.put_u16(head.status);
                put_headers(b, &head.headers, plan);
            }
            Frame::Data { data, end, .. } => {
                b.put_u8(if *end { flags::END } else { 0 });
                b.put_slice(data);
            }
            Frame::Trailers { headers, .. } => put_headers(b, headers, plan),
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
                    f.encode_into_with(b, plan.coding());
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
        Frame::decode_recent(msg, limits, None)
    }

    /// [`Frame::decode`], with a session's recent header values.
    pub(crate) fn decode_recent(
        msg: Bytes,
        limits: &DecodeLimits,
        recent: Option<&mut RecentValues>,
    ) -> Result<Frame, DecodeError> {
        if msg.len() > limits.max_frame {
            return Err(DecodeError::FrameTooLarge { size: msg.len(), limit: limits.max_frame });
        }
        Frame::decode_one(msg, limits, true, recent)
    }

    /// `batch_ok` is false inside a batch: batches do not nest.
    fn decode_one(
        msg: Bytes,
        limits: &DecodeLimits,
        batch_ok: bool,
        mut recent: Option<&mut RecentValues>,
    ) -> Result<Frame, DecodeError> {
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
            kind::HELLO => Frame::Hello(Box::new(Hello::decode_body(&mut r)?)),
            kind::WELCOME => Frame::Welcome(Box::new(Welcome::decode_body(&mut r)?)),
            kind::REFUSE => Frame::Refuse {
                reason: RefuseReason::from_u16(r.u16("refuse reason")?),
                message: r.str16("refuse message")?,
            },
            kind::OPEN => {
                let f = r.u8("open flags")?;
                let method = r.with16("method", method_text)?.map_err(|_| DecodeError::InvalidUtf8("method"))?;
                let target = r.str16("target")?;
                if !valid_method(&method) {
                    return Err(DecodeError::Invalid("method"));
                }
                let headers = get_headers(&mut r, limits, recent)?;
                let kind = if f & flags::WEBSOCKET != 0 { StreamKind::WebSocket } else { StreamKind::Http };
                Frame::Open { id, head: RequestHead { kind, method, target, headers }, end: f & flags::END != 0 }
            }
            kind::RESPONSE => {
                let f = r.u8("response flags")?;
                let status = r.u16("status")?;
                if !(100..=999).contains(&status) {
                    return Err(DecodeError::Invalid("status"));
                }
                let headers = get_headers(&mut r, limits, recent)?;
                Frame::Response { id, head: ResponseHead { status, headers }, end: f & flags::END != 0 }
            }
            kind::DATA => {
                let f = r.u8("data flags")?;
                Frame::Data { id, end: f & flags::END != 0, data: r.rest() }
            }
            kind::TRAILERS => Frame::Trailers { id, headers: get_headers(&mut r, limits, recent)? },
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
                    frames.push(Frame::decode_one(entry, limits, false, recent.as_deref_mut())?);
                }
                Frame::Batch(frames)
            }
            other => return Err(DecodeError::UnknownType(other)),
        };
        r.finish("frame")?;
        Ok(frame)
    }
}

/// A RESPONSE frame decoded with its header block kept as bytes: the frame
/// [`Frame::decode`] gives as `Frame::Response`, when its fields decode to themselves
/// ([`ReceivedBlock`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseBlockFrame {
    /// Stream.
    pub id: StreamId,
    /// HTTP status code (100-999).
    pub status: u16,
    /// The fields.
    pub block: ReceivedBlock,
    /// No body follows.
    pub end: bool,
}

impl ResponseBlockFrame {
    /// `msg` as a RESPONSE whose block is kept as bytes, or `None` for any other frame
    /// and for a RESPONSE that [`Frame::decode`] would refuse, or whose fields it would
    /// change (drop, lowercase) or take from elsewhere: such a message is decoded with
    /// [`Frame::decode`] as before. What this gives is what `Frame::decode` gives for
    /// the same message, the fields as [`ReceivedBlock::headers`] lists them.
    pub fn decode(msg: &Bytes, limits: &DecodeLimits) -> Option<ResponseBlockFrame> {
        let &[ty, i0, i1, i2, i3, f, s0, s1, ..] = msg.as_ref() else { return None };
        let id = u32::from_be_bytes([i0, i1, i2, i3]);
        let status = u16::from_be_bytes([s0, s1]);
        if ty != kind::RESPONSE || id == 0 || !(100..=999).contains(&status) || msg.len() > limits.max_frame {
            return None;
        }
        let block = received_block(msg, 8, limits)?;
        Some(ResponseBlockFrame { id, status, block, end: f & flags::END != 0 })
    }
}

/// An OPEN's method: a standard one as its static text, with no UTF-8 check of its
/// bytes and no allocation (~0.05k instructions a request), any other checked and
/// copied.
pub(super) fn method_text(raw: &[u8]) -> Result<Cow<'static, str>, std::str::Utf8Error> {
    match standard_method(raw) {
        Some(known) => Ok(Cow::Borrowed(known)),
        None => std::str::from_utf8(raw).map(|m| Cow::Owned(m.to_owned())),
    }
}

/// A frame's type and stream id.
const FRAME_HEADER: usize = 1 + 4;

/// The encoded size of an OPEN frame of `head`, its header block taking `block_len`
/// bytes (as planned for the coding it is written with).
pub(crate) fn open_len(head: &RequestHead, block_len: usize) -> usize {
    FRAME_HEADER + 1 + bytes16_len(head.method.len()) + bytes16_len(head.target.len()) + block_len
}

/// Bytes a RESPONSE takes whose header block takes `block_len`: its status and flags.
pub(crate) fn response_len(block_len: usize) -> usize {
    FRAME_HEADER + 1 + 2 + block_len
}

/// Bytes `put_bytes16` writes for `n` bytes (it cuts what is over `u16::MAX`).
pub(super) fn bytes16_len(n: usize) -> usize {
    2 + n.min(usize::from(u16::MAX))
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

/// If `msg` starts with a well-formed `BATCH` header (type and stream id 0), its body:
/// `msg` moved past that header, not a slice of it (which took a reference to the
/// buffer and dropped `msg`'s, two atomic operations per batch); else `msg` as it came.
pub(crate) fn batch_body(mut msg: Bytes) -> Result<Bytes, Bytes> {
    if msg.len() >= BATCH_HEADER && msg[0] == kind::BATCH && msg[1..BATCH_HEADER] == [0; 4] {
        msg.advance(BATCH_HEADER);
        Ok(msg)
    } else {
        Err(msg)
    }
}

impl Frame {
    /// Decodes a frame found inside a batch (where a batch is refused).
    pub(crate) fn decode_inner(
        msg: Bytes,
        limits: &DecodeLimits,
        recent: Option<&mut RecentValues>,
    ) -> Result<Frame, DecodeError> {
        Frame::decode_one(msg, limits, false, recent)
    }
}

/// Packs already encoded frames into one `BATCH` message, which the caller keeps
/// within the peer's `max_frame` (each entry costs [`BATCH_ENTRY_OVERHEAD`] bytes
/// more than the frame, the batch [`BATCH_HEADER`]).
pub(crate) fn put_batch_entry(b: &mut BytesMut, frame: &[u8]) {
    b.put_u32(u32::try_from(frame.len()).unwrap_or(u32::MAX));
    b.put_slice(frame);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::types::{RequestHead, StreamKind};

    fn open(method: &'static str) -> Frame {
        let head = RequestHead { kind: StreamKind::Http, method: method.into(), target: "/".into(), headers: vec![] };
        Frame::Open { id: 1, head, end: true }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn methods_known_or_not_decode_as_sent_and_bad_ones_are_refused() {
        let limits = DecodeLimits::default();
        for m in
            ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE", "get", "PURGE", "M-SEARCH"]
        {
            assert_eq!(Frame::decode(open(m).encode(), &limits), Ok(open(m)), "{m}");
        }
        // The method's bytes start after the type, the stream id, the flags and the length.
        let mut bytes = open("GET").encode().to_vec();
        bytes[8] = 0xff;
        assert_eq!(Frame::decode(bytes.clone().into(), &limits), Err(DecodeError::InvalidUtf8("method")));
        bytes[8] = b' ';
        assert_eq!(Frame::decode(bytes.into(), &limits), Err(DecodeError::Invalid("method")));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn targets_decode_as_sent_and_bad_utf8_is_refused() {
        let limits = DecodeLimits::default();
        let with_target = |target: &str| {
            let head =
                RequestHead { kind: StreamKind::Http, method: "GET".into(), target: target.into(), headers: vec![] };
            Frame::Open { id: 1, head, end: true }
        };
        for t in ["/", "/a?b=c", "*", "/caf\u{e9}?q=\u{1f600}", ""] {
            let encoded = with_target(t).encode();
            let decoded = Frame::decode(encoded.clone(), &limits);
            assert_eq!(decoded, Ok(with_target(t)), "{t}");
            // The target holds no reference to the frame (which would keep the
            // reader's buffer for the request's life).
            if let Ok(Frame::Open { head, .. }) = decoded {
                assert!(!encoded.as_ptr_range().contains(&head.target.as_ptr()), "{t}");
            }
        }
        // "GET" is at 8..11, the target's length at 11..13 and its bytes from 13.
        let mut bytes = with_target("/ab").encode().to_vec();
        bytes[14] = 0xc3;
        assert_eq!(Frame::decode(bytes.clone().into(), &limits), Err(DecodeError::InvalidUtf8("target")));
        bytes.truncate(14);
        assert_eq!(Frame::decode(bytes.into(), &limits), Err(DecodeError::Truncated("target")));
    }
}
