//! Property tests: the codec round-trips every frame and survives any bytes; any
//! sequence of commands, deliveries and timeouts keeps both sessions' invariants.
//! Native only: proptest does not build for wasm32-unknown-unknown.
#![cfg(not(target_arch = "wasm32"))]

mod util;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use localtunnels_core::{
    CloseCode, Config, DecodeLimits, FieldCoding, Frame, Header, HeaderName, HeaderValue, Hello, Limits, RefuseReason,
    RequestHead, ResetCode, ResponseHead, StreamId, StreamKind, Welcome, PROTOCOL_VERSION,
};
use proptest::collection::vec;
use proptest::prelude::*;
use util::{pattern, request, Pair};

const NO_LIMITS: DecodeLimits = DecodeLimits { max_frame: usize::MAX, max_header_bytes: usize::MAX };

// ----- frame strategies -----

fn text() -> impl Strategy<Value = String> {
    ".{0,24}"
}

fn raw(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn header() -> impl Strategy<Value = Header> {
    // Names: lowercase tokens; values: any bytes but controls (tab allowed) and DEL.
    // Some of each from the static table (first, last, in between), so that indexed
    // names and whole indexed fields are written too.
    let value = vec(any::<u8>().prop_filter("controls", |&c| c == b'\t' || (c >= 0x20 && c != 0x7f)), 0..24);
    let table_value = prop::sample::select(&["http", "https", "text/plain", "0", "cross-site", "13", "Upgrade"][..])
        .prop_map(|v| v.as_bytes().to_vec());
    let table_name = prop::sample::select(
        &["host", "x-forwarded-proto", "content-type", "content-length", "connection", "alt-svc", "sec-fetch-site"][..],
    )
    .prop_map(str::to_string);
    let name = prop_oneof!["[a-z0-9!#$%&'*+.^_`|~-]{1,16}", table_name];
    (name, prop_oneof![value, table_value]).prop_map(|(n, v)| {
        (HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_maybe_shared(Bytes::from(v)).unwrap())
    })
}

fn headers() -> impl Strategy<Value = Vec<Header>> {
    vec(header(), 0..8)
}

fn stream_id() -> impl Strategy<Value = StreamId> {
    1..=u32::MAX
}

fn limits() -> impl Strategy<Value = Limits> {
    (256..=u32::MAX, any::<u32>(), 1024..=u32::MAX, 1024..=u32::MAX, 64..=u32::MAX).prop_map(
        |(max_frame, max_streams, stream_window, session_window, max_header_bytes)| Limits {
            max_frame,
            max_streams,
            stream_window,
            session_window,
            max_header_bytes,
        },
    )
}

fn hello() -> impl Strategy<Value = Hello> {
    let fields = (text(), text(), text(), text(), text(), proptest::option::of(limits()), text(), vec(".{1,20}", 0..4));
    let v1 = (fields, any::<u32>(), text(), any::<bool>()).prop_map(
        |(
            (name, token, reconnect_token, client_kind, client_version, limits, basic_auth, allow_ips),
            features,
            hostname,
            join,
        )| {
            Hello {
                version: PROTOCOL_VERSION,
                name,
                token,
                reconnect_token,
                client_kind,
                client_version,
                limits,
                basic_auth,
                allow_ips,
                features,
                hostname,
                join,
            }
        },
    );
    // Of another version only the version is read: that is all that can round-trip.
    let other = any::<u16>()
        .prop_filter("other version", |v| *v != PROTOCOL_VERSION)
        .prop_map(|version| Hello { version, ..Hello::default() });
    prop_oneof![4 => v1, 1 => other]
}

fn welcome() -> impl Strategy<Value = Welcome> {
    let fields =
        (any::<u16>(), text(), text(), text(), any::<u32>(), any::<u32>(), proptest::option::of(limits()), text());
    (fields, any::<u32>()).prop_map(
        |((version, name, url, reconnect_token, heartbeat_ms, idle_timeout_ms, limits, server_version), features)| {
            Welcome {
                version,
                name,
                url,
                reconnect_token,
                heartbeat_ms,
                idle_timeout_ms,
                limits,
                server_version,
                features,
            }
        },
    )
}

fn request_head() -> impl Strategy<Value = RequestHead> {
    (any::<bool>(), "[!-~]{1,10}", text(), headers()).prop_map(|(ws, method, target, headers)| RequestHead {
        kind: if ws { StreamKind::WebSocket } else { StreamKind::Http },
        method: method.into(),
        target,
        headers,
    })
}

/// Any frame, batches (of any frames but batches) included.
fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![8 => single_frame(), 1 => vec(single_frame(), 1..6).prop_map(Frame::Batch)]
}

