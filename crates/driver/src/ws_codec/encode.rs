//! Messages in, bytes out: [`WsEncoder`] frames data messages, pongs and closes,
//! masks a client's payloads, and hands the bytes out as one [`Buf`] of slices for a
//! vectored write.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{apply_mask, Role, MAX_CONTROL_PAYLOAD, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PONG, OP_TEXT};

/// Payloads at least this long go out as their own slice of a vectored write;
/// shorter ones are copied next to their header.
pub(crate) const COPY_BELOW: usize = 4096;

/// The copy buffer's first allocation. Written frames are advanced past, which uses up
/// room at its front; the room is reclaimed (an out-of-line `reserve` call, ~55
/// instructions) when a frame no longer fits. A buffer sized for one frame paid that on
/// every frame; this one, about once in a dozen small frames.
const FIRST_BUFFER: usize = 512;

/// Frames what one end of a WebSocket sends.
///
/// Queue frames with the commands (`binary`, `fragment`, `pong`, `close`, ...), then
/// write [`transmit`](Self::transmit) out until it has nothing left. Once a close frame
/// is queued nothing more is (RFC 6455 §5.5.1): later commands are ignored.
pub struct WsEncoder {
    role: Role,
    /// Where a client's mask keys come from (RFC 6455 wants them unpredictable).
    mask_key: Box<dyn FnMut() -> [u8; 4] + Send>,
    /// Frame headers and small or masked payloads, copied: what goes out after
    /// `queue`. Written straight from here (and advanced) when `queue` is empty, the
    /// usual case, so a small frame costs no split, no `Bytes` and no queue entry.
    copied: BytesMut,
    /// What to write before `copied`, in order: earlier parts of `copied` and payloads
    /// sent as they are. Holds no empty slice.
    queue: VecDeque<Bytes>,
    /// A close frame is queued.
    closed: bool,
}

