//! The multiplexed session: the state machine both ends run over one WebSocket.
//!
//! The methods fall in four groups, as in quinn-proto:
//! - getters (`is_established`, `rtt`, `stream_count`, ...),
//! - inputs: [`Session::handle_message`] for every received binary message and
//!   [`Session::handle_timeout`] when [`Session::poll_timeout`] expires,
//! - commands: `open`, `respond`, `send_data`, `release`, `reset`, `go_away`, `close`, ...,
//! - outputs: [`Session::poll_transmit`] (one WebSocket binary message each; or
//!   [`Session::poll_transmit_batch`], which packs what is queued into as few messages
//!   as the peer allows), [`Session::poll_event`] and [`Session::poll_timeout`].
//!
//! **The driver's rule:** after any input or command, drain `poll_event` and
//! `poll_transmit` until they return `None`, then re-arm the timer from `poll_timeout`.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use crate::config::{Config, Limits};
use crate::error::{OpenError, ProtocolError, StreamError};
use crate::event::Event;
use crate::frame::{
    batch_body, check_headers, check_request_head, check_response_head, encode_batch_entry, header_block_len, kind,
    put_batch_entry, BatchEntries, CloseCode, DecodeLimits, Frame, Header, RequestHead, ResetCode, ResponseHead,
    StreamId, StreamKind, BATCH_ENTRY_OVERHEAD, BATCH_HEADER,
};
use crate::handshake::{features, Hello, RefuseReason, Welcome, PROTOCOL_VERSION};
use crate::idmap::IdMap;
use crate::stream::{Chunk, Stream};
use crate::time::Instant;

/// Which end of the control connection this session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opened the WebSocket; sends the hello; opens odd streams.
    Client,
    /// Accepted the WebSocket; answers the hello; opens even streams.
    Server,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Client: hello sent, waiting for welcome. Server: waiting for hello.
    Handshake,
    /// Server: hello received, the driver has not decided yet.
    Deciding,
    Established,
    Closed,
}

/// One end of a localtunnels session. See the module docs for how to drive it.
#[derive(Debug)]
pub struct Session {
    role: Role,
    config: Config,
    state: State,
    /// The peer's receive limits, which we obey when sending.
    peer: Limits,
    /// The optional features the peer accepts ([`features`]), from its hello or welcome.
    peer_features: u32,
    decode_limits: DecodeLimits,
    streams: IdMap<Stream>,
    /// Next id this end opens; past `u32::MAX` the ids are exhausted.
    next_local_id: u64,
    last_peer_id: StreamId,
    local_open: u32,
    peer_open: u32,
    /// Bytes the peer still lets us send on the session as a whole.
    send_credit: u64,
    /// Payload bytes `send_data`/`send_ws` took that are not sent yet, across all
    /// streams: at most the peer's session window (see [`Session::queue_room`]).
    queued: u64,
    /// A stream was refused bytes for lack of queue room: wake the blocked streams
    /// once the queue has drained to half.
    queue_full: bool,
    /// Where the next wake-up of blocked streams starts (after this id), so that the
    /// first to offer again, and to find room, takes turns.
    wake_after: StreamId,
    /// Bytes the peer may still send us on the session as a whole.
    recv_remaining: u64,
    /// Bytes consumed by the application and not yet granted back.
    recv_unacked: u64,
    /// Frames taken out for a batch they did not fit in: they go out first next time.
    held: VecDeque<Output>,
    /// The frames of the batch being packed (kept for its allocation).
    picked: Vec<Output>,
    /// Encoded frames that go before any stream data: heads, windows, resets, pings.
    control: VecDeque<Bytes>,
    /// Bytes in `control`, bounded by `Config::max_control_queue`.
    control_bytes: usize,
    /// The answer to the peer's latest PING, not sent yet: only the latest is kept, so
    /// a peer that pings and never reads cannot grow the queue.
    pending_pong: Option<u64>,
    /// Our divisor for a stream's fair share of the session credit and of the queue
    /// (see [`Session::fair_share`]); 1 turns the sharing off.
    fair_divisor: u64,
    /// A pool at least this large (`fair_divisor` stream windows) gives every stream all
    /// its window allows, so sharing it costs nothing: the common case skips the division.
    fair_free: u64,
    /// Streams with queued data, served round-robin one frame at a time.
    ring: VecDeque<StreamId>,
    events: VecDeque<Event>,
    last_recv: Instant,
    next_ping: Instant,
    ping_interval: Duration,
    idle_timeout: Duration,
    /// The shortest idle timeout this side accepts from the peer's welcome.
    idle_floor: Duration,
    ping_seq: u64,
    ping_outstanding: Option<(u64, Instant)>,
    /// When the oldest PING that has had no PONG since was queued: a peer that answers
    /// none for the idle timeout does not read, and is closed as dead.
    unanswered_since: Option<Instant>,
    rtt: Option<Duration>,
    going_away_local: bool,
    going_away_peer: bool,
}

impl Session {
    /// A client session; the hello is queued for transmission at once.
    pub fn client(config: Config, mut hello: Hello, now: Instant) -> Self {
        let mut s = Session::new(Role::Client, config, now);
        hello.version = PROTOCOL_VERSION;
        hello.limits = Some(Limits::from(&s.config));
        hello.features = features::BATCH | features::EAGER_WINDOW;
        s.push_control(&Frame::Hello(hello));
        s
    }

    /// A server session, waiting for the client's hello.
    pub fn server(config: Config, now: Instant) -> Self {
        Session::new(Role::Server, config, now)
    }

    fn new(role: Role, config: Config, now: Instant) -> Self {
        let decode_limits = DecodeLimits {
            max_frame: usize::try_from(config.max_frame).unwrap_or(usize::MAX),
            max_header_bytes: usize::try_from(config.max_header_bytes).unwrap_or(usize::MAX),
        };
        // The defaults until the peer announces its own; ours bound them too.
        let peer = config.clamp_peer(Limits::from(&Config::DEFAULT));
        Session {
            role,
            state: State::Handshake,
            peer,
            peer_features: 0,
            decode_limits,
            streams: IdMap::default(),
            next_local_id: if role == Role::Client { 1 } else { 2 },
            last_peer_id: 0,
            local_open: 0,
            peer_open: 0,
            send_credit: u64::from(peer.session_window),
            queued: 0,
            queue_full: false,
            wake_after: 0,
            recv_remaining: u64::from(config.session_window),
            recv_unacked: 0,
            held: VecDeque::new(),
            picked: Vec::new(),
            control: VecDeque::new(),
            control_bytes: 0,
            pending_pong: None,
            fair_divisor: 1,
            fair_free: 0,
            ring: VecDeque::new(),
            events: VecDeque::new(),
            last_recv: now,
            next_ping: now + config.ping_interval,
            ping_interval: config.ping_interval,
            idle_timeout: config.idle_timeout,
            idle_floor: Duration::ZERO,
            ping_seq: 0,
            ping_outstanding: None,
            unanswered_since: None,
            rtt: None,
            going_away_local: false,
            going_away_peer: false,
            config,
        }
    }

