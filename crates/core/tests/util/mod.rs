//! The test harness: a client and a server [`Session`] wired through a virtual link
//! with a virtual clock, after quinn-proto's `tests/util.rs` and str0m's `tests/common.rs`.
//!
//! Each [`Side`] plays a small application on top of its session: it records every event
//! in a per-stream [`StreamLog`], releases received bytes at once (unless the test stalls
//! the stream), and pumps bodies and WebSocket messages the test asked it to send,
//! continuing on [`Event::Writable`] exactly as a real driver must. The [`Pair`] moves
//! frames between the sides with a latency (and optionally a bandwidth) and advances its
//! clock from event to event, so no test sleeps and every run is identical.
//!
//! After every input and command the harness checks both sessions' invariants and its
//! own: received bytes not yet released never exceed the receiver's windows, and what a
//! receiver got on a stream is always a prefix of what its peer's application sent.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::Duration;

use bytes::{Buf, Bytes};
use localtunnels_core::{
    CloseCode, Config, Event, Header, HeaderName, HeaderValue, Hello, Instant, ProtocolError, RefuseReason,
    RequestHead, ResetCode, ResponseHead, Session, StreamError, StreamId, StreamKind, Welcome,
};

/// One-way latency of the default link.
pub const LATENCY: Duration = Duration::from_millis(10);

/// Everything one side's application saw and did on one stream.
#[derive(Debug, Default, Clone)]
pub struct StreamLog {
    /// The request head, for a stream the peer opened.
    pub head: Option<RequestHead>,
    /// The response head, for a stream this side opened.
    pub response: Option<ResponseHead>,
    /// How many response heads came as blocks (`Event::ResponseBlock`).
    pub blocks: usize,
    /// Body bytes received, in order.
    pub body: Vec<u8>,
    /// The peer finished its side (end flag, trailers or WebSocket close).
    pub end: bool,
    /// When `end`, `reset` or a WebSocket close arrived.
    pub finished_at: Option<Instant>,
    /// Trailers received.
    pub trailers: Option<Vec<Header>>,
    /// Complete WebSocket messages received: (binary, payload).
    pub messages: Vec<(bool, Vec<u8>)>,
    partial: Option<(bool, Vec<u8>)>,
    /// Every payload byte received, body or message, in order.
    pub payload: Vec<u8>,
    /// Data or message events received (a frame each).
    pub data_events: usize,
    /// The peer's WebSocket close.
    pub ws_close: Option<(u16, String)>,
    /// The stream was reset by the peer (or refused by its go-away).
    pub reset: Option<(ResetCode, String)>,
    /// Received bytes not yet released (only while stalled).
    pub unreleased: usize,
    /// The most `unreleased` ever reached.
    pub max_unreleased: usize,
    /// Payload bytes this side's application handed to the session (accepted ones only).
    pub sent: Vec<u8>,
}

impl StreamLog {
    /// The stream is over for this side's application: ended, closed or reset.
    pub fn done(&self) -> bool {
        self.end || self.reset.is_some()
    }
}

#[derive(Debug)]
enum Outgoing {
    Body { data: Bytes, finish: bool },
    Ws { queue: VecDeque<(bool, Bytes)>, close: Option<(u16, String)> },
}

/// One end of the pair: a session and the little application driving it.
#[derive(Debug)]
pub struct Side {
    /// Client or server, for messages.
    pub name: &'static str,
    /// The session under test. Tests may call any command on it directly.
    pub session: Session,
    /// Every event, in order.
    pub events: Vec<Event>,
    /// What happened on each stream, from this side's point of view.
    pub logs: BTreeMap<StreamId, StreamLog>,
    /// Streams whose received bytes are not released (a reader that stopped reading).
    pub stalled: HashSet<StreamId>,
    outbox: BTreeMap<StreamId, Outgoing>,
    /// Server: accept every hello with a default welcome.
    pub auto_accept: bool,
    /// Errors `handle_message` returned.
    pub errors: Vec<ProtocolError>,
}

impl Side {
    fn new(name: &'static str, session: Session) -> Self {
        Side {
            name,
            session,
            events: Vec::new(),
            logs: BTreeMap::new(),
            stalled: HashSet::new(),
            outbox: BTreeMap::new(),
            auto_accept: false,
            errors: Vec::new(),
        }
    }

