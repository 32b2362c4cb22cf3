//! Header blocks: their encoding (as text, or with the static table's indexes towards
//! a peer that reads them, planned once per queued head), their decoding (both forms),
//! their size, the checks a head passes before it is sent (what the peer's decoder
//! would refuse), and the `X-Forwarded-*` names the server adds to every request.

use bytes::{BufMut, Bytes, BytesMut};

use super::block::{ReceivedBlock, TOKEN};
use super::codec::bytes16_len;
use super::recent::RecentValues;
use super::table;
use super::types::{DecodeLimits, Header, HeaderName, HeaderValue, RequestHead};
use crate::bytes_reader::{Reader, WriteExt};
use crate::error::DecodeError;

/// How a header block writes its fields: as text, which every peer reads, or, towards
/// a peer that announced [`features::INDEXED_HEADERS`](crate::features::INDEXED_HEADERS),
/// with the names and whole fields of the static table as one-byte indexes
/// (`docs/PROTOCOL.md` §2, "Header blocks"). Decoding reads both forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldCoding {
    /// Every name and value as its bytes.
    #[default]
    Text,
    /// The static table's names and fields as indexes, the rest as text.
    Indexed,
}

/// Fields whose table codes a [`HeadPlan`] keeps: most heads have fewer; the codes of
/// any further fields are looked up again when the block is encoded.
const PLANNED: usize = 16;

/// How a header block is written, worked out once, when the frame's size is computed
/// (`Frame::sized`), and followed when it is encoded: the coding and, for
/// [`FieldCoding::Indexed`], the table code of each of the first fields, so that a
/// queued head's names are looked up in the table once, not twice (~40 instructions a
/// field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeadPlan {
    coding: FieldCoding,
    codes: [u8; PLANNED],
}

impl HeadPlan {
    /// Every field as text (and the plan of a frame without headers).
    pub(crate) const TEXT: HeadPlan = HeadPlan { coding: FieldCoding::Text, codes: [table::TEXT; PLANNED] };

    pub(crate) fn coding(&self) -> FieldCoding {
        self.coding
    }
}

/// How `coding` writes the field: [`table::TEXT`], a name's index, or `PAIR_BIT` and a
/// whole field's index.
fn field_code(coding: FieldCoding, (name, value): &Header) -> u8 {
    match coding {
        FieldCoding::Text => table::TEXT,
        FieldCoding::Indexed => table::code(name.as_str().as_bytes(), value.as_bytes()),
    }
}

/// Bytes a field takes written as `code` says.
fn field_len(code: u8, (name, value): &Header) -> usize {
    match code {
        table::TEXT => bytes16_len(name.as_str().len()) + bytes16_len(value.len()),
        c if c & table::PAIR_BIT != 0 => INDEX_LEN,
        _ => INDEX_LEN + bytes16_len(value.len()),
    }
}

/// The bytes `put_headers` writes for `headers` with the plan returned, exactly (it
/// cuts at `u16::MAX` fields, and each name and value at `u16::MAX` bytes).
pub(super) fn plan_headers(headers: &[Header], coding: FieldCoding) -> (usize, HeadPlan) {
    let mut plan = HeadPlan { coding, codes: [table::TEXT; PLANNED] };
    let mut len = 2;
    for (i, field) in headers.iter().take(usize::from(u16::MAX)).enumerate() {
        let code = field_code(coding, field);
        if let Some(slot) = plan.codes.get_mut(i) {
            *slot = code;
        }
        len += field_len(code, field);
    }
    (len, plan)
}

/// A header block sized, planned and checked in one walk of its fields (a stream's
/// opening, `Session::open`, where three walks cost ~0.1k instructions per request).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckedBlock {
    /// Its size as text, as checked against `max_header_bytes` ([`header_block_len`]).
    pub(crate) text_len: usize,
    /// Its size written as `plan` says ([`plan_headers`]).
    pub(crate) len: usize,
    pub(crate) plan: HeadPlan,
    /// What [`check_headers`] refuses in it, if anything.
    pub(crate) invalid: Option<&'static str>,
}

