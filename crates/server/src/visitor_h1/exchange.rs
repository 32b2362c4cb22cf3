//! One visitor request through a tunnel on the HTTP/1 path, with the checks and
//! answers of hyper's path ([`crate::proxy`], [`crate::access`], [`crate::upload`]):
//! the request head goes into a stream at once (built from the parsed field list, no
//! `HeaderMap` in between), its body follows from the read buffer (and the socket),
//! the response head is checked ([`for_visitor`]: the rules of
//! `forwardable_response`, on the frame's own list), its cookies scoped, and it is
//! written to the visitor with its body as the stream delivers it ([`super::write`]).

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use http::{Response, StatusCode};
use localtunnels_core::ResetCode;
use localtunnels_driver::h1::chunked::ChunkLimits;
use localtunnels_driver::h1::framing::has_token;
use localtunnels_driver::h1::{BodyDecoder, BodyLength, ParsedRequest, RequestFraming};
use localtunnels_driver::lazy_deadline::LazyDeadline;
use localtunnels_driver::{OpenWithinError, StreamEvent, StreamReceiver, StreamSender};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};

use super::block_head::{checked_head, StreamHead, TunnelFields};
use super::encode::Reply;
use super::lent::Lent;
use super::present::{Noted, Present};
use super::upload::{Upload, UploadEnd};
use super::write::{flush, write_answer, write_streamed, Answered, Streamed};
use super::Conn;
use crate::access::LazyNow;
use crate::exchange::{invalid_response, open_error, reset_response};
use crate::fields::Fields;
use crate::state::{Body, Counters, Peer, ServerState};
use crate::tunnel::Tunnel;
use crate::visitor_error::{as_html, visitor_error};

/// Most bytes read ahead (a pipelined request) while a response is awaited.
const EARLY_MAX: usize = 64 * 1024;

/// Room made for each read ahead.
const EARLY_READ: usize = 2048;

/// What came back for the request: the server's own answer, or the tunnel's response.
enum Outcome {
    Answer(Response<Body>),
    Stream {
        status: StatusCode,
        head: StreamHead,
        rx: StreamReceiver,
        end: bool,
    },
    /// Written by the tunnel's reader ([`super::direct`]), but for `rest`.
    Written {
        status: StatusCode,
        rest: Bytes,
    },
}

