//! A server `Session` facing a hostile client: the hello announces arbitrary limits and
//! features, then the client sends an arbitrary mix of frames (pings, window grants,
//! stream openings, data, resets, raw bytes) while it reads only when the fuzzer says
//! so, and the server's application opens streams and offers as much as it is allowed
//! to send. After every step the session's invariants hold, and above all its memory
//! stays bounded by its own `Config`, whatever the peer announced or did: payload queued
//! unsent <= `max_session_queue`, control frames waiting <= `max_control_queue`, at most
//! one pong pending, peer windows clamped to `max_peer_window`.

#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use localtunnels_core::{
    Config, Frame, Hello, Instant, Limits, RequestHead, Session, StreamId, StreamKind, Welcome,
    PROTOCOL_VERSION,
};

#[derive(Arbitrary, Debug)]
struct Input {
    /// Small local bounds (so the fuzzer reaches them), or the defaults.
    tight: bool,
    limits: Option<(u32, u32, u32, u32, u32)>,
    features: u32,
    steps: Vec<Step>,
}

#[derive(Arbitrary, Debug)]
enum Step {
    /// The client sends a frame.
    Peer(PeerFrame),
    /// The client sends raw bytes.
    Raw(Vec<u8>),
    /// The client sends pings packed in one batch.
    PingBatch { count: u16, seq: u64 },
    /// A visitor arrives: the server opens a stream with a head of `pad` bytes.
    Open { pad: u16, end: bool },
    /// The server's application offers `len` KiB on a stream it opened.
    Offer { pick: u8, kib: u16 },
    /// The server's application releases what it received on a stream.
    Release { pick: u8, n: u32 },
    /// The client reads `n` of the server's messages (it mostly does not).
    Read { n: u8 },
    /// Time passes.
    Advance { ms: u32 },
}

#[derive(Arbitrary, Debug)]
enum PeerFrame {
    Ping(u64),
    Pong(u64),
    Window { pick: u8, increment: u32 },
    SessionWindow(u32),
    Response { pick: u8, status: u16, end: bool },
    Data { pick: u8, len: u16, end: bool },
    Reset { pick: u8 },
    Open { id: u32 },
}

fuzz_target!(|input: Input| run(input));

fn run(input: Input) {
    let config = if input.tight {
        Config {
            max_peer_window: 64 * 1024,
            max_session_queue: 32 * 1024,
            max_control_queue: 16 * 1024,
            stream_window: 16 * 1024,
            session_window: 64 * 1024,
            ..Config::DEFAULT
        }
    } else {
        Config::DEFAULT
    };
    let mut now = Instant::ZERO;
    let mut server = Session::server(config.clone(), now);
    let limits = input.limits.map(|(max_frame, max_streams, stream_window, session_window, max_header_bytes)| Limits {
        max_frame: max_frame.max(256),
        max_streams,
        stream_window: stream_window.max(1024),
        session_window: session_window.max(1024),
        max_header_bytes: max_header_bytes.max(64),
    });
    let hello = Hello { version: PROTOCOL_VERSION, limits, features: input.features, ..Hello::default() };
    let _ = server.handle_message(now, Frame::Hello(Box::new(hello)).encode());
    server.accept(Welcome::default(), now);
    while server.poll_event().is_some() {}
    let mut opened: Vec<StreamId> = Vec::new();
    let body = Bytes::from(vec![0x5a; 1 << 20]);
    let pick = |opened: &[StreamId], i: u8| opened.get(usize::from(i) % opened.len().max(1)).copied().unwrap_or(2);
    for step in input.steps {
        match step {
            Step::Peer(f) => {
                let frame = match f {
                    PeerFrame::Ping(v) => Frame::Ping(v),
                    PeerFrame::Pong(v) => Frame::Pong(v),
                    PeerFrame::Window { pick: i, increment } => Frame::Window { id: pick(&opened, i), increment },
                    PeerFrame::SessionWindow(increment) => Frame::Window { id: 0, increment },
                    PeerFrame::Response { pick: i, status, end } => Frame::Response {
                        id: pick(&opened, i),
                        head: localtunnels_core::ResponseHead { status: status % 500 + 100, headers: vec![] },
                        end,
                    },
                    PeerFrame::Data { pick: i, len, end } => {
                        Frame::Data { id: pick(&opened, i), data: body.slice(..usize::from(len)), end }
                    }
                    PeerFrame::Reset { pick: i } => Frame::Reset {
                        id: pick(&opened, i),
                        code: localtunnels_core::ResetCode::Cancel,
                        message: String::new(),
                    },
                    PeerFrame::Open { id } => Frame::Open { id, head: head(0), end: true },
                };
                let _ = server.handle_message(now, frame.encode());
            }
            Step::Raw(bytes) => {
                let _ = server.handle_message(now, Bytes::from(bytes));
            }
            Step::PingBatch { count, seq } => {
                let pings = (0..u64::from(count % 4000)).map(|i| Frame::Ping(seq.wrapping_add(i))).collect();
                let _ = server.handle_message(now, Frame::Batch(pings).encode());
            }
            Step::Open { pad, end } => {
                if let Ok(id) = server.open(head(usize::from(pad)), end) {
                    opened.push(id);
                }
            }
            Step::Offer { pick: i, kib } => {
                let id = pick(&opened, i);
                let mut left = usize::from(kib % 2048) * 1024;
                // Offer as a driver does: until the session takes no more.
                while left > 0 {
                    let n = left.min(body.len());
                    match server.send_data(id, body.slice(..n)) {
                        Ok(0) | Err(_) => break,
                        Ok(taken) => left -= taken,
                    }
                }
            }
            Step::Release { pick: i, n } => server.release(pick(&opened, i), n as usize % (1 << 21)),
            Step::Read { n } => {
                for _ in 0..n {
                    if server.poll_transmit_batch().is_none() {
                        break;
                    }
                }
            }
            Step::Advance { ms } => {
                now = now + std::time::Duration::from_millis(u64::from(ms % 60_000));
                if server.poll_timeout().is_some_and(|t| t <= now) {
                    server.handle_timeout(now);
                }
            }
        }
        while server.poll_event().is_some() {}
        check(&server, &config);
    }
}

fn head(pad: usize) -> RequestHead {
    let headers = if pad == 0 {
        vec![]
    } else {
        let value = "p".repeat(pad % 30_000);
        vec![(
            localtunnels_core::HeaderName::from_static("x-pad"),
            localtunnels_core::HeaderValue::from_str(&value).expect("ascii"),
        )]
    };
    RequestHead { kind: StreamKind::Http, method: "POST".into(), target: "/".into(), headers }
}

/// The bounds this target is about (the session checks the rest itself).
fn check(server: &Session, config: &Config) {
    server.check_invariants();
    let peer = server.peer_limits();
    assert!(peer.stream_window <= config.max_peer_window && peer.session_window <= config.max_peer_window);
    assert!(peer.max_frame <= config.max_frame.max(Config::DEFAULT.max_frame));
}
