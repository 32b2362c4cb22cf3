//! WebSocket passthrough, end to end on loopback: a visitor's WebSocket to
//! `<name>.localhost` reaches the origin's WebSocket server through the tunnel and
//! behaves, for both ends, as if they were connected directly.

mod common;
mod websocket_util;

use bytes::Bytes;
use common::*;
use futures_util::SinkExt;
use localtunnels_client::{ClientConfig, TunnelClient};
use localtunnels_server::ServerConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use websocket_util::*;

/// A text of about `len` bytes with one-, two-, three- and four-byte characters.
fn text(len: usize) -> String {
    let mut s = String::with_capacity(len + 4);
    for c in "aé€😀 wörld ".chars().cycle() {
        if s.len() + c.len_utf8() > len {
            break;
        }
        s.push(c);
    }
    s
}

async fn next_data(ws: &mut Ws) -> Message {
    match next_message(ws).await {
        Some(Ok(m)) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

#[tokio::test]
async fn messages_from_0_bytes_to_several_mib_echo_both_ways() {
    let server = server().await;
    let tunnel = client(&server, echo_origin().await, Some("echo")).await;
    let mut ws = visit(&server, &ws_url(&tunnel.url(), "/echo")).await;

    // Pings are answered by the server's end of the visitor's socket.
    ws.send(Message::Ping(Bytes::from_static(b"are you there"))).await.unwrap();
    match futures_util::StreamExt::next(&mut ws).await {
        Some(Ok(Message::Pong(p))) => assert_eq!(&p[..], b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }

    for size in [0, 1, 125, 126, 65_535, 65_536, 65_537, 300_000, 5 << 20] {
        let binary = Bytes::from(pattern(size, size as u8));
        ws.send(Message::Binary(binary.clone())).await.unwrap();
        assert_eq!(next_data(&mut ws).await, Message::Binary(binary), "binary of {size} bytes");
        let text = text(size);
        ws.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(next_data(&mut ws).await, Message::text(text), "text of about {size} bytes");
    }

    // Many messages in flight at once keep their order.
    for i in 0..200 {
        ws.send(Message::text(format!("message {i}"))).await.unwrap();
    }
    for i in 0..200 {
        assert_eq!(next_data(&mut ws).await, Message::text(format!("message {i}")));
    }
    ws.send(close(1000, "done")).await.unwrap();
    expect_close(&mut ws, 1000, "done").await;
}

/// Messages in flight by the hundred, many stream windows' worth, each way at once:
/// every byte's credit comes back (the client grants a relayed message's bytes at the
/// end of the reader's turn that wrote it, `Shared::note_release`), so none of them
/// waits for credit that never returns, and they arrive in order.
#[tokio::test]
async fn a_stream_of_messages_many_windows_long_flows_without_stalling() {
    let server = server().await;
    let tunnel = client(&server, echo_origin().await, Some("flood")).await;
    let ws = visit(&server, &ws_url(&tunnel.url(), "/echo")).await;
    let (mut sink, mut stream) = futures_util::StreamExt::split(ws);
    // 384 messages of 16 KiB and 300 small ones: 6 MiB, six stream windows.
    let message = |i: usize| match i % 9 {
        0 => Message::text(format!("small {i}")),
        _ => Message::Binary(Bytes::from(pattern(16 * 1024, i as u8))),
    };
    let count = 684;
    let send = async {
        for i in 0..count {
            sink.send(message(i)).await.unwrap();
        }
        sink
    };
    let receive = async {
        for i in 0..count {
            let got = loop {
                match futures_util::StreamExt::next(&mut stream).await {
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(m)) => break m,
                    other => panic!("message {i}: {other:?}"),
                }
            };
            assert_eq!(got, message(i), "message {i}");
        }
    };
    let both = async { tokio::join!(send, receive).0 };
    let mut sink = tokio::time::timeout(std::time::Duration::from_secs(60), both).await.expect("a stall");
    sink.send(close(1000, "done")).await.unwrap();
}

#[tokio::test]
async fn fragmented_messages_arrive_whole_even_when_cut_inside_a_character() {
    let server = server().await;
    let (port, mut accepted) = ws_origin(OriginOptions::default()).await;
    let tunnel = client(&server, port, None).await;
    let mut visitor = visit(&server, &ws_url(&tunnel.url(), "/")).await;
    let mut origin = accepted.recv().await.unwrap().ws;

    // The visitor sends "héllo" in three fragments, the first cut inside 'é'.
    let word = "héllo".as_bytes();
    let parts =
        [(&word[..2], Data::Text, false), (&word[2..4], Data::Continue, false), (&word[4..], Data::Continue, true)];
    for (part, op, fin) in parts {
        let frame = Frame::message(Bytes::copy_from_slice(part), OpCode::Data(op), fin);
        visitor.send(Message::Frame(frame)).await.unwrap();
    }
    assert_eq!(next_data(&mut origin).await, Message::text("héllo"));

    // The origin answers with a binary message in fragments, a ping in between.
    let frames = [
        Message::Frame(Frame::message(Bytes::from_static(b"\x00\x01"), OpCode::Data(Data::Binary), false)),
        Message::Ping(Bytes::from_static(b"p")),
        Message::Frame(Frame::message(Bytes::from_static(b""), OpCode::Data(Data::Continue), false)),
        Message::Frame(Frame::message(Bytes::from_static(b"\xff"), OpCode::Data(Data::Continue), true)),
    ];
    for f in frames {
        origin.send(f).await.unwrap();
    }
    assert_eq!(next_data(&mut visitor).await, Message::Binary(Bytes::from_static(b"\x00\x01\xff")));
}

#[tokio::test]
async fn invalid_utf8_in_a_text_message_closes_both_legs_with_1007() {
    let server = server().await;
    let (port, mut accepted) = ws_origin(OriginOptions::default()).await;
    let tunnel = client(&server, port, None).await;
    let bad = || Message::Frame(Frame::message(Bytes::from_static(b"ok \xc3\x28"), OpCode::Data(Data::Text), true));

    // From the visitor: the server's leg refuses it.
    let mut visitor = visit(&server, &ws_url(&tunnel.url(), "/")).await;
    let mut origin = accepted.recv().await.unwrap().ws;
    visitor.send(bad()).await.unwrap();
    tokio::join!(
        expect_close(&mut visitor, 1007, "invalid UTF-8 in a text message"),
        expect_close(&mut origin, 1007, "invalid UTF-8 in a text message")
    );

    // From the origin: the client's leg refuses it.
    let mut visitor = visit(&server, &ws_url(&tunnel.url(), "/")).await;
    let mut origin = accepted.recv().await.unwrap().ws;
    origin.send(bad()).await.unwrap();
    tokio::join!(
        expect_close(&mut origin, 1007, "invalid UTF-8 in a text message"),
        expect_close(&mut visitor, 1007, "invalid UTF-8 in a text message")
    );
}

#[tokio::test]
async fn close_codes_and_reasons_travel_both_ways() {
    let server = server().await;
    let (port, mut accepted) = ws_origin(OriginOptions::default()).await;
    let tunnel = client(&server, port, None).await;
    let url = ws_url(&tunnel.url(), "/");

    // The visitor closes: the origin sees its code and reason; the visitor gets its
    // close answered.
    for (code, reason) in [(1000, "bye"), (1001, "tab closed"), (4000, "application code"), (3999, "")] {
        let mut visitor = visit(&server, &url).await;
        let mut origin = accepted.recv().await.unwrap().ws;
        visitor.send(close(code, reason)).await.unwrap();
        tokio::join!(expect_close(&mut origin, code, reason), expect_close(&mut visitor, code, reason));
    }

    // The origin closes.
    for (code, reason) in [(1000, "done"), (1011, "oops"), (4999, "é".repeat(60).as_str())] {
        let mut visitor = visit(&server, &url).await;
        let mut origin = accepted.recv().await.unwrap().ws;
        origin.send(close(code, reason)).await.unwrap();
        tokio::join!(expect_close(&mut visitor, code, reason), expect_close(&mut origin, code, reason));
    }

    // A close without a code stays without a code.
    let mut visitor = visit(&server, &url).await;
    let mut origin = accepted.recv().await.unwrap().ws;
    visitor.send(Message::Close(None)).await.unwrap();
    assert_eq!(next_data(&mut origin).await, Message::Close(None));
}

/// Rule breakers on either leg: the leg that reads the bad frame closes its socket with
/// 1002 (1007 for a close reason that is not UTF-8) and tells the other end the same.
#[tokio::test]
async fn websocket_protocol_violations_close_both_legs_with_the_matching_code() {
    use tokio::io::AsyncWriteExt;
    let server = server().await;
    let (port, mut accepted) = ws_origin(OriginOptions::default()).await;
    let tunnel = client(&server, port, None).await;
    let url = ws_url(&tunnel.url(), "/");
    const PROTOCOL: &str = "WebSocket protocol error";
    // Raw frames: unmasked binary "hi" (a client must mask), masked binary "hi" (a
    // server must not), a reserved opcode, and close frames with a code nobody may
    // send (1005) and with a reason that is not UTF-8, masked or not as the leg needs.
    let unmasked = || vec![0x82, 2, b'h', b'i'];
    let masked = |mut f: Vec<u8>| {
        f[1] |= 0x80;
        f.splice(2..2, [0, 0, 0, 0]); // A zero key leaves the payload as it is.
        f
    };
    let cases = [
        ("a frame masked the wrong way", unmasked(), masked(unmasked()), 1002, PROTOCOL),
        ("a reserved opcode", masked(vec![0x83, 0]), vec![0x83, 0], 1002, PROTOCOL),
        ("close code 1005", masked(vec![0x88, 2, 0x03, 0xED]), vec![0x88, 2, 0x03, 0xED], 1002, "Protocol violation"),
        (
            "a close reason that is not UTF-8",
            masked(vec![0x88, 3, 0x03, 0xE8, 0xFF]),
            vec![0x88, 3, 0x03, 0xE8, 0xFF],
            1007,
            "invalid UTF-8 in a close reason",
        ),
    ];
    for (what, from_visitor, from_origin, code, reason) in cases {
        // From the visitor: the server's leg reads it.
        let mut visitor = visit(&server, &url).await;
        let mut origin = accepted.recv().await.unwrap().ws;
        visitor.get_mut().write_all(&from_visitor).await.unwrap();
        eprintln!("{what}, from the visitor");
        tokio::join!(expect_close(&mut visitor, code, reason), expect_close(&mut origin, code, reason));
        // From the origin: the client's leg reads it.
        let mut visitor = visit(&server, &url).await;
        let mut origin = accepted.recv().await.unwrap().ws;
        origin.get_mut().write_all(&from_origin).await.unwrap();
        eprintln!("{what}, from the origin");
        tokio::join!(expect_close(&mut origin, code, reason), expect_close(&mut visitor, code, reason));
    }

    // Pings from the origin are answered by the client, and the tunnel goes on.
    let mut visitor = visit(&server, &url).await;
    let mut origin = accepted.recv().await.unwrap().ws;
    origin.send(Message::Ping(Bytes::from_static(b"still there?"))).await.unwrap();
    match futures_util::StreamExt::next(&mut origin).await {
        Some(Ok(Message::Pong(p))) => assert_eq!(&p[..], b"still there?"),
        other => panic!("expected a pong, got {other:?}"),
    }
    visitor.send(Message::text("after the ping")).await.unwrap();
    assert_eq!(next_data(&mut origin).await, Message::text("after the ping"));
}

#[tokio::test]
async fn subprotocols_cookies_and_the_path_reach_the_origin_and_its_answer_the_visitor() {
    let server = server().await;
    let options = OriginOptions {
        protocols: vec!["chat.v2".into()],
        headers: vec![("set-cookie".into(), "session=abc".into()), ("x-origin".into(), "yes".into())],
        ..OriginOptions::default()
    };
    let (port, mut accepted) = ws_origin(options).await;
    let tunnel = client(&server, port, None).await;
    let url = ws_url(&tunnel.url(), "/room/7?user=ann&x=%20y");
    let headers = vec![
        ("sec-websocket-protocol", "chat.v1, chat.v2"),
        ("cookie", "theme=dark"),
        ("origin", "https://example.com"),
        ("x-custom", "1"),
    ];
    let (mut visitor, res) = visit_with(&server, &url, VisitOptions { headers, ..Default::default() }).await.unwrap();
    assert_eq!(res.headers()["sec-websocket-protocol"], "chat.v2");
    assert_eq!(res.headers()["set-cookie"], "session=abc");
    assert_eq!(res.headers()["x-origin"], "yes");

    let Accepted { request, ws: mut origin } = accepted.recv().await.unwrap();
    assert_eq!(request.uri(), "/room/7?user=ann&x=%20y");
    let h = request.headers();
    assert_eq!(h["sec-websocket-protocol"], "chat.v1, chat.v2");
    assert_eq!(h["cookie"], "theme=dark");
    assert_eq!(h["origin"], "https://example.com");
    assert_eq!(h["x-custom"], "1");
    assert_eq!(h["host"], format!("127.0.0.1:{port}").as_str(), "Host is rewritten to the origin's");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-host"], host_of(&tunnel.url()).as_str());
    // Each leg negotiates its own key.
    assert_ne!(h.get("sec-websocket-key"), None);

    origin.send(Message::text("welcome")).await.unwrap();
    assert_eq!(next_data(&mut visitor).await, Message::text("welcome"));

    // Offering nothing the origin speaks: the origin picks none, and neither does the
    // answer (tungstenite's client would refuse that answer, so a raw request asks).
    let (status, headers, _) =
        upgrade_request(&Visitor::new(&server), &host_of(&tunnel.url()), "/", &[("sec-websocket-protocol", "mqtt")])
            .await;
    assert_eq!(status, 101);
    assert_eq!(headers.get("sec-websocket-protocol"), None);
    assert_eq!(headers["set-cookie"], "session=abc");
}

#[tokio::test]
async fn an_origin_choosing_a_subprotocol_nobody_offered_is_a_bad_gateway() {
    let server = server().await;
    let options =
        OriginOptions { headers: vec![("sec-websocket-protocol".into(), "evil".into())], ..Default::default() };
    let (port, _accepted) = ws_origin(options).await;
    let tunnel = client(&server, port, None).await;
    let headers = vec![("sec-websocket-protocol", "good")];
    let url = ws_url(&tunnel.url(), "/");
    match visit_with(&server, &url, VisitOptions { headers, ..Default::default() }).await {
        Err(WsError::Http(res)) => assert_eq!(res.status(), 502),
        other => panic!("expected 502, got {other:?}"),
    }
}

/// A raw upgrade request through the hyper visitor, so the whole response body is read.
async fn upgrade_request(
    visitor: &Visitor,
    host: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> (u16, hyper::HeaderMap, Bytes) {
    use http_body_util::BodyExt;
    let mut req = hyper::Request::get(path)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(full(Bytes::new()))
        .unwrap();
    for (n, v) in extra {
        req.headers_mut().insert(hyper::header::HeaderName::from_bytes(n.as_bytes()).unwrap(), v.parse().unwrap());
    }
    let res = visitor.send(host, req).await;
    if res.status() == 101 {
        return (101, res.headers().clone(), Bytes::new());
    }
    let (status, headers) = (res.status().as_u16(), res.headers().clone());
    (status, headers, res.into_body().collect().await.unwrap().to_bytes())
}

#[tokio::test]
async fn a_refused_upgrade_reaches_the_visitor_with_its_status_and_body() {
    let server = server().await;
    let port = origin(|req: hyper::Request<hyper::body::Incoming>| async move {
        let (status, body) = match req.uri().path() {
            "/admin" => (403, "members only".repeat(10_000)),
            _ => (404, "no WebSocket here".to_string()),
        };
        let mut res = hyper::Response::new(full(body));
        *res.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        res.headers_mut().insert("x-why", "policy".parse().unwrap());
        res
    })
    .await;
    let tunnel = client(&server, port, None).await;
    let visitor = Visitor::new(&server);
    let host = host_of(&tunnel.url());
    let (status, headers, body) = upgrade_request(&visitor, &host, "/admin", &[]).await;
    assert_eq!(status, 403);
    assert_eq!(headers["x-why"], "policy");
    assert_eq!(body, "members only".repeat(10_000).as_bytes());
    let (status, _, body) = upgrade_request(&visitor, &host, "/chat", &[]).await;
    assert_eq!((status, &body[..]), (404, &b"no WebSocket here"[..]));

    // A tungstenite visitor sees the refusal as an HTTP error with that status.
    match visit_with(&server, &ws_url(&tunnel.url(), "/admin"), VisitOptions::default()).await {
        Err(WsError::Http(res)) => assert_eq!(res.status(), 403),
        other => panic!("expected 403, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_origin_or_an_unknown_tunnel_answers_the_upgrade_with_an_error() {
    let server = server().await;
    // A port with nothing listening: bind one, then free it.
    let port = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let tunnel = client(&server, port, None).await;
    let visitor = Visitor::new(&server);
    let (status, _, body) = upgrade_request(&visitor, &host_of(&tunnel.url()), "/", &[]).await;
    assert_eq!(status, 502, "{body:?}");
    let (status, _, _) = upgrade_request(&visitor, &host_of(&server.tunnel_url("nobody")), "/", &[]).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_visitor_that_vanishes_gets_the_origin_a_going_away_close() {
    let server = server().await;
    let (port, mut accepted) = ws_origin(OriginOptions::default()).await;
    let tunnel = client(&server, port, None).await;
    let mut visitor = visit(&server, &ws_url(&tunnel.url(), "/")).await;
    let mut origin = accepted.recv().await.unwrap().ws;
    visitor.send(Message::text("hi")).await.unwrap();
    assert_eq!(next_data(&mut origin).await, Message::text("hi"));
    drop(visitor); // No close frame: the TCP connection just ends.
    expect_close(&mut origin, 1001, "the visitor went away").await;
}

#[tokio::test]
async fn an_origin_that_vanishes_drops_the_visitor_without_a_close() {
    let server = server().await;
    let (port, mut accepted) = ws_origin(OriginOptions::default()).await;
    let tunnel = client(&server, port, None).await;
    let mut visitor = visit(&server, &ws_url(&tunnel.url(), "/")).await;
    let mut origin = accepted.recv().await.unwrap().ws;
    origin.send(Message::text("hi")).await.unwrap();
    assert_eq!(next_data(&mut visitor).await, Message::text("hi"));
    drop(origin);
    expect_abnormal_end(&mut visitor).await;
}

#[tokio::test]
async fn a_killed_tunnel_client_drops_the_visitor_without_a_close() {
    let server = server().await;
    let (port, mut accepted) = ws_origin(OriginOptions::default()).await;
    let server_url = format!("http://127.0.0.1:{}", server.addr().port());
    let mut cli =
        Cli::spawn(&["client", "--server", &server_url, "--local-port", &port.to_string(), "--subdomain", "k"]);
    let url = cli.line().await;
    let mut visitor = visit(&server, &ws_url(&url, "/")).await;
    let mut origin = accepted.recv().await.unwrap().ws;
    visitor.send(Message::text("hi")).await.unwrap();
    assert_eq!(next_data(&mut origin).await, Message::text("hi"));
    cli.child.kill().await.unwrap(); // SIGKILL: no goodbye of any kind.
    expect_abnormal_end(&mut visitor).await;
    expect_abnormal_end(&mut origin).await;
}

#[tokio::test]
async fn messages_over_the_size_limit_close_both_legs_with_1009() {
    const MAX: usize = 64 * 1024;
    let config = ServerConfig { max_ws_message: MAX, ..ServerConfig::default() };
    let server = server_with(config).await;
    let (port, mut accepted) = ws_origin(OriginOptions::default()).await;
    let connect = |max| {
        let config = ClientConfig { max_ws_message: max, ..client_config(&server, port) };
        TunnelClient::new(config).connect()
    };
    let tunnel = connect(MAX).await.unwrap();
    let url = ws_url(&tunnel.url(), "/");

    // Exactly the limit passes both ways.
    let mut visitor = visit(&server, &url).await;
    let mut origin = accepted.recv().await.unwrap().ws;
    let max = Message::Binary(pattern(MAX, 1).into());
    visitor.send(max.clone()).await.unwrap();
    assert_eq!(next_data(&mut origin).await, max);
    origin.send(max.clone()).await.unwrap();
    assert_eq!(next_data(&mut visitor).await, max);

    // One byte more from the visitor: the server's leg closes both.
    visitor.send(Message::Binary(pattern(MAX + 1, 2).into())).await.unwrap();
    tokio::join!(
        expect_close(&mut visitor, 1009, "message too big"),
        expect_close(&mut origin, 1009, "message too big")
    );

    // One byte more from the origin: the client's leg closes both.
    let mut visitor = visit(&server, &url).await;
    let mut origin = accepted.recv().await.unwrap().ws;
    origin.send(Message::text("x".repeat(MAX + 1))).await.unwrap();
    tokio::join!(
        expect_close(&mut origin, 1009, "message too big"),
        expect_close(&mut visitor, 1009, "message too big")
    );
    tunnel.close().await;

    // A client with a larger limit than the server's: the server checks what crosses
    // the tunnel, fragment by fragment.
    let tunnel = connect(4 * MAX).await.unwrap();
    let mut visitor = visit(&server, &ws_url(&tunnel.url(), "/")).await;
    let mut origin = accepted.recv().await.unwrap().ws;
    origin.send(Message::Binary(pattern(2 * MAX, 3).into())).await.unwrap();
    let reason = format!("message larger than {MAX} bytes");
    tokio::join!(expect_close(&mut visitor, 1009, &reason), expect_close(&mut origin, 1009, &reason));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_websockets_at_once_through_one_tunnel_lose_nothing() {
    const SOCKETS: usize = 1000;
    const MESSAGES: usize = 4;
    // Every socket comes from 127.0.0.1: lift the per-visitor-address cap (default 256).
    let limits = localtunnels_server::Limits { max_streams_per_visitor: SOCKETS, ..Default::default() };
    let server = server_with(ServerConfig { limits, ..ServerConfig::default() }).await;
    let tunnel = client(&server, echo_origin().await, None).await;
    let url = ws_url(&tunnel.url(), "/");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..SOCKETS {
        let (server_addr, url) = (server.addr(), url.clone());
        tasks.spawn(async move {
            let mut ws = visit_addr(server_addr, &url).await;
            for j in 0..MESSAGES {
                ws.send(Message::text(format!("{i}:{j}"))).await.unwrap();
            }
            ws.send(Message::Binary(pattern(i, i as u8).into())).await.unwrap();
            for j in 0..MESSAGES {
                assert_eq!(next_data(&mut ws).await, Message::text(format!("{i}:{j}")));
            }
            assert_eq!(next_data(&mut ws).await, Message::Binary(pattern(i, i as u8).into()));
            ws.send(close(1000, "")).await.unwrap();
            expect_close(&mut ws, 1000, "").await;
        });
    }
    let mut done = 0;
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
        done += 1;
    }
    assert_eq!(done, SOCKETS);
}

#[tokio::test]
async fn an_https_origin_gets_its_websocket_over_tls() {
    use tokio_rustls::rustls;
    // A wss:// origin with a self-signed certificate.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let tls = acceptor.accept(tcp).await.unwrap();
                let ws = tokio_tungstenite::accept_async(tls).await.unwrap();
                let (mut sink, mut stream) = futures_util::StreamExt::split(ws);
                while let Some(Ok(msg)) = futures_util::StreamExt::next(&mut stream).await {
                    if msg.is_text() {
                        let reply = format!("tls: {}", msg.into_text().unwrap());
                        sink.send(Message::text(reply)).await.unwrap();
                    }
                }
            });
        }
    });

    let server = server().await;
    let config = ClientConfig { local_https: true, allow_invalid_cert: true, ..client_config(&server, port) };
    let tunnel = TunnelClient::new(config).connect().await.unwrap();
    let mut visitor = visit(&server, &ws_url(&tunnel.url(), "/secure")).await;
    visitor.send(Message::text("hello")).await.unwrap();
    assert_eq!(next_data(&mut visitor).await, Message::text("tls: hello"));
}

#[tokio::test]
async fn an_in_process_service_refuses_websockets_with_501() {
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "plain HTTP only" }));
    let server = server().await;
    let tunnel = TunnelClient::with_service(client_config(&server, 1), app).connect().await.unwrap();
    let visitor = Visitor::new(&server);
    let (status, _, body) = upgrade_request(&visitor, &host_of(&tunnel.url()), "/", &[]).await;
    assert_eq!(status, 501);
    assert_eq!(&body[..], b"this origin takes no WebSockets (in-process services do not, yet)\n");
    assert_eq!(visitor.get(&host_of(&tunnel.url()), "/").await, (200, Bytes::from("plain HTTP only")));
}