impl<T> Conn<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Carries `req` through `tunnel`; true when the connection may carry another
    /// request. An exchange lent to the tunnel's reader ([`super::direct`]) ends here
    /// with `lent` set: the wait for the next request learns how it ended ([`super::lent`]).
    pub(super) async fn exchange(
        &mut self,
        state: &ServerState,
        tunnel: Arc<Tunnel>,
        peer: &Peer,
        req: &mut ParsedRequest,
        host: Option<http::HeaderValue>,
        framing: RequestFraming,
    ) -> bool {
        // The fields are final here but for removals: the set holds for the checks below.
        let Noted { present, grouped } = Noted::of(&req.headers, &mut self.fields);
        let Begun { html, reply, allow_trailers } = begin(req, present, &framing, self.closing);
        // The request's clock: the poll's one reading ([`crate::poll_clock`]), taken by
        // the checks when a rate limit charges the request, else after the OPEN's send
        // (usually the reading the socket's idle deadline took when the head was read:
        // the request's start for its deadline and metrics).
        let mut now = LazyNow::default();
        let admitted =
            match crate::access::check_fields_at(state, &tunnel, peer, &mut self.visitor, &mut req.headers, &mut now) {
                Ok(admitted) => Some(admitted),
                Err(refused) => return self.finish(state, req, html, framing, reply, *refused, now.get()).await,
            };
        let end = framing.body == BodyLength::Empty;
        // The tunnel's stream limit is checked by the open, under its lock; a request it
        // refuses is not counted, as when the checks above refused it.
        let stream = match super::open::open(state, &tunnel, peer, req, (present, grouped), host.as_ref(), end) {
            Ok(s) => s,
            Err(OpenWithinError::Busy(in_flight)) => {
                drop(admitted);
                let res = crate::access::tunnel_busy(state, &tunnel.name, in_flight);
                return self.finish(state, req, html, framing, reply, res, now.get()).await;
            }
            Err(OpenWithinError::Open(e)) => {
                tunnel.count_request();
                Counters::bump(&state.counters.requests);
                let res = open_error(state, &tunnel.name, e);
                return self.finish(state, req, html, framing, reply, res, now.get()).await;
            }
        };
        // Counted after the OPEN's send, off the visitor's wait.
        tunnel.count_request();
        Counters::bump(&state.counters.requests);
        let started = now.get();
        let (tx, mut rx) = stream.split();
        // The body's last bytes are granted back when `rx` is dropped, after the write.
        rx.release_last_on_drop();
        let max_body = state.config.limits.max_body;
        let mut upload = Upload::new(BodyDecoder::new(framing.body, ChunkLimits::default()), tx.clone(), max_body);
        let Conn { io, buf, out, early, response_due, direct, lent, .. } = self;
        let mut upload_end = Some(UploadEnd::Done);
        if framing.body != BodyLength::Empty {
            if framing.expect_continue {
                out.put_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                if !flush(io, out).await {
                    return false;
                }
            }
            upload_end = upload.send_buffered(buf).await;
        }
        let answer = Answer { html, reply, allow_trailers, started };
        // From the request's start (its one clock read before the answer).
        let at = tokio::time::Instant::from_std(started) + state.config.response_timeout;
        // Nothing but the response is awaited (the request's body all sent, no
        // pipelined request read, nothing to write first) and the reply is one the
        // tunnel's reader may write itself ([`super::direct`]): the exchange is lent to
        // it whole and ends here; the task sleeps in the wait for the next request
        // ([`super::lent`]). Not when each request is logged (its line needs the head).
        let lendable = upload_end == Some(UploadEnd::Done) && out.is_empty() && buf.is_empty() && plain_reply(reply);
        if let Some(direct) = direct.as_deref().filter(|_| lendable && !state.config.verbose) {
            drop(upload);
            // Lent with this task's waker, for the events the reader does not write: the
            // wait past the exchange then skips its first poll of them ([`super::lent`]).
            let mut lending = Some(((reply, started, admitted), tx, rx));
            let news = std::future::poll_fn(|cx| {
                let news =
                    lending.take().is_some_and(|(parts, tx, rx)| direct.lend(parts, tx, rx, cx.waker()).is_ready());
                std::task::Poll::Ready(news)
            })
            .await;
            *lent = Some(Lent { tunnel, answer, at, news });
            return true;
        }
        // The socket is read (the rest of the body) while the response is written only
        // when the body is not all here yet; a GET needs no split.
        // A block, so that the body's reader lets go of the read buffer at its end.
        let (status, keep) = {
            let (mut rd, mut wr) = match upload_end {
                Some(_) => (None, Writer::Whole(io)),
                None => {
                    let (rd, wr) = tokio::io::split(io);
                    (Some(rd), Writer::Half(wr))
                }
            };
            let rest = std::pin::pin!(async {
                match rd.as_mut() {
                    Some(rd) => upload.send_rest(buf, rd).await,
                    None => UploadEnd::Done,
                }
            });
            let due = match response_due {
                Some(due) => {
                    due.set(at);
                    due
                }
                None => response_due.insert(LazyDeadline::new(at)),
            };
            let failed = match upload_end {
                Some(UploadEnd::Failed(failure)) => Some(crate::upload::answer(state, &tx, failure)),
                _ => None,
            };
            let waiting = Waiting { name: &tunnel.name, tx: &tx, rx, out, early, due };
            respond(state, waiting, &mut wr, rest, upload_end, failed, answer).await
        };
        drop(admitted);
        if !early.is_empty() {
            buf.extend_from_slice(early);
            early.clear();
        }
        if state.config.verbose {
            let path = req.path_and_query();
            let (status, ms) = (status.as_u16(), started.elapsed().as_millis());
            tracing::info!(tunnel = %tunnel.name, %peer, method = %req.method, %path, status, ms, "request");
        }
        keep
    }

    /// Answers a request whose body was not read (the server refused it): the body is
    /// skipped if it is already buffered, else the connection closes after the answer.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn finish(
        &mut self,
        state: &ServerState,
        req: &ParsedRequest,
        html: Html,
        framing: RequestFraming,
        reply: Reply,
        res: Response<Body>,
        started: std::time::Instant,
    ) -> bool {
        let res = if html.wanted() { as_html(res) } else { res };
        if state.config.verbose {
            let path = req.path_and_query();
            let (status, ms) = (res.status().as_u16(), started.elapsed().as_millis());
            tracing::info!(method = %req.method, %path, status, ms, "request");
        }
        let written = write_answer(&mut self.io, &mut self.out, reply, res).await;
        written && self.skip_body(framing)
    }

    /// The server's answer to a request refused before routing (its host).
    pub(super) async fn answer_unread(
        &mut self,
        head: &ParsedRequest,
        framing: RequestFraming,
        res: Response<Body>,
    ) -> bool {
        let reply = Reply {
            version: head.version,
            head: head.method == http::Method::HEAD,
            keep_alive: framing.keep_alive && !self.closing,
        };
        let written = write_answer(&mut self.io, &mut self.out, reply, res).await;
        written && self.skip_body(framing)
    }

    /// Skips an unread request body held whole in the buffer; false when it is not.
    fn skip_body(&mut self, framing: RequestFraming) -> bool {
        let mut decoder = BodyDecoder::new(framing.body, ChunkLimits::default());
        while let Ok(Some(_)) = decoder.decode(&mut self.buf) {}
        decoder.is_done()
    }
}

