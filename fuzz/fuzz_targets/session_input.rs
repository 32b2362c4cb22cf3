//! A client and a server `Session` fed an arbitrary mix of application commands,
//! deliveries of each other's frames, forged frames (structured and raw bytes), releases
//! and timeouts. Nothing may panic and `check_invariants` must hold after every step.

#![no_main]

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use localtunnels_core::{
    CloseCode, Config, Event, Frame, Hello, Instant, RefuseReason, RequestHead, ResetCode, ResponseHead, Session,
    StreamId, StreamKind, Welcome,
};

#[derive(Arbitrary, Debug)]
struct Input {
    tight_client: bool,
    tight_server: bool,
    /// Skip the handshake to fuzz it too.
    handshake: bool,
    /// Both sides send with `poll_transmit_batch` (frames packed in `BATCH`es).
    batched: bool,
    steps: Vec<Step>,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Open { client: bool, ws: bool, end: bool, headers: Vec<(String, Vec<u8>)> },
    Respond { client: bool, pick: u8, status: u16, end: bool },
    Send { client: bool, pick: u8, len: u16 },
    SendWs { client: bool, pick: u8, binary: bool, len: u16, fin: bool },
    Finish { client: bool, pick: u8 },
    Trailers { client: bool, pick: u8 },
    CloseWs { client: bool, pick: u8, code: u16, reason: String },
    Reset { client: bool, pick: u8, code: u16 },
    /// Releases what the application holds on a stream.
    Release { client: bool, pick: u8 },
    /// Releases an arbitrary amount (a confused driver).
    ReleaseAny { client: bool, id: u32, n: u32 },
    /// Delivers up to `n` frames the other side sent.
    Deliver { to_client: bool, n: u8 },
    /// A well-formed frame the real peer would not necessarily send.
    Forge { to_client: bool, frame: FrameSpec },
    /// Raw bytes as a message.
    Raw { to_client: bool, bytes: Vec<u8> },
    Advance { ms: u16 },
    GoAway { client: bool },
    Close { client: bool },
    Accept,
    Refuse { reason: u16 },
}

#[derive(Arbitrary, Debug)]
enum FrameSpec {
    Hello { version: u16, name: String },
    Welcome { version: u16, heartbeat_ms: u32 },
    Refuse { reason: u16 },
    Open { id: u8, ws: bool, end: bool },
    Response { id: u8, status: u16, end: bool },
    Data { id: u8, len: u16, end: bool },
    Trailers { id: u8 },
    WsMessage { id: u8, binary: bool, fin: bool, len: u16 },
    WsClose { id: u8, code: u16 },
    Reset { id: u8, code: u16 },
    Window { id: u8, increment: u32 },
    Ping(u64),
    Pong(u64),
    GoAway { last_id: u8, code: u16 },
    Close { code: u16 },
    /// A `BATCH` of forged frames (possibly empty, possibly nested: both refused).
    Batch(Vec<FrameSpec>),
}

fn get(kind: StreamKind) -> RequestHead {
    RequestHead { kind, method: "GET".into(), target: "/".into(), headers: vec![] }
}