/// [`header_block_len`], [`plan_headers`] and [`check_headers`] of `headers`, in one walk.
/// Inlined into its two callers (`Session::open`, `Session::respond`): as a call of its
/// own it cost the server's OPEN ~25 instructions more than inlined in its one caller.
#[inline(always)]
pub(crate) fn plan_checked(headers: &[Header], coding: FieldCoding) -> CheckedBlock {
    let mut plan = HeadPlan { coding, codes: [table::TEXT; PLANNED] };
    let (mut text_len, mut len) = (2, 2);
    let mut invalid = (!fits16(headers.len())).then_some("more than 65535 headers");
    for (i, (name, value)) in headers.iter().take(usize::from(u16::MAX)).enumerate() {
        // Each name's text is looked up once (a standard name's is a table read).
        let (name, value) = (name.as_str(), value.as_bytes());
        let code = match coding {
            FieldCoding::Text => table::TEXT,
            FieldCoding::Indexed => table::code(name.as_bytes(), value),
        };
        if let Some(slot) = plan.codes.get_mut(i) {
            *slot = code;
        }
        let text = bytes16_len(name.len()) + bytes16_len(value.len());
        text_len += text;
        len += match code {
            table::TEXT => text,
            c if c & table::PAIR_BIT != 0 => INDEX_LEN,
            _ => INDEX_LEN + bytes16_len(value.len()),
        };
        if invalid.is_none() {
            invalid = lengths_invalid(name.len(), value.len());
        }
    }
    CheckedBlock { text_len, len, plan, invalid }
}

/// An indexed name or field: an empty name's length (`0:u16`), then the index byte.
const INDEX_LEN: usize = 3;

/// Encoded size of a header block written as text, as checked against
/// `max_header_bytes` (an indexed block is never larger).
pub fn header_block_len(headers: &[Header]) -> usize {
    plan_headers(headers, FieldCoding::Text).0
}

/// Writes `headers` as `plan` (from [`plan_headers`] for the same list) says.
pub(super) fn put_headers(b: &mut BytesMut, headers: &[Header], plan: &HeadPlan) {
    b.put_u16(u16::try_from(headers.len()).unwrap_or(u16::MAX));
    for (i, field) in headers.iter().take(usize::from(u16::MAX)).enumerate() {
        let (name, value) = field;
        let code = match plan.codes.get(i) {
            Some(&code) => code,
            None => field_code(plan.coding, field),
        };
        // The fixed bytes of an indexed field go in one `put_slice` (each put checks
        // the buffer's room).
        if code == table::TEXT {
            b.put_bytes16(name.as_str().as_bytes());
            b.put_bytes16(value.as_bytes());
        } else if code & table::PAIR_BIT != 0 {
            b.put_slice(&[0, 0, code]);
        } else {
            let value = value.as_bytes();
            let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
            let [hi, lo] = len.to_be_bytes();
            b.put_slice(&[0, 0, code, hi, lo]);
            b.put_slice(&value[..usize::from(len)]);
        }
    }
}

/// Fields a tunnel end may add to a decoded head (see [`get_headers`]).
const ADDED_FIELDS: usize = 2;

/// Decodes a header block; `recent`, a session's, lets a value that came before under
/// the same table name be taken from it.
///
/// The block is read in place, by a [`Cursor`] over the frame's unread bytes, and the
/// reader is moved past it once at the end, rather than with the reader's methods,
/// which advance its `Bytes` at every length and value and pass each value back
/// through two nested `Result`s (docs/BENCHMARKS.md, fourteenth round: −0.03k
/// instructions for the client's OPEN of four fields). A value is cut from the frame
/// as a `Bytes` only where one is kept.
pub(super) fn get_headers(
    r: &mut Reader,
    limits: &DecodeLimits,
    recent: Option<&mut RecentValues>,
) -> Result<Vec<Header>, DecodeError> {
    let mut c = Cursor { frame: r.unread(), pos: 0 };
    let headers = read_fields(&mut c, limits, recent);
    r.skip(c.pos);
    headers
}

