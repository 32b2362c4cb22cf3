//! The store's captured bytes in fixed-size chunks, reused after eviction.
//!
//! Every byte an entry keeps (its heads, its bodies' first bytes) lives in chunks of
//! [`CHUNK`] bytes, allocated [`SLAB`] at a time and never handed back to the allocator
//! while the store lives: an evicted entry's chunks go to a free list and the next
//! capture takes them. So the memory the store holds is what it counts (chunks in use
//! times [`CHUNK`]), whatever mix of sizes went through. Before, each capture was its
//! own allocations of its own sizes; after thousands of small entries were evicted for
//! large ones, the allocator kept the freed holes and the client's RSS reached three
//! times the store's bound (docs/BENCHMARKS.md, tenth round).
//!
//! A span is a chain of chunks (each chunk's successor in `next`) holding parts of one
//! entry one after the other, written at its end only.

/// Bytes per chunk: a small exchange's head fits in one, a 64 KiB body takes 128.
pub(crate) const CHUNK: usize = 512;
/// Chunks per allocation (64 KiB).
const SLAB: usize = 128;
/// No chunk.
const NIL: u32 = u32::MAX;

/// One part of an entry: its chunks, first to last, and the bytes written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    first: u32,
    last: u32,
    /// Bytes written (read by the store, which keeps where each part ends).
    pub(crate) len: u32,
}

impl Span {
    pub(crate) const EMPTY: Span = Span { first: NIL, last: NIL, len: 0 };

    /// Bytes written.
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    /// Bytes of chunks it holds.
    pub(crate) fn held(&self) -> usize {
        self.len().div_ceil(CHUNK) * CHUNK
    }

    /// Room left in its last chunk.
    pub(crate) fn room(&self) -> usize {
        match self.len() % CHUNK {
            0 => 0,
            used => CHUNK - used,
        }
    }
}

/// The chunks of one store.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    slabs: Vec<Box<[u8]>>,
    /// Each chunk's successor in its span, or in the free list.
    next: Vec<u32>,
    /// The first free chunk.
    free: Option<u32>,
}

impl Pool {
    /// A free chunk, allocating a slab if none is free. Inlined into every capture;
    /// the slab's allocation (once per [`SLAB`] chunks) out of line.
    #[inline]
    pub(crate) fn take(&mut self) -> Option<u32> {
        let chunk = match self.free {
            Some(chunk) => chunk,
            None => self.grow()?,
        };
        let after = self.next[chunk as usize];
        self.free = (after != NIL).then_some(after);
        self.next[chunk as usize] = NIL;
        Some(chunk)
    }

    /// Allocates a slab, its chunks the free list; the first of them.
    #[cold]
    fn grow(&mut self) -> Option<u32> {
        let base = u32::try_from(self.next.len()).ok().filter(|b| b.checked_add(SLAB as u32).is_some())?;
        self.slabs.push(vec![0; CHUNK * SLAB].into_boxed_slice());
        self.next.extend((1..=SLAB as u32).map(|i| if i == SLAB as u32 { NIL } else { base + i }));
        self.free = Some(base);
        Some(base)
    }

    /// Copies what fits of `data` into the room left in `span`'s last chunk; the bytes copied.
    pub(crate) fn fill(&mut self, span: &mut Span, data: &[u8]) -> usize {
        let n = span.room().min(data.len());
        if n > 0 {
            let at = span.len() % CHUNK;
            self.chunk_mut(span.last)[at..at + n].copy_from_slice(&data[..n]);
            span.len += n as u32;
        }
        n
    }

    /// Appends `chunk` (from [`Pool::take`]) to `span` and copies what fits of `data` into it.
    pub(crate) fn extend(&mut self, span: &mut Span, chunk: u32, data: &[u8]) -> usize {
        debug_assert_eq!(span.room(), 0);
        self.link(span, chunk);
        let n = CHUNK.min(data.len());
        self.chunk_mut(chunk)[..n].copy_from_slice(&data[..n]);
        span.len += n as u32;
        n
    }

    /// Bytes of chunks allocated (in use or free).
    #[cfg(test)]
    pub(crate) fn allocated(&self) -> usize {
        self.slabs.len() * SLAB * CHUNK
    }

