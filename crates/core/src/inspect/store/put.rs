//! Writing into the store's ring: an entry's head (its line and fields, or a kept
//! header block) and its bodies, each appended to the entry's span at the ring's head,
//! a full store evicting its oldest entries for room (an entry's index moves down as
//! older ones go, so each call returns it).

use super::super::head::{self, HeadFields};
use super::super::record::Part;
use super::{Store, EXCHANGE};

/// The room made for a head whose size is not known before it is written (its fields
/// as a list): about a small exchange's; a larger one is written on, field by field,
/// evicting for each ([`Store::put_head_across`]).
const HEAD_ROOM: usize = 512;
/// The most room a head is written into in one go (the ring's buffer grows to it).
const HEAD_MAX: usize = 16 * 1024;

impl Store {
    /// A head's fields, each after its length, at the end of entry `i`'s exchange span:
    /// the `line` (method and target, for a request), then each header's name and
    /// value. In one go into the ring's room at its head, made first (the oldest
    /// entries evicted for it: for the line's size when the head is its line alone, a
    /// kept block's, else [`HEAD_ROOM`]); a head larger than the room (or than what is
    /// left before the buffer's end) goes on field by field
    /// ([`Self::put_head_across`]). A response's `body` (its kept bytes, when it came
    /// back whole) goes after the head in the same room and the same count when it
    /// fits there (else the caller files it: the body bytes written come back, 0 or
    /// all). Returns the entry's index (evictions move it) and those bytes.
    pub(super) fn put_head<H: HeadFields + ?Sized>(
        &mut self,
        mut i: usize,
        line: &[&[u8]],
        headers: &H,
        body: &[u8],
    ) -> (usize, usize) {
        if line.is_empty() && headers.field_count() == 0 {
            return (i, 0);
        }
        // A body goes with a head of known size only: made room for with a list's
        // [`HEAD_ROOM`], it would evict more than the two steps do.
        let (want, body) = match headers.field_count() {
            0 => (line.iter().map(|f| 4 + f.len()).sum::<usize>() + body.len(), body),
            _ => (HEAD_ROOM, &[][..]),
        };
        let link = self.ring.link_len(&self.entries[i].spans[EXCHANGE]);
        i = self.room_for(i, link + want);
        let room = self.room().min(HEAD_MAX);
        let span = &mut self.entries[i].spans[EXCHANGE];
        let (link, buf) = self.ring.room_mut(span, room);
        self.bytes += link;
        let mut pairs = headers.each();
        let len = match head::put_all(buf, line, &mut pairs) {
            Ok(len) => len,
            Err(stop) => {
                self.ring.commit(span, stop.len);
                self.bytes += stop.len;
                return (self.put_head_across(i, stop.rest(line, pairs)), 0);
            }
        };
        let after = match buf.get_mut(len..len + body.len()) {
            Some(room) if !body.is_empty() => {
                room.copy_from_slice(body);
                body.len()
            }
            _ => 0,
        };
        self.ring.commit(span, len + after);
        self.bytes += len + after;
        (i, after)
    }

    /// [`Self::put_head`] of a head whose size is known before it is written: its
    /// `line` alone (a request's method, target and chosen `Host` with its block, a
    /// response's block), and a response's `body`. The same bytes, counts and
    /// evictions, with the room checked once and the fields written with no check
    /// each, when the room `put_head` would write into is in the ring's buffer as it
    /// is ([`super::super::ring::Ring::exact_mut`]) and takes it all; else through
    /// `put_head` (the ring grows or goes round there, or the head or the body does not
    /// fit). ~240 instructions a call before (docs/BENCHMARKS.md, twenty-sixth round).
    #[inline]
    pub(super) fn put_line(&mut self, mut i: usize, line: &[&[u8]], body: &[u8]) -> (usize, usize) {
        let head = line.iter().map(|f| 4 + f.len()).sum::<usize>();
        let want = head + body.len();
        if head == 0 {
            return (i, 0);
        }
        let link = self.ring.link_len(&self.entries[i].spans[EXCHANGE]);
        let mut room = self.room();
        if link + want > room {
            i = self.room_evicting(i, link + want);
            room = self.room();
        }
        let room = room.min(HEAD_MAX);
        if link + want <= room {
            let span = &mut self.entries[i].spans[EXCHANGE];
            if let Some((link, buf)) = self.ring.exact_mut(span, want, room) {
                let (mut buf, rest) = buf.split_at_mut(head);
                for f in line {
                    let (len, after) = buf.split_at_mut(4);
                    len.copy_from_slice(&head::prefix(f));
                    let (field, after) = after.split_at_mut(f.len());
                    if !head::copy_short(field, f) {
                        field.copy_from_slice(f);
                    }
                    buf = after;
                }
                rest.copy_from_slice(body);
                self.bytes += link + want;
                return (i, body.len());
            }
        }
        self.put_head(i, line, super::NO_FIELDS, body)
    }

