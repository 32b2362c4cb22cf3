//! HTTP/1.1 connections to a network origin, kept for reuse.
//!
//! A connection is a socket and the bytes read from it but not yet parsed. The
//! exchange that takes one out of the pool writes and reads it itself, in its own task
//! ([`crate::exchange`]); when its response is complete the connection comes back here
//! for the next exchange. One that the origin closed, that is mid-message, or that
//! holds bytes nobody asked for is dropped instead.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::sync::Mutex;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use localtunnels_driver::h1::{FieldCache, HeadLimits};
use tokio::io::AsyncReadExt;

use crate::origin::{ConnectFuture, OriginStream};

/// Idle connections kept per origin: above the 32 a busy tunnel keeps in flight, so
/// steady load reuses connections instead of opening new ones.
const MAX_IDLE: usize = 256;

/// How long an idle connection is kept (hyper's pooled client kept them 90 s too).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// What one read asks for at first; doubled while reads fill it, up to the pool's
/// `max_read` (hyper's adaptive read buffer does the same), so a large body is read
/// in few system calls and a small response costs a small buffer.
const FIRST_READ: usize = 8 * 1024;

/// Opens a connection (TCP, and TLS for HTTPS) to the origin.
pub(crate) type Connect = Box<dyn Fn() -> ConnectFuture + Send + Sync>;

/// The idle connections of one origin and how to open more.
pub(crate) struct OriginPool {
    idle: Mutex<Vec<Idle>>,
    connect: Connect,
    /// Bounds on a response head (its size is also the most one read asks for).
    pub(crate) limits: HeadLimits,
}

impl std::fmt::Debug for OriginPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self.idle.lock().map_or(0, |v| v.len());
        f.debug_struct("OriginPool").field("idle", &idle).finish_non_exhaustive()
    }
}

struct Idle {
    conn: Box<OriginConn>,
    /// When it is too old to be used ([`IDLE_TIMEOUT`] after its check-in): the
    /// checkout, on the request's critical path, compares two instants instead of
    /// subtracting them (`saturating_duration_since`, ~40 instructions a request).
    expires: Instant,
}

/// One connection to the origin.
pub(crate) struct OriginConn {
    pub(crate) io: OriginStream,
    /// Read from the socket, not yet parsed.
    pub(crate) read: BytesMut,
    read_size: usize,
    max_read: usize,
    /// The request head being written: it goes first, then `queue`.
    pub(crate) head: HeadBuf,
    /// Where body framing (chunk sizes, the last chunk) is encoded.
    pub(crate) encode: BytesMut,
    /// What is to be written after the head, in order: body pieces as they come.
    pub(crate) queue: VecDeque<Bytes>,
    /// It served an exchange before this one.
    pub(crate) reused: bool,
    /// The checkout's read found nothing in the task's current poll: the socket will
    /// wake the task when the answer comes, so the exchange's first read (in the same
    /// poll, right after the request is written) can be skipped.
    pub(crate) read_armed: bool,
    /// The field names of the last response head, for the next one.
    pub(crate) fields: FieldCache,
}

impl OriginConn {
    fn new(io: OriginStream, max_read: usize) -> Self {
        let (read, encode, queue) = (BytesMut::new(), BytesMut::new(), VecDeque::new());
        let fields = FieldCache::default();
        OriginConn {
            io,
            read,
            read_size: FIRST_READ,
            max_read,
            head: HeadBuf::default(),
            encode,
            queue,
            reused: false,
            read_armed: false,
            fields,
        }
    }

    /// Reads what the socket has into `read`; `Ok(0)` at the end of the origin's input.
    pub(crate) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.read_armed = false;
        if self.read.capacity() - self.read.len() < self.read_size {
            self.read.reserve(self.read_size);
        }
        let n = ready!(std::pin::pin!(self.io.read_buf(&mut self.read)).poll(cx))?;
        if n >= self.read_size {
            self.read_size = (self.read_size * 2).min(self.max_read);
        } else if n < self.read_size / 4 {
            self.read_size = FIRST_READ;
        }
        Poll::Ready(Ok(n))
    }
}

/// Largest head buffer a connection keeps for its next request: one that grew past it
/// (a request with very large fields) is freed when the connection goes back to the
/// pool, not held while idle.
const MAX_KEPT_HEAD: usize = 16 * 1024;

