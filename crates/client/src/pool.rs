//! HTTP/1.1 connections to a network origin, each one driven by the exchange using it.
//!
//! hyper's pooled client runs every connection in a task of its own, so a tunneled
//! request crossed from its stream's task to the connection's task and back, for the
//! response head and again for every body chunk, each crossing a wake-up and often a
//! thread switch. Here the exchange polls its connection itself: while it waits for the
//! response head ([`Http1Pool::send`]) and while the response body streams
//! ([`DrivenBody`]). When the body is done the connection goes back to an idle list for
//! the next exchange; one that is closed, broken or mid-message is dropped instead.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use localtunnels_driver::StreamBody;

use crate::origin::{BoxError, OriginBody, OriginStream};

/// Idle connections kept per origin: above the 32 a busy tunnel keeps in flight, so
/// steady load reuses connections instead of opening new ones.
const MAX_IDLE: usize = 256;

/// How long an idle connection is kept (hyper's pooled client uses the same 90 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Opens a connection (TCP, and TLS for HTTPS) to the origin.
pub(crate) type Connect = Box<dyn Fn() -> crate::origin::ConnectFuture + Send + Sync>;

/// The idle connections of one origin and how to open more.
pub(crate) struct Http1Pool {
    idle: Mutex<Vec<Idle>>,
    connect: Connect,
    builder: http1::Builder,
}

impl std::fmt::Debug for Http1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self.idle.lock().map_or(0, |v| v.len());
        f.debug_struct("Http1Pool").field("idle", &idle).finish_non_exhaustive()
    }
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// hyper's state machine of one origin connection.
type Driver = http1::Connection<TokioIo<OriginStream>, StreamBody>;

/// One HTTP/1.1 connection: the handle requests are sent on and the state machine that
/// reads and writes the socket, which whoever uses the connection must poll.
struct Conn {
    sender: http1::SendRequest<StreamBody>,
    /// `None` once the connection is over (closed by the origin, or failed). Boxed:
    /// hyper's state machine is large, and a `Conn` moves in and out of the idle list
    /// and into a response body on every exchange.
    driver: Option<Pin<Box<Driver>>>,
}

impl Conn {
    /// Lets the connection read and write what it can. False once it is over; its
    /// pending request or body, if any, then sees the error.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(driver) = self.driver.as_mut() else { return false };
        match driver.as_mut().poll(cx) {
            Poll::Pending => true,
            Poll::Ready(result) => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "origin connection ended");
                }
                self.driver = None;
                false
            }
        }
    }
}

impl Http1Pool {
    /// A pool whose connections come from `connect`; `max_buf_size` caps each
    /// connection's read buffer.
    pub(crate) fn new(connect: Connect, max_buf_size: usize) -> Self {
        let mut builder = http1::Builder::new();
        builder.max_buf_size(max_buf_size);
        Http1Pool { idle: Mutex::new(Vec::new()), connect, builder }
    }

    /// Sends `req` (origin-form URI, `Host` set) on an idle connection or a new one, and
    /// resolves with the response head. A request that an idle connection could not
    /// even start sending (the origin closed it meanwhile) is retried on a new one.
    pub(crate) async fn send(self: &Arc<Self>, mut req: Request<StreamBody>) -> Result<Response<OriginBody>, BoxError> {
        loop {
            let (mut conn, reused) = match self.checkout().await {
                Some(conn) => (conn, true),
                None => (self.open().await?, false),
            };
            let mut pending = std::pin::pin!(conn.sender.try_send_request(req));
            let result = std::future::poll_fn(|cx| {
                conn.drive(cx);
                pending.as_mut().poll(cx)
            })
            .await;
            match result {
                Ok(res) => {
                    let pool = self.clone();
                    return Ok(res.map(|body| DrivenBody { body, conn: Some(conn), done: false, pool }.boxed_unsync()));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }

    /// The most recently used idle connection that is still open and ready.
    async fn checkout(&self) -> Option<Conn> {
        loop {
            let Idle { mut conn, since } = self.lock().pop()?;
            if since.elapsed() > IDLE_TIMEOUT {
                continue;
            }
            // One poll lets the connection notice an origin that closed it and finish
            // the previous exchange's bookkeeping, after which it is ready.
            let ready = std::future::poll_fn(|cx| {
                let alive = conn.drive(cx);
                Poll::Ready(alive && matches!(conn.sender.poll_ready(cx), Poll::Ready(Ok(()))))
            })
            .await;
            if ready {
                return Some(conn);
            }
        }
    }

    async fn open(&self) -> Result<Conn, BoxError> {
        let io = TokioIo::new((self.connect)().await?);
        let (sender, driver) = self.builder.handshake(io).await?;
        Ok(Conn { sender, driver: Some(Box::pin(driver)) })
    }

    fn checkin(&self, conn: Conn) {
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE {
            idle.push(Idle { conn, since: Instant::now() });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A response body that keeps its connection going while it is read, and hands the
/// connection back to the pool as soon as the body is complete (before the caller
/// reports the exchange finished, so the next request finds it idle). Dropped early,
/// it drops the connection: the rest of that response is still on the wire.
struct DrivenBody {
    body: Incoming,
    conn: Option<Conn>,
    /// The body ended cleanly.
    done: bool,
    pool: Arc<Http1Pool>,
}

impl DrivenBody {
    fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            if conn.driver.is_some() {
                self.pool.checkin(conn);
            }
        }
    }
}

impl Body for DrivenBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(conn) = this.conn.as_mut() {
            conn.drive(cx);
        }
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.done = true,
            Poll::Ready(Some(Ok(_))) => this.done = this.body.is_end_stream(),
            Poll::Ready(Some(Err(_))) => this.conn = None,
            Poll::Pending => {}
        }
        if this.done {
            this.release();
        }
        polled.map_err(BoxError::from)
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for DrivenBody {
    fn drop(&mut self) {
        // A body that was empty from the start is never polled.
        if self.is_end_stream() {
            self.release();
        }
    }
}