    /// The log of stream `id` (empty if nothing happened on it yet).
    pub fn log(&self, id: StreamId) -> &StreamLog {
        static EMPTY: StreamLog = StreamLog {
            head: None,
            response: None,
            blocks: 0,
            body: Vec::new(),
            end: false,
            finished_at: None,
            trailers: None,
            messages: Vec::new(),
            partial: None,
            payload: Vec::new(),
            data_events: 0,
            ws_close: None,
            reset: None,
            unreleased: 0,
            max_unreleased: 0,
            sent: Vec::new(),
        };
        self.logs.get(&id).unwrap_or(&EMPTY)
    }

    fn log_mut(&mut self, id: StreamId) -> &mut StreamLog {
        self.logs.entry(id).or_default()
    }

    /// The hello the server received.
    pub fn hello(&self) -> Option<&Hello> {
        self.events.iter().find_map(|e| if let Event::Hello(h) = e { Some(&**h) } else { None })
    }

    /// The welcome the client received.
    pub fn welcome(&self) -> Option<&Welcome> {
        self.events.iter().find_map(|e| if let Event::Welcome(w) = e { Some(&**w) } else { None })
    }

    /// The refusal the client received.
    pub fn refused(&self) -> Option<(RefuseReason, &str)> {
        self.events.iter().find_map(|e| match e {
            Event::Refused { reason, message } => Some((*reason, message.as_str())),
            _ => None,
        })
    }

    /// The session's end: code, message, by_peer.
    pub fn closed(&self) -> Option<(CloseCode, &str, bool)> {
        self.events.iter().find_map(|e| match e {
            Event::Closed { code, message, by_peer } => Some((*code, message.as_str(), *by_peer)),
            _ => None,
        })
    }

    /// The peer's go-away.
    pub fn go_away(&self) -> Option<(CloseCode, &str)> {
        self.events.iter().find_map(|e| match e {
            Event::GoAway { code, message } => Some((*code, message.as_str())),
            _ => None,
        })
    }

    /// Streams the peer opened, in order.
    pub fn opened(&self) -> Vec<StreamId> {
        self.events.iter().filter_map(|e| if let Event::Opened { id, .. } = e { Some(*id) } else { None }).collect()
    }

    // ----- the application's commands -----

    /// Opens a stream; panics if the session refuses.
    pub fn open(&mut self, head: RequestHead, end: bool) -> StreamId {
        let id = self.session.open(head, end).unwrap_or_else(|e| panic!("{}: open failed: {e}", self.name));
        self.log_mut(id);
        id
    }

    /// Opens `GET path` with no body.
    pub fn get(&mut self, path: &str) -> StreamId {
        self.open(request("GET", path, vec![]), true)
    }

    /// Opens a WebSocket to `path`.
    pub fn open_ws(&mut self, path: &str) -> StreamId {
        let mut head = request("GET", path, vec![header("sec-websocket-protocol", "chat")]);
        head.kind = StreamKind::WebSocket;
        self.open(head, false)
    }

    /// Sends a response head; panics if the session refuses.
    pub fn respond(&mut self, id: StreamId, status: u16, headers: Vec<Header>, end: bool) {
        self.session
            .respond(id, ResponseHead { status, headers }, end)
            .unwrap_or_else(|e| panic!("{}: respond failed: {e}", self.name));
    }

    /// Sends `data` on an HTTP stream, then ends it if `finish`, waiting for credit as
    /// needed.
    pub fn send_body(&mut self, id: StreamId, data: impl Into<Bytes>, finish: bool) {
        assert!(!self.outbox.contains_key(&id), "{}: stream {id} is still sending", self.name);
        self.outbox.insert(id, Outgoing::Body { data: data.into(), finish });
        self.pump(id);
    }

    /// Responds `status` with `body` and ends the stream.
    pub fn respond_with(&mut self, id: StreamId, status: u16, body: impl Into<Bytes>) {
        let body = body.into();
        let len = body.len().to_string();
        self.respond(id, status, vec![header("content-length", &len)], false);
        self.send_body(id, body, true);
    }

