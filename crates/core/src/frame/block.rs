//! A RESPONSE's header block built straight from a parser's bytes: [`HeaderBlock`].
//!
//! A shell that parses an HTTP/1 response head (the native client's origin leg) would
//! otherwise build a `HeaderName` and a `HeaderValue` per field (a parse, a lookup, a
//! check of every byte: ~0.33k instructions per response with the field cache), a
//! `Vec` of them, then walk that list twice more in the session to size, check and plan
//! it, and once more to encode it: ~0.7k per response on the client's critical path
//! (docs/BENCHMARKS.md, fifteenth and sixteenth rounds). A `HeaderBlock` is the block as
//! the wire carries it (`count:u16` then each field, table-coded as `put_headers` codes
//! it: the same bytes for the same fields), written field by field as the parser walks
//! the head, and sent by [`Session::respond_block`](crate::Session::respond_block) as
//! it is. Whoever needs the fields as values reads them back with
//! [`HeaderBlock::fields`] (bytes) or [`HeaderBlock::headers`] (typed).

use bytes::{BufMut, Bytes, BytesMut};

use super::codec::bytes16_len;
use super::headers::FieldCoding;
use super::table;
use super::types::{Header, HeaderName, HeaderValue};
use crate::ids::{flags, kind, StreamId};

/// Room kept in front of the block for the RESPONSE frame's own fields (`type:u8
/// stream:u32 flags:u8 status:u16`), so that the frame is the block's buffer, not a
/// copy of it.
const FRAME_PREFIX: usize = 8;

/// The longest name in the static table (`access-control-allow-credentials`).
const TABLE_NAME: usize = 32;

/// Room a block starts with: a usual response head's fields fit (an indexed block of
/// a framework's four or five fields is ~60-100 bytes; a larger head grows it).
const INITIAL: usize = 128;

/// Why a field cannot go into a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// A name that is empty or not a token (RFC 9110 §5.6.2).
    #[error("invalid header name")]
    Name,
    /// A value with a control byte other than tab.
    #[error("invalid header value")]
    Value,
}

/// A header block encoded for the wire, and what the session checks of it: its size as
/// text (what `max_header_bytes` counts) and whether the peer's decoder would refuse
/// it. Names are lowercased as they are written, as a `HeaderName` holds them.
///
/// Kept at 48 bytes, not 72 (a count of 32 bits, the overlong part as a byte): it rides
/// in the client's per-request future and moves through its values on the way from the
/// parser to the session (docs/BENCHMARKS.md, sixteenth round, the client's allocations
/// at 32 connections).
#[derive(Debug, Clone)]
pub struct HeaderBlock {
    /// [`FRAME_PREFIX`] bytes, the field count, the fields.
    buf: BytesMut,
    /// The block's size written as text (2 for the count, then each name and value
    /// after its length), as [`super::header_block_len`] counts it.
    text_len: usize,
    /// How many fields it has (saturating: past 65,535 the block is refused anyway).
    count: u32,
    coding: FieldCoding,
    /// A name or value too long for the wire's 16-bit lengths, if any (the first).
    too_long: Option<TooLong>,
}

/// Which part of a field was too long for the wire's 16-bit lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TooLong {
    Name,
    Value,
}

impl HeaderBlock {
    /// An empty block whose fields will be written as `coding` says (the coding the
    /// session that sends it uses: [`Session::field_coding`](crate::Session::field_coding);
    /// a block in another coding is sent too, re-encoded).
    pub fn new(coding: FieldCoding) -> Self {
        let mut buf = BytesMut::with_capacity(INITIAL);
        buf.put_bytes(0, FRAME_PREFIX + 2);
        HeaderBlock { buf, count: 0, text_len: 2, coding, too_long: None }
    }

    /// The block of `headers`, in order (the bytes `put_headers` writes for them).
    pub fn from_headers(headers: &[Header], coding: FieldCoding) -> Self {
        let mut block = HeaderBlock::new(coding);
        for (name, value) in headers {
            // Valid by their types: the name a lowercase token, the value without
            // control bytes but tab.
            block.put_lower(name.as_str().as_bytes(), value.as_bytes(), false);
        }
        block
    }

