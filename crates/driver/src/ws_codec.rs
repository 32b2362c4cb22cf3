//! WebSocket framing (RFC 6455 §5), once the upgrade is done: the control connection's,
//! and the bridged WebSockets' of visitors and origins ([`crate::websocket`]).
//!
//! These sockets carry all of a tunnel's traffic, so their per-byte work is ours to keep
//! small: a read lands in spare buffer room (tungstenite zero-filled 16 KiB before
//! every read), a received payload is unmasked in place and handed on without a copy,
//! and a large frame leaves as header + payload in one vectored write, a client's
//! masked in place (tungstenite copied every payload into its out buffer, then masked
//! it there). tungstenite still does the handshakes' key arithmetic and the tests'
//! and the benchmark's own WebSockets.
//!
//! Both halves speak all of RFC 6455 without extensions: binary and text messages
//! (fragmented or not; text checked to be UTF-8), ping, pong and close with its code
//! and reason. The control connection refuses text; the bridges relay it.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{header, StatusCode};
use http_body_util::Empty;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

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

/// Room a read makes when too little is left; an idle connection holds about this
/// much. Larger reads did not move more bytes per second, and each buffer stays alive
/// while any payload read into it does: 64 KiB reads took the server from 20 to 30 MiB
/// under 1 MiB downloads.
const READ_SIZE: usize = 16 * 1024;
/// Below this much room left in the buffer, a read first makes more.
const MIN_ROOM: usize = 4 * 1024;

/// A whole message (or control frame) read off the socket.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
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

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
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
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A parsed frame header.
struct Header {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    /// Header bytes, mask key included.
    header_len: usize,
    payload_len: u64,
}

/// Reads messages off one socket half.
#[derive(Debug)]
pub struct FrameReader {
    role: Role,
    max_message: usize,
    buf: BytesMut,
    /// Fragments of a message still missing its last one, and whether it is binary.
    partial: Option<(bool, BytesMut)>,
}

impl FrameReader {
    /// A reader for `role`'s end that refuses messages over `max_message` bytes.
    pub fn new(role: Role, max_message: usize) -> FrameReader {
        FrameReader { role, max_message, buf: BytesMut::new(), partial: None }
    }

