//! A [`Connection`]: one core [`Session`] driven over a WebSocket (framed by
//! [`ws_codec`](crate::ws_codec), through [`ws_io`](crate::ws_io), on the upgraded socket).
//!
//! Two tasks own the socket halves, as quinn's `ConnectionDriver` owns its socket.
//! The reader ([`crate::conn_reader`]) feeds every binary message to the session and
//! dispatches the events; it also runs the stream futures an incoming handler gives it
//! (the client's exchanges), so that a request read from the socket, its origin I/O and
//! its answer are one task's work. The writer ([`crate::conn_writer`]) runs the
//! heartbeat timer and writes what the reader's turns do not (see below). Reading never
//! waits on writing, so two peers that both write cannot deadlock.
//!
//! Frames produced in the reader's turn (by the messages it read, by the stream futures
//! it ran) are written when the turn ends, in one write, by the reader itself without
//! waiting, under the state lock then the write half's lock (always in that order, so
//! frames leave in the order the session queued them). A command from another task (a
//! server's visitor) writes its frames the same way while it is the only stream in
//! flight (a visitor's OPEN, with nothing queued before it, straight into the write
//! half's buffer: [`Connection::open_fields`]); with several, it wakes the writer, which
//! batches what they queue meanwhile.
//! The writer also takes over a write the socket would not take at once (a peer that
//! does not read), runs the session's timer and sends the close.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use localtunnels_core::{
    CloseCode, Event, Instant, RawRequestHead, RefuseReason, RequestHead, Session, StreamId, StreamKind, Welcome,
};
use rustc_hash::FxHashMap;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;

use crate::conn_writer::Outbox;
use crate::direct::HeldHead;
use crate::stream::{StreamEvent, StreamHandle, StreamSlot, WsDelivery};
use crate::ws_codec::{WsDecoder, WsEncoder};
use crate::ws_io;

pub(crate) mod open;
mod relay;

/// Connection-level news for the owner of a [`Connection`].
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnEvent {
    /// Server side: the client's hello; answer with `accept` or `refuse`.
    Hello(localtunnels_core::Hello),
    /// Client side: the tunnel is up.
    Welcome(Welcome),
    /// Client side: the server refused the tunnel.
    Refused {
        /// Machine-readable reason.
        reason: RefuseReason,
        /// For people.
        message: String,
    },
    /// The peer opened a stream.
    Incoming {
        /// The stream.
        stream: StreamHandle,
        /// Its request head.
        head: RequestHead,
        /// No request body follows.
        end: bool,
    },
    /// The peer is going away: no new streams.
    GoAway {
        /// Why.
        message: String,
    },
    /// The session is over.
    Closed {
        /// Why.
        code: CloseCode,
        /// For people.
        message: String,
        /// The peer closed it (with `code`); otherwise this side did, or a timeout or
        /// a dead socket did.
        by_peer: bool,
    },
}

/// Takes each stream the peer opens (its handle, request head, and whether no body
/// follows), called on the reader task: see [`Connection::on_incoming`]. It returns the
/// stream's work for the connection's own task to run, or `None` when it handed the
/// stream on itself (e.g. spawned a task).
pub type IncomingHandler = Arc<dyn Fn(StreamHandle, RequestHead, bool) -> Option<StreamFuture> + Send + Sync>;

/// Takes each HTTP stream the peer opens with its header block undecoded (see
/// [`Connection::on_incoming_raw`]), as [`IncomingHandler`] takes the others.
pub type IncomingRawHandler = Arc<dyn Fn(StreamHandle, RawRequestHead, bool) -> Option<StreamFuture> + Send + Sync>;

/// A stream's work, run by the connection's reader task beside the socket: see
/// [`Connection::on_incoming`].
pub type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