/// A request head on its way to the origin. Its memory is kept from one exchange to
/// the next (cleared when the next head is started), so a head is written into memory
/// that is already there, with no buffer split off and reclaimed per request; the head
/// written stays until then, for a request sent again on another connection
/// ([`HeadBuf::whole`]).
///
/// A head written in place ([`HeadBuf::write_in_place`], the raw requests') is written
/// over the bytes the last one left, and only its length is kept: `bytes` stays as long
/// as the longest head so far, so the writer copies into bytes that are there, with no
/// length to update and no room to check per piece, and nothing to zero first.
#[derive(Debug, Default)]
pub(crate) struct HeadBuf {
    bytes: Vec<u8>,
    /// How much of `bytes` is the head: all of it after [`HeadBuf::start`] (the head is
    /// appended), the prefix written after [`HeadBuf::write_in_place`].
    len: usize,
    /// How much of the head the socket took.
    sent: usize,
}

impl HeadBuf {
    /// The buffer to write a new head into (emptied first); all of what is appended is
    /// the head.
    pub(crate) fn start(&mut self) -> &mut Vec<u8> {
        self.bytes.clear();
        self.sent = 0;
        self.len = usize::MAX;
        &mut self.bytes
    }

    /// A new head written by `write` from the buffer's start over the bytes there
    /// (which it may also grow), returning where the head ends.
    pub(crate) fn write_in_place(&mut self, write: impl FnOnce(&mut Vec<u8>) -> usize) {
        self.sent = 0;
        self.len = write(&mut self.bytes);
    }

    /// The last head started, all of it, written or not.
    pub(crate) fn whole(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&self.bytes)
    }

    /// What is still to be written.
    pub(crate) fn unsent(&self) -> &[u8] {
        self.whole().get(self.sent..).unwrap_or_default()
    }

    /// Counts `n` written bytes against the head; returns those that were past it.
    pub(crate) fn advance(&mut self, n: usize) -> usize {
        let taken = n.min(self.unsent().len());
        self.sent += taken;
        n - taken
    }

    /// Frees a head buffer that grew past [`MAX_KEPT_HEAD`].
    fn trim(&mut self) {
        if self.bytes.capacity() > MAX_KEPT_HEAD {
            *self = HeadBuf::default();
        }
    }
}

impl OriginConn {
    /// Whether an idle connection is still open and silent (a look that does not
    /// wait); if so, the task will be woken when the socket turns readable, and the
    /// exchange's first read can be skipped ([`OriginConn::read_armed`]).
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> bool {
        if let crate::tls::Transport::Plain(tcp) = &self.io {
            // Readiness alone, without a read, when the socket is known not readable
            // (the usual case); else a read finds out what is there.
            if tcp.poll_read_ready(cx).is_pending() {
                self.read_armed = true;
                return true;
            }
        }
        let alive = self.poll_fill(cx).is_pending();
        self.read_armed = alive;
        alive
    }
}

impl OriginPool {
    /// A pool whose connections come from `connect`; `limits.max_bytes` bounds a
    /// response head and each read.
    pub(crate) fn new(connect: Connect, limits: HeadLimits) -> Self {
        OriginPool { idle: Mutex::new(Vec::new()), connect, limits }
    }

    /// The most recently used idle connection that is still open, or `None`.
    pub(crate) async fn checkout(&self) -> Option<Box<OriginConn>> {
        loop {
            let Idle { mut conn, expires } = self.lock().pop()?;
            // The reader's clock reading when the checkout runs in its turn (the usual
            // case: the OPEN was read microseconds ago), else the clock.
            let now = localtunnels_driver::turn_clock::turn_instant().unwrap_or_else(Instant::now);
            if now > expires {
                continue;
            }
            // One read that does not wait: an origin that closed the connection while
            // it was idle (or sent something nobody asked for) is found out now, not
            // after a request was written to it.
            let alive = std::future::poll_fn(|cx| Poll::Ready(conn.poll_idle(cx))).await;
            if alive {
                conn.reused = true;
                return Some(conn);
            }
        }
    }

    /// A new connection. Boxed: it moves from the pool into an exchange, into the
    /// response body and back on every request.
    pub(crate) async fn open(&self) -> io::Result<Box<OriginConn>> {
        Ok(Box::new(OriginConn::new((self.connect)().await?, self.limits.max_bytes.max(FIRST_READ))))
    }

