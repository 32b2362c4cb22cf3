//! Limits that keep one misbehaving peer from hurting anyone else: their settings
//! ([`Limits`]), the visitor rate limits ([`TokenBucket`], [`Bucket`]), the request body
//! cap ([`limit_body`]) and the connection idle and write timeouts ([`IdleIo`]).
//!
//! Every default is documented in `docs/SECURITY.md`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

use localtunnels_driver::lazy_deadline::LazyDeadline;

/// Per-connection, per-tunnel and per-client limits of a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (request line and headers) a visitor may send, in bytes;
    /// past it the visitor gets 431. Default 64 KiB (at least 8 KiB is used).
    pub max_header_bytes: usize,
    /// Time a connection has to send a complete request head; also how long an idle
    /// HTTP/1 keep-alive connection stays open. A slow-headers (slowloris) client is
    /// cut when it passes. Default 10 s.
    pub header_read_timeout: Duration,
    /// Time a connection has to finish its TLS handshake, and a control connection
    /// to send its hello. Default 10 s.
    pub handshake_timeout: Duration,
    /// A connection (visitor, WebSocket or control) on which no byte moved either way
    /// for this long is closed. Default 300 s.
    pub idle_timeout: Duration,
    /// A visitor connection that reads nothing of what the server writes for this long
    /// is closed, giving back what it held of its tunnel's session window
    /// ([`IdleIo`]); zero turns it off. Default 30 s.
    pub visitor_write_timeout: Duration,
    /// Most visitor exchanges in flight through one tunnel; the next visitor gets 503.
    /// Default 1,024 (the client's own announced limit applies too).
    pub max_streams_per_tunnel: usize,
    /// Most control connections one tunnel may have, its first one included: a client
    /// may open more to spread its work over several threads (`--connections`); past
    /// this a joining connection is refused (`LimitReached`) and the tunnel goes on
    /// with those it has. 1 lets no connection join. Default 4.
    pub max_connections_per_tunnel: usize,
    /// Most tunnels one auth token may hold at once (`LimitReached`). Default 100.
    pub max_tunnels_per_token: usize,
    /// Most tunnels one client IP address may hold at once (`LimitReached`). Default 100.
    pub max_tunnels_per_ip: usize,
    /// Most visitor exchanges in flight through one tunnel from one visitor address
    /// (IPv6: one /64); the next from that address gets 503, others are still served.
    /// Default 256 (a quarter of `max_streams_per_tunnel`).
    pub max_streams_per_visitor: usize,
    /// New visitor requests per tunnel (429 past it). Default: none.
    pub rate_limit: Option<RateLimit>,
    /// New requests per tunnel from one visitor address (429 past it, before the
    /// tunnel's own limit is charged). Default: none.
    pub visitor_rate_limit: Option<RateLimit>,
    /// Largest visitor request body, in bytes (413 past it, from `Content-Length` or
    /// while streaming). Default: none.
    pub max_body: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            visitor_write_timeout: Duration::from_secs(30),
            max_streams_per_tunnel: 1024,
            max_connections_per_tunnel: 4,
            max_tunnels_per_token: 100,
            max_tunnels_per_ip: 100,
            max_streams_per_visitor: 256,
            rate_limit: None,
            visitor_rate_limit: None,
            max_body: None,
        }
    }
}

/// A token-bucket rate: `per_second` on average, bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests allowed at once after a quiet spell (at least 1).
    pub burst: u32,
}

/// A token bucket: starts full, refills at the rate, one token per request.
#[derive(Debug)]
pub struct TokenBucket {
    limit: RateLimit,
    state: Mutex<Bucket>,
}

impl TokenBucket {
    /// A full bucket for `limit`.
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        TokenBucket { limit, state: Mutex::new(Bucket::full(limit, now)) }
    }

    /// Takes one token, or says how long until one is available.
    pub fn try_take(&self, now: Instant) -> Result<(), Duration> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).try_take(self.limit, now)
    }
}

/// A token bucket's state without a lock, for callers that keep many under one lock
/// ([`crate::visitors`]); the rate comes with each call.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket for `limit`.
    pub fn full(limit: RateLimit, now: Instant) -> Self {
        Bucket { tokens: f64::from(limit.burst.max(1)), last: now }
    }

    /// Takes one token, or says how long until one is available.
    pub fn try_take(&mut self, limit: RateLimit, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(limit.per_second);
        self.refill(limit, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        if rate <= 0.0 {
            return Err(Duration::from_secs(60));
        }
        Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
    }

    /// Whether the bucket is full again at `now` (its owner has been quiet long
    /// enough that forgetting it changes nothing).
    pub fn is_full(&self, limit: RateLimit, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * f64::from(limit.per_second) >= f64::from(limit.burst.max(1))
    }

    fn refill(&mut self, limit: RateLimit, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(limit.per_second)).min(f64::from(limit.burst.max(1)));
        self.last = now;
    }
}