fn read_fields(
    c: &mut Cursor<'_>,
    limits: &DecodeLimits,
    mut recent: Option<&mut RecentValues>,
) -> Result<Vec<Header>, DecodeError> {
    let count = c.u16("header count")?;
    // Each header takes at least 3 bytes (an indexed field): refuse impossible counts
    // before allocating.
    if count.saturating_mul(INDEX_LEN) > c.left() {
        return Err(DecodeError::Truncated("headers"));
    }
    // Room for the fields a tunnel end adds to a decoded head (the client's `TE` and,
    // for a request without one, `Host`): pushing them does not move the list
    // (a reallocation and copy, ~0.6k instructions per request on the client).
    let mut headers = Vec::with_capacity(count + ADDED_FIELDS);
    for _ in 0..count {
        let name_len = c.u16("header name")?;
        // An empty name (which text never is) announces an index into the static table.
        if name_len == 0 {
            let index = c.u8("header index")?;
            if index & table::PAIR_BIT != 0 {
                let (name, value) =
                    table::pair(index & !table::PAIR_BIT).ok_or(DecodeError::Invalid("header index"))?;
                headers.push((name.clone(), value.clone()));
            } else {
                let name = table::name(index).ok_or(DecodeError::Invalid("header index"))?;
                let (at, raw) = c.bytes16("header value")?;
                let value = match recent.as_deref_mut() {
                    Some(recent) => recent.value(index, raw, || c.frame.slice(at..at + raw.len())),
                    None => shared_value(c.frame, at, raw),
                };
                match value {
                    Ok(value) => headers.push((name.clone(), value)),
                    Err(false) => return Err(DecodeError::Invalid("header value")),
                    // A control byte the wire allows: the field is dropped.
                    Err(true) => {}
                }
            }
        } else {
            // A bad name is told from its bytes here: `Err` says whether the wire
            // allows it.
            let name = c.take(name_len, "header name")?;
            let name = header_name(name).map_err(|_| valid_header_name(name));
            let (at, raw) = c.bytes16("header value")?;
            match (name, shared_value(c.frame, at, raw)) {
                (Ok(name), Ok(value)) => headers.push((name, value)),
                // What the wire allows but HTTP cannot carry (a separator in a name, a
                // control byte in a value) is dropped here, as either end's HTTP stack
                // would drop it; what the wire forbids is an error.
                (Err(false), _) => return Err(DecodeError::Invalid("header name")),
                (_, Err(false)) => return Err(DecodeError::Invalid("header value")),
                _ => {}
            }
        }
        // The block read so far is within `max_header_bytes`.
        if c.pos > limits.max_header_bytes {
            return Err(DecodeError::HeadersTooLarge { size: c.pos, limit: limits.max_header_bytes });
        }
    }
    Ok(headers)
}