    /// Takes back a connection whose exchange is complete and which may carry another.
    pub(crate) fn checkin(&self, mut conn: Box<OriginConn>) {
        conn.head.trim();
        if !conn.read.is_empty() || !conn.head.unsent().is_empty() || !conn.queue.is_empty() {
            // Bytes after the response: the origin is not speaking HTTP/1.1 as asked.
            return;
        }
        // The turn's reading, shared with the inspector's filing after the same write.
        let expires = localtunnels_driver::turn_clock::now() + IDLE_TIMEOUT;
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE {
            idle.push(Idle { conn, expires });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local_port(conn: &OriginConn) -> u16 {
        let crate::tls::Transport::Plain(tcp) = &conn.io else { panic!("a plain connection") };
        tcp.local_addr().unwrap().port()
    }

    /// An idle connection past its time is dropped at the checkout; one within it is
    /// used (the checkout compares the instant it expires with the clock's).
    #[tokio::test]
    async fn a_checkout_skips_a_connection_past_its_idle_time() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connect: Connect = Box::new(|| Box::pin(async { Err(io::Error::other("not used")) }));
        let pool = OriginPool::new(connect, HeadLimits::default());
        let mut accepted = Vec::new();
        let conn = || async {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            Box::new(OriginConn::new(crate::tls::Transport::Plain(tcp), FIRST_READ))
        };
        let (fresh, old) = (conn().await, conn().await);
        accepted.push(listener.accept().await.unwrap());
        accepted.push(listener.accept().await.unwrap());
        let fresh_port = local_port(&fresh);
        let now = Instant::now();
        {
            let mut idle = pool.lock();
            idle.push(Idle { conn: fresh, expires: now + IDLE_TIMEOUT });
            // The most recent is taken first: this one, expired a moment ago.
            idle.push(Idle { conn: old, expires: now - Duration::from_millis(1) });
        }
        let taken = pool.checkout().await.expect("the fresh connection");
        assert_eq!(local_port(&taken), fresh_port);
        assert!(taken.reused);
        assert!(pool.checkout().await.is_none(), "the expired one was dropped");
    }

    #[test]
    fn a_head_is_written_in_parts_and_its_memory_kept_unless_large() {
        let mut head = HeadBuf::default();
        head.start().extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(head.advance(4), 0);
        assert_eq!(head.unsent(), b"/ HTTP/1.1\r\n\r\n");
        // A write that took the rest of the head and 5 bytes after it.
        assert_eq!(head.advance(14 + 5), 5);
        assert!(head.unsent().is_empty());
        assert_eq!(head.whole(), b"GET / HTTP/1.1\r\n\r\n", "kept for a request sent again");
        assert_eq!(head.advance(3), 3, "nothing to take");
        head.trim();
        assert!(head.bytes.capacity() >= 18, "kept for the next head");
        assert!(head.start().is_empty());
        head.start().extend_from_slice(&[b'a'; MAX_KEPT_HEAD + 1]);
        assert_eq!(head.advance(MAX_KEPT_HEAD + 1), 0);
        head.trim();
        assert_eq!(head.bytes.capacity(), 0, "a large one is freed");
    }

    /// A head written in place is only the bytes its writer says, over a longer head's
    /// bytes; a head started after it is all that is appended.
    #[test]
    fn a_head_written_in_place_is_its_prefix_of_the_buffer() {
        let mut head = HeadBuf::default();
        assert!(head.whole().is_empty() && head.unsent().is_empty());
        head.start().extend_from_slice(b"GET /a/long/target HTTP/1.1\r\n\r\n");
        head.write_in_place(|buf| {
            buf[..4].copy_from_slice(b"HEAD");
            4
        });
        assert_eq!(head.whole(), b"HEAD");
        assert_eq!(head.advance(3), 0);
        assert_eq!(head.unsent(), b"D");
        assert_eq!(head.advance(5), 4, "one byte of the head, four past it");
        assert!(head.unsent().is_empty());
        assert_eq!(head.whole(), b"HEAD", "kept for a request sent again");
        assert_eq!(head.start().len(), 0);
        head.start().extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(head.unsent(), b"GET / HTTP/1.1\r\n\r\n");
    }
}