    /// Sends one WebSocket message (cut into frames as the windows require).
    pub fn send_ws(&mut self, id: StreamId, binary: bool, data: impl Into<Bytes>) {
        let out = self.outbox.entry(id).or_insert_with(|| Outgoing::Ws { queue: VecDeque::new(), close: None });
        let Outgoing::Ws { queue, .. } = out else { panic!("stream {id} is sending a body") };
        queue.push_back((binary, data.into()));
        self.pump(id);
    }

    /// Closes this side of a WebSocket after the messages already queued.
    pub fn close_ws(&mut self, id: StreamId, code: u16, reason: &str) {
        let out = self.outbox.entry(id).or_insert_with(|| Outgoing::Ws { queue: VecDeque::new(), close: None });
        let Outgoing::Ws { close, .. } = out else { panic!("stream {id} is sending a body") };
        *close = Some((code, reason.to_string()));
        self.pump(id);
    }

    /// Stops reading `id`: received bytes stay unreleased.
    pub fn stall(&mut self, id: StreamId) {
        self.stalled.insert(id);
    }

    /// Reads again: releases everything held back on `id`.
    pub fn unstall(&mut self, id: StreamId) {
        self.stalled.remove(&id);
        let n = std::mem::take(&mut self.log_mut(id).unreleased);
        self.session.release(id, n);
    }

    /// Bytes still waiting in the application's outbox (not yet taken by the session).
    pub fn pending_bytes(&self) -> usize {
        self.outbox
            .values()
            .map(|o| match o {
                Outgoing::Body { data, .. } => data.len(),
                Outgoing::Ws { queue, .. } => queue.iter().map(|(_, d)| d.len()).sum(),
            })
            .sum()
    }

    /// Moves as much of the outbox of `id` into the session as its window takes.
    fn pump(&mut self, id: StreamId) {
        let Some(out) = self.outbox.get_mut(&id) else { return };
        let log = self.logs.entry(id).or_default();
        match pump_one(&mut self.session, id, out, log) {
            Ok(false) => {}
            Ok(true) => {
                self.outbox.remove(&id);
            }
            Err(e) => {
                assert!(
                    matches!(e, StreamError::UnknownStream(_) | StreamError::Closed),
                    "{}: stream {id}: unexpected send error {e}",
                    self.name
                );
                self.outbox.remove(&id);
            }
        }
    }

    // ----- inputs -----

    fn input(&mut self, now: Instant, msg: Bytes) {
        if let Err(e) = self.session.handle_message(now, msg) {
            self.errors.push(e);
        }
        self.drain(now);
    }

    fn timeout(&mut self, now: Instant) {
        self.session.handle_timeout(now);
        self.drain(now);
    }

    /// Handles every pending event, as a driver must after each input or command.
    pub fn drain(&mut self, now: Instant) {
        while let Some(ev) = self.session.poll_event() {
            self.on_event(now, &ev);
            self.events.push(ev);
        }
        self.check();
    }

