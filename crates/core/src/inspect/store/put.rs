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

#[cfg(test)]
mod tests {
    use super::super::{EntryId, InspectConfig, Store};
    use crate::inspect::{BodyOf, Exchange};
    use crate::time::Instant;

    /// A body filed in one call (a response whole, [`Store::respond_whole`]) is kept as
    /// the same body filed frame by frame ([`Store::body_data`], pieces of 1 to 509
    /// bytes, each taking at most one chunk): the same exchanges filed both ways into two
    /// stores, with bodies empty, of 1 byte, about a chunk's room or a chunk, of several
    /// chunks, past the body limit, starting anywhere in a chunk (heads of varied sizes
    /// before them), request bodies too, in stores from roomy to too small for a body's
    /// chunk (cut bodies, evictions for each exchange). The same entries read back the
    /// same, the same bytes counted, within the bound; a body kept is the body's first
    /// bytes, all of them up to the limit in a roomy store.
    #[test]
    fn a_body_filed_at_once_is_kept_as_filed_chunk_by_chunk() {
        let h = [(http::header::HOST, http::HeaderValue::from_static("a.test"))];
        let sizes = [0, 1, 2, 300, 511, 512, 513, 1024, 1500, 4096, 5000, 9000];
        let in_pieces = |store: &mut Store, id: EntryId, of: BodyOf, body: &[u8], mut step: usize| {
            let mut rest = body;
            while !rest.is_empty() {
                step = (step * 31 + 7) % 509;
                let (piece, after) = rest.split_at((1 + step).min(rest.len()));
                store.body_data(id, of, piece);
                rest = after;
            }
            store.body_end(id, of, body.len() as u64, Instant::ZERO);
        };
        for max_bytes in [1 << 20, 16 * 1024, 5000, 1536, 900] {
            let config = InspectConfig { max_bytes, body_limit: 4096, ..InspectConfig::default() };
            let (mut whole, mut pieces) = (Store::new(config.clone(), 1), Store::new(config, 1));
            for k in 0..72 {
                let size = sizes[k % sizes.len()];
                let body: Vec<u8> = (0..size).map(|b| (b * 7 + k) as u8).collect();
                let request_body = &body[..sizes[(k / 3) % sizes.len()].min(size)];
                let uri = format!("/{k}/{}", "p".repeat(k * 53 % 600));
                let ex = Exchange { method: "POST", uri: &uri, headers: &h[..], websocket: false, replay_of: None };
                let (a, b) = (whole.begin(Instant::ZERO, 0, ex), pieces.begin(Instant::ZERO, 0, ex));
                whole.body_data(a, BodyOf::Request, request_body);
                whole.body_end(a, BodyOf::Request, request_body.len() as u64, Instant::ZERO);
                whole.respond_whole(a, Instant::ZERO, 200, &h[..], &body);
                in_pieces(&mut pieces, b, BodyOf::Request, request_body, k);
                pieces.respond(b, 200, &h[..]);
                in_pieces(&mut pieces, b, BodyOf::Response, &body, k + 1);
                let what = format!("{max_bytes} bytes, exchange {k}, body {size}");
                assert_eq!((whole.bytes(), whole.len()), (pieces.bytes(), pieces.len()), "{what}");
                assert!(whole.bytes() <= max_bytes, "{what}");
                for (ea, eb) in whole.newest_first().zip(pieces.newest_first()) {
                    assert_eq!((ea.id, ea.held, ea.weight()), (eb.id, eb.held, eb.weight()), "{what}");
                    assert_eq!(
                        (whole.request(ea), whole.response(ea)),
                        (pieces.request(eb), pieces.response(eb)),
                        "{what}"
                    );
                }
                let Some(e) = whole.get(a) else { continue };
                let (req, res) = (whole.request(e), whole.response(e).unwrap());
                assert_eq!((req.body.size(), res.body.size()), (request_body.len() as u64, size as u64), "{what}");
                // The first bytes of each body: all of them up to the limit in a roomy
                // store, fewer in one too small for them.
                assert!(request_body.starts_with(req.body.data()) && body.starts_with(res.body.data()), "{what}");
                if max_bytes == 1 << 20 {
                    assert_eq!(res.body.data(), &body[..size.min(4096)], "{what}");
                }
            }
        }
    }
}
