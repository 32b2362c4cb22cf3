//! The store's captured bytes in one append-only ring, let go from its oldest end.
//!
//! Every byte an entry keeps (its heads, its bodies' first bytes) is written at the
//! ring's head, one part after another, whatever entry it belongs to. An entry notes
//! where the head was when it began (its `mark`): all its bytes come after it, and
//! entries begin in order, so the oldest entry's mark is where the live bytes start.
//! Evicting the oldest entry (the store evicts only the oldest) lets go of everything
//! before the next entry's mark: the bytes the ring holds are the distance from the
//! oldest mark to the head, and that is what the store counts. Bytes of an evicted
//! entry written after a live entry's mark (a response that came back after newer
//! requests) are counted until the ring lets go of them with that entry.
//!
//! The buffer is one allocation of the store's bound, made at the first write and
//! never reallocated (no copy, no old buffer held beside a new one). Its bytes are
//! zeroed [`STEP`] at a time as the head first reaches them, so the pages it touches
//! are the pages written, then it is written round and round: what it holds is what
//! the store counts, whatever mix of sizes goes through (a store of separate
//! allocations of every size once kept three times its bound, docs/BENCHMARKS.md,
//! tenth round; a pool of 512-byte chunks after that cost ~0.25k instructions an
//! exchange in taking, linking and bounds, twenty-first round).
//!
//! A part ([`Span`]) is its bytes in order, in runs: a part written whole, or in
//! pieces with nothing else written between them (a small exchange's heads and body),
//! is one run. A piece written after another entry's bytes starts a new run, after a
//! link to the run before it (where it starts and its length, [`LINK`] bytes in the
//! ring, counted as its bytes are); a part is read back by following its links.

/// The bytes of a link to a part's run before: where it starts (8 bytes), its length (4).
pub(crate) const LINK: usize = 12;
/// Bytes of the buffer zeroed at a time as the ring first fills.
const STEP: usize = 64 * 1024;

/// One part of an entry: where its last run starts and its length, the runs, the
/// bytes in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    at: u64,
    last: u32,
    runs: u32,
    /// Bytes written (read by the store, which keeps where each part ends).
    pub(crate) len: u32,
}

impl Span {
    pub(crate) const EMPTY: Span = Span { at: 0, last: 0, runs: 0, len: 0 };

    /// Bytes written.
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }
}

/// The bytes of one store.
#[derive(Debug, Default)]
pub(crate) struct Ring {
    /// Its capacity `size`, its length the bytes the head has reached (position `p`
    /// of the ring at `p % size`).
    buf: Vec<u8>,
    /// The most it may hold (the store's bound).
    size: usize,
    /// Where the next byte goes: all bytes ever written.
    head: u64,
    /// Where the next byte goes in the buffer (`head % size`, kept as it moves: no
    /// division on the way in).
    pos: usize,
    /// Where the live bytes start (the oldest entry's mark).
    tail: u64,
}

impl Ring {
    /// An empty ring of at most `size` bytes (nothing allocated yet).
    pub(crate) fn new(size: usize) -> Self {
        Ring { size, ..Ring::default() }
    }

    /// Where the next byte goes (an entry's mark when it begins).
    pub(crate) fn head(&self) -> u64 {
        self.head
    }

    /// Lets go of the bytes before `to` (the new oldest entry's mark, or the head); how many.
    pub(crate) fn release_to(&mut self, to: u64) -> usize {
        let n = to.saturating_sub(self.tail);
        self.tail = self.tail.max(to);
        usize::try_from(n).unwrap_or(usize::MAX)
    }

    /// The bytes writing to `span` costs besides the data: a link when the span has
    /// bytes and they do not end at the head.
    #[inline]
    pub(crate) fn link_len(&self, span: &Span) -> usize {
        if span.runs == 0 || span.at + u64::from(span.last) == self.head {
            0
        } else {
            LINK
        }
    }

    /// Where `span` goes on: its last run if that ends at the head, else a new run at
    /// the head (after a link to the last, written now). The bytes of the link.
    #[inline]
    fn go_on(&mut self, span: &mut Span) -> usize {
        if span.runs == 0 {
            // Its first bytes (an exchange's request head, a body's first piece).
            (span.at, span.last, span.runs) = (self.head, 0, 1);
            0
        } else if span.at + u64::from(span.last) == self.head {
            0
        } else {
            self.new_run(span)
        }
    }

