//! An HTTP OPEN whose header block is kept as it came, checked but not decoded into a
//! list of typed fields ([`RawRequestHead`]): a receiver that only passes the fields on
//! (the native client writing the origin's request head) walks the block once, as bytes,
//! and decodes the typed [`RequestHead`] later, off the path the visitor waits on, if
//! at all. Decoding a block into `HeaderName`s and `HeaderValue`s (`get_headers`, ~0.63k
//! instructions for four fields) was the largest step between the client's read of an
//! OPEN and its write to the origin (docs/BENCHMARKS.md, sixteenth round).
//!
//! Only a block that the typed decoder would carry whole becomes raw: every name a
//! lowercase token (as a `HeaderName` spells it), every value bytes a `HeaderValue`
//! takes, within `max_header_bytes`. Anything else (a field the decoder drops, an
//! uppercase name it lowercases, an error) is left to the typed decoder, which then
//! gives the same head or the same error as it always did.

use std::borrow::Cow;

use bytes::Bytes;

use super::block::Fields;
use super::headers::get_headers;
use super::table;
use super::types::{DecodeLimits, RequestHead, StreamKind};
use crate::bytes_reader::Reader;
use crate::ids::{flags, kind, StreamId};

/// The head of an HTTP request whose header block is kept as received (see the module
/// docs). [`RawRequestHead::fields`] walks it as bytes; [`RawRequestHead::decode`] gives
/// the typed head, the same one the typed decoder gives for the same OPEN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRequestHead {
    /// Method, e.g. `GET` (a standard one borrowed, as in [`RequestHead`]).
    pub method: Cow<'static, str>,
    /// The OPEN from its target on: the target (`target_len` bytes, UTF-8), then the
    /// header block (its count, then each field in the session's field coding). The
    /// target is not copied into a `String` until [`RawRequestHead::decode`].
    rest: Bytes,
    target_len: u16,
    /// What [`check_block`] counted of the block's fields, its lanes read by the
    /// getters when asked (four fields taken apart per OPEN cost ~5 instructions more).
    tally: Tally,
}

impl RawRequestHead {
    /// An HTTP OPEN (`msg`, one frame) as a raw head, its stream id and end flag; `None`
    /// for any other frame, a WebSocket's OPEN, and any OPEN whose block is not carried
    /// whole by the typed decoder or that it refuses (left to it: see the module docs).
    pub fn decode_open(msg: &Bytes, limits: &DecodeLimits) -> Option<(StreamId, RawRequestHead, bool)> {
        let (&[ty, a, b, c, d, f], _) = msg.split_first_chunk::<6>()?;
        let id = u32::from_be_bytes([a, b, c, d]);
        if ty != kind::OPEN || id == 0 || f & flags::WEBSOCKET != 0 || msg.len() > limits.max_frame {
            return None;
        }
        let method_len = usize::from(u16::from_be_bytes(*msg.get(6..8)?.first_chunk::<2>()?));
        let method_at = 8 + method_len;
        let method = super::codec::method_text(msg.get(8..method_at)?).ok()?;
        // A standard method (borrowed from the list) is valid as it is.
        if matches!(method, Cow::Owned(_)) && !super::headers::valid_method(&method) {
            return None;
        }
        let target_len = u16::from_be_bytes(*msg.get(method_at..method_at + 2)?.first_chunk::<2>()?);
        let target_at = method_at + 2;
        let block_at = target_at + usize::from(target_len);
        // An ASCII target (nearly all: a target's other bytes are percent-encoded) is
        // UTF-8; `from_utf8`'s call cost more than the usual short target's check.
        let target = msg.get(target_at..block_at)?;
        if !target.is_ascii() {
            std::str::from_utf8(target).ok()?;
        }
        let tally = check_block(msg.get(block_at..)?, limits.max_header_bytes)?;
        let rest = msg.slice(target_at..);
        Some((id, RawRequestHead { method, rest, target_len, tally }, f & flags::END != 0))
    }

