//! The visitor write deadline ([`WriteDeadlineIo`]): a connection whose peer has read
//! nothing of what the server writes for `Limits::visitor_write_timeout` is closed.
//!
//! A visitor that stops reading a response holds what reached the server for it (up to
//! a stream window of the tunnel's session window) until it reads again; fair shares
//! keep a few such visitors from starving their tunnel (`docs/PROTOCOL.md` §7), and this
//! deadline gives the credit back from any number of them. Control connections are
//! exempt (their sessions find peers that do not read with unanswered pings).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use localtunnels_driver::lazy_deadline::LazyDeadline;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::limits::IdleSwitch;

/// Wraps a connection: a write that stays pending for the timeout fails with
/// `TimedOut` (hyper then drops the connection and the streams it carried).
#[derive(Debug)]
pub struct WriteDeadlineIo<I> {
    inner: I,
    /// `None`: no deadline.
    timeout: Option<Duration>,
    /// Set when a write first found the socket full; moved on each stall.
    deadline: Option<LazyDeadline>,
    /// A write is pending and no byte has moved since `deadline` was set.
    stalled: bool,
    /// The connection's idle switch: a control connection turns both deadlines off.
    switch: IdleSwitch,
}

impl<I> WriteDeadlineIo<I> {
    /// Wraps `inner`; a zero `timeout` turns the deadline off.
    pub fn new(inner: I, timeout: Duration, switch: IdleSwitch) -> Self {
        let timeout = (!timeout.is_zero()).then_some(timeout);
        WriteDeadlineIo { inner, timeout, deadline: None, stalled: false, switch }
    }

    fn after_write<T>(&mut self, cx: &mut Context<'_>, polled: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        if polled.is_ready() {
            self.stalled = false;
            return polled;
        }
        let Some(timeout) = self.timeout else { return Poll::Pending };
        if self.switch.disabled() {
            return Poll::Pending;
        }
        if !self.stalled {
            self.stalled = true;
            let at = tokio::time::Instant::now() + timeout;
            match &mut self.deadline {
                Some(d) => d.set(at),
                none => *none = Some(LazyDeadline::new(at)),
            }
        }
        let Some(deadline) = &mut self.deadline else { return Poll::Pending };
        std::task::ready!(deadline.poll_expired(cx));
        let message = format!("the visitor read nothing for {} s", timeout.as_secs());
        Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, message)))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WriteDeadlineIo<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WriteDeadlineIo<I> {
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

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.after_write(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
