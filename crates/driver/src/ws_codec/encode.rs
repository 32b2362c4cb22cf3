//! Messages in, bytes out: [`WsEncoder`] frames data messages, pongs and closes,
//! masks a client's payloads, and hands the bytes out as one [`Buf`] of slices for a
//! vectored write.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{apply_mask, Role, MAX_CONTROL_PAYLOAD, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PONG, OP_TEXT};

/// Payloads at least this long go out as their own slice of a vectored write;
/// shorter ones are copied next to their header.
const COPY_BELOW: usize = 4096;

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
        WsEncoder { role, mask_key, copied: BytesMut::new(), queue: VecDeque::new(), closed: false }
    }

    /// Queues one binary message (one frame).
    pub fn binary(&mut self, payload: Bytes) {
        self.frame(OP_BINARY, true, Bytes::new(), payload);
    }

    /// Queues one frame of a data message: its first (`first`: binary or text as
    /// `binary` says) or a continuation, the last one when `fin`.
    pub fn fragment(&mut self, first: bool, binary: bool, fin: bool, payload: Bytes) {
        let opcode = match (first, binary) {
            (false, _) => OP_CONTINUATION,
            (true, true) => OP_BINARY,
            (true, false) => OP_TEXT,
        };
        self.frame(opcode, fin, Bytes::new(), payload);
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

    fn frame(&mut self, opcode: u8, fin: bool, head: Bytes, payload: Bytes) {
        if self.closed {
            return;
        }
        let len = head.len() + payload.len();
        let client = self.role == Role::Client;
        let key: [u8; 4] = if client { (self.mask_key)() } else { [0; 4] };
        // A large payload goes out as its own slice of the write: as it is from a
        // server; from a client masked in place when nothing else holds it, else
        // masked as it is copied. The head is always copied.
        let (inline, alone) = if payload.len() < COPY_BELOW {
            (Some(payload), None)
        } else if !client {
            (None, Some(payload))
        } else {
            match payload.try_into_mut() {
                Ok(mut owned) => {
                    // The key goes on where the head left it.
                    let at = head.len() % 4;
                    apply_mask(&mut owned, [key[at], key[(at + 1) % 4], key[(at + 2) % 4], key[(at + 3) % 4]]);
                    (None, Some(owned.freeze()))
                }
                Err(shared) => (Some(shared), None),
            }
        };
        let out = &mut self.copied;
        out.reserve(14 + head.len() + inline.as_ref().map_or(0, Bytes::len));
        out.put_u8(if fin { 0x80 } else { 0 } | opcode);
        let mask_bit = if client { 0x80 } else { 0 };
        match len {
            0..=125 => out.put_u8(mask_bit | len as u8),
            126..=0xFFFF => {
                out.put_u8(mask_bit | 126);
                out.put_u16(len as u16);
            }
            _ => {
                out.put_u8(mask_bit | 127);
                out.put_u64(len as u64);
            }
        }
        if client {
            out.put_slice(&key);
        }
        let start = out.len();
        out.put_slice(&head);
        if let Some(inline) = inline {
            out.put_slice(&inline);
        }
        if client {
            apply_mask(&mut out[start..], key);
        }
        if let Some(alone) = alone {
            let head = self.copied.split().freeze();
            self.queue.push_back(head);
            self.queue.push_back(alone);
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
                self.copied.advance(cnt.min(self.copied.len()));
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
