//! The seed's chat server: a local WebSocket server that broadcasts each message to
//! the other connected clients, and the page to chat from (`/`). The WebSocket is on
//! `/ws`, on the same port, so one tunnel exposes both.
//!
//! A client that falls 256 messages behind is disconnected rather than buffered for.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The page, served at `/`.
pub const PAGE: &str = include_str!("index.html");

/// Messages a client may fall behind before it is dropped.
const BACKLOG: usize = 256;

/// The connected clients.
#[derive(Default)]
pub struct Room {
    next_id: AtomicU64,
    peers: Mutex<HashMap<u64, mpsc::Sender<Message>>>,
}

impl Room {
    /// Adds a client; messages for it arrive on the receiver.
    fn join(&self) -> (u64, mpsc::Receiver<Message>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(BACKLOG);
        self.peers.lock().unwrap().insert(id, tx);
        (id, rx)
    }

    fn leave(&self, id: u64) {
        self.peers.lock().unwrap().remove(&id);
    }

    /// Sends `msg` to everyone but `from`; a client whose backlog is full is dropped.
    fn broadcast(&self, from: u64, msg: &Message) {
        self.peers.lock().unwrap().retain(|id, tx| *id == from || tx.try_send(msg.clone()).is_ok());
    }

    /// Clients connected now (the end-to-end test checks it).
    #[allow(dead_code)]
    pub fn clients(&self) -> usize {
        self.peers.lock().unwrap().len()
    }
}

/// Serves the page and the chat WebSocket on `listener` until it fails.
pub async fn serve(listener: TcpListener, room: Arc<Room>) {
    while let Ok((tcp, _)) = listener.accept().await {
        let room = room.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let room = room.clone();
                async move { Ok::<_, Infallible>(handle(room, req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service);
            let _ = conn.with_upgrades().await;
        });
    }
}

fn handle(room: Arc<Room>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/" | "/index.html" => {
            let mut res = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
            res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            res
        }
        "/ws" => upgrade(room, req),
        _ => status(StatusCode::NOT_FOUND, "not found"),
    }
}

fn status(code: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *res.status_mut() = code;
    res
}

/// Accepts the WebSocket. The client joins the room before the 101 goes out, so a
/// client whose handshake completed receives every message sent after it.
fn upgrade(room: Arc<Room>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return status(StatusCode::UPGRADE_REQUIRED, "connect with a WebSocket");
    };
    let (id, inbox) = room.join();
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            chat(&room, id, ws, inbox).await;
        }
        room.leave(id);
    });
    let mut res = status(StatusCode::SWITCHING_PROTOCOLS, "");
    let h = res.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    res
}

/// Relays one client: its messages to the others, the others' to it.
async fn chat<S>(room: &Room, id: u64, ws: WebSocketStream<S>, mut inbox: mpsc::Receiver<Message>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let send = async {
        while let Some(msg) = inbox.recv().await {
            if sink.send(msg).await.is_err() {
                break;
            }
        }
    };
    let receive = async {
        while let Some(Ok(msg)) = stream.next().await {
            // A close is answered by reading on, until the socket ends.
            if msg.is_text() || msg.is_binary() {
                room.broadcast(id, &msg);
            }
        }
    };
    // Either side ending ends the client: it left, or it fell too far behind.
    tokio::select! {
        _ = send => {}
        _ = receive => {}
    }
}
