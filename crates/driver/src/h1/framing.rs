//! How an HTTP/1.x message's body is delimited (RFC 9112 §6.3), decided from its
//! head, and a decoder for the body so delimited.
//!
//! Requests follow hyper's server: `Transfer-Encoding` in HTTP/1.0 is refused, and in
//! HTTP/1.1 its last line must end in `chunked`; with both `Transfer-Encoding` and
//! `Content-Length` the former wins, the latter is dropped and the connection closes
//! after the exchange (RFC 9112 §6.1: such a message may be a smuggling attempt);
//! `Content-Length` values must all be the same decimal number. Responses follow
//! RFC 9112 §6.3: a response to HEAD, a 1xx, 204 or 304 has no body; otherwise a
//! final `chunked` coding, else another coding reads to the end of the connection,
//! else `Content-Length`, else the connection's end.

use bytes::BytesMut;
use http::{header, HeaderName, HeaderValue, Method, Version};
use localtunnels_core::Header;

use super::chunked::{ChunkError, ChunkLimits, ChunkedDecoder, Decoded};

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// No body.
    Empty,
    /// Exactly this many bytes (more than zero).
    Known(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the connection closes (responses only).
    CloseDelimited,
}

/// Why a message's framing is refused (a server answers 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    /// `Transfer-Encoding` in an HTTP/1.0 request.
    #[error("Transfer-Encoding in an HTTP/1.0 request")]
    TransferEncodingInHttp10,
    /// A request's `Transfer-Encoding` whose last coding is not `chunked`.
    #[error("Transfer-Encoding whose last coding is not chunked")]
    NotChunked,
    /// `Content-Length` values that are not one decimal number.
    #[error("invalid Content-Length")]
    ContentLength,
}

/// What a request's head says about its body and its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestFraming {
    /// The body's delimitation (never [`BodyLength::CloseDelimited`]).
    pub body: BodyLength,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// `Upgrade` in HTTP/1.1, or `CONNECT`.
    pub upgrade: bool,
    /// `Content-Length` was dropped because `Transfer-Encoding` came with it: the
    /// caller removes it from the headers it forwards.
    pub drop_content_length: bool,
    /// More than one `Content-Length` came (all equal, or the head was refused): the
    /// caller forwards the first alone. Without this or `drop_content_length` the list
    /// needs no walk to remove any.
    pub repeated_content_length: bool,
}

/// The framing of a request with `headers`.
pub fn request_framing(version: Version, method: &Method, headers: &[Header]) -> Result<RequestFraming, FramingError> {
    let http11 = version == Version::HTTP_11;
    let mut f = RequestFraming {
        body: BodyLength::Empty,
        keep_alive: http11,
        expect_continue: false,
        upgrade: method == Method::CONNECT,
        drop_content_length: false,
        repeated_content_length: false,
    };
    let (mut length, mut te, mut chunked, mut cl, mut close) = (None, false, false, false, false);
    for (name, value) in headers {
        match *name {
            header::TRANSFER_ENCODING => {
                if !http11 {
                    return Err(FramingError::TransferEncodingInHttp10);
                }
                te = true;
                chunked = is_chunked(value);
            }
            header::CONTENT_LENGTH if !te => {
                f.repeated_content_length |= cl;
                cl = true;
                let n = decimal(value.as_bytes()).ok_or(FramingError::ContentLength)?;
                if length.is_some_and(|prev| prev != n) {
                    return Err(FramingError::ContentLength);
                }
                length = Some(n);
            }
            header::CONTENT_LENGTH => cl = true,
            header::CONNECTION => {
                if close || has_token(value, "close") {
                    close = true;
                    f.keep_alive = false;
                } else if !f.keep_alive {
                    f.keep_alive = has_token(value, "keep-alive");
                }
            }
            header::EXPECT => f.expect_continue = value.as_bytes().eq_ignore_ascii_case(b"100-continue"),
            header::UPGRADE => f.upgrade = http11,
            _ => {}
        }
    }
    if te && !chunked {
        return Err(FramingError::NotChunked);
    }
    if te {
        f.body = BodyLength::Chunked;
        if cl {
            f.keep_alive = false;
            f.drop_content_length = true;
        }
    } else if let Some(n) = length.filter(|n| *n > 0) {
        f.body = BodyLength::Known(n);
    }
    Ok(f)
}

/// The framing of a response with `status` and `headers` to a request with `method`.
pub fn response_framing(method: &Method, status: u16, headers: &[Header]) -> Result<BodyLength, FramingError> {
    if method == Method::HEAD || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(BodyLength::Empty);
    }
    if method == Method::CONNECT && (200..300).contains(&status) {
        return Ok(BodyLength::CloseDelimited);
    }
    let mut te = None;
    let mut length = None;
    for (name, value) in headers {
        match *name {
            header::TRANSFER_ENCODING => te = Some(is_chunked(value)),
            header::CONTENT_LENGTH => {
                for part in value.as_bytes().split(|b| *b == b',') {
                    let n = decimal(part.trim_ascii()).ok_or(FramingError::ContentLength)?;
                    if length.is_some_and(|prev| prev != n) {
                        return Err(FramingError::ContentLength);
                    }
                    length = Some(n);
                }
            }
            _ => {}
        }
    }
    Ok(match (te, length) {
        (Some(true), _) => BodyLength::Chunked,
        (Some(false), _) => BodyLength::CloseDelimited,
        (None, Some(0)) => BodyLength::Empty,
        (None, Some(n)) => BodyLength::Known(n),
        (None, None) => BodyLength::CloseDelimited,
    })
}

