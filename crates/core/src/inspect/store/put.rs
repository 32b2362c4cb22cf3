//! Writing into the store's chunks: an entry's head (its line and fields, or a kept
//! header block) and its bodies, each appended to the entry's span of fixed-size
//! chunks from the pool, a full store evicting its oldest entries for room (an
//! entry's index moves down as older ones go, so each call returns it).

use super::super::head::{self, HeadFields};
use super::super::pool::CHUNK;
use super::super::record::Part;
use super::{Store, EXCHANGE};

impl Store {
    /// A head's fields, each after its length, at the end of entry `i`'s exchange span:
    /// the `line` (method and target, for a request), then each header's name and
    /// value. In one go when they fit the room left in the span's last chunk, or a
    /// fresh chunk when none is left (a head mostly does), else in runs
    /// ([`Self::put_head_across`]). Returns the entry's index (evictions move it).
    pub(super) fn put_head<H: HeadFields + ?Sized>(&mut self, mut i: usize, line: &[&[u8]], headers: &H) -> usize {
        if line.is_empty() && headers.field_count() == 0 {
            return i;
        }
        let fresh = if self.entries[i].spans[EXCHANGE].room() > 0 {
            None
        } else {
            let chunk;
            (i, chunk) = self.chunk_for(i);
            // None: the store is full and the entry the oldest; its head is not kept.
            let Some(chunk) = chunk else { return i };
            Some(chunk)
        };
        let entry = &mut self.entries[i];
        let span = &mut entry.spans[EXCHANGE];
        let mut pairs = headers.each();
        let len = match head::put_all(self.pool.room_mut(span, fresh), line, &mut pairs) {
            Ok(len) => len,
            Err(stop) => return self.put_head_across(i, fresh, stop.len, stop.rest(line, pairs)),
        };
        self.pool.commit(span, fresh, len);
        if fresh.is_some() {
            entry.held += CHUNK;
            self.bytes += CHUNK;
        }
        i
    }

    /// [`Self::put_head`] for a head larger than the room (the span's, or `fresh`):
    /// the `len` bytes [`head::put_all`] wrote are counted, then the `rest` of the
    /// fields goes on from where it stopped, in the same walk of the head: the field
    /// that did not fit across chunks, the fields after it that fit the new chunk's
    /// room in one go, and so on. Out of line: most heads fit. (It once sized what
    /// fitted and found the first field left by walking the head twice more from its
    /// start: ~1.8k instructions for a browser's head from the OPEN's raw block,
    /// docs/BENCHMARKS.md, eighteenth round.)
    #[cold]
    pub(super) fn put_head_across<'a>(
        &mut self,
        mut i: usize,
        fresh: Option<u32>,
        len: usize,
        rest: impl Iterator<Item = &'a [u8]>,
    ) -> usize {
        let entry = &mut self.entries[i];
        let span = &mut entry.spans[EXCHANGE];
        match fresh {
            // A fresh chunk that took nothing (the head's first field is larger) goes back.
            Some(chunk) if len == 0 => self.pool.give_back(chunk),
            _ => {
                self.pool.commit(span, fresh, len);
                if fresh.is_some() {
                    entry.held += CHUNK;
                    self.bytes += CHUNK;
                }
            }
        }
        // What fits the room in one go, then the field that does not across chunks,
        // and so on.
        let mut rest = rest.peekable();
        while rest.peek().is_some() {
            let span = &mut self.entries[i].spans[EXCHANGE];
            if span.room() > 0 {
                let len = head::put_while(self.pool.room_mut(span, None), &mut rest);
                self.pool.commit(span, None, len);
            }
            if let Some(field) = rest.next() {
                i = self.put_field(i, Part::Exchange, field);
            }
        }
        i
    }

    /// One head field after its length, piece by piece.
    pub(super) fn put_field(&mut self, i: usize, part: Part, field: &[u8]) -> usize {
        let i = self.put(i, part, &head::prefix(field));
        self.put(i, part, field)
    }

    /// Appends `data` to entry `i`'s `part`, taking chunks as it needs them: a free one
    /// while the store is within its bound, else the oldest entries' (evicted). What
    /// does not fit once the entry is the oldest is dropped. Returns the entry's index
    /// (evictions move it).
    pub(super) fn put(&mut self, mut i: usize, part: Part, mut data: &[u8]) -> usize {
        let n = self.pool.fill(&mut self.entries[i].spans[part as usize], data);
        data = &data[n..];
        while !data.is_empty() {
            let chunk;
            (i, chunk) = self.chunk_for(i);
            let Some(chunk) = chunk else { return i };
            let entry = &mut self.entries[i];
            let n = self.pool.extend(&mut entry.spans[part as usize], chunk, data);
            data = &data[n..];
            entry.held += CHUNK;
            self.bytes += CHUNK;
        }
        i
    }

    /// A chunk for entry `i`, evicting older entries while the store is full, and the
    /// entry's index after that. No chunk when it is the oldest and the store is full.
    /// Inlined (it runs for every chunk of every exchange, four for a small one: the
    /// call cost ~20 instructions each), the evicting loop kept out of line.
    #[inline]
    pub(super) fn chunk_for(&mut self, i: usize) -> (usize, Option<u32>) {
        if self.bytes + CHUNK <= self.config.max_bytes {
            return (i, self.pool.take());
        }
        self.chunk_evicting(i)
    }

    /// [`Self::chunk_for`] in a full store.
    pub(super) fn chunk_evicting(&mut self, mut i: usize) -> (usize, Option<u32>) {
        while self.bytes + CHUNK > self.config.max_bytes {
            if i == 0 || !self.evict_oldest() {
                return (i, None);
            }
            i -= 1;
        }
        (i, self.pool.take())
    }
}