/// The header block at `pos` in `frame`, which must end the frame, as a
/// [`ReceivedBlock`] when every field in it decodes to itself: an index the table has,
/// a text name of lowercase token characters (what `HeaderName` keeps as it is), a
/// value `HeaderValue` takes, the block within `limits.max_header_bytes`. `None` for
/// anything else (a field [`get_headers`] would drop, lowercase or refuse, a cut or
/// overlong block, bytes after it): the caller decodes the frame the typed way then,
/// which gives the result and the error it always gave.
pub(super) fn received_block(frame: &Bytes, pos: usize, limits: &DecodeLimits) -> Option<ReceivedBlock> {
    let mut c = Cursor { frame, pos };
    let count = c.u16("header count").ok()?;
    for _ in 0..count {
        let name_len = c.u16("header name").ok()?;
        if name_len == 0 {
            let index = c.u8("header index").ok()?;
            if index & table::PAIR_BIT != 0 {
                table::pair(index & !table::PAIR_BIT)?;
                continue;
            }
            table::name(index)?;
        } else {
            let name = c.take(name_len, "header name").ok()?;
            // Folds, not early exits: the compiler checks 16 bytes at a time.
            let lower_token =
                name.iter().fold(true, |ok, &b| ok & (TOKEN[usize::from(b)] != 0) & !b.is_ascii_uppercase());
            if !lower_token {
                return None;
            }
        }
        let (_, value) = c.bytes16("header value").ok()?;
        if !value_bytes(value) {
            return None;
        }
    }
    // Within the limit as the typed decoder counts it (the block read so far, from
    // the frame's start as `get_headers` does, field by field: the last is the most).
    if c.pos - pos > limits.max_header_bytes || c.pos != frame.len() {
        return None;
    }
    Some(ReceivedBlock::new(frame.slice(pos..)))
}

/// Whether `value` has only bytes a `HeaderValue` takes: visible ASCII, space, tab and
/// obs-text, no other control byte nor DEL. Eight bytes at a time: a word with no byte
/// below 0x20 and none equal to 0x7f (the tests of "Bit Twiddling Hacks", `hasless`
/// and `haszero`, exact for "any byte") is valid whole; a word with one (a tab, or a
/// refused byte) is looked at byte by byte. The last word overlaps the one before it
/// (a value shorter than a word is padded with a valid byte): no byte-by-byte tail.
/// A byte-by-byte fold was ~7 instructions a byte (not vectorised for a value of a few
/// dozen bytes): ~0.2k for a `date` and a `content-length` (docs/BENCHMARKS.md,
/// seventeenth round).
pub(super) fn value_bytes(value: &[u8]) -> bool {
    let mut words = value.chunks_exact(8);
    let whole = words.by_ref().all(valid_word);
    let rest = words.remainder();
    if !whole || rest.is_empty() {
        return whole;
    }
    let mut last = [b'a'; 8];
    match value.len().checked_sub(8) {
        Some(from) => last.copy_from_slice(&value[from..]),
        None => last.iter_mut().zip(rest).for_each(|(d, s)| *d = *s),
    }
    valid_word(&last)
}

/// [`value_bytes`] for eight bytes.
fn valid_word(word: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut x = [0u8; 8];
    x.copy_from_slice(word);
    let x = u64::from_le_bytes(x);
    let below = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
    let del = x ^ (ONES * 0x7f);
    let del = del.wrapping_sub(ONES) & !del & HIGH;
    below | del == 0 || word.iter().all(|&b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}

/// A value's bytes (`raw`, at `at` in `frame`) as a `HeaderValue` sharing the frame's
/// buffer; a refused one is told from its bytes (`Err` says whether the wire allows it).
fn shared_value(frame: &Bytes, at: usize, raw: &[u8]) -> Result<HeaderValue, bool> {
    HeaderValue::from_maybe_shared(frame.slice(at..at + raw.len())).map_err(|_| valid_header_value(raw))
}

/// Reads a header block where it lies in the frame: `pos` is how far it has read.
/// Every read is bounds-checked, with the same errors as the frame's [`Reader`].
struct Cursor<'a> {
    frame: &'a Bytes,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn left(&self) -> usize {
        self.frame.len().saturating_sub(self.pos)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        match self.frame.get(self.pos..) {
            Some(&[b, ..]) => {
                self.pos += 1;
                Ok(b)
            }
            _ => Err(DecodeError::Truncated(what)),
        }
    }

    fn u16(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        match self.frame.get(self.pos..) {
            Some(&[a, b, ..]) => {
                self.pos += 2;
                Ok(usize::from(u16::from_be_bytes([a, b])))
            }
            _ => Err(DecodeError::Truncated(what)),
        }
    }

    /// The next `len` bytes.
    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let frame: &'a [u8] = self.frame;
        let bytes = frame.get(self.pos..).and_then(|rest| rest.get(..len)).ok_or(DecodeError::Truncated(what))?;
        self.pos += len;
        Ok(bytes)
    }

    /// `len:u16` and that many bytes: where they start in the frame, and the bytes.
    fn bytes16(&mut self, what: &'static str) -> Result<(usize, &'a [u8]), DecodeError> {
        let len = self.u16(what)?;
        let at = self.pos;
        Ok((at, self.take(len, what)?))
    }
}