/// Whether a `Transfer-Encoding` value's last coding is `chunked`.
pub fn is_chunked(value: &HeaderValue) -> bool {
    value.to_str().is_ok_and(|s| s.rsplit(',').next().is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked")))
}

/// Whether a comma-separated value (`Connection`, `TE`) holds `token`.
pub fn has_token(value: &HeaderValue, token: &str) -> bool {
    value.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// A decimal number of digits only (no sign, no spaces), if it fits in 64 bits.
pub fn decimal(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, b| match b {
        b'0'..=b'9' => n.checked_mul(10)?.checked_add(u64::from(b - b'0')),
        _ => None,
    })
}

/// Decodes one message body delimited as a [`BodyLength`] says.
#[derive(Debug, Clone)]
pub enum BodyDecoder {
    /// This many bytes still to come.
    Length(u64),
    /// A chunked body.
    Chunked(ChunkedDecoder),
    /// Until the connection's end.
    Eof,
    /// Complete.
    Done,
}

impl BodyDecoder {
    /// A decoder for a body delimited as `length` says.
    pub fn new(length: BodyLength, limits: ChunkLimits) -> Self {
        match length {
            BodyLength::Empty | BodyLength::Known(0) => BodyDecoder::Done,
            BodyLength::Known(n) => BodyDecoder::Length(n),
            BodyLength::Chunked => BodyDecoder::Chunked(ChunkedDecoder::new(limits)),
            BodyLength::CloseDelimited => BodyDecoder::Eof,
        }
    }

    /// Whether the whole body has been read.
    pub fn is_done(&self) -> bool {
        match self {
            BodyDecoder::Done => true,
            BodyDecoder::Chunked(c) => c.is_done(),
            _ => false,
        }
    }

    /// The next piece of the body from the front of `buf` (`None`: read more). What
    /// follows the body stays in `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, ChunkError> {
        match self {
            BodyDecoder::Done => Ok(None),
            BodyDecoder::Chunked(c) => c.decode(buf),
            _ if buf.is_empty() => Ok(None),
            BodyDecoder::Eof => Ok(Some(Decoded::Data(buf.split().freeze()))),
            BodyDecoder::Length(left) => {
                let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                let data = buf.split_to(n).freeze();
                *left -= n as u64;
                if *left == 0 {
                    *self = BodyDecoder::Done;
                }
                Ok(Some(Decoded::Data(data)))
            }
        }
    }

    /// The connection's input ended: the end of a close-delimited body, an error for
    /// any other body not yet complete.
    pub fn decode_eof(&mut self) -> Result<(), ChunkError> {
        match self {
            BodyDecoder::Eof | BodyDecoder::Done => {
                *self = BodyDecoder::Done;
                Ok(())
            }
            BodyDecoder::Chunked(c) => c.decode_eof(),
            BodyDecoder::Length(_) => Err(ChunkError::Incomplete),
        }
    }
}

