//! One tunneled HTTP exchange on the client: the stream's request goes to the
//! origin, the origin's response streams back.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use hyper::body::Frame;

use http::HeaderValue;
use hyper::body::Body as _;
use localtunnels_core::error_page::{default_message, format_request_id, wants_html, ErrorPage};
use localtunnels_core::{RawRequestHead, RequestHead, ResetCode, StreamKind};
use localtunnels_driver::after_write::{self, after_write};
use localtunnels_driver::http::final_status;
use localtunnels_driver::{pump_body, StreamBody, StreamHandle};

use crate::ctx::Ctx;
use crate::events::ClientEvent;
use crate::exchange::ExchangeError;
use crate::forward::{content_length, origin_method, origin_request, send};
use crate::inspect::BodyRecorder;
use crate::kept::{Kept, Target};
use crate::raw_request::{OriginFields, RawOutgoing};

/// Serves one HTTP stream.
pub(crate) async fn serve(ctx: Arc<Ctx>, stream: StreamHandle, head: RequestHead, end: bool) {
    let report = ctx.config.request_events;
    // `LOCALTUNNELS_LOG=debug` logs one line per request, with its byte count.
    let debug = tracing::enabled!(tracing::Level::DEBUG);
    // The clock is read only for someone who reports the duration.
    let started = Started((report || debug).then(Instant::now));
    let id = stream.id();
    let (tx, rx) = stream.split();
    if report {
        ctx.emit(ClientEvent::Request { method: head.method.to_string(), path: head.target.clone() });
    }
    let RequestHead { method, target: path, mut headers, .. } = head;
    let parsed = match origin_request(&ctx, &method, &mut headers) {
        Ok(m) => m,
        Err(message) => return tx.reset(ResetCode::Protocol, &message),
    };
    // The inspector records the request as the origin gets it, its body as it passes.
    // A request with a body is filed first (its tap needs the entry); one without
    // right after the first poll of its sending, which writes it to a pooled origin
    // connection: the origin starts on it sooner, and its answer cannot overtake the
    // entry (it is read by this future's later polls).
    let inspector = ctx.config.inspector.as_ref();
    let mut record = inspector.filter(|_| !end).map(|i| (i, i.begin(&method, &path, &headers, false)));
    let mut body = StreamBody::new(rx, end, content_length(&headers));
    // A request without a body has nothing to record (its entry's body is empty already).
    if let Some((i, id)) = &record {
        body = body.tapped(Box::new(BodyRecorder::request(i, *id)));
    }
    // The server resets the stream when the visitor leaves or its response timeout
    // passes: then the origin's request is dropped too, not left running.
    let mut cancelled = false;
    let answer = {
        let mut sending = std::pin::pin!(send(&ctx, &parsed, &path, &headers, body));
        let mut cancel = std::pin::pin!(tx.cancelled());
        let mut first = true;
        std::future::poll_fn(|cx| {
            // The answer first: once it is in, the cancellation is not polled again.
            let polled = sending.as_mut().poll(cx);
            if std::mem::take(&mut first) && end {
                record = inspector.map(|i| (i, i.begin(&method, &path, &headers, false)));
            }
            if polled.is_pending() && cancel.as_mut().poll(cx).is_ready() {
                cancelled = true;
                return Poll::Ready(Err("cancelled".into()));
            }
            polled
        })
        .await
    };
    let failed = |message: &str| {
        if let Some((i, id)) = &record {
            i.update(*id, |s, now| s.fail(*id, now, message));
        }
    };
    if cancelled {
        // Cut by our own close (its grace ran out) while the visitor still waited,
        // or by the server for a visitor who left or timed out.
        let message = if ctx.closing.load(Ordering::Relaxed) {
            format!("{method} {path}: cut short, the tunnel closed before the origin answered")
        } else {
            format!("{method} {path}: abandoned, the visitor is gone (or timed out)")
        };
        failed(&message);
        return ctx.error(message);
    }
    let res = match answer {
        Ok(res) => res,
        Err(e) => {
            let detail = origin_error(&ctx, &*e);
            let request_id = format_request_id(rand::random());
            failed(&detail);
            ctx.error(format!("{method} {path} (request id {request_id}): {detail}"));
            // The visitor gets a generic 502 page with the request id; the detail
            // only when the owner opted in (`expose_errors`).
            let visitor = VisitorHead::of(&method, &headers);
            // The line reports what the origin sent: nothing (the page is ours).
            error_page(&tx, &ctx, &visitor, 502, &request_id, &detail).await;
            let bytes = 0;
            if debug {
                let ms = started.elapsed().as_millis();
                tracing::debug!(stream = id, %method, %path, status = 502, bytes, ms, %request_id, "request");
            }
            // Report the exchange as such, so `--print-requests` shows every request,
            // failed ones included.
            if report {
                let duration = started.elapsed();
                ctx.emit(ClientEvent::Response { method: method.into_owned(), path, status: 502, duration, bytes });
            }
            return;
        }
    };
    let status = res.status();
    // Interim responses (100, 103) were read past; what is left must be a final
    // status the visitor can be given (not a 101 nobody asked for, not 999).
    if let Err(e) = final_status(status, StreamKind::Http) {
        let message = format!("{method} {path}: the origin's response was refused: {e}");
        failed(&message);
        ctx.emit(ClientEvent::Error { message: message.clone() });
        return tx.reset(ResetCode::Protocol, &message);
    }
    // From here on the same text as in the other of `serve` and `serve_raw` (the test
    // `the_two_paths_answer_alike` holds them to it; docs/BENCHMARKS.md, seventeenth round,
    // cliraw: why the two do not share a function).
    let (status, block, mut body) = res.into_parts();
    let end = body.is_end_stream();
    // One poll of the body, which never waits: a small response's whole body came in
    // with its head, and then the head, the body and the end go to the visitor in one
    // step (and to the inspector in one step). Any other frame it gives is handed to
    // the pump first.
    let (mut whole, mut first) = (None, None);
    // When this exchange is its connection's only one in flight (its latency is the
    // request's; with others in flight the work per request counts:
    // `after_write::pays`), a capture is filed after the write, and the exchange's
    // clean-up runs there too, capture or not (~0.9k instructions: docs/BENCHMARKS.md,
    // nineteenth round, cliend). Then the origin connection goes back to the pool after
    // the write too (when it is dropped): a body found whole by this poll holds it,
    // one that is not lets it go at once.
    let held = after_write::pays();
    if !end {
        if held {
            body.hold_connection(true);
        }
        // A body read whole with its head is taken as it is, without the poll.
        if let Some(data) = body.take_whole() {
            whole = Some(data);
        } else {
            match std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
                Poll::Ready(Some(Ok(frame))) if frame.is_data() && body.is_end_stream() => {
                    whole = Some(frame.into_data().unwrap_or_default());
                }
                Poll::Ready(frame) => first = Some(Box::new(frame)),
                Poll::Pending => {}
            }
        }
        if held && whole.is_none() {
            body.hold_connection(false);
        }
    }
    // The inspector files a response that is whole already in one step: now, or after
    // the write of its frames (`held`: `filing`, below, given the fields the RESPONSE
    // frame carried); any other its head now (the stream takes it) and its body as it
    // passes.
    // The block is lent to the inspector from a scope of its own: a local once
    // borrowed is kept in the future's state until its scope ends, through every later
    // `.await` (the sending of the rest, the pump), even after it was moved out. Those
    // 48 bytes took this future (`client::accept`'s box) from 1,760 bytes to 1,808,
    // out of jemalloc's 1,792-byte class into the 2,048-byte one, whose slabs 32
    // connections' worth of them emptied and refilled (docs/BENCHMARKS.md, sixteenth
    // round: ~0.6k per request at 32 connections).
    let mut recorder = None;
    let mut filing = None;
    let block = {
        let block = block;
        if let Some((i, id)) = record {
            match (&whole, end) {
                (Some(data), _) => filing = i.respond_whole(id, status, &block, data, held),
                (None, true) => filing = i.respond_whole(id, status, &block, &[], held),
                (None, false) => {
                    i.change(id, |s| s.respond(id, status, &block));
                    recorder = Some(BodyRecorder::response(i, id));
                }
            }
        }
        block
    };
    let mut bytes = 0;
    if let Some(data) = &whole {
        bytes = data.len() as u64;
        // With a filing, the frame's fields are kept for it (a reference count).
        let taken = match filing.as_mut() {
            Some(filing) => tx.respond_whole_block_kept(status, block, data, filing.fields()),
            None => tx.respond_whole_block(status, block, data),
        };
        let taken = match taken {
            Ok(taken) => taken,
            Err(e) => {
                drop(filing);
                let message = format!("response to {method} {path} lost: {e}");
                failed(&message);
                return ctx.error(message);
            }
        };
        // The frames are written when this poll ends: the capture, the report and the
        // exchange's clean-up (what this future drops) wait until then (`held`).
        if held {
            after_write().await;
            drop(filing);
        }
        // What the window did not take yet follows as it opens (the origin connection
        // going back to the pool first; else it does when `body` is dropped).
        if taken < data.len() {
            body.hold_connection(false);
            if let Err(e) = tx.send_last(data.slice(taken..)).await {
                ctx.error(format!("{method} {path}: response body cut: {e}"));
            }
        }
    } else {
        let sent = match filing.as_mut() {
            Some(filing) => tx.respond_block_kept(status, block, end, filing.fields()),
            None => tx.respond_block(status, block, end),
        };
        if let Err(e) = sent {
            drop(filing);
            let message = format!("response to {method} {path} lost: {e}");
            failed(&message);
            return ctx.error(message);
        }
        if end {
            if held {
                after_write().await;
                drop(filing);
            }
        } else {
            // By reference: the body stays where it is instead of moving into the pump.
            let pumped = if report || debug || recorder.is_some() || first.is_some() {
                let mut observed = ObservedBody { inner: body, count: 0, recorder, first };
                let pumped = pump_body(&mut observed, &tx).await;
                bytes = observed.count;
                pumped
            } else {
                pump_body(&mut body, &tx).await
            };
            if let Err(e) = pumped {
                ctx.error(format!("{method} {path}: response body cut: {e}"));
            }
        }
    }
    if debug {
        tracing::debug!(stream = id, %method, %path, status, bytes, ms = started.elapsed().as_millis(), "request");
    }
    if report {
        ctx.emit(ClientEvent::Response {
            method: method.into_owned(),
            path: owned(path),
            status,
            duration: started.elapsed(),
            bytes,
        });
    }
}

