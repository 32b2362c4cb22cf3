//! The receiving half of a stream ([`StreamReceiver`]): its events off the stream's
//! queue, the payload credit they hold, and the direct write a server's visitor
//! offers. Split from `stream.rs`, whose [`super::StreamHandle`] makes it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use localtunnels_core::StreamId;

use super::{Inner, StreamEvent};
use crate::direct::DirectWrite;
use crate::websocket::direct::WsDirect;

/// The receiving half of a stream.
pub struct StreamReceiver {
    id: StreamId,
    inner: Arc<Inner>,
    /// Payload bytes handed out and not granted back yet: by
    /// [`StreamReceiver::poll_recv_held`] until [`StreamReceiver::release_held`], or the
    /// body's last bytes after [`StreamReceiver::release_last_on_drop`].
    held: usize,
    /// The body's last bytes are granted back at the drop.
    last_on_drop: bool,
}

impl Drop for StreamReceiver {
    fn drop(&mut self) {
        // A retired stream (its response written from the reader: `StreamSlot::retire_written`)
        // has no slot to deliver to any more, and its queue holds no payload (the body
        // went to the socket; only payload-free events, a `Written`, may be there): the
        // queue's lock for nothing to do is skipped (~0.04k instructions per exchange,
        // in the reader's turn after its write, where a lent receiver's last drop runs).
        if self.inner.retired.load(Ordering::Acquire) {
            return self.let_go();
        }
        let dropped = {
            let mut q = self.inner.queue();
            q.receiver_gone = true;
            q.direct = None;
            q.ws_direct = None;
            // Nobody waits any more: the slot's end must not wake whatever task polled
            // this receiver last (the connection's own, for work run there).
            q.waker = None;
            // Events without payload (a `Written`, a head) are left for the stream's end
            // to drop: taking the queue out and dropping it here cost ~0.1k instructions.
            let unread = if q.events.is_empty() { 0 } else { q.events.payload_len() };
            (unread > 0).then(|| (unread, std::mem::take(&mut q.events)))
        };
        // The unread bytes still hold session credit: grant it back, or every
        // visitor who leaves mid-upload would shrink the tunnel's window for good.
        if let Some((unread, events)) = dropped {
            self.inner.shared.release_later(self.id, unread);
            drop(events);
        }
        self.let_go();
    }
}

impl StreamReceiver {
    /// A receiver for stream `id` (made by [`super::StreamHandle`]'s slot).
    pub(super) fn new(id: StreamId, inner: Arc<Inner>) -> Self {
        StreamReceiver { id, inner, held: 0, last_on_drop: false }
    }

    /// The end of the receiver's drop: what it read and kept goes back with the
    /// stream's reset, when the last handle goes (the sender's, usually right after
    /// this).
    fn let_go(&mut self) {
        if self.held > 0 {
            self.inner.held.fetch_add(self.held, Ordering::Release);
        }
        self.inner.handle_dropped();
    }
}

impl std::fmt::Debug for StreamReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReceiver").field("id", &self.id).finish()
    }
}

impl StreamReceiver {
    /// The next event; `None` once the stream is gone. Payload bytes of `Data` and
    /// `WsMessage` events are released (credit granted back to the peer) as they are
    /// handed out, so call this only when ready to consume.
    pub async fn recv(&mut self) -> Option<StreamEvent> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// From now on, the payload bytes of the `Data` event that ends the body are
    /// granted back when the stream's last handle is dropped (with its reset, in the
    /// same hold of the connection's lock) or with the next payload read, not as
    /// the event is handed out: for a caller that writes those bytes and then drops
    /// the stream, so the grant (the lock and the session's bookkeeping, ~0.1k
    /// instructions) follows the write instead of preceding it. The stream's window
    /// does not matter any more once its body ended; the session's gets the bytes
    /// back a write later.
    pub fn release_last_on_drop(&mut self) {
        self.last_on_drop = true;
    }

