//! A hostile control connection: garbage, truncated and oversized frames, a wrong
//! protocol version, text messages, no hello at all, a flood of stream openings. Each
//! time that one session is closed with a protocol error code, and the server and an
//! honest tunnel on it carry on.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use localtunnels_core::{
    CloseCode, Config, DecodeLimits, Frame, Hello, Limits, RefuseReason, RequestHead, StreamKind, PROTOCOL_VERSION,
};
use localtunnels_server::{Limits as ServerLimits, ServerConfig, ServerHandle};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A raw control WebSocket to `server`, speaking no protocol by itself.
async fn raw(server: &ServerHandle) -> Ws {
    let mut req = format!("ws://127.0.0.1:{}/api/tunnel", server.addr().port()).into_client_request().unwrap();
    req.headers_mut().insert("sec-websocket-protocol", "localtunnels.v1".parse().unwrap());
    tokio_tungstenite::connect_async(req).await.expect("control upgrade").0
}

fn hello(version: u16, name: &str) -> Message {
    let h = Hello {
        version,
        name: name.to_string(),
        client_kind: "raw".into(),
        limits: Some(Limits::from(&Config::default())),
        ..Hello::default()
    };
    Message::Binary(Frame::Hello(Box::new(h)).encode())
}

/// A hello for `name` presenting an auth token and a reconnect token.
fn hello_with_proof(name: &str, token: &str, reconnect_token: &str) -> Message {
    let h = Hello {
        version: PROTOCOL_VERSION,
        name: name.to_string(),
        token: token.to_string(),
        reconnect_token: reconnect_token.to_string(),
        client_kind: "raw".into(),
        limits: Some(Limits::from(&Config::default())),
        ..Hello::default()
    };
    Message::Binary(Frame::Hello(Box::new(h)).encode())
}

