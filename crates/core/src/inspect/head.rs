//! An exchange's heads as the store keeps them: each field's bytes after its length
//! (4 bytes, little-endian), the method and target first for a request, then each
//! header's name and value. Copied once as they pass, with no check (they were checked
//! when parsed); parsed back only when the inspector's API, page or replay reads them.
//!
//! A head whose fields are a header block as the wire carries it (the client's raw
//! OPEN, the RESPONSE frame it sent: [`HeadFields::block`]) is kept as that block, one
//! copy of its bytes (after the `Host` value the client chose, if any), not field by
//! field; the entry keeps how to read it (its edits' kind, [`Block::kept`]). The fields
//! are walked, and the origin's `Host`/`TE` rules applied, when the entry is read
//! (docs/BENCHMARKS.md, nineteenth and twentieth rounds).

use crate::frame::{Fields, Header, HeaderBlock, SentBlock};

/// A head's header fields as the store copies them: a typed list, or a RESPONSE's
/// encoded block (the client files the block it sends, with no list built for it).
pub trait HeadFields {
    /// How many fields.
    fn field_count(&self) -> usize;
    /// Each field's name and value bytes, in order.
    fn each(&self) -> impl Iterator<Item = (&[u8], &[u8])>;

    /// The same fields as a header block the wire carries and the edits that make
    /// [`Self::each`] of it, when they are that ([`Block`]): the store then keeps the
    /// block's bytes in one copy and reads the fields from them when asked. `None` (a
    /// typed list): field by field.
    fn block(&self) -> Option<Block<'_>> {
        None
    }
}

/// A head's fields as a header block (`count:u16`, then each field in either field
/// coding, as [`Fields`] reads them) and what is done to them on the way to the
/// origin: nothing (a RESPONSE's block), or the client's rules for a raw request
/// ([`Edits::Origin`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block<'a> {
    /// The block's bytes.
    pub bytes: &'a [u8],
    /// The edits [`HeadFields::each`] makes of the block's fields.
    pub edits: Edits<'a>,
}

/// The edits of a [`Block`]'s fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edits<'a> {
    /// The block's fields as they are.
    None,
    /// A raw request as the origin gets it: every `te` field dropped and, if one of them
    /// was `te: trailers` ([`is_te_trailers`](crate::is_te_trailers)), `te: trailers`
    /// added last; with `host`, `host: <host>` first (`first`: the block has no `Host`
    /// field) or each `Host` value replaced by it.
    Origin {
        /// The `Host` value the origin gets, if the client chose one.
        host: Option<&'a [u8]>,
        /// `host` goes first, as a field of its own.
        first: bool,
    },
}

/// A kept block's edits' kind (two bits, kept by its entry: the store's `blocks`); for
/// [`ORIGIN_FIRST`] and [`ORIGIN_HOST`] the `Host` value is the field before the block.
/// (It was a one-byte field before the block: two fields fewer to write per exchange,
/// docs/BENCHMARKS.md, twentieth round.)
const AS_IS: u8 = 0;
const ORIGIN: u8 = 1;
const ORIGIN_FIRST: u8 = 2;
const ORIGIN_HOST: u8 = 3;