    // ----- getters -----

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The handshake completed and the session is not closed.
    pub fn is_established(&self) -> bool {
        self.state == State::Established
    }

    /// The session is over; drain `poll_transmit` once more, then close the socket.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Either side announced go-away.
    pub fn is_going_away(&self) -> bool {
        self.going_away_local || self.going_away_peer
    }

    /// Live streams.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// The last measured heartbeat round-trip time.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// Never declares the peer dead after less than `floor` of silence, whatever the
    /// welcome announces. A browser tab in the background runs its timers about once a
    /// minute: its liveness rests on answering the server's pings as they arrive (the
    /// server keeps its own, shorter timeout), and its own timeout must be longer than
    /// the timer's delay.
    pub fn set_idle_floor(&mut self, floor: Duration) {
        self.idle_floor = floor;
        self.idle_timeout = self.idle_timeout.max(floor);
    }

    /// The peer's receive limits (ours to obey).
    pub fn peer_limits(&self) -> Limits {
        self.peer
    }

    /// The peer announced that it accepts `BATCH` frames, so
    /// [`Session::poll_transmit_batch`] packs frames for it.
    pub fn peer_accepts_batch(&self) -> bool {
        self.peer_features & features::BATCH != 0
    }

    /// Our configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Bytes `send_data`/`send_ws` would accept on `id` now.
    pub fn send_capacity(&self, id: StreamId) -> usize {
        let room = self.queue_room();
        let share = |s: &Stream| self.fair_share(room, s.queued);
        self.streams.get(&id).map_or(0, |s| usize::try_from(s.send_credit.min(share(s))).unwrap_or(usize::MAX))
    }

    /// How much more of a `pool` one stream that already holds `held` of it may take:
    /// it may hold at most `1 / fair_divisor` of what is left to share (the pool and its
    /// own part), rounded up so that a stream holding nothing always gets something of a
    /// pool that is not empty. Streams whose readers stall each keep a share of what the
    /// ones before them left, so the pool shrinks geometrically and is not used up by
    /// them: the next stream still finds credit and queue room. The pools are the
    /// session credit (for what a stream has in flight) and the queue room (for what
    /// it has queued), see `docs/PROTOCOL.md` §7, "Fair shares".
    fn fair_share(&self, pool: u64, held: u64) -> u64 {
        if self.fair_divisor <= 1 || pool >= self.fair_free {
            return pool;
        }
        pool.saturating_add(held).div_ceil(self.fair_divisor).saturating_sub(held).min(pool)
    }

    /// Payload bytes the streams may still queue, together: the peer's session window
    /// less what is queued and not sent. Each stream may queue up to its own window,
    /// but many streams whose data waits for the session window would otherwise queue
    /// `streams x stream_window` bytes here, of which only the session window can be
    /// on its way at once.
    fn queue_room(&self) -> u64 {
        self.queue_limit().saturating_sub(self.queued)
    }

    /// Payload bytes stream `s` may send now: its fair share of the session credit less
    /// what it has in flight (sent, not granted back on the stream). A stream with bytes
    /// in flight waits until its allowance is at least half its share (or covers all it
    /// has queued) rather than sending what each small grant frees: those dribs would
    /// come back as small grants, and the frames would never grow again (the silly
    /// window syndrome). It can wait: its bytes in flight will be granted back.
    fn send_allowance(&self, stream_window: u64, s: &Stream) -> u64 {
        if self.fair_divisor <= 1 || self.send_credit >= self.fair_free {
            return self.send_credit;
        }
        let in_flight = stream_window.saturating_sub(s.send_credit.saturating_add(s.queued));
        let allowed = self.fair_share(self.send_credit, in_flight);
        let share = allowed + in_flight;
        if in_flight > 0 && allowed < share / 2 && allowed < s.queued {
            return 0;
        }
        allowed
    }

    /// The most payload all streams may queue unsent: the peer's session window, and
    /// never more than our own `max_session_queue` whatever the peer announced.
    fn queue_limit(&self) -> u64 {
        u64::from(self.peer.session_window.min(self.config.max_session_queue))
    }