/// The next protocol frame from the server; `None` once the connection ends.
async fn next_frame(ws: &mut Ws) -> Option<Frame> {
    let read = async {
        loop {
            match ws.next().await? {
                Ok(Message::Binary(b)) => {
                    let no_limits = DecodeLimits { max_frame: usize::MAX, max_header_bytes: usize::MAX };
                    return Some(Frame::decode(b, &no_limits).expect("the server sends valid frames"));
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read).await.expect("the server answers")
}

/// Reads until the server's CLOSE frame; returns its code and message.
async fn close_code(ws: &mut Ws) -> (CloseCode, String) {
    loop {
        match next_frame(ws).await {
            Some(Frame::Close { code, message }) => return (code, message),
            Some(_) => {}
            None => panic!("the connection ended without a CLOSE frame"),
        }
    }
}

/// Sends a hello and expects the welcome.
async fn established(server: &ServerHandle, name: &str) -> Ws {
    let mut ws = raw(server).await;
    ws.send(hello(PROTOCOL_VERSION, name)).await.unwrap();
    match next_frame(&mut ws).await {
        Some(Frame::Welcome(w)) => assert_eq!(w.name, name),
        other => panic!("expected a welcome, got {other:?}"),
    }
    ws
}

/// An honest tunnel, to show that it keeps working.
struct Honest {
    host: String,
    visitor: Visitor,
    _tunnel: localtunnels_client::ClientHandle,
}

impl Honest {
    async fn start(server: &ServerHandle) -> Honest {
        let port =
            origin(|_req: hyper::Request<hyper::body::Incoming>| async { hyper::Response::new(full("fine")) }).await;
        let tunnel = client(server, port, Some("honest")).await;
        Honest { host: host_of(&tunnel.url()), visitor: Visitor::new(server), _tunnel: tunnel }
    }

    async fn still_works(&self) {
        let (status, body) = self.visitor.get(&self.host, "/").await;
        assert_eq!((status, &body[..]), (200, &b"fine"[..]));
    }
}

#[tokio::test]
async fn garbage_before_the_hello_is_a_protocol_error() {
    let server = server().await;
    let honest = Honest::start(&server).await;
    let mut ws = raw(&server).await;
    ws.send(Message::Binary(Bytes::from_static(b"\xff\x00garbage\x13\x37"))).await.unwrap();
    assert_eq!(close_code(&mut ws).await.0, CloseCode::ProtocolError);
    let mut ws = raw(&server).await;
    ws.send(Message::Binary(Bytes::new())).await.unwrap();
    assert_eq!(close_code(&mut ws).await.0, CloseCode::ProtocolError);
    honest.still_works().await;
}

#[tokio::test]
async fn truncated_frames_and_text_messages_are_protocol_errors() {
    let server = server().await;
    let honest = Honest::start(&server).await;
    let mut ws = established(&server, "truncated").await;
    ws.send(Message::Binary(Bytes::from_static(&[0x10, 0, 0]))).await.unwrap();
    assert_eq!(close_code(&mut ws).await.0, CloseCode::ProtocolError);

    let mut ws = established(&server, "texty").await;
    ws.send(Message::Text("hello?".into())).await.unwrap();
    assert_eq!(close_code(&mut ws).await.0, CloseCode::ProtocolError);

    // A hello that stops in the middle of its magic.
    let mut ws = raw(&server).await;
    ws.send(Message::Binary(Bytes::from_static(&[0x01, 0, 0, 0, 0, b'L', b'T']))).await.unwrap();
    assert_eq!(close_code(&mut ws).await.0, CloseCode::ProtocolError);
    honest.still_works().await;
}

#[tokio::test]
async fn oversized_frames_close_the_session_with_frame_too_large() {
    let server = server().await;
    let honest = Honest::start(&server).await;
    let max = usize::try_from(ServerConfig::default().session.max_frame).unwrap();
    // One byte over: the core sees it and refuses it.
    let mut ws = established(&server, "big").await;
    ws.send(Message::Binary(Bytes::from(vec![0x12; max + 1]))).await.unwrap();
    assert_eq!(close_code(&mut ws).await.0, CloseCode::FrameTooLarge);
    // Far over: refused by the WebSocket layer before it is buffered, same verdict.
    let mut ws = established(&server, "bigger").await;
    let _ = ws.send(Message::Binary(Bytes::from(vec![0x12; 4 << 20]))).await;
    assert_eq!(close_code(&mut ws).await.0, CloseCode::FrameTooLarge);
    honest.still_works().await;
}

#[tokio::test]
async fn another_protocol_version_is_refused_cleanly() {
    let server = server().await;
    let honest = Honest::start(&server).await;
    let mut ws = raw(&server).await;
    ws.send(hello(PROTOCOL_VERSION + 1, "future")).await.unwrap();
    match next_frame(&mut ws).await {
        Some(Frame::Refuse { reason, message }) => {
            assert_eq!(reason, RefuseReason::VersionUnsupported);
            assert!(message.contains("version"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Not a localtunnels hello at all (bad magic).
    let mut ws = raw(&server).await;
    ws.send(Message::Binary(Bytes::from_static(&[0x01, 0, 0, 0, 0, b'H', b'T', b'T', b'P', 0, 1]))).await.unwrap();
    assert_eq!(close_code(&mut ws).await.0, CloseCode::ProtocolError);
    honest.still_works().await;
}

#[tokio::test]
async fn a_flood_of_stream_openings_closes_that_session() {
    let server = server().await;
    let honest = Honest::start(&server).await;
    let mut ws = established(&server, "flood").await;
    let head = RequestHead { kind: StreamKind::Http, method: "GET".into(), target: "/".into(), headers: vec![] };
    for i in 0..2000u32 {
        let open = Frame::Open { id: 2 * i + 1, head: head.clone(), end: true };
        if ws.feed(Message::Binary(open.encode())).await.is_err() {
            break;
        }
    }
    let _ = ws.flush().await;
    let (code, message) = close_code(&mut ws).await;
    assert!(matches!(code, CloseCode::ProtocolError | CloseCode::TooManyStreams), "{code:?}: {message}");
    honest.still_works().await;
    // The abusive session is gone; the honest one stays.
    tokio::time::timeout(Duration::from_secs(20), async {
        while server.stats().tunnels != 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("only the honest tunnel is left");
}

#[tokio::test]
async fn a_connection_that_never_says_hello_is_closed() {
    let server = server_with(ServerConfig {
        limits: ServerLimits { handshake_timeout: Duration::from_millis(200), ..ServerLimits::default() },
        ..ServerConfig::default()
    })
    .await;
    let honest = Honest::start(&server).await;
    let mut ws = raw(&server).await;
    assert_eq!(close_code(&mut ws).await.0, CloseCode::Timeout);
    honest.still_works().await;
}

/// Issue 17: a shared auth token must not take over a live tunnel.
#[tokio::test]
async fn only_the_sessions_reconnect_token_takes_over_a_live_name() {
    let server = server_with(ServerConfig {
        tokens: vec![localtunnels_server::AuthToken::new("team-token")],
        ..ServerConfig::default()
    })
    .await;
    let mut first = raw(&server).await;
    first.send(hello_with_proof("live", "team-token", "")).await.unwrap();
    let Some(Frame::Welcome(welcome)) = next_frame(&mut first).await else { panic!("expected a welcome") };

    // The same auth token without the session's reconnect token, or with a wrong one.
    for reconnect_token in ["", "0123456789abcdef0123456789abcdef"] {
        let mut ws = raw(&server).await;
        ws.send(hello_with_proof("live", "team-token", reconnect_token)).await.unwrap();
        match next_frame(&mut ws).await {
            Some(Frame::Refuse { reason, .. }) => assert_eq!(reason, RefuseReason::NameTaken),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    // The session's own reconnect token (the same client reconnecting before the server
    // noticed its old connection die) takes over, and the old session is told.
    let mut second = raw(&server).await;
    second.send(hello_with_proof("live", "team-token", &welcome.reconnect_token)).await.unwrap();
    match next_frame(&mut second).await {
        Some(Frame::Welcome(w)) => assert_eq!(w.name, "live"),
        other => panic!("expected a welcome, got {other:?}"),
    }
    assert_eq!(close_code(&mut first).await.0, CloseCode::Replaced);
}

/// `max_control_queue` over real sockets: a client that says hello and then reads nothing, on a
/// socket whose receive buffer is small, while visitors keep sending requests with large heads.
/// The server queues their openings for it only up to the bound, then closes that session with
/// `SlowReader` (the CLOSE is the last frame the client finds once it reads again); the visitors
/// get an answer instead of waiting, and an honest tunnel on the same server is untouched.
#[tokio::test]
async fn a_client_that_reads_nothing_is_closed_past_the_control_queue_bound() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const BOUND: u32 = 64 * 1024;
    let server = server_with(ServerConfig {
        session: Config { max_control_queue: BOUND, ..Config::default() },
        limits: ServerLimits { max_streams_per_visitor: 4096, ..ServerLimits::default() },
        ..ServerConfig::default()
    })
    .await;
    let honest = Honest::start(&server).await;

    // The silent client: a 4 KiB receive buffer, so the kernel holds little on its behalf.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr()).await.unwrap();
    let mut req = format!("ws://127.0.0.1:{}/api/tunnel", server.addr().port()).into_client_request().unwrap();
    req.headers_mut().insert("sec-websocket-protocol", "localtunnels.v1".parse().unwrap());
    let mut ws: Ws = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(stream)).await.unwrap().0;
    ws.send(hello(PROTOCOL_VERSION, "silent")).await.unwrap();
    let host = match next_frame(&mut ws).await {
        Some(Frame::Welcome(w)) => host_of(&w.url),
        other => panic!("expected a welcome, got {other:?}"),
    };

    // Visitors with 30 KB heads, one connection each, until one of them is answered: the
    // session closed. Each opening the client leaves unread adds ~30 KB to the queue; each
    // visitor is sent once the server has read the previous one's head.
    let padding = "p".repeat(30_000);
    let (answers, mut answered) = tokio::sync::mpsc::unbounded_channel();
    let answer = tokio::time::timeout(Duration::from_secs(60), async {
        for sent in 1..=1000u64 {
            let requests = server.stats().requests;
            let mut v = TcpStream::connect(server.addr()).await.unwrap();
            let head = format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-Padding: {padding}\r\n\r\n");
            v.write_all(head.as_bytes()).await.unwrap();
            let answers = answers.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                if let Ok(n @ 1..) = v.read(&mut buf).await {
                    let _ = answers.send(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
                v // kept open until answered
            });
            loop {
                if let Ok(answer) = answered.try_recv() {
                    return answer;
                }
                if server.stats().requests > requests {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            assert!(sent < 1000, "1,000 heads of 30 KB queued for a client that reads nothing");
        }
        unreachable!()
    })
    .await
    .expect("the server closes the silent session");
    assert!(answer.starts_with("HTTP/1.1 5"), "a visitor of the closed tunnel gets an error: {answer}");

    // Now the client reads: past the openings that reached it, the CLOSE.
    let (code, message) = close_code(&mut ws).await;
    assert_eq!(code, CloseCode::SlowReader, "{message}");
    assert!(message.contains(&BOUND.to_string()), "the message names the bound: {message}");
    honest.still_works().await;
}
