//! The I/O half of the WebSocket codec: [`read_message`] reads a tokio socket into a
//! [`WsDecoder`], [`write_all`] writes a [`WsEncoder`]'s bytes out, [`encoder`] gives
//! the encoder its random mask keys; [`client_upgrade`] is the client's side of the
//! HTTP upgrade that comes first. Every framing rule is in [`crate::ws_codec`].

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http::{header, StatusCode};
use http_body_util::Empty;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::rewind::Rewind;
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
    std::future::poll_fn(|cx| poll_read_message(decoder, io, cx)).await
}

/// Writes everything `encoder` has queued to `io`, in as few syscalls as the socket
/// allows, and flushes. Cancelled, it leaves what it did not write queued.
pub async fn write_all<W: AsyncWrite + Unpin>(encoder: &mut WsEncoder, io: &mut W) -> io::Result<()> {
    std::future::poll_fn(|cx| poll_write_all(encoder, io, cx)).await
}

/// Slices one vectored write takes at most: a batch of small frames is one slice,
/// each large payload one more (tokio's `write_all_buf` fills 64 of them, zeroed,
/// before every write).
pub(crate) const MAX_SLICES: usize = 16;

/// Poll form of [`write_all`]: `Ready` once everything queued is written and flushed;
/// `Pending` leaves the rest queued.
pub fn poll_write_all<W: AsyncWrite + Unpin + ?Sized>(
    encoder: &mut WsEncoder,
    io: &mut W,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    loop {
        let mut out = encoder.transmit();
        if !out.has_remaining() {
            break;
        }
        let written = if out.is_one_slice() || !io.is_write_vectored() {
            ready!(Pin::new(&mut *io).poll_write(cx, out.chunk()))?
        } else {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let n = out.chunks_vectored(&mut slices);
            ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n]))?
        };
        if written == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        out.advance(written);
    }
    Pin::new(io).poll_flush(cx)
}

/// Poll form of [`read_message`]: a message already decoded comes first; else `io`
/// is read (straight into the decoder's buffer) until one is whole or the read
/// would wait.
pub fn poll_read_message<R>(
    decoder: &mut WsDecoder,
    io: &mut R,
    cx: &mut Context<'_>,
) -> Poll<Result<Option<WsMessage>, WsReadError>>
where
    R: AsyncRead + Unpin,
{
    loop {
        if let Some(message) = decoder.poll_message()? {
            return Poll::Ready(Ok(Some(message)));
        }
        // tokio's `read_buf` does the unsafe part of reading into spare capacity; a
        // pending read leaves nothing behind, so its future may be dropped.
        if ready!(std::pin::pin!(io.read_buf(decoder.read_buffer())).poll(cx))? == 0 {
            if decoder.is_between_messages() {
                return Poll::Ready(Ok(None));
            }
            return Poll::Ready(Err(WsReadError::Io(io::ErrorKind::UnexpectedEof.into())));
        }
    }
}

/// An encoder for `role`'s end of a socket, its client mask keys random: from a
/// ChaCha generator of its own, seeded from the thread's (`rand::random` per key
/// reached the thread-local generator each time, ~90 instructions per frame). A key
/// is one 32-bit word of it: `gen::<[u8; 4]>()` drew a word per byte, four per key.
pub fn encoder(role: Role) -> WsEncoder {
    let mut keys = StdRng::from_seed(rand::random());
    WsEncoder::new(role, move || keys.next_u32().to_ne_bytes())
}

/// The client's side of the upgrade: sends `request` (a WebSocket handshake request,
/// e.g. from tungstenite's `IntoClientRequest`, with its key and any subprotocol) over
/// `io`, checks the server's 101 and accept key, and returns the upgraded socket for
/// [`Connection::start`](crate::Connection::start). Errors are for people.
pub async fn client_upgrade<S>(io: S, request: http::Request<()>) -> Result<Rewind<S>, String>
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
    let upgraded = hyper::upgrade::on(&mut res).await.map_err(|e| format!("upgrade failed: {e}"))?;
    take_upgraded(upgraded).map_err(|_| "upgrade failed: hyper kept the connection".to_string())
}

