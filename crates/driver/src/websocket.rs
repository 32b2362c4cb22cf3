//! Bridging a real WebSocket and a tunnel stream: the server runs it on the visitor's
//! socket, the client on the origin's.
//!
//! Two halves run at once, so that neither direction's wait for credit can stall the
//! other:
//! - **up** (socket → tunnel): each message read from the socket is sent whole with
//!   [`StreamSender::send_ws`], which waits for credit, so a peer that stops reading
//!   stops this socket from being read too. A close frame is relayed with its code and
//!   reason; a socket that drops without one resets the stream (`Cancel`).
//! - **down** (tunnel → socket): each fragment is checked ([`WsMessageCheck`]: size,
//!   UTF-8 across fragments) and written as a WebSocket frame before the next event is
//!   read, so a socket that stops reading holds at most the stream window plus one
//!   fragment here. A relayed close becomes a close frame; a reset drops the visitor's
//!   socket (the visitor sees an abnormal closure, 1006) or closes towards the origin
//!   with 1001.
//!
//! Pings and pongs are answered by each leg's WebSocket and never cross the tunnel.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use localtunnels_core::{ws_close, ResetCode, WsMessageCheck};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::stream::{StreamEvent, StreamReceiver, StreamSender};

/// How long one side of a bridge waits for the other side's close once it has closed.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes one read of a bridged socket takes. tungstenite's default (128 KiB) is
/// allocated per socket and zero-filled before every read: costly for thousands of
/// mostly idle WebSockets.
const READ_BUFFER: usize = 16 * 1024;

/// The settings for a bridged socket (either leg): messages and frames up to
/// `max_message` bytes, a small read buffer.
pub fn socket_config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
        .read_buffer_size(READ_BUFFER)
}

/// Which real WebSocket a bridge runs on; it decides what a reset turns into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    /// The visitor's socket on the server: a reset drops it (abnormal closure).
    Visitor,
    /// The origin's socket on the client: a reset closes it with 1001.
    Origin,
}

/// How a bridge ended, for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BridgeEnd {
    /// Closed with a close frame; the code is the first close seen.
    Closed(u16),
    /// The socket dropped without a close; the stream was reset.
    SocketLost(String),
    /// The stream was reset or the tunnel closed.
    StreamLost,
}

type Sink<S> = Mutex<SplitSink<WebSocketStream<S>, Message>>;

/// Bridges `ws` and the stream (`tx`, `rx`) until both sides closed, either side
/// vanished, or [`CLOSE_TIMEOUT`] passed after one side closed. Messages larger than
/// `max_message` close both sides with 1009 (the socket's own limit must be set to the
/// same value: see [`socket_config`]).
pub async fn bridge<S>(
    ws: WebSocketStream<S>,
    tx: StreamSender,
    mut rx: StreamReceiver,
    leg: Leg,
    max_message: usize,
) -> BridgeEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (sink, stream) = ws.split();
    let sink = Mutex::new(sink);
    let up = std::pin::pin!(up(stream, &tx, &sink));
    let down = std::pin::pin!(down(&mut rx, &tx, &sink, leg, max_message));
    match futures_util::future::select(up, down).await {
        futures_util::future::Either::Left((end, down)) => {
            if matches!(end, BridgeEnd::Closed(_)) {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, down).await;
            }
            end
        }
        futures_util::future::Either::Right((end, up)) => {
            if matches!(end, BridgeEnd::Closed(_)) {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, up).await;
            }
            end
        }
    }
}