    /// The room after `span`'s bytes to write into: what is left of its last chunk, or
    /// all of `fresh` (from [`Pool::take`], for a span with no room left). Written bytes
    /// count once [`Pool::commit`]ted.
    pub(crate) fn room_mut(&mut self, span: &Span, fresh: Option<u32>) -> &mut [u8] {
        match fresh {
            Some(chunk) => self.chunk_mut(chunk),
            None => {
                let at = span.len() % CHUNK;
                let last = span.last;
                &mut self.chunk_mut(last)[at..]
            }
        }
    }

    /// Counts `len` bytes written into [`Pool::room_mut`] (`fresh` now `span`'s last chunk).
    pub(crate) fn commit(&mut self, span: &mut Span, fresh: Option<u32>, len: usize) {
        if let Some(chunk) = fresh {
            debug_assert_eq!(span.room(), 0);
            self.link(span, chunk);
        }
        span.len += len as u32;
    }

    /// Gives back `chunk` (from [`Pool::take`]), unused.
    pub(crate) fn give_back(&mut self, chunk: u32) {
        self.next[chunk as usize] = self.free.unwrap_or(NIL);
        self.free = Some(chunk);
    }

    fn link(&mut self, span: &mut Span, chunk: u32) {
        if span.last == NIL {
            span.first = chunk;
        } else {
            self.next[span.last as usize] = chunk;
        }
        span.last = chunk;
    }

    /// Gives `span`'s chunks back to the free list.
    pub(crate) fn release(&mut self, span: &mut Span) {
        if span.first != NIL {
            self.next[span.last as usize] = self.free.unwrap_or(NIL);
            self.free = Some(span.first);
        }
        *span = Span::EMPTY;
    }

    /// `span`'s bytes, copied out.
    pub(crate) fn read(&self, span: &Span) -> Vec<u8> {
        self.read_range(span, 0, span.len())
    }

    /// `span`'s bytes from `from` to `to` (as far as it has them), copied out.
    pub(crate) fn read_range(&self, span: &Span, from: usize, to: usize) -> Vec<u8> {
        let to = to.min(span.len());
        let from = from.min(to);
        let mut out = Vec::with_capacity(to - from);
        // `at`: where `chunk` starts in the span.
        let (mut chunk, mut at) = (span.first, 0);
        while at < to && chunk != NIL {
            if at + CHUNK > from {
                let (a, b) = (from.saturating_sub(at), (to - at).min(CHUNK));
                out.extend_from_slice(&self.chunk(chunk)[a..b]);
            }
            chunk = self.next[chunk as usize];
            at += CHUNK;
        }
        out
    }

    fn chunk(&self, i: u32) -> &[u8] {
        let (slab, at) = (i as usize / SLAB, i as usize % SLAB * CHUNK);
        &self.slabs[slab][at..at + CHUNK]
    }

    fn chunk_mut(&mut self, i: u32) -> &mut [u8] {
        let (slab, at) = (i as usize / SLAB, i as usize % SLAB * CHUNK);
        &mut self.slabs[slab][at..at + CHUNK]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(pool: &mut Pool, span: &mut Span, mut data: &[u8]) {
        while !data.is_empty() {
            let n = pool.fill(span, data);
            data = &data[n..];
            if !data.is_empty() {
                let chunk = pool.take().unwrap();
                let n = pool.extend(span, chunk, data);
                data = &data[n..];
            }
        }
    }

    #[test]
    fn spans_interleave_and_chunks_are_reused() {
        let mut pool = Pool::default();
        let (mut a, mut b) = (Span::EMPTY, Span::EMPTY);
        let text: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
        for piece in text.chunks(300) {
            write(&mut pool, &mut a, piece);
            write(&mut pool, &mut b, b"xy");
        }
        assert_eq!(pool.read(&a), text);
        assert_eq!(pool.read(&b).len(), 14);
        assert_eq!((a.held(), b.held()), (4 * CHUNK, CHUNK));
        pool.release(&mut a);
        assert_eq!(a, Span::EMPTY);
        // The freed chunks come back before a new slab is allocated.
        let mut c = Span::EMPTY;
        write(&mut pool, &mut c, &text);
        assert_eq!((pool.read(&c), pool.slabs.len()), (text.clone(), 1));
        // Any range reads what the span holds there, across chunks or not.
        for (from, to) in
            [(0, 0), (0, 512), (3, 509), (500, 1100), (1024, 1536), (1999, 2000), (1500, 9999), (3000, 4000)]
        {
            let want = &text[from.min(2000)..to.min(2000)];
            assert_eq!(pool.read_range(&c, from, to), want, "{from}..{to}");
        }
    }
}
