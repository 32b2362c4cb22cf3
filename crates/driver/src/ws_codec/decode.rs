//! Bytes in, messages out: [`WsDecoder`] parses frame headers, checks the masking
//! rule, the size limit and the control-frame rules, unmasks payloads in place and
//! joins fragments.

use bytes::{Buf, BytesMut};
use localtunnels_core::{flags, kind, BATCH_ENTRY_OVERHEAD, BATCH_HEADER};

use super::{
    apply_mask, Role, WsError, WsMessage, MAX_CONTROL_PAYLOAD, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG,
    OP_TEXT,
};

/// Room a read makes when too little is left; an idle connection holds about this
/// much. Larger reads move no more bytes per second, and each buffer stays alive while
/// any payload read into it does (docs/BENCHMARKS.md).
const READ_SIZE: usize = 16 * 1024;
/// Below this much room left in the buffer, a read first makes more.
const MIN_ROOM: usize = 4 * 1024;
/// With [`WsDecoder::set_frame_sized`] on, after a frame of at least this many bytes
/// (a large body's full DATA frames) an empty buffer is made as large as that frame:
/// a run of such frames is read one frame to a buffer, none of it copied
/// (docs/BENCHMARKS.md, twenty-fourth round, flowbuf).
const SIZED_FROM: usize = 64 * 1024;
/// With [`WsDecoder::split_batches`] on, a `BATCH` cut by the buffer's end is split
/// only when the frames read whole before the cut come to this many bytes: the copy
/// it saves (~0.5 instructions a byte under callgrind) must outweigh the second
/// message's cost in the reader and the session (~0.6k instructions; docs/BENCHMARKS.md,
/// twenty-fifth round, straddle).
const SPLIT_FROM: usize = 4 * 1024;

/// A parsed frame header.
struct Header {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    /// Header bytes, mask key included.
    header_len: usize,
    payload_len: u64,
}

/// Decodes the frames one end of a WebSocket receives into whole messages.
///
/// Feed it with [`read_buffer`](Self::read_buffer) (the socket is read straight into
/// it) or [`push`](Self::push), then drain [`poll_message`](Self::poll_message) until it
/// gives `None`. Once it gives an error the WebSocket is broken; feed it nothing more.
#[derive(Debug)]
pub struct WsDecoder {
    role: Role,
    max_message: usize,
    buf: BytesMut,
    /// Fragments of a message still missing its last one, and whether it is binary.
    partial: Option<(bool, BytesMut)>,
    /// Bytes, header included, of the last frame the general path decoded.
    last: usize,
    /// A new buffer may be made as large as the last frame ([`Self::set_frame_sized`]).
    frame_sized: bool,
    /// The largest `BATCH` message [`Self::split_batches`] cuts; 0 while off.
    split_up_to: usize,
    /// The rest of a `BATCH` cut by the buffer's end, which the buffer starts with.
    rest: Option<Rest>,
}

/// What is left of a `BATCH` message whose whole frames before the read buffer's end
/// went out as a `BATCH` of their own ([`WsDecoder::split_batches`]): the buffer
/// starts with a `BATCH` header written here, then the message's payload from its
/// first frame not all read, still masked as it came.
#[derive(Debug)]
struct Rest {
    /// Bytes of the buffer the rest takes once all of it is read.
    end: usize,
    /// The mask key, turned to line up with the rest's first payload byte.
    key: Option<[u8; 4]>,
    /// Bytes, header included, of the whole WebSocket frame (for [`WsDecoder::last`]).
    total: usize,
}

impl WsDecoder {
    /// A decoder for `role`'s end that refuses messages over `max_message` bytes.
    pub fn new(role: Role, max_message: usize) -> WsDecoder {
        WsDecoder {
            role,
            max_message,
            buf: BytesMut::new(),
            partial: None,
            last: 0,
            frame_sized: false,
            split_up_to: 0,
            rest: None,
        }
    }

