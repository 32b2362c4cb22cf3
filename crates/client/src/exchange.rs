//! One HTTP/1.1 exchange with a network origin, on a pooled connection, driven by the
//! task that serves the tunnel's stream.
//!
//! The request head is written from the tunnel's header list and the response head
//! parsed into one (`localtunnels_driver::h1`), with no `http::Request`, `HeaderMap`
//! or request channel in between: hyper's client dispatcher and its header maps were
//! 43% of the client's instructions per 1 KiB request (docs/BENCHMARKS.md, eighth and
//! ninth rounds). Bodies are framed as RFC 9112 says and as hyper's client framed them
//! (`h1::origin`): Content-Length, chunked (trailers both ways), close-delimited, none
//! for HEAD, 1xx, 204 and 304; interim responses are read past.
//!
//! The request body is written while the response is awaited and read, in the same
//! poll, so an origin that answers before it has read the whole upload (or that
//! streams its answer while reading) is served as it was by hyper. A connection goes
//! back to the pool once its response is complete, the request was sent whole and
//! both sides meant to keep it open.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http::{header, HeaderName, Method, Version};
use http_body::{Body, Frame, SizeHint};
use localtunnels_core::{FieldCoding, Header};
use localtunnels_driver::h1::chunked::{write_chunk_size, write_last_chunk, CHUNK_END};
use localtunnels_driver::h1::framing::decimal;
use localtunnels_driver::h1::head::write_request_head;
use localtunnels_driver::h1::origin::{
    declared_trailers, drop_overridden_length, is_interim, response_body, response_body_by_length, response_keeps_alive,
};
use localtunnels_driver::h1::{origin::ResponseFramingError, OriginHead};
use localtunnels_driver::h1::{
    parse_origin_response, BodyDecoder, BodyLength, ChunkError, ChunkLimits, Decoded, HeadError,
};
use localtunnels_driver::http::header_map;
use localtunnels_driver::StreamBody;
use tokio::io::AsyncWrite;

use crate::pool::{OriginConn, OriginPool};
use crate::raw_request::RawOutgoing;

/// A request as the origin gets it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outgoing<'a> {
    pub(crate) method: &'a Method,
    /// Origin form (`/path?query`), or `*`.
    pub(crate) target: &'a str,
    /// Every field in order, `Host` included; `Content-Length` if the body has one.
    pub(crate) headers: &'a [Header],
}

/// Why an exchange with the origin failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ExchangeError {
    /// The connection could not be opened.
    #[error(transparent)]
    Connect(io::Error),
    /// The request cannot be written as HTTP/1.1.
    #[error("invalid request: {0}")]
    Request(&'static str),
    /// The request body failed (the visitor's side ended) or broke its length.
    #[error("request body: {0}")]
    RequestBody(String),
    /// The origin's input ended before the response did.
    #[error("connection closed before message completed")]
    Incomplete,
    /// Reading or writing the connection failed.
    #[error("connection error: {0}")]
    Io(io::Error),
    /// The response head does not parse.
    #[error("invalid response head: {0}")]
    Head(HeadError),
    /// The response head's framing headers are contradictory or invalid.
    #[error("invalid response: {0}")]
    Framing(ResponseFramingError),
    /// The chunked response body does not parse.
    #[error("invalid response body: {0}")]
    Chunked(ChunkError),
}

// By hand, not `#[from]`: that would make each cause a `source` too, and the
// client's error line (which names every source) would say it twice.
impl From<HeadError> for ExchangeError {
    fn from(e: HeadError) -> Self {
        ExchangeError::Head(e)
    }
}

impl From<ResponseFramingError> for ExchangeError {
    fn from(e: ResponseFramingError) -> Self {
        ExchangeError::Framing(e)
    }
}

impl From<ChunkError> for ExchangeError {
    fn from(e: ChunkError) -> Self {
        ExchangeError::Chunked(e)
    }
}

/// A final response head and the body still to be read.
pub(crate) struct Response {
    pub(crate) head: OriginHead,
    /// Boxed: the body (with the exchange's state) is ~280 bytes, and the answer moves
    /// through five futures and values on its way to the stream's pump, a `memcpy`
    /// call each; one allocation costs less than those copies.
    pub(crate) body: Box<ResponseBody>,
}