impl<'a> Block<'a> {
    /// How the store keeps it: its edits' kind (two bits its entry keeps), and the
    /// fields it writes, each after its length: the `Host` value if any, the block; and
    /// how many of the two.
    pub(crate) fn kept(&self) -> (u8, [&'a [u8]; 2], usize) {
        match self.edits {
            Edits::None => (AS_IS, [self.bytes, &[]], 1),
            Edits::Origin { host: None, .. } => (ORIGIN, [self.bytes, &[]], 1),
            Edits::Origin { host: Some(host), first: true } => (ORIGIN_FIRST, [host, self.bytes], 2),
            Edits::Origin { host: Some(host), first: false } => (ORIGIN_HOST, [host, self.bytes], 2),
        }
    }

    /// Each field's name and value, edited: [`HeadFields::each`] of the source it came
    /// from.
    pub fn each(self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        self.edited(true)
    }

    /// [`Self::each`] of a block kept `whole` or cut short by the store: a cut one
    /// gives the fields whole in it, and nothing after them (no `te: trailers`).
    fn edited(self, whole: bool) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        let (origin, host, first) = match self.edits {
            Edits::None => (false, None, false),
            Edits::Origin { host, first } => (true, host, first),
        };
        // The chosen `Host` goes first, or in place of each `Host` value.
        let (added, replace) = if first { (host.map(|h| (&b"host"[..], h)), None) } else { (None, host) };
        let edited = Fields::of_block(self.bytes).filter_map(move |(name, value)| match name {
            b"te" if origin => None,
            b"host" => Some((name, replace.unwrap_or(value))),
            _ => Some((name, value)),
        });
        // A second walk, for the field that goes last: only an inspected entry asks.
        let trailers = || Fields::of_block(self.bytes).any(|(n, v)| n == b"te" && crate::is_te_trailers(v));
        let last = (origin && whole && trailers()).then_some((&b"te"[..], &b"trailers"[..]));
        added.into_iter().chain(edited).chain(last)
    }
}

/// The headers of a head kept by the store from `rest`, the bytes after its line:
/// name and value fields ([`fields`]), or with `block` (its edits' kind) a kept
/// [`Block`] (the fields [`Block::kept`] wrote). A block cut short (the store ran out
/// of room) gives the fields whole in what was kept.
pub(crate) fn kept_headers(mut rest: &[u8], block: Option<u8>) -> Vec<Header> {
    // Without `raw-heads` the store keeps no block (store.rs), and this leaves the build.
    let Some(kind) = block.filter(|_| cfg!(feature = "raw-heads")) else {
        return headers(fields(rest));
    };
    // The `Host` value is whole (a cut one ends the head); the block, the last field,
    // may be cut: what was kept of it.
    let edits = match kind {
        ORIGIN => Edits::Origin { host: None, first: false },
        ORIGIN_FIRST | ORIGIN_HOST => match take(&mut rest) {
            Some(host) => Edits::Origin { host: Some(host), first: kind == ORIGIN_FIRST },
            None => return Vec::new(),
        },
        _ => Edits::None,
    };
    let Some((len, kept)) = rest.split_first_chunk::<4>() else { return Vec::new() };
    let len = usize::try_from(u32::from_le_bytes(*len)).unwrap_or(usize::MAX);
    let bytes = kept.get(..len).unwrap_or(kept);
    typed(Block { bytes, edits }.edited(bytes.len() == len))
}

impl HeadFields for [Header] {
    fn field_count(&self) -> usize {
        self.len()
    }

    fn each(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.iter().map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
    }
}

impl<const N: usize> HeadFields for [Header; N] {
    fn field_count(&self) -> usize {
        N
    }

    fn each(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.as_slice().each()
    }
}

impl HeadFields for Vec<Header> {
    fn field_count(&self) -> usize {
        self.len()
    }

    fn each(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.as_slice().each()
    }
}

impl HeadFields for HeaderBlock {
    fn field_count(&self) -> usize {
        self.len()
    }

    fn each(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields()
    }

    fn block(&self) -> Option<Block<'_>> {
        self.wire().map(|bytes| Block { bytes, edits: Edits::None })
    }
}

impl HeadFields for SentBlock {
    fn field_count(&self) -> usize {
        self.len()
    }

    fn each(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields()
    }

    fn block(&self) -> Option<Block<'_>> {
        Some(Block { bytes: self.wire(), edits: Edits::None })
    }
}

/// The length prefix of a field.
pub(crate) fn prefix(field: &[u8]) -> [u8; 4] {
    u32::try_from(field.len()).unwrap_or(u32::MAX).to_le_bytes()
}