    /// Appends a field: `name` as it came (any case; written lowercase), `value` as it
    /// came. A name that is not a token or a value with a control byte (what
    /// `HeaderName`/`HeaderValue` refuse) is refused and the block left as it was.
    pub fn push(&mut self, name: &[u8], value: &[u8]) -> Result<(), BlockError> {
        // Folds, not early exits: the compiler checks 16 bytes at a time.
        if name.is_empty() || !name.iter().fold(true, |ok, &b| ok & (TOKEN[usize::from(b)] != 0)) {
            return Err(BlockError::Name);
        }
        if !value.iter().fold(true, |ok, &b| ok & ((b >= 0x20 && b != 0x7f) | (b == b'\t'))) {
            return Err(BlockError::Value);
        }
        self.put(name, value);
        Ok(())
    }

    /// [`Self::push`] for a field a parser already held to HTTP's grammar, as
    /// `httparse` holds every field it returns (a name of token characters; a value of
    /// visible bytes, spaces, tabs and obs-text: never CR, LF or NUL, which the peer's
    /// decoder refuses): the block skips checking every byte again (~0.4k instructions
    /// per response). Debug builds check it anyway. The origin leg's differential test
    /// and the `h1_codec` fuzz target hold what it writes to what the checked way writes.
    pub fn push_parsed(&mut self, name: &[u8], value: &[u8]) {
        debug_assert!(HeaderBlock::new(self.coding).push(name, value).is_ok(), "{name:?}: {value:?}");
        self.put(name, value);
    }

    /// [`Self::push_parsed`] for a name the parser also lowercased as it read it (the
    /// origin leg's head walk writes each name's bytes lowercase into a stack copy as
    /// it checks them): the block neither copies nor lowercases it again (~50
    /// instructions a field: docs/BENCHMARKS.md, twenty-second round). `lower` must be
    /// a token with no uppercase letter; debug builds check it. Inlined into the walk's
    /// callback (its one caller on the critical path): the call, its saved registers
    /// and its arguments' moves were ~25 instructions a field.
    #[inline]
    pub fn push_parsed_lower(&mut self, lower: &[u8], value: &[u8]) {
        debug_assert!(!lower.iter().any(u8::is_ascii_uppercase), "{lower:?}");
        debug_assert!(HeaderBlock::new(self.coding).push(lower, value).is_ok(), "{lower:?}: {value:?}");
        self.put_lower(lower, value, false);
    }

    /// Appends a field already checked (a token name, a value without control bytes).
    /// The name's table code is looked up from a lowercase copy on the stack (every
    /// table name is at most [`TABLE_NAME`] bytes), and the field written with one
    /// reservation: writing the name as text first and taking it back for an index
    /// cost ~80 instructions a field.
    fn put(&mut self, name: &[u8], value: &[u8]) {
        let mut lower = [0u8; TABLE_NAME];
        match (self.coding, lower.get_mut(..name.len())) {
            (FieldCoding::Indexed, Some(lower)) => {
                lower.copy_from_slice(name);
                lower.make_ascii_lowercase();
                self.put_lower(lower, value, false);
            }
            // Longer than any table name, or no table: text, lowercased as written.
            _ => self.put_lower(name, value, true),
        }
    }

    /// [`Self::put`] of a name already lowercase; or, with `lowercase_text`, of a name
    /// not looked up in the table (the coding has none, or the name is longer than any
    /// table name), written as text and lowercased there. Inlined into its callers, so
    /// that the flag is a constant in each.
    #[inline(always)]
    fn put_lower(&mut self, name: &[u8], value: &[u8], lowercase_text: bool) {
        self.count = self.count.saturating_add(1);
        let count = u16::try_from(self.count).unwrap_or(u16::MAX).to_be_bytes();
        self.buf[FRAME_PREFIX..FRAME_PREFIX + 2].copy_from_slice(&count);
        self.text_len += bytes16_len(name.len()) + bytes16_len(value.len());
        let max = usize::from(u16::MAX);
        if name.len() > max || value.len() > max {
            self.too_long = self.too_long.or(Some(if name.len() > max { TooLong::Name } else { TooLong::Value }));
        }
        // Cut as `put_bytes16` cuts (a block that long is refused before it is sent).
        let (name, value) = (&name[..name.len().min(max)], &value[..value.len().min(max)]);
        let code = match self.coding {
            FieldCoding::Indexed if !lowercase_text => table::code(name, value),
            _ => table::TEXT,
        };
        let [v0, v1] = u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes();
        self.buf.reserve(name.len() + value.len() + 5);
        if code == table::TEXT {
            let [n0, n1] = u16::try_from(name.len()).unwrap_or(u16::MAX).to_be_bytes();
            self.buf.put_slice(&[n0, n1]);
            let start = self.buf.len();
            self.buf.put_slice(name);
            if lowercase_text {
                self.buf[start..].make_ascii_lowercase();
            }
            self.buf.put_slice(&[v0, v1]);
            self.buf.put_slice(value);
        } else if code & table::PAIR_BIT != 0 {
            self.buf.put_slice(&[0, 0, code]);
        } else {
            self.buf.put_slice(&[0, 0, code, v0, v1]);
            self.buf.put_slice(value);
        }
    }