    fn on_event(&mut self, now: Instant, ev: &Event) {
        match ev {
            Event::Hello(h) if self.auto_accept => {
                let name = if h.name.is_empty() { "demo".to_string() } else { h.name.clone() };
                let welcome = Welcome {
                    url: format!("http://{name}.localhost:3000"),
                    name,
                    reconnect_token: "reconnect-secret".into(),
                    server_version: "test".into(),
                    ..Welcome::default()
                };
                self.session.accept(welcome, now);
            }
            Event::Opened { id, head, end } => {
                let log = self.log_mut(*id);
                log.head = Some(head.clone());
                if *end {
                    log.end = true;
                    log.finished_at = Some(now);
                }
            }
            Event::Response { id, head, end } => {
                let log = self.log_mut(*id);
                log.response = Some(head.clone());
                if *end {
                    log.end = true;
                    log.finished_at = Some(now);
                }
            }
            Event::ResponseBlock { id, status, block, end } => {
                let log = self.log_mut(*id);
                log.response = Some(ResponseHead { status: *status, headers: block.headers() });
                log.blocks += 1;
                if *end {
                    log.end = true;
                    log.finished_at = Some(now);
                }
            }
            Event::Data { id, data, end } => {
                let log = self.log_mut(*id);
                log.body.extend_from_slice(data);
                log.payload.extend_from_slice(data);
                log.data_events += 1;
                if *end {
                    log.end = true;
                    log.finished_at = Some(now);
                }
                self.consume(*id, data.len());
            }
            Event::Trailers { id, headers } => {
                let log = self.log_mut(*id);
                log.trailers = Some(headers.clone());
                log.end = true;
                log.finished_at = Some(now);
            }
            Event::WsMessage { id, binary, fin, data } => {
                let log = self.log_mut(*id);
                log.data_events += 1;
                log.payload.extend_from_slice(data);
                // The first fragment's flag decides the message's kind.
                let (_, buf) = log.partial.get_or_insert_with(|| (*binary, Vec::new()));
                buf.extend_from_slice(data);
                if *fin {
                    let whole = log.partial.take().expect("partial message");
                    log.messages.push(whole);
                }
                self.consume(*id, data.len());
            }
            Event::WsClose { id, code, reason } => {
                let log = self.log_mut(*id);
                log.ws_close = Some((*code, reason.clone()));
                log.end = true;
                log.finished_at = Some(now);
            }
            Event::Reset { id, code, message } => {
                let log = self.log_mut(*id);
                log.reset = Some((*code, message.clone()));
                log.finished_at = Some(now);
                self.outbox.remove(id);
            }
            Event::Writable { id } => self.pump(*id),
            _ => {}
        }
    }

    fn consume(&mut self, id: StreamId, n: usize) {
        if self.stalled.contains(&id) {
            let log = self.log_mut(id);
            log.unreleased += n;
            log.max_unreleased = log.max_unreleased.max(log.unreleased);
        } else {
            self.session.release(id, n);
        }
    }

    /// The session's invariants and the harness's own.
    pub fn check(&self) {
        self.session.check_invariants();
        let config = self.session.config();
        let mut total = 0;
        for (id, log) in &self.logs {
            assert!(
                log.unreleased <= config.stream_window as usize,
                "{}: stream {id} holds {} unreleased bytes, window {}",
                self.name,
                log.unreleased,
                config.stream_window
            );
            total += log.unreleased;
        }
        assert!(total <= config.session_window as usize, "{}: {total} unreleased bytes", self.name);
    }
}

/// Hands `out` to the session until its window is full; true when all of it went.
fn pump_one(session: &mut Session, id: StreamId, out: &mut Outgoing, log: &mut StreamLog) -> Result<bool, StreamError> {
    match out {
        Outgoing::Body { data, finish } => {
            if !data.is_empty() {
                let n = session.send_data(id, data.clone())?;
                log.sent.extend_from_slice(&data[..n]);
                data.advance(n);
            }
            if data.is_empty() && *finish {
                session.finish(id)?;
            }
            Ok(data.is_empty())
        }
        Outgoing::Ws { queue, close } => {
            while let Some((binary, data)) = queue.front_mut() {
                let n = session.send_ws(id, *binary, data.clone(), true)?;
                log.sent.extend_from_slice(&data[..n]);
                if n < data.len() {
                    data.advance(n);
                    return Ok(false);
                }
                queue.pop_front();
            }
            if let Some((code, reason)) = close.take() {
                session.close_ws(id, code, &reason)?;
            }
            Ok(true)
        }
    }
}

/// One direction of the virtual link.
#[derive(Debug)]
pub struct Link {
    /// One-way delay.
    pub latency: Duration,
    /// Bytes per second the link carries; `None` for infinitely fast.
    pub bytes_per_sec: Option<u64>,
    /// Messages sent now are lost.
    pub down: bool,
    free_at: Instant,
    in_flight: VecDeque<(Instant, Bytes)>,
    /// Messages carried so far.
    pub messages: u64,
    /// Bytes carried so far.
    pub bytes: u64,
    /// Largest message carried.
    pub largest: usize,
}

impl Link {
    fn new(latency: Duration) -> Self {
        Link {
            latency,
            bytes_per_sec: None,
            down: false,
            free_at: Instant::ZERO,
            in_flight: VecDeque::new(),
            messages: 0,
            bytes: 0,
            largest: 0,
        }
    }

