//! Handles to one stream of a [`Connection`](crate::Connection).
//!
//! A [`StreamHandle`] splits into a [`StreamSender`] and a [`StreamReceiver`] so one
//! task can pump a request body while another reads the response. When both halves
//! are dropped before the stream finished, the stream is reset (`Cancel`): a visitor
//! that goes away frees the origin at once.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes};
use localtunnels_core::{
    Header, HeaderBlock, ReceivedBlock, ResetCode, ResponseHead, SentBlock, StreamError, StreamId, StreamKind,
};
use tokio::sync::Notify;

use crate::conn::Shared;
use crate::direct::DirectWrite;
use crate::stream_queue::EventQueue;
use crate::websocket::direct::{WsDirect, WsDirectWrite};

mod receiver;
pub use receiver::StreamReceiver;

/// What arrives on a stream, in order.
#[derive(Debug)]
#[non_exhaustive]
pub enum StreamEvent {
    /// The response head (streams this end opened).
    Response {
        /// The head.
        head: ResponseHead,
        /// No body follows.
        end: bool,
    },
    /// The response head of an HTTP stream, its fields as the frame carried them (a
    /// connection whose session reports blocks:
    /// [`localtunnels_core::Session::set_response_blocks`]). [`StreamEvent::typed`]
    /// makes it the [`StreamEvent::Response`] it stands for.
    ResponseBlock {
        /// HTTP status code (100-999).
        status: u16,
        /// The fields.
        block: ReceivedBlock,
        /// No body follows.
        end: bool,
    },
    /// Body bytes.
    Data {
        /// Bytes, possibly empty when only `end` is news.
        data: Bytes,
        /// The peer finished sending.
        end: bool,
    },
    /// Trailers; the peer finished sending.
    Trailers(Vec<Header>),
    /// A WebSocket message fragment.
    WsMessage {
        /// Binary or text.
        binary: bool,
        /// Last fragment of the message.
        fin: bool,
        /// Payload.
        data: Bytes,
    },
    /// The peer closed its side of the WebSocket.
    WsClose {
        /// RFC 6455 code.
        code: u16,
        /// Reason.
        reason: String,
    },
    /// The response, head and whole body, was written through the receiver's
    /// [`DirectWrite`] from the connection's reader ([`crate::direct`]); nothing else
    /// of the stream follows.
    Written {
        /// The response's status.
        status: u16,
        /// What the socket did not take at once, for the receiver to write (usually
        /// empty).
        rest: Bytes,
    },
    /// The stream was reset, or the whole tunnel closed.
    Reset {
        /// Why.
        code: ResetCode,
        /// For people.
        message: String,
    },
}

impl StreamEvent {
    /// The event with a [`StreamEvent::ResponseBlock`] as the [`StreamEvent::Response`]
    /// it stands for (the same head as a list), for a reader of typed heads.
    pub fn typed(self) -> StreamEvent {
        match self {
            StreamEvent::ResponseBlock { status, block, end } => {
                StreamEvent::Response { head: ResponseHead { status, headers: block.headers() }, end }
            }
            ev => ev,
        }
    }

    /// Payload bytes that must be released once consumed.
    pub(crate) fn payload_len(&self) -> usize {
        match self {
            StreamEvent::Data { data, .. } | StreamEvent::WsMessage { data, .. } => data.len(),
            _ => 0,
        }
    }
}

