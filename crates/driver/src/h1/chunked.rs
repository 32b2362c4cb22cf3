//! Chunked transfer coding (RFC 9112 §7.1): a decoder fed from a buffer, with bounded
//! chunk sizes, extensions and trailers, and the encoder's pieces.
//!
//! The decoder is the same byte-at-a-time state machine as hyper's (what it accepts
//! and refuses is hyper's: a size of at most 16 hex digits that fits in 64 bits,
//! optional spaces or tabs after it, extensions skipped up to 16 KiB per body and
//! never holding a bare LF, CRLF after the size and after each chunk's data, trailer
//! fields up to a byte and count limit). Data is handed out as slices of the caller's
//! buffer, not copied.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use localtunnels_core::Header;

/// Most bytes of chunk extensions one body may carry (hyper's limit).
pub const MAX_EXTENSIONS: u64 = 16 * 1024;

/// Bounds on a chunked body's trailer section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Most bytes of trailer fields.
    pub max_trailer_bytes: usize,
    /// Most trailer fields.
    pub max_trailers: usize,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        ChunkLimits { max_trailer_bytes: 16 * 1024, max_trailers: super::head::MAX_HEADERS }
    }
}

/// Why a chunked body does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    /// A chunk-size line that is not hex digits, optional whitespace, extensions, CRLF.
    #[error("invalid chunk size line")]
    Size,
    /// A chunk size over 64 bits.
    #[error("chunk size overflows")]
    Overflow,
    /// Extensions over [`MAX_EXTENSIONS`], or one holding a bare LF.
    #[error("invalid or oversized chunk extension")]
    Extension,
    /// A chunk's data not followed by CRLF.
    #[error("chunk data not followed by CRLF")]
    DataEnd,
    /// Trailer fields over the limits, or malformed.
    #[error("invalid or oversized trailer section")]
    Trailers,
    /// The input ended before the last chunk.
    #[error("the body ended before its last chunk")]
    Incomplete,
}

/// One piece of a decoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The trailer fields; the body is complete.
    Trailers(Vec<Header>),
    /// The body is complete (no trailers).
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    Size,
    SizeLws,
    Extension,
    SizeLf,
    Body,
    BodyCr,
    BodyLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
    End,
}