/// Writes a head's fields into `buf` (a chunk's room, so every length that fits fits a
/// `u32`), each after its length: `line` (method and target, for a request), then each
/// header's name and value from `pairs` (a head's [`HeadFields::each`]). The bytes
/// written, or where it stopped if they do not all fit ([`Stop`]: `pairs` is left after
/// the header it stopped at, so the rest goes on from there with no second walk to
/// find it). Each field is bounds-checked as it is written, so the head needs no pass
/// to size it first.
#[inline(always)]
pub(crate) fn put_all<'a>(
    buf: &mut [u8],
    line: &[&[u8]],
    pairs: &mut impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<usize, Stop<'a>> {
    let mut at = 0;
    for (k, f) in line.iter().enumerate() {
        match put_small(buf, at, f) {
            Some(end) => at = end,
            None => return Err(Stop { len: at, line_written: k, pair: None }),
        }
    }
    for (n, v) in pairs {
        // One bounds check for the pair (written both or neither).
        let written = buf.get_mut(at..at + 8 + n.len() + v.len()).and_then(|pair| {
            let (first, second) = pair.split_at_mut(4 + n.len());
            put_small(first, 0, n)?;
            put_small(second, 0, v)
        });
        if written.is_none() {
            return Err(Stop { len: at, line_written: line.len(), pair: Some((n, v)) });
        }
        at += 8 + n.len() + v.len();
    }
    Ok(at)
}

/// Where [`put_all`] stopped in a head larger than its room: the bytes it wrote (whole
/// fields), how many of the line's fields they hold, and, once the line was written,
/// the header it stopped at (taken from the walk, not written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stop<'a> {
    pub(crate) len: usize,
    line_written: usize,
    pair: Option<(&'a [u8], &'a [u8])>,
}

impl<'a> Stop<'a> {
    /// The fields [`put_all`] did not write, in its order: the rest of `line`, then the
    /// header it stopped at and those after it in `pairs` (the walk it left), each as
    /// its name and its value.
    pub(crate) fn rest(
        self,
        line: &'a [&'a [u8]],
        pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    ) -> impl Iterator<Item = &'a [u8]> {
        let line = line.get(self.line_written..).unwrap_or_default();
        line.iter().copied().chain(self.pair.into_iter().chain(pairs).flat_map(|(n, v)| [n, v]))
    }
}

/// [`put_all`] for the rest of a head that does not fit: the `fields` still to go
/// ([`Stop::rest`]), written into `buf` while they fit (each one taken from `fields`
/// once written). The bytes written. One walk of the head for all its pieces, with
/// `put_all`'s (a field source other than a list finds its `k`-th field by walking to
/// it: asked field by field, a browser's head from the OPEN's raw block cost ~2k
/// instructions more).
pub(crate) fn put_while<'a>(buf: &mut [u8], fields: &mut std::iter::Peekable<impl Iterator<Item = &'a [u8]>>) -> usize {
    let mut at = 0;
    while let Some(field) = fields.peek() {
        match put_small(buf, at, field) {
            Some(end) => at = end,
            None => break,
        }
        fields.next();
    }
    at
}

/// Writes `field` after its length at `at` in `buf`; where the next field goes, or
/// `None` if it does not fit. One bounds check per field, and fields of up to 32 bytes
/// copied without a `memcpy` call (most names and values are that short: the call cost
/// more than the copy).
#[inline(always)]
pub(crate) fn put_small(buf: &mut [u8], at: usize, field: &[u8]) -> Option<usize> {
    let end = at + 4 + field.len();
    let dst = buf.get_mut(at..end)?;
    let (len, bytes) = dst.split_at_mut(4);
    len.copy_from_slice(&(field.len() as u32).to_le_bytes());
    if !copy_short(bytes, field) {
        bytes.copy_from_slice(field);
    }
    Some(end)
}