/// What one stream's driver end and its handles share: the queue of events for the
/// receiver, the sender's wake-up, and a count of live handles. One allocation per
/// stream (a tokio channel, a `Notify` and a guard were three, and the channel's
/// first block alone is 32 events wide; the queue holds its first two events in place).
struct Inner {
    id: StreamId,
    shared: Arc<Shared>,
    queue: Mutex<Queue>,
    writable: Notify,
    /// Live `StreamSender` clones plus the `StreamReceiver`; at zero the stream is
    /// reset (a no-op when it already finished).
    handles: AtomicUsize,
    /// Payload bytes the dropped receiver read and did not grant back
    /// ([`StreamReceiver::release_last_on_drop`]): granted with the reset at zero.
    held: AtomicUsize,
    /// The reader wrote the response and let the slot go ([`StreamSlot::retire`]): the
    /// stream is over on both sides, nothing is left to reset when the handles go.
    retired: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Queue {
    events: EventQueue,
    /// The receiver waiting for an event.
    waker: Option<Waker>,
    /// The sender waiting for the stream's end ([`StreamSender::cancelled`]).
    cancel_waker: Option<Waker>,
    /// The driver dropped its end: no more events after these.
    closed: bool,
    /// The receiver is gone: `deliver` refuses, so credit is handed straight back.
    receiver_gone: bool,
    /// The receiver's socket, for the reader to write the response to
    /// ([`StreamReceiver::offer_direct`]).
    direct: Option<Arc<dyn DirectWrite>>,
    /// The receiver took its offer back ([`StreamReceiver::withdraw_direct`]): a
    /// [`StreamEvent::Written`] from a write already under way wakes it.
    withdrawn: bool,
    /// The receiver learns of a write from its [`DirectWrite`], not from a
    /// [`StreamEvent::Written`] ([`StreamReceiver::offer_direct_waking`]): none is queued
    /// (a rest to write still wakes it).
    quiet: bool,
    /// The bridge's socket, for the reader to write the WebSocket messages to
    /// ([`StreamReceiver::offer_ws_direct`]).
    ws_direct: Option<Arc<dyn WsDirect>>,
}

impl Queue {
    /// Ready when an event is queued or the stream is gone; else `waker` is kept to be
    /// woken when one comes (as a poll of [`StreamReceiver::poll_recv`] would leave it).
    fn ready_or_wake(&mut self, waker: &Waker) -> Poll<()> {
        if !self.events.is_empty() || self.closed {
            return Poll::Ready(());
        }
        self.keep_waker(waker);
        Poll::Pending
    }

    /// Keeps `waker` to be woken by the next event (a clone only if another is kept).
    #[inline(always)]
    fn keep_waker(&mut self, waker: &Waker) {
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.waker = Some(waker.clone());
        }
    }
}

impl Inner {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn handle_dropped(&self) {
        if self.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            // A retired stream has nothing to reset nor a slot to remove: the last
            // handle's drop takes no lock of the connection's (unless bytes are held).
            if self.retired.load(Ordering::Acquire) && self.held.load(Ordering::Acquire) == 0 {
                return;
            }
            self.shared.stream_dropped(self.id, self.held.load(Ordering::Acquire));
        }
    }
}

/// The driver's end of a stream. Its queue is unbounded, but what it holds is
/// bounded by the stream's receive window: the peer cannot send more until the
/// receiver releases what it consumed.
pub(crate) struct StreamSlot {
    inner: Arc<Inner>,
}

impl StreamSlot {
    pub(crate) fn new(id: StreamId, kind: StreamKind, shared: Arc<Shared>) -> (StreamSlot, StreamHandle) {
        let inner = Arc::new(Inner {
            id,
            shared,
            queue: Mutex::new(Queue::default()),
            writable: Notify::new(),
            handles: AtomicUsize::new(2),
            held: AtomicUsize::new(0),
            retired: std::sync::atomic::AtomicBool::new(false),
        });
        let sender = StreamSender { id, inner: inner.clone() };
        let receiver = StreamReceiver::new(id, inner.clone());
        (StreamSlot { inner }, StreamHandle { kind, sender, receiver })
    }