    /// The same block (what [`Clone`] makes), its bytes copied into `room`, a buffer
    /// the caller keeps for such copies, and split off it: the copy shares `room`'s
    /// memory instead of taking an allocation of its own, and `room` takes that memory
    /// back at a later copy once the copy is dropped (the client's origin connection
    /// copies its remembered response head's block for each repeat, and the RESPONSE
    /// frame it becomes is sent and dropped before the connection's next response: an
    /// allocation and a free a response fewer; docs/BENCHMARKS.md, twenty-fifth round,
    /// alloc32).
    pub fn copy_into(&self, room: &mut BytesMut) -> Self {
        room.clear();
        room.extend_from_slice(&self.buf);
        let HeaderBlock { text_len, count, coding, too_long, .. } = *self;
        HeaderBlock { buf: room.split(), text_len, count, coding, too_long }
    }

    /// How many fields it has.
    pub fn len(&self) -> usize {
        usize::try_from(self.count).unwrap_or(usize::MAX)
    }

    /// Whether it has no field.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The coding its fields are written in.
    pub fn coding(&self) -> FieldCoding {
        self.coding
    }

    /// Its size written as text, as the peer's `max_header_bytes` counts it.
    pub fn text_len(&self) -> usize {
        self.text_len
    }

    /// The block's bytes as the wire carries them: the count, then the fields (the
    /// count cut at 65,535 as `put_headers` cuts it).
    pub fn encoded(&self) -> &[u8] {
        &self.buf[FRAME_PREFIX..]
    }

    /// [`Self::encoded`] when [`Fields::of_block`] reads it as [`Self::fields`] does:
    /// not for a block of more than 65,535 fields (its count is cut on the wire).
    pub(crate) fn wire(&self) -> Option<&[u8]> {
        (self.count <= u32::from(u16::MAX)).then(|| self.encoded())
    }

    /// What the peer's decoder would refuse in it (as `check_headers` says of a list).
    pub(crate) fn invalid(&self) -> Option<&'static str> {
        if self.count > u32::from(u16::MAX) {
            return Some("more than 65535 headers");
        }
        self.too_long.map(|part| match part {
            TooLong::Name => "header name",
            TooLong::Value => "header value",
        })
    }

    /// Each field's name (lowercase) and value, in order.
    pub fn fields(&self) -> Fields<'_> {
        Fields { rest: self.encoded().get(2..).unwrap_or_default(), left: self.len() }
    }

    /// The fields as typed headers (for a user that needs them so: the `http` types,
    /// a JavaScript `Headers`).
    pub fn headers(&self) -> Vec<Header> {
        self.fields()
            .filter_map(|(n, v)| Some((HeaderName::from_bytes(n).ok()?, HeaderValue::from_bytes(v).ok()?)))
            .collect()
    }

    /// The RESPONSE frame of stream `id` carrying this block: its own fields written
    /// into the room kept for them. Inlined into its two callers (`respond_block` and
    /// `respond_block_kept`): a call cost ~25 instructions per response.
    #[inline(always)]
    pub(crate) fn into_response(mut self, id: StreamId, status: u16, end: bool) -> Bytes {
        let [i0, i1, i2, i3] = id.to_be_bytes();
        let [s0, s1] = status.to_be_bytes();
        let f = if end { flags::END } else { 0 };
        self.buf[..FRAME_PREFIX].copy_from_slice(&[kind::RESPONSE, i0, i1, i2, i3, f, s0, s1]);
        self.buf.freeze()
    }
}