    /// The target's bytes (UTF-8), e.g. `/a?b=c`.
    pub fn target(&self) -> &[u8] {
        self.rest.get(..usize::from(self.target_len)).unwrap_or_default()
    }

    /// The target as text (its UTF-8 was checked when the OPEN was read).
    pub fn target_str(&self) -> &str {
        std::str::from_utf8(self.target()).unwrap_or_default()
    }

    /// Whether the block has an `Accept` field (a receiver that answers with a page of
    /// its own reads it to pick HTML or text).
    pub fn has_accept(&self) -> bool {
        self.tally.lane(32) != 0
    }

    /// Whether the block has a `TE` field (a receiver that forwards `te: trailers` looks
    /// for one only then).
    pub fn has_te(&self) -> bool {
        self.tally.lane(48) != 0
    }

    /// How many `Host` fields the block has (at most 255).
    pub fn hosts(&self) -> u8 {
        u8::try_from(self.tally.lane(0)).unwrap_or(u8::MAX)
    }

    /// Whether the block has a `Content-Length` or a `Transfer-Encoding` field.
    pub fn has_framing(&self) -> bool {
        self.tally.lane(16) != 0
    }

    /// The header block as the OPEN carried it (its count, then each field in the
    /// session's field coding): what [`Self::fields`] walks.
    pub fn block(&self) -> &[u8] {
        self.rest.get(usize::from(self.target_len)..).unwrap_or_default()
    }

    /// Each field's name (lowercase) and value bytes, in order.
    pub fn fields(&self) -> Fields<'_> {
        Fields::of_block(self.rest.get(usize::from(self.target_len)..).unwrap_or_default())
    }

    /// The typed head, as the typed decoder gives it. Its values share a copy of the
    /// block, not the received message (which would hold the reader's buffer for as
    /// long as the head lives).
    pub fn decode(self) -> RequestHead {
        let target = self.target_str().to_owned();
        let block = self.rest.get(usize::from(self.target_len)..).unwrap_or_default();
        let mut r = Reader::new(Bytes::copy_from_slice(block));
        let limits = DecodeLimits { max_frame: usize::MAX, max_header_bytes: usize::MAX };
        // The block was checked whole (`check_block`): the decoder cannot refuse it.
        let headers = get_headers(&mut r, &limits, None).unwrap_or_default();
        RequestHead { kind: StreamKind::Http, method: self.method, target, headers }
    }
}

/// `len:u16` and that many bytes at the start of `rest`.
fn value16(rest: &[u8]) -> Option<&[u8]> {
    let (&[a, b], rest) = rest.split_first_chunk::<2>()?;
    rest.get(..usize::from(u16::from_be_bytes([a, b])))
}

/// The table indexes of the names [`check_block`] counts (`table.rs`; a test holds
/// them to it).
const HOST: u8 = 0;
const CONTENT_LENGTH: u8 = 1;
const TRANSFER_ENCODING: u8 = 23;
const ACCEPT: u8 = 5;
const TE: u8 = 35;

/// What [`check_block`] counts of a block it carries whole: [`TALLY`]'s sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tally(u64);

impl Tally {
    /// The lane of bits `at` to `at + 15`.
    fn lane(self, at: u32) -> u64 {
        (self.0 >> at) & 0xffff
    }
}

