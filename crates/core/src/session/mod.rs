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

//!
//! The groups live in submodules: `recv` (inputs), `send` (commands), `flow` (credit
//! and windows) and `transmit` (outputs); this module holds the state and the getters.

mod flow;
mod open_fields;
mod recv;
mod send;
mod transmit;

use std::collections::VecDeque;
use std::time::Duration;

use crate::config::{Config, Limits};
use crate::event::Event;
use crate::frame::{DecodeLimits, FieldCoding, Frame, RecentValues, StreamId, StreamKind};
use crate::handshake::{features, Hello, PROTOCOL_VERSION};
use crate::idmap::IdMap;
use crate::stream::{Chunk, Stream};

use crate::time::Instant;
use flow::clamp;
pub use transmit::OutMessage;
use transmit::Output;

/// Emptied stream queues a session keeps for new streams.
const MAX_SPARE_QUEUES: usize = 64;

/// Largest queue (in chunks) kept: one that grew for a long stream is freed.
const MAX_SPARE_CAPACITY: usize = 8;

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
    /// The peer's recent header values, which the decoder takes again when they repeat.
    recent_values: RecentValues,
    /// HTTP OPENs are reported as [`Event::OpenedRaw`] where they can be
    /// ([`Session::set_raw_request_heads`]).
    raw_request_heads: bool,
    /// RESPONSE heads of HTTP streams reported as [`Event::ResponseBlock`] where they can be.
    response_blocks: bool,
    /// The buffer OPENs written field by field go into (`open_fields`), a few KiB cut
    /// into frames; its memory is taken back once they were sent, and let go when no
    /// stream is left.
    open_buf: bytes::BytesMut,
    streams: IdMap<Stream>,
    /// Next id this end opens; past `u32::MAX` the ids are exhausted.
    next_local_id: u64,
    last_peer_id: StreamId,
    local_open: u32,
    peer_open: u32,
    /// Streams the peer opened and [`PeerStreams::Refuse`](crate::PeerStreams) refused.
    refused_peer_streams: u32,
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
    /// Emptied queues of removed streams, kept (up to [`MAX_SPARE_QUEUES`]) for new
    /// streams: a stream's first queued chunk then costs no allocation and its removal
    /// no free (~0.15k instructions per exchange on the path a response waits on;
    /// docs/BENCHMARKS.md, fifteenth round).
    spare_queues: Vec<VecDeque<Chunk>>,
    /// Streams that finished when their last frame was taken to send (or, for a whole
    /// response past the stream's queue, when it was queued), or when a frame received
    /// finished them: removed after the write ([`Session::remove_finished`]; for a
    /// received end, after the driver handled its event), or first thing at the
    /// session's next call (a batch's next frame, for a received one), so that the
    /// removal is not on the path the peer (or the visitor) waits on and nothing sees
    /// them meanwhile but [`Session::stream_count`] and the open-stream limits (which
    /// count them: none is exceeded). At most one entry per stream, and at most one
    /// received end: a batch of any number of ends holds one at a time.
    finished: Vec<StreamId>,
    /// Frames that go before any stream data: heads, windows, resets, pings.
    control: VecDeque<Output>,
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
        hello.features |= features::SESSION;
        s.push_control(Frame::Hello(Box::new(hello)));
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
            recent_values: RecentValues::default(),
            raw_request_heads: false,
            response_blocks: false,
            open_buf: bytes::BytesMut::new(),
            streams: IdMap::default(),
            next_local_id: if role == Role::Client { 1 } else { 2 },
            last_peer_id: 0,
            local_open: 0,
            peer_open: 0,
            refused_peer_streams: 0,
            send_credit: u64::from(peer.session_window),
            queued: 0,
            queue_full: false,
            wake_after: 0,
            recv_remaining: u64::from(config.session_window),
            recv_unacked: 0,
            held: VecDeque::new(),
            picked: Vec::new(),
            spare_queues: Vec::new(),
            finished: Vec::new(),
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

    /// Live streams, with those finished and waiting for [`Self::remove_finished`]
    /// (see `finished`: at most the streams the last message or write finished).
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// The last measured heartbeat round-trip time.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// Reports the peer's HTTP OPENs as [`Event::OpenedRaw`], their header blocks kept
    /// as they came (checked, not decoded), for a receiver that writes the fields on
    /// as bytes and decodes the typed head later, if at all; an OPEN the typed decoder
    /// would not carry whole (a field it drops, an error) and a WebSocket's stay
    /// [`Event::Opened`]. Off by default; a build without the `raw-heads` feature
    /// reports every OPEN typed.
    pub fn set_raw_request_heads(&mut self, raw: bool) {
        self.raw_request_heads = raw;
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

    /// How header fields are written towards the peer: indexed if it announced
    /// [`features::INDEXED_HEADERS`] and this build has the table, else as text.
    pub fn field_coding(&self) -> FieldCoding {
        if cfg!(feature = "indexed-headers") && self.peer_features & features::INDEXED_HEADERS != 0 {
            FieldCoding::Indexed
        } else {
            FieldCoding::Text
        }
    }

    /// Reports the response heads of HTTP streams as [`Event::ResponseBlock`] (their
    /// fields as the frame carries them) rather than [`Event::Response`] whenever the
    /// fields decode to themselves ([`crate::ResponseBlockFrame::decode`]); a head that
    /// does not, and every WebSocket's, still comes as `Response`. For a driver that
    /// writes the fields out as bytes (the server's HTTP/1 visitors): no typed list is
    /// built, checked and freed per response. Off by default; a build without the
    /// `raw-heads` feature reports every head typed.
    pub fn set_response_blocks(&mut self, on: bool) {
        self.response_blocks = on;
    }

    /// Our configuration.
    pub fn config(&self) -> &Config {
        &self.config
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
        assert_eq!(self.control_bytes, self.control.iter().map(Output::len).sum::<usize>(), "control bytes");
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

    /// Removes the streams that finished when their last frame was taken to send, or
    /// when the last message handled finished them (see `finished`). A driver calls it
    /// after the write of those frames, or after it handled the message's events;
    /// every call that looks at streams does it first.
    pub fn remove_finished(&mut self) {
        // Still there and finished: every call that could remove or change them settles
        // first, and a finished stream takes no more frames.
        while let Some(id) = self.finished.pop() {
            self.remove_stream(id);
        }
    }

    /// Streams wait in `finished` for [`Self::remove_finished`].
    pub fn has_finished(&self) -> bool {
        !self.finished.is_empty()
    }

    /// [`Self::remove_finished`] if there is anything to remove (a length check).
    #[inline(always)]
    pub(super) fn settle(&mut self) {
        if !self.finished.is_empty() {
            self.remove_finished();
        }
    }

    /// Drops a stream once both sides are done and nothing is left to send.
    fn reap(&mut self, id: StreamId) {
        if self.streams.get(&id).is_some_and(Stream::is_finished) {
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
            // An idle session does not keep the OPENs' buffer (`open_fields`).
            if self.streams.is_empty() && self.open_buf.capacity() != 0 {
                self.open_buf = bytes::BytesMut::new();
            }
            // Bytes it delivered are still the application's to `release`.
            let cap = s.queue.capacity();
            if cap > 0 && cap <= MAX_SPARE_CAPACITY && self.spare_queues.len() < MAX_SPARE_QUEUES {
                // Moved out, not taken: an empty queue left behind would be dropped too.
                let Stream { mut queue, .. } = s;
                if !queue.is_empty() {
                    queue.clear();
                }
                self.spare_queues.push(queue);
            }
        }
    }

    /// A new stream, with a spare queue if one is kept.
    fn new_stream(&mut self, kind: StreamKind, local: bool) -> Stream {
        let queue = self.spare_queues.pop().unwrap_or_default();
        Stream::new(kind, local, self.peer.stream_window, self.config.stream_window, queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::OpenError;
    use crate::frame::{CloseCode, RequestHead, StreamKind};
    use crate::handshake::Welcome;

    fn established_server() -> Session {
        let mut server = Session::server(Config::DEFAULT, Instant::ZERO);
        let hello = Frame::Hello(Box::new(Hello { version: PROTOCOL_VERSION, ..Hello::default() })).encode();
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
    fn removed_streams_leave_at_most_the_bounded_spare_queues() {
        let mut server = established_server();
        let ids: Vec<StreamId> = (0..MAX_SPARE_QUEUES as StreamId * 3).map(|i| i * 2 + 1).collect();
        for &id in &ids {
            let mut stream = server.new_stream(StreamKind::Http, true);
            // Every third queue grew past what is kept (a long stream's).
            let room = if id % 3 == 0 { MAX_SPARE_CAPACITY * 4 } else { 4 };
            stream.queue = VecDeque::with_capacity(room);
            server.streams.insert(id, stream);
            server.local_open += 1;
        }
        for &id in &ids {
            server.remove_stream(id);
        }
        assert_eq!(server.spare_queues.len(), MAX_SPARE_QUEUES);
        assert!(server.spare_queues.iter().all(|q| q.is_empty() && q.capacity() <= MAX_SPARE_CAPACITY));
        assert_eq!(server.local_open, 0);
    }

    /// The buffer OPENs are written into (`open_fields`, a few KiB) is kept while streams
    /// are open and let go with the last of them: an idle session holds none of it.
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn an_idle_session_lets_the_opens_buffer_go() {
        let mut server = established_server();
        let ids: Vec<StreamId> =
            (0..3).map(|_| server.open_fields(StreamKind::Http, "GET", b"/", true, |_| {}).expect("open")).collect();
        while server.poll_transmit().is_some() {}
        assert!(server.open_buf.capacity() > 0, "the OPENs were written into the session's buffer");
        for (i, &id) in ids.iter().enumerate() {
            server.remove_stream(id);
            let left = ids.len() - i - 1;
            assert_eq!(server.open_buf.capacity() == 0, left == 0, "{left} streams left");
        }
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