impl HeaderBlock {
    /// This block's fields kept as they are (a block the session refused or re-encoded:
    /// nothing else holds its buffer).
    pub(crate) fn into_sent(self) -> SentBlock {
        SentBlock { buf: self.buf.freeze() }
    }
}

/// A [`HeaderBlock`]'s fields kept past the write of the RESPONSE frame that carried
/// them ([`Session::respond_block_kept`](crate::Session::respond_block_kept)): the
/// frame's own bytes, shared with it (a reference count, no copy: the frame is already
/// a shared `Bytes`, as `BytesMut::freeze` makes one of a buffer with room left). The
/// client files a small response's head in the inspector after the write from it, in
/// the lock that files the body (docs/BENCHMARKS.md, seventeenth round).
#[derive(Debug, Clone, Default)]
pub struct SentBlock {
    /// [`FRAME_PREFIX`] bytes (the frame's own fields, or zeros), the field count, the
    /// fields; or nothing (the default: no field).
    buf: Bytes,
}

impl SentBlock {
    /// The fields of a RESPONSE frame made by [`HeaderBlock::into_response`].
    pub(crate) fn of_frame(frame: Bytes) -> Self {
        SentBlock { buf: frame }
    }

    /// How many fields it has (as the frame counts them: a block of more than 65,535
    /// fields is refused by the session, and then only that many are read back).
    pub fn len(&self) -> usize {
        self.buf.get(FRAME_PREFIX..FRAME_PREFIX + 2).map_or(0, |c| usize::from(u16::from_be_bytes([c[0], c[1]])))
    }

    /// Whether it has no field.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each field's name (lowercase) and value, in order, as [`HeaderBlock::fields`].
    pub fn fields(&self) -> Fields<'_> {
        Fields { rest: self.buf.get(FRAME_PREFIX + 2..).unwrap_or_default(), left: self.len() }
    }

    /// The block as the wire carries it (its count, then the fields), which
    /// [`Fields::of_block`] reads as [`Self::fields`] does; empty for no field.
    pub(crate) fn wire(&self) -> &[u8] {
        self.buf.get(FRAME_PREFIX..).unwrap_or_default()
    }
}

/// A RESPONSE's header block as a session received it, when every field in it is what
/// the typed decoder would make of it: each name a lowercase token (a table name, or
/// text the peer lowercased, as [`HeaderBlock`] writes it) and each value one a
/// `HeaderValue` takes, within `max_header_bytes` (what
/// [`Session::set_response_blocks`](crate::Session::set_response_blocks) asks for).
/// A shell that writes the fields out as bytes (the server's HTTP/1 visitor head) reads
/// them with [`ReceivedBlock::fields`]; any other user takes [`ReceivedBlock::headers`],
/// the list the typed decoder gives for the same block. No `HeaderName`/`HeaderValue`
/// is built, checked again or freed for it (the typed decode was ~0.37k instructions
/// per response on the server's critical path: docs/BENCHMARKS.md, seventeenth round).
///
/// It is the block's bytes alone, its count included (read from its first two bytes):
/// a `Bytes`, 32 bytes, so that the driver's stream events, moved several times per
/// message, are no larger for it (a separate count made them 8 bytes larger; with the
/// session's inline test for a RESPONSE, 3-9 instructions per WebSocket echo:
/// docs/BENCHMARKS.md, eighteenth round).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedBlock {
    /// The block as the frame carries it: `count:u16`, then the fields.
    block: Bytes,
}

impl ReceivedBlock {
    /// `block` (`count:u16` and the fields) holds fields already checked.
    pub(super) fn new(block: Bytes) -> Self {
        ReceivedBlock { block }
    }

    /// How many fields it has.
    pub fn len(&self) -> usize {
        match self.block.first_chunk::<2>() {
            Some(&count) => usize::from(u16::from_be_bytes(count)),
            None => 0,
        }
    }

    /// Whether it has no field.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each field's name (lowercase) and value, in order.
    pub fn fields(&self) -> Fields<'_> {
        Fields::of_block(&self.block)
    }

    /// The fields as typed headers: the list the typed decoder gives for the block.
    pub fn headers(&self) -> Vec<Header> {
        self.fields()
            .filter_map(|(n, v)| Some((HeaderName::from_bytes(n).ok()?, HeaderValue::from_bytes(v).ok()?)))
            .collect()
    }
}