/// Takes the socket of a hyper client connection, made over `TokioIo<S>`, out of
/// `upgraded`, with the bytes hyper read past the handshake in front; gives `upgraded`
/// back if it is another type. hyper's `Upgraded` reads and writes through a boxed trait
/// object and two adapters (hundreds of instructions per WebSocket message on a bridge,
/// docs/BENCHMARKS.md); a [`Rewind`] is one branch.
pub fn take_upgraded<S>(upgraded: Upgraded) -> Result<Rewind<S>, Upgraded>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let parts = upgraded.downcast::<TokioIo<S>>()?;
    Ok(Rewind::new(parts.read_buf, parts.io.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

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

    /// A socket that takes at most `max` bytes per write, vectored.
    struct Trickle {
        out: Vec<u8>,
        max: usize,
        vectored: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            let n = data.len().min(this.max);
            this.out.extend_from_slice(&data[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.vectored += 1;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(this.max - n);
                this.out.extend_from_slice(&b[..take]);
                n += take;
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Small frames and a large payload queued together leave in order through short
    /// writes, the large payload by vectored writes.
    #[tokio::test]
    async fn short_vectored_writes_keep_the_frames_in_order() {
        let mut writer = encoder(Role::Server);
        let big = Bytes::from(vec![1u8; 9_000]);
        writer.binary(Bytes::from_static(b"a"));
        writer.binary(big.clone());
        writer.binary(Bytes::from_static(b"b"));
        let mut io = Trickle { out: Vec::new(), max: 1_000, vectored: 0 };
        write_all(&mut writer, &mut io).await.expect("write");
        assert!(writer.is_empty());
        assert!(io.vectored > 0, "the large payload went by vectored writes");
        let mut reader = WsDecoder::new(Role::Client, 100_000);
        reader.push(&io.out);
        let mut got = Vec::new();
        while let Some(m) = reader.poll_message().expect("valid frames") {
            got.push(m);
        }
        let want = [
            WsMessage::Binary(Bytes::from_static(b"a")),
            WsMessage::Binary(big),
            WsMessage::Binary(Bytes::from_static(b"b")),
        ];
        assert_eq!(got, want);
    }

    /// The socket taken back from hyper after the upgrade reads the frame the server
    /// sent in the same write as its 101 (which hyper read along with the head) first,
    /// and writes straight to the connection.
    #[tokio::test]
    async fn an_upgraded_socket_starts_with_what_hyper_read_past_the_101() {
        use tokio::io::AsyncReadExt as _;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.expect("accept");
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                tcp.read_exact(&mut byte).await.expect("head");
                head.push(byte[0]);
            }
            let head = String::from_utf8(head).expect("ascii head");
            let key = head
                .lines()
                .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-key")))
                .map(|(_, v)| v.trim().to_string())
                .expect("a key");
            let accept = derive_accept_key(key.as_bytes());
            let mut answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .into_bytes();
            answer.extend_from_slice(&[0x82, 2, b'h', b'i']);
            tcp.write_all(&answer).await.expect("answer");
            let mut reader = WsDecoder::new(Role::Server, 100);
            read_message(&mut reader, &mut tcp).await.expect("read")
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("ws://{addr}/").into_client_request().expect("request");
        let mut io = client_upgrade(tcp, request).await.expect("upgrade");
        let mut reader = WsDecoder::new(Role::Client, 100);
        let first = read_message(&mut reader, &mut io).await.expect("read");
        assert_eq!(first, Some(WsMessage::Binary(Bytes::from_static(b"hi"))));
        let mut writer = encoder(Role::Client);
        writer.binary(Bytes::from_static(b"yo"));
        write_all(&mut writer, &mut io).await.expect("write");
        let got = server.await.expect("server");
        assert_eq!(got, Some(WsMessage::Binary(Bytes::from_static(b"yo"))));
    }
}
