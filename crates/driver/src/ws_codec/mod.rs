//! WebSocket framing (RFC 6455 §5) once the upgrade is done, sans-IO: bytes in, messages
//! out ([`WsDecoder`]); messages in, bytes out ([`WsEncoder`]). No socket, no executor,
//! no clock: [`crate::ws_io`] moves the bytes between these and a tokio socket, for the
//! control connection ([`crate::Connection`]) and the bridged WebSockets of visitors and
//! origins ([`crate::websocket`]).
//!
//! These sockets carry all of a tunnel's traffic, so the per-byte work is kept small:
//! the socket is read straight into the decoder's spare buffer room (no zero-filling), a
//! received payload is unmasked in place and handed on without a copy, and a large
//! outgoing payload leaves as its own slice of a vectored write next to its header, a
//! client's masked in place when nothing else holds it. docs/BENCHMARKS.md has the
//! measurements. tungstenite still does the handshakes' key arithmetic and the tests'
//! and the benchmark's own WebSockets.
//!
//! Both ends speak all of RFC 6455 without extensions: binary and text messages
//! (fragmented or not; text checked to be UTF-8), ping, pong, and close with its code and
//! reason; a client masks what it sends, a server insists on masked frames; messages are
//! refused over a size limit from their header. The control connection refuses text;
//! the bridges relay it.

mod decode;
mod encode;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_split;

pub use decode::WsDecoder;
pub(crate) use encode::COPY_BELOW;
pub use encode::{WsEncoder, WsTransmit};

use bytes::Bytes;

/// Which end of the WebSocket this is: clients mask what they send, servers insist
/// on masked frames. The session's own role: the end that opened the control
/// WebSocket is the session's client.
pub use localtunnels_core::Role;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// The longest control frame payload (RFC 6455 §5.5), and so a close frame's.
const MAX_CONTROL_PAYLOAD: usize = 125;

/// A whole message (or control frame) decoded from the peer's bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum WsMessage {
    /// A binary message, its fragments joined.
    Binary(Bytes),
    /// A text message, its fragments joined; valid UTF-8.
    Text(Bytes),
    /// A ping, to be answered with a pong carrying `Bytes`.
    Ping(Bytes),
    /// A pong.
    Pong,
    /// The peer closed the WebSocket: its code and reason, if it gave a code.
    Close(Option<(u16, String)>),
}

/// Why decoding stopped: the peer's bytes are not a WebSocket this end accepts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WsError {
    /// The peer broke RFC 6455.
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
    /// A text message or a close reason (which one) that is not UTF-8.
    #[error("invalid UTF-8 in {0}")]
    Utf8(&'static str),
    /// A message over the size limit.
    #[error("message of at least {size} bytes over the {max}-byte limit")]
    TooLarge {
        /// Bytes the message has (so far).
        size: u64,
        /// The limit.
        max: usize,
    },
}

/// XORs `buf` with the repeating 4-byte `key`, eight bytes at a time (the compiler
/// turns the loops into vector instructions). Blocks of 128 bytes come first: their
/// fixed-length loop unrolls into eight 16-byte loads, XORs and stores per pass, where
/// a loop over the whole slice took 32 bytes a pass (9 instructions per 32 bytes: ~0.35k
/// to unmask a 1 KiB response's message; docs/BENCHMARKS.md, thirteenth round). What is
/// left goes in fixed pieces (see [`mask_tail`]).
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    // The key twice in one word; both halves equal, so byte order does not matter. A
    // multiply takes ~3 instructions where building it from the eight bytes took ~25.
    let wide = u64::from(u32::from_ne_bytes(key)) * 0x1_0000_0001;
    let mut blocks = buf.chunks_exact_mut(128);
    for block in &mut blocks {
        mask_words(block, wide);
    }
    mask_tail(blocks.into_remainder(), wide, key);
}

/// Masks the last 0-127 bytes: pieces of 64, 32, 16 and 8 bytes, each at most once and
/// each a fixed length the compiler unrolls, then 4, then up to 3 single bytes. Every
/// piece is a multiple of 4 bytes, so the key lines up again at the next one's start.
/// Our own for the small messages a WebSocket echo sends (a tunnel frame of 38 bytes,
/// its 32-byte payload): a loop over the words then the bytes took ~70 instructions for
/// 38 bytes (docs/BENCHMARKS.md, twenty-fifth round, echo).
#[inline(always)]
fn mask_tail(buf: &mut [u8], wide: u64, key: [u8; 4]) {
    let buf = mask_piece::<64>(buf, wide);
    let buf = mask_piece::<32>(buf, wide);
    let buf = mask_piece::<16>(buf, wide);
    let buf = mask_piece::<8>(buf, wide);
    let buf = if buf.len() >= 4 {
        let (word, rest) = buf.split_at_mut(4);
        let mut four = [0; 4];
        four.copy_from_slice(word);
        word.copy_from_slice(&(u32::from_ne_bytes(four) ^ u32::from_ne_bytes(key)).to_ne_bytes());
        rest
    } else {
        buf
    };
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[i & 3];
    }
}

/// Masks the first `N` bytes of `buf` (`N` a multiple of 8), if it has that many; returns
/// the bytes after them (or all of `buf`).
#[inline(always)]
fn mask_piece<const N: usize>(buf: &mut [u8], wide: u64) -> &mut [u8] {
    if buf.len() < N {
        return buf;
    }
    let (piece, rest) = buf.split_at_mut(N);
    mask_words(piece, wide);
    rest
}

/// XORs every whole 8-byte word of `buf` with `wide` (the key twice); returns the
/// bytes after the last whole word.
#[inline(always)]
fn mask_words(buf: &mut [u8], wide: u64) -> &mut [u8] {
    let mut words = buf.chunks_exact_mut(8);
    for chunk in &mut words {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    words.into_remainder()
}