    /// Checks the internal invariants; used by tests and fuzzers.
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        let window = u64::from(self.peer.stream_window);
        let mut local = 0;
        let mut queued = 0;
        for (id, s) in &self.streams {
            queued += s.queued_bytes();
            assert_eq!(s.queued, s.queued_bytes(), "stream {id}'s count of queued bytes");
            assert!(s.queued_bytes() <= window.max(s.granted), "stream {id} queued beyond its window");
            assert!(s.recv_remaining <= u64::from(self.config.stream_window), "stream {id} recv window grew");
            if self.is_local(*id) {
                local += 1;
            }
        }
        assert_eq!(queued, self.queued, "queued payload bytes");
        assert!(queued <= self.queue_limit(), "queued {queued} beyond the queue limit {}", self.queue_limit());
        assert!(queued <= u64::from(self.config.max_session_queue), "queued {queued} beyond max_session_queue");
        assert_eq!(self.control_bytes, self.control.iter().map(Bytes::len).sum::<usize>(), "control bytes");
        assert!(self.control_bytes <= self.config.max_control_queue as usize, "control queue beyond its bound");
        assert!(self.peer.stream_window <= self.config.max_peer_window, "peer stream window not clamped");
        assert!(self.peer.session_window <= self.config.max_peer_window, "peer session window not clamped");
        assert!(self.send_credit <= u64::from(self.peer.session_window), "session credit beyond the window");
        assert_eq!(local, self.local_open, "local stream count");
        assert_eq!(self.streams.len() as u64, u64::from(self.local_open) + u64::from(self.peer_open));
        assert!(self.recv_remaining + self.recv_unacked <= u64::from(self.config.session_window));
        assert!(self.peer_open <= self.config.max_streams);
    }

    fn is_local(&self, id: StreamId) -> bool {
        (id % 2 == 1) == (self.role == Role::Client)
    }

    // ----- inputs -----

    /// Feeds one received WebSocket binary message: one frame, or a `BATCH` whose
    /// frames are handled in order as if each had come alone. On a protocol error the
    /// session queues a CLOSE with the error's code, emits [`Event::Closed`] and returns
    /// the error (frames of a batch before the bad one have been handled).
    pub fn handle_message(&mut self, now: Instant, msg: Bytes) -> Result<(), ProtocolError> {
        if self.state == State::Closed {
            return Ok(());
        }
        self.last_recv = now;
        let result = self.handle_frames(now, msg);
        if let Err(e) = &result {
            self.close(e.close_code(), &e.to_string());
        }
        result
    }

    fn handle_frames(&mut self, now: Instant, msg: Bytes) -> Result<(), ProtocolError> {
        let Some(body) = batch_body(&msg) else {
            let frame = Frame::decode(msg, &self.decode_limits)?;
            return self.handle_frame(now, frame);
        };
        if msg.len() > self.decode_limits.max_frame {
            let limit = self.decode_limits.max_frame;
            return Err(crate::DecodeError::FrameTooLarge { size: msg.len(), limit }.into());
        }
        // A client may batch only once the welcome told it we accept batches.
        if self.role == Role::Server && self.state != State::Established {
            return Err(ProtocolError::Unexpected("batch before the handshake completed"));
        }
        // Cut and handle one frame at a time: nothing is allocated for the batch as
        // a whole, and a CLOSE inside it ends the session like a CLOSE alone would.
        let mut entries = BatchEntries::new(body);
        while let Some(entry) = entries.next_entry()? {
            if self.state == State::Closed {
                break;
            }
            let frame = Frame::decode_inner(entry, &self.decode_limits)?;
            self.handle_frame(now, frame)?;
        }
        Ok(())
    }

    /// Call when the instant from [`Session::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        if now >= self.last_recv + self.idle_timeout {
            let secs = self.idle_timeout.as_secs_f32();
            self.close(CloseCode::Timeout, &format!("no frame from the peer for {secs:.1} s"));
            return;
        }
        if self.unanswered_since.is_some_and(|since| now >= since + self.idle_timeout) {
            let secs = self.idle_timeout.as_secs_f32();
            self.close(CloseCode::Timeout, &format!("the peer answered no ping for {secs:.1} s (it does not read)"));
            return;
        }
        if self.state == State::Established && now >= self.next_ping {
            self.ping_seq = self.ping_seq.wrapping_add(1);
            self.ping_outstanding = Some((self.ping_seq, now));
            self.unanswered_since.get_or_insert(now);
            self.push_control(&Frame::Ping(self.ping_seq));
            self.next_ping = now + self.ping_interval;
        }
    }

    fn handle_frame(&mut self, now: Instant, frame: Frame) -> Result<(), ProtocolError> {
        match (self.state, frame) {
            (_, Frame::Close { code, message }) => {
                self.state = State::Closed;
                self.clear_output();
                self.events.push_back(Event::Closed { code, message, by_peer: true });
            }
            (State::Handshake, Frame::Hello(hello)) if self.role == Role::Server => self.on_hello(hello),
            (State::Handshake, Frame::Welcome(w)) if self.role == Role::Client => self.on_welcome(now, w)?,
            (State::Handshake, Frame::Refuse { reason, message }) if self.role == Role::Client => {
                self.state = State::Closed;
                self.events.push_back(Event::Refused { reason, message });
            }
            (State::Established, frame) => self.on_established_frame(now, frame)?,
            (State::Deciding, Frame::Ping(v)) => self.pending_pong = Some(v),
            (_, _) => return Err(ProtocolError::Unexpected("frame not allowed during the handshake")),
        }
        Ok(())
    }

    fn on_hello(&mut self, hello: Hello) {
        if hello.version != PROTOCOL_VERSION {
            let message = format!(
                "client speaks protocol version {}, this server speaks version {PROTOCOL_VERSION}: upgrade the client",
                hello.version
            );
            self.push_control(&Frame::Refuse { reason: RefuseReason::VersionUnsupported, message: message.clone() });
            self.state = State::Closed;
            self.events.push_back(Event::Closed { code: CloseCode::ProtocolError, message, by_peer: false });
            return;
        }
        self.learn_peer(hello.limits, hello.features);
        self.state = State::Deciding;
        self.events.push_back(Event::Hello(hello));
    }

    fn on_welcome(&mut self, now: Instant, w: Welcome) -> Result<(), ProtocolError> {
        if w.version != PROTOCOL_VERSION {
            return Err(ProtocolError::Unexpected("welcome for a protocol version this client does not speak"));
        }
        self.learn_peer(w.limits, w.features);
        if w.heartbeat_ms > 0 {
            self.ping_interval = Duration::from_millis(u64::from(w.heartbeat_ms));
            self.next_ping = now + self.ping_interval;
        }
        if w.idle_timeout_ms > 0 {
            self.idle_timeout = Duration::from_millis(u64::from(w.idle_timeout_ms)).max(self.idle_floor);
        }
        self.state = State::Established;
        self.events.push_back(Event::Welcome(w));
        Ok(())
    }

    /// Takes the peer's limits (clamped to ours: nothing it announces is taken on
    /// trust) and features from its hello or welcome.
    fn learn_peer(&mut self, limits: Option<Limits>, peer_features: u32) {
        if let Some(l) = limits {
            self.peer = self.config.clamp_peer(l);
            self.send_credit = u64::from(self.peer.session_window);
        }
        self.peer_features = peer_features;
        // Fair shares need a receiver that grants small consumptions back at once when
        // its window runs short; with a batching one a stream kept to a small share
        // could wait for a grant that never comes. The divisor lets one stream alone
        // still use a whole stream window with a quarter of the session window not yet
        // granted back (3/4 S / W: 6 with the defaults), and is 1 (no sharing) when the
        // session window holds no more than one stream window.
        self.fair_divisor = if peer_features & features::EAGER_WINDOW != 0 {
            let (s, w) = (u64::from(self.peer.session_window), u64::from(self.peer.stream_window).max(1));
            (s * 3 / 4 / w).max(1)
        } else {
            1
        };
        self.fair_free = self.fair_divisor.saturating_mul(u64::from(self.peer.stream_window));
    }

    fn on_established_frame(&mut self, now: Instant, frame: Frame) -> Result<(), ProtocolError> {
        match frame {
            Frame::Open { id, head, end } => self.on_open(id, head, end)?,
            Frame::Response { id, head, end } => {
                let Some(s) = self.known_stream(id)? else { return Ok(()) };
                if !s.local || s.response_received || s.recv_done {
                    return Err(ProtocolError::Unexpected("response head on a stream that cannot take one"));
                }
                s.response_received = true;
                s.ws_accepted = s.kind == StreamKind::WebSocket && head.status == 101;
                if end {
                    s.recv_done = true;
                }
                self.events.push_back(Event::Response { id, head, end });
                self.reap(id);
            }
            Frame::Data { id, data, end } => {
                self.take_credit(id, data.len())?;
                let Some(s) = self.known_stream(id)? else { return Ok(()) };
                if s.recv_done || (s.local && !s.response_received) || s.ws_accepted {
                    return Err(ProtocolError::Unexpected("data on a stream that cannot take it"));
                }
                s.recv_done = end;
                self.events.push_back(Event::Data { id, data, end });
                self.reap(id);
            }
            Frame::Trailers { id, headers } => {
                let Some(s) = self.known_stream(id)? else { return Ok(()) };
                if s.recv_done || (s.local && !s.response_received) || s.ws_accepted {
                    return Err(ProtocolError::Unexpected("trailers on a stream that cannot take them"));
                }
                s.recv_done = true;
                self.events.push_back(Event::Trailers { id, headers });
                self.reap(id);
            }
            Frame::WsMessage { id, binary, fin, data } => {
                self.take_credit(id, data.len())?;
                let Some(s) = self.known_stream(id)? else { return Ok(()) };
                if s.recv_done || !s.ws_open() {
                    return Err(ProtocolError::Unexpected("message on a stream that is not an open WebSocket"));
                }
                self.events.push_back(Event::WsMessage { id, binary, fin, data });
            }
            Frame::WsClose { id, code, reason } => {
                let Some(s) = self.known_stream(id)? else { return Ok(()) };
                if s.recv_done || !s.ws_open() {
                    return Err(ProtocolError::Unexpected("close on a stream that is not an open WebSocket"));
                }
                s.recv_done = true;
                self.events.push_back(Event::WsClose { id, code, reason });
                self.reap(id);
            }
            Frame::Reset { id, code, message } => {
                let discarded = self.streams.get(&id).is_some_and(|s| s.discard);
                if discarded {
                    self.remove_stream(id);
                } else if self.known_stream(id)?.is_some() {
                    self.remove_stream(id);
                    self.events.push_back(Event::Reset { id, code, message });
                }
            }
            Frame::Window { id: 0, increment } => {
                // A conforming receiver never grants more than its window: credit above
                // it is not taken.
                let window = u64::from(self.peer.session_window);
                self.send_credit = self.send_credit.saturating_add(u64::from(increment)).min(window);
                self.wake_blocked();
            }
            Frame::Window { id, increment } => {
                let window = u64::from(self.peer.stream_window);
                if let Some(s) = self.known_stream(id)? {
                    s.send_credit = s.send_credit.saturating_add(u64::from(increment)).min(window);
                    s.granted = s.granted.saturating_add(u64::from(increment));
                    self.wake_if_writable(id);
                }
            }
            Frame::Ping(v) => self.pending_pong = Some(v),
            Frame::Pong(v) => {
                self.unanswered_since = None;
                if let Some((seq, sent)) = self.ping_outstanding {
                    if seq == v {
                        self.rtt = Some(now.saturating_duration_since(sent));
                        self.ping_outstanding = None;
                    }
                }
            }
            Frame::GoAway { last_id, code, message } => {
                self.going_away_peer = true;
                let refused: Vec<StreamId> =
                    self.streams.keys().copied().filter(|id| self.is_local(*id) && *id > last_id).collect();
                for id in refused {
                    let discarded = self.streams.get(&id).is_some_and(|s| s.discard);
                    self.remove_stream(id);
                    if discarded {
                        continue;
                    }
                    let message = "the peer is going away and did not process this stream".to_string();
                    self.events.push_back(Event::Reset { id, code: ResetCode::Refused, message });
                }
                self.events.push_back(Event::GoAway { code, message });
            }
            Frame::Hello(_) | Frame::Welcome(_) | Frame::Refuse { .. } => {
                return Err(ProtocolError::Unexpected("handshake frame after the handshake"))
            }
            Frame::Close { .. } => unreachable!("handled before the state match"),
            // `decode_inner` refuses a batch inside a batch; a batch alone never gets here.
            Frame::Batch(_) => return Err(ProtocolError::Unexpected("batch inside a batch")),
        }
        Ok(())
    }

    fn on_open(&mut self, id: StreamId, head: RequestHead, end: bool) -> Result<(), ProtocolError> {
        if self.is_local(id) || id <= self.last_peer_id {
            return Err(ProtocolError::BadStreamId(id));
        }
        self.last_peer_id = id;
        if self.going_away_local {
            let message = "the session is going away".to_string();
            self.push_control(&Frame::Reset { id, code: ResetCode::Refused, message });
            return Ok(());
        }
        if self.peer_open >= self.config.max_streams {
            return Err(ProtocolError::TooManyStreams(self.config.max_streams));
        }
        let mut s = Stream::new(head.kind, false, self.peer.stream_window, self.config.stream_window);
        s.recv_done = end;
        self.streams.insert(id, s);
        self.peer_open += 1;
        self.events.push_back(Event::Opened { id, head, end });
        Ok(())
    }

    /// The live stream `id`, `None` for a stream that existed and is gone (frames may
    /// still be in flight after a reset), or an error for an id never opened.
    fn known_stream(&mut self, id: StreamId) -> Result<Option<&mut Stream>, ProtocolError> {
        let never_opened = if self.is_local(id) { u64::from(id) >= self.next_local_id } else { id > self.last_peer_id };
        if never_opened {
            return Err(ProtocolError::BadStreamId(id));
        }
        Ok(self.streams.get_mut(&id).filter(|s| !s.discard))
    }

    /// Charges a received payload to the session and stream windows. Payloads for
    /// streams that are gone are granted straight back to the session window.
    fn take_credit(&mut self, id: StreamId, len: usize) -> Result<(), ProtocolError> {
        let len = len as u64;
        if len > self.recv_remaining {
            return Err(ProtocolError::FlowControl(0));
        }
        self.recv_remaining -= len;
        match self.streams.get_mut(&id) {
            Some(s) if !s.discard => {
                if len > s.recv_remaining {
                    return Err(ProtocolError::FlowControl(id));
                }
                s.recv_remaining -= len;
            }
            _ => self.release_session(len),
        }
        Ok(())
    }

    // ----- commands -----

    /// Server: accepts the client's hello.
    pub fn accept(&mut self, mut welcome: Welcome, now: Instant) {
        if self.state != State::Deciding {
            return;
        }
        welcome.version = PROTOCOL_VERSION;
        welcome.limits = Some(Limits::from(&self.config));
        welcome.features = features::BATCH | features::EAGER_WINDOW;
        welcome.heartbeat_ms = u32::try_from(self.ping_interval.as_millis()).unwrap_or(u32::MAX);
        welcome.idle_timeout_ms = u32::try_from(self.idle_timeout.as_millis()).unwrap_or(u32::MAX);
        self.push_control(&Frame::Welcome(welcome));
        self.state = State::Established;
        self.next_ping = now + self.ping_interval;
    }

    /// Server: refuses the client's hello and closes the session.
    pub fn refuse(&mut self, reason: RefuseReason, message: &str) {
        if self.state == State::Closed {
            return;
        }
        self.clear_output();
        self.push_control(&Frame::Refuse { reason, message: self.short_message(message) });
        self.state = State::Closed;
        let message = format!("refused ({}): {message}", reason.as_str());
        self.events.push_back(Event::Closed { code: CloseCode::Normal, message, by_peer: false });
    }

    /// Opens a stream with `head`. `end` means no body follows.
    pub fn open(&mut self, head: RequestHead, end: bool) -> Result<StreamId, OpenError> {
        match self.state {
            State::Established => {}
            State::Closed => return Err(OpenError::Closed),
            _ => return Err(OpenError::NotEstablished),
        }
        if self.is_going_away() {
            return Err(OpenError::GoingAway);
        }
        if self.local_open >= self.peer.max_streams {
            return Err(OpenError::TooManyStreams(self.peer.max_streams));
        }
        let size = header_block_len(&head.headers) + head.method.len() + head.target.len() + 16;
        let limit = self.head_limit();
        if size > limit {
            return Err(OpenError::HeadTooLarge { size, limit });
        }
        check_request_head(&head).map_err(OpenError::InvalidHead)?;
        let Ok(id) = StreamId::try_from(self.next_local_id) else {
            // Ids are never reused: a session that used them all must be replaced.
            self.go_away(CloseCode::Normal, "stream ids exhausted: reconnect");
            return Err(OpenError::GoingAway);
        };
        self.next_local_id += 2;
        let mut s = Stream::new(head.kind, true, self.peer.stream_window, self.config.stream_window);
        s.send_done = end;
        self.streams.insert(id, s);
        self.local_open += 1;
        self.push_control(&Frame::Open { id, head, end });
        Ok(id)
    }

    /// `message` cut (on a character boundary) to what a reset, go-away, close or
    /// refuse frame may carry: at most 1024 bytes, and small enough for the peer's
    /// `max_frame`.
    fn short_message(&self, message: &str) -> String {
        let fit = usize::try_from(self.peer.max_frame).unwrap_or(usize::MAX).saturating_sub(16);
        let mut message = message.to_string();
        truncate_utf8(&mut message, fit.min(MAX_MESSAGE));
        message
    }

    fn head_limit(&self) -> usize {
        let h = usize::try_from(self.peer.max_header_bytes).unwrap_or(usize::MAX);
        let f = usize::try_from(self.peer.max_frame).unwrap_or(usize::MAX);
        h.min(f)
    }

    fn live_stream(&mut self, id: StreamId) -> Result<&mut Stream, StreamError> {
        if self.state == State::Closed {
            return Err(StreamError::Closed);
        }
        self.streams.get_mut(&id).ok_or(StreamError::UnknownStream(id))
    }

    /// Sends the response head for a stream the peer opened. For a WebSocket,
    /// status 101 accepts it; any other status refuses it (a body may follow).
    pub fn respond(&mut self, id: StreamId, head: ResponseHead, end: bool) -> Result<(), StreamError> {
        let size = header_block_len(&head.headers) + 16;
        let limit = self.head_limit();
        let s = self.live_stream(id)?;
        if s.local || s.response_sent {
            return Err(StreamError::InvalidState { id, what: "a response head" });
        }
        if size > limit {
            return Err(StreamError::HeadTooLarge { size, limit });
        }
        check_response_head(&head).map_err(|what| StreamError::InvalidHead { id, what })?;
        s.response_sent = true;
        s.ws_accepted = s.kind == StreamKind::WebSocket && head.status == 101;
        let end = end && !s.ws_accepted;
        s.send_done = end;
        self.push_control(&Frame::Response { id, head, end });
        self.reap(id);
        Ok(())
    }

    fn check_body_send(s: &Stream, id: StreamId, ws: bool) -> Result<(), StreamError> {
        if s.send_done {
            return Err(StreamError::AlreadyFinished(id));
        }
        let head_ok = s.local || s.response_sent;
        if !head_ok || ws != s.ws_open() {
            let what = if ws { "a WebSocket message" } else { "body data" };
            return Err(StreamError::InvalidState { id, what });
        }
        Ok(())
    }

    /// Queues body bytes; returns how many were taken (bounded by the stream's
    /// window, and by the session's queue: at most the peer's session window of
    /// payload waits unsent across all streams). When fewer than offered were taken,
    /// [`Event::Writable`] follows once the peer grants more or the queue drains.
    pub fn send_data(&mut self, id: StreamId, data: Bytes) -> Result<usize, StreamError> {
        self.queue_payload(id, false, data.len(), |n| (n > 0).then(|| Chunk::Data(data.slice(..n))))
    }

    /// Queues a WebSocket message, or its next part; returns how many bytes were
    /// taken. `fin` marks the message's last part and applies only if every byte
    /// was taken; otherwise offer the rest again after [`Event::Writable`].
    pub fn send_ws(&mut self, id: StreamId, binary: bool, data: Bytes, fin: bool) -> Result<usize, StreamError> {
        let len = data.len();
        self.queue_payload(id, true, len, |n| {
            (n > 0 || (len == 0 && fin)).then(|| Chunk::Ws { binary, fin: fin && n == len, data: data.slice(..n) })
        })
    }

    /// Takes as many of `offered` payload bytes on stream `id` as its credit and the
    /// session's queue room allow, and queues `chunk(taken)` if it makes one. A stream
    /// given fewer is marked blocked (`Writable` follows); a refusal for lack of room
    /// is noted so that the blocked streams are woken when the queue drains.
    fn queue_payload(
        &mut self,
        id: StreamId,
        ws: bool,
        offered: usize,
        chunk: impl FnOnce(usize) -> Option<Chunk>,
    ) -> Result<usize, StreamError> {
        let room = self.queue_room();
        let share = match self.streams.get(&id) {
            Some(s) => self.fair_share(room, s.queued),
            None => room,
        };
        let s = self.live_stream(id)?;
        Self::check_body_send(s, id, ws)?;
        let taken = s.take_send_credit(clamp(offered, share));
        if taken < offered {
            s.blocked = true;
        }
        s.queued += taken as u64;
        let queued = chunk(taken).map(|c| s.queue.push_back(c)).is_some();
        if taken < offered && taken as u64 == room {
            self.queue_full = true;
        }
        self.queued += taken as u64;
        if queued {
            self.schedule(id);
        }
        Ok(taken)
    }

    /// `spent` payload bytes left the queue (sent, or dropped with their stream).
    /// Once a full queue has drained to half, the streams it refused may offer again.
    fn dequeued(&mut self, spent: u64) {
        self.queued = self.queued.saturating_sub(spent);
        if self.queue_full && self.queued <= self.queue_limit() / 2 {
            self.queue_full = false;
            self.wake_blocked();
        }
    }

    /// Wakes every blocked stream that may send again, in id order from where the
    /// last wake-up started: the streams woken first offer first, and when the queue
    /// has less room than they want the ones woken later are refused again, so the
    /// first place goes round.
    fn wake_blocked(&mut self) {
        let mut blocked: Vec<StreamId> = self.streams.iter().filter(|(_, s)| s.blocked).map(|(id, _)| *id).collect();
        blocked.sort_unstable();
        let start = blocked.partition_point(|&id| id <= self.wake_after);
        blocked.rotate_left(start);
        if let Some(&first) = blocked.first() {
            self.wake_after = first;
        }
        for id in blocked {
            self.wake_if_writable(id);
        }
    }

    /// Ends this side of an HTTP stream (after any data queued).
    pub fn finish(&mut self, id: StreamId) -> Result<(), StreamError> {
        self.end_with(id, Chunk::End, false)
    }

    /// Ends this side of an HTTP stream with trailers.
    pub fn send_trailers(&mut self, id: StreamId, headers: Vec<Header>) -> Result<(), StreamError> {
        let size = header_block_len(&headers) + 16;
        let limit = self.head_limit();
        if size > limit {
            return Err(StreamError::HeadTooLarge { size, limit });
        }
        check_headers(&headers).map_err(|what| StreamError::InvalidHead { id, what })?;
        self.end_with(id, Chunk::Trailers(headers), false)
    }

    /// Closes this side of a WebSocket with an RFC 6455 code and reason.
    pub fn close_ws(&mut self, id: StreamId, code: u16, reason: &str) -> Result<(), StreamError> {
        let mut reason = reason.to_string();
        truncate_utf8(&mut reason, 123);
        self.end_with(id, Chunk::WsClose { code, reason }, true)
    }

    fn end_with(&mut self, id: StreamId, chunk: Chunk, ws: bool) -> Result<(), StreamError> {
        let s = self.live_stream(id)?;
        Self::check_body_send(s, id, ws)?;
        s.send_done = true;
        s.queue.push_back(chunk);
        self.schedule(id);
        Ok(())
    }

    /// Abandons a stream both ways; the peer gets a RESET. If this side already
    /// finished sending and frames are still queued, they go out first and the RESET
    /// follows them (the peer gets the whole response, then learns that the rest of its
    /// input is not wanted); input for the stream is dropped meanwhile. A stream whose
    /// input had ended too is not reset at all: it ends as usual once its frames leave.
    pub fn reset(&mut self, id: StreamId, code: ResetCode, message: &str) {
        if self.state == State::Closed {
            return;
        }
        let Some(s) = self.streams.get_mut(&id) else { return };
        if s.send_done && !s.queue.is_empty() {
            if s.recv_done {
                // Finished both ways: nothing of the peer's is unwanted, and the stream
                // ends as usual once its last frames leave (a RESET after them was a
                // wasted frame per exchange from a driver that resets dropped handles).
                return;
            }
            if !s.discard {
                s.discard = true;
                let message = self.short_message(message);
                let Some(s) = self.streams.get_mut(&id) else { return };
                s.queue.push_back(Chunk::Reset { code, message });
            }
            return;
        }
        self.remove_stream(id);
        let message = self.short_message(message);
        self.push_control(&Frame::Reset { id, code, message });
    }

    /// The application consumed `n` received bytes of `id`: grant them back.
    /// Safe to call after the stream ended (only the session window is updated).
    pub fn release(&mut self, id: StreamId, n: usize) {
        if self.state == State::Closed || n == 0 {
            return;
        }
        let n = n as u64;
        let window = u64::from(self.config.stream_window);
        let pressed = self.window_pressed();
        if let Some(s) = self.streams.get_mut(&id) {
            if !s.recv_done {
                s.recv_unacked = s.recv_unacked.saturating_add(n).min(window - s.recv_remaining.min(window));
                if should_grant(s.recv_unacked, s.recv_remaining, window) || (pressed && s.recv_unacked > 0) {
                    let inc = s.recv_unacked;
                    s.recv_unacked = 0;
                    s.recv_remaining += inc;
                    let increment = u32::try_from(inc).unwrap_or(u32::MAX);
                    self.push_control(&Frame::Window { id, increment });
                }
            }
        }
        if self.state == State::Closed {
            // That grant found the control queue over its bound: nothing follows CLOSE.
            return;
        }
        self.release_session(n);
    }

    fn release_session(&mut self, n: u64) {
        let window = u64::from(self.config.session_window);
        self.recv_unacked = self.recv_unacked.saturating_add(n).min(window - self.recv_remaining);
        if should_grant(self.recv_unacked, self.recv_remaining, window)
            || (self.window_pressed() && self.recv_unacked > 0)
        {
            let inc = self.recv_unacked;
            self.recv_unacked = 0;
            self.recv_remaining += inc;
            self.push_control(&Frame::Window { id: 0, increment: u32::try_from(inc).unwrap_or(u32::MAX) });
        }
    }

    /// The peer has less than half our session window left to send (stalled readers
    /// hold the rest): consumed bytes are granted back at once, as our
    /// `features::EAGER_WINDOW` promises, so that a sender keeping its streams to fair
    /// shares is never left waiting for a batched grant.
    fn window_pressed(&self) -> bool {
        self.recv_remaining < u64::from(self.config.session_window) / 2
    }

    /// Announces that no new streams will be accepted; in-flight ones finish.
    pub fn go_away(&mut self, code: CloseCode, message: &str) {
        if self.state != State::Established || self.going_away_local {
            return;
        }
        self.going_away_local = true;
        let message = self.short_message(message);
        self.push_control(&Frame::GoAway { last_id: self.last_peer_id, code, message });
    }

    /// Ends the session now. Queued stream data is dropped; the CLOSE frame is the
    /// last thing `poll_transmit` returns.
    pub fn close(&mut self, code: CloseCode, message: &str) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.clear_output();
        self.push_control(&Frame::Close { code, message: self.short_message(message) });
        self.events.push_back(Event::Closed { code, message: message.to_string(), by_peer: false });
    }

    // ----- outputs -----

    /// The next frame to send, as one WebSocket binary message.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.next_output().map(Output::encode)
    }

    /// The next frame to send: an encoded control frame, or a stream's next frame,
    /// still to encode (so a batch can encode it in place).
    fn next_output(&mut self) -> Option<Output> {
        if let Some(o) = self.held.pop_front() {
            return Some(o);
        }
        if let Some(v) = self.pending_pong.take() {
            return Some(Output::Encoded(Frame::Pong(v).encode()));
        }
        if let Some(b) = self.control.pop_front() {
            self.control_bytes -= b.len();
            return Some(Output::Encoded(b));
        }
        let payload_limit = Config::payload_limit(self.peer.max_frame);
        let stream_window = u64::from(self.peer.stream_window);
        while let Some(id) = self.ring.pop_front() {
            let Some(s) = self.streams.get(&id) else { continue };
            let credit = self.send_allowance(stream_window, s);
            let Some(s) = self.streams.get_mut(&id) else { continue };
            s.in_ring = false;
            let session_credit = usize::try_from(credit).unwrap_or(usize::MAX);
            let Some((frame, spent)) = s.next_frame(id, payload_limit, session_credit) else {
                // Only payload is queued and the session window is shut (or the stream
                // has its share of it in flight): wait for a WINDOW, which puts blocked
                // streams back in the ring.
                s.blocked = true;
                continue;
            };
            s.queued -= spent as u64;
            self.send_credit -= spent as u64;
            if matches!(frame, Frame::Reset { .. }) {
                // A RESET carries no payload; removing the stream dequeues what is left.
                self.remove_stream(id);
                return Some(Output::Frame(frame));
            }
            if !s.queue.is_empty() {
                s.in_ring = true;
                self.ring.push_back(id);
            } else if s.blocked && s.send_credit > 0 {
                // Its queue is empty: a stream refused for its share of the queue may
                // offer again.
                s.blocked = false;
                self.events.push_back(Event::Writable { id });
            }
            self.dequeued(spent as u64);
            self.reap(id);
            return Some(Output::Frame(frame));
        }
        None
    }

    /// Like [`Session::poll_transmit`], but for a peer that accepts `BATCH` frames it
    /// packs every frame that is ready, in the same order, into one message of at most
    /// the peer's `max_frame` (a frame that does not fit goes first in the next one). A
    /// driver whose every send costs (a browser's `WebSocket.send`) drains this instead.
    /// For a peer that did not announce batches it is exactly `poll_transmit`.
    /// Stream data is encoded straight into the batch: its payload is copied once.
    pub fn poll_transmit_batch(&mut self) -> Option<Bytes> {
        match self.next_message()? {
            Message::Whole(b) => Some(b),
            Message::Alone(o) => Some(o.encode()),
        }
    }

    /// [`Session::poll_transmit_batch`] as two parts, `head` then `payload`, to be sent
    /// as one message: a DATA or WS_MESSAGE frame that goes alone (a large one, mostly)
    /// leaves its payload apart, as the application queued it, for a driver that copies
    /// into its own buffer anyway (a WebSocket client masks what it sends) or writes
    /// buffers as they are. Anything else comes whole, with an empty payload.
    pub fn poll_transmit_parts(&mut self) -> Option<(Bytes, Bytes)> {
        match self.next_message()? {
            Message::Whole(b) => Some((b, Bytes::new())),
            Message::Alone(Output::Frame(f)) => Some(f.encode_parts()),
            Message::Alone(Output::Encoded(b)) => Some((b, Bytes::new())),
        }
    }

    fn next_message(&mut self) -> Option<Message> {
        let first = self.next_output()?;
        if !self.peer_accepts_batch() || !self.has_transmit() {
            return Some(Message::Alone(first));
        }
        let limit = usize::try_from(self.peer.max_frame).unwrap_or(usize::MAX);
        // Take out what fits first, so the batch is allocated once at its size: growing
        // it frame by frame copied everything packed so far on each reallocation, and a
        // fixed large reserve cost an allocation outside the allocator's thread cache
        // for every small batch.
        let mut picked = std::mem::take(&mut self.picked);
        let mut size = BATCH_HEADER + BATCH_ENTRY_OVERHEAD + first.len_hint();
        picked.push(first);
        while self.has_transmit() {
            let Some(next) = self.next_output() else { break };
            let more = BATCH_ENTRY_OVERHEAD + next.len_hint();
            if size + more > limit {
                self.held.push_front(next);
                break;
            }
            size += more;
            picked.push(next);
        }
        if picked.len() == 1 {
            // Nothing else fitted: the frame goes out as it is.
            let only = picked.pop().map(Message::Alone);
            self.picked = picked;
            return only;
        }
        let mut b = BytesMut::with_capacity(size);
        b.put_u8(kind::BATCH);
        b.put_u32(0);
        let mut entries = 0;
        let mut rest = picked.drain(..);
        for next in rest.by_ref() {
            let at = b.len();
            next.put_entry(&mut b);
            if b.len() > limit && entries > 0 {
                // Longer than its hint said: it and what follows go next time, in order.
                let entry = b.split_off(at).freeze();
                self.held.push_front(Output::Encoded(entry.slice(BATCH_ENTRY_OVERHEAD..)));
                break;
            }
            entries += 1;
        }
        for (i, later) in rest.enumerate() {
            self.held.insert(i + 1, later);
        }
        self.picked = picked;
        let batch = b.freeze();
        if entries == 1 {
            return Some(Message::Whole(batch.slice(BATCH_HEADER + BATCH_ENTRY_OVERHEAD..)));
        }
        Some(Message::Whole(batch))
    }

    /// True when [`Session::poll_transmit`] may have something to send (a control
    /// frame, or a stream with queued output that credit may let through). A
    /// driver can leave its writer asleep while this is false and
    /// [`Session::poll_timeout`] did not move earlier.
    pub fn has_transmit(&self) -> bool {
        !self.held.is_empty() || self.pending_pong.is_some() || !self.control.is_empty() || !self.ring.is_empty()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Session::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Closed => None,
            State::Established => {
                let dead = self.unanswered_since.map_or(self.last_recv, |since| since.min(self.last_recv));
                Some(self.next_ping.min(dead + self.idle_timeout))
            }
            _ => Some(self.last_recv + self.idle_timeout),
        }
    }

    // ----- internals -----

    fn push_control(&mut self, frame: &Frame) {
        let b = frame.encode();
        self.control_bytes += b.len();
        self.control.push_back(b);
        if self.control_bytes > self.config.max_control_queue as usize {
            // The peer leaves what we send unread. Closing clears the queue first, so
            // the CLOSE itself always fits.
            let message = format!(
                "the peer does not read: over {} bytes of control frames waited for it",
                self.config.max_control_queue
            );
            self.close(CloseCode::SlowReader, &message);
        }
    }

    fn clear_output(&mut self) {
        self.held.clear();
        self.control.clear();
        self.control_bytes = 0;
        self.pending_pong = None;
        self.ring.clear();
        self.streams.clear();
        self.queued = 0;
        self.queue_full = false;
        self.local_open = 0;
        self.peer_open = 0;
    }

    fn schedule(&mut self, id: StreamId) {
        if let Some(s) = self.streams.get_mut(&id) {
            if !s.in_ring {
                s.in_ring = true;
                self.ring.push_back(id);
            }
        }
    }

    fn wake_if_writable(&mut self, id: StreamId) {
        let session_open = self.send_credit > 0;
        let room = self.queue_room() > 0;
        let Some(s) = self.streams.get_mut(&id) else { return };
        if s.blocked && s.send_credit > 0 && session_open {
            if room {
                s.blocked = false;
                self.events.push_back(Event::Writable { id });
            } else {
                // Only the queue holds it back now: wake it when that drains.
                self.queue_full = true;
            }
        }
        if session_open && !s.queue.is_empty() {
            self.schedule(id);
        }
    }

    /// Drops a stream once both sides are done and nothing is left to send.
    fn reap(&mut self, id: StreamId) {
        if self.streams.get(&id).is_some_and(|s| s.send_done && s.recv_done && s.queue.is_empty()) {
            self.remove_stream(id);
        }
    }

    fn remove_stream(&mut self, id: StreamId) {
        if let Some(s) = self.streams.remove(&id) {
            self.dequeued(s.queued);
            if s.local {
                self.local_open -= 1;
            } else {
                self.peer_open -= 1;
            }
            // Bytes it delivered are still the application's to `release`.
        }
    }
}

