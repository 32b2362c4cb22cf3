//! WebSocket helpers for the end-to-end tests: origins built on tokio-tungstenite and
//! visitors that connect to the server's port with a tunnel's Host.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use localtunnels_server::ServerHandle;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TcpStream>;

/// One WebSocket an origin accepted: the upgrade request it saw and the socket.
pub struct Accepted {
    pub request: Request,
    pub ws: Ws,
}

/// How a test origin answers the handshake.
#[derive(Clone, Default)]
pub struct OriginOptions {
    /// Pick the first offered subprotocol that is in this list.
    pub protocols: Vec<String>,
    /// Extra headers on the 101.
    pub headers: Vec<(String, String)>,
    /// SO_SNDBUF and SO_RCVBUF of accepted sockets (small to make backpressure visible).
    pub socket_buffer: Option<u32>,
    /// The origin's own message size limit.
    pub max_message: Option<usize>,
}

/// A WebSocket origin on 127.0.0.1:0; every accepted socket comes out of the receiver.
pub async fn ws_origin(options: OriginOptions) -> (u16, mpsc::UnboundedReceiver<Accepted>) {
    let socket = TcpSocket::new_v4().expect("socket");
    if let Some(size) = options.socket_buffer {
        socket.set_send_buffer_size(size).expect("SO_SNDBUF");
        socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
    }
    socket.bind("127.0.0.1:0".parse().unwrap()).expect("bind origin");
    let listener = socket.listen(1024).expect("listen");
    let port = listener.local_addr().expect("origin addr").port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(accept_loop(listener, options, tx));
    (port, rx)
}

async fn accept_loop(listener: TcpListener, options: OriginOptions, tx: mpsc::UnboundedSender<Accepted>) {
    while let Ok((tcp, _)) = listener.accept().await {
        let (options, tx) = (options.clone(), tx.clone());
        tokio::spawn(async move {
            let seen = Arc::new(Mutex::new(None));
            let seen2 = seen.clone();
            #[allow(clippy::result_large_err)] // The error type is tungstenite's.
            let callback = move |req: &Request, mut res: Response| {
                *seen2.lock().unwrap() = Some(clone_request(req));
                let offered = req
                    .headers()
                    .get_all("sec-websocket-protocol")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(','))
                    .map(|p| p.trim().to_string())
                    .find(|p| options.protocols.contains(p));
                if let Some(p) = offered {
                    res.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_str(&p).unwrap());
                }
                for (n, v) in &options.headers {
                    res.headers_mut().append(
                        tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                        HeaderValue::from_str(v).unwrap(),
                    );
                }
                Ok(res)
            };
            let config = ws_config(options.max_message);
            if let Ok(ws) = tokio_tungstenite::accept_hdr_async_with_config(tcp, callback, Some(config)).await {
                let request = seen.lock().unwrap().take().expect("request seen");
                let _ = tx.send(Accepted { request, ws });
            }
        });
    }
}

fn clone_request(req: &Request) -> Request {
    let mut copy = Request::new(());
    *copy.uri_mut() = req.uri().clone();
    *copy.headers_mut() = req.headers().clone();
    copy
}

fn ws_config(max: Option<usize>) -> WebSocketConfig {
    let max = max.unwrap_or(64 << 20);
    WebSocketConfig::default().max_message_size(Some(max)).max_frame_size(Some(max))
}

/// An origin that echoes every message of every socket (and answers closes).
pub async fn echo_origin() -> u16 {
    let (port, mut accepted) = ws_origin(OriginOptions::default()).await;
    tokio::spawn(async move {
        while let Some(Accepted { ws, .. }) = accepted.recv().await {
            tokio::spawn(echo(ws));
        }
    });
    port
}

/// Echoes text and binary messages until the socket closes.
pub async fn echo(mut ws: Ws) {
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            break;
        }
    }
}

/// The `ws://` URL of a tunnel (from its `http://` URL) plus `path`.
pub fn ws_url(tunnel_url: &str, path: &str) -> String {
    format!("ws://{}{path}", tunnel_url.split("://").nth(1).unwrap_or(tunnel_url))
}

/// Visitor options.
#[derive(Default)]
pub struct VisitOptions<'a> {
    pub headers: Vec<(&'a str, &'a str)>,
    /// SO_SNDBUF and SO_RCVBUF of the visitor's socket.
    pub socket_buffer: Option<u32>,
}

/// A visitor's WebSocket to `url` (`ws://name.localhost:port/path`), connected to the
/// server's address (the URL's host only goes in the Host header).
pub async fn visit_with(
    server: &ServerHandle,
    url: &str,
    options: VisitOptions<'_>,
) -> Result<(Ws, tokio_tungstenite::tungstenite::handshake::client::Response), WsError> {
    visit_addr_with(server.addr(), url, options).await
}

/// [`visit_with`] for a server at `addr` (any interface: 127.0.0.1 is used).
pub async fn visit_addr_with(
    addr: SocketAddr,
    url: &str,
    options: VisitOptions<'_>,
) -> Result<(Ws, tokio_tungstenite::tungstenite::handshake::client::Response), WsError> {
    let mut request = url.into_client_request()?;
    for (n, v) in options.headers {
        request.headers_mut().append(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let socket = TcpSocket::new_v4()?;
    if let Some(size) = options.socket_buffer {
        socket.set_send_buffer_size(size)?;
        socket.set_recv_buffer_size(size)?;
    }
    let tcp = socket.connect(SocketAddr::from(([127, 0, 0, 1], addr.port()))).await?;
    tcp.set_nodelay(true)?;
    tokio_tungstenite::client_async_with_config(request, tcp, Some(ws_config(None))).await
}

/// A visitor's WebSocket to `url` through the server at `addr`, panicking on failure.
pub async fn visit_addr(addr: SocketAddr, url: &str) -> Ws {
    visit_addr_with(addr, url, VisitOptions::default()).await.expect("visitor handshake").0
}

/// A visitor's WebSocket to `url`, panicking if the handshake fails.
pub async fn visit(server: &ServerHandle, url: &str) -> Ws {
    visit_with(server, url, VisitOptions::default()).await.expect("visitor handshake").0
}

/// The next data or close message, skipping pings and pongs.
pub async fn next_message(ws: &mut Ws) -> Option<Result<Message, WsError>> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => return other,
        }
    }
}

/// Asserts the next message is a close with `code` and `reason`, then reads on until
/// the closing handshake is over (which sends this end's answer).
pub async fn expect_close(ws: &mut Ws, code: u16, reason: &str) {
    match next_message(ws).await {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!((u16::from(frame.code), frame.reason.as_str()), (code, reason));
        }
        other => panic!("expected close {code} {reason:?}, got {other:?}"),
    }
    while let Some(Ok(_)) = ws.next().await {}
}

/// Asserts the socket ends without a close frame (an abnormal closure, 1006).
pub async fn expect_abnormal_end(ws: &mut Ws) {
    match next_message(ws).await {
        Some(Err(_)) | None => {}
        other => panic!("expected the connection to drop, got {other:?}"),
    }
}

/// A close frame.
pub fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.into() }))
}

/// Deterministic bytes: `len` of them, seeded.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}