    /// The next message; `None` when the peer closed the socket between frames.
    pub async fn next<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> Result<Option<Received>, WireError> {
        loop {
            if let Some(received) = self.parse()? {
                return Ok(Some(received));
            }
            // Read into the room left when there is enough of it: reserving more each
            // time would allocate a new buffer per small message while the last
            // message's payload still holds the old one.
            if self.buf.capacity() - self.buf.len() < MIN_ROOM {
                self.buf.reserve(READ_SIZE);
            }
            let n = io.read_buf(&mut self.buf).await?;
            if n == 0 {
                if self.buf.is_empty() && self.partial.is_none() {
                    return Ok(None);
                }
                return Err(WireError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Takes one whole message or control frame out of the buffer, if it is there.
    pub fn parse(&mut self) -> Result<Option<Received>, WireError> {
        loop {
            let Some(h) = parse_header(&self.buf)? else { return Ok(None) };
            match (self.role, h.mask) {
                (Role::Server, None) => return Err(WireError::Protocol("unmasked frame from a client")),
                (Role::Client, Some(_)) => return Err(WireError::Protocol("masked frame from a server")),
                _ => {}
            }
            let control = h.opcode >= OP_CLOSE;
            if control && (!h.fin || h.payload_len > 125) {
                return Err(WireError::Protocol("fragmented or oversized control frame"));
            }
            let so_far = self.partial.as_ref().map_or(0, |(_, p)| p.len() as u64);
            let size = so_far.saturating_add(h.payload_len);
            if !control && size > self.max_message as u64 {
                return Err(WireError::TooLarge { size, max: self.max_message });
            }
            // Bounded by the checks above: a control frame is at most 125 bytes.
            let total = h.header_len + h.payload_len as usize;
            if self.buf.len() < total {
                // Room for the rest of this frame, so it arrives in as few reads as possible.
                self.buf.reserve(total - self.buf.len());
                return Ok(None);
            }
            let mut payload = self.buf.split_to(total);
            payload.advance(h.header_len);
            if let Some(key) = h.mask {
                apply_mask(&mut payload, key);
            }
            if let Some(received) = self.message(h.fin, h.opcode, payload)? {
                return Ok(Some(received));
            }
        }
    }

    /// Joins fragments; returns a message once it is whole.
    fn message(&mut self, fin: bool, opcode: u8, payload: BytesMut) -> Result<Option<Received>, WireError> {
        match opcode {
            OP_BINARY | OP_TEXT if self.partial.is_some() => {
                Err(WireError::Protocol("new message inside a fragmented one"))
            }
            OP_BINARY | OP_TEXT if fin => whole(opcode == OP_BINARY, payload).map(Some),
            OP_BINARY | OP_TEXT => {
                self.partial = Some((opcode == OP_BINARY, payload));
                Ok(None)
            }
            OP_CONTINUATION => {
                let Some((binary, mut joined)) = self.partial.take() else {
                    return Err(WireError::Protocol("continuation without a message"));
                };
                joined.extend_from_slice(&payload);
                if fin {
                    return whole(binary, joined).map(Some);
                }
                self.partial = Some((binary, joined));
                Ok(None)
            }
            OP_PING => Ok(Some(Received::Ping(payload.freeze()))),
            OP_PONG => Ok(Some(Received::Pong)),
            OP_CLOSE => match payload.len() {
                0 => Ok(Some(Received::Close(None))),
                1 => Err(WireError::Protocol("one-byte close payload")),
                _ => {
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    let reason =
                        String::from_utf8(payload[2..].to_vec()).map_err(|_| WireError::Utf8("a close reason"))?;
                    Ok(Some(Received::Close(Some((code, reason)))))
                }
            },
            _ => Err(WireError::Protocol("reserved opcode")),
        }
    }
}

/// A whole binary or text message; text must be UTF-8.
fn whole(binary: bool, payload: BytesMut) -> Result<Received, WireError> {
    if binary {
        return Ok(Received::Binary(payload.freeze()));
    }
    std::str::from_utf8(&payload).map_err(|_| WireError::Utf8("a text message"))?;
    Ok(Received::Text(payload.freeze()))
}

fn parse_header(buf: &[u8]) -> Result<Option<Header>, WireError> {
    let [b0, b1, ..] = *buf else { return Ok(None) };
    if b0 & 0x70 != 0 {
        return Err(WireError::Protocol("reserved bits set without an extension"));
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
                    return Err(WireError::Protocol("payload length with its top bit set"));
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

/// XORs `buf` with the repeating 4-byte `key`, eight bytes at a time (the compiler
/// turns the loop into vector instructions).
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // The tail starts at a multiple of 8, so the key lines up again at its index 0.
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i & 3];
    }
}

/// Writes frames to one socket half.
#[derive(Debug)]
pub struct FrameWriter {
    role: Role,
    /// Frame headers and small or masked payloads, copied.
    copied: BytesMut,
    /// What to write, in order: slices of `copied` and payloads sent as they are.
    queue: VecDeque<Bytes>,
}

/// Payloads at least this long go to the socket as their own slice of a vectored
/// write; shorter ones are copied next to their header.
const COPY_BELOW: usize = 4096;

impl FrameWriter {
    /// A writer for `role`'s end.
    pub fn new(role: Role) -> FrameWriter {
        FrameWriter { role, copied: BytesMut::new(), queue: VecDeque::new() }
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
            let mut end = reason.len().min(123);
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            payload.put_u16(code);
            payload.put_slice(&reason.as_bytes()[..end]);
        }
        self.frame(OP_CLOSE, true, Bytes::new(), payload.freeze());
    }

    fn frame(&mut self, opcode: u8, fin: bool, head: Bytes, payload: Bytes) {
        let len = head.len() + payload.len();
        let client = self.role == Role::Client;
        let key: [u8; 4] = if client { rand::random() } else { [0; 4] };
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

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.copied.is_empty()
    }

    /// Writes everything queued, in as few syscalls as the socket allows, and flushes.
    pub async fn flush<W: AsyncWrite + Unpin>(&mut self, io: &mut W) -> io::Result<()> {
        if !self.copied.is_empty() {
            let rest = self.copied.split().freeze();
            self.queue.push_back(rest);
        }
        let mut chunks = Chunks { queue: &mut self.queue };
        io.write_all_buf(&mut chunks).await?;
        io.flush().await
    }
}

/// The writer's queue as one [`Buf`], so a vectored write takes all of it.
struct Chunks<'a> {
    queue: &'a mut VecDeque<Bytes>,
}

impl Buf for Chunks<'_> {
    fn remaining(&self) -> usize {
        self.queue.iter().map(Bytes::len).sum()
    }