/// `len`, or less if the queue has less `room`.
fn clamp(len: usize, room: u64) -> usize {
    usize::try_from(room).map_or(len, |room| len.min(room))
}

/// Whether consumed bytes (`unacked`) are worth a WINDOW frame now. Grants are batched
/// to a quarter of the window, but never held back once they are at least what the
/// peer has left (`remaining`): bytes the application holds unreleased shrink the part
/// of the window that cycles, and a fixed threshold larger than that part would never
/// be reached, stalling every other stream of the session.
fn should_grant(unacked: u64, remaining: u64, window: u64) -> bool {
    unacked > 0 && (unacked >= window / 4 || unacked >= remaining)
}

/// Longest message a RESET, GOAWAY, CLOSE or REFUSE carries, in bytes.
const MAX_MESSAGE: usize = 1024;

/// Cuts `s` to at most `max` bytes on a character boundary.
fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// The next message to send: already encoded, or one frame alone (which
/// [`Session::poll_transmit_parts`] may encode in two parts).
enum Message {
    Whole(Bytes),
    Alone(Output),
}

/// A frame on its way out (see `Session::next_output`).
#[derive(Debug)]
enum Output {
    /// Already encoded: control frames, and a frame split off a batch.
    Encoded(Bytes),
    /// A stream's frame, encoded where it goes.
    Frame(Frame),
}

