//! Checked big-endian reading and writing of the primitive wire types.
//!
//! Every read is bounds-checked and returns [`DecodeError`] instead of panicking;
//! every length prefix is validated before anything is allocated.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::DecodeError;

/// A cursor over one received frame.
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Self { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn need(&self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            Err(DecodeError::Truncated(what))
        } else {
            Ok(())
        }
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        self.need(1, what)?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        self.need(2, what)?;
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.need(4, what)?;
        Ok(self.buf.get_u32())
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        self.need(8, what)?;
        Ok(self.buf.get_u64())
    }

    /// The next `len` bytes.
    pub(crate) fn bytes(&mut self, len: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        self.need(len, what)?;
        Ok(self.buf.split_to(len))
    }

    /// `len:u16` followed by that many bytes.
    pub(crate) fn bytes16(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16(what)?);
        self.need(len, what)?;
        Ok(self.buf.split_to(len))
    }

    /// `len:u16` followed by that many bytes, lent to `f` rather than split off as a
    /// `Bytes` (which costs a reference count taken and dropped).
    pub(crate) fn with16<T>(&mut self, what: &'static str, f: impl FnOnce(&[u8]) -> T) -> Result<T, DecodeError> {
        let len = usize::from(self.u16(what)?);
        self.with(len, what, f)
    }

    /// The next `len` bytes, lent to `f` (see [`Reader::with16`]).
    pub(crate) fn with<T>(
        &mut self,
        len: usize,
        what: &'static str,
        f: impl FnOnce(&[u8]) -> T,
    ) -> Result<T, DecodeError> {
        self.need(len, what)?;
        let t = f(&self.buf[..len]);
        self.buf.advance(len);
        Ok(t)
    }

    /// `len:u16` followed by that many bytes of UTF-8.
    pub(crate) fn str16(&mut self, what: &'static str) -> Result<String, DecodeError> {
        self.with16(what, |raw| std::str::from_utf8(raw).map(str::to_owned))?
            .map_err(|_| DecodeError::InvalidUtf8(what))
    }

    /// The unread rest of the frame, for a caller that reads a part of it in place
    /// and then moves past what it read with [`Reader::skip`].
    pub(crate) fn unread(&self) -> &Bytes {
        &self.buf
    }

    /// Moves past `n` bytes (at most what is left).
    pub(crate) fn skip(&mut self, n: usize) {
        self.buf.advance(n.min(self.buf.len()));
    }

    /// Everything that is left.
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Fails if bytes are left over: a frame must be consumed exactly.
    pub(crate) fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(what))
        }
    }
}

/// Appends wire primitives to a frame being built.
pub(crate) trait WriteExt {
    fn put_bytes16(&mut self, b: &[u8]);
}

impl WriteExt for BytesMut {
    /// Writes `len:u16` and the bytes. Callers guarantee `b.len() <= u16::MAX`
    /// (heads are validated against `Config::max_header_bytes` first); longer input
    /// is cut rather than written with a lying length.
    fn put_bytes16(&mut self, b: &[u8]) {
        let len = u16::try_from(b.len()).unwrap_or(u16::MAX);
        self.put_u16(len);
        self.put_slice(&b[..usize::from(len)]);
    }
}