fn single_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        hello().prop_map(|h| Frame::Hello(Box::new(h))),
        welcome().prop_map(|w| Frame::Welcome(Box::new(w))),
        (any::<u16>(), text()).prop_map(|(r, message)| Frame::Refuse { reason: RefuseReason::from_u16(r), message }),
        (stream_id(), request_head(), any::<bool>()).prop_map(|(id, head, end)| Frame::Open { id, head, end }),
        (stream_id(), 100..=999u16, headers(), any::<bool>()).prop_map(|(id, status, headers, end)| {
            Frame::Response { id, head: ResponseHead { status, headers }, end }
        }),
        (stream_id(), raw(300), any::<bool>()).prop_map(|(id, data, end)| Frame::Data { id, data, end }),
        (stream_id(), headers()).prop_map(|(id, headers)| Frame::Trailers { id, headers }),
        (stream_id(), any::<bool>(), any::<bool>(), raw(300)).prop_map(|(id, binary, fin, data)| Frame::WsMessage {
            id,
            binary,
            fin,
            data
        }),
        (stream_id(), any::<u16>(), text()).prop_map(|(id, code, reason)| Frame::WsClose { id, code, reason }),
        (stream_id(), any::<u16>(), text()).prop_map(|(id, c, message)| Frame::Reset {
            id,
            code: ResetCode::from_u16(c),
            message
        }),
        (any::<u32>(), any::<u32>()).prop_map(|(id, increment)| Frame::Window { id, increment }),
        any::<u64>().prop_map(Frame::Ping),
        any::<u64>().prop_map(Frame::Pong),
        (any::<u32>(), any::<u16>(), text()).prop_map(|(last_id, c, message)| Frame::GoAway {
            last_id,
            code: CloseCode::from_u16(c),
            message
        }),
        (any::<u16>(), text()).prop_map(|(c, message)| Frame::Close { code: CloseCode::from_u16(c), message }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn every_frame_round_trips(frame in frame()) {
        let encoded = frame.encode();
        prop_assert_eq!(Frame::decode(encoded.clone(), &NO_LIMITS), Ok(frame.clone()));
        // A driver writes the WebSocket header from the size before the frame is encoded.
        if let Some(len) = frame.encoded_len() {
            prop_assert_eq!(len, encoded.len());
        }
        // Default limits accept it exactly when it fits.
        let fits = encoded.len() <= DecodeLimits::default().max_frame;
        prop_assert_eq!(Frame::decode(encoded.clone(), &DecodeLimits::default()).is_ok(), fits);
        // With the static table's indexes: the same frame, never larger than as text.
        let indexed = frame.encode_with(FieldCoding::Indexed);
        prop_assert_eq!(Frame::decode(indexed.clone(), &NO_LIMITS), Ok(frame.clone()));
        if let Some(len) = frame.encoded_len_with(FieldCoding::Indexed) {
            prop_assert_eq!(len, indexed.len());
        }
        prop_assert!(indexed.len() <= encoded.len());
    }

    #[test]
    fn decoding_any_bytes_never_panics(bytes in vec(any::<u8>(), 0..512)) {
        // Whatever decodes, re-encodes to something that decodes to the same frame.
        if let Ok(frame) = Frame::decode(Bytes::from(bytes), &NO_LIMITS) {
            prop_assert_eq!(Frame::decode(frame.encode(), &NO_LIMITS), Ok(frame));
        }
    }

    #[test]
    fn damaged_frames_never_panic(frame in frame(), indexed in any::<bool>(), cut in any::<prop::sample::Index>(), flips in vec((any::<prop::sample::Index>(), any::<u8>()), 0..4)) {
        let coding = if indexed { FieldCoding::Indexed } else { FieldCoding::Text };
        let mut bytes = frame.encode_with(coding).to_vec();
        for (at, x) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        let small = DecodeLimits { max_frame: 200, max_header_bytes: 100 };
        for limits in [NO_LIMITS, small] {
            if let Ok(frame) = Frame::decode(Bytes::from(bytes.clone()), &limits) {
                prop_assert_eq!(Frame::decode(frame.encode(), &NO_LIMITS), Ok(frame));
            }
        }
    }
}