    /// [`Self::put_head`] for a head larger than the room: the `rest` of the fields
    /// after those written goes on from where it stopped, in the same walk of the head:
    /// the field that did not fit ([`Self::put_field`], evicting for it, on in the
    /// ring's next slab), the fields after it that fit the room in one go, and so on.
    /// Out of line: most heads fit.
    #[cold]
    pub(super) fn put_head_across<'a>(&mut self, mut i: usize, rest: impl Iterator<Item = &'a [u8]>) -> usize {
        let mut rest = rest.peekable();
        while let Some(field) = rest.next() {
            i = self.put_field(i, Part::Exchange, field);
            if rest.peek().is_none() {
                break;
            }
            let room = self.room().min(HEAD_MAX);
            let span = &mut self.entries[i].spans[EXCHANGE];
            let (link, buf) = self.ring.room_mut(span, room);
            let len = head::put_while(buf, &mut rest);
            self.ring.commit(span, len);
            self.bytes += link + len;
        }
        i
    }

    /// One head field after its length, piece by piece.
    pub(super) fn put_field(&mut self, i: usize, part: Part, field: &[u8]) -> usize {
        let i = self.put(i, part, &head::prefix(field));
        self.put(i, part, field)
    }

    /// Appends `data` to entry `i`'s `part` at the ring's head, evicting the oldest
    /// entries while the store is full; what does not fit once the entry is the oldest
    /// is dropped. One copy (two where the ring's buffer ends). Returns the entry's
    /// index (evictions move it).
    pub(super) fn put(&mut self, mut i: usize, part: Part, data: &[u8]) -> usize {
        let link = self.ring.link_len(&self.entries[i].spans[part as usize]);
        i = self.room_for(i, link + data.len());
        let room = self.room();
        if room <= link {
            return i;
        }
        let n = data.len().min(room - link);
        let span = &mut self.entries[i].spans[part as usize];
        self.bytes += self.ring.append(span, &data[..n], room) + n;
        i
    }

    /// The bytes the store may still take: within its bound, and within the ring's
    /// room once the ring goes round ([`super::super::ring::Ring::free`]).
    #[inline]
    fn room(&self) -> usize {
        self.config.max_bytes.saturating_sub(self.bytes).min(self.ring.free())
    }

    /// Room for `need` more bytes of entry `i` ([`Self::room`]), evicting older entries
    /// while the store is full (not the entry itself); the entry's index after.
    /// Inlined, the evicting loop kept out of line.
    #[inline]
    pub(super) fn room_for(&mut self, i: usize, need: usize) -> usize {
        if need <= self.room() {
            return i;
        }
        self.room_evicting(i, need)
    }

    /// [`Self::room_for`] in a full store.
    pub(super) fn room_evicting(&mut self, mut i: usize, need: usize) -> usize {
        while need > self.room() && i > 0 && self.evict_oldest() {
            i -= 1;
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::super::{EntryId, InspectConfig, Store};
    use crate::inspect::{BodyOf, Exchange};
    use crate::time::Instant;

    /// A head of known size written through [`Store::put_line`] (the room checked once,
    /// the fields written with no check each, when the ring's buffer has the room as it
    /// is) leaves the store as [`Store::put_head`] does: the same bytes counted, entries
    /// held and evicted, ring head, room and allocation, and the same heads and bodies
    /// read back. Exchanges begun in runs of 1 to 5 before they are answered (so a
    /// response's head is linked after other requests', as at 32 connections), lines
    /// of 1 to 3 fields of 0 to 700 bytes, bodies of 0 to 20 KiB (past `HEAD_MAX`), in
    /// stores from roomy to too small for a head, the ring growing, going round its
    /// end and evicting for each.
    #[test]
    fn a_line_written_in_one_go_is_the_line_written_field_by_field() {
        let h = [(http::header::HOST, http::HeaderValue::from_static("a.test"))];
        let sizes = [0, 1, 3, 30, 33, 200, 700];
        let bodies = [0, 1, 100, 1024, 3000, 17_000, 20_000];
        for max_bytes in [1 << 20, 64 * 1024, 9000, 2000, 700] {
            let config = InspectConfig { max_bytes, body_limit: 32 * 1024, ..InspectConfig::default() };
            let (mut fast, mut slow) = (Store::new(config.clone(), 1), Store::new(config, 1));
            let mut k = 0;
            while k < 300 {
                let run = 1 + k % 5;
                let mut ids = Vec::new();
                for j in 0..run {
                    let uri = format!("/{}", "u".repeat(sizes[(k + j) % sizes.len()]));
                    let ex = Exchange {
                        method: "GET",
                        uri: uri.as_bytes(),
                        headers: &h[..],
                        websocket: false,
                        replay_of: None,
                    };
                    let (a, b) = (fast.begin(Instant::ZERO, 0, ex), slow.begin(Instant::ZERO, 0, ex));
                    assert_eq!(a, b);
                    ids.push(a);
                }
                for (j, id) in ids.into_iter().enumerate() {
                    let n = 1 + (k + j) % 3;
                    let fields: Vec<Vec<u8>> =
                        (0..n).map(|f| vec![b'a' + f as u8; sizes[(k * 3 + j + f) % sizes.len()]]).collect();
                    let line: Vec<&[u8]> = fields.iter().map(|f| &f[..]).collect();
                    let body: Vec<u8> = (0..bodies[(k + 2 * j) % bodies.len()]).map(|b| (b * 13 + k) as u8).collect();
                    let what = format!("{max_bytes} bytes, exchange {k}.{j}");
                    let (Some(a), Some(b)) = (fast.index(id), slow.index(id)) else {
                        assert_eq!((fast.index(id), fast.len()), (slow.index(id), slow.len()), "{what}");
                        continue;
                    };
                    let x = fast.put_line(a, &line, &body);
                    let y = slow.put_head(b, &line, super::super::NO_FIELDS, &body);
                    assert_eq!(x, y, "{what}");
                    assert_eq!((fast.bytes(), fast.len()), (slow.bytes(), slow.len()), "{what}");
                    assert_eq!(
                        (fast.ring.head(), fast.ring.held(), fast.ring.free(), fast.ring.allocated()),
                        (slow.ring.head(), slow.ring.held(), slow.ring.free(), slow.ring.allocated()),
                        "{what}"
                    );
                    assert!(fast.bytes() <= max_bytes, "{what}");
                }
                for (ea, eb) in fast.newest_first().zip(slow.newest_first()) {
                    assert_eq!((ea.id, ea.spans, ea.held), (eb.id, eb.spans, eb.held), "{max_bytes}, {k}");
                    let span = &ea.spans[super::super::EXCHANGE];
                    assert_eq!(
                        fast.ring.read(span),
                        slow.ring.read(&eb.spans[super::super::EXCHANGE]),
                        "{max_bytes}, {k}"
                    );
                    assert_eq!(fast.request(ea), slow.request(eb), "{max_bytes}, {k}");
                }
                k += run;
            }
        }
    }

    /// A body filed in one call (a response whole, [`Store::respond_whole`]: after a
    /// head kept as its block, in the head's room) is kept as the same body filed frame
    /// by frame ([`Store::body_data`], pieces of 1 to 509 bytes): the same exchanges
    /// filed both ways into two stores, with bodies empty, of 1 byte, of a few hundred
    /// bytes, of several KiB, past the body limit, after heads of varied sizes (as
    /// lists and as blocks), request bodies too, in stores from roomy to too small for a
    /// body (cut bodies, evictions for each exchange). The same entries read back the
    /// same, the same bytes counted, within the bound; a body kept is the body's first
    /// bytes, all of them up to the limit in a roomy store.
    #[test]
    fn a_body_filed_at_once_is_kept_as_filed_chunk_by_chunk() {
        let h = [(http::header::HOST, http::HeaderValue::from_static("a.test"))];
        let block = crate::frame::HeaderBlock::from_headers(&h, crate::frame::FieldCoding::Text);
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
                let ex = Exchange {
                    method: "POST",
                    uri: uri.as_bytes(),
                    headers: &h[..],
                    websocket: false,
                    replay_of: None,
                };
                let (a, b) = (whole.begin(Instant::ZERO, 0, ex), pieces.begin(Instant::ZERO, 0, ex));
                whole.body_data(a, BodyOf::Request, request_body);
                whole.body_end(a, BodyOf::Request, request_body.len() as u64, Instant::ZERO);
                in_pieces(&mut pieces, b, BodyOf::Request, request_body, k);
                if (k + k / 12) % 2 == 0 {
                    whole.respond_whole(a, Instant::ZERO, 200, &h[..], &body);
                    pieces.respond(b, 200, &h[..]);
                } else {
                    whole.respond_whole(a, Instant::ZERO, 200, &block, &body);
                    pieces.respond(b, 200, &block);
                }
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