/// [`serve`] for a bodiless request written to a local origin from the OPEN's raw
/// header block ([`crate::raw_request::takes_raw`]): beside the typed one, not sharing
/// its code through an enum (every branch and wider future on the typed path showed in
/// its count: docs/BENCHMARKS.md). The same exchange from the origin's answer on; the
/// request's differences: nothing to report (raw heads are not taken with
/// `--print-requests`), the entry filed from the block's fields, and the raw head let
/// go after the write, its target and `Accept` kept ([`Kept`]).
pub(crate) async fn serve_raw(ctx: Arc<Ctx>, stream: StreamHandle, raw: RawRequestHead) {
    let report = false;
    // `LOCALTUNNELS_LOG=debug` logs one line per request, with its byte count.
    let debug = tracing::enabled!(tracing::Level::DEBUG);
    // The clock is read only for someone who reports the duration.
    let started = Started((report || debug).then(Instant::now));
    let id = stream.id();
    let (tx, rx) = stream.split();
    let method = raw.method.clone();
    let mut path = Target::default();
    let parsed = match origin_method(&method) {
        Ok(m) => m,
        Err(message) => return tx.reset(ResetCode::Protocol, &message),
    };
    // The inspector records the request as the origin gets it, its body as it passes.
    // A request with a body is filed first (its tap needs the entry); one without
    // right after the first poll of its sending, which writes it to a pooled origin
    // connection: the origin starts on it sooner, and its answer cannot overtake the
    // entry (it is read by this future's later polls).
    let inspector = ctx.config.inspector.as_ref();
    let mut record = None;
    // No body: the stream's receiver has nothing more to give.
    drop(rx);
    // `takes_raw` sends only a local origin's requests here.
    let Some(local) = ctx.origin.as_local() else {
        return tx.reset(ResetCode::Internal, "a raw request head for an origin that is not local");
    };
    // The server resets the stream when the visitor leaves or its response timeout
    // passes: then the origin's request is dropped too, not left running.
    let mut cancelled = false;
    let mut kept = None;
    // The pool's answer as it comes, with no `Answer`/`AnswerBody` around it (the origin
    // is ours): each layer was a move of the answer and a match on the way to the write.
    let answer = {
        let req = RawOutgoing::new(&ctx, &parsed, raw.clone());
        let mut sending = std::pin::pin!(local.pool().send_raw(req));
        let mut raw = Some(raw);
        let mut cancel = std::pin::pin!(tx.cancelled());
        let mut first = true;
        std::future::poll_fn(|cx| {
            // The answer first: once it is in, the cancellation is not polled again.
            let polled = sending.as_mut().poll(cx);
            if std::mem::take(&mut first) {
                // Written: filed from the block's fields as the origin got them, and let go.
                if let Some(raw) = raw.take() {
                    let k = Kept::of(&raw);
                    let fields = OriginFields::new(&ctx, &raw);
                    record = inspector.map(|i| (i, i.begin_fields(&method, raw.target(), &fields)));
                    kept = Some(k);
                }
            }
            if polled.is_pending() && cancel.as_mut().poll(cx).is_ready() {
                // Not read: `cancelled` is looked at first.
                cancelled = true;
                return Poll::Ready(Err(ExchangeError::Incomplete));
            }
            polled
        })
        .await
    };
    let mut visitor = None;
    if let Some(kept) = kept {
        // What the error page needs, read only for an error (as a decoded head's is).
        if answer.is_err() {
            visitor = Some(VisitorHead { head_only: method.eq_ignore_ascii_case("HEAD"), html: kept.html() });
        }
        path = kept.into_target();
    }
    let failed = |message: &str| {
        if let Some((i, id)) = &record {
            i.update(*id, |s, now| s.fail(*id, now, message));
        }
    };
    if cancelled {
        // Cut by our own close (its grace ran out) while the visitor still waited,
        // or by the server for a visitor who left or timed out.
        let message = if ctx.closing.load(Ordering::Relaxed) {
            format!("{method} {path}: cut short, the tunnel closed before the origin answered")
        } else {
            format!("{method} {path}: abandoned, the visitor is gone (or timed out)")
        };
        failed(&message);
        return ctx.error(message);
    }
    let res = match answer {
        Ok(res) => res,
        Err(e) => {
            let detail = origin_error(&ctx, &e);
            let request_id = format_request_id(rand::random());
            failed(&detail);
            ctx.error(format!("{method} {path} (request id {request_id}): {detail}"));
            // The visitor gets a generic 502 page with the request id; the detail
            // only when the owner opted in (`expose_errors`).
            let visitor =
                visitor.unwrap_or(VisitorHead { head_only: method.eq_ignore_ascii_case("HEAD"), html: false });
            // The line reports what the origin sent: nothing (the page is ours).
            error_page(&tx, &ctx, &visitor, 502, &request_id, &detail).await;
            let bytes = 0;
            if debug {
                let ms = started.elapsed().as_millis();
                tracing::debug!(stream = id, %method, %path, status = 502, bytes, ms, %request_id, "request");
            }
            // Report the exchange as such, so `--print-requests` shows every request,
            // failed ones included.
            if report {
                let duration = started.elapsed();
                ctx.emit(ClientEvent::Response {
                    method: method.into_owned(),
                    path: path.into(),
                    status: 502,
                    duration,
                    bytes,
                });
            }
            return;
        }
    };
    let status = res.status();
    // Interim responses (100, 103) were read past; what is left must be a final
    // status the visitor can be given (not a 101 nobody asked for, not 999).
    if let Err(e) = final_status(status, StreamKind::Http) {
        let message = format!("{method} {path}: the origin's response was refused: {e}");
        failed(&message);
        ctx.emit(ClientEvent::Error { message: message.clone() });
        return tx.reset(ResetCode::Protocol, &message);
    }
    // From here on the same text as in the other of `serve` and `serve_raw` (the test
    // `the_two_paths_answer_alike` holds them to it; docs/BENCHMARKS.md, seventeenth round,
    // cliraw: why the two do not share a function).
    let (status, block, mut body) = res.into_parts();
    let end = body.is_end_stream();
    // One poll of the body, which never waits: a small response's whole body came in
    // with its head, and then the head, the body and the end go to the visitor in one
    // step (and to the inspector in one step). Any other frame it gives is handed to
    // the pump first.
    let (mut whole, mut first) = (None, None);
    // When this exchange is its connection's only one in flight (its latency is the
    // request's; with others in flight the work per request counts:
    // `after_write::pays`), a capture is filed after the write, and the exchange's
    // clean-up runs there too, capture or not (~0.9k instructions: docs/BENCHMARKS.md,
    // nineteenth round, cliend). Then the origin connection goes back to the pool after
    // the write too (when it is dropped): a body found whole by this poll holds it,
    // one that is not lets it go at once.
    let held = after_write::pays();
    if !end {
        if held {
            body.hold_connection(true);
        }
        // A body read whole with its head is taken as it is, without the poll.
        if let Some(data) = body.take_whole() {
            whole = Some(data);
        } else {
            match std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
                Poll::Ready(Some(Ok(frame))) if frame.is_data() && body.is_end_stream() => {
                    whole = Some(frame.into_data().unwrap_or_default());
                }
                Poll::Ready(frame) => first = Some(Box::new(frame)),
                Poll::Pending => {}
            }
        }
        if held && whole.is_none() {
            body.hold_connection(false);
        }
    }
    // The inspector files a response that is whole already in one step: now, or after
    // the write of its frames (`held`: `filing`, below, given the fields the RESPONSE
    // frame carried); any other its head now (the stream takes it) and its body as it
    // passes.
    // The block is lent to the inspector from a scope of its own: a local once
    // borrowed is kept in the future's state until its scope ends, through every later
    // `.await` (the sending of the rest, the pump), even after it was moved out. Those
    // 48 bytes took this future (`client::accept`'s box) from 1,760 bytes to 1,808,
    // out of jemalloc's 1,792-byte class into the 2,048-byte one, whose slabs 32
    // connections' worth of them emptied and refilled (docs/BENCHMARKS.md, sixteenth
    // round: ~0.6k per request at 32 connections).
    let mut recorder = None;
    let mut filing = None;
    let block = {
        let block = block;
        if let Some((i, id)) = record {
            match (&whole, end) {
                (Some(data), _) => filing = i.respond_whole(id, status, &block, data, held),
                (None, true) => filing = i.respond_whole(id, status, &block, &[], held),
                (None, false) => {
                    i.change(id, |s| s.respond(id, status, &block));
                    recorder = Some(BodyRecorder::response(i, id));
                }
            }
        }
        block
    };
    let mut bytes = 0;
    if let Some(data) = &whole {
        bytes = data.len() as u64;
        // With a filing, the frame's fields are kept for it (a reference count).
        let taken = match filing.as_mut() {
            Some(filing) => tx.respond_whole_block_kept(status, block, data, filing.fields()),
            None => tx.respond_whole_block(status, block, data),
        };
        let taken = match taken {
            Ok(taken) => taken,
            Err(e) => {
                drop(filing);
                let message = format!("response to {method} {path} lost: {e}");
                failed(&message);
                return ctx.error(message);
            }
        };
        // The frames are written when this poll ends: the capture, the report and the
        // exchange's clean-up (what this future drops) wait until then (`held`).
        if held {
            after_write().await;
            drop(filing);
        }
        // What the window did not take yet follows as it opens (the origin connection
        // going back to the pool first; else it does when `body` is dropped).
        if taken < data.len() {
            body.hold_connection(false);
            if let Err(e) = tx.send_last(data.slice(taken..)).await {
                ctx.error(format!("{method} {path}: response body cut: {e}"));
            }
        }
    } else {
        let sent = match filing.as_mut() {
            Some(filing) => tx.respond_block_kept(status, block, end, filing.fields()),
            None => tx.respond_block(status, block, end),
        };
        if let Err(e) = sent {
            drop(filing);
            let message = format!("response to {method} {path} lost: {e}");
            failed(&message);
            return ctx.error(message);
        }
        if end {
            if held {
                after_write().await;
                drop(filing);
            }
        } else {
            // By reference: the body stays where it is instead of moving into the pump.
            let pumped = if report || debug || recorder.is_some() || first.is_some() {
                let mut observed = ObservedBody { inner: body, count: 0, recorder, first };
                let pumped = pump_body(&mut observed, &tx).await;
                bytes = observed.count;
                pumped
            } else {
                pump_body(&mut body, &tx).await
            };
            if let Err(e) = pumped {
                ctx.error(format!("{method} {path}: response body cut: {e}"));
            }
        }
    }
    if debug {
        tracing::debug!(stream = id, %method, %path, status, bytes, ms = started.elapsed().as_millis(), "request");
    }
    if report {
        ctx.emit(ClientEvent::Response {
            method: method.into_owned(),
            path: owned(path),
            status,
            duration: started.elapsed(),
            bytes,
        });
    }
}