/// Copies `src` (at most 32 bytes) into `dst` (as long) with fixed-size moves, two
/// overlapping ones as `memcpy` does inside; `false` for anything longer.
pub(crate) fn copy_short(dst: &mut [u8], src: &[u8]) -> bool {
    fn two<const N: usize>(dst: &mut [u8], src: &[u8]) {
        let n = src.len();
        if let (Ok(head), Ok(tail)) = (<[u8; N]>::try_from(&src[..N]), <[u8; N]>::try_from(&src[n - N..])) {
            dst[..N].copy_from_slice(&head);
            dst[n - N..n].copy_from_slice(&tail);
        }
    }
    match src.len() {
        _ if dst.len() != src.len() => return false,
        0 => {}
        n @ 1..=3 => {
            dst[0] = src[0];
            dst[n / 2] = src[n / 2];
            dst[n - 1] = src[n - 1];
        }
        4..=7 => two::<4>(dst, src),
        8..=16 => two::<8>(dst, src),
        17..=32 => two::<16>(dst, src),
        _ => return false,
    }
    true
}

/// The fields of an encoded head, in order; a field cut short (the store ran out of
/// room) ends them.
pub(crate) fn fields(mut bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || take(&mut bytes))
}

/// The first field of an encoded head, `bytes` left after it; `None` (and `bytes`
/// left empty) when there is none whole.
pub(crate) fn take<'a>(bytes: &mut &'a [u8]) -> Option<&'a [u8]> {
    let whole = bytes.split_first_chunk::<4>().and_then(|(len, rest)| {
        let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
        Some((rest.get(..len)?, rest.get(len..)?))
    });
    let (field, rest) = whole.unzip();
    *bytes = rest.unwrap_or_default();
    field
}

/// Headers from the name and value fields that follow (a name without its value is dropped).
pub(crate) fn headers<'a>(mut fields: impl Iterator<Item = &'a [u8]>) -> Vec<Header> {
    typed(std::iter::from_fn(move || Some((fields.next()?, fields.next()?))))
}