/// The fields of a [`HeaderBlock`] or of a raw OPEN's block, as bytes (an indexed
/// name or field read from the table).
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The block was written by `put`: every length is there (a malformed one ends
        // the walk rather than panicking).
        let name_len = self.u16()?;
        if name_len == 0 {
            let code = self.take(1)?[0];
            if code & table::PAIR_BIT != 0 {
                return table::pair_bytes(code & !table::PAIR_BIT);
            }
            let name = table::name_bytes(code)?;
            let len = self.u16()?;
            return Some((name, self.take(len)?));
        }
        let name = self.take(name_len)?;
        let len = self.u16()?;
        Some((name, self.take(len)?))
    }
}

impl<'a> Fields<'a> {
    /// The fields of a header block as the wire carries it (`count:u16`, then the
    /// fields): a raw OPEN's block ([`crate::RawRequestHead::fields`]).
    pub(crate) fn of_block(block: &'a [u8]) -> Self {
        match block.split_first_chunk::<2>() {
            Some((&[a, b], rest)) => Fields { rest, left: usize::from(u16::from_be_bytes([a, b])) },
            None => Fields { rest: &[], left: 0 },
        }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            self.left = 0;
            return None;
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(head)
    }

    fn u16(&mut self) -> Option<usize> {
        let b = self.take(2)?;
        Some(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
}

/// Token characters (RFC 9110 §5.6.2): non-zero for a `tchar`.
pub(super) static TOKEN: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = (c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            )) as u8;
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::super::headers::{plan_headers, put_headers};
    use super::*;

    fn field(name: &str, value: &[u8]) -> Header {
        (HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_bytes(value).unwrap())
    }