pub(crate) struct State {
    pub(crate) session: Session,
    /// Keyed by stream id: a multiply for a hash (ids come in sequence, the core checks).
    pub(crate) slots: FxHashMap<StreamId, StreamSlot>,
    /// News for the owner, until it drops its [`ConnEvents`] (a few at a time: a
    /// tokio channel's first block alone held 32, about 4 KiB per idle tunnel).
    owner: VecDeque<ConnEvent>,
    /// The owner still holds its [`ConnEvents`].
    owner_listens: bool,
    /// No news after `Closed`: the owner's `recv` then ends.
    owner_done: bool,
    incoming: Option<IncomingHandler>,
    incoming_raw: Option<IncomingRawHandler>,
    /// The deadline the writer's timer is set for (`None`: no timer). Only the
    /// writer sets it, under the lock, before it sleeps.
    pub(crate) armed: Option<Instant>,
    /// The payload of the peer's latest WebSocket ping, to answer. Only the latest is
    /// answered (RFC 6455 §5.5.3 allows it), so a peer that pings and never reads
    /// cannot queue answers.
    pub(crate) ws_pong: Option<Bytes>,
    /// Response heads held in a pump for their body's end ([`crate::direct`]).
    pub(crate) held: Vec<HeldHead>,
}

/// Work a stream handle's `Drop` leaves to whoever next holds the state lock: the
/// dropping task itself when the lock is free, the end of the reader's turn, or the writer.
enum Deferred {
    /// Unread payload bytes to grant back.
    Release(StreamId, usize),
    /// A stream nobody holds any more, and the payload bytes its receiver read and
    /// left to grant back with it (granted in the same hold of the lock).
    Reset(StreamId, usize),
}

pub(crate) struct Shared {
    state: Mutex<State>,
    /// Streams whose handles were dropped, to reset under the state lock. Handles
    /// can be dropped while that lock is held (e.g. undelivered incoming streams
    /// freed with their channel), so `Drop` only queues the id here.
    dropped: Mutex<Vec<Deferred>>,
    /// The socket's write half and the bytes encoded for it. Taken after the state
    /// lock, never before it, and never held across an `await`.
    pub(crate) out: Mutex<Outbox>,
    /// The reader task is in a turn (reading the socket, running stream futures): what
    /// commands produce meanwhile is written when the turn ends, in one write.
    pub(crate) turn: AtomicBool,
    /// A stream's payload bytes released during the reader's turn
    /// ([`Shared::note_release`]), granted back when the turn ends: the stream's id in
    /// the high 32 bits, the bytes in the low 32; 0 when none.
    turn_release: AtomicU64,
    /// Stream futures the incoming handler returned, for the reader task to run (taken
    /// after the state lock, never before it).
    spawned: Mutex<Vec<StreamFuture>>,
    /// `spawned` is not empty.
    has_spawned: AtomicBool,
    /// `dropped` may not be empty (set after a push, cleared before a drain).
    has_dropped: AtomicBool,
    epoch: std::time::Instant,
    pub(crate) wake_writer: Notify,
    /// Wakes the owner's [`ConnEvents::recv`].
    owner_wake: Notify,
    closed: Notify,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn now(&self) -> Instant {
        Instant::from_elapsed(self.epoch.elapsed())
    }

    /// The clock read for a message the reader hands the session: the session's instant,
    /// kept for the streams of the reader's turn (`crate::turn_clock`).
    pub(crate) fn read_clock(&self) -> Instant {
        crate::turn_clock::read_since(self.epoch)
    }

    /// Locks the state. A poisoned lock means a panic elsewhere already broke this
    /// connection; carrying on with its state is still memory-safe and lets the
    /// other tasks wind down.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After a command: dispatch what it produced and see its frames sent, then
    /// unlock. In the reader's turn the turn's end writes them; otherwise they are
    /// written here (one stream in flight) or the writer is woken (see the module
    /// documentation), as it is when the session closed or its timer must fire earlier
    /// than the one it sleeps on.
    pub(crate) fn after_command(self: &Arc<Self>, mut state: MutexGuard<'_, State>) {
        self.pump_inline(&mut state);
        self.after_pump(state);
    }