impl std::fmt::Debug for WsEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsEncoder")
            .field("role", &self.role)
            .field("copied", &self.copied.len())
            .field("queue", &self.queue.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl WsEncoder {
    /// An encoder for `role`'s end; a client takes each frame's mask key from `mask_key`
    /// (a server never calls it).
    pub fn new(role: Role, mask_key: impl FnMut() -> [u8; 4] + Send + 'static) -> WsEncoder {
        let mask_key = Box::new(mask_key);
        let copied = BytesMut::with_capacity(FIRST_BUFFER);
        WsEncoder { role, mask_key, copied, queue: VecDeque::new(), closed: false }
    }

    /// Queues one binary message (one frame).
    pub fn binary(&mut self, payload: Bytes) {
        self.frame(OP_BINARY, true, Bytes::new(), payload);
    }

    /// Queues one frame of a data message: its first (`first`: binary or text as
    /// `binary` says) or a continuation, the last one when `fin`.
    pub fn fragment(&mut self, first: bool, binary: bool, fin: bool, payload: Bytes) {
        self.frame(opcode_of(first, binary), fin, Bytes::new(), payload);
    }

    /// [`Self::fragment`] for a payload the caller keeps (the bridge shows it to its
    /// tap after the write): copied next to its header, as any payload shorter than
    /// [`COPY_BELOW`] is, without a second handle on its bytes. A longer one is copied
    /// too (not sent as its own slice), so pass those to [`Self::fragment`].
    pub fn fragment_copied(&mut self, first: bool, binary: bool, fin: bool, payload: &[u8]) {
        if self.closed {
            return;
        }
        let key = self.key();
        self.copied.reserve(14 + payload.len());
        self.put_header(opcode_of(first, binary), fin, payload.len(), key);
        let start = self.copied.len();
        self.copied.put_slice(payload);
        if let Some(key) = key {
            apply_mask(&mut self.copied[start..], key);
        }
    }

    /// Queues one binary message made of `head` then `payload` (as
    /// `Session::poll_transmit_parts` hands them out): a client masks the payload as
    /// it copies it, once, where a whole message would have been copied to join it.
    pub fn binary_parts(&mut self, head: Bytes, payload: Bytes) {
        if payload.is_empty() {
            // A whole message (a batch, mostly): it may be large and unshared, which a
            // client masks in place rather than copy.
            self.frame(OP_BINARY, true, Bytes::new(), head);
        } else {
            self.frame(OP_BINARY, true, head, payload);
        }
    }

    /// Queues a pong answering a ping's `payload`.
    pub fn pong(&mut self, payload: Bytes) {
        self.frame(OP_PONG, true, Bytes::new(), payload);
    }

    /// Queues a close frame with `code`.
    pub fn close(&mut self, code: u16) {
        self.close_with(Some(code), "");
    }

    /// Queues a close frame with `code` and `reason` (cut to the 123 bytes a close
    /// frame has room for, at a character boundary), or an empty one.
    pub fn close_with(&mut self, code: Option<u16>, reason: &str) {
        let mut payload = BytesMut::new();
        if let Some(code) = code {
            let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            payload.put_u16(code);
            payload.put_slice(&reason.as_bytes()[..end]);
        }
        self.frame(OP_CLOSE, true, Bytes::new(), payload.freeze());
        self.closed = true;
    }

    /// True once a close frame is queued.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// True when nothing is waiting to be written.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.copied.is_empty()
    }

    /// Everything queued, as one [`Buf`] whose `chunks_vectored` covers all of it:
    /// write it and advance it by what was written. What is left stays queued for the
    /// next call.
    pub fn transmit(&mut self) -> WsTransmit<'_> {
        WsTransmit { queue: &mut self.queue, copied: &mut self.copied }
    }

    /// Queues one binary message of exactly `len` bytes that `write` encodes straight
    /// into the encoder's buffer, after the WebSocket header (and masks in place, for
    /// a client), except a tail it returns to be sent as it is after them (`len`
    /// counts it): the message is never built apart and copied in.
    pub fn binary_with(&mut self, len: usize, write: impl FnOnce(&mut BytesMut) -> Bytes) {
        if self.closed {
            return;
        }
        let key = self.key();
        self.copied.reserve(14 + len.min(COPY_BELOW));
        self.put_header(OP_BINARY, true, len, key);
        let start = self.copied.len();
        let tail = write(&mut self.copied);
        debug_assert_eq!(self.copied.len() - start + tail.len(), len, "the message's announced length");
        if let Some(key) = key {
            apply_mask(&mut self.copied[start..], key);
        }
        if !tail.is_empty() {
            let before = self.copied.len() - start;
            self.push_apart(tail, before, key);
        }
    }

    /// [`Self::binary_with`] for a message `write` may decline: it appends exactly `len`
    /// bytes and returns true, or appends nothing and returns false, and then nothing is
    /// queued (the header is taken back). False after a close, without calling `write`.
    pub fn binary_if(&mut self, len: usize, write: impl FnOnce(&mut BytesMut) -> bool) -> bool {
        if self.closed {
            return false;
        }
        let key = self.key();
        let at = self.copied.len();
        self.copied.reserve(14 + len);
        self.put_header(OP_BINARY, true, len, key);
        let start = self.copied.len();
        if !write(&mut self.copied) {
            self.copied.truncate(at);
            return false;
        }
        debug_assert_eq!(self.copied.len() - start, len, "the message's announced length");
        if let Some(key) = key {
            apply_mask(&mut self.copied[start..], key);
        }
        true
    }

    /// Queues one binary message that `write` appends to the encoder's buffer, its
    /// length not known before (an OPEN the session writes field by field): room for
    /// the short header (a message of up to 125 bytes) is left before it and filled
    /// after, the message moved along when a longer one needs the longer header (RFC
    /// 6455 wants the shortest). On an error nothing is queued. After a close the
    /// message is written aside and dropped, as the other commands ignore theirs.
    pub fn binary_built<R, E>(&mut self, write: impl FnOnce(&mut BytesMut) -> Result<R, E>) -> Result<R, E> {
        if self.closed {
            return write(&mut BytesMut::new());
        }
        let key = self.key();
        let at = self.copied.len();
        // Room for the short header (and the key), as slices of known length: written in
        // place, where `put_bytes`' length known only at run time called `memset` (~17
        // instructions per OPEN on the server).
        match key {
            Some(_) => self.copied.put_slice(&[0; 6]),
            None => self.copied.put_slice(&[0; 2]),
        }
        let start = self.copied.len();
        let written = match write(&mut self.copied) {
            Ok(r) => r,
            Err(e) => {
                self.copied.truncate(at);
                return Err(e);
            }
        };
        let len = self.copied.len() - start;
        let extra = match len {
            0..=125 => 0,
            126..=0xFFFF => 2,
            _ => 8,
        };
        if extra > 0 {
            self.copied.put_bytes(0, extra);
            self.copied.copy_within(start..start + len, start + extra);
        }
        let mask_bit = if key.is_some() { 0x80 } else { 0 };
        let head = &mut self.copied[at..start + extra];
        head[0] = 0x80 | OP_BINARY;
        match extra {
            0 => head[1] = mask_bit | len as u8,
            2 => {
                head[1] = mask_bit | 126;
                head[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                head[1] = mask_bit | 127;
                head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            }
        }
        if let Some(key) = key {
            head[2 + extra..].copy_from_slice(&key);
            apply_mask(&mut self.copied[start + extra..], key);
        }
        Ok(written)
    }

    /// The next frame's mask key: a client's, `None` for a server.
    fn key(&mut self) -> Option<[u8; 4]> {
        (self.role == Role::Client).then(|| (self.mask_key)())
    }

    /// Appends a frame header for a `len`-byte payload, with the mask key if any.
    fn put_header(&mut self, opcode: u8, fin: bool, len: usize, key: Option<[u8; 4]>) {
        let out = &mut self.copied;
        let first = if fin { 0x80 } else { 0 } | opcode;
        // A short frame's header (the usual: a WebSocket echo's, a small response's) in
        // one append of a fixed length, where a byte at a time checked the room and
        // stored the length three times (docs/BENCHMARKS.md, twenty-fifth round, echo).
        if len <= 125 {
            match key {
                Some([a, b, c, d]) => out.put_slice(&[first, 0x80 | len as u8, a, b, c, d]),
                None => out.put_slice(&[first, len as u8]),
            }
            return;
        }
        out.put_u8(first);
        let mask_bit = if key.is_some() { 0x80 } else { 0 };
        match len {
            126..=0xFFFF => {
                out.put_u8(mask_bit | 126);
                out.put_u16(len as u16);
            }
            _ => {
                out.put_u8(mask_bit | 127);
                out.put_u64(len as u64);
            }
        }
        if let Some(key) = key {
            out.put_slice(&key);
        }
    }

    /// Queues `payload`, the rest of a frame whose first `before` payload bytes are in
    /// `copied`: as its own slice of the write (after `copied` so far), masked in
    /// place for a client when nothing else holds it, else masked as it is copied.
    fn push_apart(&mut self, payload: Bytes, before: usize, key: Option<[u8; 4]>) {
        let Some(key) = key else {
            let head = self.copied.split().freeze();
            self.queue.push_back(head);
            self.queue.push_back(payload);
            return;
        };
        // The key goes on where the bytes before left it.
        let at = before % 4;
        let key = [key[at], key[(at + 1) % 4], key[(at + 2) % 4], key[(at + 3) % 4]];
        match payload.try_into_mut() {
            Ok(mut owned) => {
                apply_mask(&mut owned, key);
                let head = self.copied.split().freeze();
                self.queue.push_back(head);
                self.queue.push_back(owned.freeze());
            }
            Err(shared) => {
                let start = self.copied.len();
                self.copied.extend_from_slice(&shared);
                apply_mask(&mut self.copied[start..], key);
            }
        }
    }

    fn frame(&mut self, opcode: u8, fin: bool, head: Bytes, payload: Bytes) {
        if self.closed {
            return;
        }
        let len = head.len() + payload.len();
        let key = self.key();
        // A large payload goes out as its own slice of the write (masked in place by a
        // client when nothing else holds it); the head and small payloads are copied.
        let inline = payload.len() < COPY_BELOW;
        self.copied.reserve(14 + head.len() + if inline { payload.len() } else { 0 });
        self.put_header(opcode, fin, len, key);
        let start = self.copied.len();
        self.copied.put_slice(&head);
        if inline {
            self.copied.put_slice(&payload);
        }
        if let Some(key) = key {
            apply_mask(&mut self.copied[start..], key);
        }
        if !inline {
            self.push_apart(payload, head.len(), key);
        }
    }

    /// The slices queued so far, for tests that check what is sent uncopied.
    #[cfg(test)]
    pub(super) fn queued(&mut self) -> &VecDeque<Bytes> {
        if !self.copied.is_empty() {
            let rest = self.copied.split().freeze();
            self.queue.push_back(rest);
        }
        &self.queue
    }
}