/// Typed headers of these names and values (they were a valid name and value when kept).
fn typed<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Vec<Header> {
    pairs
        .filter_map(|(name, value)| {
            Some((http::HeaderName::from_bytes(name).ok()?, http::HeaderValue::from_bytes(value).ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_fields_are_written_whole_whatever_their_length() {
        let data: Vec<u8> = (1..=60).collect();
        for len in 0..=60 {
            let field = &data[..len];
            let mut buf = vec![0u8; 4 + len + 3];
            assert_eq!(put_small(&mut buf, 3, field), Some(7 + len));
            assert_eq!(fields(&buf[3..]).next(), Some(field), "{len} bytes");
        }
        // No room: nothing written.
        let mut buf = [0u8; 6];
        assert_eq!(put_small(&mut buf, 0, b"abc"), None);
        assert_eq!(buf, [0; 6]);
    }

    /// `put_all` over `headers` into `buf`: what it wrote, or where it stopped and the
    /// fields it left, in order.
    fn put<'a, H: HeadFields + ?Sized>(
        buf: &mut [u8],
        line: &'a [&'a [u8]],
        headers: &'a H,
    ) -> Result<usize, (usize, Vec<&'a [u8]>)> {
        let mut pairs = headers.each();
        put_all(buf, line, &mut pairs).map_err(|stop| (stop.len, stop.rest(line, pairs).collect()))
    }

    #[test]
    fn a_head_is_written_whole_or_up_to_the_first_field_that_does_not_fit() {
        let h = [
            (http::header::HOST, http::HeaderValue::from_static("a.test")),
            (http::HeaderName::from_static("x-custom"), http::HeaderValue::from_static("")),
        ];
        let line = [&b"GET"[..], b"/"];
        let mut buf = [0u8; 64];
        let n = put(&mut buf, &line, &h).unwrap();
        let all: Vec<&[u8]> = fields(&buf[..n]).collect();
        assert_eq!(all, [&b"GET"[..], b"/", b"host", b"a.test", b"x-custom", b""]);
        // One byte short of the last field's length: the last header does not fit, and
        // the fields left start at it.
        let mut short = [0u8; 64];
        assert_eq!(put(&mut short[..n - 1], &line, &h), Err((n - 16, vec![&b"x-custom"[..], b""])));
        assert_eq!(short[..n - 16], buf[..n - 16], "what fitted is written as before");
        // No room for the line's first field; for its second.
        let mut scratch = [0u8; 64];
        assert_eq!(put(&mut scratch[..6], &line, &h), Err((0, all.clone())));
        assert_eq!(put(&mut scratch[..8], &line, &h), Err((7, all[1..].to_vec())));
        // No room for a header after the line.
        assert_eq!(put(&mut scratch[..12], &line, &h), Err((12, all[2..].to_vec())));
    }

    #[test]
    fn a_block_is_filed_as_its_list_is() {
        let h = [
            (http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain")),
            (http::HeaderName::from_static("x-custom"), http::HeaderValue::from_static("")),
            (http::header::CONTENT_LENGTH, http::HeaderValue::from_static("1024")),
        ];
        for coding in [crate::FieldCoding::Indexed, crate::FieldCoding::Text] {
            let block = HeaderBlock::from_headers(&h, coding);
            let (mut listed, mut blocked) = ([0u8; 96], [0u8; 96]);
            let n = put(&mut listed, &[], &h).unwrap();
            assert_eq!(put(&mut blocked, &[], &block), Ok(n));
            assert_eq!(listed, blocked);
            for room in [0, 10, 30, n - 1] {
                let (mut a, mut b) = ([0u8; 96], [0u8; 96]);
                let (stopped, left) = put(&mut a[..room], &[], &block).unwrap_err();
                assert_eq!(put(&mut b[..room], &[], &h), Err((stopped, left.clone())), "room {room}");
                assert_eq!(a, b);
                // The rest, written on from where it stopped.
                let (mut x, mut y) = (left.iter().copied().peekable(), left.iter().copied().peekable());
                let (mut c, mut d) = ([0u8; 96], [0u8; 96]);
                assert_eq!(put_while(&mut c[..room], &mut x), put_while(&mut d[..room], &mut y));
                assert_eq!(c, d);
                assert_eq!(x.count(), y.count());
            }
        }
    }

    #[test]
    fn a_head_too_large_for_the_room_is_written_while_its_fields_fit() {
        let h = [
            (http::header::HOST, http::HeaderValue::from_static("a.test")),
            (http::HeaderName::from_static("x-custom"), http::HeaderValue::from_static("v")),
        ];
        let line = [&b"GET"[..], b"/"];
        // Room for "GET" only: the rest is "/", then every header's name and value.
        let mut first = [0u8; 8];
        let mut pairs = h.each();
        let stop = put_all(&mut first, &line, &mut pairs).unwrap_err();
        assert_eq!(stop.len, 7);
        let every: Vec<&[u8]> = stop.rest(&line, pairs).collect();
        assert_eq!(every, [&b"/"[..], b"host", b"a.test", b"x-custom", b"v"]);
        // Room for "/" and "host" (5 + 8 bytes) but not for "a.test" after them.
        let mut buf = [0u8; 20];
        let mut rest = every.iter().copied().peekable();
        assert_eq!(put_while(&mut buf, &mut rest), 13);
        assert_eq!(rest.next(), Some(&b"a.test"[..]), "the first field not written is left");
        assert_eq!(fields(&buf[..13]).collect::<Vec<_>>(), [&b"/"[..], b"host"]);
        let mut big = [0u8; 64];
        let mut rest = every[3..].iter().copied().peekable();
        assert_eq!(put_while(&mut big, &mut rest), 17);
        assert!(rest.next().is_none());
    }

    #[test]
    fn fields_round_trip_and_a_cut_field_ends_them() {
        let mut bytes = Vec::new();
        for f in [&b"GET"[..], b"/a b", b"accept", b"*/*", b"x-long", b"value"] {
            bytes.extend_from_slice(&prefix(f));
            bytes.extend_from_slice(f);
        }
        let mut all = fields(&bytes);
        assert_eq!((all.next(), all.next()), (Some(&b"GET"[..]), Some(&b"/a b"[..])));
        let h = headers(all);
        assert_eq!(h.len(), 2);
        assert_eq!((h[1].0.as_str(), h[1].1.as_bytes()), ("x-long", &b"value"[..]));
        let cut = &bytes[..bytes.len() - 2];
        assert_eq!(headers(fields(cut).skip(2)).len(), 1);
    }
}
