//! A visitor's request body on its way into the tunnel, and how its failure becomes
//! the visitor's answer at once rather than a wait for the tunnel's response.
//!
//! The body streams from a task of its own ([`send_body`]) while the proxy waits for
//! the response head. When reading the visitor's body fails, the stream is reset and
//! the task reports why, so the proxy answers 413 (over `max_body`) or 400 (framing that
//! does not parse, such as a chunk size `zz`, or a body cut short) immediately. Failing
//! to *send* into the tunnel is not reported here: the stream's own reset event says
//! what happened on that side.

use std::io;

use futures_util::FutureExt;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use localtunnels_core::ResetCode;
use localtunnels_driver::{pump_body, StreamSender};
use tokio::task::JoinHandle;

use crate::state::{text_response, Body, Counters, ServerState};

/// Why a visitor's request body did not reach its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadFailure {
    /// Over the server's `max_body` (the limit): 413.
    TooLarge(u64),
    /// Its framing does not parse (a bad chunk size or chunk end): 400.
    Malformed,
    /// The visitor's connection or stream ended before the body did: 400.
    Cut,
}

impl UploadFailure {
    /// Classifies a read error of a visitor's body: hyper reports framing it cannot
    /// parse as an `InvalidInput`/`InvalidData` I/O error under its body error.
    fn of(e: &hyper::Error) -> UploadFailure {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<io::Error>() {
                if matches!(io.kind(), io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData) {
                    return UploadFailure::Malformed;
                }
            }
            source = s.source();
        }
        UploadFailure::Cut
    }
}

/// The body's task: ends with the failure of the visitor's side, if any.
pub type Upload = JoinHandle<Option<UploadFailure>>;

/// Streams a visitor's request body into the tunnel from a task of its own, under the
/// server's `max_body` when one is set (without a limit the body goes unwrapped).
pub fn send_body(body: Incoming, tx: StreamSender, max_body: Option<u64>) -> Upload {
    tokio::spawn(async move {
        let mut failure = None;
        let body = body.map_err(|e| {
            failure = Some(UploadFailure::of(&e));
            e
        });
        // A failed body resets the stream (`pump_body`); the visitor's answer comes
        // from what the task returns.
        let failed = match max_body {
            Some(max) => {
                let (limited, signal) = crate::limits::limit_body(body, max);
                let failed = pump_body(limited, &tx).await.is_err();
                // The signal has fired by the time the body failed over the limit.
                if let Some(limit) = signal.now_or_never() {
                    return Some(UploadFailure::TooLarge(limit));
                }
                failed
            }
            None => pump_body(body, &tx).await.is_err(),
        };
        failure.filter(|_| failed)
    })
}

/// Resolves with the failure of `upload`'s visitor side; pending forever without an
/// upload or when the body went through (then the tunnel's answer decides).
pub async fn failed(upload: Option<Upload>) -> UploadFailure {
    match upload {
        Some(task) => match task.await {
            Ok(Some(failure)) => failure,
            _ => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// The visitor's answer to a failed upload; the stream is reset.
pub fn answer(state: &ServerState, tx: &StreamSender, failure: UploadFailure) -> Response<Body> {
    let text = match failure {
        UploadFailure::TooLarge(limit) => {
            tx.reset(ResetCode::TooLarge, "the request body is over the server's limit");
            return crate::access::too_large(state, limit);
        }
        UploadFailure::Malformed => "the request body is malformed: its chunked framing does not parse",
        UploadFailure::Cut => "the request body ended before its declared end",
    };
    tx.reset(ResetCode::Cancel, text);
    Counters::bump(&state.counters.bad_request);
    let mut res = text_response(StatusCode::BAD_REQUEST, text);
    // The connection's framing is lost: it cannot carry another request.
    res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}