    /// Lets the decoder hand a tunnel's `BATCH` message of at most `max_frame` bytes
    /// (the session's own limit for one) over in two `BATCH` messages when the read
    /// buffer's end cuts it: the frames read whole go at once, uncopied, and only the
    /// frame cut (~1.2 KB for a 1 KiB response) is copied into the next buffer with
    /// the rest, where the whole start of the message (~9 KB on average) was copied
    /// before (a tunnel at 32 connections, whose socket holds more than a read;
    /// docs/BENCHMARKS.md, twenty-fifth round, straddle). The session handles a batch's
    /// frames in order as if each had come alone, so the two answer as the one did;
    /// a larger message is left whole for the session to refuse. Only for the tunnel's
    /// own connection: a bridged WebSocket's messages are the peer's own bytes.
    pub fn split_batches(&mut self, max_frame: usize) {
        self.split_up_to = max_frame;
    }

    /// Whether a buffer made from now on may be sized for the frames coming (off by
    /// default). On, an empty buffer made after a frame of [`SIZED_FROM`] bytes or more
    /// gets room for a frame as large, so that in a run of large frames each arrives in
    /// a buffer of its own, ending where it ends: with a read's room alone, each one's
    /// start was read into the end of the buffer before and copied out of it (~17 KiB a
    /// 64 KiB frame, ~0.28M instructions per 1 MiB response on the server,
    /// docs/BENCHMARKS.md, twenty-second round). And no room is made while the buffer
    /// holds the start of such a frame that it has room for whole: the read that ends the
    /// frame fits, however little of it is left, where a new buffer would have had the
    /// frame's start, up to 64 KiB, copied into it.
    ///
    /// Such buffers keep more of what was read alive (a payload holds its whole buffer
    /// while it waits for its reader), so the tunnel's reader turns this on only while
    /// the bytes its streams hold are few (`crate::conn_reader`).
    pub fn set_frame_sized(&mut self, on: bool) {
        self.frame_sized = on;
    }

    /// The buffer to append received bytes to, with room for a read of the socket.
    ///
    /// The room left is used while there is enough of it: reserving more each time
    /// would allocate a new buffer per small message while the last message's payload
    /// still holds the old one.
    pub fn read_buffer(&mut self) -> &mut BytesMut {
        if self.buf.capacity() - self.buf.len() < MIN_ROOM {
            self.short_of_room();
        }
        &mut self.buf
    }

    /// The rest of [`Self::read_buffer`] when the room left is short: room for a read,
    /// or with [`Self::set_frame_sized`] on, for the next large frame or the rest of the
    /// frame held.
    fn short_of_room(&mut self) {
        if self.frame_sized {
            if self.buf.is_empty() && self.last >= SIZED_FROM {
                return self.make_room(self.last);
            }
            if self.frame_fits() {
                return;
            }
        }
        self.make_room(self.buf.len() + READ_SIZE);
    }

    /// The buffer holds the start of a frame of [`SIZED_FROM`] bytes or more, not all
    /// of it, and has room for the rest. Not for smaller frames: a batch of small
    /// responses (32 connections) would then end its buffer with a read of its own
    /// where a new buffer takes its rest with the next batch (+2.5-3% instructions per
    /// 1 KiB request on the server, docs/BENCHMARKS.md, twenty-second round). Asked
    /// only when the room left is small (about once per buffer), so the header is
    /// parsed again rather than kept.
    fn frame_fits(&self) -> bool {
        if self.rest.is_some() {
            return false;
        }
        match parse_header(&self.buf) {
            Ok(Some(h)) => {
                let total = (h.header_len as u64).saturating_add(h.payload_len);
                total >= SIZED_FROM as u64 && (self.buf.len() as u64) < total && total <= self.buf.capacity() as u64
            }
            _ => false,
        }
    }

    /// Appends received bytes (a copy; [`read_buffer`](Self::read_buffer) avoids it).
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// True when what was received ends between messages: the peer's end of stream
    /// here is a clean one, anywhere else it cut a frame or a fragmented message short.
    /// (A `BATCH`'s rest, [`Rest`], keeps at least its header in the buffer.)
    pub fn is_between_messages(&self) -> bool {
        self.buf.is_empty() && self.partial.is_none()
    }

    /// Takes one whole message or control frame out of what was received, if it is there.
    ///
    /// Inlined up to the check for an empty buffer: every read of a socket that finds
    /// nothing new asks first, and the decoding's own call costs more than the check.
    #[inline]
    pub fn poll_message(&mut self) -> Result<Option<WsMessage>, WsError> {
        if self.buf.len() < 2 {
            return Ok(None);
        }
        if let Some(message) = self.small_binary() {
            return Ok(Some(message));
        }
        self.decode_message()
    }

