//! The WebSocket bridge (`websocket::bridge`) between a tunnel stream of two real
//! `Connection`s and a socket whose peer is a raw WebSocket end: its two halves share the
//! socket, so one half stalled on a full socket must not stall the other, and frames
//! queued by both halves must leave whole and in order.

// These run on `#[tokio::test]` runtimes, which have tokio's timers.
#![allow(clippy::disallowed_methods)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use localtunnels_core::{Config, Hello, Instant, RequestHead, ResponseHead, Session, StreamKind, Welcome};
use localtunnels_driver::websocket::{bridge, bridge_tapped, BridgeEnd, Leg, WsTap};
use localtunnels_driver::ws_codec::{Role, WsDecoder, WsEncoder, WsMessage};
use localtunnels_driver::ws_io::{read_message, write_all};
use localtunnels_driver::{ConnEvent, Connection, StreamEvent, StreamReceiver, StreamSender};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// How long any one step may take before the test fails (generous: a loaded machine).
const STEP: Duration = Duration::from_secs(20);

/// A server and a client connection, handshake done, and the client's events.
async fn pair() -> (Connection, Connection, localtunnels_driver::ConnEvents) {
    pair_with(Config::default()).await
}

/// [`pair`], the client's session configured by `client_config`.
async fn pair_with(client_config: Config) -> (Connection, Connection, localtunnels_driver::ConnEvents) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let epoch = std::time::Instant::now();
    let server = Session::server(Config::default(), Instant::ZERO);
    let hello = Hello { name: "t".into(), ..Hello::default() };
    let client = Session::client(client_config, hello, Instant::ZERO);
    let (server, mut server_events) = Connection::start(server, a, epoch);
    let (client, mut client_events) = Connection::start(client, b, epoch);
    while !matches!(server_events.recv().await.expect("server events"), ConnEvent::Hello(_)) {}
    server.accept(Welcome { name: "t".into(), ..Welcome::default() });
    while !matches!(client_events.recv().await.expect("client events"), ConnEvent::Welcome(_)) {}
    (server, client, client_events)
}

/// The client's side of the next stream the server opens, its WebSocket accepted.
async fn accept(events: &mut localtunnels_driver::ConnEvents) -> (StreamSender, StreamReceiver) {
    let Some(ConnEvent::Incoming { stream, .. }) = tokio::time::timeout(STEP, events.recv()).await.expect("in time")
    else {
        panic!("the client got no stream");
    };
    let (tx, rx) = stream.split();
    tx.respond(ResponseHead { status: 101, headers: vec![] }, false).expect("respond");
    (tx, rx)
}

/// The next WebSocket event on the tunnel's side, within [`STEP`].
async fn next_ws(rx: &mut StreamReceiver) -> StreamEvent {
    tokio::time::timeout(STEP, rx.recv()).await.expect("a stream event in time").expect("the stream is open")
}