    /// Hands an event to the stream's reader; false if the reader is gone.
    pub(crate) fn deliver(&self, ev: StreamEvent) -> bool {
        let waker = {
            let mut q = self.inner.queue();
            if q.receiver_gone {
                return false;
            }
            q.events.push_back(ev);
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Hands a WebSocket message to the stream's reader: written to the socket it lent
    /// ([`crate::websocket::bridge_direct`]) when nothing of the stream's is queued
    /// ahead of it, else queued as [`StreamEvent::WsMessage`].
    pub(crate) fn deliver_ws(&self, binary: bool, fin: bool, data: Bytes) -> WsDelivery {
        let waker = {
            let mut q = self.inner.queue();
            if q.receiver_gone {
                return WsDelivery::Gone;
            }
            let mut delivery = WsDelivery::Queued;
            match q.ws_direct.as_ref().filter(|_| q.events.is_empty()).map(|d| d.write_message(binary, fin, &data)) {
                Some(WsDirectWrite::Written) => return WsDelivery::Written,
                // The bridge's `down` writes the rest: woken, as by an event.
                Some(WsDirectWrite::Queued) => delivery = WsDelivery::Written,
                Some(WsDirectWrite::Declined) | None => {
                    q.events.push_back(StreamEvent::WsMessage { binary, fin, data })
                }
            }
            (q.waker.take(), delivery)
        };
        if let Some(w) = waker.0 {
            w.wake();
        }
        waker.1
    }

    /// The receiver's offer to have its response written for it ([`crate::direct`]),
    /// taken: it is used once.
    pub(crate) fn take_direct(&self) -> Option<Arc<dyn DirectWrite>> {
        self.inner.queue().direct.take()
    }

    /// Queues [`StreamEvent::Written`] for the receiver and lets the slot go, in one
    /// hold of the queue's lock (three before: the event's queueing, the retire and
    /// the slot's drop). The receiver is not woken unless it took its offer back
    /// meanwhile (it then waits for this event) or the event carries a rest to write
    /// (a partial write: the visitor waits for those bytes): else it reads it when it
    /// next runs. The
    /// stream is over on both sides (the session dropped it when its end came), so the
    /// handles' drop has nothing left to do under the connection's lock.
    pub(crate) fn retire_written(self, ev: StreamEvent) {
        self.inner.retired.store(true, Ordering::Release);
        let (waker, cancel_waker) = {
            let mut q = self.inner.queue();
            // What the slot's drop does, done here (its drop then skips it).
            q.closed = true;
            let waker = q.waker.take();
            let rest = matches!(&ev, StreamEvent::Written { rest, .. } if !rest.is_empty());
            if !q.receiver_gone && !q.quiet {
                q.events.push_back(ev);
            }
            (waker.filter(|_| q.withdrawn || rest), q.cancel_waker.take())
        };
        if let Some(w) = waker {
            w.wake();
        }
        if let Some(w) = cancel_waker {
            w.wake();
        }
    }

    /// Wakes a sender waiting for credit (or for the stream's end).
    pub(crate) fn wake(&self) {
        self.inner.writable.notify_one();
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        // A retired slot's end was done by `retire_written`.
        if self.inner.retired.load(Ordering::Relaxed) {
            return;
        }
        let (waker, cancel_waker) = {
            let mut q = self.inner.queue();
            q.closed = true;
            (q.waker.take(), q.cancel_waker.take())
        };
        if let Some(w) = waker {
            w.wake();
        }
        if let Some(w) = cancel_waker {
            w.wake();
        }
    }
}

/// What [`StreamSlot::deliver_ws`] did with a message.
pub(crate) enum WsDelivery {
    /// Queued for the receiver, which releases its credit.
    Queued,
    /// Written to the receiver's socket, or queued there for its bridge to write: its
    /// credit is the caller's to grant back.
    Written,
    /// The receiver is gone: its credit is the caller's to grant back.
    Gone,
}

/// Both halves of one stream.
#[derive(Debug)]
pub struct StreamHandle {
    kind: StreamKind,
    /// Sends this end's head, body and end.
    pub sender: StreamSender,
    /// Receives the peer's head, body and end.
    pub receiver: StreamReceiver,
}

impl StreamHandle {
    /// The stream's id.
    pub fn id(&self) -> StreamId {
        self.sender.id
    }

    /// HTTP exchange or WebSocket.
    pub fn kind(&self) -> StreamKind {
        self.kind
    }

    /// Splits into independently owned halves.
    pub fn split(self) -> (StreamSender, StreamReceiver) {
        (self.sender, self.receiver)
    }
}

/// The sending half of a stream. Cloneable.
pub struct StreamSender {
    id: StreamId,
    inner: Arc<Inner>,
}

impl Clone for StreamSender {
    fn clone(&self) -> Self {
        self.inner.handles.fetch_add(1, Ordering::Relaxed);
        StreamSender { id: self.id, inner: self.inner.clone() }
    }
}

impl Drop for StreamSender {
    fn drop(&mut self) {
        self.inner.handle_dropped();
    }
}

impl std::fmt::Debug for StreamSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSender").field("id", &self.id).finish()
    }
}

impl StreamSender {
    /// The stream's id.
    pub fn id(&self) -> StreamId {
        self.id
    }