impl OriginPool {
    /// Sends `req` with `body` on an idle connection or a new one and waits for the
    /// final response head. A bodiless idempotent request that a reused connection
    /// failed before any byte of an answer (the origin closed it meanwhile) is sent
    /// again on a new connection.
    pub(crate) async fn send(self: &Arc<Self>, req: Outgoing<'_>, body: StreamBody) -> Result<Response, ExchangeError> {
        let length = check_request(&req)?;
        let retry = body.is_end_stream() && matches!(*req.method, Method::GET | Method::HEAD | Method::OPTIONS);
        let mut body = Some(body);
        loop {
            let conn = match self.checkout().await {
                Some(conn) => conn,
                None => self.open().await.map_err(ExchangeError::Connect)?,
            };
            let reused = conn.reused;
            let body = match body.take() {
                Some(b) => b,
                None => StreamBody::full(Bytes::new()),
            };
            let mut ex = Exchange::start(conn, &req, length, body);
            match std::future::poll_fn(|cx| ex.poll_head(cx, &self.limits)).await {
                Ok(head) => return self.respond(ex, req.method, head),
                Err(ExchangeError::Incomplete | ExchangeError::Io(_)) if retry && reused && !ex.answered => {
                    tracing::debug!("an idle origin connection was closed under a request: sending it on a new one");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// [`Self::send`] of a bodiless request written from the OPEN's raw head
    /// ([`RawOutgoing`]), beside the typed one (no shared code through an enum: each
    /// branch on the typed path showed in its count, docs/BENCHMARKS.md). The raw head
    /// is let go once written (it holds the tunnel reader's buffer): a retry on a new
    /// connection sends the bytes written on the one that failed.
    pub(crate) async fn send_raw(self: &Arc<Self>, req: RawOutgoing<'_>) -> Result<Response, ExchangeError> {
        let target = req.head.target();
        if target.is_empty() || !target.iter().all(|&b| b > b' ' && b != 0x7f) {
            return Err(ExchangeError::Request("the target is not a URI path"));
        }
        let method = req.method;
        let retry = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        let mut raw = Some(req);
        let mut again: Option<Box<OriginConn>> = None;
        loop {
            let mut conn = match self.checkout().await {
                Some(conn) => conn,
                None => self.open().await.map_err(ExchangeError::Connect)?,
            };
            let reused = conn.reused;
            match (raw.take(), again.take()) {
                // Over the last head's bytes (see `HeadBuf`).
                (Some(raw), _) => conn.head.write_in_place(|buf| raw.write_over(buf, 0)),
                (None, Some(failed)) => conn.head.start().extend_from_slice(failed.head.whole()),
                (None, None) => return Err(ExchangeError::Incomplete),
            }
            let mut ex = Exchange::written(conn);
            match std::future::poll_fn(|cx| ex.poll_head(cx, &self.limits)).await {
                Ok(head) => return self.respond(ex, method, head),
                Err(ExchangeError::Incomplete | ExchangeError::Io(_)) if retry && reused && !ex.answered => {
                    tracing::debug!("an idle origin connection was closed under a request: sending it on a new one");
                    again = ex.conn.take();
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn respond(
        self: &Arc<Self>,
        ex: Exchange,
        method: &Method,
        mut head: OriginHead,
    ) -> Result<Response, ExchangeError> {
        let (length, keeps_alive) = match &mut head {
            // No `Transfer-Encoding` and no `Connection`: its `Content-Length` frames it.
            OriginHead::Block(r) => {
                (response_body_by_length(method, r.status, r.length)?, r.version == Version::HTTP_11)
            }
            OriginHead::Listed(r) => {
                let length = response_body(r.version, method, r.status, &r.headers)?;
                drop_overridden_length(&mut r.headers);
                (length, response_keeps_alive(r.version, &r.headers))
            }
        };
        let keep_alive = keeps_alive && length != BodyLength::CloseDelimited;
        // Written straight into its allocation: `Box::new` built the ~280 bytes on the
        // stack and copied them in (a `memcpy` call per request).
        let body = Box::write(
            Box::new_uninit(),
            ResponseBody {
                ex,
                decoder: BodyDecoder::new(length, ChunkLimits::default()),
                next: None,
                keep_alive,
                pool: self.clone(),
                held: false,
            },
        );
        // A bodiless response's connection goes back to the pool at the body's first
        // poll or its drop, whichever comes first (see `ResponseBody::hold_connection`).
        Ok(Response { head, body })
    }
}

/// What goes on the wire as it is must not be able to add lines or change the framing
/// the origin sees: the target is visible characters only, `Transfer-Encoding` (ours to
/// set) is absent, and `Content-Length` values are one decimal number, returned. (The
/// method and the fields are valid by their types.)
fn check_request(req: &Outgoing<'_>) -> Result<Option<u64>, ExchangeError> {
    let target = req.target.as_bytes();
    if target.is_empty() || !target.iter().all(|&b| b > b' ' && b != 0x7f) {
        return Err(ExchangeError::Request("the target is not a URI path"));
    }
    let mut length = None;
    for (name, value) in req.headers {
        if name == header::TRANSFER_ENCODING {
            return Err(ExchangeError::Request("Transfer-Encoding is set by the client"));
        }
        if name == header::CONTENT_LENGTH {
            let n = decimal(value.as_bytes()).ok_or(ExchangeError::Request("invalid Content-Length"))?;
            if length.is_some_and(|prev| prev != n) {
                return Err(ExchangeError::Request("conflicting Content-Length values"));
            }
            length = Some(n);
        }
    }
    Ok(length)
}

/// How the request body goes on the wire.
enum Framing {
    /// Exactly this many bytes still to come.
    Length(u64),
    /// Chunked, with the trailer fields the head declared.
    Chunked(Vec<HeaderName>),
}

/// The request's side of an exchange: its head and body going out.
struct Sending {
    /// The body still to be read from the stream; `None` once it ended.
    body: Option<StreamBody>,
    framing: Framing,
    /// Everything was written.
    done: bool,
    /// Writing failed: nothing more is sent, though the origin's answer may still come.
    failed: Option<io::Error>,
}

/// A request on its way and its response's head being awaited.
struct Exchange {
    conn: Option<Box<OriginConn>>,
    sending: Sending,
    /// Some bytes of an answer arrived.
    answered: bool,
}

impl Exchange {
    /// Queues the request head on `conn`; the body follows as [`Self::poll_send`] reads it.
    fn start(mut conn: Box<OriginConn>, req: &Outgoing<'_>, length: Option<u64>, body: StreamBody) -> Exchange {
        let has_body = !body.is_end_stream();
        let framing = match length {
            Some(n) => Framing::Length(n),
            None if has_body => Framing::Chunked(declared_trailers(req.headers)),
            None => Framing::Length(0),
        };
        let chunked: &[u8] = if has_body && length.is_none() { b"transfer-encoding: chunked\r\n" } else { b"" };
        write_request_head(conn.head.start(), req.method.as_str(), req.target, req.headers, chunked);
        let sending = Sending { body: has_body.then_some(body), framing, done: false, failed: None };
        Exchange { conn: Some(conn), sending, answered: false }
    }

    /// A bodiless request whose head is in `conn`'s head buffer already.
    fn written(conn: Box<OriginConn>) -> Exchange {
        let sending = Sending { body: None, framing: Framing::Length(0), done: false, failed: None };
        Exchange { conn: Some(conn), sending, answered: false }
    }

    /// Writes what can be written; errors other than the socket's end the exchange.
    /// Inline: most calls (each poll for the response) find the request sent.
    #[inline]
    fn poll_send_now(&mut self, cx: &mut Context<'_>) -> Result<(), ExchangeError> {
        if self.sending.done || self.sending.failed.is_some() || self.conn.is_none() {
            return Ok(());
        }
        self.poll_send_more(cx)
    }

    fn poll_send_more(&mut self, cx: &mut Context<'_>) -> Result<(), ExchangeError> {
        let Some(conn) = self.conn.as_mut() else { return Ok(()) };
        match poll_send(conn, &mut self.sending, cx) {
            Poll::Ready(Ok(())) => self.sending.done = true,
            Poll::Ready(Err(ExchangeError::Io(e))) => {
                tracing::debug!(error = %e, "writing to the origin failed; its answer may still come");
                self.sending.failed = Some(e);
            }
            Poll::Ready(Err(e)) => {
                self.conn = None;
                return Err(e);
            }
            Poll::Pending => {}
        }
        Ok(())
    }

    /// Sends what it can and reads until the final response head is in.
    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        limits: &localtunnels_driver::h1::HeadLimits,
    ) -> Poll<Result<OriginHead, ExchangeError>> {
        loop {
            self.poll_send_now(cx)?;
            let Some(conn) = self.conn.as_mut() else { return Poll::Ready(Err(ExchangeError::Incomplete)) };
            if !conn.read.is_empty() {
                // Written with indexes: a session whose peer reads text re-encodes it.
                match parse_origin_response(&mut conn.read, limits, &mut conn.fields, FieldCoding::Indexed)? {
                    Some(head) if is_interim(head.status()) => continue,
                    // hyper refuses a status under 100 as it parses the head.
                    Some(head) if head.status() < 100 => return Poll::Ready(Err(HeadError::Status.into())),
                    Some(head) => return Poll::Ready(Ok(head)),
                    None => {}
                }
            }
            if std::mem::take(&mut conn.read_armed) {
                // A read in this very poll (the checkout's) found nothing and left the
                // task's waker with the socket: another would find nothing too.
                return Poll::Pending;
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) => {
                    let e = self.sending.failed.take().map_or(ExchangeError::Incomplete, ExchangeError::Io);
                    return Poll::Ready(Err(e));
                }
                Ok(_) => self.answered = true,
                Err(e) => return Poll::Ready(Err(ExchangeError::Io(e))),
            }
        }
    }
}

/// Most bytes queued before the body is read on: beyond, what was read waits for the
/// socket to take the queue (so an upload holds at most this and one piece more than
/// the socket took, and the stream's window is not released ahead of the origin).
const MAX_QUEUED: usize = 16 * 1024;

/// Reads what the body has ready (while little is queued), then writes the queue,
/// until the body has ended and all is written (`Ready(Ok)`) or something waits. The
/// body is read before the queue is written so that the head and the body's first
/// piece (a small body's piece usually arrives with its head) leave in one write, as
/// hyper's client wrote them, not in two.
fn poll_send(conn: &mut OriginConn, s: &mut Sending, cx: &mut Context<'_>) -> Poll<Result<(), ExchangeError>> {
    loop {
        let mut waiting = false;
        if let Some(body) = s.body.as_mut().filter(|_| queued(conn) < MAX_QUEUED) {
            match Pin::new(body).poll_frame(cx) {
                Poll::Ready(frame) => {
                    take_frame(conn, s, frame)?;
                    continue;
                }
                Poll::Pending => waiting = true,
            }
        }
        while !conn.head.unsent().is_empty() || !conn.queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); 8];
            let head = conn.head.unsent();
            let first = usize::from(!head.is_empty());
            slices[0] = IoSlice::new(head);
            let mut n = first;
            for (slot, buf) in slices[first..].iter_mut().zip(conn.queue.iter()) {
                *slot = IoSlice::new(buf);
                n += 1;
            }
            let written =
                ready!(Pin::new(&mut conn.io).poll_write_vectored(cx, &slices[..n])).map_err(ExchangeError::Io)?;
            if written == 0 {
                return Poll::Ready(Err(ExchangeError::Io(io::ErrorKind::WriteZero.into())));
            }
            advance(conn, written);
        }
        ready!(Pin::new(&mut conn.io).poll_flush(cx)).map_err(ExchangeError::Io)?;
        if s.body.is_none() {
            return Poll::Ready(Ok(()));
        }
        if waiting {
            return Poll::Pending;
        }
    }
}

/// Bytes waiting to be written: the rest of the head and the queue.
fn queued(conn: &OriginConn) -> usize {
    conn.head.unsent().len() + conn.queue.iter().map(Bytes::len).sum::<usize>()
}

/// Queues what the body gave: a piece of data (framed), its trailers, or its end.
fn take_frame(
    conn: &mut OriginConn,
    s: &mut Sending,
    frame: Option<Result<Frame<Bytes>, <StreamBody as Body>::Error>>,
) -> Result<(), ExchangeError> {
    let frame = match frame {
        Some(Ok(frame)) => frame,
        Some(Err(e)) => return Err(ExchangeError::RequestBody(e.to_string())),
        None => {
            s.body = None;
            match &s.framing {
                Framing::Length(0) => {}
                Framing::Length(left) => {
                    let message = format!("it ended {left} bytes short of its Content-Length");
                    return Err(ExchangeError::RequestBody(message));
                }
                Framing::Chunked(_) => write_last_chunk(&mut conn.encode, &[]),
            }
            flush_encoded(conn);
            return Ok(());
        }
    };
    match frame.into_data() {
        Ok(data) if data.is_empty() => {}
        Ok(data) => queue_data(conn, &mut s.framing, data)?,
        Err(frame) => {
            let trailers = frame.into_trailers().unwrap_or_default();
            if let Framing::Chunked(allowed) = &s.framing {
                let kept: Vec<Header> =
                    trailers.iter().filter(|(n, _)| allowed.contains(n)).map(|(n, v)| (n.clone(), v.clone())).collect();
                write_last_chunk(&mut conn.encode, &kept);
                flush_encoded(conn);
            }
            // A body with trailers has ended; what a sized body ends with is dropped.
            s.body = None;
            if let Framing::Length(left @ 1..) = s.framing {
                let message = format!("it ended {left} bytes short of its Content-Length");
                return Err(ExchangeError::RequestBody(message));
            }
        }
    }
    Ok(())
}

/// Queues one piece of the request body, framed.
fn queue_data(conn: &mut OriginConn, framing: &mut Framing, data: Bytes) -> Result<(), ExchangeError> {
    match framing {
        Framing::Length(left) => {
            let len = data.len() as u64;
            if len > *left {
                return Err(ExchangeError::RequestBody("it is longer than its Content-Length".into()));
            }
            *left -= len;
            conn.queue.push_back(data);
        }
        Framing::Chunked(_) => {
            write_chunk_size(&mut conn.encode, data.len());
            flush_encoded(conn);
            conn.queue.push_back(data);
            conn.queue.push_back(Bytes::from_static(CHUNK_END));
        }
    }
    Ok(())
}

/// Moves what was encoded into the write queue.
fn flush_encoded(conn: &mut OriginConn) {
    if !conn.encode.is_empty() {
        let bytes = conn.encode.split().freeze();
        conn.queue.push_back(bytes);
    }
}

/// Drops `n` written bytes off the front of what is to be written: the head, then the
/// queue.
fn advance(conn: &mut OriginConn, n: usize) {
    let mut n = conn.head.advance(n);
    let queue = &mut conn.queue;
    while n > 0 {
        let Some(front) = queue.front_mut() else { return };
        if n < front.len() {
            front.advance(n);
            return;
        }
        n -= front.len();
        queue.pop_front();
    }
}

/// The response body: read from the connection as it is polled (which also writes any
/// rest of the request), handing the connection back to the pool as soon as the body
/// is complete. Dropped before that, it drops the connection, whose rest of the
/// response is still on the wire.
pub(crate) struct ResponseBody {
    ex: Exchange,
    decoder: BodyDecoder,
    /// A piece read ahead, so that the last data piece is known to be the last.
    next: Option<Result<Decoded, ChunkError>>,
    keep_alive: bool,
    pool: Arc<OriginPool>,
    /// A complete body keeps its connection until this is unset or the body dropped.
    held: bool,
}

impl ResponseBody {
    /// While `hold`, a body that completes keeps its connection instead of giving it
    /// back to the pool at once; unset (or the body dropped), it gives it back if the
    /// body is complete. The tunnel's exchange holds it over the one poll that finds a
    /// small response whole, and lets go after the write of its frames: the check-in
    /// (the pool's lock and a clock read, ~0.11k instructions) then runs while the
    /// server and the visitor work (docs/BENCHMARKS.md, fifteenth round).
    pub(crate) fn hold_connection(&mut self, hold: bool) {
        self.held = hold;
        self.release_if_done();
    }

    /// The body is complete: the connection goes back to the pool if it may carry
    /// another exchange (the request was sent whole, neither side asked to close).
    fn release_if_done(&mut self) {
        if self.held || !self.decoder.is_done() || matches!(self.next, Some(Ok(Decoded::Data(_))) | Some(Err(_))) {
            return;
        }
        if let Some(conn) = self.ex.conn.take() {
            if self.keep_alive && self.ex.sending.done {
                self.pool.checkin(conn);
            }
        }
    }

    /// The whole body, taken without a poll, when it is a `Content-Length` body read
    /// in full already (the usual small response: it came in with its head) and the
    /// request was sent whole: the bytes `poll_frame` would give as its one data frame,
    /// the connection then released as `poll_frame` releases it (or held). `None` for
    /// any other body (chunked, close-delimited, not all read yet, the request still
    /// going out), which is polled as before. The poll's plumbing (the context, the
    /// frame, the decoder, the answer's error mapped) was ~0.2k instructions per
    /// response (docs/BENCHMARKS.md, eighteenth round, clibody).
    pub(crate) fn take_whole(&mut self) -> Option<Bytes> {
        if self.next.is_some() || !self.ex.sending.done {
            return None;
        }
        let BodyDecoder::Length(left) = self.decoder else { return None };
        let conn = self.ex.conn.as_mut()?;
        let n = usize::try_from(left).ok().filter(|&n| n <= conn.read.len())?;
        let data = conn.read.split_to(n).freeze();
        self.decoder = BodyDecoder::Done;
        self.release_if_done();
        Some(data)
    }

    fn fail(&mut self, e: ExchangeError) -> Poll<Option<Result<Frame<Bytes>, ExchangeError>>> {
        self.ex.conn = None;
        Poll::Ready(Some(Err(e)))
    }

    /// The frame for a decoded piece; `None` at the end.
    fn frame(&mut self, piece: Decoded) -> Option<Result<Frame<Bytes>, ExchangeError>> {
        match piece {
            Decoded::Data(data) => Some(Ok(Frame::data(data))),
            Decoded::Trailers(trailers) => Some(Ok(Frame::trailers(header_map(&trailers)))),
            Decoded::End => None,
        }
    }
}

impl Drop for ResponseBody {
    /// A body complete but not polled to its end (a bodiless one, a held one) gives
    /// its connection back; any other drops it, with the rest of its response.
    fn drop(&mut self) {
        self.hold_connection(false);
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = ExchangeError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ExchangeError>>> {
        let this = self.get_mut();
        loop {
            match this.next.take() {
                Some(Ok(piece)) => return Poll::Ready(this.frame(piece)),
                Some(Err(e)) => return this.fail(e.into()),
                None => {}
            }
            if let Err(e) = this.ex.poll_send_now(cx) {
                return this.fail(e);
            }
            let Some(conn) = this.ex.conn.as_mut() else { return Poll::Ready(None) };
            match this.decoder.decode(&mut conn.read) {
                Ok(Some(piece)) => {
                    if matches!(piece, Decoded::Data(_)) && !this.decoder.is_done() && !conn.read.is_empty() {
                        this.next = this.decoder.decode(&mut conn.read).transpose();
                    }
                    this.release_if_done();
                    return Poll::Ready(this.frame(piece));
                }
                Ok(None) if this.decoder.is_done() => {
                    this.release_if_done();
                    return Poll::Ready(None);
                }
                Ok(None) => {}
                Err(e) => return this.fail(e.into()),
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) => {
                    // The end of a close-delimited body; any other is cut short.
                    this.ex.conn = None;
                    if this.decoder.decode_eof().is_err() {
                        return this.fail(ExchangeError::Incomplete);
                    }
                    return Poll::Ready(None);
                }
                Ok(_) => {}
                Err(e) => return this.fail(ExchangeError::Io(e)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder.is_done() && matches!(self.next, None | Some(Ok(Decoded::End)))
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.decoder, &self.next) {
            (BodyDecoder::Length(n), None) => SizeHint::with_exact(*n),
            (BodyDecoder::Done, None | Some(Ok(Decoded::End))) => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