#[tokio::test]
async fn a_stalled_socket_write_holds_neither_the_other_half_nor_the_frame_order() {
    let (server, _client, mut client_events) = pair().await;
    let head = ws_head();
    let (stx, mut srx) = server.open(head, false).expect("open").split();
    let Some(ConnEvent::Incoming { stream, .. }) = client_events.recv().await else {
        panic!("the client got no stream");
    };
    let (tx, rx) = stream.split();
    tx.respond(ResponseHead { status: 101, headers: vec![] }, false).expect("respond");
    assert!(matches!(next_ws(&mut srx).await, StreamEvent::Response { .. }));

    // The bridge runs on the client's side, towards an "origin" that is a raw server end
    // of a socket with little room: 256 bytes fill at the first message.
    let (near, mut origin) = tokio::io::duplex(256);
    let bridged = tokio::spawn(bridge(near, tx, rx, Leg::Origin, 1 << 20));

    // Messages towards the origin, which reads nothing yet: the bridge's write stalls.
    // They fit the stream window (1 MiB), so all are sent without the origin reading.
    let count = 40u8;
    for i in 0..count {
        stx.send_ws(true, Bytes::from(vec![i; 1000])).await.expect("send_ws");
    }

    // The other half still relays what the origin says.
    let mut origin_out = WsEncoder::new(Role::Server, || [0; 4]);
    origin_out.binary(Bytes::from_static(b"hello"));
    write_all(&mut origin_out, &mut origin).await.expect("origin write");
    match next_ws(&mut srx).await {
        StreamEvent::WsMessage { binary: true, fin: true, data } => assert_eq!(&data[..], b"hello"),
        other => panic!("expected the origin's message, got {other:?}"),
    }

    // A ping while the socket is still full: its pong is queued behind the frame being
    // written, and every frame then arrives whole and in order.
    origin.write_all(&[0x89, 0x01, b'p']).await.expect("ping");
    let mut origin_in = WsDecoder::new(Role::Server, 1 << 20);
    let mut next = 0u8;
    let mut pong = false;
    while next < count || !pong {
        let message = tokio::time::timeout(STEP, read_message(&mut origin_in, &mut origin))
            .await
            .expect("a frame in time")
            .expect("valid frames")
            .expect("the bridge keeps the socket open");
        match message {
            WsMessage::Binary(data) => {
                assert_eq!(data.len(), 1000);
                assert!(data.iter().all(|&b| b == next), "message {next} arrived out of order");
                next += 1;
            }
            WsMessage::Pong => pong = true,
            other => panic!("unexpected {other:?}"),
        }
    }

    // The origin closes: the close is relayed, answered, and the bridge ends.
    origin_out.close(1000);
    write_all(&mut origin_out, &mut origin).await.expect("origin close");
    match next_ws(&mut srx).await {
        StreamEvent::WsClose { code, .. } => assert_eq!(code, 1000),
        other => panic!("expected the close, got {other:?}"),
    }
    let answer = tokio::time::timeout(STEP, read_message(&mut origin_in, &mut origin)).await.expect("in time");
    assert!(matches!(answer, Ok(Some(WsMessage::Close(Some((1000, _)))))), "{answer:?}");
    stx.close_ws(1000, "").expect("close back");
    let end = tokio::time::timeout(STEP, bridged).await.expect("the bridge ends").expect("bridge task");
    assert_eq!(end, BridgeEnd::Closed(1000));
}

/// The bridge releases a message's credit once the message is written to its socket. A
/// bridge that ends while such a write stalls still gives it back, with what it never
/// read: the whole session window is free again for the next stream, which receives a
/// window's worth without releasing anything.
#[tokio::test]
async fn a_bridge_that_ends_mid_write_gives_back_the_credit_it_held() {
    // A bridge towards an origin that reads nothing: its write of the first message
    // stalls, and the other three wait unread.
    credit_comes_back_from_a_bridge_ended_mid_write(async |tx, rx| {
        let (near, origin) = tokio::io::duplex(256);
        (tokio::spawn(bridge(near, tx, rx, Leg::Origin, 1 << 20)), origin)
    })
    .await;
}

/// What a tap saw: (read from the socket, the message's length), in order.
#[derive(Default)]
struct Seen(Mutex<Vec<(bool, usize)>>);

impl WsTap for Seen {
    fn message(&self, from_socket: bool, _binary: bool, _first: bool, data: &[u8]) {
        self.0.lock().expect("seen").push((from_socket, data.len()));
    }
}

/// The tap (the client's inspector) sees each message after the bridge wrote it, but
/// in the order the messages went by, and a message whose write was still waiting
/// when the bridge ended is seen too.
#[tokio::test]
async fn a_tap_sees_every_message_in_order_even_one_whose_write_never_finished() {
    let (server, _client, mut client_events) = pair().await;
    let head = ws_head();
    let (stx, mut srx) = server.open(head, false).expect("open").split();
    let (tx, rx) = accept(&mut client_events).await;
    assert!(matches!(next_ws(&mut srx).await, StreamEvent::Response { .. }));
    let (near, mut origin) = tokio::io::duplex(256);
    let seen = Arc::new(Seen::default());
    let tap = seen.clone();
    let bridged = tokio::spawn(async move { bridge_tapped(near, tx, rx, Leg::Origin, 1 << 20, Some(&*tap)).await });

    // The origin's message is relayed and seen.
    let mut origin_out = WsEncoder::new(Role::Server, || [0; 4]);
    origin_out.binary(Bytes::from_static(b"hello"));
    write_all(&mut origin_out, &mut origin).await.expect("origin write");
    assert!(matches!(next_ws(&mut srx).await, StreamEvent::WsMessage { data, .. } if &data[..] == b"hello"));

    // One towards the origin, larger than the socket's room: its write stalls, and the
    // bridge ends before the origin reads it.
    stx.send_ws(true, Bytes::from(vec![7; 16 * 1024])).await.expect("send_ws");
    let mut first = [0u8; 1];
    tokio::time::timeout(STEP, origin.read_exact(&mut first)).await.expect("in time").expect("read");
    assert_eq!(first[0], 0x82, "a binary frame's first byte");
    bridged.abort();
    assert!(bridged.await.is_err_and(|e| e.is_cancelled()));
    assert_eq!(*seen.0.lock().expect("seen"), [(true, 5), (false, 16 * 1024)]);
}