    /// [`Ring::go_on`] for a span whose bytes do not end at the head: a link to its
    /// last run, then a new run.
    #[cold]
    fn new_run(&mut self, span: &mut Span) -> usize {
        let mut bytes = [0; LINK];
        bytes[..8].copy_from_slice(&span.at.to_le_bytes());
        bytes[8..].copy_from_slice(&span.last.to_le_bytes());
        self.copy_in(&bytes);
        (span.at, span.last, span.runs) = (self.head, 0, span.runs + 1);
        LINK
    }

    /// Appends `data` to `span` (the caller made room for it and its
    /// [`Ring::link_len`]); the bytes of the link it wrote.
    #[inline]
    pub(crate) fn append(&mut self, span: &mut Span, data: &[u8]) -> usize {
        let link = self.go_on(span);
        self.copy_in(data);
        span.last += data.len() as u32;
        span.len += data.len() as u32;
        link
    }

    /// The room at the head to write `span`'s next bytes into, in one piece (up to
    /// the buffer's end) and at most `limit` bytes (the store's room, its link
    /// included), and the bytes of the link written before it. Written bytes count
    /// once [`Ring::commit`]ted.
    #[inline]
    pub(crate) fn room_mut(&mut self, span: &mut Span, limit: usize) -> (usize, &mut [u8]) {
        if limit <= self.link_len(span) {
            return (0, &mut []);
        }
        let link = self.go_on(span);
        let at = self.pos;
        let end = at + (limit - link).min(self.size - at);
        if end > self.buf.len() {
            self.grow(end);
        }
        (link, &mut self.buf[at..end])
    }

    /// Counts `len` bytes written into [`Ring::room_mut`] as `span`'s.
    #[inline]
    pub(crate) fn commit(&mut self, span: &mut Span, len: usize) {
        self.advance(len);
        span.last += len as u32;
        span.len += len as u32;
    }

    /// `span`'s bytes, copied out.
    pub(crate) fn read(&self, span: &Span) -> Vec<u8> {
        self.read_range(span, 0, span.len())
    }

    /// `span`'s bytes from `from` to `to` (as far as it has them), copied out.
    pub(crate) fn read_range(&self, span: &Span, from: usize, to: usize) -> Vec<u8> {
        let to = to.min(span.len());
        let from = from.min(to);
        // Its runs, last first: each but the first follows its link to the one before.
        let mut runs = Vec::with_capacity(span.runs as usize);
        let (mut at, mut len) = (span.at, span.last);
        for k in 0..span.runs {
            runs.push((at, len as usize));
            if k + 1 < span.runs {
                let mut link = Vec::with_capacity(LINK);
                self.copy_out(at.saturating_sub(LINK as u64), LINK, &mut link);
                let (before, last) = link.split_at(8);
                at = u64::from_le_bytes(before.try_into().unwrap_or_default());
                len = u32::from_le_bytes(last.try_into().unwrap_or_default());
            }
        }
        let mut out = Vec::with_capacity(to - from);
        // `pos`: where the run starts in the span.
        let mut pos = 0;
        for &(at, len) in runs.iter().rev() {
            let (a, b) = (from.max(pos), to.min(pos + len));
            if a < b {
                self.copy_out(at + (a - pos) as u64, b - a, &mut out);
            }
            pos += len;
        }
        out
    }

    /// Where ring position `p` is in the buffer (on the way out).
    fn at(&self, p: u64) -> usize {
        // `size` is not 0 here: nothing is written to a ring of no bytes.
        (p % self.size.max(1) as u64) as usize
    }

    /// Makes the buffer at least `end` bytes long (at most `size`): the ring is still
    /// filling for the first time. Its allocation, of all of `size`, at the first.
    #[cold]
    fn grow(&mut self, end: usize) {
        if self.buf.capacity() < self.size {
            self.buf.reserve_exact(self.size - self.buf.len());
        }
        let len = end.max(self.buf.len() + STEP).min(self.size);
        self.buf.resize(len, 0);
    }

    /// Moves the head on by `n` bytes written at `pos` (not past the buffer's end).
    #[inline]
    fn advance(&mut self, n: usize) {
        self.head += n as u64;
        self.pos += n;
        if self.pos == self.size {
            self.pos = 0;
        }
    }

    /// Writes `data` at the head: one copy, two where it reaches the buffer's end.
    #[inline]
    fn copy_in(&mut self, data: &[u8]) {
        let at = self.pos;
        let first = data.len().min(self.size - at);
        if at + first > self.buf.len() {
            self.grow(at + first);
        }
        self.buf[at..at + first].copy_from_slice(&data[..first]);
        self.advance(first);
        if first < data.len() {
            // Round the end (only a full-sized buffer is gone round): `pos` is 0 now.
            let rest = &data[first..];
            self.buf[..rest.len()].copy_from_slice(rest);
            self.advance(rest.len());
        }
    }

