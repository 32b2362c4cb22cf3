//! One tunneled HTTP exchange on the client: the stream's request goes to the
//! origin, the origin's response streams back.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use hyper::body::Frame;

use http::{HeaderValue, Request};
use hyper::body::Body as _;
use localtunnels_core::{Header, RequestHead, ResetCode, StreamKind};
use localtunnels_driver::http::{header_map, response_head};
use localtunnels_driver::{pump_body, StreamBody, StreamHandle};

use crate::client::Ctx;
use crate::events::ClientEvent;
use crate::inspect::BodyRecorder;

/// Serves one HTTP stream.
pub(crate) async fn serve(ctx: Arc<Ctx>, stream: StreamHandle, head: RequestHead, end: bool) {
    let started = Instant::now();
    let report = ctx.config.request_events;
    let (tx, rx) = stream.split();
    if report {
        ctx.emit(ClientEvent::Request { method: head.method.clone(), path: head.target.clone() });
    }
    let req = match build_request(&ctx, &head, rx, end) {
        Ok(r) => r,
        Err(message) => return tx.reset(ResetCode::Protocol, &message),
    };
    // The inspector records the request as the origin gets it, its body as it passes.
    let record = ctx.config.inspector.as_ref().map(|i| {
        let headers: Vec<Header> = req.headers().iter().map(|(n, v)| (n.clone(), v.clone())).collect();
        (i.clone(), i.begin(&head.method, &head.target, &headers, false))
    });
    let req = match &record {
        Some((i, id)) => req.map(|body| body.tapped(Box::new(BodyRecorder::request(i, *id)))),
        None => req,
    };
    let failed = |message: &str| {
        if let Some((i, id)) = &record {
            i.update(*id, |s, now| s.fail(*id, now, message));
        }
    };
    let RequestHead { method, target: path, .. } = head;
    // The server resets the stream when the visitor leaves or its response timeout
    // passes: then the origin's request is dropped too, not left running.
    let answer = tokio::select! {
        answer = ctx.origin.call(req) => answer,
        () = tx.cancelled() => {
            let message = format!("{method} {path}: abandoned, the visitor is gone (or timed out)");
            failed(&message);
            return ctx.emit(ClientEvent::Error { message });
        }
    };
    let res = match answer {
        Ok(res) => res,
        Err(e) => {
            let message = origin_error(&ctx, &*e);
            failed(&message);
            ctx.emit(ClientEvent::Error { message: message.clone() });
            tx.reset(ResetCode::OriginUnreachable, &message);
            // The visitor gets the server's 502: report the exchange as such, so
            // `--print-requests` shows every request, failed ones included.
            if report {
                let duration = started.elapsed();
                ctx.emit(ClientEvent::Response { method, path, status: 502, duration, bytes: 0 });
            }
            return;
        }
    };
    let status = res.status().as_u16();
    let (parts, body) = res.into_parts();
    let end = body.is_end_stream();
    let head = response_head(parts.status, &parts.headers, StreamKind::Http);
    let recorder = record.as_ref().map(|(i, id)| {
        i.update(*id, |s, _| s.respond(*id, status, &head.headers));
        BodyRecorder::response(i, *id)
    });
    if let Err(e) = tx.respond(head, end) {
        let message = format!("response to {method} {path} lost: {e}");
        failed(&message);
        return ctx.emit(ClientEvent::Error { message });
    }
    let mut bytes = 0;
    if !end {
        let pumped = if report || recorder.is_some() {
            let observed = ObservedBody::new(body, recorder);
            let count = observed.counter();
            let pumped = pump_body(observed, &tx).await;
            bytes = count.load(Ordering::Relaxed);
            pumped
        } else {
            pump_body(body, &tx).await
        };
        if let Err(e) = pumped {
            ctx.emit(ClientEvent::Error { message: format!("{method} {path}: response body cut: {e}") });
        }
    }
    if report {
        ctx.emit(ClientEvent::Response { method, path, status, duration: started.elapsed(), bytes });
    }
}

fn build_request(
    ctx: &Ctx,
    head: &RequestHead,
    rx: localtunnels_driver::StreamReceiver,
    end: bool,
) -> Result<Request<StreamBody>, String> {
    let mut headers = header_map(&head.headers);
    // This leg accepts trailers (it forwards them); the visitor's own `TE` stayed on
    // the visitor's leg, where the server honours it.
    headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    if let Some(host) = ctx.host_for_origin() {
        headers.insert(http::header::HOST, host.clone());
    }
    let length = headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let mut req = Request::new(StreamBody::new(rx, end, length));
    *req.method_mut() = head.method.parse().map_err(|_| format!("invalid method {}", head.method))?;
    *req.uri_mut() = head.target.parse().map_err(|_| format!("invalid target {}", head.target))?;
    *req.headers_mut() = headers;
    Ok(req)
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
struct ObservedBody<B> {
    inner: Pin<Box<B>>,
    count: Arc<AtomicU64>,
    recorder: Option<BodyRecorder>,
}

impl<B> ObservedBody<B> {
    fn new(inner: B, recorder: Option<BodyRecorder>) -> Self {
        ObservedBody { inner: Box::pin(inner), count: Arc::default(), recorder }
    }

    fn counter(&self) -> Arc<AtomicU64> {
        self.count.clone()
    }
}

impl<B: hyper::body::Body<Data = Bytes>> hyper::body::Body for ObservedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = self.inner.as_mut().poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(d) = frame.data_ref() {
                self.count.fetch_add(d.len() as u64, Ordering::Relaxed);
                if let Some(r) = self.recorder.as_mut() {
                    r.push(d);
                }
            }
        }
        let ended = matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_))));
        if ended || self.inner.is_end_stream() {
            // The end: the copy goes to the store now, before the visitor sees the
            // end, not whenever the body is dropped.
            self.recorder = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}