    /// Lends the stream `direct`, the socket the response goes to, for the connection's
    /// reader to write a whole small response to it from its turn ([`crate::direct`]):
    /// the receiver then gets [`StreamEvent::Written`] instead of the head and the
    /// body, without a wake-up. Only for a receiver that waits for nothing but its
    /// response and writes nothing else meanwhile; it takes the offer back with
    /// [`Self::withdraw_direct`] before it writes anything else.
    pub fn offer_direct(&mut self, direct: Arc<dyn DirectWrite>) {
        self.inner.queue().direct = Some(direct);
    }

    /// [`Self::offer_direct`], and `waker` woken when an event comes, as a poll of
    /// [`Self::poll_ready`] would leave it: in one hold of the stream's lock, for a
    /// receiver that sleeps past its response ([`crate::direct`]) and learns of the
    /// write from `direct` itself: no [`StreamEvent::Written`] is queued for it (a
    /// write that leaves a rest still wakes it). Ready, as that poll, when an event is
    /// here already (or the stream is gone): nothing will wake it.
    pub fn offer_direct_waking(&mut self, direct: Arc<dyn DirectWrite>, waker: &Waker) -> Poll<()> {
        let mut q = self.inner.queue();
        q.direct = Some(direct);
        q.quiet = true;
        q.ready_or_wake(waker)
    }

    /// Takes back [`Self::offer_direct`]'s offer: true when it was still there (the
    /// reader will not write), false when the reader took it: the response's events,
    /// or [`StreamEvent::Written`], are then on their way (the reader delivers them in
    /// the same hold of the connection's lock, and from now on with a wake-up): the
    /// receiver must wait for them before it writes.
    pub fn withdraw_direct(&mut self) -> bool {
        let mut q = self.inner.queue();
        q.withdrawn = true;
        q.direct.take().is_some()
    }

    /// Lends the stream `direct`, a bridge's socket, for the connection's reader to
    /// write the WebSocket messages to from its turn
    /// ([`crate::websocket::bridge_direct`]).
    pub(crate) fn offer_ws_direct(&mut self, direct: Arc<dyn WsDirect>) {
        self.inner.queue().ws_direct = Some(direct);
    }

    /// Takes back [`Self::offer_ws_direct`]'s offer: the reader writes nothing more.
    pub(crate) fn withdraw_ws_direct(&mut self) {
        let direct = self.inner.queue().ws_direct.take();
        drop(direct);
    }

