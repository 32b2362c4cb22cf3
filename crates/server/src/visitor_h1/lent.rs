//! The wait past an exchange lent to the tunnel's reader ([`super::direct`]).
//!
//! The exchange's task lends the reader its socket, the exchange's count and its
//! stream's handles ([`DirectSocket::lend`](super::direct::DirectSocket::lend)) and
//! ends the exchange at once: its future, its locals and the request's head go before
//! the task sleeps, not when the next request wakes it. It then waits here, where it
//! would wait for the next request anyway, for the first of:
//! - the visitor's next bytes (the next request, usually; or the visitor leaving),
//! - the reader's news that the response needs the task (a rest to write, or the
//!   events of a response it did not write: a reset, a head it does not write, the
//!   tunnel's end),
//! - the offer's end: one keep-alive time from the request (so that an idle
//!   connection's next head is not awaited longer than after a response the task
//!   wrote), or the response's deadline when that comes first,
//! - the server's shutdown.
//!
//! Each ends the lending ([`DirectSocket::resolve`](super::direct::DirectSocket::resolve): for a whole write one atomic load,
//! else one lock): a response written whole
//! needs nothing more (the next head is due one header timeout after its write); a
//! rest is written; a response not written is taken back and answered as without
//! the lending ([`super::exchange::respond`]: the response deadline's 504 included),
//! before the next request is read. The next bytes, read already, wait in the read
//! buffer: pipelined requests keep their order.

use std::sync::Arc;
use std::time::Duration;

use localtunnels_driver::lazy_deadline::LazyDeadline;
use localtunnels_driver::{StreamReceiver, StreamSender};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::closing::Closing;
use super::direct::Resolved;
use super::exchange::{respond, Answer, Waiting, Writer};
use super::upload::UploadEnd;
use super::Conn;
use crate::state::ServerState;
use crate::tunnel::Tunnel;

/// An exchange lent to the tunnel's reader, whose end its task has not learnt yet.
pub(crate) struct Lent {
    /// Its tunnel (the name, for an answer the task writes after all).
    pub tunnel: Arc<Tunnel>,
    pub answer: Answer,
    /// The response's deadline.
    pub at: Instant,
    /// Its stream had events already when it was lent (else the lending left the
    /// task's waker with them).
    pub news: bool,
}

/// What woke the task past a lent exchange.
enum Woke {
    Read,
    Due,
    Reader,
    Shutdown,
}

impl<T> Conn<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Waits past the lent exchange until it ends (see the module documentation);
    /// `due`: the next head's deadline, set here. True when the connection may carry
    /// another request, its first bytes possibly in the read buffer already.
    pub(super) async fn past_lent(
        &mut self,
        state: &ServerState,
        due: &mut LazyDeadline,
        header_timeout: Duration,
        shutdown: &mut Closing,
    ) -> bool {
        let Some(lent) = &self.lent else { return true };
        let until = Instant::from_std(lent.answer.started) + header_timeout;
        due.set(until.min(lent.at));
        // The lending left this task's waker with the stream: its first poll is skipped
        // unless events were there already.
        let mut first = !lent.news;
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(8192);
        }
        let Conn { io, buf, direct, .. } = &mut *self;
        let Some(direct) = direct.as_deref() else { return true };
        let woke = tokio::select! {
            biased;
            read = io.read_buf(buf) => match read {
                Ok(0) | Err(_) => return false,
                Ok(_) => Woke::Read,
            },
            () = std::future::poll_fn(|cx| match std::mem::take(&mut first) {
                true => std::task::Poll::Pending,
                false => direct.poll_lent(cx),
            }) => Woke::Reader,
            () = std::future::poll_fn(|cx| due.poll_expired(cx)) => Woke::Due,
            () = std::future::poll_fn(|cx| shutdown.poll_changed(cx)) => Woke::Shutdown,
        };
        let keep = self.end_lent(state, due, until, header_timeout).await;
        keep && !matches!(woke, Woke::Shutdown) && !shutdown.now()
    }

    /// Ends the lent exchange: as the reader left it, or answered by this task.
    /// `until`: one header timeout after the request's start.
    async fn end_lent(
        &mut self,
        state: &ServerState,
        due: &mut LazyDeadline,
        until: Instant,
        header_timeout: Duration,
    ) -> bool {
        let Some(direct) = self.direct.as_deref() else { return true };
        match direct.resolve() {
            // The next head is due one header timeout after the response's write.
            Resolved::Written(after) => {
                self.lent = None;
                due.set(until + after);
                true
            }
            Resolved::Rest(rest, after, admitted) => {
                self.lent = None;
                let written = self.io.write_all(&rest).await.is_ok();
                drop(admitted);
                due.set(until + after);
                written
            }
            Resolved::Back(tx, rx, admitted) => {
                let Some(lent) = self.lent.take() else { return true };
                let keep = self.take_back(state, lent, tx, rx).await;
                drop(admitted);
                due.set(crate::poll_clock::now() + header_timeout);
                keep
            }
        }
    }

    /// Answers the lent exchange the reader did not write, as the exchange would have
    /// without the lending: its response (or the deadline's 504) when it comes.
    async fn take_back(&mut self, state: &ServerState, lent: Lent, tx: StreamSender, mut rx: StreamReceiver) -> bool {
        // The reader writes nothing more (the socket's lending ended): if it took the
        // offer, the response's events come here, and wake this task.
        rx.withdraw_direct();
        let Lent { tunnel, answer, at, .. } = lent;
        let Conn { io, buf, out, early, response_due, .. } = &mut *self;
        let due = match response_due {
            Some(due) => {
                due.set(at);
                due
            }
            None => response_due.insert(LazyDeadline::new(at)),
        };
        let mut wr = Writer::Whole(io);
        let never = std::pin::pin!(std::future::pending::<UploadEnd>());
        let waiting = Waiting { name: &tunnel.name, tx: &tx, rx, out, early, due };
        let (_, keep) = respond(state, waiting, &mut wr, never, Some(UploadEnd::Done), None, answer).await;
        if !early.is_empty() {
            buf.extend_from_slice(early);
            early.clear();
        }
        keep
    }
}
