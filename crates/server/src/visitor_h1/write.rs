//! Writing a tunnel response to an HTTP/1 visitor: its head (checked, or the block's
//! usual head), then its body as the stream delivers it (Content-Length or chunked,
//! trailers only to a visitor that asked for them), small data copied beside the head
//! so that head and body leave in one write; and the request's duration recorded at
//! the first write ([`Answered`]). The exchange ([`super::exchange`]) drives it.

use bytes::{BufMut, Bytes, BytesMut};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use localtunnels_core::Header;
use localtunnels_driver::h1::chunked::{write_chunk_size, write_last_chunk, CHUNK_END};
use localtunnels_driver::h1::framing::may_trail;
use localtunnels_driver::http::{header_list, header_map};
use localtunnels_driver::{StreamEvent, StreamReceiver};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::block_head::{write_listed, StreamHead};
use super::encode::{encode_head, BadHead, BodySize, Encoder, Reply};
use crate::metrics::Recorded;
use crate::state::Body;

/// Data chunks up to this size are copied into the write buffer with what surrounds
/// them (one write for head and body); larger ones are written from their own buffer.
const COPY_BELOW: usize = 16 * 1024;

/// A tunnel response to write: its checked head (cookies scoped), written or with what
/// its check found, and whether its body is already over; trailers go out only to a
/// visitor that asked for them.
pub(super) struct Streamed {
    pub status: StatusCode,
    pub head: StreamHead,
    pub end: bool,
    pub allow_trailers: bool,
}

/// A request's duration, for the metrics, recorded once: at the first write of its
/// answer (its head, with as much of the body as came with it), or when the exchange
/// ends without one. Recorded before that write, it cost the visitor's wait a clock
/// read and the histogram's lock (~0.15k instructions; docs/BENCHMARKS.md, fourteenth
/// round); after it, the duration includes that write (a few µs).
pub(super) struct Answered<'a> {
    pending: Option<(&'a Recorded, std::time::Instant)>,
}

impl<'a> Answered<'a> {
    /// The duration of a request that began at `started`, to record into `recorded`.
    pub(super) fn new(recorded: &'a Recorded, started: std::time::Instant) -> Self {
        Answered { pending: Some((recorded, started)) }
    }

    /// Nothing to record (an answer the metrics do not count).
    pub(super) fn none() -> Self {
        Answered { pending: None }
    }

    /// Records the duration until now, the first time only (a test of an `Option`
    /// after every later write of a long body).
    #[inline]
    pub(super) fn record(&mut self) {
        if let Some((recorded, started)) = self.pending.take() {
            let now = crate::poll_clock::now().into_std();
            recorded.answered(std::time::Duration::from_nanos(localtunnels_driver::mono_nanos::since(now, started)));
        }
    }
}

/// Writes a tunnel response, its head and then its body as the stream delivers it;
/// true when it ended as framed and the connection may carry another exchange.
/// `answered` is recorded after the first write (the caller records it when there
/// was none).
pub(super) async fn write_streamed<W: AsyncWrite + Unpin>(
    wr: &mut W,
    out: &mut BytesMut,
    reply: Reply,
    response: Streamed,
    rx: &mut StreamReceiver,
    answered: &mut Answered<'_>,
) -> bool {
    let written = match response.head {
        StreamHead::Written(written) => written,
        StreamHead::Listed { headers, shape } => {
            match write_listed(out, reply, response.status, headers, shape, response.end) {
                Ok(written) => written,
                Err(BadHead) => return false,
            }
        }
    };
    let whole = write_body(wr, out, rx, written.encoder, response.allow_trailers, answered).await;
    whole && !written.last
}

/// Writes one of the server's own answers (a whole body in memory); true when the
/// connection may go on.
pub(super) async fn write_answer<W: AsyncWrite + Unpin>(
    wr: &mut W,
    out: &mut BytesMut,
    reply: Reply,
    res: Response<Body>,
) -> bool {
    let (parts, body) = res.into_parts();
    let size = match (http_body::Body::is_end_stream(&body), http_body::Body::size_hint(&body).exact()) {
        (true, _) => BodySize::Ended,
        (false, Some(n)) => BodySize::Known(n),
        (false, None) => BodySize::Unknown,
    };
    let Ok(written) = encode_head(out, reply, parts.status, &mut header_list(parts.headers), size) else {
        return false;
    };
    let data = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let whole = match written.encoder {
        Encoder::Length(0) => true,
        Encoder::Length(n) => {
            out.put_slice(&data[..data.len().min(usize::try_from(n).unwrap_or(usize::MAX))]);
            data.len() as u64 == n
        }
        Encoder::Chunked(_) => {
            if !data.is_empty() {
                write_chunk_size(out, data.len());
                out.put_slice(&data);
                out.put_slice(CHUNK_END);
            }
            write_last_chunk(out, &[]);
            true
        }
        Encoder::CloseDelimited => {
            out.put_slice(&data);
            true
        }
    };
    flush(wr, out).await && whole && !written.last
}