    /// Lists with table names and whole fields, names outside the table, repeated and
    /// empty values, obs-text, more fields than a plan keeps (16), a value longer than
    /// the wire's 16-bit length.
    fn corpus() -> Vec<Vec<Header>> {
        let long = vec![b'a'; usize::from(u16::MAX) + 3];
        vec![
            vec![],
            vec![field("content-length", b"1024"), field("date", b"Sun, 06 Dec 2026 19:00:00 GMT")],
            vec![field("content-type", b"text/plain"), field("connection", b"keep-alive"), field("x-a", b"")],
            vec![field("set-cookie", b"a=1"), field("set-cookie", b"b=2"), field("x-obs", b"caf\xe9\t!")],
            vec![field("transfer-encoding", b"chunked"), field("accept-ranges", b"bytes"), field("vary", b"")],
            (0..40).map(|i| field(if i % 3 == 0 { "etag" } else { "x-many" }, format!("\"{i}\"").as_bytes())).collect(),
            vec![field("x-long", &long), field("server", b"nginx")],
        ]
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn a_block_is_the_bytes_put_headers_writes_for_the_same_fields() {
        for headers in corpus() {
            for coding in [FieldCoding::Text, FieldCoding::Indexed] {
                let (len, plan) = plan_headers(&headers, coding);
                let mut listed = BytesMut::new();
                put_headers(&mut listed, &headers, &plan);
                assert_eq!(listed.len(), len);
                let block = HeaderBlock::from_headers(&headers, coding);
                assert_eq!(block.encoded(), &listed[..], "{coding:?} {headers:?}");
                assert_eq!(block.text_len(), super::super::header_block_len(&headers));
                assert_eq!(block.invalid().map_or(Ok(()), Err), super::super::check_headers(&headers));
                assert_eq!(block.len(), headers.len());
                // Read back: the same fields, typed or as bytes.
                let fields: Vec<_> = block.fields().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
                let cut = |v: &[u8]| v[..v.len().min(usize::from(u16::MAX))].to_vec();
                let want: Vec<_> =
                    headers.iter().map(|(n, v)| (n.as_str().as_bytes().to_vec(), cut(v.as_bytes()))).collect();
                assert_eq!(fields, want);
            }
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn pushed_names_are_lowercased_and_what_http_refuses_is_refused() {
        let mut block = HeaderBlock::new(FieldCoding::Indexed);
        block.push(b"Content-Length", b"5").unwrap();
        block.push(b"X-Custom-Name", b"V a l").unwrap();
        block.push(b"ETag", b"\"x\"").unwrap();
        let want = [field("content-length", b"5"), field("x-custom-name", b"V a l"), field("etag", b"\"x\"")];
        assert_eq!(block.encoded(), HeaderBlock::from_headers(&want, FieldCoding::Indexed).encoded());
        assert_eq!(block.headers(), want);
        for bad in [&b""[..], b"a b", b"a:", b"caf\xe9", b"a\0", b"(x)"] {
            assert_eq!(block.push(bad, b"v"), Err(BlockError::Name), "{bad:?}");
            assert!(HeaderName::from_bytes(bad).is_err(), "{bad:?}");
        }
        for bad in [&b"a\rb"[..], b"\n", b"\0", b"\x7f", b"\x01"] {
            assert_eq!(block.push(b"x", bad), Err(BlockError::Value), "{bad:?}");
            assert!(HeaderValue::from_bytes(bad).is_err(), "{bad:?}");
        }
        // Every byte a `HeaderName` or a `HeaderValue` takes, the block takes too.
        for b in 0..=255u8 {
            assert_eq!(block.clone().push(&[b], b"v").is_ok(), HeaderName::from_bytes(&[b]).is_ok(), "name {b}");
            assert_eq!(block.clone().push(b"x", &[b]).is_ok(), HeaderValue::from_bytes(&[b]).is_ok(), "value {b}");
        }
        assert_eq!(block.len(), 3, "a refused field is not added");
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn a_name_pushed_lowercase_is_written_as_the_same_name_in_any_case() {
        // Table names and fields, names outside the table, one as long as the longest
        // table name and longer ones, in both codings, after other fields.
        let long = "x-".repeat(40);
        let names = ["content-length", "date", "connection", "x-custom", "access-control-allow-credentials", &long];
        for coding in [FieldCoding::Text, FieldCoding::Indexed] {
            for cut in [31, 32, 33, 80] {
                let (mut lowered, mut pushed) = (HeaderBlock::new(coding), HeaderBlock::new(coding));
                for name in names {
                    for value in [&b"0"[..], b"keep-alive", b"x y"] {
                        let name = &name[..name.len().min(cut)];
                        lowered.push_parsed_lower(name.as_bytes(), value);
                        pushed.push(name.to_ascii_uppercase().as_bytes(), value).unwrap();
                    }
                }
                assert_eq!(lowered.encoded(), pushed.encoded(), "{coding:?} {cut}");
                assert_eq!(lowered.text_len(), pushed.text_len());
                assert_eq!(lowered.len(), pushed.len());
            }
        }
    }

    /// Copies into one kept buffer, back to back, are each the block copied, byte for
    /// byte and in every count, whether the copy before is still held (its frame not
    /// sent yet: the next copy goes elsewhere) or dropped (its memory taken back); a
    /// frame made of one copy keeps its bytes while the next copies are made.
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn copies_into_a_kept_buffer_are_the_block_and_do_not_touch_each_other() {
        let mut room = BytesMut::new();
        let mut held = Vec::new();
        for (round, headers) in corpus().iter().chain(corpus().iter().rev()).enumerate() {
            for coding in [FieldCoding::Text, FieldCoding::Indexed] {
                let block = HeaderBlock::from_headers(headers, coding);
                let copy = block.copy_into(&mut room);
                let clone = block.clone();
                assert_eq!(copy.buf, clone.buf, "{round} {coding:?}");
                assert_eq!(copy.encoded(), block.encoded());
                assert_eq!(
                    (copy.len(), copy.text_len(), copy.coding(), copy.invalid()),
                    (clone.len(), clone.text_len(), clone.coding(), clone.invalid())
                );
                let id: StreamId = u32::try_from(round * 2 + 1).unwrap();
                let frame = copy.into_response(id, 200, false);
                let want = clone.into_response(id, 200, false);
                assert_eq!(frame, want);
                // Every other frame is held past the copies after it.
                if round % 2 == 0 {
                    held.push((frame, want));
                }
            }
        }
        for (frame, want) in held {
            assert_eq!(frame, want);
        }
    }
}