/// Counts its wake-ups and tells a waiting test of each.
#[derive(Default)]
struct Counted {
    woken: std::sync::atomic::AtomicUsize,
    notify: tokio::sync::Notify,
}

impl std::task::Wake for Counted {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.notify.notify_one();
    }
}

/// `poll_recv_held_ahead` (the bridge's `down` half): a take that empties the queue
/// says so and leaves the poll's waker with the queue there and then, so the next
/// message wakes it with no poll in between (the bridge then skips the poll that would
/// find nothing); a take that leaves a message queued says so too, and the next poll
/// gets it at once.
#[tokio::test]
async fn a_take_that_empties_the_queue_leaves_its_waker_for_the_next_message() {
    use std::sync::atomic::Ordering;
    use std::task::{Context, Poll, Waker};

    let (server, _client, mut client_events) = pair().await;
    let head = ws_head();
    let (stx, mut srx) = server.open(head, false).expect("open").split();
    let (_tx, mut rx) = accept(&mut client_events).await;
    assert!(matches!(next_ws(&mut srx).await, StreamEvent::Response { .. }));
    let counted = Arc::new(Counted::default());
    let waker = Waker::from(counted.clone());
    let take = |rx: &mut StreamReceiver| match rx.poll_recv_held_ahead(&mut Context::from_waker(&waker)) {
        Poll::Ready(Some((StreamEvent::WsMessage { data, .. }, ahead))) => (data, ahead),
        other => panic!("expected a message, got {other:?}"),
    };

    // One message, queued (`poll_ready` does not take it), taken with the counted waker:
    // the queue is empty now and the waker is kept, not woken.
    stx.send_ws(true, Bytes::from_static(b"one")).await.expect("send_ws");
    tokio::time::timeout(STEP, std::future::poll_fn(|cx| rx.poll_ready(cx))).await.expect("queued in time");
    assert_eq!(take(&mut rx), (Bytes::from_static(b"one"), true));
    assert_eq!(counted.woken.load(Ordering::SeqCst), 0);

    // The next message wakes it, though nothing polled the receiver since.
    let woken = counted.notify.notified();
    stx.send_ws(true, Bytes::from_static(b"two")).await.expect("send_ws");
    tokio::time::timeout(STEP, woken).await.expect("the kept waker is woken");
    assert_eq!(counted.woken.load(Ordering::SeqCst), 1);

    // `two`, taken before anything else is sent: the queue is empty again.
    assert_eq!(take(&mut rx), (Bytes::from_static(b"two"), true));

    // `three` and the close: `three`'s arrival wakes the kept waker. Its take says
    // whether the close was queued behind it already: if so, the next poll has it at
    // once; if not, the close wakes the waker kept again.
    stx.send_ws(true, Bytes::from_static(b"three")).await.expect("send_ws");
    stx.close_ws(1000, "").expect("close");
    tokio::time::timeout(STEP, counted.notify.notified()).await.expect("woken by three");
    let (three, ahead) = take(&mut rx);
    assert_eq!(three, Bytes::from_static(b"three"));
    if ahead {
        tokio::time::timeout(STEP, counted.notify.notified()).await.expect("woken by the close");
    }
    match rx.poll_recv_held_ahead(&mut Context::from_waker(&waker)) {
        Poll::Ready(Some((StreamEvent::WsClose { code, .. }, _))) => assert_eq!(code, 1000),
        other => panic!("expected the close at once, got {other:?}"),
    }
}