/// Walks a header block: what it counts ([`Tally`]) if every field is one the typed
/// decoder carries as it is and the block ends with its last field within `max` bytes;
/// `None` otherwise (the typed decoder then decides). An indexed name is told by its
/// index, not its text.
fn check_block(block: &[u8], max: usize) -> Option<Tally> {
    let mut tally = 0u64;
    let (&[a, b], mut rest) = block.split_first_chunk::<2>()?;
    for _ in 0..u16::from_be_bytes([a, b]) {
        let (&[a, b], after) = rest.split_first_chunk::<2>()?;
        let name_len = usize::from(u16::from_be_bytes([a, b]));
        let index = if name_len == 0 {
            let (&index, after) = after.split_first()?;
            if index & table::PAIR_BIT != 0 {
                rest = after;
                table::pair_name(index & !table::PAIR_BIT)?
            } else {
                let value = value16(after)?;
                rest = after.get(2 + value.len()..)?;
                if !table::is_name(index) || !value_carried(value) {
                    return None;
                }
                index
            }
        } else {
            let text = after.get(..name_len)?;
            let value = value16(after.get(name_len..)?)?;
            rest = after.get(name_len + 2 + value.len()..)?;
            if !text.iter().all(|&c| lower_token(c)) || !value_carried(value) {
                return None;
            }
            match text {
                b"host" => HOST,
                b"content-length" => CONTENT_LENGTH,
                b"transfer-encoding" => TRANSFER_ENCODING,
                b"accept" => ACCEPT,
                b"te" => TE,
                _ => table::TEXT,
            }
        };
        tally += TALLY[usize::from(index)];
    }
    // The block's size once, after the walk (the walk cannot pass the message's end,
    // which `max_frame` bounds): over `max` anywhere is over it at the end.
    (rest.is_empty() && block.len() <= max).then_some(Tally(tally))
}

/// What a field of each name index adds to [`check_block`]'s tally: 1 in the lane of
/// bits 0-15 for a `Host`, 16-31 for a `Content-Length` or `Transfer-Encoding`, 32-47
/// for an `Accept`, 48-63 for a `TE` (a block has at most 65,535 fields: no lane
/// overflows). One load
/// and add a field, where a `match` on the index was a jump through a table and three
/// counters kept on the stack.
static TALLY: [u64; 256] = {
    let mut tally = [0; 256];
    tally[HOST as usize] = 1;
    tally[CONTENT_LENGTH as usize] = 1 << 16;
    tally[TRANSFER_ENCODING as usize] = 1 << 16;
    tally[ACCEPT as usize] = 1 << 32;
    tally[TE as usize] = 1 << 48;
    tally
};

/// A byte of a header name as `HeaderName` spells it: a token character (RFC 9110
/// §5.6.2), letters lowercase.
fn lower_token(c: u8) -> bool {
    matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.')
        || matches!(c, b'^' | b'_' | b'`' | b'|' | b'~')
}

/// Bytes a `HeaderValue` takes as they are: visible ASCII, space, tab and obs-text.
/// Eight bytes at a time: a word with no byte below 0x20 and none 0x7f passes at once
/// (the "has a byte less than n" test of the bit-twiddling hacks, exact for n <= 128);
/// a value with one that may be such a byte is looked at byte by byte, whole (a tab
/// passes). The words overlap rather than leave a tail: a value of 4-7 bytes is one
/// word made of its first and last four, 8-16 bytes its first and last eight, 17-24
/// bytes three words (0, 8 and the last eight: one word fewer for a `Host` such as
/// `name.example.com:8080`, ~10 instructions a value; docs/BENCHMARKS.md,
/// twenty-fifth round, cli), 25-32 bytes four (0, 8, and the last sixteen), a longer
/// one every whole word and the last eight. Straight-line code up to 32 bytes (the
/// request's values are mostly 4-24): the loop's set-up and exit and a word's
/// verdict each cost more than a word (docs/BENCHMARKS.md, twenty-third round). Each
/// word's flags are or-ed together and masked once.
#[inline(always)]
fn value_carried(value: &[u8]) -> bool {
    let byte_ok = |c: &u8| (*c >= b' ' && *c != 0x7f) || *c == b'\t';
    let len = value.len();
    let word = |at: usize| word_at(value, at);
    let flags = match len {
        0..=3 => HIGH,
        4..=7 => {
            let half = |at: usize| {
                u64::from(u32::from_ne_bytes(
                    value.get(at..).and_then(|v| v.first_chunk::<4>()).copied().unwrap_or([0; 4]),
                ))
            };
            word_flags(half(0) | half(len - 4) << 32)
        }
        8..=16 => word_flags(word(0)) | word_flags(word(len - 8)),
        17..=24 => word_flags(word(0)) | word_flags(word(8)) | word_flags(word(len - 8)),
        25..=32 => word_flags(word(0)) | word_flags(word(8)) | word_flags(word(len - 16)) | word_flags(word(len - 8)),
        _ => {
            let mut flags = word_flags(word(len - 8));
            let mut at = 0;
            while at + 8 < len {
                flags |= word_flags(word(at));
                at += 8;
            }
            flags
        }
    };
    flags & HIGH == 0 || value.iter().all(byte_ok)
}