    /// [`Self::after_command`] for the reader's received message: its events handled
    /// (a response written to its visitor, [`crate::direct`]), then the streams it
    /// finished removed (`Session::remove_finished`), before the lock is let go: no
    /// other task sees them counted in [`Connection::stream_count`], and the removal
    /// is not on the path of the write (~0.1k instructions; docs/BENCHMARKS.md,
    /// twenty-second round). The session's queue of finished streams then holds only
    /// received ends: the message's handling settled the rest first, and handling its
    /// events makes no frame.
    pub(crate) fn after_message(self: &Arc<Self>, mut state: MutexGuard<'_, State>) {
        self.pump_inline(&mut state);
        if state.session.has_finished() {
            state.session.remove_finished();
        }
        self.after_pump(state);
    }

    /// The rest of [`Self::after_command`] after its pump.
    #[inline(always)]
    fn after_pump(self: &Arc<Self>, state: MutexGuard<'_, State>) {
        // In the reader's turn, its end writes what is queued and wakes the writer for
        // a close or an earlier deadline, under the lock it takes after clearing the
        // flag (so it sees what this command did): nothing more to do here. The reader
        // calls this after each message it reads, before the stream it delivered to
        // can answer.
        if self.turn.load(Ordering::SeqCst) {
            return;
        }
        let session = &state.session;
        let closed = session.is_closed();
        let mut wake = closed || timer_earlier(&state);
        if !closed && session.has_transmit() {
            // A lone stream's frames are written here, at once; with several streams
            // in flight the writer sends them, as it runs after the other ready tasks,
            // so that a server's visitors share one write and one WebSocket message.
            // (Writing every command's frames here saved the writer's wake-up at one
            // connection and cost 4.6% more instructions per request at 32:
            // docs/BENCHMARKS.md, tenth round.)
            if session.stream_count() <= 1 {
                wake |= self.write_now(state);
            } else {
                wake = true;
            }
        }
        if wake {
            self.wake_writer.notify_one();
        }
    }

    /// [`Self::after_command`] for a WebSocket message a bridge relays into the tunnel:
    /// in the reader's turn (a client's bridge runs there) the message is written at
    /// once while its stream is the only one in flight, as a command outside the turn
    /// is, so that the rest of the turn (the origin socket's next read, the other
    /// wake-ups, the turn's end) runs after the send instead of before it. With
    /// several streams in flight the turn's end still writes them together.
    pub(crate) fn after_relay(self: &Arc<Self>, mut state: MutexGuard<'_, State>) {
        let session = &state.session;
        if !self.turn.load(Ordering::SeqCst)
            || session.is_closed()
            || session.stream_count() > 1
            || !session.has_transmit()
        {
            return self.after_command(state);
        }
        self.pump(&mut state);
        let wake = timer_earlier(&state) | self.write_now(state);
        if wake {
            self.wake_writer.notify_one();
        }
    }

    /// Writes what is queued (the session's frames, a pong, what dropped handles left)
    /// without waiting, then unlocks. True when the writer task must be woken to
    /// finish: the socket took only part of the write, or more than a batch is queued,
    /// or another thread holds the socket. While the writer is busy with an earlier
    /// write nothing is written here: it sends these frames after that one.
    pub(crate) fn write_now(self: &Arc<Self>, mut state: MutexGuard<'_, State>) -> bool {
        let Ok(mut out) = self.out.try_lock() else { return true };
        if out.busy() {
            return false;
        }
        self.reap_dropped(&mut state, out.wire());
        out.fill(&mut state.session);
        self.write_filled(state, out)
    }