    /// The usual frame, taken without the general path's parsing and checks: a whole
    /// binary message of at most 125 bytes (no reserved bit, no extended length),
    /// masked as this end requires, within the size limit, outside a fragmented
    /// message. Anything else, or a frame not all here yet, is left to
    /// [`decode_message`](Self::decode_message), which gives the same answer for these.
    /// A `BATCH`'s [`Rest`] starts the buffer with its type (0x30), never taken here.
    fn small_binary(&mut self) -> Option<WsMessage> {
        let [b0, b1, ..] = self.buf[..] else { return None };
        let masked = self.role == Role::Server;
        let len = usize::from(b1 & 0x7F);
        if b0 != 0x80 | OP_BINARY || (b1 & 0x80 != 0) != masked || len > 125 || self.partial.is_some() {
            return None;
        }
        let header = if masked { 6 } else { 2 };
        if len > self.max_message || self.buf.len() < header + len {
            return None;
        }
        // The key, when there is one, is in the header just checked to be all here.
        let key = masked.then(|| [self.buf[2], self.buf[3], self.buf[4], self.buf[5]]);
        let mut payload = self.buf.split_to(header + len);
        payload.advance(header);
        if let Some(key) = key {
            apply_mask(&mut payload, key);
        }
        Some(WsMessage::Binary(payload.freeze()))
    }