/// The names of the server's forwarding fields as text (the constants below are made of
/// them; `OpenFields::push_forwarding` tallies their lengths).
pub(crate) const FORWARDED_FOR: &str = "x-forwarded-for";
pub(crate) const FORWARDED_PROTO: &str = "x-forwarded-proto";
pub(crate) const FORWARDED_HOST: &str = "x-forwarded-host";

/// `X-Forwarded-For`: the server adds it to every request (the visitor's address).
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static(FORWARDED_FOR);
/// `X-Forwarded-Proto`: the server adds it to every request (`http` or `https`).
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static(FORWARDED_PROTO);
/// `X-Forwarded-Host`: the server adds it to every request (the public host).
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static(FORWARDED_HOST);

/// Whether a request head's `te` field is the one a server sends on to the origin,
/// `te: trailers` (the visitor's `TE` listed `trailers`: docs/PROTOCOL.md, "Request
/// heads"). The client forwards such a field and drops any other `te`: a peer does not
/// choose the hop-by-hop fields of the origin's leg.
pub fn is_te_trailers(value: &[u8]) -> bool {
    value.eq_ignore_ascii_case(b"trailers")
}

/// Names every request carries, decoded to these shared constants instead of being
/// parsed and allocated each time (`HeaderName` allocates any name outside its
/// standard set).
/// A `static`, not a `const`: a `const` array would be built for each lookup and its
/// three names dropped after it.
static FORWARDED_NAMES: [HeaderName; 3] = [X_FORWARDED_FOR, X_FORWARDED_PROTO, X_FORWARDED_HOST];

fn header_name(name: &[u8]) -> Result<HeaderName, http::header::InvalidHeaderName> {
    match FORWARDED_NAMES.iter().find(|n| n.as_str().as_bytes() == name) {
        Some(known) => Ok(known.clone()),
        None => HeaderName::from_bytes(name),
    }
}

/// A method is one or more visible ASCII characters.
pub(super) fn valid_method(method: &str) -> bool {
    !method.is_empty() && method.bytes().all(|c| c.is_ascii_graphic())
}

/// A header name is one or more visible ASCII characters other than `:`.
fn valid_header_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&c| c.is_ascii_graphic() && c != b':')
}

/// A header value is any bytes but CR, LF and NUL.
pub(super) fn valid_header_value(value: &[u8]) -> bool {
    !value.iter().any(|&c| c == b'\r' || c == b'\n' || c == 0)
}

fn fits16(len: usize) -> bool {
    len <= usize::from(u16::MAX)
}

/// Checks, before sending, what the peer's decoder would reject, so that a bad head
/// from the application fails one command instead of closing the session.
pub(crate) fn check_headers(headers: &[Header]) -> Result<(), &'static str> {
    if !fits16(headers.len()) {
        return Err("more than 65535 headers");
    }
    headers.iter().find_map(field_invalid).map_or(Ok(()), Err)
}

/// What the peer's decoder would refuse in one field. The types make names and values
/// valid; only their lengths are left to check.
fn field_invalid((name, value): &Header) -> Option<&'static str> {
    lengths_invalid(name.as_str().len(), value.len())
}

/// [`field_invalid`] of a field whose name and value have these lengths.
pub(super) fn lengths_invalid(name: usize, value: usize) -> Option<&'static str> {
    if !fits16(name) {
        return Some("header name");
    }
    if !fits16(value) {
        return Some("header value");
    }
    None
}