// ----- session properties -----

// Test operations only: an injected frame (a hello is the largest) may be big.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum Op {
    Open { client: bool, ws: bool, end: bool },
    Respond { client: bool, pick: usize, status: u16, end: bool },
    RespondWhole { client: bool, pick: usize, status: u16, len: usize },
    Send { client: bool, pick: usize, len: usize },
    SendWs { client: bool, pick: usize, len: usize, fin: bool },
    Finish { client: bool, pick: usize },
    CloseWs { client: bool, pick: usize },
    Reset { client: bool, pick: usize },
    Stall { client: bool, pick: usize },
    Unstall { client: bool, pick: usize },
    Deliver { to_client: bool, n: usize },
    Drive,
    Advance { ms: u64 },
    GoAway { client: bool },
    Close { client: bool },
    Inject { to_client: bool, frame: Frame },
}

fn op() -> impl Strategy<Value = Op> {
    let side = any::<bool>;
    let pick = || 0..64usize;
    prop_oneof![
        24 => (side(), side(), side()).prop_map(|(client, ws, end)| Op::Open { client, ws, end }),
        24 => (side(), pick(), prop::sample::select(vec![101u16, 200, 204, 404, 502]), side())
            .prop_map(|(client, pick, status, end)| Op::Respond { client, pick, status, end }),
        12 => (side(), pick(), prop::sample::select(vec![101u16, 200, 404]), 0..30_000usize)
            .prop_map(|(client, pick, status, len)| Op::RespondWhole { client, pick, status, len }),
        32 => (side(), pick(), 0..150_000usize).prop_map(|(client, pick, len)| Op::Send { client, pick, len }),
        24 => (side(), pick(), 0..100_000usize, side()).prop_map(|(client, pick, len, fin)| Op::SendWs { client, pick, len, fin }),
        12 => (side(), pick()).prop_map(|(client, pick)| Op::Finish { client, pick }),
        8 => (side(), pick()).prop_map(|(client, pick)| Op::CloseWs { client, pick }),
        8 => (side(), pick()).prop_map(|(client, pick)| Op::Reset { client, pick }),
        8 => (side(), pick()).prop_map(|(client, pick)| Op::Stall { client, pick }),
        8 => (side(), pick()).prop_map(|(client, pick)| Op::Unstall { client, pick }),
        40 => (side(), 1..20usize).prop_map(|(to_client, n)| Op::Deliver { to_client, n }),
        12 => Just(Op::Drive),
        8 => (0..25_000u64).prop_map(|ms| Op::Advance { ms }),
        1 => side().prop_map(|client| Op::GoAway { client }),
        1 => side().prop_map(|client| Op::Close { client }),
        1 => (side(), frame()).prop_map(|(to_client, frame)| Op::Inject { to_client, frame }),
    ]
}

/// Small windows and frames so that a few operations reach every limit.
fn tight() -> Config {
    Config {
        max_frame: 4096,
        max_streams: 8,
        stream_window: 20_000,
        session_window: 50_000,
        max_header_bytes: 1024,
        ..Config::DEFAULT
    }
}

struct Model {
    pair: Pair,
    /// Payload bytes each side's application handed over, per (sent by client, stream).
    sent: HashMap<(bool, StreamId), Vec<u8>>,
    seed: u8,
    /// A raw frame was injected: payloads may no longer match what was sent.
    injected: bool,
}