impl FrameSpec {
    fn build(self) -> Frame {
        let id = |i: u8| u32::from(i);
        let data = |len: u16| Bytes::from(vec![0x5a; usize::from(len)]);
        match self {
            FrameSpec::Hello { version, name } => Frame::Hello(Box::new(Hello { version, name, ..Hello::default() })),
            FrameSpec::Welcome { version, heartbeat_ms } => {
                Frame::Welcome(Box::new(Welcome { version, heartbeat_ms, ..Welcome::default() }))
            }
            FrameSpec::Refuse { reason } => Frame::Refuse { reason: RefuseReason::from_u16(reason), message: "no".into() },
            FrameSpec::Open { id: i, ws, end } => Frame::Open {
                id: id(i),
                head: get(if ws { StreamKind::WebSocket } else { StreamKind::Http }),
                end,
            },
            FrameSpec::Response { id: i, status, end } => {
                Frame::Response { id: id(i), head: ResponseHead { status, headers: vec![] }, end }
            }
            FrameSpec::Data { id: i, len, end } => Frame::Data { id: id(i), data: data(len), end },
            FrameSpec::Trailers { id: i } => Frame::Trailers { id: id(i), headers: vec![] },
            FrameSpec::WsMessage { id: i, binary, fin, len } => {
                Frame::WsMessage { id: id(i), binary, fin, data: data(len) }
            }
            FrameSpec::WsClose { id: i, code } => Frame::WsClose { id: id(i), code, reason: String::new() },
            FrameSpec::Reset { id: i, code } => {
                Frame::Reset { id: id(i), code: ResetCode::from_u16(code), message: String::new() }
            }
            FrameSpec::Window { id: i, increment } => Frame::Window { id: id(i), increment },
            FrameSpec::Ping(v) => Frame::Ping(v),
            FrameSpec::Pong(v) => Frame::Pong(v),
            FrameSpec::GoAway { last_id, code } => {
                Frame::GoAway { last_id: id(last_id), code: CloseCode::from_u16(code), message: String::new() }
            }
            FrameSpec::Close { code } => Frame::Close { code: CloseCode::from_u16(code), message: String::new() },
            FrameSpec::Batch(frames) => Frame::Batch(frames.into_iter().map(FrameSpec::build).collect()),
        }
    }
}

/// One side and the bytes its application holds unreleased, per stream.
struct Side {
    session: Session,
    held: HashMap<StreamId, usize>,
    ids: Vec<StreamId>,
    inbox: VecDeque<Bytes>,
}

impl Side {
    fn drain(&mut self) {
        while let Some(ev) = self.session.poll_event() {
            match ev {
                Event::Opened { id, .. } => self.ids.push(id),
                Event::Data { id, data, .. } | Event::WsMessage { id, data, .. } => {
                    *self.held.entry(id).or_default() += data.len();
                }
                _ => {}
            }
        }
        self.session.check_invariants();
    }

    fn pick(&self, pick: u8) -> StreamId {
        if self.ids.is_empty() {
            u32::from(pick)
        } else {
            self.ids[usize::from(pick) % self.ids.len()]
        }
    }
}

fn tight() -> Config {
    Config { max_frame: 512, max_streams: 4, stream_window: 2048, session_window: 4096, max_header_bytes: 256, ..Config::DEFAULT }
}

