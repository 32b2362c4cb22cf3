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
//! are the pages written, and only as far as the store lets the ring hold (its bound
//! less what it counts for its entries besides their bytes): there the head goes
//! round, and the ring keeps that length until the head is back at its end with more
//! room allowed (fewer, larger entries) and nothing live past it, when it grows on.
//! So what it holds is what the store counts (at most what it counted when it held
//! the most bytes), whatever mix of sizes goes through (a store of separate
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

/// One part of an entry: where its last run starts and its length, the bytes in all.
/// 16 bytes: its runs are not counted (a reading follows the links back until it has
/// all the bytes, the first run being the one that completes them; a part with no
/// bytes starts a fresh run wherever it is next written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    at: u64,
    last: u32,
    /// Bytes written (read by the store, which keeps where each part ends).
    pub(crate) len: u32,
}

impl Span {
    pub(crate) const EMPTY: Span = Span { at: 0, last: 0, len: 0 };

    /// Bytes written.
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }
}

/// The bytes of one store.
#[derive(Debug, Default)]
pub(crate) struct Ring {
    /// Its length the bytes the head has reached, up to `size` (position `p` of the
    /// ring at `(p - base) % size`).
    buf: Vec<u8>,
    /// Where the head goes round: `max` while the ring grows, then the length it had
    /// when the store let it grow no more ([`Ring::grow`]).
    size: usize,
    /// The store's bound: the most the ring may be.
    max: usize,
    /// The position at the buffer's start when the ring last grew on from its end.
    base: u64,
    /// Where the next byte goes: all bytes ever written.
    head: u64,
    /// Where the next byte goes in the buffer (`(head - base) % size`, kept as it moves:
    /// no division on the way in; `size` at the end, until the next write goes round
    /// or grows on).
    pos: usize,
    /// Where the live bytes start (the oldest entry's mark).
    tail: u64,
}

impl Ring {
    /// An empty ring of at most `size` bytes (nothing allocated yet).
    pub(crate) fn new(size: usize) -> Self {
        Ring { size, max: size, ..Ring::default() }
    }

    /// Where the next byte goes (an entry's mark when it begins).
    pub(crate) fn head(&self) -> u64 {
        self.head
    }

    /// Room for more bytes at the head without overwriting live ones: while the ring
    /// first fills, more than the store's count lets it take.
    #[inline]
    pub(crate) fn free(&self) -> usize {
        self.size.saturating_sub(self.held())
    }

    /// Bytes held: from the oldest entry's mark to the head.
    #[inline]
    pub(crate) fn held(&self) -> usize {
        (self.head - self.tail) as usize
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
        if span.len == 0 || span.at + u64::from(span.last) == self.head {
            0
        } else {
            LINK
        }
    }

    /// Where `span` goes on: its last run if that ends at the head, else a new run at
    /// the head (after a link to the last, written now). The bytes of the link.
    #[inline]
    fn go_on(&mut self, span: &mut Span, limit: usize) -> usize {
        if span.len == 0 {
            // Its first bytes (an exchange's request head, a body's first piece): a run
            // at the head (one of a part with no bytes yet is not linked to).
            (span.at, span.last) = (self.head, 0);
            0
        } else if span.at + u64::from(span.last) == self.head {
            0
        } else {
            self.new_run(span, limit)
        }
    }

    /// [`Ring::go_on`] for a span whose bytes do not end at the head: a link to its
    /// last run, then a new run. Every exchange's response head at 32 connections on
    /// the client (31 other requests filed after its request's head): the link is
    /// written in place where the buffer has it already (two stores, no call, few
    /// registers to save), through [`Ring::new_run_round`] only where it would grow the
    /// buffer or go round its end (~64 instructions a link before, docs/BENCHMARKS.md,
    /// twenty-fourth round).
    #[cold]
    fn new_run(&mut self, span: &mut Span, limit: usize) -> usize {
        let at = self.pos;
        match self.buf.get_mut(at..at + LINK) {
            Some(room) if at + LINK <= self.size => {
                let (before, last) = room.split_at_mut(8);
                before.copy_from_slice(&span.at.to_le_bytes());
                last.copy_from_slice(&span.last.to_le_bytes());
                self.advance(LINK);
            }
            _ => self.new_run_round(span, limit),
        }
        (span.at, span.last) = (self.head, 0);
        LINK
    }