/// A target as its event gives it: `serve`'s `String` as it is, `serve_raw`'s kept
/// [`Target`] as text (their answering halves are one text: see the test
/// `the_two_paths_answer_alike`).
fn owned(path: impl Into<String>) -> String {
    path.into()
}

/// When the exchange started, if anyone reports its duration.
struct Started(Option<Instant>);

impl Started {
    fn elapsed(&self) -> std::time::Duration {
        self.0.map(|t| t.elapsed()).unwrap_or_default()
    }
}

/// What the error page needs of the visitor's request: a HEAD gets no body, and an
/// `Accept` that asks for HTML gets an HTML page.
struct VisitorHead {
    head_only: bool,
    html: bool,
}

impl VisitorHead {
    fn of(method: &str, headers: &[localtunnels_core::Header]) -> Self {
        let accept = headers.iter().find(|(n, _)| n == http::header::ACCEPT).map(|(_, v)| v.as_bytes());
        VisitorHead { head_only: method.eq_ignore_ascii_case("HEAD"), html: wants_html(accept) }
    }
}

/// Answers the visitor with the tunnel's error page (generic, with `request_id`;
/// `detail` too when the owner exposes errors).
async fn error_page(
    tx: &localtunnels_driver::StreamSender,
    ctx: &Ctx,
    visitor: &VisitorHead,
    status: u16,
    request_id: &str,
    detail: &str,
) {
    let page = ErrorPage {
        status,
        message: default_message(status),
        request_id,
        detail: ctx.config.expose_errors.then_some(detail),
    }
    .render(visitor.html);
    let body = Bytes::from(page.body);
    let headers = vec![
        (http::header::CONTENT_TYPE, HeaderValue::from_static(page.content_type)),
        (http::header::CONTENT_LENGTH, HeaderValue::from(body.len())),
        (http::header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    let head = localtunnels_core::ResponseHead { status, headers };
    if tx.respond(head, visitor.head_only).is_ok() && !visitor.head_only {
        // A visitor gone meanwhile is no news: the error itself was reported.
        let _ = tx.send_last(body).await;
    }
}

/// A message naming the origin and the cause, e.g.
/// `localhost:8000: connection refused (is the local server running?)`.
fn origin_error(ctx: &Ctx, e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        cause = format!("{cause}: {s}");
        source = s.source();
    }
    match ctx.origin.authority() {
        Some(a) if cause.contains("refused") => format!("{a}: {cause} (is the local server running?)"),
        Some(a) if cause.contains("certificate") => {
            format!("{a}: {cause} (for a self-signed certificate use --allow-invalid-cert)")
        }
        Some(a) => format!("{a}: {cause}"),
        None => cause,
    }
}

/// Counts the data bytes of a body as they pass, and copies the first ones for the
/// inspector (its recorder files them when the body ends or is dropped).
/// Pumped by reference, so the count is read off it afterwards.
struct ObservedBody<B: hyper::body::Body> {
    inner: B,
    count: u64,
    recorder: Option<BodyRecorder>,
    /// What the first poll of the body gave, handed on first (boxed: a response that
    /// is not whole at its head is the rare, large one).
    first: Option<Box<Polled<B::Error>>>,
}

/// What a body's poll gave when ready: a frame, an error, or the end.
type Polled<E> = Option<Result<Frame<Bytes>, E>>;

impl<B: hyper::body::Body<Data = Bytes, Error: Unpin> + Unpin> hyper::body::Body for ObservedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = match this.first.take() {
            Some(frame) => Poll::Ready(*frame),
            None => Pin::new(&mut this.inner).poll_frame(cx),
        };
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(d) = frame.data_ref() {
                this.count += d.len() as u64;
                if this.inner.is_end_stream() {
                    // The last chunk: copied and filed as the end at once.
                    if let Some(r) = this.recorder.take() {
                        r.finish(d);
                    }
                } else if let Some(r) = this.recorder.as_mut() {
                    r.push(d);
                }
            }
        }
        let ended = matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_))));
        if ended || this.inner.is_end_stream() {
            // The end: the copy goes to the store now, before the visitor sees the
            // end, not whenever the body is dropped.
            this.recorder = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    /// The stream's future is boxed per request (`client::accept`): at 1,793 bytes or
    /// more it leaves jemalloc's 1,792-byte class for the 2,048-byte one, whose slabs
    /// 32 connections' worth of these boxes empty and refill each batch (~0.6k
    /// instructions per request; docs/BENCHMARKS.md, sixteenth round, the client's
    /// allocations at 32 connections). A local borrowed before an `.await` stays in
    /// the future to its scope's end: lend it from a scope of its own, as `block` is.
    #[test]
    fn the_stream_future_stays_in_jemallocs_1792_byte_class() {
        fn size_of_output<A, B, C, D, F>(_: fn(A, B, C, D) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        let size = size_of_output(super::serve);
        assert!(size <= 1792, "http::serve's future is {size} bytes, over 1,792");
    }

    /// `serve_raw`'s future (the bench's requests, and most bodiless ones) takes the
    /// pool's answer with no `Answer` around it: 1,672 bytes -> 1,488, from jemalloc's
    /// 1,792-byte class into the 1,536-byte one (docs/BENCHMARKS.md, twentieth round,
    /// clipath). A layer or a local kept across an `.await` takes it back.
    #[test]
    fn the_raw_stream_future_stays_in_jemallocs_1536_byte_class() {
        fn size_of_output<A, B, C, F>(_: fn(A, B, C) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        let size = size_of_output(super::serve_raw);
        assert!(size <= 1536, "http::serve_raw's future is {size} bytes, over 1,536");
    }

    /// `serve` and `serve_raw` answer alike: their halves from the origin's answer on
    /// are one text, kept twice (sharing it in a function put `serve`'s future over
    /// the class above), so a change to one must be made to the other.
    #[test]
    fn the_two_paths_answer_alike() {
        fn answer_half<'a>(source: &'a str, function: &str) -> &'a str {
            let start = source.find(function).unwrap_or_else(|| panic!("no {function}"));
            let body = &source[start..];
            let end = body.find("\n}\n").expect("the function's end");
            let from = body.find("let (status, block, mut body) = res.into_parts();").expect("the answer's half");
            assert!(from < end, "{function} has no answer's half");
            &body[from..end]
        }
        let source = include_str!("http.rs");
        let typed = answer_half(source, "pub(crate) async fn serve(");
        let raw = answer_half(source, "pub(crate) async fn serve_raw(");
        assert!(typed.len() > 2_000, "the half found is too short: {typed}");
        assert_eq!(typed, raw, "serve's and serve_raw's answers differ");
    }
}