/// Whether a field may be sent as a trailer of a chunked body (hyper's list of those
/// that may not): the server's visitor path and the client's origin leg both apply it.
pub fn may_trail(name: &HeaderName) -> bool {
    !matches!(
        *name,
        header::AUTHORIZATION
            | header::CACHE_CONTROL
            | header::CONTENT_ENCODING
            | header::CONTENT_LENGTH
            | header::CONTENT_RANGE
            | header::CONTENT_TYPE
            | header::HOST
            | header::MAX_FORWARDS
            | header::SET_COOKIE
            | header::TRAILER
            | header::TRANSFER_ENCODING
            | header::TE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &'static str, value: &'static str) -> Header {
        (http::HeaderName::from_static(name), HeaderValue::from_static(value))
    }

    fn framing(version: Version, headers: &[Header]) -> Result<RequestFraming, FramingError> {
        request_framing(version, &Method::POST, headers)
    }

    #[test]
    fn request_bodies_are_framed_as_hyper_frames_them() {
        let v11 = Version::HTTP_11;
        assert_eq!(framing(v11, &[]).unwrap().body, BodyLength::Empty);
        assert_eq!(framing(v11, &[h("content-length", "0")]).unwrap().body, BodyLength::Empty);
        assert_eq!(framing(v11, &[h("content-length", "5")]).unwrap().body, BodyLength::Known(5));
        let same = [h("content-length", "5"), h("content-length", "5")];
        assert_eq!(framing(v11, &same).unwrap().body, BodyLength::Known(5));
        for bad in [
            &[h("content-length", "5"), h("content-length", "6")][..],
            &[h("content-length", "5, 5")],
            &[h("content-length", "+5")],
        ] {
            assert_eq!(framing(v11, bad), Err(FramingError::ContentLength), "{bad:?}");
        }
        let te = [h("transfer-encoding", "gzip, chunked")];
        assert_eq!(framing(v11, &te).unwrap().body, BodyLength::Chunked);
        let not_last = [h("transfer-encoding", "chunked"), h("transfer-encoding", "gzip")];
        assert_eq!(framing(v11, &not_last), Err(FramingError::NotChunked));
        let old = framing(Version::HTTP_10, &[h("transfer-encoding", "chunked")]);
        assert_eq!(old, Err(FramingError::TransferEncodingInHttp10));
        // CL + TE: chunked wins, CL goes, the connection closes after the exchange.
        let both = framing(v11, &[h("content-length", "3"), h("transfer-encoding", "chunked")]).unwrap();
        assert_eq!((both.body, both.keep_alive, both.drop_content_length), (BodyLength::Chunked, false, true));
        let after = framing(v11, &[h("transfer-encoding", "chunked"), h("content-length", "x")]).unwrap();
        assert_eq!((after.body, after.keep_alive), (BodyLength::Chunked, false));
    }

    #[test]
    fn keep_alive_expect_and_upgrade_are_read() {
        let f = framing(Version::HTTP_11, &[h("connection", "Close")]).unwrap();
        assert!(!f.keep_alive);
        let f = framing(Version::HTTP_11, &[h("connection", "close"), h("connection", "keep-alive")]).unwrap();
        assert!(!f.keep_alive);
        assert!(!framing(Version::HTTP_10, &[]).unwrap().keep_alive);
        assert!(framing(Version::HTTP_10, &[h("connection", "Keep-Alive")]).unwrap().keep_alive);
        assert!(framing(Version::HTTP_11, &[h("expect", "100-Continue")]).unwrap().expect_continue);
        assert!(framing(Version::HTTP_11, &[h("upgrade", "websocket")]).unwrap().upgrade);
        assert!(!framing(Version::HTTP_10, &[h("upgrade", "websocket")]).unwrap().upgrade);
        assert!(request_framing(Version::HTTP_11, &Method::CONNECT, &[]).unwrap().upgrade);
    }

    #[test]
    fn response_bodies_are_framed_per_rfc_9112() {
        let get = &Method::GET;
        let cl = [h("content-length", "7")];
        assert_eq!(response_framing(&Method::HEAD, 200, &cl), Ok(BodyLength::Empty));
        for status in [101, 103, 204, 304] {
            assert_eq!(response_framing(get, status, &cl), Ok(BodyLength::Empty));
        }
        assert_eq!(response_framing(get, 200, &cl), Ok(BodyLength::Known(7)));
        assert_eq!(response_framing(get, 200, &[h("content-length", "7, 7")]), Ok(BodyLength::Known(7)));
        assert_eq!(response_framing(get, 200, &[h("content-length", "7, 8")]), Err(FramingError::ContentLength));
        assert_eq!(response_framing(get, 200, &[h("content-length", "0")]), Ok(BodyLength::Empty));
        assert_eq!(response_framing(get, 200, &[h("transfer-encoding", "chunked")]), Ok(BodyLength::Chunked));
        let both = [h("transfer-encoding", "chunked"), h("content-length", "7")];
        assert_eq!(response_framing(get, 200, &both), Ok(BodyLength::Chunked));
        assert_eq!(response_framing(get, 200, &[h("transfer-encoding", "gzip")]), Ok(BodyLength::CloseDelimited));
        assert_eq!(response_framing(get, 200, &[]), Ok(BodyLength::CloseDelimited));
    }

    #[test]
    fn bodies_decode_by_their_length() {
        let mut d = BodyDecoder::new(BodyLength::Known(5), ChunkLimits::default());
        let mut buf = BytesMut::from("hel");
        assert_eq!(d.decode(&mut buf), Ok(Some(Decoded::Data("hel".into()))));
        assert_eq!(d.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"loGET");
        assert_eq!(d.decode(&mut buf), Ok(Some(Decoded::Data("lo".into()))));
        assert!(d.is_done());
        assert_eq!(&buf[..], b"GET");
        let mut short = BodyDecoder::new(BodyLength::Known(5), ChunkLimits::default());
        assert_eq!(short.decode_eof(), Err(ChunkError::Incomplete));
        let mut eof = BodyDecoder::new(BodyLength::CloseDelimited, ChunkLimits::default());
        assert_eq!(eof.decode(&mut BytesMut::from("abc")), Ok(Some(Decoded::Data("abc".into()))));
        assert_eq!(eof.decode_eof(), Ok(()));
        assert!(eof.is_done());
        assert!(BodyDecoder::new(BodyLength::Empty, ChunkLimits::default()).is_done());
    }
}
