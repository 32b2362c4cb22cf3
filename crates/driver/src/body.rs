//! Bodies: a stream's incoming bytes as an `http_body::Body`, and any `Body` pumped
//! into a stream. Nothing is buffered whole; memory is bounded by the stream window.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use localtunnels_core::ResetCode;

use crate::http::header_map;
use crate::stream::{StreamEvent, StreamReceiver, StreamSender};

/// The body could not be completed: the stream was reset or the tunnel closed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BodyError(pub String);

/// Sees a body's data as it passes (the request inspector copies the first bytes).
/// Dropped when the body ends or is dropped: that is when a tap learns it is over.
pub trait BodyTap: Send + Sync {
    /// A chunk went by.
    fn data(&mut self, chunk: &[u8]);
}

/// The rest of a stream's input (after its head) as a hyper body, or bytes already
/// in memory ([`StreamBody::full`], a replayed request's).
pub struct StreamBody {
    rx: Option<StreamReceiver>,
    size: SizeHint,
    full: Option<Bytes>,
    tap: Option<Box<dyn BodyTap>>,
}

impl std::fmt::Debug for StreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamBody").field("rx", &self.rx).field("size", &self.size).finish_non_exhaustive()
    }
}

impl StreamBody {
    /// A body reading `rx`; `end` means the head already said no body follows.
    /// `content_length`, when known, makes hyper send a Content-Length instead of
    /// chunked encoding.
    pub fn new(rx: StreamReceiver, end: bool, content_length: Option<u64>) -> Self {
        let size = match (end, content_length) {
            (true, _) => SizeHint::with_exact(0),
            (false, Some(n)) => SizeHint::with_exact(n),
            (false, None) => SizeHint::default(),
        };
        StreamBody { rx: (!end).then_some(rx), size, full: None, tap: None }
    }

    /// A body of `data`, already whole.
    pub fn full(data: Bytes) -> Self {
        let size = SizeHint::with_exact(data.len() as u64);
        StreamBody { rx: None, size, full: (!data.is_empty()).then_some(data), tap: None }
    }

    /// This body, with `tap` seeing every data chunk; the tap is dropped at the end.
    pub fn tapped(mut self, tap: Box<dyn BodyTap>) -> Self {
        if !self.is_end_stream() {
            self.tap = Some(tap);
        }
        self
    }

    fn tap(&mut self, data: &Bytes) {
        if let Some(tap) = self.tap.as_mut() {
            tap.data(data);
        }
        if self.rx.is_none() {
            self.tap = None;
        }
    }
}

impl Body for StreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(data) = self.full.take() {
            self.tap(&data);
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        loop {
            let Some(rx) = self.rx.as_mut() else {
                self.tap = None;
                return Poll::Ready(None);
            };
            let ev = std::task::ready!(rx.poll_recv(cx));
            match ev {
                Some(StreamEvent::Data { data, end }) => {
                    if end {
                        self.rx = None;
                    }
                    if !data.is_empty() {
                        self.tap(&data);
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Some(StreamEvent::Trailers(headers)) => {
                    self.rx = None;
                    self.tap = None;
                    return Poll::Ready(Some(Ok(Frame::trailers(header_map(&headers)))));
                }
                Some(StreamEvent::Reset { message, .. }) => {
                    self.rx = None;
                    self.tap = None;
                    return Poll::Ready(Some(Err(BodyError(message))));
                }
                Some(_) => {}
                None => {
                    self.rx = None;
                    self.tap = None;
                    return Poll::Ready(Some(Err(BodyError("the stream ended before its body did".into()))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rx.is_none() && self.full.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        self.size
    }
}

/// Sends all of `body` into the stream and ends it (with trailers if the body has
/// them). On a body error the stream is reset so the peer does not wait forever.
pub async fn pump_body<B>(body: B, tx: &StreamSender) -> Result<(), BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let mut body = std::pin::pin!(body);
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                let message = format!("body failed: {e}");
                tx.reset(ResetCode::Cancel, &message);
                return Err(BodyError(message));
            }
        };
        match frame.into_data() {
            // The body knows it is complete (a Content-Length reached, say): data and end
            // go in one step, not two.
            Ok(data) if body.is_end_stream() => return tx.send_last(data).await.map_err(|e| BodyError(e.to_string())),
            Ok(data) => tx.send_data(data).await.map_err(|e| BodyError(e.to_string()))?,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    let headers = crate::http::end_to_end_headers(&trailers, localtunnels_core::StreamKind::Http);
                    return tx.send_trailers(headers).map_err(|e| BodyError(e.to_string()));
                }
            }
        }
    }
    tx.finish().map_err(|e| BodyError(e.to_string()))
}