    /// The general path of [`poll_message`](Self::poll_message).
    pub(super) fn decode_message(&mut self) -> Result<Option<WsMessage>, WsError> {
        loop {
            // A `BATCH`'s rest ([`Rest`]) starts with the type byte 0x30, whose bits are
            // a frame header's reserved ones: it is looked for only when the header is
            // refused, at no cost to a frame's decoding (its own check at the top was
            // +9 instructions a 1 KiB request at one connection).
            let h = match parse_header(&self.buf) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(None),
                Err(_) if self.rest.is_some() => return Ok(self.take_rest()),
                Err(e) => return Err(e),
            };
            match (self.role, h.mask) {
                (Role::Server, None) => return Err(WsError::Protocol("unmasked frame from a client")),
                (Role::Client, Some(_)) => return Err(WsError::Protocol("masked frame from a server")),
                _ => {}
            }
            let control = h.opcode >= OP_CLOSE;
            if control && (!h.fin || h.payload_len > MAX_CONTROL_PAYLOAD as u64) {
                return Err(WsError::Protocol("fragmented or oversized control frame"));
            }
            let so_far = self.partial.as_ref().map_or(0, |(_, p)| p.len() as u64);
            let size = so_far.saturating_add(h.payload_len);
            if !control && size > self.max_message as u64 {
                return Err(WsError::TooLarge { size, max: self.max_message });
            }
            // Bounded by the checks above: a control frame is at most 125 bytes, a data
            // frame at most `max_message`.
            let total = h.header_len + h.payload_len as usize;
            if self.buf.len() < total {
                return Ok(self.frame_cut(total));
            }
            self.last = total;
            let mut payload = self.buf.split_to(total);
            payload.advance(h.header_len);
            if let Some(key) = h.mask {
                apply_mask(&mut payload, key);
            }
            if let Some(message) = self.message(h.fin, h.opcode, payload)? {
                return Ok(Some(message));
            }
        }
    }

    /// [`Self::decode_message`]'s frame of `total` bytes whose start alone the buffer
    /// holds: a `BATCH` split ([`Self::split_batch`]) when splitting is on and the
    /// buffer has no room for the frame, else room made for the rest of the frame, so
    /// that it arrives in as few reads as possible.
    ///
    /// Out of line, the header parsed again here (about once per read buffer): with
    /// the split's call in `decode_message`'s own frame, its prologue grew 11 -> 17
    /// instructions, +10 a 1 KiB request at one connection where no batch is ever cut
    /// (docs/BENCHMARKS.md, twenty-fifth round, batch2).
    #[inline(never)]
    fn frame_cut(&mut self, total: usize) -> Option<WsMessage> {
        if self.buf.capacity() < total && self.split_up_to > 0 {
            if let Ok(Some(h)) = parse_header(&self.buf) {
                if let Some(first) = self.split_batch(&h, total) {
                    return Some(first);
                }
            }
        }
        self.make_room(total);
        None
    }

    /// Makes room for a frame of `total` bytes whose start the buffer holds: in the
    /// buffer's own allocation when the bytes already taken out of it can be reused,
    /// else in a new one of at least the frame's size that gets only the frame's start.
    ///
    /// Not `BytesMut::reserve`: on a buffer nothing else holds any more it grows the
    /// allocation in place (`realloc`), copying the bytes already taken out with the
    /// rest and at least doubling it, and a batch of responses larger than the read
    /// size (a tunnel at 32 connections) made it do so every ~35 requests, ~0.55k
    /// instructions per request on the server (docs/BENCHMARKS.md, sixteenth round).
    fn make_room(&mut self, total: usize) {
        let more = total - self.buf.len();
        if self.buf.capacity() >= total || self.buf.try_reclaim(more) {
            return;
        }
        let mut fresh = BytesMut::with_capacity(total.max(READ_SIZE));
        fresh.extend_from_slice(&self.buf);
        self.buf = fresh;
    }

    /// [`Self::split_batches`]' cut, for the frame `h` of `total` bytes the buffer
    /// holds the start of and has no room for: when it is a whole binary message of at
    /// most the limit, a `BATCH`, and the buffer holds at least one of its frames whole,
    /// those frames are returned as a `BATCH` (unmasked in place, as a whole message
    /// is), and a new buffer gets a `BATCH` header and what was read of the rest (the
    /// one frame cut). Anything else is left to the whole way (`None`). The new buffer
    /// is made for the rest, no larger than the one the whole way makes for the frame.
    ///
    /// Out of line, as [`Self::take_rest`] is: inlined, they made `decode_message`'s
    /// every call dearer (+13 instructions a 1 KiB request at one connection, where no
    /// batch is ever cut).
    #[inline(never)]
    fn split_batch(&mut self, h: &Header, total: usize) -> Option<WsMessage> {
        if !h.fin || h.opcode != OP_BINARY || self.partial.is_some() || h.payload_len > self.split_up_to as u64 {
            return None;
        }
        let payload = self.buf.get(h.header_len..)?;
        let key = h.mask.map_or(0, u32::from_be_bytes);
        // Payload byte `i` is masked with the key's byte `i % 4`: four bytes from `i` on
        // with the key's word turned left by as many bytes.
        let word = |i: usize| {
            let b = payload.get(i..i + 4)?;
            Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) ^ key.rotate_left(8 * (i as u32 & 3)))
        };
        if word(0)? != u32::from(kind::BATCH) << 24 || payload.get(4)? ^ key.to_be_bytes()[0] != 0 {
            return None;
        }
        // The frames' ends: each is its `len:u32` and that many bytes, its type first.
        // The cut is not put right after a RESPONSE whose body follows (no `END` flag,
        // the sixth byte): ending a message, such a head is handed to its stream's
        // queue, without the body a whole response is written with (~0.5k instructions
        // more; docs/BENCHMARKS.md, twenty-fifth round, straddle).
        let (mut cut, mut at) = (BATCH_HEADER, BATCH_HEADER);
        while let Some(len) = word(at) {
            let end = match usize::try_from(len).ok().and_then(|len| (at + BATCH_ENTRY_OVERHEAD).checked_add(len)) {
                Some(end) if end <= payload.len() => end,
                _ => break,
            };
            let head_alone = word(at + 4).is_some_and(|w| w >> 24 == u32::from(kind::RESPONSE))
                && word(at + 6).is_some_and(|w| w & u32::from(flags::END) == 0);
            if !head_alone || len < 8 {
                cut = end;
            }
            at = end;
        }
        if cut < SPLIT_FROM {
            return None;
        }
        // Bounded by the size limit checked by the caller.
        let rest = BATCH_HEADER + (h.payload_len as usize - cut);
        let mut first = self.buf.split_to(h.header_len + cut);
        first.advance(h.header_len);
        if let Some(key) = h.mask {
            apply_mask(&mut first, key);
        }
        let mut fresh = BytesMut::with_capacity(rest.max(READ_SIZE));
        fresh.extend_from_slice(&[kind::BATCH, 0, 0, 0, 0]);
        fresh.extend_from_slice(&self.buf);
        self.buf = fresh;
        // Payload byte `i` is masked with `key[i % 4]`: the rest's first is byte `cut`.
        let key = h.mask.map(|mut key| {
            key.rotate_left(cut & 3);
            key
        });
        self.rest = Some(Rest { end: rest, key, total });
        Some(WsMessage::Binary(first.freeze()))
    }

    /// The `BATCH` that [`Self::split_batch`] left, once all of it is read.
    #[inline(never)]
    fn take_rest(&mut self) -> Option<WsMessage> {
        let end = self.rest.as_ref()?.end;
        if self.buf.len() < end {
            self.make_room(end);
            return None;
        }
        let rest = self.rest.take()?;
        self.last = rest.total;
        let mut message = self.buf.split_to(end);
        if let Some(key) = rest.key {
            apply_mask(&mut message[BATCH_HEADER..], key);
        }
        Some(WsMessage::Binary(message.freeze()))
    }

    /// Joins fragments; returns a message once it is whole.
    fn message(&mut self, fin: bool, opcode: u8, payload: BytesMut) -> Result<Option<WsMessage>, WsError> {
        match opcode {
            OP_BINARY | OP_TEXT if self.partial.is_some() => {
                Err(WsError::Protocol("new message inside a fragmented one"))
            }
            OP_BINARY | OP_TEXT if fin => whole(opcode == OP_BINARY, payload).map(Some),
            OP_BINARY | OP_TEXT => {
                self.partial = Some((opcode == OP_BINARY, payload));
                Ok(None)
            }
            OP_CONTINUATION => {
                let Some((binary, mut joined)) = self.partial.take() else {
                    return Err(WsError::Protocol("continuation without a message"));
                };
                joined.extend_from_slice(&payload);
                if fin {
                    return whole(binary, joined).map(Some);
                }
                self.partial = Some((binary, joined));
                Ok(None)
            }
            OP_PING => Ok(Some(WsMessage::Ping(payload.freeze()))),
            OP_PONG => Ok(Some(WsMessage::Pong)),
            OP_CLOSE => close(&payload).map(Some),
            _ => Err(WsError::Protocol("reserved opcode")),
        }
    }
}