    fn send(&mut self, now: Instant, msg: Bytes) {
        if self.down {
            return;
        }
        self.messages += 1;
        self.bytes += msg.len() as u64;
        self.largest = self.largest.max(msg.len());
        let mut at = now.max(self.free_at);
        if let Some(bps) = self.bytes_per_sec {
            at += Duration::from_micros(msg.len() as u64 * 1_000_000 / bps.max(1));
            self.free_at = at;
        }
        self.in_flight.push_back((at + self.latency, msg));
    }

    fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.front().map(|(t, _)| *t)
    }

    /// Messages sent and not yet delivered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

/// A client and a server joined by a virtual link.
#[derive(Debug)]
pub struct Pair {
    /// The virtual clock.
    pub now: Instant,
    /// The client end (opened the WebSocket, sends the hello, opens odd streams).
    pub client: Side,
    /// The server end.
    pub server: Side,
    /// Client to server.
    pub to_server: Link,
    /// Server to client.
    pub to_client: Link,
    /// Both sides send with `poll_transmit_batch` (packing frames when the peer
    /// accepts batches) instead of `poll_transmit`.
    pub batched: bool,
    /// The client's timers fire only at multiples of this (a hidden browser tab runs
    /// its timers about once a minute); `None` fires them on time.
    pub client_timer_grain: Option<Duration>,
    steps: u64,
}

/// The hello the test client sends.
pub fn hello() -> Hello {
    Hello {
        name: "demo".into(),
        token: "secret".into(),
        client_kind: "native".into(),
        client_version: "0.1.0".into(),
        ..Hello::default()
    }
}

/// A request head.
pub fn request(method: &'static str, target: &str, headers: Vec<Header>) -> RequestHead {
    RequestHead { kind: StreamKind::Http, method: method.into(), target: target.into(), headers }
}

/// A header.
pub fn header(name: &str, value: &str) -> Header {
    (HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap())
}

/// `n` bytes of a recognisable pattern, different for each `seed`.
pub fn pattern(n: usize, seed: u8) -> Bytes {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<u8>>().into()
}

impl Default for Pair {
    fn default() -> Self {
        Pair::new(Config::DEFAULT, Config::DEFAULT)
    }
}

impl Pair {
    /// A pair before the handshake: the client's hello is queued, nothing delivered.
    pub fn new(client: Config, server: Config) -> Self {
        Pair::with_hello(client, server, hello())
    }

    /// As [`Pair::new`], with the client sending `hello`.
    pub fn with_hello(client: Config, server: Config, hello: Hello) -> Self {
        let now = Instant::ZERO;
        Pair {
            now,
            client: Side::new("client", Session::client(client, hello, now)),
            server: Side::new("server", Session::server(server, now)),
            to_server: Link::new(LATENCY),
            to_client: Link::new(LATENCY),
            batched: false,
            client_timer_grain: None,
            steps: 0,
        }
    }

    /// A pair with default configs, handshake done.
    pub fn connected() -> Self {
        Pair::connected_with(Config::DEFAULT, Config::DEFAULT)
    }

    /// A pair with these configs, handshake done.
    pub fn connected_with(client: Config, server: Config) -> Self {
        let mut pair = Pair::new(client, server);
        pair.server.auto_accept = true;
        pair.drive();
        assert!(pair.client.session.is_established(), "handshake failed: {:?}", pair.client.events);
        assert!(pair.server.session.is_established());
        pair
    }

    /// Sets the one-way latency of both directions.
    pub fn set_latency(&mut self, latency: Duration) {
        self.to_server.latency = latency;
        self.to_client.latency = latency;
    }

    /// Cuts (or restores) the link both ways: frames sent while down are lost.
    pub fn set_link_down(&mut self, down: bool) {
        self.to_server.down = down;
        self.to_client.down = down;
    }

    /// Handles pending events and moves every frame both sessions want to send onto
    /// the link.
    pub fn flush(&mut self) {
        let (now, batched) = (self.now, self.batched);
        for (side, link) in [(&mut self.client, &mut self.to_server), (&mut self.server, &mut self.to_client)] {
            loop {
                side.drain(now);
                let mut sent = false;
                let poll = if batched { Session::poll_transmit_batch } else { Session::poll_transmit };
                while let Some(msg) = poll(&mut side.session) {
                    link.send(now, msg);
                    sent = true;
                }
                if !sent {
                    break;
                }
            }
        }
    }