impl Output {
    fn encode(self) -> Bytes {
        match self {
            Output::Encoded(b) => b,
            Output::Frame(f) => f.encode(),
        }
    }

    fn len_hint(&self) -> usize {
        match self {
            Output::Encoded(b) => b.len(),
            Output::Frame(f) => f.encoded_len_hint(),
        }
    }

    fn put_entry(&self, b: &mut BytesMut) {
        match self {
            Output::Encoded(frame) => put_batch_entry(b, frame),
            Output::Frame(f) => encode_batch_entry(b, f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn established_server() -> Session {
        let mut server = Session::server(Config::DEFAULT, Instant::ZERO);
        let hello = Frame::Hello(Hello { version: PROTOCOL_VERSION, ..Hello::default() }).encode();
        server.handle_message(Instant::ZERO, hello).unwrap();
        server.accept(Welcome::default(), Instant::ZERO);
        while server.poll_transmit().is_some() {}
        server
    }

    fn get() -> RequestHead {
        RequestHead { kind: StreamKind::Http, method: "GET".into(), target: "/".into(), headers: vec![] }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn exhausted_stream_ids_make_the_session_go_away_instead_of_wrapping() {
        let mut server = established_server();
        server.next_local_id = u64::from(u32::MAX) - 1;
        assert_eq!(server.open(get(), true), Ok(u32::MAX - 1));
        assert_eq!(server.open(get(), true), Err(OpenError::GoingAway));
        let frames: Vec<_> = std::iter::from_fn(|| server.poll_transmit())
            .map(|b| Frame::decode(b, &DecodeLimits::default()).unwrap())
            .collect();
        assert!(matches!(frames.last(), Some(Frame::GoAway { code: CloseCode::Normal, .. })), "{frames:?}");
        assert!(server.is_going_away());
        server.check_invariants();
    }
}