fuzz_target!(|input: Input| {
    let mut now = Instant::ZERO;
    let config = |t: bool| if t { tight() } else { Config::DEFAULT };
    let hello = Hello { name: "demo".into(), ..Hello::default() };
    let mut sides = [
        Side {
            session: Session::client(config(input.tight_client), hello, now),
            held: HashMap::new(),
            ids: Vec::new(),
            inbox: VecDeque::new(),
        },
        Side { session: Session::server(config(input.tight_server), now), held: HashMap::new(), ids: Vec::new(), inbox: VecDeque::new() },
    ];
    // Index 0 is the client, 1 the server; `inbox` holds frames sent *to* that side.
    let poll = if input.batched { Session::poll_transmit_batch } else { Session::poll_transmit };
    let flush = |sides: &mut [Side; 2]| {
        for from in 0..2 {
            sides[from].drain();
            while let Some(msg) = poll(&mut sides[from].session) {
                sides[1 - from].inbox.push_back(msg);
            }
        }
    };
    if input.handshake {
        flush(&mut sides);
        while let Some(msg) = sides[1].inbox.pop_front() {
            let _ = sides[1].session.handle_message(now, msg);
        }
        sides[1].session.accept(Welcome::default(), now);
        flush(&mut sides);
        while let Some(msg) = sides[0].inbox.pop_front() {
            let _ = sides[0].session.handle_message(now, msg);
        }
        flush(&mut sides);
    }
    for step in input.steps.into_iter().take(400) {
        let at = |client: bool| usize::from(!client);
        match step {
            Step::Open { client, ws, end, headers } => {
                let mut head = get(if ws { StreamKind::WebSocket } else { StreamKind::Http });
                head.headers = headers
                    .into_iter()
                    .take(8)
                    .filter_map(|(n, v)| {
                        Some((http::HeaderName::from_bytes(n.as_bytes()).ok()?, http::HeaderValue::from_bytes(&v).ok()?))
                    })
                    .collect();
                if let Ok(id) = sides[at(client)].session.open(head, end) {
                    sides[at(client)].ids.push(id);
                }
            }
            Step::Respond { client, pick, status, end } => {
                let s = &mut sides[at(client)];
                let id = s.pick(pick);
                let _ = s.session.respond(id, ResponseHead { status, headers: vec![] }, end);
            }
            Step::Send { client, pick, len } => {
                let s = &mut sides[at(client)];
                let id = s.pick(pick);
                let _ = s.session.send_data(id, Bytes::from(vec![1; usize::from(len)]));
            }
            Step::SendWs { client, pick, binary, len, fin } => {
                let s = &mut sides[at(client)];
                let id = s.pick(pick);
                let _ = s.session.send_ws(id, binary, Bytes::from(vec![2; usize::from(len)]), fin);
            }
            Step::Finish { client, pick } => {
                let s = &mut sides[at(client)];
                let id = s.pick(pick);
                let _ = s.session.finish(id);
            }
            Step::Trailers { client, pick } => {
                let s = &mut sides[at(client)];
                let id = s.pick(pick);
                let _ = s.session.send_trailers(id, vec![(http::HeaderName::from_static("x-t"), http::HeaderValue::from_static("1"))]);
            }
            Step::CloseWs { client, pick, code, reason } => {
                let s = &mut sides[at(client)];
                let id = s.pick(pick);
                let _ = s.session.close_ws(id, code, &reason);
            }
            Step::Reset { client, pick, code } => {
                let s = &mut sides[at(client)];
                let id = s.pick(pick);
                s.session.reset(id, ResetCode::from_u16(code), "reset");
            }
            Step::Release { client, pick } => {
                let s = &mut sides[at(client)];
                let id = s.pick(pick);
                let n = s.held.remove(&id).unwrap_or(0);
                s.session.release(id, n);
            }
            Step::ReleaseAny { client, id, n } => {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                sides[at(client)].session.release(id, n);
            }
            Step::Deliver { to_client, n } => {
                flush(&mut sides);
                let s = &mut sides[at(to_client)];
                for _ in 0..n {
                    let Some(msg) = s.inbox.pop_front() else { break };
                    let _ = s.session.handle_message(now, msg);
                    s.drain();
                }
            }
            Step::Forge { to_client, frame } => {
                let _ = sides[at(to_client)].session.handle_message(now, frame.build().encode());
            }
            Step::Raw { to_client, bytes } => {
                let _ = sides[at(to_client)].session.handle_message(now, Bytes::from(bytes));
            }
            Step::Advance { ms } => {
                now += Duration::from_millis(u64::from(ms) * 10);
                for s in &mut sides {
                    if s.session.poll_timeout().is_some_and(|t| t <= now) {
                        s.session.handle_timeout(now);
                    }
                }
            }
            Step::GoAway { client } => sides[at(client)].session.go_away(CloseCode::Shutdown, "bye"),
            Step::Close { client } => sides[at(client)].session.close(CloseCode::Normal, "done"),
            Step::Accept => sides[1].session.accept(Welcome::default(), now),
            Step::Refuse { reason } => sides[1].session.refuse(RefuseReason::from_u16(reason), "no"),
        }
        for s in &mut sides {
            s.drain();
        }
    }
    // Finally everything is delivered and released: still consistent.
    for _ in 0..1000 {
        flush(&mut sides);
        if sides.iter().all(|s| s.inbox.is_empty()) {
            break;
        }
        for s in &mut sides {
            while let Some(msg) = s.inbox.pop_front() {
                let _ = s.session.handle_message(now, msg);
                s.drain();
                for (id, n) in std::mem::take(&mut s.held) {
                    s.session.release(id, n);
                }
            }
        }
    }
    for s in &sides {
        s.session.check_invariants();
    }
});