impl Model {
    fn side(&mut self, client: bool) -> &mut util::Side {
        if client {
            &mut self.pair.client
        } else {
            &mut self.pair.server
        }
    }

    fn pick(&self, client: bool, pick: usize) -> Option<StreamId> {
        let side = if client { &self.pair.client } else { &self.pair.server };
        let ids: Vec<_> = side.logs.keys().copied().collect();
        (!ids.is_empty()).then(|| ids[pick % ids.len()])
    }

    fn apply(&mut self, op: Op) {
        self.seed = self.seed.wrapping_add(1);
        let seed = self.seed;
        match op {
            Op::Open { client, ws, end } => {
                let mut head = request("GET", "/", vec![]);
                if ws {
                    head.kind = StreamKind::WebSocket;
                }
                let s = self.side(client);
                if let Ok(id) = s.session.open(head, end) {
                    s.logs.entry(id).or_default();
                }
            }
            Op::Respond { client, pick, status, end } => {
                if let Some(id) = self.pick(client, pick) {
                    let _ = self.side(client).session.respond(id, ResponseHead { status, headers: vec![] }, end);
                }
            }
            Op::RespondWhole { client, pick, status, len } => {
                if let Some(id) = self.pick(client, pick) {
                    let data = pattern(len, seed);
                    let session = &mut self.side(client).session;
                    let block = localtunnels_core::HeaderBlock::new(session.field_coding());
                    if let Ok(n) = session.respond_whole_block(id, status, block, &data, None) {
                        self.sent.entry((client, id)).or_default().extend_from_slice(&data[..n]);
                    }
                }
            }
            Op::Send { client, pick, len } => {
                if let Some(id) = self.pick(client, pick) {
                    let data = pattern(len, seed);
                    if let Ok(n) = self.side(client).session.send_data(id, data.clone()) {
                        self.sent.entry((client, id)).or_default().extend_from_slice(&data[..n]);
                    }
                }
            }
            Op::SendWs { client, pick, len, fin } => {
                if let Some(id) = self.pick(client, pick) {
                    let data = pattern(len, seed);
                    if let Ok(n) = self.side(client).session.send_ws(id, seed & 1 == 0, data.clone(), fin) {
                        self.sent.entry((client, id)).or_default().extend_from_slice(&data[..n]);
                    }
                }
            }
            Op::Finish { client, pick } => {
                if let Some(id) = self.pick(client, pick) {
                    let _ = self.side(client).session.finish(id);
                }
            }
            Op::CloseWs { client, pick } => {
                if let Some(id) = self.pick(client, pick) {
                    let _ = self.side(client).session.close_ws(id, 1000, "bye");
                }
            }
            Op::Reset { client, pick } => {
                if let Some(id) = self.pick(client, pick) {
                    self.side(client).session.reset(id, ResetCode::Cancel, "reset");
                }
            }
            Op::Stall { client, pick } => {
                if let Some(id) = self.pick(client, pick) {
                    self.side(client).stall(id);
                }
            }
            Op::Unstall { client, pick } => {
                if let Some(id) = self.pick(client, pick) {
                    self.side(client).unstall(id);
                }
            }
            Op::Deliver { to_client, n } => {
                self.pair.flush();
                for _ in 0..n {
                    let delivered =
                        if to_client { self.pair.deliver_to_client() } else { self.pair.deliver_to_server() };
                    if !delivered {
                        break;
                    }
                }
            }
            Op::Drive => self.pair.drive(),
            Op::Advance { ms } => self.pair.advance(Duration::from_millis(ms)),
            Op::GoAway { client } => self.side(client).session.go_away(CloseCode::Shutdown, "going away"),
            Op::Close { client } => self.side(client).session.close(CloseCode::Normal, "done"),
            Op::Inject { to_client, frame } => {
                self.injected = true;
                let msg = frame.encode();
                let _ = if to_client { self.pair.inject_to_client(msg) } else { self.pair.inject_to_server(msg) };
            }
        }
        self.pair.client.drain(self.pair.now);
        self.pair.server.drain(self.pair.now);
        self.check();
    }