/// Decodes one chunked body from the bytes given to [`ChunkedDecoder::decode`].
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// The current chunk's size while reading it, then what is left of its data.
    size: u64,
    extensions: u64,
    trailers: Option<BytesMut>,
    trailer_count: usize,
    limits: ChunkLimits,
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new(limits: ChunkLimits) -> Self {
        ChunkedDecoder { state: State::Start, size: 0, extensions: 0, trailers: None, trailer_count: 0, limits }
    }

    /// Whether the last chunk (and trailer section) has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::End
    }

    /// Consumes bytes from the front of `buf`: the next piece of the body, or `None`
    /// when `buf` holds no more of it yet (read more, call again). After
    /// [`Decoded::End`] or [`Decoded::Trailers`] whatever follows stays in `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, ChunkError> {
        loop {
            match self.state {
                State::End => return Ok(None),
                State::Body => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = usize::try_from(self.size).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(n).freeze();
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = State::BodyCr;
                    }
                    return Ok(Some(Decoded::Data(data)));
                }
                _ => {}
            }
            let Some(&byte) = buf.first() else { return Ok(None) };
            buf.advance(1);
            self.state = self.step(byte)?;
            if self.state == State::End {
                return self.finish().map(Some);
            }
        }
    }

    /// The peer's input ended: fine only after the last chunk.
    pub fn decode_eof(&self) -> Result<(), ChunkError> {
        if self.is_done() {
            Ok(())
        } else {
            Err(ChunkError::Incomplete)
        }
    }

    fn step(&mut self, byte: u8) -> Result<State, ChunkError> {
        use State::*;
        Ok(match (self.state, byte) {
            (Start | Size, b) if b.is_ascii_hexdigit() => {
                let digit = u64::from(hex(b));
                self.size = self.size.checked_mul(16).and_then(|s| s.checked_add(digit)).ok_or(ChunkError::Overflow)?;
                Size
            }
            (Start, _) => return Err(ChunkError::Size),
            (Size | SizeLws, b'\t' | b' ') => SizeLws,
            (Size | SizeLws, b';') => Extension,
            (Size | SizeLws, b'\r') => SizeLf,
            (Size | SizeLws, _) => return Err(ChunkError::Size),
            (Extension, b'\r') => SizeLf,
            (Extension, b'\n') => return Err(ChunkError::Extension),
            (Extension, _) => {
                self.extensions += 1;
                if self.extensions >= MAX_EXTENSIONS {
                    return Err(ChunkError::Extension);
                }
                Extension
            }
            (SizeLf, b'\n') if self.size == 0 => EndCr,
            (SizeLf, b'\n') => Body,
            (SizeLf, _) => return Err(ChunkError::Size),
            (BodyCr, b'\r') => BodyLf,
            (BodyLf, b'\n') => Start,
            (BodyCr | BodyLf, _) => return Err(ChunkError::DataEnd),
            (Trailer, b) => {
                self.trailer_byte(b)?;
                if b == b'\r' {
                    TrailerLf
                } else {
                    Trailer
                }
            }
            (TrailerLf, b'\n') => {
                if self.trailer_count >= self.limits.max_trailers {
                    return Err(ChunkError::Trailers);
                }
                self.trailer_count += 1;
                self.trailer_byte(b'\n')?;
                EndCr
            }
            (TrailerLf, _) => return Err(ChunkError::Trailers),
            (EndCr, b'\r') => {
                if self.trailers.is_some() {
                    self.trailer_byte(b'\r')?;
                }
                EndLf
            }
            (EndCr, b) => {
                self.trailers.get_or_insert_with(|| BytesMut::with_capacity(64));
                self.trailer_byte(b)?;
                Trailer
            }
            (EndLf, b'\n') => {
                if self.trailers.is_some() {
                    self.trailer_byte(b'\n')?;
                }
                End
            }
            (EndLf, _) => return Err(ChunkError::Size),
            (Body | End, _) => self.state,
        })
    }

    fn trailer_byte(&mut self, b: u8) -> Result<(), ChunkError> {
        let buf = self.trailers.get_or_insert_with(|| BytesMut::with_capacity(64));
        if buf.len() >= self.limits.max_trailer_bytes {
            return Err(ChunkError::Trailers);
        }
        buf.put_u8(b);
        Ok(())
    }

    /// The end of the body: its trailers parsed, if it had any.
    fn finish(&mut self) -> Result<Decoded, ChunkError> {
        let Some(raw) = self.trailers.take() else { return Ok(Decoded::End) };
        let mut slots = vec![httparse::EMPTY_HEADER; self.trailer_count.max(1)];
        let parsed = match httparse::parse_headers(&raw, &mut slots) {
            Ok(httparse::Status::Complete((_, parsed))) => parsed,
            _ => return Err(ChunkError::Trailers),
        };
        let mut trailers = Vec::with_capacity(parsed.len());
        for h in parsed {
            let name = http::HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| ChunkError::Trailers)?;
            let value = http::HeaderValue::from_bytes(h.value).map_err(|_| ChunkError::Trailers)?;
            trailers.push((name, value));
        }
        Ok(Decoded::Trailers(trailers))
    }
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// Appends a chunk's size line (`400\r\n` for 1 KiB); the data and [`CHUNK_END`] follow.
pub fn write_chunk_size(dst: &mut BytesMut, len: usize) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = len;
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    dst.reserve(digits.len() - i + 2);
    dst.put_slice(&digits[i..]);
    dst.put_slice(b"\r\n");
}

/// What ends a chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";

/// Appends one whole chunk: size line, `data`, CRLF. Empty data writes nothing (an
/// empty chunk would end the body).
pub fn write_chunk(dst: &mut BytesMut, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    write_chunk_size(dst, data.len());
    dst.put_slice(data);
    dst.put_slice(CHUNK_END);
}