/// What the answer to a request depends on, kept from its head.
pub(super) struct Answer {
    pub html: Html,
    pub reply: Reply,
    pub allow_trailers: bool,
    /// The request's start, for its duration.
    pub started: std::time::Instant,
}

/// A stream whose response the task waits for, and what it writes it with.
pub(super) struct Waiting<'a> {
    /// The tunnel's name.
    pub name: &'a str,
    pub tx: &'a StreamSender,
    pub rx: StreamReceiver,
    pub out: &'a mut BytesMut,
    /// Bytes read ahead meanwhile (for the connection's next request).
    pub early: &'a mut BytesMut,
    /// The response's deadline.
    pub due: &'a mut LazyDeadline,
}

/// Waits for the response (while `rest` sends the request body's rest, unless
/// `upload_end` says how it ended; `failed`: the server's answer to a body it refused)
/// and writes it to `wr`: its status, and whether the connection may carry another
/// request.
pub(super) async fn respond<T, R>(
    state: &ServerState,
    waiting: Waiting<'_>,
    wr: &mut Writer<'_, T>,
    mut rest: std::pin::Pin<&mut R>,
    mut upload_end: Option<UploadEnd>,
    failed: Option<Response<Body>>,
    answer: Answer,
) -> (StatusCode, bool)
where
    T: AsyncRead + AsyncWrite + Unpin,
    R: std::future::Future<Output = UploadEnd>,
{
    let Waiting { name, tx, mut rx, out, early, due } = waiting;
    let Answer { html, reply, allow_trailers, started } = answer;
    let first = if let Some(res) = failed {
        Err(res)
    } else {
        loop {
            tokio::select! {
                biased;
                end = &mut rest, if upload_end.is_none() => match end {
                    UploadEnd::Failed(failure) => break Err(crate::upload::answer(state, tx, failure)),
                    end => upload_end = Some(end),
                },
                ev = rx.recv() => break Ok(ev),
                // Without a body to read, the socket is watched for the visitor leaving
                // (what it sends meanwhile is kept for the next exchange).
                read = wr.read_early(early), if early.len() < EARLY_MAX => match read {
                    Ok(0) | Err(_) => return (StatusCode::OK, false),
                    Ok(_) => {}
                },
                () = std::future::poll_fn(|cx| due.poll_expired(cx)) => {
                    tx.reset(ResetCode::Timeout, "no response in time");
                    Counters::bump(&state.counters.timeouts);
                    let secs = state.config.response_timeout.as_secs_f32();
                    let message = format!("The app behind this tunnel did not answer within {secs} s.");
                    break Err(visitor_error(StatusCode::GATEWAY_TIMEOUT, message, None));
                }
            }
        }
    };
    let outcome = match first {
        Ok(ev) => response(state, name, tx, ev, rx, out, reply),
        Err(res) => Outcome::Answer(res),
    };
    // The request's duration is recorded at the first write of its answer, not
    // before it: the visitor does not wait for the clock read and the histogram.
    let mut answered = Answered::new(&state.counters.recorded, started);
    match outcome {
        Outcome::Answer(res) => {
            let res = if html.wanted() { as_html(res) } else { res };
            let status = res.status();
            let written = write_answer(wr, out, reply, res).await;
            answered.record();
            // The stream is over: a body still arriving is not read.
            (status, written && upload_end == Some(UploadEnd::Done))
        }
        Outcome::Written { status, rest: left } => {
            // Not expected here (the task waits only for a response the reader will not
            // write), but complete: the reader recorded the duration.
            let written = left.is_empty() || wr.write_all(&left).await.is_ok();
            (status, written && upload_end == Some(UploadEnd::Done))
        }
        Outcome::Stream { status, head, mut rx, end } => {
            let response = Streamed { status, head, end, allow_trailers };
            let sent = write_streamed(wr, out, reply, response, &mut rx, &mut answered);
            let (sent, end) = match upload_end {
                Some(end) => (sent.await, end),
                None => tokio::join!(sent, &mut rest),
            };
            answered.record();
            (status, sent && end == UploadEnd::Done)
        }
    }
}

/// What is read from a request before it is checked: whether the server's own answers
/// are HTML, how to reply, whether trailers may be sent.
pub(super) struct Begun {
    pub html: Html,
    pub reply: Reply,
    pub allow_trailers: bool,
}