    /// The rest of [`Self::write_now`] once `out` holds what is to be written: the
    /// write without waiting, then the unlock. True when the writer must finish it.
    fn write_filled(self: &Arc<Self>, mut state: MutexGuard<'_, State>, mut out: MutexGuard<'_, Outbox>) -> bool {
        self.pump(&mut state);
        let more = state.session.has_transmit();
        if state.session.has_finished() {
            // The streams these frames finish are removed after the write, in the same
            // hold of the state lock (a second lock after the write cost as much as the
            // removal it moved; docs/BENCHMARKS.md, fifteenth round): mostly a client's
            // exchange, whose other tasks seldom have commands meanwhile.
            let written = out.write_without_waiting();
            state.session.remove_finished();
            drop(state);
            out.drop_spent();
            return !written || more;
        }
        // The socket is written without the state lock: other tasks' commands go on.
        drop(state);
        let written = out.write_without_waiting();
        // The sent frame's fields are freed once it is on its way.
        out.drop_spent();
        !written || more
    }

    /// Swaps the stream futures the incoming handler returned since the last call
    /// into `into` (empty), which keeps both vectors' allocations.
    pub(crate) fn take_spawned(&self, into: &mut Vec<StreamFuture>) {
        if self.has_spawned.swap(false, Ordering::Acquire) {
            std::mem::swap(&mut *self.spawned.lock().unwrap_or_else(|e| e.into_inner()), into);
        }
    }

    /// The incoming handler returned stream futures the reader task has not taken yet.
    pub(crate) fn spawned_waiting(&self) -> bool {
        self.has_spawned.load(Ordering::Acquire)
    }

    /// Something is queued for the socket: the session's frames, a pong, or what
    /// dropped handles left (a reset, released credit, which may make frames).
    pub(crate) fn has_output(&self, state: &State) -> bool {
        state.session.has_transmit() || state.ws_pong.is_some() || self.has_dropped.load(Ordering::SeqCst)
    }

    /// Drains the session's events to the stream slots and the owner.
    pub(crate) fn pump(self: &Arc<Self>, state: &mut State) {
        self.pump_inline(state);
    }

    /// [`Self::pump`], inlined where a message's or a command's events are handled
    /// (`after_command`, `after_message`): a call of its own there cost ~30
    /// instructions per request.
    #[inline(always)]
    fn pump_inline(self: &Arc<Self>, state: &mut State) {
        while let Some(event) = state.session.poll_event() {
            // Most events (a WebSocket's, a client's) go straight on: one test each.
            if state.held.is_empty() && !matches!(event, Event::ResponseBlock { end: false, .. }) {
                self.dispatch(state, event);
            } else {
                self.pump_held(state, event);
            }
        }
        if !state.held.is_empty() {
            self.let_go_held(state, None);
        }
    }