    /// Delivers the next message in flight to the server, whenever it was due.
    /// Returns false if none was in flight.
    pub fn deliver_to_server(&mut self) -> bool {
        match self.to_server.in_flight.pop_front() {
            Some((_, msg)) => {
                self.server.input(self.now, msg);
                true
            }
            None => false,
        }
    }

    /// Delivers the next message in flight to the client, whenever it was due.
    pub fn deliver_to_client(&mut self) -> bool {
        match self.to_client.in_flight.pop_front() {
            Some((_, msg)) => {
                self.client.input(self.now, msg);
                true
            }
            None => false,
        }
    }

    /// Feeds a raw message to the server as if it came over the link.
    pub fn inject_to_server(&mut self, msg: impl Into<Bytes>) -> Result<(), ProtocolError> {
        let r = self.server.session.handle_message(self.now, msg.into());
        self.server.drain(self.now);
        r
    }

    /// Feeds a raw message to the client as if it came over the link.
    pub fn inject_to_client(&mut self, msg: impl Into<Bytes>) -> Result<(), ProtocolError> {
        let r = self.client.session.handle_message(self.now, msg.into());
        self.client.drain(self.now);
        r
    }

    /// Processes the next thing due at or before `limit`: a delivery (first) or a timer.
    /// Returns false, without moving the clock, if nothing is due by then.
    fn step_until(&mut self, limit: Instant) -> bool {
        self.flush();
        self.steps += 1;
        assert!(self.steps < 50_000_000, "the pair does not settle (livelock?)");
        let candidates = [
            self.to_server.next_arrival(),
            self.to_client.next_arrival(),
            self.client.session.poll_timeout().map(|t| self.client_timer_at(t)),
            self.server.session.poll_timeout(),
        ];
        let Some((which, at)) =
            candidates.iter().enumerate().filter_map(|(i, t)| t.map(|t| (i, t))).min_by_key(|(i, t)| (*t, *i))
        else {
            return false;
        };
        if at > limit {
            return false;
        }
        self.now = self.now.max(at);
        match which {
            0 => {
                self.deliver_to_server();
            }
            1 => {
                self.deliver_to_client();
            }
            2 => self.client.timeout(self.now),
            _ => self.server.timeout(self.now),
        }
        true
    }

    /// When a client timer due at `t` fires: at once, or at the next multiple of the grain.
    fn client_timer_at(&self, t: Instant) -> Instant {
        let Some(grain) = self.client_timer_grain else { return t };
        let grain = u64::try_from(grain.as_micros()).unwrap_or(u64::MAX).max(1);
        Instant::from_micros(t.as_micros().div_ceil(grain).saturating_mul(grain))
    }

    /// Runs until no frame is in flight or waiting to be sent, advancing the clock as
    /// deliveries (and any timers due before them) require. Timers with nothing in
    /// flight are left for [`Pair::advance`].
    pub fn drive(&mut self) {
        loop {
            self.flush();
            let Some(next) = self.next_arrival() else { return };
            self.step_until(next);
        }
    }

    fn next_arrival(&self) -> Option<Instant> {
        [self.to_server.next_arrival(), self.to_client.next_arrival()].into_iter().flatten().min()
    }

    /// Runs until `cond` holds, like [`Pair::drive`] but stopping as soon as it does.
    /// Panics if the pair goes idle first.
    pub fn drive_until(&mut self, mut cond: impl FnMut(&Pair) -> bool) {
        loop {
            if cond(self) {
                return;
            }
            self.flush();
            let Some(next) = self.next_arrival() else { panic!("the pair went idle before the condition held") };
            self.step_until(next);
        }
    }

    /// Lets `d` of virtual time pass: deliveries and timers fire in order.
    pub fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        while self.step_until(target) {}
        self.now = target;
        self.flush();
    }

    /// Nothing is in flight either way.
    pub fn idle(&self) -> bool {
        self.to_server.in_flight() == 0 && self.to_client.in_flight() == 0
    }
}
