//! A body's first bytes, as they pass.

/// The first `limit` bytes of a body and the size of all of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyCapture {
    data: Vec<u8>,
    size: u64,
    limit: usize,
}

impl BodyCapture {
    /// An empty capture keeping at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        BodyCapture { data: Vec::new(), size: 0, limit }
    }

    /// A capture of a whole body already in memory (a replay's), cut at `limit`.
    pub fn of(data: &[u8], limit: usize) -> Self {
        let mut c = BodyCapture::new(limit);
        c.push(data);
        c
    }

    /// `data` kept of a body of `size` bytes (read back from a store).
    pub fn kept(data: Vec<u8>, size: u64) -> Self {
        let limit = data.len();
        BodyCapture { data, size: size.max(limit as u64), limit }
    }

    /// Copies what fits of `chunk` and counts all of it.
    pub fn push(&mut self, chunk: &[u8]) {
        self.size = self.size.saturating_add(chunk.len() as u64);
        let room = self.limit.saturating_sub(self.data.len());
        if room > 0 {
            // Reserve no more than the body can still add: a 10-byte body does not
            // allocate 64 KiB.
            self.data.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
    }

    /// The bytes kept.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// All bytes seen, kept or not.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Some bytes were seen and not kept.
    pub fn truncated(&self) -> bool {
        self.size > self.data.len() as u64
    }

    /// Bytes this capture holds in memory.
    pub fn held(&self) -> usize {
        self.data.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_bytes_and_counts_all() {
        let mut c = BodyCapture::new(4);
        c.push(b"ab");
        assert!(!c.truncated());
        c.push(b"cdef");
        c.push(b"gh");
        assert_eq!(c.data(), b"abcd");
        assert_eq!(c.size(), 8);
        assert!(c.truncated());
        let none = BodyCapture::of(b"xyz", 0);
        assert_eq!((none.data(), none.size(), none.truncated()), (&b""[..], 3, true));
    }
}