    fn chunk(&self) -> &[u8] {
        self.queue.front().map_or(&[], |b| b.as_ref())
    }

    fn chunks_vectored<'b>(&'b self, dst: &mut [IoSlice<'b>]) -> usize {
        let mut n = 0;
        for (slot, b) in dst.iter_mut().zip(self.queue.iter().filter(|b| !b.is_empty())) {
            *slot = IoSlice::new(b);
            n += 1;
        }
        n
    }

    fn advance(&mut self, mut cnt: usize) {
        while cnt > 0 {
            let Some(front) = self.queue.front_mut() else { return };
            if cnt < front.len() {
                front.advance(cnt);
                return;
            }
            cnt -= front.len();
            self.queue.pop_front();
        }
        while self.queue.front().is_some_and(Bytes::is_empty) {
            self.queue.pop_front();
        }
    }
}

/// The client's side of the upgrade: sends `request` (a WebSocket handshake request,
/// e.g. from tungstenite's `IntoClientRequest`, with its key and any subprotocol) over
/// `io`, checks the server's 101 and accept key, and returns the upgraded socket for
/// [`Connection::start`](crate::Connection::start). Errors are for people.
pub async fn client_upgrade<S>(io: S, request: http::Request<()>) -> Result<TokioIo<Upgraded>, String>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut parts, ()) = request.into_parts();
    let key = parts.headers.get(header::SEC_WEBSOCKET_KEY).cloned().ok_or("no Sec-WebSocket-Key")?;
    // Origin form on the request line, as a browser sends it.
    if let Some(path) = parts.uri.path_and_query() {
        parts.uri = path.as_str().parse().map_err(|e| format!("invalid path: {e}"))?;
    }
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn.with_upgrades());
    let mut res = sender
        .send_request(http::Request::from_parts(parts, Empty::<Bytes>::new()))
        .await
        .map_err(|e| e.to_string())?;
    if res.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(format!("HTTP error: {}", res.status()));
    }
    let accept = derive_accept_key(key.as_bytes());
    if res.headers().get(header::SEC_WEBSOCKET_ACCEPT).map(|v| v.as_bytes()) != Some(accept.as_bytes()) {
        return Err("the server's Sec-WebSocket-Accept does not match the key".into());
    }
    hyper::upgrade::on(&mut res).await.map(TokioIo::new).map_err(|e| format!("upgrade failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(role: Role, messages: &[&[u8]]) -> Vec<u8> {
        let mut w = FrameWriter::new(role);
        for m in messages {
            w.binary(Bytes::copy_from_slice(m));
        }
        let mut out = Vec::new();
        futures_util::FutureExt::now_or_never(w.flush(&mut out)).expect("a Vec never blocks").expect("write");
        out
    }

    #[test]
    fn mask_matches_the_bytewise_definition() {
        let key = [0x6d, 0xb6, 0xb2, 0x80];
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let mut fast = data.clone();
            apply_mask(&mut fast, key);
            let slow: Vec<u8> = data.iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
            assert_eq!(fast, slow, "length {len}");
        }
    }

    #[test]
    fn client_frames_round_trip_through_a_server_reader() {
        let big = vec![7u8; 70_000];
        let mid = vec![3u8; 5_000];
        let bytes = frames(Role::Client, &[b"hi", &mid, &big, b""]);
        let mut r = FrameReader::new(Role::Server, 100_000);
        // Fed one byte at a time: every partial header and payload is waited for.
        let mut got = Vec::new();
        for b in bytes {
            r.buf.put_u8(b);
            while let Some(m) = r.parse().expect("valid frames") {
                got.push(m);
            }
        }
        let want: Vec<Received> =
            [&b"hi"[..], &mid, &big, b""].iter().map(|m| Received::Binary(Bytes::copy_from_slice(m))).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn server_frames_are_unmasked_and_large_payloads_go_uncopied() {
        let big = Bytes::from(vec![9u8; 10_000]);
        let mut w = FrameWriter::new(Role::Server);
        w.binary(Bytes::from_static(b"small"));
        w.binary(big.clone());
        w.flush_queue_for_test();
        assert!(w.queue.iter().any(|b| b.as_ptr() == big.as_ptr()), "the big payload is sent as it is");
        let bytes = frames(Role::Server, &[b"small", &big]);
        let mut r = FrameReader::new(Role::Client, 100_000);
        r.buf.extend_from_slice(&bytes);
        assert_eq!(r.parse().unwrap(), Some(Received::Binary(Bytes::from_static(b"small"))));
        assert_eq!(r.parse().unwrap(), Some(Received::Binary(big)));
        assert_eq!(r.parse().unwrap(), None);
    }

    #[test]
    fn a_client_masks_a_large_unshared_payload_in_place() {
        let mut w = FrameWriter::new(Role::Client);
        let big = vec![5u8; 10_000];
        let owned = Bytes::from(big.clone());
        let ptr = owned.as_ptr();
        w.binary(owned);
        let shared = Bytes::from(vec![6u8; 10_000]);
        w.binary(shared.clone()); // still held here: masked into a copy
        let whole = Bytes::from(vec![4u8; 10_000]);
        let whole_ptr = whole.as_ptr();
        w.binary_parts(whole, Bytes::new()); // a whole message given as parts: as `binary`
        w.flush_queue_for_test();
        assert!(w.queue.iter().any(|b| b.as_ptr() == ptr), "the unshared payload is sent from where it was");
        assert!(w.queue.iter().any(|b| b.as_ptr() == whole_ptr), "so is a whole message given as parts");
        assert!(shared.iter().all(|&b| b == 6), "a shared payload is never changed");
        let bytes: Vec<u8> = w.queue.iter().flat_map(|b| b.iter().copied()).collect();
        let mut r = FrameReader::new(Role::Server, 100_000);
        r.buf.extend_from_slice(&bytes);
        assert_eq!(r.parse().unwrap(), Some(Received::Binary(Bytes::from(big))));
        assert_eq!(r.parse().unwrap(), Some(Received::Binary(shared)));
        assert_eq!(r.parse().unwrap(), Some(Received::Binary(Bytes::from(vec![4u8; 10_000]))));
    }

    /// A message given as head and payload reads back as the two joined, for both
    /// roles, whatever the head's length (the mask goes on across the join), small or
    /// large, payload shared or not.
    #[test]
    fn messages_in_two_parts_read_back_joined() {
        for role in [Role::Client, Role::Server] {
            for head_len in [0, 1, 6, 7] {
                for payload_len in [0, 5, 5_000] {
                    let head = Bytes::from((0..head_len).map(|i| i as u8 ^ 0x5a).collect::<Vec<_>>());
                    let body: Vec<u8> = (0..payload_len).map(|i| (i % 251) as u8).collect();
                    let shared = Bytes::from(body.clone());
                    let mut w = FrameWriter::new(role);
                    w.binary_parts(head.clone(), shared.clone());
                    w.binary_parts(head.clone(), Bytes::from(body.clone()));
                    w.flush_queue_for_test();
                    assert!(shared.iter().copied().eq(body.iter().copied()), "a shared payload is never changed");
                    let bytes: Vec<u8> = w.queue.iter().flat_map(|b| b.iter().copied()).collect();
                    let peer = if role == Role::Client { Role::Server } else { Role::Client };
                    let joined = Bytes::from([&head[..], &body].concat());
                    let got = parse_all(peer, 100_000, &bytes).unwrap();
                    assert_eq!(
                        got,
                        [Received::Binary(joined.clone()), Received::Binary(joined)],
                        "{role:?} {head_len}+{payload_len}"
                    );
                }
            }
        }
    }

    impl FrameWriter {
        fn flush_queue_for_test(&mut self) {
            let rest = self.copied.split().freeze();
            self.queue.push_back(rest);
        }
    }

    fn parse_all(role: Role, max: usize, bytes: &[u8]) -> Result<Vec<Received>, WireError> {
        let mut r = FrameReader::new(role, max);
        r.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(m) = r.parse()? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn fragments_are_joined_and_control_frames_pass_between_them() {
        // binary "ab" (not fin), ping "p", continuation "cd" (fin); all unmasked from a server.
        let bytes = [&[0x02, 2, b'a', b'b'][..], &[0x89, 1, b'p'], &[0x80, 2, b'c', b'd']].concat();
        let got = parse_all(Role::Client, 100, &bytes).unwrap();
        assert_eq!(got, vec![Received::Ping(Bytes::from_static(b"p")), Received::Binary(Bytes::from_static(b"abcd"))]);
    }

    #[test]
    fn text_is_joined_across_fragments_and_must_be_utf8() {
        // "é€" cut inside both characters: c3 | a9 e2 82 | ac.
        let bytes = [&[0x01, 1, 0xC3][..], &[0x00, 3, 0xA9, 0xE2, 0x82], &[0x80, 1, 0xAC]].concat();
        let got = parse_all(Role::Client, 100, &bytes).unwrap();
        assert_eq!(got, vec![Received::Text(Bytes::from("é€"))]);
        let r = parse_all(Role::Client, 100, &[0x81, 2, 0xC3, 0x28]);
        assert!(matches!(r, Err(WireError::Utf8("a text message"))), "{r:?}");
        // A message of the other kind may not start inside a fragmented one.
        let r = parse_all(Role::Client, 100, &[0x01, 1, b'a', 0x82, 0]);
        assert!(matches!(r, Err(WireError::Protocol(_))), "{r:?}");
    }

    /// Fragments and closes as the bridge writes them read back as what was meant, for
    /// both roles; a close reason is cut to fit at a character boundary.
    #[test]
    fn fragments_and_closes_read_back() {
        for (writer, reader) in [(Role::Client, Role::Server), (Role::Server, Role::Client)] {
            let mut w = FrameWriter::new(writer);
            w.fragment(true, false, false, Bytes::from_static(b"he"));
            w.pong(Bytes::from_static(b"p"));
            w.fragment(false, false, true, Bytes::from_static(b"llo"));
            w.fragment(true, true, true, Bytes::from(vec![1u8; 5_000]));
            w.close_with(Some(4000), &"é".repeat(100));
            w.close_with(None, "ignored without a code");
            w.flush_queue_for_test();
            let bytes: Vec<u8> = w.queue.iter().flat_map(|b| b.iter().copied()).collect();
            let got = parse_all(reader, 10_000, &bytes).unwrap();
            let reason = "é".repeat(61); // 122 bytes: the 62nd would end past 123
            let want = [
                Received::Pong,
                Received::Text(Bytes::from_static(b"hello")),
                Received::Binary(Bytes::from(vec![1u8; 5_000])),
                Received::Close(Some((4000, reason))),
                Received::Close(None),
            ];
            assert_eq!(got, want, "{writer:?}");
        }
    }

    #[test]
    fn rule_breakers_are_refused() {
        let cases: &[(&str, Role, Vec<u8>)] = &[
            ("unmasked to a server", Role::Server, vec![0x82, 1, 0]),
            ("masked to a client", Role::Client, vec![0x82, 0x81, 1, 2, 3, 4, 0]),
            ("reserved bits", Role::Client, vec![0xC2, 0]),
            ("reserved opcode", Role::Client, vec![0x83, 0]),
            ("fragmented ping", Role::Client, vec![0x09, 0]),
            ("long ping", Role::Client, [vec![0x89, 126, 0, 126], vec![0; 126]].concat()),
            ("lone continuation", Role::Client, vec![0x80, 0]),
            ("message inside a message", Role::Client, vec![0x02, 0, 0x82, 0]),
            ("top length bit", Role::Client, vec![0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0]),
        ];
        for (what, role, bytes) in cases {
            let r = parse_all(*role, 1000, bytes);
            assert!(matches!(r, Err(WireError::Protocol(_))), "{what}: {r:?}");
        }
    }

    #[test]
    fn oversized_messages_are_refused_from_their_header() {
        // A header announcing 2^40 bytes: refused before any of it is buffered.
        let r = parse_all(Role::Client, 1000, &[0x82, 127, 0, 0, 1, 0, 0, 0, 0, 0]);
        assert!(matches!(r, Err(WireError::TooLarge { .. })), "{r:?}");
        // Fragments that add up past the limit.
        let bytes = [&[0x02, 100][..], &[0; 100], &[0x80, 100], &[0; 100]].concat();
        let r = parse_all(Role::Client, 150, &bytes);
        assert!(matches!(r, Err(WireError::TooLarge { size: 200, .. })), "{r:?}");
    }

    #[test]
    fn close_codes_are_read() {
        let close = |code, reason: &str| Received::Close(Some((code, reason.to_string())));
        assert_eq!(parse_all(Role::Client, 10, &[0x88, 2, 0x03, 0xE8]).unwrap(), vec![close(1000, "")]);
        assert_eq!(parse_all(Role::Client, 10, &[0x88, 4, 0x0F, 0xA0, b'o', b'k']).unwrap(), vec![close(4000, "ok")]);
        assert_eq!(parse_all(Role::Client, 10, &[0x88, 0]).unwrap(), vec![Received::Close(None)]);
        let r = parse_all(Role::Client, 10, &[0x88, 3, 0x03, 0xE8, 0xFF]);
        assert!(matches!(r, Err(WireError::Utf8(_))), "a close reason that is not UTF-8: {r:?}");
    }

    proptest::proptest! {
        /// Whatever a peer sends, the reader answers with messages or an error, never
        /// a panic, and the answer does not depend on how the bytes were split into reads.
        #[test]
        fn any_bytes_in_any_reads_give_the_same_answer(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            cut in 0usize..400,
            server in proptest::prelude::any::<bool>(),
        ) {
            let role = if server { Role::Server } else { Role::Client };
            let whole = parse_all(role, 300, &bytes).map_err(|e| e.to_string());
            let mut r = FrameReader::new(role, 300);
            let cut = cut.min(bytes.len());
            let mut got = Vec::new();
            let mut failed = None;
            for part in [&bytes[..cut], &bytes[cut..]] {
                r.buf.extend_from_slice(part);
                loop {
                    match r.parse() {
                        Ok(Some(m)) => got.push(m),
                        Ok(None) => break,
                        Err(e) => {
                            failed = Some(e.to_string());
                            break;
                        }
                    }
                }
                if failed.is_some() {
                    break;
                }
            }
            match (whole, failed) {
                (Err(a), Some(b)) => proptest::prop_assert_eq!(a, b),
                (Ok(a), None) => proptest::prop_assert_eq!(a, got),
                (a, b) => proptest::prop_assert!(false, "whole: {:?}, in two reads: {:?} / {:?}", a, got, b),
            }
        }

        /// Frames a writer makes read back as the messages it was given, for both roles.
        #[test]
        fn written_messages_read_back(
            messages in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..9000), 0..5),
            server in proptest::prelude::any::<bool>(),
        ) {
            let (writer, reader) = if server { (Role::Server, Role::Client) } else { (Role::Client, Role::Server) };
            let slices: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
            let bytes = frames(writer, &slices);
            let got = parse_all(reader, 10_000, &bytes).map_err(|e| e.to_string());
            let want: Vec<Received> = messages.iter().map(|m| Received::Binary(Bytes::copy_from_slice(m))).collect();
            proptest::prop_assert_eq!(got, Ok(want));
        }
    }
}