    fn command<R>(&self, f: impl FnOnce(&mut localtunnels_core::Session) -> R) -> R {
        let shared = &self.inner.shared;
        let mut state = shared.lock();
        let r = f(&mut state.session);
        shared.after_command(state);
        r
    }

    /// Sends the response head (streams the peer opened).
    pub fn respond(&self, head: ResponseHead, end: bool) -> Result<(), StreamError> {
        self.command(|s| s.respond(self.id, head, end))
    }

    /// Sends body bytes, waiting for credit as needed.
    pub async fn send_data(&self, data: Bytes) -> Result<(), StreamError> {
        self.send_with(data, |s, id, chunk, _| s.send_data(id, chunk), false).await
    }

    /// Sends the last body bytes and ends this side of the stream: in one step when the
    /// window takes them all (the usual small response), else as [`Self::send_data`]
    /// then [`Self::finish`].
    pub async fn send_last(&self, data: Bytes) -> Result<(), StreamError> {
        let len = data.len();
        let taken = self.command(|s| {
            let n = if len == 0 { 0 } else { s.send_data(self.id, data.clone())? };
            if n == len {
                s.finish(self.id)?;
            }
            Ok::<_, StreamError>(n)
        })?;
        if taken < len {
            self.send_data(data.slice(taken..)).await?;
            self.finish()?;
        }
        Ok(())
    }

    /// Sends the response head and, in the same step, as much of the whole body as the
    /// window takes, ending this side when it took all of it (the usual small
    /// response: one lock and one dispatch where [`Self::respond`] then
    /// [`Self::send_last`] took two). Returns how many body bytes were taken: the rest
    /// goes with [`Self::send_last`]. An error is the one `respond` or `send_last`
    /// would have returned.
    pub fn respond_whole(&self, head: ResponseHead, data: &Bytes) -> Result<usize, StreamError> {
        self.respond_whole_with(data, |s, id| s.respond(id, head, false))
    }

    /// [`Self::respond`] for a head whose fields are an encoded [`HeaderBlock`]
    /// (`Session::respond_block`).
    pub fn respond_block(&self, status: u16, block: HeaderBlock, end: bool) -> Result<(), StreamError> {
        self.command(|s| s.respond_block(self.id, status, block, end))
    }

    /// [`Self::respond_whole`] for a head whose fields are an encoded [`HeaderBlock`].
    /// In one session call (`Session::respond_whole_block`): a small body goes past the
    /// stream's queue.
    pub fn respond_whole_block(&self, status: u16, block: HeaderBlock, data: &Bytes) -> Result<usize, StreamError> {
        self.command(|s| s.respond_whole_block(self.id, status, block, data, None))
    }

    /// [`Self::respond_block`] that keeps the block's fields in `kept`, for a caller
    /// that reads them after the write (`Session::respond_block_kept`: they come back
    /// whatever the result).
    pub fn respond_block_kept(
        &self,
        status: u16,
        block: HeaderBlock,
        end: bool,
        kept: &mut SentBlock,
    ) -> Result<(), StreamError> {
        self.command(|s| s.respond_block_kept(self.id, status, block, end, kept))
    }

    /// [`Self::respond_whole_block`] that keeps the block's fields in `kept`, as
    /// [`Self::respond_block_kept`] does.
    pub fn respond_whole_block_kept(
        &self,
        status: u16,
        block: HeaderBlock,
        data: &Bytes,
        kept: &mut SentBlock,
    ) -> Result<usize, StreamError> {
        self.command(|s| s.respond_whole_block(self.id, status, block, data, Some(kept)))
    }

    fn respond_whole_with(
        &self,
        data: &Bytes,
        respond: impl FnOnce(&mut localtunnels_core::Session, StreamId) -> Result<(), StreamError>,
    ) -> Result<usize, StreamError> {
        let len = data.len();
        self.command(|s| {
            respond(s, self.id)?;
            let n = if len == 0 { 0 } else { s.send_data(self.id, data.clone())? };
            if n == len {
                s.finish(self.id)?;
            }
            Ok(n)
        })
    }