/// [`Begun`] for `req`, whose fields carry the names `present` has (or fewer).
pub(super) fn begin(req: &ParsedRequest, present: Present, framing: &RequestFraming, closing: bool) -> Begun {
    static TE: http::HeaderName = http::header::TE;
    let accept = present.has(Present::ACCEPT).then(|| req.headers.first(&http::header::ACCEPT).cloned());
    Begun {
        html: Html(accept.flatten()),
        reply: reply_to(req, framing, closing),
        allow_trailers: present.has(Present::TE) && req.headers.values_of(&TE).any(|v| has_token(v, "trailers")),
    }
}

/// Whether the server's own answers to a request are HTML pages: its `Accept`, read
/// only when the server answers (an error) rather than for every request (a browser's
/// `Accept` took ~0.65k instructions to read: docs/BENCHMARKS.md, fourteenth round).
pub(super) struct Html(Option<http::HeaderValue>);

impl Html {
    /// The request's first `Accept` asks for HTML (as [`crate::visitor_error::accepts_html`]).
    pub(super) fn wanted(&self) -> bool {
        localtunnels_core::error_page::wants_html(self.0.as_ref().map(http::HeaderValue::as_bytes))
    }
}

/// What the request says about its response; a server shutting down closes the
/// connection after it (and says so, as hyper does).
pub(super) fn reply_to(req: &ParsedRequest, framing: &RequestFraming, closing: bool) -> Reply {
    let keep_alive = framing.keep_alive && !closing;
    Reply { version: req.version, head: req.method == http::Method::HEAD, keep_alive }
}

/// Whether the block way writes the head answering `reply` (HTTP/1.1, kept alive, not
/// `HEAD`): the only reply the tunnel's reader writes itself ([`super::direct`]).
fn plain_reply(reply: Reply) -> bool {
    reply.version == http::Version::HTTP_11 && reply.keep_alive && !reply.head
}

/// The first event of the stream, as the visitor's answer (through the tunnel `name`).
/// A usual response head is written into `out` here, from the frame's bytes
/// ([`checked_head`]).
fn response(
    state: &ServerState,
    name: &str,
    tx: &StreamSender,
    ev: Option<StreamEvent>,
    rx: StreamReceiver,
    out: &mut BytesMut,
    reply: Reply,
) -> Outcome {
    let (status, fields, end) = match ev {
        Some(StreamEvent::ResponseBlock { status, block, end }) => (status, TunnelFields::Block(block), end),
        Some(StreamEvent::Response { head, end }) => (head.status, TunnelFields::List(head.headers), end),
        Some(StreamEvent::Written { status, rest }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            return Outcome::Written { status, rest };
        }
        Some(StreamEvent::Reset { code, message }) => return Outcome::Answer(reset_response(state, code, &message)),
        _ => {
            let message = "the exchange ended without a response";
            return Outcome::Answer(reset_response(state, ResetCode::Internal, message));
        }
    };
    match checked_head(out, reply, status, fields, end, name, &state.config.domain) {
        Ok((status, head)) => Outcome::Stream { status, head, rx, end },
        Err(e) => Outcome::Answer(invalid_response(state, tx, e)),
    }
}

/// The connection's write side: the whole socket, or its write half while the request
/// body is still being read from the other half.
pub(super) enum Writer<'a, T> {
    Whole(&'a mut T),
    Half(WriteHalf<&'a mut T>),
}

impl<T: AsyncRead + Unpin> Writer<'_, T> {
    /// Reads from the whole socket; never completes on a write half (the body's
    /// reader watches the socket then).
    async fn read_early(&mut self, early: &mut BytesMut) -> std::io::Result<usize> {
        match self {
            Writer::Whole(io) => {
                // The connection's own buffer, kept between exchanges: allocated once,
                // and not zeroed for a read that usually finds nothing.
                early.reserve(EARLY_READ);
                io.read_buf(early).await
            }
            Writer::Half(_) => std::future::pending().await,
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Writer<'_, T> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Writer::Whole(io) => std::pin::Pin::new(&mut **io).poll_write(cx, buf),
            Writer::Half(half) => std::pin::Pin::new(half).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Writer::Whole(io) => std::pin::Pin::new(&mut **io).poll_write_vectored(cx, bufs),
            Writer::Half(half) => std::pin::Pin::new(half).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Writer::Whole(io) => io.is_write_vectored(),
            Writer::Half(half) => half.is_write_vectored(),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Writer::Whole(io) => std::pin::Pin::new(&mut **io).poll_flush(cx),
            Writer::Half(half) => std::pin::Pin::new(half).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Writer::Whole(io) => std::pin::Pin::new(&mut **io).poll_shutdown(cx),
            Writer::Half(half) => std::pin::Pin::new(half).poll_shutdown(cx),
        }
    }
}