/// A data frame's opcode: a message's first frame (binary or text), else a continuation.
fn opcode_of(first: bool, binary: bool) -> u8 {
    match (first, binary) {
        (false, _) => OP_CONTINUATION,
        (true, true) => OP_BINARY,
        (true, false) => OP_TEXT,
    }
}

/// An encoder's queued bytes as one [`Buf`], so a vectored write takes all of it:
/// the queued slices, then the copied tail.
#[derive(Debug)]
pub struct WsTransmit<'a> {
    queue: &'a mut VecDeque<Bytes>,
    copied: &'a mut BytesMut,
}

impl WsTransmit<'_> {
    /// True when all of it is one slice ([`Buf::chunk`]): a plain write takes it whole.
    pub fn is_one_slice(&self) -> bool {
        match self.queue.len() {
            0 => true,
            1 => self.copied.is_empty(),
            _ => false,
        }
    }
}

impl Buf for WsTransmit<'_> {
    fn remaining(&self) -> usize {
        self.queue.iter().map(Bytes::len).sum::<usize>() + self.copied.len()
    }

    fn chunk(&self) -> &[u8] {
        self.queue.front().map_or(&self.copied[..], |b| b.as_ref())
    }

    fn chunks_vectored<'b>(&'b self, dst: &mut [IoSlice<'b>]) -> usize {
        let tail = (!self.copied.is_empty()).then_some(&self.copied[..]);
        let all = self.queue.iter().map(|b| &b[..]).chain(tail);
        let mut n = 0;
        for (slot, b) in dst.iter_mut().zip(all) {
            *slot = IoSlice::new(b);
            n += 1;
        }
        n
    }

    fn advance(&mut self, mut cnt: usize) {
        while cnt > 0 {
            let Some(front) = self.queue.front_mut() else {
                if cnt >= self.copied.len() {
                    // All of it went (the usual case): cleared, the buffer keeps its
                    // whole capacity from its start, where advancing would use it up
                    // and have the next message's `reserve` reclaim it.
                    self.copied.clear();
                } else {
                    self.copied.advance(cnt);
                }
                return;
            };
            if cnt < front.len() {
                front.advance(cnt);
                return;
            }
            cnt -= front.len();
            self.queue.pop_front();
        }
    }
}