/// The eight bytes of `value` from `at` as a word (`at + 8 <= value.len()`).
#[inline(always)]
fn word_at(value: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(value.get(at..).and_then(|v| v.first_chunk::<8>()).copied().unwrap_or([0; 8]))
}

/// Every byte's high bit.
const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);

/// A word's flags: `flags & HIGH` is zero if none of its eight bytes is below 0x20 or
/// 0x7f (a tab is one below: a word with one is flagged, and its value's bytes are
/// looked at one by one). Unmasked, so that several words' flags are or-ed first.
#[inline(always)]
fn word_flags(x: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    let less = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x;
    less(x, 0x20) | less(x ^ (ONES * 0x7f), 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::headers::tests::open_with;
    use crate::frame::{FieldCoding, Frame, Header, HeaderName, HeaderValue};

    fn field(name: &str, value: &[u8]) -> Header {
        (HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_bytes(value).unwrap())
    }

    /// Heads a client is sent: the bench's, a browser's, odd fields, framing fields.
    fn corpus() -> Vec<RequestHead> {
        let head = |method: &str, target: &str, fields: &[(&str, &[u8])]| RequestHead {
            kind: StreamKind::Http,
            method: method.to_owned().into(),
            target: target.into(),
            headers: fields.iter().map(|(n, v)| field(n, v)).collect(),
        };
        vec![
            head("GET", "/", &[]),
            head(
                "GET",
                "/1k",
                &[
                    ("host", b"a.localhost"),
                    ("x-forwarded-for", b"127.0.0.1"),
                    ("x-forwarded-proto", b"http"),
                    ("x-forwarded-host", b"a.localhost"),
                ],
            ),
            head(
                "GET",
                "/index.html?q=1&r=%20",
                &[
                    ("host", b"demo.example.com"),
                    ("user-agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0"),
                    ("accept", b"text/html,application/xhtml+xml,*/*;q=0.8"),
                    ("accept-encoding", b"gzip, deflate, br"),
                    ("accept-language", b"en-US,en;q=0.9"),
                    ("cookie", b"a=1; b=2"),
                    ("sec-fetch-mode", b"navigate"),
                    ("upgrade-insecure-requests", b"1"),
                    ("cache-control", b"max-age=0"),
                    ("connection", b"keep-alive"),
                    ("x-forwarded-proto", b"https"),
                ],
            ),
            head(
                "PURGE",
                "*",
                &[("x-odd!#$%&'*+-.^_`|~09", b"\tobs-text \x80\xff tab\t"), ("x-empty", b""), ("host", b"a")],
            ),
            head("POST", "/up", &[("content-length", b"5"), ("te", b"trailers"), ("host", b"a"), ("host", b"b")]),
            head("PUT", "/t", &[("transfer-encoding", b"chunked"), ("trailer", b"x-sum")]),
        ]
    }

    fn open(head: &RequestHead, coding: FieldCoding, end: bool) -> Bytes {
        Frame::Open { id: 7, head: head.clone(), end }.encode_with(coding)
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn a_raw_head_walks_and_decodes_as_the_typed_decoder_decodes() {
        let limits = DecodeLimits::default();
        for head in corpus() {
            for coding in [FieldCoding::Text, FieldCoding::Indexed] {
                for end in [false, true] {
                    let msg = open(&head, coding, end);
                    let Ok(Frame::Open { head: typed, .. }) = Frame::decode(msg.clone(), &limits) else {
                        panic!("the OPEN decodes")
                    };
                    let (id, raw, raw_end) = RawRequestHead::decode_open(&msg, &limits).expect("taken raw");
                    assert_eq!((id, raw_end), (7, end));
                    assert_eq!(raw.target(), typed.target.as_bytes());
                    let fields: Vec<(&[u8], &[u8])> = raw.fields().collect();
                    let expected: Vec<(&[u8], &[u8])> =
                        typed.headers.iter().map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())).collect();
                    assert_eq!(fields, expected, "{coding:?}");
                    let hosts = typed.headers.iter().filter(|(n, _)| n == http::header::HOST).count();
                    assert_eq!(usize::from(raw.hosts()), hosts);
                    let framing = typed
                        .headers
                        .iter()
                        .any(|(n, _)| n == http::header::CONTENT_LENGTH || n == http::header::TRANSFER_ENCODING);
                    assert_eq!(raw.has_framing(), framing);
                    let accept = typed.headers.iter().any(|(n, _)| n == http::header::ACCEPT);
                    assert_eq!(raw.has_accept(), accept);
                    let te = typed.headers.iter().any(|(n, _)| n == http::header::TE);
                    assert_eq!(raw.has_te(), te);
                    assert_eq!(raw.decode(), typed);
                }
            }
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn what_the_typed_decoder_drops_changes_or_refuses_is_left_to_it() {
        let limits = DecodeLimits::default();
        let left = [
            &b"\0\x01\0\x03X-A\0\x01b"[..], // uppercase: lowercased by the typed decoder
            b"\0\x01\0\x03a(b\0\x01c",      // a separator: dropped
            b"\0\x01\0\x03x-a\0\x01\x01",   // a control byte: dropped
            b"\0\x01\0\x03x-a\0\x01\x7f",   // DEL: dropped
            b"\0\x01\0\x03x-a\0\x01\r",     // CR: refused
            b"\0\x01\0\x02a:\0\x01b",       // refused
            b"\0\x02\0\x03x-a\0\x01b",      // one field short
            b"\0\x01\0\x03x-a\0\x01bc",     // a byte after the block
            b"\0\x01\0\x03x-a\0\x02b",      // cut
            b"\0\x09\0\0\x00",              // an impossible count
            b"",
        ];
        for block in left {
            assert_eq!(RawRequestHead::decode_open(&open_with(block), &limits), None, "{block:?}");
        }
        #[cfg(feature = "indexed-headers")]
        {
            for block in [&b"\0\x01\0\0\x7e\0\x01b"[..], b"\0\x01\0\0\xff", b"\0\x01\0\0\x00\0\x01\x01"] {
                assert_eq!(RawRequestHead::decode_open(&open_with(block), &limits), None, "{block:?}");
            }
        }
        // Over the size limit: the typed decoder's error.
        let small = DecodeLimits { max_header_bytes: 10, ..limits };
        assert_eq!(RawRequestHead::decode_open(&open_with(b"\0\x01\0\x03x-a\0\x04bcde"), &small), None);
        assert!(RawRequestHead::decode_open(&open_with(b"\0\x01\0\x03x-a\0\x01b"), &small).is_some());
        // A WebSocket's OPEN, a RESPONSE: not taken.
        let ws = RequestHead { kind: StreamKind::WebSocket, method: "GET".into(), target: "/".into(), headers: vec![] };
        assert_eq!(RawRequestHead::decode_open(&open(&ws, FieldCoding::Text, false), &limits), None);
        let response = Frame::Response { id: 1, head: crate::ResponseHead { status: 200, headers: vec![] }, end: true };
        assert_eq!(RawRequestHead::decode_open(&response.encode(), &limits), None);
    }

    #[cfg(feature = "indexed-headers")]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn the_counted_names_are_at_their_indexes() {
        assert_eq!(table::name(HOST), Some(&http::header::HOST));
        assert_eq!(table::name(CONTENT_LENGTH), Some(&http::header::CONTENT_LENGTH));
        assert_eq!(table::name(TRANSFER_ENCODING), Some(&http::header::TRANSFER_ENCODING));
        assert_eq!(table::name(ACCEPT), Some(&http::header::ACCEPT));
        assert_eq!(table::name(TE), Some(&http::header::TE));
        assert_ne!(table::TEXT, HOST);
    }

    /// The tally's lanes: `Host`s counted to 255 and beyond (saturating), framing,
    /// `Accept` and `TE` fields seen among many of each, up to a block of 65,535 fields (the
    /// most a count says: no lane overflows into the next), names indexed and as text.
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn hosts_framing_and_accept_are_counted_as_the_typed_decoder_counts_them() {
        let limits = DecodeLimits { max_frame: usize::MAX, max_header_bytes: usize::MAX };
        let text = |name: &[u8]| [&[0, name.len() as u8][..], name, b"\0\x01a"].concat();
        let indexed =
            |index: u8| if cfg!(feature = "indexed-headers") { vec![0, 0, index, 0, 1, b'a'] } else { vec![] };
        let fields: [(&[u8], u8); 6] = [
            (b"host", HOST),
            (b"content-length", CONTENT_LENGTH),
            (b"transfer-encoding", TRANSFER_ENCODING),
            (b"accept", ACCEPT),
            (b"te", TE),
            (b"x-a", table::TEXT),
        ];
        for (i, (name, index)) in fields.into_iter().enumerate() {
            for n in [0usize, 1, 2, 254, 255, 256, 1000, 65_535] {
                for by_index in [false, true] {
                    if by_index && (index == table::TEXT || !cfg!(feature = "indexed-headers")) {
                        continue;
                    }
                    // `n` of this field, among one each of the others (within 65,535 in all).
                    let others: Vec<(&[u8], u8)> =
                        fields.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, f)| *f).collect();
                    let count = n + if n < 65_535 { others.len().min(65_535 - n) } else { 0 };
                    let mut block = u16::try_from(count).unwrap().to_be_bytes().to_vec();
                    for _ in 0..n {
                        block.extend(if by_index { indexed(index) } else { text(name) });
                    }
                    for (name, _) in others.iter().take(count - n) {
                        block.extend(text(name));
                    }
                    let Ok(Frame::Open { head, .. }) = Frame::decode(open_with(&block), &limits) else {
                        panic!("the OPEN decodes")
                    };
                    let (_, raw, _) = RawRequestHead::decode_open(&open_with(&block), &limits).expect("taken raw");
                    let counted =
                        |names: &[&http::HeaderName]| head.headers.iter().filter(|(n, _)| names.contains(&n)).count();
                    let hosts = counted(&[&http::header::HOST]);
                    assert_eq!(usize::from(raw.hosts()), hosts.min(255), "{name:?} x{n}");
                    let framing = counted(&[&http::header::CONTENT_LENGTH, &http::header::TRANSFER_ENCODING]);
                    assert_eq!(raw.has_framing(), framing > 0, "{name:?} x{n}");
                    assert_eq!(raw.has_accept(), counted(&[&http::header::ACCEPT]) > 0, "{name:?} x{n}");
                    assert_eq!(raw.has_te(), counted(&[&http::header::TE]) > 0, "{name:?} x{n}");
                }
            }
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn a_value_passes_eight_bytes_at_a_time_as_it_does_byte_by_byte() {
        for c in 0..=255u8 {
            let expected = http::HeaderValue::from_bytes(&[c]).is_ok();
            assert!(value_carried(b""));
            // Every length to five words and a bit (the byte loop, the four-byte pair, the
            // two, four and looped words, with and without an overlapping last word), `c`
            // at every place.
            for len in 1..=41 {
                for at in 0..len {
                    let mut value = vec![b'a'; len];
                    value[at] = c;
                    assert_eq!(value_carried(&value), expected, "{c:#x} at {at} of {len}");
                    let mut tabbed = vec![b'\t'; len];
                    tabbed[at] = c;
                    assert_eq!(value_carried(&tabbed), expected, "{c:#x} at {at} of {len} tabs");
                }
            }
            for at in 0..20 {
                let mut value = vec![b'a'; 20];
                value[at] = c;
                assert_eq!(value_carried(&value), expected, "{c:#x} at {at}");
                let mut mixed = vec![0xff, b'\t', 0x80, b' ', b'~', 0x7e, 0xc3, 0xa9, b'z', b'0'];
                mixed[at % 10] = c;
                assert_eq!(value_carried(&mixed), expected, "{c:#x} at {} of a mixed value", at % 10);
            }
        }
    }

    /// An OPEN of `method` and `target` (any bytes) with one field.
    fn open_of(method: &[u8], target: &[u8]) -> Bytes {
        let mut b = vec![kind::OPEN, 0, 0, 0, 1, 0];
        for part in [method, target] {
            b.extend_from_slice(&u16::try_from(part.len()).unwrap().to_be_bytes());
            b.extend_from_slice(part);
        }
        b.extend_from_slice(b"\0\x01\0\x03x-a\0\x01b");
        Bytes::from(b)
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn methods_and_targets_are_taken_raw_as_the_typed_decoder_takes_them() {
        let limits = DecodeLimits::default();
        let methods: [&[u8]; 7] = [b"GET", b"PURGE", b"", b"G T", b"GE\x7f", b"M\xc3\xa9", b"\xff"];
        let targets: [&[u8]; 8] =
            [b"/", b"/1k", b"", b"/caf\xc3\xa9", b"/\xff", b"/\xc3", b"/long/path?q=1&r=2", b"/\x80"];
        for method in methods {
            for target in targets {
                let msg = open_of(method, target);
                let typed = match Frame::decode(msg.clone(), &limits) {
                    Ok(Frame::Open { head, .. }) => Some((head.method.into_owned(), head.target)),
                    _ => None,
                };
                let raw = RawRequestHead::decode_open(&msg, &limits)
                    .map(|(_, raw, _)| (raw.method.clone().into_owned(), raw.target_str().to_owned()));
                assert_eq!(raw, typed, "{method:?} {target:?}");
            }
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn every_name_byte_is_carried_raw_only_where_a_header_name_keeps_it() {
        let limits = DecodeLimits::default();
        for c in 0..=255u8 {
            let block = [0, 1, 0, 3, b'x', c, b'y', 0, 1, b'v'];
            let typed = match Frame::decode(open_with(&block), &limits) {
                Ok(Frame::Open { head, .. }) => Some(head.headers),
                _ => None,
            };
            let kept = typed.is_some_and(|h| h.len() == 1 && h[0].0.as_str().as_bytes() == [b'x', c, b'y']);
            assert_eq!(RawRequestHead::decode_open(&open_with(&block), &limits).is_some(), kept, "{c:#x}");
            let block = [0, 1, 0, 1, b'x', 0, 1, c];
            let typed = match Frame::decode(open_with(&block), &limits) {
                Ok(Frame::Open { head, .. }) => Some(head.headers),
                _ => None,
            };
            let kept = typed.is_some_and(|h| h.len() == 1 && h[0].1.as_bytes() == [c]);
            assert_eq!(RawRequestHead::decode_open(&open_with(&block), &limits).is_some(), kept, "value {c:#x}");
        }
    }
}
