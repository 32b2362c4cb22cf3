//! A [`Connection`]: one core [`Session`] driven over a WebSocket (framed by
//! [`ws_codec`](crate::ws_codec), through [`ws_io`](crate::ws_io), on the upgraded socket).
//!
//! Two tasks own the socket halves, as quinn's `ConnectionDriver` owns its socket:
//! the reader feeds every binary message to the session and dispatches the events; the
//! writer drains `poll_transmit` into the socket (many frames, one flush) and runs the
//! heartbeat timer. Reading never waits on writing, so two peers that both write
//! cannot deadlock. Stream handles talk to the session under a short-held mutex and
//! wake the writer.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;

use bytes::Bytes;
use localtunnels_core::{CloseCode, Event, Instant, OpenError, RefuseReason, RequestHead, Session, StreamId, Welcome};
use rustc_hash::FxHashMap;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use crate::lazy_deadline::LazyDeadline;
use crate::stream::{StreamEvent, StreamHandle, StreamSlot};
use crate::ws_codec::{WsDecoder, WsEncoder, WsError, WsMessage};
use crate::ws_io::{self, WsReadError};

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
/// follows), called on the reader task: see [`Connection::on_incoming`].
pub type IncomingHandler = Arc<dyn Fn(StreamHandle, RequestHead, bool) + Send + Sync>;

pub(crate) struct State {
    pub(crate) session: Session,
    /// Keyed by stream id: a multiply for a hash (ids come in sequence, the core checks).
    slots: FxHashMap<StreamId, StreamSlot>,
    /// News for the owner, until it drops its [`ConnEvents`] (a few at a time: a
    /// tokio channel's first block alone held 32, about 4 KiB per idle tunnel).
    owner: VecDeque<ConnEvent>,
    /// The owner still holds its [`ConnEvents`].
    owner_listens: bool,
    /// No news after `Closed`: the owner's `recv` then ends.
    owner_done: bool,
    incoming: Option<IncomingHandler>,
    /// The deadline the writer's timer is set for (`None`: no timer). Only the
    /// writer sets it, under the lock, before it sleeps.
    armed: Option<Instant>,
    /// The payload of the peer's latest WebSocket ping, to answer. Only the latest is
    /// answered (RFC 6455 §5.5.3 allows it), so a peer that pings and never reads
    /// cannot queue answers.
    ws_pong: Option<Bytes>,
}

/// Work a stream handle's `Drop`, or the reader, leaves for the writer task.
enum Deferred {
    /// Unread payload bytes to grant back.
    Release(StreamId, usize),
    /// A stream nobody holds any more.
    Reset(StreamId),
}

pub(crate) struct Shared {
    state: Mutex<State>,
    /// Streams whose handles were dropped, to reset under the state lock. Handles
    /// can be dropped while that lock is held (e.g. undelivered incoming streams
    /// freed with their channel), so `Drop` only queues the id here.
    dropped: Mutex<Vec<Deferred>>,
    epoch: std::time::Instant,
    wake_writer: Notify,
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

