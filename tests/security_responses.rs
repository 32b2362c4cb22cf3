//! Response hygiene (issue 17, item 13): what reaches a visitor is a valid final
//! response, whatever the tunnel's client or its origin sends.
//!
//! On the server: a hostile client (a raw control WebSocket) answers visitors with a
//! 101 to a plain GET, status 999, an interim 103, and hop-by-hop headers; the visitor
//! gets 502 for the first three (never the head itself, never a 500) and none of the
//! hop-by-hop headers. On the native client: a raw origin answering 101 to a plain GET
//! or 999 gives the visitor 502, and interim 100/103 before a 200 are dropped.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use hyper::{HeaderMap, Request};
use localtunnels_core::{Config, DecodeLimits, Frame, Hello, Limits, ResponseHead, StreamKind, PROTOCOL_VERSION};
use localtunnels_server::ServerHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Headers no visitor may receive from a tunnel (RFC 9110 §7.6.1), plus one that a
/// `Connection` header names.
const HOP_BY_HOP: &[(&str, &str)] = &[
    ("connection", "close, x-private"),
    ("keep-alive", "timeout=5"),
    ("proxy-connection", "keep-alive"),
    ("upgrade", "h2c"),
    ("te", "trailers"),
    ("x-private", "1"),
];

/// The head the hostile client answers a request for `target` with.
fn hostile_answer(kind: StreamKind, target: &str) -> ResponseHead {
    let h = |n: &'static str, v: &'static str| (http::HeaderName::from_static(n), http::HeaderValue::from_static(v));
    let mut headers: Vec<_> = HOP_BY_HOP.iter().map(|(n, v)| h(n, v)).collect();
    headers.push(h("x-kept", "yes"));
    if kind == StreamKind::WebSocket {
        // Extensions are negotiated per leg: the visitor's leg negotiated none.
        headers.push(h("sec-websocket-extensions", "permessage-deflate"));
    }
    let status = match target {
        "/101" | "/ws" => 101,
        "/999" => 999,
        "/103" => 103,
        "/100" => 100,
        _ => 200,
    };
    ResponseHead { status, headers }
}

/// A tunnel client that answers every stream at once with [`hostile_answer`], and its
/// pings, until the connection ends. Returns the tunnel's host.
async fn hostile_client(server: &ServerHandle, name: &str) -> String {
    let url = format!("ws://127.0.0.1:{}/api/tunnel", server.addr().port());
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("sec-websocket-protocol", "localtunnels.v1".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("control upgrade");
    let hello = Hello {
        version: PROTOCOL_VERSION,
        name: name.into(),
        client_kind: "hostile".into(),
        limits: Some(Limits::from(&Config::default())),
        ..Hello::default()
    };
    ws.send(Message::Binary(Frame::Hello(Box::new(hello)).encode())).await.unwrap();
    let limits = DecodeLimits { max_frame: usize::MAX, max_header_bytes: usize::MAX };
    let url = loop {
        let Some(Ok(Message::Binary(b))) = ws.next().await else { panic!("no welcome") };
        if let Ok(Frame::Welcome(w)) = Frame::decode(b, &limits) {
            break w.url;
        }
    };
    tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Binary(b) = msg else { continue };
            let frames = match Frame::decode(b, &limits) {
                Ok(Frame::Batch(frames)) => frames,
                Ok(frame) => vec![frame],
                Err(_) => return,
            };
            for frame in frames {
                let answer = match frame {
                    Frame::Open { id, head, .. } => {
                        Frame::Response { id, head: hostile_answer(head.kind, &head.target), end: true }
                    }
                    Frame::Ping(n) => Frame::Pong(n),
                    _ => continue,
                };
                if ws.send(Message::Binary(answer.encode())).await.is_err() {
                    return;
                }
            }
        }
    });
    host_of(&url)
}

fn assert_no_hop_by_hop(headers: &HeaderMap) {
    for (name, _) in HOP_BY_HOP {
        assert!(!headers.contains_key(*name), "{name} reached the visitor: {headers:?}");
    }
}

#[tokio::test]
async fn the_server_forwards_only_valid_final_responses() {
    let server = server().await;
    let host = hostile_client(&server, "hostile").await;
    let visitor = Visitor::new(&server);
    for path in ["/101", "/999", "/103", "/100"] {
        let res = visitor.send(&host, Request::get(path).body(full(Bytes::new())).unwrap()).await;
        assert_eq!(res.status(), 502, "{path}: {:?}", res.headers());
        let body = res.into_body().collect().await.unwrap().to_bytes();
        // A generic page: what was wrong goes to the server log, not to the visitor.
        assert!(String::from_utf8_lossy(&body).contains("request id"), "{path}: {body:?}");
    }
    let res = visitor.send(&host, Request::get("/hop").body(full(Bytes::new())).unwrap()).await;
    assert_eq!(res.status(), 200);
    assert_no_hop_by_hop(res.headers());
    assert_eq!(res.headers()["x-kept"], "yes");
}

#[tokio::test]
async fn a_websocket_switch_carries_only_end_to_end_headers() {
    let server = server().await;
    let host = hostile_client(&server, "hostilews").await;
    let mut tcp = TcpStream::connect(("127.0.0.1", server.addr().port())).await.unwrap();
    let upgrade = format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(upgrade.as_bytes()).await.unwrap();
    let head = read_head(&mut tcp).await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("x-kept: yes"), "{head}");
    for bad in ["keep-alive", "x-private", "proxy-connection", "te", "sec-websocket-extensions"] {
        assert!(!head.contains(&format!("\r\n{bad}:")), "{bad} reached the visitor: {head}");
    }
    assert!(!head.contains("h2c"), "the origin's Upgrade reached the visitor: {head}");
}

/// Reads a response head from `tcp` within 20 s.
async fn read_head(tcp: &mut TcpStream) -> String {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match tcp.read(&mut chunk).await.unwrap() {
                0 => break,
                n => buf.extend_from_slice(&chunk[..n]),
            }
        }
        String::from_utf8_lossy(&buf).into_owned()
    };
    tokio::time::timeout(Duration::from_secs(20), read).await.expect("a response head within 20 s")
}

/// An origin that reads a request head and answers every connection with `answer`
/// as it is, then closes.
async fn raw_origin(answer: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = read_head(&mut tcp).await;
                let _ = tcp.write_all(answer.as_bytes()).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test]
async fn the_client_refuses_invalid_origin_responses_and_drops_interim_ones() {
    let server = server().await;
    let visitor = Visitor::new(&server);
    let cases = [
        ("switch", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", 502),
        ("weird", "HTTP/1.1 999 Weird\r\nContent-Length: 0\r\n\r\n", 502),
        (
            "hints",
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
             HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive, x-private\r\n\
             X-Private: 1\r\n\r\nok",
            200,
        ),
    ];
    let mut tunnels = Vec::new();
    for (name, answer, expected) in cases {
        let tunnel = client(&server, raw_origin(answer).await, Some(name)).await;
        let res = visitor.send(&host_of(&tunnel.url()), Request::get("/").body(full(Bytes::new())).unwrap()).await;
        assert_eq!(res.status(), expected, "{name}: {:?}", res.headers());
        assert_no_hop_by_hop(res.headers());
        let body = res.into_body().collect().await.unwrap().to_bytes();
        if expected == 200 {
            assert_eq!(&body[..], b"ok");
        }
        tunnels.push(tunnel);
    }
}