    pub(crate) fn dispatch(self: &Arc<Self>, state: &mut State, event: Event) {
        let to_stream = |state: &mut State, id: StreamId, ev: StreamEvent| {
            let held = ev.payload_len();
            let delivered = state.slots.get(&id).is_some_and(|slot| slot.deliver(ev));
            if !delivered && held > 0 {
                // Nobody will read it: hand the credit straight back.
                state.session.release(id, held);
            }
        };
        match event {
            Event::Opened { id, head, end } => self.incoming_stream(state, id, head, end),
            Event::OpenedRaw { id, head, end } => {
                let Some(handler) = &state.incoming_raw else {
                    return self.incoming_stream(state, id, head.decode(), end);
                };
                let (slot, handle) = StreamSlot::new(id, StreamKind::Http, self.clone());
                state.slots.insert(id, slot);
                if let Some(work) = handler(handle, head, end) {
                    self.spawn_work(work);
                }
            }
            Event::Response { id, head, end } => to_stream(state, id, StreamEvent::Response { head, end }),
            Event::ResponseBlock { id, status, block, end } => {
                to_stream(state, id, StreamEvent::ResponseBlock { status, block, end })
            }
            Event::Data { id, data, end } => to_stream(state, id, StreamEvent::Data { data, end }),
            Event::Trailers { id, headers } => to_stream(state, id, StreamEvent::Trailers(headers)),
            Event::WsMessage { id, binary, fin, data } => {
                let n = data.len();
                let delivery = state.slots.get(&id).map(|slot| slot.deliver_ws(binary, fin, data));
                // Written to the bridge's socket, or nobody will read it: the credit goes
                // back now (the turn's end writes the grant).
                if n > 0 && matches!(delivery, Some(WsDelivery::Written | WsDelivery::Gone) | None) {
                    state.session.release(id, n);
                }
            }
            Event::WsClose { id, code, reason } => to_stream(state, id, StreamEvent::WsClose { code, reason }),
            Event::Reset { id, code, message } => {
                if let Some(slot) = state.slots.remove(&id) {
                    slot.deliver(StreamEvent::Reset { code, message });
                    slot.wake();
                }
            }
            Event::Writable { id } => {
                if let Some(slot) = state.slots.get(&id) {
                    slot.wake();
                }
            }
            Event::Hello(h) => self.notify_owner(state, ConnEvent::Hello(*h)),
            Event::Welcome(w) => self.notify_owner(state, ConnEvent::Welcome(*w)),
            Event::Refused { reason, message } => self.notify_owner(state, ConnEvent::Refused { reason, message }),
            Event::GoAway { message, .. } => self.notify_owner(state, ConnEvent::GoAway { message }),
            Event::Closed { code, message, by_peer } => {
                for (_, slot) in state.slots.drain() {
                    slot.deliver(StreamEvent::Reset {
                        code: localtunnels_core::ResetCode::Internal,
                        message: format!("tunnel closed: {message}"),
                    });
                    slot.wake();
                }
                self.notify_owner(state, ConnEvent::Closed { code, message, by_peer });
                state.owner_done = true;
                state.incoming = None;
                state.incoming_raw = None;
                self.closed.notify_waiters();
            }
            _ => {}
        }
    }

    /// A stream the peer opened: to the incoming handler, else to the owner.
    fn incoming_stream(self: &Arc<Self>, state: &mut State, id: StreamId, head: RequestHead, end: bool) {
        let (slot, handle) = StreamSlot::new(id, head.kind, self.clone());
        state.slots.insert(id, slot);
        if let Some(handler) = &state.incoming {
            if let Some(work) = handler(handle, head, end) {
                self.spawn_work(work);
            }
            return;
        }
        // Without an owner the handle is dropped here, which resets the stream.
        self.notify_owner(state, ConnEvent::Incoming { stream: handle, head, end });
    }

    /// Stream work for the reader task to run (inlined: a call on every OPEN showed in
    /// the count).
    #[inline(always)]
    fn spawn_work(&self, work: StreamFuture) {
        self.spawned.lock().unwrap_or_else(|e| e.into_inner()).push(work);
        self.has_spawned.store(true, Ordering::Release);
    }

    fn notify_owner(&self, state: &mut State, ev: ConnEvent) {
        if state.owner_listens && !state.owner_done {
            state.owner.push_back(ev);
            self.owner_wake.notify_one();
        }
    }

    /// Called from the `Drop` of a stream's last handle, with the payload bytes its
    /// receiver read and left to grant back then
    /// ([`crate::StreamReceiver::release_last_on_drop`]): never waits for the state lock.
    pub(crate) fn stream_dropped(self: &Arc<Self>, id: StreamId, held: usize) {
        self.defer(Deferred::Reset(id, held));
    }

    /// Notes `n` payload bytes of stream `id` released during the reader's turn (a
    /// WebSocket bridge's `down` half releases each message after its write, in the
    /// turn that read it): the turn's end, which locks the state anyway, grants them
    /// back before its write ([`Shared::take_turn_release`]), instead of a lock of
    /// their own (~0.05k instructions per message). One stream's bytes wait at a time,
    /// for one turn (a turn runs a bounded number of passes); `false` (release them
    /// now) outside a turn, when another release waits, or for more than 4 GiB.
    /// Race-free without the lock: the slot is filled before the turn flag is read
    /// again, and the turn's end clears that flag before it empties the slot, so
    /// either the turn's end takes the bytes or this call sees the turn over and
    /// grants them itself.
    #[inline]
    pub(crate) fn note_release(self: &Arc<Self>, id: StreamId, n: usize) -> bool {
        // Outside a turn (the server's bridges, on their own tasks) nothing else is read.
        if !self.turn.load(Ordering::SeqCst) {
            return false;
        }
        let Ok(n) = u32::try_from(n) else { return false };
        if n == 0 {
            return false;
        }
        let packed = u64::from(id) << 32 | u64::from(n);
        if self.turn_release.compare_exchange(0, packed, Ordering::SeqCst, Ordering::Relaxed).is_err() {
            return false;
        }
        if !self.turn.load(Ordering::SeqCst) {
            self.turn_ended_meanwhile();
        }
        true
    }