/// A bridge on a plain TCP socket (`bridge_direct`) has the tunnel's reader write each
/// message to the socket itself. A visitor that does not read fills the socket: what
/// it does not take stays with the bridge, which writes it later, and the messages
/// after it queue on the stream (their credit held, so the sender stops at the window).
/// Once the visitor reads, every message arrives whole, once, and in order, and the
/// close after them.
#[tokio::test]
async fn a_direct_bridge_whose_visitor_does_not_read_queues_the_messages_in_order() {
    const MESSAGE: usize = 16 * 1024;
    // 3.2 MiB: more than the stream window (1 MiB) and the sockets' buffers together.
    const COUNT: u32 = 200;
    let (server, _client, mut client_events) = pair().await;
    let head = ws_head();
    let (stx, mut srx) = server.open(head, false).expect("open").split();
    let (tx, rx) = accept(&mut client_events).await;
    assert!(matches!(next_ws(&mut srx).await, StreamEvent::Response { .. }));

    let (mut visitor, near, second) = tcp_visitor(16 * 1024).await;
    let bridged = tokio::spawn(localtunnels_driver::websocket::bridge_direct(near, second, tx, rx, 1 << 20));

    // The messages, numbered; the test goes on once a window's worth is sent while the
    // visitor reads nothing.
    let (progress, mut sent) = tokio::sync::watch::channel(0u32);
    let sender = tokio::spawn(async move {
        for i in 0..COUNT {
            let mut message = vec![i.to_le_bytes()[0]; MESSAGE];
            message[..4].copy_from_slice(&i.to_be_bytes());
            stx.send_ws(true, Bytes::from(message)).await.expect("send_ws");
            progress.send_replace(i + 1);
        }
        stx
    });
    let window = 1024 * 1024 / MESSAGE as u32;
    tokio::time::timeout(STEP, sent.wait_for(|&n| n >= window)).await.expect("a window sent in time").expect("sender");
    assert!(*sent.borrow() < COUNT, "the sender did not stop at the window");

    let mut decoder = WsDecoder::new(Role::Client, 1 << 20);
    for i in 0..COUNT {
        let message = tokio::time::timeout(STEP, read_message(&mut decoder, &mut visitor))
            .await
            .expect("a message in time")
            .expect("valid frames")
            .expect("the bridge keeps the socket open");
        let WsMessage::Binary(data) = message else { panic!("unexpected {message:?}") };
        assert_eq!(data.len(), MESSAGE);
        assert_eq!(u32::from_be_bytes(data[..4].try_into().expect("four bytes")), i, "out of order");
        assert!(data[4..].iter().all(|&b| b == i.to_le_bytes()[0]), "message {i} mixed with another");
    }
    let stx = tokio::time::timeout(STEP, sender).await.expect("the sender ends").expect("sender task");

    // The close comes after them; the visitor's answer ends the bridge.
    stx.close_ws(1000, "").expect("close");
    let close = tokio::time::timeout(STEP, read_message(&mut decoder, &mut visitor)).await.expect("in time");
    assert!(matches!(close, Ok(Some(WsMessage::Close(Some((1000, _)))))), "{close:?}");
    let mut out = WsEncoder::new(Role::Client, || [1, 2, 3, 4]);
    out.close(1000);
    write_all(&mut out, &mut visitor).await.expect("close back");
    let end = tokio::time::timeout(STEP, bridged).await.expect("the bridge ends").expect("bridge task");
    assert_eq!(end, BridgeEnd::Closed(1000));
}

/// A loopback TCP connection whose two ends' buffers are `buffer` bytes: the visitor's
/// end, the near end, and a second descriptor of the near end (as the server's).
async fn tcp_visitor(buffer: u32) -> (tokio::net::TcpStream, tokio::net::TcpStream, std::net::TcpStream) {
    use std::os::fd::AsFd;
    let listening = tokio::net::TcpSocket::new_v4().expect("socket");
    listening.set_send_buffer_size(buffer).expect("send buffer");
    listening.bind("127.0.0.1:0".parse().expect("address")).expect("bind");
    let listener = listening.listen(1).expect("listen");
    let connecting = tokio::net::TcpSocket::new_v4().expect("socket");
    connecting.set_recv_buffer_size(buffer).expect("receive buffer");
    let (visitor, accepted) =
        tokio::join!(connecting.connect(listener.local_addr().expect("address")), listener.accept());
    let (visitor, (near, _)) = (visitor.expect("connect"), accepted.expect("accept"));
    let second = std::net::TcpStream::from(near.as_fd().try_clone_to_owned().expect("second descriptor"));
    (visitor, near, second)
}