    /// [`Ring::new_run`]'s link where the buffer must grow or the link goes round its
    /// end: through [`Ring::copy_in`].
    #[cold]
    #[inline(never)]
    fn new_run_round(&mut self, span: &Span, limit: usize) {
        let mut bytes = [0; LINK];
        bytes[..8].copy_from_slice(&span.at.to_le_bytes());
        bytes[8..].copy_from_slice(&span.last.to_le_bytes());
        self.copy_in(&bytes, limit);
    }

    /// Appends `data` to `span` (the caller made room for it and its
    /// [`Ring::link_len`], within `limit`: what the store lets the ring take, at least
    /// both); the bytes of the link it wrote.
    #[inline]
    pub(crate) fn append(&mut self, span: &mut Span, data: &[u8], limit: usize) -> usize {
        let link = self.go_on(span, limit);
        self.copy_in(data, limit - link);
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
        let link = self.go_on(span, limit);
        let limit = limit - link;
        if self.pos + limit > self.buf.len() {
            self.grow(self.pos + limit, limit);
        }
        let at = self.pos;
        let end = at + limit.min(self.size - at);
        (link, &mut self.buf[at..end])
    }

    /// [`Ring::room_mut`] for `n` bytes of `span` known before they are written, when
    /// `room` (the store's room, its link included: at least the link and `n`) is in
    /// the buffer as it is: exactly `n` bytes at the head (after the link, written now)
    /// and the link's bytes, as `room_mut` would give them (it would neither grow the
    /// buffer nor go round); else `None`, nothing written, for `room_mut`'s way.
    /// Counted (`n` and the link) and the head moved on as [`Ring::commit`] does: the
    /// caller fills them.
    #[inline]
    pub(crate) fn exact_mut(&mut self, span: &mut Span, n: usize, room: usize) -> Option<(usize, &mut [u8])> {
        if self.pos + room > self.buf.len() {
            return None;
        }
        let link = self.go_on(span, room);
        let at = self.pos;
        self.advance(n);
        span.last += n as u32;
        span.len += n as u32;
        Some((link, self.buf.get_mut(at..at + n)?))
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
        let runs = self.runs(span);
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

    /// `span`'s runs (where each starts, its length), last first: each run but the first
    /// follows a link to the one before, and the first is the one that completes the
    /// span's bytes. At most one run per link the ring could hold (the bytes the store
    /// wrote are its own, but a walk that cannot end is not left to chance).
    fn runs(&self, span: &Span) -> Vec<(u64, usize)> {
        let mut runs = Vec::new();
        let (mut at, mut len, mut seen) = (span.at, span.last as usize, 0);
        while runs.len() <= self.size / LINK {
            runs.push((at, len));
            seen += len;
            if seen >= span.len() {
                break;
            }
            let mut link = Vec::with_capacity(LINK);
            self.copy_out(at.saturating_sub(LINK as u64), LINK, &mut link);
            let (before, last) = link.split_at(8);
            at = u64::from_le_bytes(before.try_into().unwrap_or_default());
            len = u32::from_le_bytes(last.try_into().unwrap_or_default()) as usize;
        }
        runs
    }

    /// Where ring position `p` is in the buffer (on the way out).
    fn at(&self, p: u64) -> usize {
        // `size` is not 0 here: nothing is written to a ring of no bytes.
        (p.wrapping_sub(self.base) % self.size.max(1) as u64) as usize
    }

    /// Makes the buffer long enough to write up to `end` (its allocation, of all of
    /// `max`, at the first call), within what the store lets the ring hold: its bytes
    /// and `limit` more. A write that would go past that makes the ring go round there
    /// instead: its length is where the head goes round from now on (the live bytes,
    /// and the write's, fit: the store counts them within its bound). A ring gone
    /// round grows on when a write reaches its end with more room allowed and its live
    /// bytes all before the head (none past it, where the buffer grows): they stay where
    /// they are, `base` moved so that the head keeps its place.
    #[cold]
    fn grow(&mut self, end: usize, limit: usize) {
        let most = self.held().saturating_add(limit).min(self.max);
        if self.buf.len() == self.size {
            if most <= self.size || self.held() > self.pos {
                // It goes round (now, if the head is at the end).
                if self.pos == self.size {
                    self.pos = 0;
                }
                return;
            }
            self.base = self.head - self.pos as u64;
            self.size = self.max;
        }
        if self.buf.capacity() < self.max {
            self.buf.reserve_exact(self.max - self.buf.len());
        }
        if end <= most {
            self.buf.resize(end.max(self.buf.len() + STEP).min(most), 0);
        } else {
            self.buf.resize(self.buf.len().max(most), 0);
            self.size = self.buf.len();
            if self.pos == self.size {
                self.pos = 0;
            }
        }
    }

    /// Moves the head on by `n` bytes written at `pos` (not past the ring's end, where
    /// `pos` stays until the next write: [`Ring::grow`]).
    #[inline]
    fn advance(&mut self, n: usize) {
        self.head += n as u64;
        self.pos += n;
    }

    /// Writes `data` at the head (`limit`: what the store lets the ring take, at least
    /// `data`): one copy, two where it reaches the ring's end.
    #[inline]
    fn copy_in(&mut self, data: &[u8], limit: usize) {
        if self.pos + data.len() > self.buf.len() {
            self.grow(self.pos + data.len(), limit);
        }
        let at = self.pos;
        let first = data.len().min(self.size - at);
        self.buf[at..at + first].copy_from_slice(&data[..first]);
        self.advance(first);
        if first < data.len() {
            // Round the end (the buffer is all of `size` then).
            let rest = &data[first..];
            self.buf[..rest.len()].copy_from_slice(rest);
            self.pos = 0;
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
        let limit = ring.free();
        ring.append(span, data, limit);
    }

    /// A ring of `size` bytes, all of it zeroed, its head (and oldest byte) at `p`.
    fn ring_at(size: usize, p: u64) -> Ring {
        let mut ring = Ring::new(size);
        ring.grow(size, size);
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
            assert_eq!((ring.runs(&a).len(), ring.runs(&b).len()), (7, 7));
            assert_eq!(ring.read(&a), text, "{size} from {start}");
            assert_eq!(ring.read(&b), b"xy".repeat(7));
            // Pieces with nothing between them are one run.
            let mut c = Span::EMPTY;
            write(&mut ring, &mut c, &text[..10]);
            write(&mut ring, &mut c, &text[10..20]);
            assert_eq!((ring.runs(&c).len(), ring.read(&c)), (1, text[..20].to_vec()));
            for (from, to) in
                [(0, 0), (0, 300), (3, 299), (299, 301), (500, 1100), (1999, 2000), (1500, 9999), (3000, 4000)]
            {
                let want = &text[from.min(2000)..to.min(2000)];
                assert_eq!(ring.read_range(&a, from, to), want, "{size} from {start}: {from}..{to}");
            }
            assert_eq!(ring.allocated(), size);
        }
    }

    /// An exchange at 32 connections: its request head, others' heads after it, then
    /// its response head, a run after a link. Wherever the link falls (in place, across
    /// the buffer's end, at the end itself), the parts read back whole and the ring
    /// counts the link's bytes.
    #[test]
    fn a_link_reads_back_wherever_it_falls_against_the_buffers_end() {
        for k in 0..64u64 {
            let mut ring = ring_at(4096, 4096 * 3 - 100 - k);
            let (mut ex, mut others) = (Span::EMPTY, [Span::EMPTY; 31]);
            write(&mut ring, &mut ex, &[b'q'; 40]);
            for (i, o) in others.iter_mut().enumerate() {
                write(&mut ring, o, &[i as u8; 2]);
            }
            let before = ring.held();
            write(&mut ring, &mut ex, b"HTTP/1.1 200");
            assert_eq!(ring.held(), before + LINK + 12, "k {k}");
            let mut want = vec![b'q'; 40];
            want.extend_from_slice(b"HTTP/1.1 200");
            assert_eq!(ring.read(&ex), want, "k {k}");
            for (i, o) in others.iter().enumerate() {
                assert_eq!(ring.read(o), [i as u8; 2], "k {k}");
            }
            // A third run after another link.
            write(&mut ring, &mut others[0], b"zz");
            write(&mut ring, &mut ex, b"!");
            want.push(b'!');
            assert_eq!((ring.read(&ex), ring.runs(&ex).len()), (want, 3), "k {k}");
        }
    }

    /// A ring the store lets hold less than its size (its entries' weights count
    /// too) goes round where that was when it first filled: its buffer stays that
    /// long, every live part reads back whole across its end.
    /// A span's runs are not counted: a run left empty after its link (a room made, then
    /// nothing committed in it) is walked over, and a span with no bytes starts a fresh
    /// run (no link to where it was first made room for).
    #[test]
    fn empty_runs_are_walked_over_and_an_empty_span_starts_afresh() {
        let mut ring = ring_at(4096, 4000);
        let (mut a, mut b, mut c) = (Span::EMPTY, Span::EMPTY, Span::EMPTY);
        // c: room made and nothing written, then another part's bytes, then its first.
        let limit = ring.free();
        ring.room_mut(&mut c, limit);
        ring.commit(&mut c, 0);
        write(&mut ring, &mut a, b"hello");
        write(&mut ring, &mut b, b"--");
        // a: a link, an empty run, b's bytes, then a link and three bytes.
        let limit = ring.free();
        let (link, _) = ring.room_mut(&mut a, limit);
        ring.commit(&mut a, 0);
        write(&mut ring, &mut b, b"++");
        write(&mut ring, &mut a, b"abc");
        write(&mut ring, &mut c, b"xyz");
        assert_eq!(link, LINK);
        assert_eq!((ring.read(&a), ring.runs(&a).len()), (b"helloabc".to_vec(), 3));
        assert_eq!(ring.read_range(&a, 4, 6), b"oa");
        assert_eq!((ring.read(&b), ring.read(&c), ring.runs(&c).len()), (b"--++".to_vec(), b"xyz".to_vec(), 1));
        assert_eq!(ring.held(), 5 + 2 + LINK + 2 + LINK + 3 + 3 + LINK);
    }

    #[test]
    fn a_ring_goes_round_where_the_store_stops_it_growing() {
        let mut ring = Ring::new(1 << 20);
        // (mark, span, bytes) of each live entry, oldest first; the store lets the
        // ring hold 200,000 bytes.
        let mut live = std::collections::VecDeque::new();
        for k in 0..400usize {
            let data: Vec<u8> = (0..3000 + k * 37 % 5000).map(|b| (b * 3 + k) as u8).collect();
            while ring.held() + data.len() + LINK + 1 > 200_000 || data.len() + LINK + 1 > ring.free() {
                live.pop_front();
                let to = live.front().map_or(ring.head(), |(mark, _, _)| *mark);
                ring.release_to(to);
            }
            let (mark, mut span) = (ring.head(), Span::EMPTY);
            let limit = (200_000 - ring.held()).min(ring.free());
            let (a, b) = data.split_at(data.len() / 3);
            ring.append(&mut span, a, limit);
            // Another entry's byte between: the rest is a run after a link.
            let mut other = Span::EMPTY;
            ring.append(&mut other, b"x", limit - a.len());
            ring.append(&mut span, b, limit - a.len() - 1);
            live.push_back((mark, span, data));
            for (_, span, data) in &live {
                assert_eq!(&ring.read(span), data, "entry {k}");
            }
            assert!(ring.allocated() <= 200_000 && ring.held() <= ring.size);
        }
        assert_eq!(ring.size, ring.allocated());
        // The store lets it hold more (fewer entries): it grows on from its end, its
        // live parts where they were.
        let frozen = ring.size;
        for k in 0..200usize {
            let data: Vec<u8> = (0..9000 + k * 53 % 4000).map(|b| (b * 5 + k) as u8).collect();
            while ring.held() + data.len() > 500_000 || data.len() > ring.free() {
                live.pop_front();
                let to = live.front().map_or(ring.head(), |(mark, _, _)| *mark);
                ring.release_to(to);
            }
            let (mark, mut span) = (ring.head(), Span::EMPTY);
            ring.append(&mut span, &data, 500_000 - ring.held());
            live.push_back((mark, span, data));
            for (_, span, data) in &live {
                assert_eq!(&ring.read(span), data, "entry {k} after");
            }
            assert!(ring.allocated() <= 500_000 && ring.held() <= ring.size);
        }
        assert!(ring.allocated() > frozen, "{} after {frozen}", ring.allocated());
    }

    #[test]
    fn room_is_one_piece_up_to_the_buffers_end_and_the_limit() {
        let mut ring = ring_at(1000, 990);
        let mut span = Span::EMPTY;
        let (link, room) = ring.room_mut(&mut span, 100);
        assert_eq!((link, room.len()), (0, 10));
        room.copy_from_slice(b"0123456789");
        ring.commit(&mut span, 10);
        write(&mut ring, &mut span, b"abc");
        let mut other = Span::EMPTY;
        write(&mut ring, &mut other, b"zz");
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
        write(&mut big, &mut s, &[1; 100]);
        assert_eq!((big.allocated(), big.buf.capacity()), (STEP, 1 << 20));
        write(&mut big, &mut s, &vec![2; STEP]);
        assert_eq!((big.allocated(), big.buf.capacity()), (2 * STEP, 1 << 20));
        // No room for more than a link: nothing is written.
        let mut third = Span::EMPTY;
        write(&mut ring, &mut third, b"q");
        let (link, room) = ring.room_mut(&mut span, LINK);
        assert_eq!((link, room.len()), (0, 0));
    }
}