    /// [`Shared::note_release`] filled the slot as the turn ended, perhaps after its
    /// end looked: the bytes are granted here.
    #[cold]
    fn turn_ended_meanwhile(self: &Arc<Self>) {
        let mut state = self.lock();
        self.take_turn_release(&mut state);
        if state.session.has_transmit() || state.session.is_closed() {
            self.after_command(state);
        }
    }

    /// Grants back what [`Shared::note_release`] noted (under the state lock; the
    /// reader's turn's end). Most turns noted nothing: a load (a plain read) spares
    /// them the swap's locked exchange. As safe as the swap: a note after this load
    /// sees the turn over.
    #[inline]
    pub(crate) fn take_turn_release(&self, state: &mut State) {
        if self.turn_release.load(Ordering::SeqCst) == 0 {
            return;
        }
        let packed = self.turn_release.swap(0, Ordering::SeqCst);
        if packed != 0 {
            let (id, n) = ((packed >> 32) as StreamId, (packed & u64::from(u32::MAX)) as usize);
            state.session.release(id, n);
        }
    }

    /// Called when a receiver is dropped holding `n` unread payload bytes: they
    /// still count against the windows until released. Never waits for the state lock.
    pub(crate) fn release_later(self: &Arc<Self>, id: StreamId, n: usize) {
        if n > 0 {
            self.defer(Deferred::Release(id, n));
        }
    }

    fn defer(self: &Arc<Self>, d: Deferred) {
        // Outside the reader's turn, with the state free (a server's visitor task at
        // the end of its exchange, every request): applied at once, after what is
        // queued, without going through the queue.
        if !self.turn.load(Ordering::SeqCst) {
            if let Ok(mut state) = self.state.try_lock() {
                self.apply_dropped(&mut state);
                apply(&mut state, d);
                self.after_command(state);
                return;
            }
        }
        self.dropped.lock().unwrap_or_else(|e| e.into_inner()).push(d);
        self.has_dropped.store(true, Ordering::SeqCst);
        // In the reader's turn (a stream future ended there) the turn's end applies it:
        // it clears the flag before it takes the queue, so a drop it does not see is
        // applied below.
        if self.turn.load(Ordering::SeqCst) {
            return;
        }
        // Applied here when the state is free, else by the writer: a handle can be
        // dropped by a thread that holds the state lock (in a handler), which must not
        // wait for it.
        match self.state.try_lock() {
            Ok(mut state) => {
                self.apply_dropped(&mut state);
                self.after_command(state);
            }
            Err(_) => self.wake_writer.notify_one(),
        }
    }

    /// Applies what dropped handles left behind (see [`Self::apply_dropped`]) and
    /// queues the pong the reader asked for on `wire`.
    pub(crate) fn reap_dropped(&self, state: &mut State, wire: &mut WsEncoder) {
        if let Some(payload) = state.ws_pong.take() {
            wire.pong(payload);
        }
        self.apply_dropped(state);
    }