    /// Ready when an event is queued or the stream is gone, without taking it; else
    /// the task is woken when one comes (as [`Self::poll_recv`] would be). For a
    /// receiver that sleeps on other things too and reads its events later: the
    /// server's visitor task, asleep past a response lent to the reader
    /// ([`crate::direct`]), is woken by the events the reader did not write.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.inner.queue().ready_or_wake(cx.waker())
    }

    /// Poll form of [`StreamReceiver::recv`].
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<StreamEvent>> {
        self.poll_take(Some(cx), false, false).map(|ev| ev.map(|(ev, _)| ev))
    }

    /// The next event if it is already here (`Some(None)`: the stream is gone), as
    /// [`StreamReceiver::recv`] would give it; `None` when it would wait, and then
    /// nothing is woken when one comes. A writer takes what came with the last event
    /// this way before it writes (`recv().now_or_never()` built a future and a waker
    /// and left that waker with the queue: ~0.05k instructions a response).
    pub fn try_recv(&mut self) -> Option<Option<StreamEvent>> {
        match self.poll_take(None, false, false) {
            Poll::Ready(ev) => Some(ev.map(|(ev, _)| ev)),
            Poll::Pending => None,
        }
    }

    /// [`StreamReceiver::poll_recv`], but the event's payload bytes are only counted
    /// as held: they are released by the next [`StreamReceiver::release_held`] (or
    /// when the receiver is dropped). A WebSocket bridge writes each message to its
    /// socket first and releases after the write: the release (the session's lock and
    /// its credit arithmetic, ~0.15k instructions) then runs while the peer already
    /// handles the message, not before it is sent. The peer's window still bounds
    /// what waits here: the bytes are released a little later, never lost.
    pub fn poll_recv_held(&mut self, cx: &mut Context<'_>) -> Poll<Option<StreamEvent>> {
        self.poll_take(Some(cx), true, false).map(|ev| ev.map(|(ev, _)| ev))
    }

    /// [`StreamReceiver::poll_recv_held`] for a caller that polls again as soon as it
    /// handled the event, in the same poll of its task, with the same waker: when the
    /// event is the last one queued (and the stream goes on), `cx`'s waker is left with
    /// the queue in the same hold of its lock, as that next poll's `Pending` would leave
    /// it, and the event comes with `true`. The next event then wakes that waker, so
    /// until the caller's task yields, the next poll may return `Pending` without
    /// looking (the WebSocket bridge's `down` half: one lock of the queue a message, not
    /// two, ~0.05k instructions).
    #[inline]
    pub fn poll_recv_held_ahead(&mut self, cx: &mut Context<'_>) -> Poll<Option<(StreamEvent, bool)>> {
        self.poll_take(Some(cx), true, true)
    }

    /// Releases what [`StreamReceiver::poll_recv_held`] handed out since the last call.
    /// During its connection's reader turn (a bridge's `down` half runs there) the
    /// bytes are only noted, and the turn's end, which locks the session anyway,
    /// releases them before its write (`Shared::note_release`): the same credit,
    /// granted in the same write, without a lock of its own.
    #[inline(always)]
    pub fn release_held(&mut self) {
        let n = std::mem::take(&mut self.held);
        if n > 0 && !self.inner.shared.note_release(self.id, n) {
            self.release(n);
        }
    }

    /// The next event off the queue; its payload bytes are released, or only counted
    /// as held when `hold`. With `ahead`, a take that empties the queue of a stream that
    /// goes on also leaves `cx`'s waker with it, and says so (`true` with the event; see
    /// [`Self::poll_recv_held_ahead`]). Inlined into every caller, each with its constant
    /// `hold` and `ahead`: a shared out-of-line step that handed the event back through
    /// one more `Poll<Option<_>>` cost ~0.05k instructions per 1 KiB request on the server.
    #[inline(always)]
    fn poll_take(
        &mut self,
        cx: Option<&mut Context<'_>>,
        hold: bool,
        ahead: bool,
    ) -> Poll<Option<(StreamEvent, bool)>> {
        let (ev, waiting) = {
            let mut q = self.inner.queue();
            match q.events.pop_front() {
                Some(ev) => {
                    let waiting = match cx {
                        Some(cx) if ahead && q.events.is_empty() && !q.closed => {
                            q.keep_waker(cx.waker());
                            true
                        }
                        _ => false,
                    };
                    (ev, waiting)
                }
                None if q.closed => return Poll::Ready(None),
                None => {
                    // Without a context (`try_recv`) nothing is to be woken.
                    if let Some(cx) = cx {
                        q.keep_waker(cx.waker());
                    }
                    return Poll::Pending;
                }
            }
        };
        let n = ev.payload_len();
        if hold || (self.last_on_drop && matches!(ev, StreamEvent::Data { end: true, .. })) {
            self.held += n;
        } else if n > 0 {
            let n = n + std::mem::take(&mut self.held);
            self.release(n);
        }
        Poll::Ready(Some((ev, waiting)))
    }

    /// Grants `n` consumed payload bytes back to the peer.
    #[inline(always)]
    fn release(&self, n: usize) {
        if n > 0 {
            let shared = &self.inner.shared;
            let mut state = shared.lock();
            state.session.release(self.id, n);
            // Most releases grant nothing yet (credit goes back in large steps): with
            // no frame queued and the session open, `after_command` has nothing to send,
            // dispatch or wake (a release makes no event), so it is skipped.
            if state.session.has_transmit() || state.session.is_closed() {
                shared.after_command(state);
            }
        }
    }
}