    /// What each side received on a stream is a prefix of what the other side sent.
    fn check(&self) {
        if self.injected {
            return;
        }
        for (client_received, side) in [(true, &self.pair.client), (false, &self.pair.server)] {
            for (id, log) in &side.logs {
                let sent = self.sent.get(&(!client_received, *id)).map_or(&[][..], |v| &v[..]);
                assert!(
                    sent.starts_with(&log.payload),
                    "stream {id}: received {} bytes that are not what was sent ({} bytes)",
                    log.payload.len(),
                    sent.len()
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn any_sequence_of_inputs_keeps_the_invariants(ops in vec(op(), 1..80), tight_client in any::<bool>(), tight_server in any::<bool>(), batched in any::<bool>()) {
        let config = |t: bool| if t { tight() } else { Config::DEFAULT };
        let mut pair = Pair::connected_with(config(tight_client), config(tight_server));
        pair.batched = batched;
        let mut model = Model { pair, sent: HashMap::new(), seed: 0, injected: false };
        for op in ops {
            model.apply(op);
        }
        // Everyone reads again and the link drains: still consistent.
        for client in [true, false] {
            let side = if client { &mut model.pair.client } else { &mut model.pair.server };
            let ids: Vec<_> = side.stalled.iter().copied().collect();
            for id in ids {
                side.unstall(id);
            }
        }
        model.pair.drive();
        model.check();
        if std::env::var_os("PROP_STATS").is_some() {
            let received: usize = model.pair.server.logs.values().chain(model.pair.client.logs.values()).map(|l| l.payload.len()).sum();
            eprintln!("streams {} {} received {received} closed {}", model.pair.client.logs.len(), model.pair.server.logs.len(), model.pair.client.session.is_closed());
        }
        model.pair.client.check();
        model.pair.server.check();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Liveness: whatever stalled readers hold, as long as they leave some of the session
    /// window free, another stream's body still arrives whole.
    #[test]
    fn stalled_readers_never_stop_a_stream_while_window_is_left(
        stream_window in 1024..=65_536u32,
        session_window in 4096..=1_048_576u32,
        stalled in vec(0..=80_000usize, 0..24),
        body in 0..=200_000usize,
    ) {
        let server = Config { stream_window, session_window, ..Config::DEFAULT };
        let mut pair = Pair::connected_with(Config::DEFAULT, server);
        let mut held = 0;
        for (i, &len) in stalled.iter().enumerate() {
            let id = pair.server.get(&format!("/stalled/{i}"));
            pair.server.stall(id);
            pair.drive();
            pair.client.respond_with(id, 200, pattern(len, i as u8));
            pair.drive();
            held += pair.server.log(id).unreleased;
        }
        prop_assert!(held <= session_window as usize);
        prop_assume!(session_window as usize - held >= 1024);
        let id = pair.server.get("/flowing");
        pair.drive();
        pair.client.respond_with(id, 200, pattern(body, 99));
        pair.drive();
        let log = pair.server.log(id);
        prop_assert!(log.end, "got {} of {} bytes with {} of {} held", log.body.len(), body, held, session_window);
        prop_assert!(log.body == pattern(body, 99));
    }
}

/// The size a frame announces before it is encoded matches the encoding also where
/// the encoding cuts (a text or a field over `u16::MAX` bytes).
#[test]
fn encoded_len_counts_what_the_encoding_cuts() {
    let long = "x".repeat(70_000);
    let value = localtunnels_core::HeaderValue::from_str(&long).expect("a valid value");
    let frames = [
        Frame::Reset { id: 1, code: localtunnels_core::ResetCode::Cancel, message: long.clone() },
        Frame::Trailers { id: 1, headers: vec![(localtunnels_core::HeaderName::from_static("x-a"), value)] },
    ];
    for frame in frames {
        assert_eq!(frame.encoded_len(), Some(frame.encode().len()));
    }
}