    /// Applies what dropped handles left behind: credit for unread bytes goes back to
    /// the peer, and streams whose handles are gone are reset (a no-op for finished
    /// ones; one that finished sending keeps its queued frames, see `Session::reset`).
    fn apply_dropped(&self, state: &mut State) {
        // Most turns have nothing here: the flag spares them the queue's lock. A handle
        // dropped after this check finds the state lock taken and wakes the writer,
        // which comes back here (see `defer`).
        if !self.has_dropped.load(Ordering::SeqCst) {
            return;
        }
        // Drained in place (the vector keeps its allocation): what is applied here drops
        // no handle, so nothing queues meanwhile.
        let mut deferred = self.dropped.lock().unwrap_or_else(|e| e.into_inner());
        self.has_dropped.store(false, Ordering::SeqCst);
        for d in deferred.drain(..) {
            apply(state, d);
        }
    }
}

/// Applies what one dropped handle left behind (see [`Shared::apply_dropped`]).
fn apply(state: &mut State, d: Deferred) {
    match d {
        Deferred::Release(id, n) => state.session.release(id, n),
        Deferred::Reset(id, held) => {
            if held > 0 {
                state.session.release(id, held);
            }
            state.session.reset(id, localtunnels_core::ResetCode::Cancel, "the other end went away");
            state.slots.remove(&id);
        }
    }
}

/// A handle to a running session. Cheap to clone; the session lives until it is
/// closed or the socket drops.
#[derive(Debug, Clone)]
pub struct Connection {
    shared: Arc<Shared>,
}