    /// Sends a whole WebSocket message, waiting for credit as needed.
    ///
    /// The sending future itself, not an `async fn` around it: the wrapper's own state
    /// and the move of the inner future into it cost ~70 instructions per message.
    pub fn send_ws(&self, binary: bool, data: Bytes) -> impl Future<Output = Result<(), StreamError>> + Send + '_ {
        self.send_with(data, move |s, id, chunk, last| s.send_ws(id, binary, chunk, last), true)
    }

    /// Sends what the credit takes of a whole WebSocket message now, without waiting,
    /// and returns how many of its bytes that was: the rest, if any, goes on with
    /// [`Self::send_ws`]. A bridge sends each message this way first: the usual
    /// message goes whole, and building the waiting future costs ~80 instructions. The
    /// message is borrowed, so the caller can still look at it after it was written.
    ///
    /// What it queues is written at once even in the connection's reader turn, while
    /// this is the only stream in flight (see `Shared::after_relay`); then, with nothing
    /// queued before it, it is written without being queued (`Shared::relay_direct`).
    pub fn try_send_ws(&self, binary: bool, data: &Bytes) -> Result<usize, StreamError> {
        let shared = &self.inner.shared;
        // Written straight into the write half when it would go at once, alone.
        let mut state = match shared.relay_direct(shared.lock(), self.id, binary, data) {
            Ok(sent) => return sent,
            Err(state) => state,
        };
        let n = state.session.send_ws(self.id, binary, data.clone(), true);
        shared.after_relay(state);
        n
    }

    async fn send_with(
        &self,
        mut data: Bytes,
        op: impl Fn(&mut localtunnels_core::Session, StreamId, Bytes, bool) -> Result<usize, StreamError>,
        send_empty: bool,
    ) -> Result<(), StreamError> {
        if data.is_empty() && !send_empty {
            return Ok(());
        }
        loop {
            let notified = self.inner.writable.notified();
            let n = self.command(|s| op(s, self.id, data.clone(), true))?;
            data.advance(n);
            if data.is_empty() {
                return Ok(());
            }
            tracing::trace!(stream = self.id, waiting = data.len(), "flow control: waiting for the peer's window");
            notified.await;
        }
    }

    /// Ends this side of an HTTP stream.
    pub fn finish(&self) -> Result<(), StreamError> {
        self.command(|s| s.finish(self.id))
    }

    /// Ends this side of an HTTP stream with trailers.
    pub fn send_trailers(&self, headers: Vec<Header>) -> Result<(), StreamError> {
        self.command(|s| s.send_trailers(self.id, headers))
    }

    /// Closes this side of a WebSocket.
    pub fn close_ws(&self, code: u16, reason: &str) -> Result<(), StreamError> {
        self.command(|s| s.close_ws(self.id, code, reason))
    }

    /// Abandons the stream both ways.
    pub fn reset(&self, code: ResetCode, message: &str) {
        self.command(|s| s.reset(self.id, code, message));
    }

    /// Resolves once the peer has reset the stream or the session has closed: nobody
    /// reads what this side would still send. Lets work for an exchange (an origin
    /// request, say) be dropped as soon as its visitor is gone, even while the
    /// receiving half is not being read. Cancel-safe.
    ///
    /// The driver's end of the stream (its slot) is dropped exactly then, so this
    /// looks at the stream's own queue and leaves its waker there (taken back when the
    /// future is dropped, so that the stream's end later wakes nobody): two
    /// uncontended locks per exchange, where a `Notify` waiter and the connection's
    /// state lock cost ~0.3k instructions more (registered, checked, unregistered).
    /// One waiter per stream (the work serving it): a second one's poll takes the
    /// first one's place.
    pub fn cancelled(&self) -> impl Future<Output = ()> + '_ {
        Cancelled { inner: &self.inner, registered: false }
    }
}

/// [`StreamSender::cancelled`]'s future.
struct Cancelled<'a> {
    inner: &'a Inner,
    /// Its waker is in the queue.
    registered: bool,
}

impl Future for Cancelled<'_> {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut q = self.inner.queue();
        if q.closed {
            return Poll::Ready(());
        }
        if !q.cancel_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            q.cancel_waker = Some(cx.waker().clone());
        }
        drop(q);
        self.registered = true;
        Poll::Pending
    }
}

impl Drop for Cancelled<'_> {
    fn drop(&mut self) {
        if self.registered {
            self.inner.queue().cancel_waker = None;
        }
    }
}
