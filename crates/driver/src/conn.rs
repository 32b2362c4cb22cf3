//! A [`Connection`]: one core [`Session`] driven over a tokio WebSocket.
//!
//! Two tasks own the socket halves, as quinn's `ConnectionDriver` owns its socket:
//! the reader feeds every binary message to the session and dispatches the events; the
//! writer drains `poll_transmit` into the socket (many frames, one flush) and runs the
//! heartbeat timer. Reading never waits on writing, so two peers that both write
//! cannot deadlock. Stream handles talk to the session under a short-held mutex and
//! wake the writer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use localtunnels_core::{
    CloseCode, Event, IdMap, Instant, OpenError, RefuseReason, RequestHead, Session, StreamId, Welcome,
};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::stream::{StreamEvent, StreamHandle, StreamSlot};

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
    },
}

/// Takes each stream the peer opens (its handle, request head, and whether no body
/// follows), called on the reader task: see [`Connection::on_incoming`].
pub type IncomingHandler = Arc<dyn Fn(StreamHandle, RequestHead, bool) + Send + Sync>;

pub(crate) struct State {
    pub(crate) session: Session,
    slots: IdMap<StreamSlot>,
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
}

/// Work a stream handle's `Drop` leaves for the writer task.
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
            Event::Closed { code, message, .. } => {
                for (_, slot) in state.slots.drain() {
                    slot.deliver(StreamEvent::Reset {
                        code: localtunnels_core::ResetCode::Internal,
                        message: format!("tunnel closed: {message}"),
                    });
                    slot.wake();
                }
                self.notify_owner(state, ConnEvent::Closed { code, message });
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
    fn reap_dropped(&self, state: &mut State) {
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
    /// Starts driving `session` over `ws`. Returns the handle and the owner's
    /// receiver of [`ConnEvent`]s (bounded in practice by the session's stream limit).
    pub fn start<S>(session: Session, ws: S, epoch: std::time::Instant) -> (Connection, ConnEvents)
    where
        S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Send + Unpin + 'static,
    {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                session,
                slots: IdMap::default(),
                owner: VecDeque::new(),
                owner_listens: true,
                owner_done: false,
                incoming: None,
                armed: None,
            }),
            dropped: Mutex::new(Vec::new()),
            epoch,
            wake_writer: Notify::new(),
            owner_wake: Notify::new(),
            closed: Notify::new(),
        });
        let (sink, stream) = ws.split();
        tokio::spawn(run_reader(stream, shared.clone()));
        tokio::spawn(run_writer(sink, shared.clone()));
        {
            let mut state = shared.lock();
            shared.after_command(&mut state);
        }
        let events = ConnEvents { shared: shared.clone() };
        (Connection { shared }, events)
    }

    /// The tungstenite settings for a control connection whose frames are at most
    /// `max_frame` bytes. tungstenite's default 128 KiB read buffer is allocated per
    /// connection and zero-filled before every read: it made the memset the
    /// server's hottest function and cost 128 KiB of memory per idle tunnel.
    pub fn ws_config(max_frame: usize) -> WebSocketConfig {
        WebSocketConfig::default()
            .max_message_size(Some(max_frame))
            .max_frame_size(Some(max_frame))
            .read_buffer_size(READ_BUFFER)
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

async fn run_reader<S>(mut stream: S, shared: Arc<Shared>)
where
    S: Stream<Item = Result<Message, WsError>> + Unpin,
{
    let mut lost = "the peer closed the connection".to_string();
    while let Some(msg) = stream.next().await {
        let mut state = shared.lock();
        if state.session.is_closed() {
            break;
        }
        match msg {
            Ok(Message::Binary(b)) => {
                let now = shared.now();
                if let Err(e) = state.session.handle_message(now, b) {
                    tracing::debug!(error = %e, "protocol error from peer");
                }
            }
            Ok(Message::Text(_)) => {
                state.session.close(CloseCode::ProtocolError, "text message on the control connection");
            }
            Ok(Message::Close(_)) => {
                lost = "the peer closed the WebSocket".to_string();
                break;
            }
            Ok(_) => {}
            Err(WsError::Capacity(e)) => {
                // A message over the frame limit, refused by tungstenite before the core
                // saw it: the same verdict the core gives a smaller oversized frame.
                state.session.close(CloseCode::FrameTooLarge, &format!("message over the frame limit: {e}"));
                shared.after_command(&mut state);
                break;
            }
            Err(e) => {
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

/// Most bytes one read of the control socket takes (see [`Connection::ws_config`]).
const READ_BUFFER: usize = 16 * 1024;

/// Bytes of frames the writer encodes and hands to the socket per flush.
const WRITE_BATCH: usize = 256 * 1024;

async fn run_writer<S>(mut sink: S, shared: Arc<Shared>)
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    let mut frames = Vec::new();
    loop {
        let notified = shared.wake_writer.notified();
        let (deadline, closed) = {
            let mut state = shared.lock();
            shared.reap_dropped(&mut state);
            // A bounded batch per flush: draining everything could encode a whole
            // session window (8 MiB) of copies at once.
            let mut batch = 0;
            while batch < WRITE_BATCH {
                let Some(f) = state.session.poll_transmit_batch() else { break };
                batch += f.len();
                frames.push(f);
            }
            shared.pump(&mut state);
            let deadline = state.session.poll_timeout();
            state.armed = deadline;
            (deadline, state.session.is_closed())
        };
        if !frames.is_empty() {
            let mut failed = false;
            for f in frames.drain(..) {
                if sink.feed(Message::Binary(f)).await.is_err() {
                    failed = true;
                    break;
                }
            }
            if failed || sink.flush().await.is_err() {
                let mut state = shared.lock();
                state.session.close(CloseCode::Internal, "could not write to the connection");
                shared.pump(&mut state);
                break;
            }
            continue;
        }
        if closed {
            break;
        }
        match deadline {
            Some(at) => {
                let wait = at.saturating_duration_since(shared.now());
                tokio::select! {
                    _ = notified => gather().await,
                    _ = tokio::time::sleep(wait) => {
                        let mut state = shared.lock();
                        let now = shared.now();
                        state.session.handle_timeout(now);
                        shared.pump(&mut state);
                    }
                }
            }
            None => {
                notified.await;
                gather().await;
            }
        }
    }
    let _ = sink.close().await;
}

/// Lets the tasks that are ready to run go first, once, so that what they queue
/// (other requests' heads and bodies) leaves in the same batch and write as the frame
/// that woke the writer. Costs one trip through the run queue when nothing else is
/// ready; under load it packs more frames into each message and each syscall.
async fn gather() {
    tokio::task::yield_now().await;
}