    /// Locks the state. A poisoned lock means a panic elsewhere already broke this
    /// connection; carrying on with its state is still memory-safe and lets the
    /// other tasks wind down.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After a command: dispatch what it produced and let the writer send. The
    /// writer is only woken when there is something to send, the session closed, or
    /// its timer must fire earlier than the one it sleeps on: most commands (a
    /// release below the window-update threshold, a message that only produced
    /// events) leave it asleep.
    pub(crate) fn after_command(self: &Arc<Self>, state: &mut State) {
        self.pump(state);
        let session = &state.session;
        let earlier = match (session.poll_timeout(), state.armed) {
            (Some(t), Some(armed)) => t < armed,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if earlier || session.has_transmit() || session.is_closed() {
            self.wake_writer.notify_one();
        }
    }

    /// Drains the session's events to the stream slots and the owner.
    fn pump(self: &Arc<Self>, state: &mut State) {
        while let Some(event) = state.session.poll_event() {
            self.dispatch(state, event);
        }
    }

    fn dispatch(self: &Arc<Self>, state: &mut State, event: Event) {
        let to_stream = |state: &mut State, id: StreamId, ev: StreamEvent| {
            let held = ev.payload_len();
            let delivered = state.slots.get(&id).is_some_and(|slot| slot.deliver(ev));
            if !delivered && held > 0 {
                // Nobody will read it: hand the credit straight back.
                state.session.release(id, held);
            }
        };
        match event {
            Event::Opened { id, head, end } => {
                let (slot, handle) = StreamSlot::new(id, head.kind, self.clone());
                state.slots.insert(id, slot);
                if let Some(handler) = &state.incoming {
                    return handler(handle, head, end);
                }
                // Without an owner the handle is dropped here, which resets the stream.
                self.notify_owner(state, ConnEvent::Incoming { stream: handle, head, end });
            }
            Event::Response { id, head, end } => to_stream(state, id, StreamEvent::Response { head, end }),
            Event::Data { id, data, end } => to_stream(state, id, StreamEvent::Data { data, end }),
            Event::Trailers { id, headers } => to_stream(state, id, StreamEvent::Trailers(headers)),
            Event::WsMessage { id, binary, fin, data } => {
                to_stream(state, id, StreamEvent::WsMessage { binary, fin, data })
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
            Event::Hello(h) => self.notify_owner(state, ConnEvent::Hello(h)),
            Event::Welcome(w) => self.notify_owner(state, ConnEvent::Welcome(w)),
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
                self.closed.notify_waiters();
            }
            _ => {}
        }
    }

    fn notify_owner(&self, state: &mut State, ev: ConnEvent) {
        if state.owner_listens && !state.owner_done {
            state.owner.push_back(ev);
            self.owner_wake.notify_one();
        }
    }

    /// True while the driver still routes events to stream `id`: false once the peer
    /// reset it or the session closed (those remove the slot before waking the sender).
    pub(crate) fn has_slot(&self, id: StreamId) -> bool {
        self.lock().slots.contains_key(&id)
    }

    /// Called from a stream handle's `Drop`: never takes the state lock.
    pub(crate) fn stream_dropped(&self, id: StreamId) {
        self.defer(Deferred::Reset(id));
    }

    /// Called when a receiver is dropped holding `n` unread payload bytes: they
    /// still count against the windows until released. Never takes the state lock.
    pub(crate) fn release_later(&self, id: StreamId, n: usize) {
        if n > 0 {
            self.defer(Deferred::Release(id, n));
        }
    }

    fn defer(&self, d: Deferred) {
        self.dropped.lock().unwrap_or_else(|e| e.into_inner()).push(d);
        self.wake_writer.notify_one();
    }

    /// Applies what dropped handles left behind: credit for unread bytes goes back to
    /// the peer, and streams whose handles are gone are reset (a no-op for finished
    /// ones; one that finished sending keeps its queued frames, see `Session::reset`).
    /// The pong the reader asked for is queued on `wire`.
    fn reap_dropped(&self, state: &mut State, wire: &mut WsEncoder) {
        if let Some(payload) = state.ws_pong.take() {
            wire.pong(payload);
        }
        let deferred = std::mem::take(&mut *self.dropped.lock().unwrap_or_else(|e| e.into_inner()));
        for d in deferred {
            match d {
                Deferred::Release(id, n) => state.session.release(id, n),
                Deferred::Reset(id) => {
                    state.session.reset(id, localtunnels_core::ResetCode::Cancel, "the other end went away");
                    state.slots.remove(&id);
                }
            }
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
        let max_message = usize::try_from(session.config().max_frame).unwrap_or(usize::MAX).saturating_add(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                session,
                slots: FxHashMap::default(),
                owner: VecDeque::new(),
                owner_listens: true,
                owner_done: false,
                incoming: None,
                armed: None,
                ws_pong: None,
            }),
            dropped: Mutex::new(Vec::new()),
            epoch,
            wake_writer: Notify::new(),
            owner_wake: Notify::new(),
            closed: Notify::new(),
        });
        let (reader, writer) = tokio::io::split(io);
        tokio::spawn(run_reader(reader, WsDecoder::new(role, max_message), shared.clone()));
        tokio::spawn(run_writer(writer, ws_io::encoder(role), shared.clone()));
        {
            let mut state = shared.lock();
            shared.after_command(&mut state);
        }
        let events = ConnEvents { shared: shared.clone() };
        (Connection { shared }, events)
    }

    /// From now on, hands each stream the peer opens straight to `handler`, on the
    /// reader task, instead of sending a [`ConnEvent::Incoming`] to the owner: a
    /// server's request reaches its handler without a hop through the owner's task.
    /// `handler` runs under the connection's lock, so it must only hand the stream
    /// on (e.g. spawn a task), never wait or call back into this connection.
    pub fn on_incoming(&self, handler: IncomingHandler) {
        self.shared.lock().incoming = Some(handler);
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
        self.shared.after_command(&mut state);
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

    /// Opens a stream towards the peer.
    pub fn open(&self, head: RequestHead, end: bool) -> Result<StreamHandle, OpenError> {
        let mut state = self.shared.lock();
        let kind = head.kind;
        let id = state.session.open(head, end)?;
        let (slot, handle) = StreamSlot::new(id, kind, self.shared.clone());
        state.slots.insert(id, slot);
        self.shared.after_command(&mut state);
        Ok(handle)
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

async fn run_reader<R>(mut io: R, mut wire: WsDecoder, shared: Arc<Shared>)
where
    R: AsyncRead + Unpin,
{
    let mut lost = "the peer closed the connection".to_string();
    loop {
        let received = ws_io::read_message(&mut wire, &mut io).await;
        let mut state = shared.lock();
        if state.session.is_closed() {
            break;
        }
        match received {
            Ok(Some(WsMessage::Binary(b))) => {
                let now = shared.now();
                if let Err(e) = state.session.handle_message(now, b) {
                    tracing::debug!(error = %e, "protocol error from peer");
                }
            }
            Ok(Some(WsMessage::Text(_))) => {
                state.session.close(CloseCode::ProtocolError, "text message on the control connection");
            }
            Ok(Some(WsMessage::Close(_))) => {
                lost = "the peer closed the WebSocket".to_string();
                break;
            }
            Ok(Some(WsMessage::Ping(payload))) => {
                state.ws_pong = Some(payload);
                shared.wake_writer.notify_one();
            }
            Ok(Some(WsMessage::Pong)) => {}
            Ok(None) => break,
            Err(WsReadError::Codec(WsError::TooLarge { size, max })) => {
                // A message over the frame limit, refused from its header before the
                // core saw it: the same verdict the core gives a smaller oversized frame.
                let message = format!("message over the frame limit ({size} > {max} bytes)");
                state.session.close(CloseCode::FrameTooLarge, &message);
                shared.after_command(&mut state);
                break;
            }
            Err(WsReadError::Codec(e)) => {
                state.session.close(CloseCode::ProtocolError, &e.to_string());
                shared.after_command(&mut state);
                break;
            }
            Err(WsReadError::Io(e)) => {
                lost = format!("connection lost: {e}");
                break;
            }
        }
        shared.after_command(&mut state);
    }
    let mut state = shared.lock();
    if !state.session.is_closed() {
        state.session.close(CloseCode::Internal, &lost);
    }
    shared.after_command(&mut state);
}

/// Bytes of frames the writer encodes and hands to the socket per flush.
const WRITE_BATCH: usize = 256 * 1024;

async fn run_writer<W>(mut io: W, mut wire: WsEncoder, shared: Arc<Shared>)
where
    W: AsyncWrite + Unpin,
{
    // One timer for the connection's life, moved only when the session's next
    // deadline changes (a new one per wake-up cost a timer-wheel insert and removal),
    // and lazily: the deadline mostly moves later (each ping, each message received).
    let mut timer: Option<LazyDeadline> = None;
    let mut timer_at: Option<Instant> = None;
    loop {
        let notified = shared.wake_writer.notified();
        let (deadline, closed) = {
            let mut state = shared.lock();
            shared.reap_dropped(&mut state, &mut wire);
            // A bounded batch per flush: draining everything could encode a whole
            // session window (8 MiB) of copies at once. Nothing more while an earlier
            // batch is still unwritten (a flush the peer stalled, interrupted below).
            let mut batch = if wire.is_empty() { 0 } else { WRITE_BATCH };
            while batch < WRITE_BATCH {
                let Some((head, payload)) = state.session.poll_transmit_parts() else { break };
                batch += head.len() + payload.len();
                wire.binary_parts(head, payload);
            }
            shared.pump(&mut state);
            let deadline = state.session.poll_timeout();
            state.armed = deadline;
            (deadline, state.session.is_closed())
        };
        if !wire.is_empty() {
            // Written at once as a rule. A peer that does not read stalls the write: the
            // session's timers and commands still run meanwhile (the write resumes where
            // it stopped), so that its unanswered pings, or a close, end the session
            // instead of leaving this task waiting on the socket for good.
            let flushed = {
                let mut flush = std::pin::pin!(ws_io::write_all(&mut wire, &mut io));
                let mut notified = std::pin::pin!(notified);
                let mut armed = false;
                std::future::poll_fn(|cx| {
                    if let Poll::Ready(r) = flush.as_mut().poll(cx) {
                        return Poll::Ready(Some(r));
                    }
                    if !armed {
                        armed = true;
                        if let Some(at) = deadline {
                            arm(&mut timer, &mut timer_at, at, shared.now());
                        }
                    }
                    if notified.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(None);
                    }
                    match &mut timer {
                        Some(t) if deadline.is_some() => t.poll_expired(cx).map(|()| {
                            timer_at = None;
                            None
                        }),
                        _ => Poll::Pending,
                    }
                })
                .await
            };
            match flushed {
                Some(Ok(())) => {}
                Some(Err(_)) => {
                    let mut state = shared.lock();
                    state.session.close(CloseCode::Internal, "could not write to the connection");
                    shared.pump(&mut state);
                    break;
                }
                None => {
                    let mut state = shared.lock();
                    if timer_at.is_none() {
                        let now = shared.now();
                        state.session.handle_timeout(now);
                        shared.pump(&mut state);
                    }
                    if state.session.is_closed() {
                        // The peer is not reading: what is left unwritten is dropped
                        // with the socket.
                        break;
                    }
                }
            }
            continue;
        }
        if closed {
            break;
        }
        match deadline {
            Some(at) => {
                arm(&mut timer, &mut timer_at, at, shared.now());
                let mut notified = std::pin::pin!(notified);
                let fired = std::future::poll_fn(|cx| {
                    if notified.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(false);
                    }
                    match &mut timer {
                        Some(t) => t.poll_expired(cx).map(|()| true),
                        None => Poll::Pending,
                    }
                })
                .await;
                if fired {
                    timer_at = None;
                    let mut state = shared.lock();
                    let now = shared.now();
                    state.session.handle_timeout(now);
                    shared.pump(&mut state);
                }
            }
            None => notified.await,
        }
    }
    // A peer that does not read gets a bounded wait for the close, not an endless one.
    wire.close(1000);
    let _ = tokio::time::timeout(CLOSE_FLUSH, async {
        let _ = ws_io::write_all(&mut wire, &mut io).await;
        let _ = io.shutdown().await;
    })
    .await;
}

/// How long the writer tries to hand the last frames and the WebSocket close to a
/// peer before it drops the socket.
const CLOSE_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

/// Sets the writer's timer for the session instant `at`, if it is not set for it yet.
fn arm(timer: &mut Option<LazyDeadline>, timer_at: &mut Option<Instant>, at: Instant, now: Instant) {
    if *timer_at != Some(at) {
        let wait = at.saturating_duration_since(now);
        let tokio_at = tokio::time::Instant::now() + wait;
        match timer {
            Some(t) => t.set(tokio_at),
            none => *none = Some(LazyDeadline::new(tokio_at)),
        }
        *timer_at = Some(at);
    }
}