/// A request body over the limit.
#[derive(Debug, thiserror::Error)]
#[error("the request body exceeds the limit of {0} bytes")]
pub struct TooLarge(pub u64);

/// Fires when a [`LimitedBody`] passes its limit; pending forever otherwise.
pub type TooLargeSignal = Pin<Box<dyn Future<Output = u64> + Send>>;

/// A visitor's request body, cut with an error once it passes `limit` bytes.
#[derive(Debug)]
pub struct LimitedBody<B> {
    inner: Pin<Box<B>>,
    seen: u64,
    limit: u64,
    signal: Option<oneshot::Sender<u64>>,
}

/// Wraps `body` with the server's `max_body`. The signal resolves if the body passes
/// the limit while streaming, so the proxy can answer 413 at once.
pub fn limit_body<B>(body: B, limit: u64) -> (LimitedBody<B>, TooLargeSignal) {
    let (tx, rx) = oneshot::channel();
    let signal = Box::pin(async move {
        match rx.await {
            Ok(limit) => limit,
            Err(_) => std::future::pending().await,
        }
    });
    (LimitedBody { inner: Box::pin(body), seen: 0, limit, signal: Some(tx) }, signal)
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.seen > self.limit {
            return Poll::Ready(None);
        }
        match std::task::ready!(self.inner.as_mut().poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    self.seen = self.seen.saturating_add(data.len() as u64);
                    if self.seen > self.limit {
                        let limit = self.limit;
                        if let Some(tx) = self.signal.take() {
                            let _ = tx.send(limit);
                        }
                        return Poll::Ready(Some(Err(Box::new(TooLarge(limit)))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.seen > self.limit || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection under two clocks, both failing it with `TimedOut` (hyper then drops
/// it and the streams it carried):
/// - **idle**: no byte moved either way for `idle`. The timer is checked whenever the
///   connection is polled, which hyper does while it waits for a request and every
///   tunnel task does while it waits for data.
/// - **write** (`Limits::visitor_write_timeout`): a write stayed pending, the peer
///   reading nothing, for the write timeout. A visitor that stops reading a response
///   holds what reached the server for it (up to a stream window of the tunnel's
///   session window) until it reads again; fair shares keep a few such visitors from
///   starving their tunnel (`docs/PROTOCOL.md` §7), and this deadline gives the credit
///   back from any number of them.
///
/// Activity only moves a [`LazyDeadline`] (a store; the timer under it moves when it
/// fires early), since a tokio timer moved on every read and write costs a timer-wheel
/// update per call (docs/BENCHMARKS.md).
///
/// A connection upgraded to a WebSocket (a visitor's, or a client's control
/// connection) turns both clocks off through its [`IdleSwitch`]: a quiet chat is not
/// idle, and dead peers are found by pings there (control sessions also find peers
/// that do not read by their unanswered pings).
#[derive(Debug)]
pub struct IdleIo<I> {
    inner: I,
    idle: Duration,
    /// One idle period after a byte last moved.
    deadline: LazyDeadline,
    /// `None`: no write deadline.
    write_timeout: Option<Duration>,
    /// Set when a write first found the socket full; moved on each stall.
    write_deadline: Option<LazyDeadline>,
    /// A write is pending and no byte has moved since `write_deadline` was set.
    write_stalled: bool,
    switch: IdleSwitch,
}

/// Turns a connection's idle timeout off; each request's [`crate::state::Peer`] has it.
#[derive(Debug, Clone, Default)]
pub struct IdleSwitch(Arc<AtomicBool>);

impl IdleSwitch {
    /// No idle timeout on this connection from now on.
    pub fn disable(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub(crate) fn disabled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl<I> IdleIo<I> {
    /// Wraps `inner` under the `idle` timeout and the `write_timeout` (zero: none); the
    /// switch turns both off.
    pub fn new(inner: I, idle: Duration, write_timeout: Duration) -> (Self, IdleSwitch) {
        let switch = IdleSwitch::default();
        let deadline = LazyDeadline::new(tokio::time::Instant::now() + idle);
        let write_timeout = (!write_timeout.is_zero()).then_some(write_timeout);
        let io = IdleIo {
            inner,
            idle,
            deadline,
            write_timeout,
            write_deadline: None,
            write_stalled: false,
            switch: switch.clone(),
        };
        (io, switch)
    }

    /// Moves the idle deadline, unless the switch turned it off (an upgraded
    /// connection then reads no clock per message).
    fn activity(&mut self) {
        if !self.switch.disabled() {
            self.deadline.set(crate::poll_clock::now() + self.idle);
        }
    }

    /// Counts a write that moved bytes as activity; a pending one checks both deadlines.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<usize>>,
    ) -> Poll<std::io::Result<usize>> {
        let polled = match polled {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.activity();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.check(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => return self.check_write(cx).map(Err),
            },
        };
        self.write_stalled = false;
        polled
    }

    fn check(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        if self.switch.disabled() {
            return Poll::Pending;
        }
        std::task::ready!(self.deadline.poll_expired(cx));
        Poll::Ready(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("connection idle for {} s", self.idle.as_secs()),
        ))
    }

    /// A write is pending: starts the write deadline if it is the first pending one
    /// since bytes last moved, and checks it.
    fn check_write(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        let Some(timeout) = self.write_timeout else { return Poll::Pending };
        if self.switch.disabled() {
            return Poll::Pending;
        }
        if !self.write_stalled {
            self.write_stalled = true;
            let at = crate::poll_clock::now() + timeout;
            match &mut self.write_deadline {
                Some(d) => d.set(at),
                none => *none = Some(LazyDeadline::new(at)),
            }
        }
        let Some(deadline) = &mut self.write_deadline else { return Poll::Pending };
        std::task::ready!(deadline.poll_expired(cx));
        let message = format!("the visitor read nothing for {} s", timeout.as_secs());
        Poll::Ready(std::io::Error::new(std::io::ErrorKind::TimedOut, message))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for IdleIo<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.activity();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.check(cx).map(Err),
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for IdleIo<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, data);
        this.after_write(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    /// A flush that waits on a peer that reads nothing runs into the write deadline.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.check_write(cx).map(Err),
            ready => {
                this.write_stalled = false;
                ready
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// On a virtual clock: a connection that keeps moving bytes outlives many idle
    /// periods; once it stops, it times out one period after its last byte.
    #[tokio::test(start_paused = true)]
    async fn only_a_silent_connection_times_out() {
        let idle = Duration::from_millis(300);
        let (near, mut far) = tokio::io::duplex(64);
        let (mut io, _switch) = IdleIo::new(near, idle, Duration::ZERO);
        let started = tokio::time::Instant::now();
        let mut byte = [0u8; 1];
        for _ in 0..10 {
            // The read waits (and checks the timer) while the clock moves on.
            let (read, ()) = tokio::join!(io.read_exact(&mut byte), async {
                tokio::time::advance(Duration::from_millis(200)).await;
                far.write_all(b"x").await.unwrap();
            });
            read.expect("an active connection stays open");
        }
        let last = tokio::time::Instant::now();
        assert!(last - started >= Duration::from_secs(2));
        let err = io.read(&mut byte).await.expect_err("a silent connection times out");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(tokio::time::Instant::now() - last, idle);
    }

    /// On a virtual clock: a peer that reads nothing fails a pending write one write
    /// timeout after the write first stalled; a peer that reads keeps the connection,
    /// and a disabled switch (an upgraded connection) turns the deadline off.
    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_reads_times_out() {
        let idle = Duration::from_secs(3600);
        let timeout = Duration::from_secs(30);
        let (near, mut far) = tokio::io::duplex(16);
        let (mut io, _switch) = IdleIo::new(near, idle, timeout);
        // Reads while the clock moves: the stalled write goes on.
        for _ in 0..4 {
            let (written, read) = tokio::join!(io.write_all(&[7; 48]), async {
                tokio::time::advance(Duration::from_secs(20)).await;
                let mut buf = [0u8; 48];
                far.read_exact(&mut buf).await
            });
            written.expect("a peer that reads keeps the connection");
            read.expect("read");
        }
        let stalled = tokio::time::Instant::now();
        let err = io.write_all(&[7; 48]).await.expect_err("a peer that reads nothing is dropped");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(err.to_string(), "the visitor read nothing for 30 s");
        assert_eq!(tokio::time::Instant::now() - stalled, timeout);

        let (near, _far) = tokio::io::duplex(16);
        let (mut io, switch) = IdleIo::new(near, idle, timeout);
        switch.disable();
        let write = localtunnels_driver::timers::timeout(timeout * 10, io.write_all(&[7; 48])).await;
        assert!(write.is_err(), "no write deadline once the switch is off");
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let b = TokenBucket::new(RateLimit { per_second: 10, burst: 3 }, t0);
        assert!(b.try_take(t0).is_ok());
        assert!(b.try_take(t0).is_ok());
        assert!(b.try_take(t0).is_ok());
        let wait = b.try_take(t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(b.try_take(t0 + Duration::from_millis(100)).is_ok());
        assert!(b.try_take(t0 + Duration::from_millis(100)).is_err());
        // Refill never exceeds the burst.
        let later = t0 + Duration::from_secs(60);
        assert!((0..3).all(|_| b.try_take(later).is_ok()));
        assert!(b.try_take(later).is_err());
    }

    #[tokio::test]
    async fn limited_body_errors_past_the_limit() {
        use http_body_util::BodyExt;
        let chunks = futures_util::stream::iter(
            [Bytes::from_static(b"abcd"), Bytes::from_static(b"efgh")]
                .map(|b| Ok::<_, std::convert::Infallible>(Frame::data(b))),
        );
        let (body, signal) = limit_body(http_body_util::StreamBody::new(chunks), 6);
        let err = body.collect().await.unwrap_err();
        assert_eq!(err.to_string(), "the request body exceeds the limit of 6 bytes");
        assert_eq!(signal.await, 6);
    }
}