/// A direct bridge (`bridge_direct`) ended while the reader's write of a message still
/// waits in it (the visitor reads nothing) and more messages wait unread gives back
/// all their credit: the whole session window is free again for the next stream.
#[tokio::test]
async fn a_direct_bridge_that_ends_mid_write_gives_back_the_credit() {
    // Buffers of 4 KiB: the first message does not go whole.
    credit_comes_back_from_a_bridge_ended_mid_write(async |tx, rx| {
        let (visitor, near, second) = tcp_visitor(4096).await;
        (tokio::spawn(localtunnels_driver::websocket::bridge_direct(near, second, tx, rx, 1 << 20)), visitor)
    })
    .await;
}

/// The credit tests' body: `start` bridges a stream towards a peer that reads nothing
/// (the bridge's task and the peer's end). Four messages that together are the session
/// window are sent; once the first frame's first byte arrives the bridge is aborted, and
/// a second stream must then get a whole window's worth without any release.
async fn credit_comes_back_from_a_bridge_ended_mid_write<R: AsyncRead + Unpin>(
    start: impl AsyncFnOnce(StreamSender, StreamReceiver) -> (tokio::task::JoinHandle<BridgeEnd>, R),
) {
    const WINDOW: u32 = 64 * 1024;
    const MESSAGE: usize = 16 * 1024;
    let config = Config { stream_window: WINDOW, session_window: WINDOW, ..Config::default() };
    let (server, _client, mut client_events) = pair_with(config).await;
    let (stx, mut srx) = server.open(ws_head(), false).expect("open").split();
    let (tx, rx) = accept(&mut client_events).await;
    assert!(matches!(next_ws(&mut srx).await, StreamEvent::Response { .. }));
    let (bridged, mut peer) = start(tx, rx).await;
    for i in 0..4u8 {
        stx.send_ws(true, Bytes::from(vec![i; MESSAGE])).await.expect("send_ws");
    }
    // The first message's frame is being written: the bridge holds it.
    let mut first = [0u8; 1];
    tokio::time::timeout(STEP, peer.read_exact(&mut first)).await.expect("in time").expect("read");
    assert_eq!(first[0], 0x82, "a binary frame's first byte");
    bridged.abort();
    assert!(bridged.await.is_err_and(|e| e.is_cancelled()));

    // A second stream gets a whole window's worth through without any release.
    a_window_goes_through(&server, &mut client_events, WINDOW, MESSAGE).await;
}

/// Opens a WebSocket stream on `server` and sends it four messages of `message` bytes:
/// the first `window` bytes of them arrive without the receiver releasing any credit.
async fn a_window_goes_through(
    server: &Connection,
    client_events: &mut localtunnels_driver::ConnEvents,
    window: u32,
    message: usize,
) {
    let (stx, _srx) = server.open(ws_head(), false).expect("open").split();
    let (_tx, mut rx) = accept(client_events).await;
    let sent = tokio::spawn(async move {
        for i in 0..4u8 {
            stx.send_ws(true, Bytes::from(vec![i; message])).await.expect("send_ws");
        }
        stx
    });
    let mut got = 0;
    while got < window as usize {
        let event = std::future::poll_fn(|cx| rx.poll_recv_held(cx));
        match tokio::time::timeout(STEP, event).await.expect("the window's bytes in time") {
            Some(StreamEvent::WsMessage { data, .. }) => got += data.len(),
            other => panic!("expected a message, got {other:?}"),
        }
    }
    assert_eq!(got, window as usize);
    tokio::time::timeout(STEP, sent).await.expect("sent in time").expect("sender");
}

/// A WebSocket stream's head: `GET /`, no fields.
fn ws_head() -> RequestHead {
    RequestHead { kind: StreamKind::WebSocket, method: "GET".into(), target: "/".into(), headers: vec![] }
}
