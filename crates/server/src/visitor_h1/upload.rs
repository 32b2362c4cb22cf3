//! A visitor's request body on the HTTP/1 path: decoded from the connection's read
//! buffer (and the socket, when more is due) and sent into the tunnel's stream, under
//! the server's `max_body`. Failures are classified as hyper's path classifies them
//! ([`UploadFailure`]): a chunked framing error is malformed (400), a body cut short is
//! cut (400), a body over the limit is too large (413).

use bytes::BytesMut;
use localtunnels_core::ResetCode;
use localtunnels_driver::h1::{BodyDecoder, ChunkError, Decoded};
use localtunnels_driver::StreamSender;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::upload::UploadFailure;

/// How an upload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UploadEnd {
    /// The whole body went into the stream.
    Done,
    /// The visitor's side failed.
    Failed(UploadFailure),
    /// The stream would take no more (reset, or the tunnel closed): the rest of the
    /// body was not read, so the connection cannot carry another request.
    Abandoned,
}

/// One request body on its way into a stream.
pub(crate) struct Upload {
    decoder: BodyDecoder,
    tx: StreamSender,
    seen: u64,
    max: Option<u64>,
}

impl Upload {
    pub(crate) fn new(decoder: BodyDecoder, tx: StreamSender, max: Option<u64>) -> Self {
        Upload { decoder, tx, seen: 0, max }
    }

    /// Sends what `buf` holds of the body: `Some` when the upload is over.
    pub(crate) async fn send_buffered(&mut self, buf: &mut BytesMut) -> Option<UploadEnd> {
        loop {
            let piece = match self.decoder.decode(buf) {
                Ok(Some(piece)) => piece,
                Ok(None) => return None,
                Err(e) => return Some(self.fail(failure_of(e))),
            };
            let sent = match piece {
                Decoded::Data(data) => {
                    self.seen = self.seen.saturating_add(data.len() as u64);
                    if let Some(max) = self.max.filter(|max| self.seen > *max) {
                        return Some(self.fail(UploadFailure::TooLarge(max)));
                    }
                    if self.decoder.is_done() {
                        self.tx.send_last(data).await
                    } else {
                        self.tx.send_data(data).await
                    }
                }
                Decoded::Trailers(trailers) => {
                    let map = localtunnels_driver::http::header_map(&trailers);
                    let kept = localtunnels_driver::http::end_to_end_headers(&map, localtunnels_core::StreamKind::Http);
                    self.tx.send_trailers(kept)
                }
                Decoded::End => self.tx.finish(),
            };
            if sent.is_err() {
                return Some(UploadEnd::Abandoned);
            }
            if self.decoder.is_done() {
                return Some(UploadEnd::Done);
            }
        }
    }

    /// Sends the rest of the body: what `buf` holds, then what `rd` brings.
    pub(crate) async fn send_rest<R: AsyncRead + Unpin>(&mut self, buf: &mut BytesMut, rd: &mut R) -> UploadEnd {
        loop {
            if let Some(end) = self.send_buffered(buf).await {
                return end;
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(16 * 1024);
            }
            match rd.read_buf(buf).await {
                Ok(0) | Err(_) => {
                    let failure = match self.decoder.decode_eof() {
                        Ok(()) => return UploadEnd::Done,
                        Err(_) => UploadFailure::Cut,
                    };
                    return self.fail(failure);
                }
                Ok(_) => {}
            }
        }
    }

    /// Resets the stream (the origin must not take a partial body for a whole one).
    fn fail(&self, failure: UploadFailure) -> UploadEnd {
        let why = match failure {
            UploadFailure::TooLarge(_) => "body failed: over the server's limit",
            UploadFailure::Malformed => "body failed: malformed chunked framing",
            UploadFailure::Cut => "body failed: cut short",
        };
        self.tx.reset(ResetCode::Cancel, why);
        UploadEnd::Failed(failure)
    }
}

fn failure_of(e: ChunkError) -> UploadFailure {
    match e {
        ChunkError::Incomplete => UploadFailure::Cut,
        _ => UploadFailure::Malformed,
    }
}