/// Appends the last chunk and the trailer section (`trailers` may be empty).
pub fn write_last_chunk(dst: &mut BytesMut, trailers: &[Header]) {
    dst.put_slice(b"0\r\n");
    super::head::write_headers(dst, trailers);
    dst.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body, the trailers and the bytes after the body.
    type Whole = (Vec<u8>, Vec<Header>, Vec<u8>);

    /// Decodes all of `input` (fed `step` bytes at a time).
    fn decode(input: &[u8], step: usize) -> Result<Whole, ChunkError> {
        let mut d = ChunkedDecoder::new(ChunkLimits::default());
        let (mut buf, mut body, mut trailers) = (BytesMut::new(), Vec::new(), Vec::new());
        let step = step.max(1);
        for start in (0..input.len()).step_by(step) {
            buf.extend_from_slice(&input[start..(start + step).min(input.len())]);
            while let Some(decoded) = d.decode(&mut buf)? {
                match decoded {
                    Decoded::Data(data) => body.extend_from_slice(&data),
                    Decoded::Trailers(t) => trailers = t,
                    Decoded::End => {}
                }
                if d.is_done() {
                    buf.extend_from_slice(&input[(start + step).min(input.len())..]);
                    return Ok((body, trailers, buf.to_vec()));
                }
            }
        }
        d.decode_eof().map(|()| (body, trailers, buf.to_vec()))
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_read_sizes() {
        let input = b"5\r\nhello\r\n6;ext=1\r\n world\r\nA \t\r\n0123456789\r\n0\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, 100] {
            let (body, trailers, rest) = decode(input, step).unwrap();
            assert_eq!(body, b"hello world0123456789");
            assert!(trailers.is_empty());
            assert_eq!(rest, b"NEXT");
        }
        let (body, trailers, _) = decode(b"1\r\na\r\n0\r\nX-Sum: 1\r\nX-B: 2\r\n\r\n", 1).unwrap();
        assert_eq!(body, b"a");
        let names: Vec<_> = trailers.iter().map(|(n, v)| (n.as_str(), v.to_str().unwrap())).collect();
        assert_eq!(names, [("x-sum", "1"), ("x-b", "2")]);
    }

    #[test]
    fn malformed_chunked_bodies_are_refused_as_hyper_refuses_them() {
        let cases: [(&[u8], ChunkError); 12] = [
            (b"zz\r\n", ChunkError::Size),
            (b"\r\n\r\n", ChunkError::Size),
            (b"-1\r\n", ChunkError::Size),
            (b"1X\r\n", ChunkError::Size),
            (b"1 A\r\n", ChunkError::Size),
            (b"F\rF", ChunkError::Size),
            (b"5\nhello\r\n0\r\n\r\n", ChunkError::Size),
            (b"1;reject\nnewlines\r\n", ChunkError::Extension),
            (b"f0000000000000003\r\n", ChunkError::Overflow),
            (b"5\r\nhelloXX", ChunkError::DataEnd),
            (b"5\r\nhello\n0\r\n\r\n", ChunkError::DataEnd),
            (b"5\r\nhel", ChunkError::Incomplete),
        ];
        for (input, expected) in cases {
            assert_eq!(decode(input, 3).unwrap_err(), expected, "{:?}", String::from_utf8_lossy(input));
        }
        let mut long_ext = b"1;".to_vec();
        long_ext.extend(std::iter::repeat_n(b'a', MAX_EXTENSIONS as usize));
        assert_eq!(decode(&long_ext, 4096).unwrap_err(), ChunkError::Extension);
        let mut big_trailers = b"0\r\n".to_vec();
        for i in 0..2000 {
            big_trailers.extend(format!("x-{i}: 1\r\n").bytes());
        }
        assert_eq!(decode(&big_trailers, 512).unwrap_err(), ChunkError::Trailers);
        assert_eq!(decode(b"0\r\nbad trailer\r\n\r\n", 1).unwrap_err(), ChunkError::Trailers);
    }

    #[test]
    fn encoded_chunks_decode_to_the_same_body() {
        let mut wire = BytesMut::new();
        let parts: [&[u8]; 4] = [b"a", &[7u8; 4096], b"", b"xyz"];
        for p in parts {
            write_chunk(&mut wire, p);
        }
        write_last_chunk(&mut wire, &[(http::HeaderName::from_static("x-t"), http::HeaderValue::from_static("v"))]);
        let (body, trailers, rest) = decode(&wire, 5).unwrap();
        assert_eq!(body, parts.concat());
        assert_eq!(trailers.len(), 1);
        assert!(rest.is_empty());
        let mut size = BytesMut::new();
        write_chunk_size(&mut size, 0x1a2b);
        assert_eq!(&size[..], b"1a2b\r\n");
    }
}