    /// Appends the `len` bytes at ring position `p` to `out`.
    fn copy_out(&self, p: u64, len: usize, out: &mut Vec<u8>) {
        let at = self.at(p);
        let first = len.min(self.size - at);
        out.extend_from_slice(self.buf.get(at..at + first).unwrap_or_default());
        out.extend_from_slice(self.buf.get(..len - first).unwrap_or_default());
    }

    /// Bytes held: from the oldest entry's mark to the head.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        (self.head - self.tail) as usize
    }

    /// Bytes of buffer zeroed (touched).
    #[cfg(test)]
    pub(crate) fn allocated(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(ring: &mut Ring, span: &mut Span, data: &[u8]) {
        ring.append(span, data);
    }

    /// A ring of `size` bytes, all of it zeroed, its head (and oldest byte) at `p`.
    fn ring_at(size: usize, p: u64) -> Ring {
        let mut ring = Ring::new(size);
        ring.grow(size);
        (ring.head, ring.tail, ring.pos) = (p, p, (p % size as u64) as usize);
        ring
    }

    #[test]
    fn parts_interleave_across_the_buffers_end_and_read_back_in_order() {
        let text: Vec<u8> = (0..2000u32).map(|i| (i * 7) as u8).collect();
        // Started at many offsets of a small ring, so runs and links fall across its end.
        for (size, start) in
            (0..64u64).map(|k| (4096, k * 61)).chain((0..64).map(|k| (STEP + 3000, STEP as u64 - k * 67)))
        {
            let mut ring = ring_at(size, start);
            let (mut a, mut b) = (Span::EMPTY, Span::EMPTY);
            for piece in text.chunks(300) {
                write(&mut ring, &mut a, piece);
                write(&mut ring, &mut b, b"xy");
            }
            // a's pieces are runs after links; b's too, but its first.
            assert_eq!((a.runs, b.runs), (7, 7));
            assert_eq!(ring.read(&a), text, "{size} from {start}");
            assert_eq!(ring.read(&b), b"xy".repeat(7));
            // Pieces with nothing between them are one run.
            let mut c = Span::EMPTY;
            write(&mut ring, &mut c, &text[..10]);
            write(&mut ring, &mut c, &text[10..20]);
            assert_eq!((c.runs, ring.read(&c)), (1, text[..20].to_vec()));
            for (from, to) in
                [(0, 0), (0, 300), (3, 299), (299, 301), (500, 1100), (1999, 2000), (1500, 9999), (3000, 4000)]
            {
                let want = &text[from.min(2000)..to.min(2000)];
                assert_eq!(ring.read_range(&a, from, to), want, "{size} from {start}: {from}..{to}");
            }
            assert_eq!(ring.allocated(), size);
        }
    }

    #[test]
    fn room_is_one_piece_up_to_the_buffers_end_and_the_limit() {
        let mut ring = ring_at(1000, 990);
        let mut span = Span::EMPTY;
        let (link, room) = ring.room_mut(&mut span, 100);
        assert_eq!((link, room.len()), (0, 10));
        room.copy_from_slice(b"0123456789");
        ring.commit(&mut span, 10);
        ring.append(&mut span, b"abc");
        let mut other = Span::EMPTY;
        ring.append(&mut other, b"zz");
        // A link first, then room up to the limit.
        let (link, room) = ring.room_mut(&mut span, 20);
        assert_eq!((link, room.len()), (LINK, 8));
        room[..2].copy_from_slice(b"de");
        ring.commit(&mut span, 2);
        assert_eq!(ring.read(&span), b"0123456789abcde");
        assert_eq!(ring.release_to(ring.head()), 10 + 3 + 2 + LINK + 2);
        // A large ring zeroes (touches) its buffer a step at a time as its head first
        // gets there, within the one allocation of its size.
        let mut big = Ring::new(1 << 20);
        let mut s = Span::EMPTY;
        big.append(&mut s, &[1; 100]);
        assert_eq!((big.allocated(), big.buf.capacity()), (STEP, 1 << 20));
        big.append(&mut s, &vec![2; STEP]);
        assert_eq!((big.allocated(), big.buf.capacity()), (2 * STEP, 1 << 20));
        // No room for more than a link: nothing is written.
        let mut third = Span::EMPTY;
        ring.append(&mut third, b"q");
        let (link, room) = ring.room_mut(&mut span, LINK);
        assert_eq!((link, room.len()), (0, 0));
    }
}