impl Connection {
    /// Starts driving `session` over `io`, a socket whose WebSocket upgrade is done
    /// (the session's role says which end of it this is). Returns the handle and the
    /// owner's receiver of [`ConnEvent`]s (bounded in practice by the session's stream
    /// limit).
    pub fn start<S>(session: Session, io: S, epoch: std::time::Instant) -> (Connection, ConnEvents)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let role = session.role();
        // One byte over the frame limit still reaches the core, which closes with
        // `FrameTooLarge`; bigger messages are refused from their header.
        let max_frame = usize::try_from(session.config().max_frame).unwrap_or(usize::MAX);
        let max_message = max_frame.saturating_add(1);
        // A `BATCH` cut by the read buffer's end comes as two (`WsDecoder::split_batches`).
        let mut decoder = WsDecoder::new(role, max_message);
        decoder.split_batches(max_frame);
        let (reader, writer) = tokio::io::split(io);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                session,
                slots: FxHashMap::default(),
                owner: VecDeque::new(),
                owner_listens: true,
                owner_done: false,
                incoming: None,
                incoming_raw: None,
                armed: None,
                ws_pong: None,
                held: Vec::new(),
            }),
            dropped: Mutex::new(Vec::new()),
            out: Mutex::new(Outbox::new(Box::pin(writer), ws_io::encoder(role))),
            turn: AtomicBool::new(false),
            turn_release: AtomicU64::new(0),
            spawned: Mutex::new(Vec::new()),
            has_spawned: AtomicBool::new(false),
            has_dropped: AtomicBool::new(false),
            epoch,
            wake_writer: Notify::new(),
            owner_wake: Notify::new(),
            closed: Notify::new(),
        });
        tokio::spawn(crate::conn_reader::run(reader, decoder, shared.clone()));
        tokio::spawn(crate::conn_writer::run(shared.clone()));
        shared.after_command(shared.lock());
        let events = ConnEvents { shared: shared.clone() };
        (Connection { shared }, events)
    }

    /// From now on, hands each stream the peer opens straight to `handler`, on the
    /// reader task, instead of sending a [`ConnEvent::Incoming`] to the owner: a
    /// request reaches its handler without a hop through the owner's task.
    /// `handler` runs under the connection's lock, so it must only hand the stream
    /// on, never wait or call back into this connection: either return its work, which
    /// the reader task then runs beside the socket (the stream's origin I/O wakes that
    /// task, and its frames go out when the task's turn ends: no other task is woken
    /// for a request), or spawn a task and return `None`.
    ///
    /// Work run on the reader task must never block the thread; it shares the task's
    /// cooperative budget with the socket (so a large body cannot starve the control
    /// connection), and a panic in it ends that stream only (it is caught, logged and
    /// the stream reset), as a spawned task's would. After the session ends the reader
    /// runs the remaining work to its end (each stream sees its reset).
    pub fn on_incoming(&self, handler: IncomingHandler) {
        self.shared.lock().incoming = Some(handler);
    }

    /// Like [`Connection::on_incoming`], for HTTP streams whose request head the
    /// handler takes with its header block undecoded
    /// ([`Session::set_raw_request_heads`]): an OPEN the session cannot give raw (a
    /// WebSocket's, one with a field the typed decoder drops) still goes to the
    /// [`IncomingHandler`].
    pub fn on_incoming_raw(&self, handler: IncomingRawHandler) {
        let mut state = self.shared.lock();
        state.incoming_raw = Some(handler);
        state.session.set_raw_request_heads(true);
    }

    /// The instant the session sees now.
    pub fn now(&self) -> Instant {
        self.shared.now()
    }

    /// Runs `f` on the session under the lock, then dispatches and transmits what it
    /// produced. For getters and one-shot commands (`go_away`, `close`, ...).
    pub fn with_session<R>(&self, f: impl FnOnce(&mut Session) -> R) -> R {
        let mut state = self.shared.lock();
        let r = f(&mut state.session);
        self.shared.after_command(state);
        r
    }

    /// Server: accepts the hello.
    pub fn accept(&self, welcome: Welcome) {
        let now = self.now();
        self.with_session(|s| s.accept(welcome, now));
    }

    /// Server: refuses the hello; the session closes after sending the refusal.
    pub fn refuse(&self, reason: RefuseReason, message: &str) {
        self.with_session(|s| s.refuse(reason, message));
    }

    /// Announces go-away: no new streams; in-flight ones finish.
    pub fn go_away(&self, message: &str) {
        self.with_session(|s| s.go_away(CloseCode::Shutdown, message));
    }

    /// Closes the session now.
    pub fn close(&self, code: CloseCode, message: &str) {
        self.with_session(|s| s.close(code, message));
    }

    /// Live streams.
    pub fn stream_count(&self) -> usize {
        self.shared.lock().session.stream_count()
    }

    /// The streams in flight, or `None` when the session takes no new ones (not yet
    /// established, going away or closed): one look under one lock, for choosing
    /// among several connections.
    pub fn open_load(&self) -> Option<usize> {
        let state = self.shared.lock();
        let s = &state.session;
        (s.is_established() && !s.is_going_away()).then(|| s.stream_count())
    }

    /// True once the session is closed.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().session.is_closed()
    }

    /// Resolves when the session is closed.
    pub async fn closed(&self) {
        loop {
            let notified = self.shared.closed.notified();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

/// The owner's receiver of a [`Connection`]'s [`ConnEvent`]s. Dropping it drops
/// what it did not read (an unread incoming stream is reset) and all later news.
pub struct ConnEvents {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ConnEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnEvents").finish_non_exhaustive()
    }
}

impl ConnEvents {
    /// The next event; `None` once the session closed and its `Closed` was read.
    pub async fn recv(&mut self) -> Option<ConnEvent> {
        loop {
            // Armed before the check: a notification in between is kept as a permit.
            let notified = self.shared.owner_wake.notified();
            {
                let mut state = self.shared.lock();
                if let Some(ev) = state.owner.pop_front() {
                    return Some(ev);
                }
                if state.owner_done {
                    return None;
                }
            }
            notified.await;
        }
    }
}

impl Drop for ConnEvents {
    fn drop(&mut self) {
        let unread = {
            let mut state = self.shared.lock();
            state.owner_listens = false;
            std::mem::take(&mut state.owner)
        };
        // Dropped outside the lock (a stream handle's drop only queues its reset).
        drop(unread);
    }
}

/// The session's next deadline is earlier than the one the writer's timer is set for.
pub(crate) fn timer_earlier(state: &State) -> bool {
    match (state.session.poll_timeout(), state.armed) {
        (Some(t), Some(armed)) => t < armed,
        (Some(_), None) => true,
        (None, _) => false,
    }
}