/// Streams the tunnel's response body to the visitor as `encoder` frames it; true
/// when it ended as framed (the connection may carry another exchange). `answered`
/// is recorded after each write (the first one records it).
async fn write_body<W: AsyncWrite + Unpin>(
    wr: &mut W,
    out: &mut BytesMut,
    rx: &mut StreamReceiver,
    encoder: Encoder,
    allow_trailers: bool,
    answered: &mut Answered<'_>,
) -> bool {
    let mut left = match encoder {
        Encoder::Length(0) => {
            let ok = flush(wr, out).await;
            answered.record();
            return ok;
        }
        Encoder::Length(n) => Some(n),
        _ => None,
    };
    let chunked = matches!(encoder, Encoder::Chunked(_));
    loop {
        // Whatever the stream already holds goes out with what is buffered: one write.
        let ev = match rx.try_recv() {
            Some(ev) => ev,
            None => {
                let ok = flush(wr, out).await;
                answered.record();
                if !ok {
                    return false;
                }
                rx.recv().await
            }
        };
        let (data, end, trailers) = match ev {
            Some(StreamEvent::Data { data, end }) => (data, end, None),
            Some(StreamEvent::Trailers(t)) => (Bytes::new(), true, Some(t)),
            // Reset, or the tunnel went: the visitor sees the body cut short (what is not
            // written yet is dropped, as hyper drops it).
            Some(StreamEvent::Reset { .. }) | None => {
                out.clear();
                return false;
            }
            Some(_) => continue,
        };
        let data = match left.as_mut() {
            Some(left) => {
                let n = data.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= n as u64;
                // Cut only what goes past the length: a slice of all of it would take
                // and drop a reference to the buffer (two atomic operations).
                if n < data.len() {
                    data.slice(..n)
                } else {
                    data
                }
            }
            None => data,
        };
        if !data.is_empty() {
            if chunked {
                write_chunk_size(out, data.len());
            } else if end && wr.is_write_vectored() {
                // The last bytes go out with what is buffered (the head, for a body that
                // came whole) in one vectored write, without being copied behind it.
                let ok = write_both(wr, out, &data).await;
                answered.record();
                let complete = left.is_none_or(|l| l == 0);
                return ok && complete && encoder != Encoder::CloseDelimited;
            }
            if data.len() < COPY_BELOW {
                out.put_slice(&data);
            } else {
                let ok = flush(wr, out).await;
                answered.record();
                if !ok || wr.write_all(&data).await.is_err() {
                    return false;
                }
            }
            if chunked {
                out.put_slice(CHUNK_END);
            }
        }
        if end {
            if let Encoder::Chunked(allowed) = &encoder {
                let trailers = trailers
                    .filter(|_| allow_trailers)
                    .map(|t| declared_trailers(&t, allowed.as_deref()))
                    .unwrap_or_default();
                write_last_chunk(out, &trailers);
            }
            let complete = left.is_none_or(|l| l == 0);
            let ok = flush(wr, out).await;
            answered.record();
            return ok && complete && encoder != Encoder::CloseDelimited;
        }
    }
}

/// The trailer fields hyper sends: those the head declared in `Trailer`, and allowed.
fn declared_trailers(trailers: &[Header], allowed: Option<&[http::HeaderName]>) -> Vec<Header> {
    let Some(allowed) = allowed else { return Vec::new() };
    let mut list = header_list(header_map(trailers));
    list.retain(|(n, _)| allowed.contains(n) && may_trail(n));
    list
}

/// Writes what `out` holds and then `data`, in vectored writes; false on a write error.
async fn write_both<W: AsyncWrite + Unpin>(wr: &mut W, out: &mut BytesMut, data: &[u8]) -> bool {
    let (mut head, mut body) = (0, 0);
    let ok = loop {
        if head == out.len() && body == data.len() {
            break true;
        }
        let bufs = [std::io::IoSlice::new(&out[head..]), std::io::IoSlice::new(&data[body..])];
        match wr.write_vectored(&bufs).await {
            Ok(0) | Err(_) => break false,
            Ok(n) => {
                let from_head = n.min(out.len() - head);
                head += from_head;
                body += n - from_head;
            }
        }
    };
    out.clear();
    ok
}

/// Writes what `out` holds; false on a write error.
pub(super) async fn flush<W: AsyncWrite + Unpin>(wr: &mut W, out: &mut BytesMut) -> bool {
    if out.is_empty() {
        return true;
    }
    let ok = wr.write_all(out).await.is_ok();
    out.clear();
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `step` bytes per write, vectored or not, across
    /// the buffers it is given.
    struct Trickle {
        got: Vec<u8>,
        step: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let this = self.get_mut();
            let n = buf.len().min(this.step);
            this.got.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let this = self.get_mut();
            let mut n = 0;
            for buf in bufs {
                let take = buf.len().min(this.step - n);
                this.got.extend_from_slice(&buf[..take]);
                n += take;
            }
            std::task::Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// However the socket takes them (a write ending inside the head, at its end,
    /// inside the body), the head and the body go out whole and in order.
    #[tokio::test]
    async fn the_head_and_the_last_bytes_go_out_whole_across_partial_writes() {
        for step in [1, 3, 7, 16, 17, 40, 1000] {
            for (head, body) in [(&b"HTTP/1.1 200 OK\r\n\r\n"[..], &b"body"[..]), (&b""[..], &b"only a body"[..])] {
                let mut wr = Trickle { got: Vec::new(), step };
                let mut out = BytesMut::from(head);
                assert!(write_both(&mut wr, &mut out, body).await);
                assert!(out.is_empty());
                assert_eq!(wr.got, [head, body].concat(), "step {step}");
            }
        }
    }
}