/// A whole binary or text message; text must be UTF-8.
fn whole(binary: bool, payload: BytesMut) -> Result<WsMessage, WsError> {
    if binary {
        return Ok(WsMessage::Binary(payload.freeze()));
    }
    std::str::from_utf8(&payload).map_err(|_| WsError::Utf8("a text message"))?;
    Ok(WsMessage::Text(payload.freeze()))
}

/// A close frame's payload: nothing, or a code and a UTF-8 reason.
fn close(payload: &[u8]) -> Result<WsMessage, WsError> {
    match payload {
        [] => Ok(WsMessage::Close(None)),
        [_] => Err(WsError::Protocol("one-byte close payload")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            let reason = String::from_utf8(reason.to_vec()).map_err(|_| WsError::Utf8("a close reason"))?;
            Ok(WsMessage::Close(Some((code, reason))))
        }
    }
}

fn parse_header(buf: &[u8]) -> Result<Option<Header>, WsError> {
    let [b0, b1, ..] = *buf else { return Ok(None) };
    if b0 & 0x70 != 0 {
        return Err(WsError::Protocol("reserved bits set without an extension"));
    }
    let masked = b1 & 0x80 != 0;
    let (payload_len, mut at) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut be = [0; 8];
                be.copy_from_slice(b);
                let len = u64::from_be_bytes(be);
                if len >> 63 != 0 {
                    return Err(WsError::Protocol("payload length with its top bit set"));
                }
                (len, 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let mask = if masked {
        let Some(k) = buf.get(at..at + 4) else { return Ok(None) };
        at += 4;
        Some([k[0], k[1], k[2], k[3]])
    } else {
        None
    };
    Ok(Some(Header { fin: b0 & 0x80 != 0, opcode: b0 & 0x0F, mask, header_len: at, payload_len }))
}