/// Socket → tunnel.
async fn up<S>(mut stream: SplitStream<WebSocketStream<S>>, tx: &StreamSender, sink: &Sink<S>) -> BridgeEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The code of the close frame read, once one was.
    let mut closed = None;
    loop {
        let sent = match stream.next().await {
            Some(Ok(Message::Text(text))) => tx.send_ws(false, Bytes::from(text)).await,
            Some(Ok(Message::Binary(data))) => tx.send_ws(true, data).await,
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame.map_or((ws_close::NO_STATUS, String::new()), |f| {
                    (u16::from(f.code), f.reason.as_str().to_string())
                });
                closed = Some(code);
                // Fails only if this side of the stream already ended (a violation
                // closed it, or it was reset): nothing left to tell.
                let _ = tx.close_ws(code, &reason);
                // Reading on sends the socket's answer to the close and ends once the
                // handshake is over.
                continue;
            }
            // Pings were answered by the socket; pongs need nothing.
            Some(Ok(_)) => continue,
            // The close handshake is over (tokio-tungstenite maps `ConnectionClosed`).
            None => return BridgeEnd::Closed(closed.unwrap_or(ws_close::NO_STATUS)),
            Some(Err(_)) if closed.is_some() => return BridgeEnd::Closed(closed.unwrap_or(ws_close::NO_STATUS)),
            Some(Err(e)) => return socket_failed(e, tx, sink).await,
        };
        // A failed send means the stream is gone or this side already closed it:
        // `down` learns why; keep reading so the socket's close is still seen.
        let _ = sent;
    }
}

/// The socket broke the protocol or vanished: close both ways with the matching code,
/// or reset the stream if the socket is simply gone.
async fn socket_failed<S>(e: WsError, tx: &StreamSender, sink: &Sink<S>) -> BridgeEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (code, reason) = match &e {
        WsError::Capacity(_) => (ws_close::TOO_BIG, "message too big"),
        WsError::Utf8(_) => (ws_close::INVALID_DATA, "invalid UTF-8 in a text message"),
        WsError::Protocol(p) if !matches!(p, ProtocolError::ResetWithoutClosingHandshake) => {
            (ws_close::PROTOCOL, "WebSocket protocol error")
        }
        _ => {
            let message = format!("the WebSocket dropped without a close: {e}");
            tx.reset(ResetCode::Cancel, &message);
            return BridgeEnd::SocketLost(message);
        }
    };
    // The tunnel first: the socket may be slow to take the close frame.
    let _ = tx.close_ws(code, reason);
    let _ = sink.lock().await.send(Message::Close(close_frame(code, reason))).await;
    BridgeEnd::Closed(code)
}

/// Tunnel → socket.
async fn down<S>(rx: &mut StreamReceiver, tx: &StreamSender, sink: &Sink<S>, leg: Leg, max_message: usize) -> BridgeEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut check = WsMessageCheck::new(max_message);
    loop {
        match rx.recv().await {
            Some(StreamEvent::WsMessage { binary, fin, data }) => match check.push(binary, fin, &data) {
                Ok(place) => {
                    let opcode = match (place.first, place.binary) {
                        (false, _) => Data::Continue,
                        (true, true) => Data::Binary,
                        (true, false) => Data::Text,
                    };
                    let frame = Frame::message(data, OpCode::Data(opcode), fin);
                    // A failed write means the socket closed or broke: `up` sees why.
                    let _ = sink.lock().await.send(Message::Frame(frame)).await;
                }
                Err(violation) => {
                    let code = violation.close_code();
                    let reason = violation.to_string();
                    let _ = tx.close_ws(code, &reason);
                    let _ = sink.lock().await.send(Message::Close(close_frame(code, &reason))).await;
                    return BridgeEnd::Closed(code);
                }
            },
            Some(StreamEvent::WsClose { code, reason }) => {
                let _ = sink.lock().await.send(Message::Close(close_frame(code, &reason))).await;
                return BridgeEnd::Closed(code);
            }
            Some(StreamEvent::Reset { .. }) | None => {
                if leg == Leg::Origin {
                    let reason = "the visitor went away";
                    let frame = close_frame(ws_close::GOING_AWAY, reason);
                    let _ = sink.lock().await.send(Message::Close(frame)).await;
                    return BridgeEnd::Closed(ws_close::GOING_AWAY);
                }
                return BridgeEnd::StreamLost;
            }
            // Nothing else belongs on an accepted WebSocket (the core refuses it).
            Some(_) => {}
        }
    }
}

/// A close frame for `code`; codes that may not be sent (1005, 1006, 1015, ...) become
/// a close without a code.
fn close_frame(code: u16, reason: &str) -> Option<CloseFrame> {
    ws_close::sendable(code).then(|| CloseFrame { code: code.into(), reason: reason.into() })
}