/// See [`check_headers`]: the request head's method and target (its fields are
/// checked with [`plan_checked`]).
pub(crate) fn check_request_line(head: &RequestHead) -> Result<(), &'static str> {
    if !valid_method(&head.method) || !fits16(head.method.len()) {
        return Err("method");
    }
    if !fits16(head.target.len()) {
        return Err("target longer than 65535 bytes");
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use bytes::{BufMut, Bytes, BytesMut};

    use super::*;
    #[cfg(feature = "indexed-headers")]
    use crate::frame::types::Frame;
    use crate::ids::kind;

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn a_value_is_checked_eight_bytes_at_a_time_as_byte_by_byte() {
        for len in 1..=20 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut value = vec![b'a'; len];
                    value[at] = b;
                    let want = HeaderValue::from_bytes(&value).is_ok();
                    assert_eq!(value_bytes(&value), want, "{value:?}");
                    // Next to a tab, which the word test flags and the bytes' pass.
                    value[(at + 1) % len] = b'\t';
                    assert_eq!(value_bytes(&value), HeaderValue::from_bytes(&value).is_ok(), "{value:?}");
                }
            }
        }
        assert!(value_bytes(b""));
    }

    /// An OPEN for `GET /` whose header block is `block`, as sent (also the raw OPEN's
    /// tests', `open_raw::tests`).
    pub(crate) fn open_with(block: &[u8]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u8(kind::OPEN);
        b.put_u32(1);
        b.put_u8(0);
        b.put_slice(b"\0\x03GET\0\x01/");
        b.put_slice(block);
        b.freeze()
    }

    /// Decodes with and without a session's recent values: both must agree.
    #[cfg(feature = "indexed-headers")]
    fn decode(block: &[u8], limits: &DecodeLimits) -> Result<Vec<Header>, DecodeError> {
        let heads = |f: Frame| match f {
            Frame::Open { head, .. } => head.headers,
            other => panic!("not an OPEN: {other:?}"),
        };
        let plain = Frame::decode(open_with(block), limits).map(heads);
        let mut recent = RecentValues::default();
        let kept = Frame::decode_recent(open_with(block), limits, Some(&mut recent)).map(heads);
        assert_eq!(plain, kept, "{block:?}");
        plain
    }

    /// `host: a` by index, `x-forwarded-proto: http` as a whole field, `x-a: b` as text.
    #[cfg(feature = "indexed-headers")]
    const BLOCK: &[u8] = b"\0\x03\0\0\x00\0\x01a\0\0\x80\0\x03x-a\0\x01b";

    // Its blocks carry indexed fields, which a session without the table never receives
    // (it does not announce `INDEXED_HEADERS`).
    #[cfg(feature = "indexed-headers")]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn a_block_decodes_in_every_form_and_every_cut_is_refused_by_name() {
        let limits = DecodeLimits::default();
        let fields = decode(BLOCK, &limits).unwrap();
        let text: Vec<_> = fields.iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
        assert_eq!(text, [("host", &b"a"[..]), ("x-forwarded-proto", b"http"), ("x-a", b"b")]);
        // Cut within the third field (the count's check of 3 bytes a field passes).
        let labels =
            [(11, "header name"), (12, "header name"), (13, "header name"), (16, "header value"), (18, "header value")];
        for (cut, what) in labels {
            assert_eq!(decode(&BLOCK[..cut], &limits), Err(DecodeError::Truncated(what)), "cut at {cut}");
        }
        // Cut within an indexed name's field.
        let one = b"\0\x01\0\0\x00\0\x01a";
        for cut in 5..8 {
            assert_eq!(decode(&one[..cut], &limits), Err(DecodeError::Truncated("header value")), "cut at {cut}");
        }
        let index_cut = b"\0\x02\0\x03x-a\0\x01b\0\0";
        assert_eq!(decode(index_cut, &limits), Err(DecodeError::Truncated("header index")));
        // A count the bytes cannot hold is refused before anything is read.
        assert_eq!(decode(b"\0\x09\0\0\x00", &limits), Err(DecodeError::Truncated("headers")));
    }

    // Its blocks carry indexed fields, which a session without the table never receives
    // (it does not announce `INDEXED_HEADERS`).
    #[cfg(feature = "indexed-headers")]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn the_size_limit_counts_the_block_read_so_far() {
        // The count (2 bytes) and the first field (6 bytes) are within 8; the second
        // field (3 bytes) takes the block to 11; the whole block is 19.
        let limits = DecodeLimits { max_header_bytes: 8, ..DecodeLimits::default() };
        assert_eq!(decode(BLOCK, &limits), Err(DecodeError::HeadersTooLarge { size: 11, limit: 8 }));
        let limits = DecodeLimits { max_header_bytes: 18, ..DecodeLimits::default() };
        assert_eq!(decode(BLOCK, &limits), Err(DecodeError::HeadersTooLarge { size: 19, limit: 18 }));
        let limits = DecodeLimits { max_header_bytes: 19, ..DecodeLimits::default() };
        assert_eq!(decode(BLOCK, &limits).map(|f| f.len()), Ok(3));
    }

    // Its blocks carry indexed fields, which a session without the table never receives
    // (it does not announce `INDEXED_HEADERS`).
    #[cfg(feature = "indexed-headers")]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn what_http_cannot_carry_is_dropped_and_what_the_wire_forbids_refused() {
        let limits = DecodeLimits::default();
        // A control byte in a value (by index and as text), a separator in a name: dropped.
        let dropped = decode(b"\0\x03\0\0\x00\0\x01\x01\0\x03x-a\0\x01\x01\0\x03a(b\0\x01c", &limits).unwrap();
        assert!(dropped.is_empty(), "{dropped:?}");
        assert_eq!(decode(b"\0\x01\0\0\x00\0\x01\r", &limits), Err(DecodeError::Invalid("header value")));
        assert_eq!(decode(b"\0\x01\0\x03x-a\0\x01\n", &limits), Err(DecodeError::Invalid("header value")));
        assert_eq!(decode(b"\0\x01\0\x02a:\0\x01b", &limits), Err(DecodeError::Invalid("header name")));
        assert_eq!(decode(b"\0\x01\0\x03a b\0\x01b", &limits), Err(DecodeError::Invalid("header name")));
        assert_eq!(decode(b"\0\x01\0\0\x7e\0\x01b", &limits), Err(DecodeError::Invalid("header index")));
        assert_eq!(decode(b"\0\x01\0\0\xff", &limits), Err(DecodeError::Invalid("header index")));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn one_walk_sizes_plans_and_checks_as_the_three_do() {
        let long = HeaderValue::from_bytes(&vec![b'a'; usize::from(u16::MAX) + 1]).unwrap();
        let field = |n: &'static str, v: &'static str| (HeaderName::from_static(n), HeaderValue::from_static(v));
        let lists: Vec<Vec<Header>> = vec![
            vec![],
            vec![field("host", "a.localhost"), field("x-forwarded-proto", "http"), field("x-custom", "1")],
            (0..20).map(|i| field(if i % 2 == 0 { "accept" } else { "x-other" }, "text/html")).collect(),
            vec![field("host", "a"), (HeaderName::from_static("x-long"), long.clone()), (http::header::DATE, long)],
        ];
        for headers in &lists {
            for coding in [FieldCoding::Text, FieldCoding::Indexed] {
                let block = plan_checked(headers, coding);
                assert_eq!(block.text_len, header_block_len(headers));
                assert_eq!((block.len, block.plan), plan_headers(headers, coding));
                assert_eq!(block.invalid.map_or(Ok(()), Err), check_headers(headers));
            }
        }
        assert_eq!(plan_checked(&lists[3], FieldCoding::Text).invalid, Some("header value"));
    }
}
