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
use localtunnels_driver::{StreamEvent, StreamReceiver, StreamSender};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};

use super::block_head::{checked_head, StreamHead, TunnelFields};
use super::closing::Closing;
use super::direct::DirectSocket;
use super::encode::Reply;
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
    /// Carries `req` through `tunnel`; true when the connection may carry another request.
    /// `shutdown` is watched while the tunnel's reader may write the response
    /// ([`super::direct`]): the task then sleeps past the response.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn exchange(
        &mut self,
        state: &ServerState,
        tunnel: Arc<Tunnel>,
        peer: &Peer,
        req: &mut ParsedRequest,
        host: Option<http::HeaderValue>,
        framing: RequestFraming,
        shutdown: &mut Closing,
    ) -> bool {
        // The fields are final here but for removals: the set holds for the checks below.
        let Noted { present, grouped } = Noted::of(&req.headers, &mut self.fields);
        let Begun { html, reply, allow_trailers } = begin(req, present, &framing, self.closing);
        // The request's clock: the poll's one reading ([`crate::poll_clock`]), taken by
        // the checks when a rate limit charges the request, else after the OPEN's send
        // (usually the reading the socket's idle deadline took when the head was read:
        // the request's start for its deadline and metrics).
        let mut now = LazyNow::default();
        let mut permit =
            match crate::access::check_fields_at(state, &tunnel, peer, &mut self.visitor, &mut req.headers, &mut now) {
                Ok(admitted) => Permit { held: Some(admitted), lent: None },
                Err(refused) => return self.finish(state, req, html, framing, reply, *refused, now.get()).await,
            };
        tunnel.count_request();
        Counters::bump(&state.counters.requests);
        let end = framing.body == BodyLength::Empty;
        let stream = match super::open::open(state, &tunnel, peer, req, (present, grouped), host.as_ref(), end) {
            Ok(s) => s,
            Err(e) => {
                let res = open_error(state, &tunnel.name, e);
                return self.finish(state, req, html, framing, reply, res, now.get()).await;
            }
        };
        let started = now.get();
        let (tx, mut rx) = stream.split();
        // The body's last bytes are granted back when `rx` is dropped, after the write.
        rx.release_last_on_drop();
        let max_body = state.config.limits.max_body;
        let mut upload = Upload::new(BodyDecoder::new(framing.body, ChunkLimits::default()), tx.clone(), max_body);
        let Conn { io, buf, out, early, response_due, direct, written_at, .. } = self;
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
        // The socket is read (the rest of the body) while the response is written only
        // when the body is not all here yet; a GET needs no split.
        // A block, so that the body's reader lets go of the read buffer at its end.
        // Nothing but the response is awaited (the request's body all sent, no
        // pipelined request read, nothing to write first) and the reply is one the
        // tunnel's reader may write itself ([`super::direct`]).
        let lendable = upload_end == Some(UploadEnd::Done) && out.is_empty() && buf.is_empty() && plain_reply(reply);
        let (status, keep) = {
            let (mut rd, mut wr) = match upload_end {
                Some(_) => (None, Writer::Whole(io)),
                None => {
                    let (rd, wr) = tokio::io::split(io);
                    (Some(rd), Writer::Half(wr))
                }
            };
            let mut rest = std::pin::pin!(async {
                match rd.as_mut() {
                    Some(rd) => upload.send_rest(buf, rd).await,
                    None => UploadEnd::Done,
                }
            });
            // From the request's start (its one clock read before the answer).
            let at = tokio::time::Instant::from_std(started) + state.config.response_timeout;
            let due = match response_due {
                Some(due) => {
                    due.set(at);
                    due
                }
                None => response_due.insert(LazyDeadline::new(at)),
            };
            // The tunnel's reader may write the response itself: this task then sleeps
            // past it, until the socket or a deadline wakes it. The offer lasts one
            // keep-alive time at most, so that an idle connection's next head is not
            // awaited longer than after a response this task wrote.
            let lent_until = tokio::time::Instant::from_std(started) + state.config.limits.header_read_timeout;
            let mut offered = match &*direct {
                Some(direct) if lendable => {
                    direct.arm(reply, started, permit.held.take());
                    permit.lent = Some(direct);
                    rx.offer_direct(direct.clone());
                    if lent_until < at {
                        due.set(lent_until);
                    }
                    true
                }
                _ => false,
            };
            // The reader took the offer after it was withdrawn: its event is on its way.
            let mut taken = false;
            let first = if let Some(UploadEnd::Failed(failure)) = upload_end {
                Err(crate::upload::answer(state, &tx, failure))
            } else {
                loop {
                    tokio::select! {
                        biased;
                        end = &mut rest, if upload_end.is_none() => match end {
                            UploadEnd::Failed(failure) => break Err(crate::upload::answer(state, &tx, failure)),
                            end => upload_end = Some(end),
                        },
                        ev = rx.recv() => break Ok(ev),
                        // Without a body to read, the socket is watched for the visitor leaving
                        // (what it sends meanwhile is kept for the next exchange).
                        read = wr.read_early(early), if early.len() < EARLY_MAX => match read {
                            Ok(0) | Err(_) => return false,
                            // A pipelined request: the response, if the reader writes it
                            // after all, must wake this task to serve it.
                            Ok(_) if offered => {
                                offered = false;
                                taken = !rx.withdraw_direct();
                            }
                            Ok(_) => {}
                        },
                        // Shutting down: the response, if the reader writes it, must wake
                        // this task to close the connection.
                        () = std::future::poll_fn(|cx| shutdown.poll_changed(cx)), if offered => {
                            offered = false;
                            taken = !rx.withdraw_direct();
                        }
                        () = std::future::poll_fn(|cx| due.poll_expired(cx)) => {
                            // The reader took the offer: the response is on its way (it
                            // is delivered in the same hold of the tunnel's lock).
                            if offered {
                                offered = false;
                                taken = !rx.withdraw_direct();
                                // The offer's own deadline: the response's follows.
                                if !taken && lent_until < at {
                                    due.set(at);
                                    continue;
                                }
                            }
                            if taken {
                                break Ok(rx.recv().await);
                            }
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
                Ok(ev) => response(state, &tunnel.name, &tx, ev, rx, out, reply),
                Err(res) => Outcome::Answer(res),
            };
            // The request's duration is recorded at the first write of its answer, not
            // before it: the visitor does not wait for the clock read and the histogram.
            let mut answered = Answered::new(&state.counters.recorded, started);
            match outcome {
                Outcome::Answer(res) => {
                    let res = if html.wanted() { as_html(res) } else { res };
                    let status = res.status();
                    let written = write_answer(&mut wr, out, reply, res).await;
                    answered.record();
                    // The stream is over: a body still arriving is not read.
                    (status, written && upload_end == Some(UploadEnd::Done))
                }
                Outcome::Written { status, rest } => {
                    // The reader recorded the duration after its write; the next head's
                    // deadline counts from that write. A whole write let the exchange's
                    // count go too; a partial one left it, and the rest, to this task.
                    *written_at = permit.lent.map(|d| d.written_at());
                    if rest.is_empty() {
                        permit.lent = None;
                    }
                    let written = rest.is_empty() || wr.write_all(&rest).await.is_ok();
                    (status, written && upload_end == Some(UploadEnd::Done))
                }
                Outcome::Stream { status, head, mut rx, end } => {
                    let response = Streamed { status, head, end, allow_trailers };
                    let sent = write_streamed(&mut wr, out, reply, response, &mut rx, &mut answered);
                    let (sent, end) = match upload_end {
                        Some(end) => (sent.await, end),
                        None => tokio::join!(sent, &mut rest),
                    };
                    answered.record();
                    (status, sent && end == UploadEnd::Done)
                }
            }
        };
        drop(permit);
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

/// The exchange's count against its visitor address ([`crate::visitors::Admitted`]):
/// dropped when the exchange ends. While the socket is lent to the tunnel's reader
/// the count goes with it ([`super::direct`]), and the reader lets it go when it
/// writes the whole response; otherwise the exchange's end takes it back from the
/// socket and lets it go (the drop of this, on every way out of the exchange).
struct Permit<'a> {
    /// Held by this task (not lent).
    held: Option<crate::visitors::Admitted>,
    /// Lent with this socket, and not let go by a whole write.
    lent: Option<&'a DirectSocket>,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Some(direct) = self.lent {
            drop(direct.take_back());
        }
    }
}

/// The connection's write side: the whole socket, or its write half while the request
/// body is still being read from the other half.
enum Writer<'a, T> {
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
