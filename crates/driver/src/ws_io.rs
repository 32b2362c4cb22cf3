//! The I/O half of the WebSocket codec: [`read_message`] reads a tokio socket into a
//! [`WsDecoder`], [`write_all`] writes a [`WsEncoder`]'s bytes out, [`encoder`] gives
//! the encoder its random mask keys; [`client_upgrade`] is the client's side of the
//! HTTP upgrade that comes first. Every framing rule is in [`crate::ws_codec`].

use std::io;

use bytes::Bytes;
use http::{header, StatusCode};
use http_body_util::Empty;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::ws_codec::{Role, WsDecoder, WsEncoder, WsError, WsMessage};

/// Why reading a WebSocket stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WsReadError {
    /// The peer's bytes broke the WebSocket protocol or a limit.
    #[error(transparent)]
    Codec(#[from] WsError),
    /// The socket failed, or ended inside a frame or a fragmented message.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Reads the next message off `io` through `decoder`; `None` when the peer closed the
/// socket between messages. The socket is read straight into the decoder's buffer.
pub async fn read_message<R>(decoder: &mut WsDecoder, io: &mut R) -> Result<Option<WsMessage>, WsReadError>
where
    R: AsyncRead + Unpin,
{
    loop {
        if let Some(message) = decoder.poll_message()? {
            return Ok(Some(message));
        }
        if io.read_buf(decoder.read_buffer()).await? == 0 {
            if decoder.is_between_messages() {
                return Ok(None);
            }
            return Err(WsReadError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
    }
}

/// Writes everything `encoder` has queued to `io`, in as few syscalls as the socket
/// allows, and flushes. Cancelled, it leaves what it did not write queued.
pub async fn write_all<W: AsyncWrite + Unpin>(encoder: &mut WsEncoder, io: &mut W) -> io::Result<()> {
    io.write_all_buf(&mut encoder.transmit()).await?;
    io.flush().await
}

/// An encoder for `role`'s end of a socket, its client mask keys random.
pub fn encoder(role: Role) -> WsEncoder {
    WsEncoder::new(role, rand::random::<[u8; 4]>)
}

/// The client's side of the upgrade: sends `request` (a WebSocket handshake request,
/// e.g. from tungstenite's `IntoClientRequest`, with its key and any subprotocol) over
/// `io`, checks the server's 101 and accept key, and returns the upgraded socket for
/// [`Connection::start`](crate::Connection::start). Errors are for people.
pub async fn client_upgrade<S>(io: S, request: http::Request<()>) -> Result<TokioIo<Upgraded>, String>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut parts, ()) = request.into_parts();
    let key = parts.headers.get(header::SEC_WEBSOCKET_KEY).cloned().ok_or("no Sec-WebSocket-Key")?;
    // Origin form on the request line, as a browser sends it.
    if let Some(path) = parts.uri.path_and_query() {
        parts.uri = path.as_str().parse().map_err(|e| format!("invalid path: {e}"))?;
    }
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn.with_upgrades());
    let mut res = sender
        .send_request(http::Request::from_parts(parts, Empty::<Bytes>::new()))
        .await
        .map_err(|e| e.to_string())?;
    if res.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(format!("HTTP error: {}", res.status()));
    }
    let accept = derive_accept_key(key.as_bytes());
    if res.headers().get(header::SEC_WEBSOCKET_ACCEPT).map(|v| v.as_bytes()) != Some(accept.as_bytes()) {
        return Err("the server's Sec-WebSocket-Accept does not match the key".into());
    }
    hyper::upgrade::on(&mut res).await.map(TokioIo::new).map_err(|e| format!("upgrade failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The I/O half over an in-memory pipe, read in small pieces: what one end writes
    /// the other reads, a clean end between messages is `None`, an end inside a frame
    /// an error.
    #[tokio::test]
    async fn messages_cross_a_socket_and_ends_are_told_apart() {
        let (mut a, mut b) = tokio::io::duplex(7);
        let mut writer = encoder(Role::Client);
        let mut reader = WsDecoder::new(Role::Server, 100_000);
        let big = Bytes::from(vec![3u8; 20_000]);
        writer.binary(Bytes::from_static(b"hello"));
        writer.binary(big.clone());
        writer.close(1000);
        let write = async {
            write_all(&mut writer, &mut a).await.expect("write");
            drop(a);
        };
        let read = async {
            let mut got = Vec::new();
            while let Some(m) = read_message(&mut reader, &mut b).await.expect("read") {
                got.push(m);
            }
            got
        };
        let ((), got) = tokio::join!(write, read);
        let want = [
            WsMessage::Binary(Bytes::from_static(b"hello")),
            WsMessage::Binary(big),
            WsMessage::Close(Some((1000, String::new()))),
        ];
        assert_eq!(got, want);

        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[0x82, 0x85, 1, 2, 3]).await.expect("write");
        drop(a);
        let r = read_message(&mut WsDecoder::new(Role::Server, 100), &mut b).await;
        assert!(matches!(r, Err(WsReadError::Io(ref e)) if e.kind() == io::ErrorKind::UnexpectedEof), "{r:?}");
    }
}
