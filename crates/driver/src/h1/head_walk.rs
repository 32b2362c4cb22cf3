//! A response head read in one walk over its bytes ([`walk_response`]), for the origin
//! leg's usual heads: the status line read in place and each field handed to the
//! caller as it is found, with no `httparse` call in between; and a request head
//! likewise ([`walk_request`]), for the server's HTTP/1 visitors.
//!
//! httparse spent ~0.72k instructions on the benchmark origin's head (a status line and
//! two fields, `content-length` and `date`: docs/BENCHMARKS.md, twenty-first round):
//! its byte-at-a-time name loop, its AVX2 value matcher set up for values shorter than
//! the 32 bytes it takes at once, its reason loop. This walk reads names through a
//! table, values and the reason eight bytes at a time.
//!
//! It takes only heads that httparse reads the same way, and refuses none: a head it
//! does not take whole (leading empty lines, a bare LF, a space before a colon, a
//! control byte, a folded line, a head cut short, more fields than the limit) is
//! `None`, and the caller parses it with httparse, which then answers (its error, its
//! wait for more bytes, or its head) as it always did. The tests below hold every head
//! the walk takes to httparse's reading of it.

use http::Version;

/// The status line and length of a head [`walk_response`] took.
#[derive(Debug, PartialEq)]
pub(super) struct Walked {
    /// The head's length, the empty line that ends it included.
    pub(super) len: usize,
    /// The status code (three digits, as httparse reads them).
    pub(super) status: u16,
    /// HTTP/1.0 or HTTP/1.1.
    pub(super) version: Version,
}

/// Reads the response head at the front of `buf`: `HTTP/1.1` or `HTTP/1.0`, one space,
/// three digits, one space, a reason, CRLF; then fields `name:value` each ending in
/// CRLF (the name token characters, the value's leading and trailing spaces and tabs
/// left out, as httparse leaves them), at most `max_fields` of them; then CRLF. Each
/// field goes to `field` as it is read: its name, the name lowercased (when it is at most
/// [`LOWERED`] bytes long, else `None`) and its value; `field` returning `false` stops
/// the walk. `None` for anything else, or when stopped (see the module docs: the caller
/// then asks httparse).
pub(super) fn walk_response<'b>(
    buf: &'b [u8],
    max_fields: usize,
    mut field: impl FnMut(&'b [u8], Option<&[u8]>, &'b [u8]) -> bool,
) -> Option<Walked> {
    let (line, mut rest) = buf.split_first_chunk::<13>()?;
    // The version as one word (two 9-byte comparisons cost ~20 instructions).
    let &[h, t, t2, p, slash, one, dot, minor, space0, d0, d1, d2, space] = line;
    let version = match u64::from_le_bytes([h, t, t2, p, slash, one, dot, minor]) {
        HTTP_11 => Version::HTTP_11,
        HTTP_10 => Version::HTTP_10,
        _ => return None,
    };
    let (d0, d1, d2) = (d0.wrapping_sub(b'0'), d1.wrapping_sub(b'0'), d2.wrapping_sub(b'0'));
    if d0 > 9 || d1 > 9 || d2 > 9 || space0 != b' ' || space != b' ' {
        return None;
    }
    let status = u16::from(d0) * 100 + u16::from(d1) * 10 + u16::from(d2);
    // The reason: the bytes httparse takes there are the bytes a value takes.
    rest = after_crlf(rest, text_run(rest))?;
    let end = walk_fields(rest, max_fields, &mut field)?;
    Some(Walked { len: buf.len() - end.len(), status, version })
}

/// The request line and length of a head [`walk_request`] took: where its method and
/// target are in the head.
#[derive(Debug, PartialEq)]
pub(super) struct WalkedRequest {
    /// The head's length, the empty line that ends it included.
    pub(super) len: usize,
    /// The method's bytes (token characters; `GET` for most).
    pub(super) method: std::ops::Range<usize>,
    /// The target's bytes (visible ASCII, as httparse reads them).
    pub(super) target: std::ops::Range<usize>,
    /// HTTP/1.0 or HTTP/1.1.
    pub(super) version: Version,
}

/// Reads the request head at the front of `buf`: a method (token characters), one
/// space, a target of visible ASCII bytes, one space, `HTTP/1.1` or `HTTP/1.0`, CRLF;
/// then fields as [`walk_response`] reads them (each handed to `field`), then CRLF.
/// `None` for anything else, as [`walk_response`] (the caller then asks httparse,
/// which answers as it always did): leading empty lines, two spaces, a target with
/// obs-text (httparse's UTF-8 check), a bare LF, a head cut short.
///
/// httparse spent ~0.56k instructions on the benchmark's one-field request head (its
/// request line's three parsers, `from_utf8` over the target, the per-field set-up:
/// docs/BENCHMARKS.md, twenty-third round).
pub(super) fn walk_request<'b>(
    buf: &'b [u8],
    max_fields: usize,
    mut field: impl FnMut(&'b [u8], Option<&[u8]>, &'b [u8]) -> bool,
) -> Option<WalkedRequest> {
    // `GET ` as one word (nearly every request); else a run of token characters.
    let method_len = match buf.first_chunk::<4>() {
        Some(b"GET ") => 3,
        _ => buf.iter().position(|&b| LOWER_TOKEN[usize::from(b)] == 0)?,
    };
    let target_at = match buf.get(method_len..)? {
        [b' ', ..] if method_len > 0 => method_len + 1,
        _ => return None,
    };
    let rest = buf.get(target_at..)?;
    // httparse's target bytes (`!` to `~`, and obs-text, which it checks as UTF-8: left
    // to it), ended by a space.
    let target_len = rest.iter().position(|b| !(b'!'..=b'~').contains(b))?;
    let (line, rest) = rest.get(target_len..)?.split_first_chunk::<11>()?;
    let &[space, h, t, t2, p, slash, one, dot, minor, cr, lf] = line;
    let version = match u64::from_le_bytes([h, t, t2, p, slash, one, dot, minor]) {
        HTTP_11 => Version::HTTP_11,
        HTTP_10 => Version::HTTP_10,
        _ => return None,
    };
    if target_len == 0 || space != b' ' || cr != b'\r' || lf != b'\n' {
        return None;
    }
    let end = walk_fields(rest, max_fields, &mut field)?;
    Some(WalkedRequest {
        len: buf.len() - end.len(),
        method: 0..method_len,
        target: target_at..target_at + target_len,
        version,
    })
}

/// The fields at the front of `rest` (after a head's first line) up to the empty line
/// that ends the head, each handed to `field` (see [`walk_response`]): what follows the
/// head, or `None` when a field is not one the walk takes, the head is cut short, there
/// are more than `max_fields`, or `field` stops it.
#[inline(always)]
fn walk_fields<'b>(
    mut rest: &'b [u8],
    max_fields: usize,
    field: &mut impl FnMut(&'b [u8], Option<&[u8]>, &'b [u8]) -> bool,
) -> Option<&'b [u8]> {
    let mut fields = 0;
    let mut lower = [0u8; LOWERED + 8];
    loop {
        // Slice patterns, not `strip_prefix` (a call of its own, ~9 instructions a line).
        if let [b'\r', b'\n', end @ ..] = rest {
            return Some(end);
        }
        // The name's token check and its lowercase copy in one pass (the block then
        // neither copies nor lowercases it: ~50 instructions a field).
        let name_len = name_run(rest, &mut lower)?;
        let (name, after) = rest.split_at(name_len);
        let after = match after.split_first() {
            Some((b':', after)) if name_len > 0 => after,
            _ => return None,
        };
        // The run from the colon on (spaces and tabs are value bytes to it), then the
        // value trimmed at both ends: the leading blanks stepped over in the run's
        // slice, not in `after`, which the compiler kept five pointers for (~25
        // instructions a field more).
        let run = text_run(after);
        let mut value = after.get(..run)?;
        while let [b' ' | b'\t', v @ ..] = value {
            value = v;
        }
        while let [v @ .., b' ' | b'\t'] = value {
            value = v;
        }
        rest = after_crlf(after, run)?;
        fields += 1;
        if fields > max_fields || !field(name, lower.get(..name_len).filter(|_| name_len <= LOWERED), value) {
            return None;
        }
    }
}

/// How many token characters (a header name's bytes) start `bytes`, with them written
/// lowercase into `lower` (the first [`LOWERED`] of them at least; whole words are
/// written, hence its eight bytes more);
/// `None` if every byte is one (the name's end is not in `bytes` yet). Eight bytes at a
/// time: letters, digits and `-` (nearly every name's bytes) are found by range tests
/// on each byte's low seven bits, with no carry between bytes, and a word of them is
/// lowercased by setting the 0x20 bit of its letters; a byte of any other kind ends
/// the word there, and is looked up in [`LOWER_TOKEN`] (one of `!#$%&'*+.^_`|~`, the
/// run goes on after it). A byte at a time with the table cost ~8 instructions a byte.
#[inline]
fn name_run(bytes: &[u8], lower: &mut [u8; LOWERED + 8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = ONES * 0x80;
    const LOW7: u64 = ONES * 0x7f;
    // Bytes of `x` (each below 0x80) from `lo` to `hi`, as their 0x80 bits: no sum
    // passes 0xff, so no byte carries into the next.
    let within = |x: u64, lo: u8, hi: u8| {
        x.wrapping_add(ONES * u64::from(0x80 - lo)) & !x.wrapping_add(ONES * u64::from(0x7f - hi))
    };
    let mut at = 0;
    while let Some(word) = bytes.get(at..).and_then(|b| b.first_chunk::<8>()) {
        let x = u64::from_le_bytes(*word);
        let low7 = x & LOW7;
        let letters = within(low7 | (ONES * 0x20), b'a', b'z');
        let dash = low7 ^ (ONES * u64::from(b'-'));
        // A byte's 0x80 bit set when it is not zero (no carry between bytes either).
        let not_dash = ((dash & LOW7).wrapping_add(LOW7) | dash) & HIGH;
        let ok = (letters | within(low7, b'0', b'9') | !not_dash) & !x & HIGH;
        let folded = (x | ((letters & HIGH) >> 2)).to_le_bytes();
        if let Some(dst) = lower.get_mut(at..at + 8) {
            dst.copy_from_slice(&folded);
        }
        let stops = !ok & HIGH;
        if stops == 0 {
            at += 8;
            continue;
        }
        at += (stops.trailing_zeros() / 8) as usize;
        // Not a letter, digit or `-`: another token character, or the name's end.
        let low = LOWER_TOKEN[usize::from(bytes[at])];
        if low == 0 {
            return Some(at);
        }
        if let Some(slot) = lower.get_mut(at) {
            *slot = low;
        }
        at += 1;
    }
    // Fewer than eight bytes left: a byte at a time.
    loop {
        let low = LOWER_TOKEN[usize::from(*bytes.get(at)?)];
        if low == 0 {
            return Some(at);
        }
        if let Some(slot) = lower.get_mut(at) {
            *slot = low;
        }
        at += 1;
    }
}

/// `HTTP/1.1` and `HTTP/1.0` as little-endian words.
const HTTP_11: u64 = u64::from_le_bytes(*b"HTTP/1.1");
const HTTP_10: u64 = u64::from_le_bytes(*b"HTTP/1.0");

/// What follows `bytes[..run]` and the CRLF after it; `None` if no CRLF is there.
#[inline]
fn after_crlf(bytes: &[u8], run: usize) -> Option<&[u8]> {
    match bytes.get(run..)? {
        [b'\r', b'\n', after @ ..] => Some(after),
        _ => None,
    }
}

/// How many bytes at the front of `bytes` a header value takes (httparse's value bytes:
/// visible ASCII, space, tab and obs-text; CR, LF, the other control bytes and DEL end
/// the run). Eight bytes at a time, read little-endian: the "has a byte less than n"
/// test of the bit-twiddling hacks flags bytes below 0x20 and bytes equal to 0x7f, and
/// its lowest flag is exact (no borrow reaches the first byte it flags), so the first
/// stop is found from the flags' trailing zeros with no byte loop (a byte-at-a-time
/// tail cost ~12 instructions a byte: ~0.2k a response). A tab, flagged too, is
/// stepped over.
fn text_run(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let mut at = 0;
    while let Some(word) = bytes.get(at..).and_then(|b| b.first_chunk::<8>()) {
        let x = u64::from_le_bytes(*word);
        let del = x ^ (ONES * 0x7f);
        let stops = (x.wrapping_sub(ONES * 0x20) & !x | del.wrapping_sub(ONES) & !del) & HIGH;
        if stops == 0 {
            at += 8;
            continue;
        }
        at += (stops.trailing_zeros() / 8) as usize;
        if bytes.get(at) != Some(&b'\t') {
            return at;
        }
        at += 1;
    }
    // Fewer than eight bytes left (a head's last value is followed by at least its
    // CRLF and the empty line, so this is rare).
    at + bytes.get(at..).unwrap_or_default().iter().take_while(|&&c| (c >= b' ' && c != 0x7f) || c == b'\t').count()
}

/// The longest name handed to the caller lowercased (a power of two: the copy's index
/// is masked). Longer than the static table's longest name (32 bytes), so that every
/// name the block looks up in the table comes lowercased.
pub(super) const LOWERED: usize = 64;

/// Token characters (RFC 9110 §5.6.2), the bytes httparse takes in a header name, as
/// their lowercase; 0 (no token character) for any other byte.
static LOWER_TOKEN: [u8; 256] = {
    let mut map = [0; 256];
    let mut b = 0u8;
    loop {
        let token = b.is_ascii_alphanumeric()
            || matches!(b, b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+')
            || matches!(b, b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~');
        if token {
            map[b as usize] = b.to_ascii_lowercase();
        }
        if b == u8::MAX {
            break map;
        }
        b += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;

    /// A head's status line and length, and its fields' names and values.
    type Read = (Walked, Vec<(Vec<u8>, Vec<u8>)>);

    /// What httparse reads of `buf` when its head is complete: the same shape as a walk.
    fn httparse_reads(buf: &[u8], max_fields: usize) -> Option<Read> {
        let mut slots = vec![httparse::EMPTY_HEADER; max_fields];
        let mut res = httparse::Response::new(&mut slots);
        let Ok(httparse::Status::Complete(len)) = res.parse(buf) else { return None };
        let version = if res.version? == 1 { Version::HTTP_11 } else { Version::HTTP_10 };
        let fields = res.headers.iter().map(|h| (h.name.as_bytes().to_vec(), h.value.to_vec())).collect();
        Some((Walked { len, status: res.code?, version }, fields))
    }

    fn walks(buf: &[u8], max_fields: usize) -> Option<Read> {
        let mut fields = Vec::new();
        let walked = walk_response(buf, max_fields, |n, lower, v| {
            // The name lowercased, whenever it is short enough.
            assert_eq!(lower.map(<[u8]>::to_vec), (n.len() <= LOWERED).then(|| n.to_ascii_lowercase()));
            fields.push((n.to_vec(), v.to_vec()));
            true
        })?;
        Some((walked, fields))
    }

    /// Every head the walk takes, httparse reads alike.
    fn check(buf: &[u8], max_fields: usize) -> bool {
        let walked = walks(buf, max_fields);
        if let Some(w) = &walked {
            assert_eq!(Some(w), httparse_reads(buf, max_fields).as_ref(), "{:?}", String::from_utf8_lossy(buf));
        }
        walked.is_some()
    }

    #[test]
    fn a_value_run_ends_where_a_byte_by_byte_run_ends() {
        let by_byte = |b: &[u8]| b.iter().take_while(|&&c| (c >= b' ' && c != 0x7f) || c == b'\t').count();
        for c in 0..=255u8 {
            for len in 0..26 {
                for at in 0..len {
                    let mut value = vec![b'a'; len];
                    value[at] = c;
                    assert_eq!(text_run(&value), by_byte(&value), "{c:#x} at {at} of {len}");
                    // After a tab, obs-text, and a byte just above or below a stop.
                    let mut mixed: Vec<u8> = [b'\t', 0x80, 0x20, 0x7e, 0xff, 0x21, b'\t', 0x1f].repeat(4);
                    mixed.truncate(len);
                    mixed[at] = c;
                    assert_eq!(text_run(&mixed), by_byte(&mixed), "{c:#x} at {at} of {mixed:?}");
                }
            }
        }
    }

    const USUAL: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 1024\r\ndate: Mon, 07 Dec 2026 09:46:03 GMT\r\n\r\nbody";

    #[test]
    fn the_usual_heads_are_walked_as_httparse_reads_them() {
        let heads: &[&[u8]] = &[
            USUAL,
            b"HTTP/1.0 404 Not Found\r\nServer: x\r\nContent-Type: text/html; charset=utf-8\r\n\r\n",
            b"HTTP/1.1 204 \r\n\r\n",
            b"HTTP/1.1 200 OK\r\nx-empty:\r\nx-blank:  \t \r\nx-pad: \t a b \t\r\nx-tab:\ta\tb\r\n\r\n",
            b"HTTP/1.1 200 caf\xc3\xa9 \t\r\nx-obs: caf\xc3\xa9\x80\xff\r\nx-long: 0123456789abcdef0123456789abcdef01\r\n\r\n",
            b"HTTP/1.1 999 \x80\r\n!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n",
            // Blanks before a value longer than a word, and a value of blanks alone.
            b"HTTP/1.1 200 OK\r\nx-lead:\t          \t v w \r\nx-all:            \t\r\nx: \r\n\r\n",
        ];
        for head in heads {
            assert!(check(head, 100), "{:?}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn a_name_run_ends_where_a_byte_by_byte_run_ends_and_is_lowercased() {
        let by_byte = |b: &[u8]| b.iter().position(|&c| LOWER_TOKEN[usize::from(c)] == 0);
        let check = |name: &[u8]| {
            let mut lower = [0u8; LOWERED + 8];
            let run = name_run(name, &mut lower);
            assert_eq!(run, by_byte(name), "{name:?}");
            let len = run.unwrap_or(name.len());
            if len <= LOWERED {
                assert_eq!(lower[..len], name[..len].to_ascii_lowercase(), "{name:?}");
            }
        };
        for c in 0..=255u8 {
            for len in 0..26 {
                for at in 0..len {
                    let mut name = vec![b'a'; len];
                    name[at] = c;
                    check(&name);
                    // Among every kind of token byte, and bytes just outside the ranges.
                    let mut mixed: Vec<u8> = b"Zz-0a9A_~`/:@[{".repeat(2);
                    mixed.truncate(len);
                    mixed[at] = c;
                    check(&mixed);
                }
            }
        }
        for len in 0..=80 {
            check(&b"Ab-9".repeat(20)[..len]);
            check(&[&b"Ab-9".repeat(20)[..len], b": v\r\n"].concat());
            check(&[&b"Ab-9_".repeat(20)[..len], b": v\r\n"].concat());
        }
    }

    #[test]
    fn names_in_any_case_and_of_any_length_are_walked_as_httparse_reads_them() {
        // Around the length handed over lowercased, and the table's longest name.
        let letters = b"aBcDeFgHiJkLmNoPqRsTuVwXyZ-0123456789!#$%&'*+.^_`|~".repeat(3);
        for len in 1..letters.len() {
            let mut head = b"HTTP/1.1 200 OK\r\nContent-LENGTH: 1\r\n".to_vec();
            head.extend_from_slice(&letters[..len]);
            head.extend_from_slice(b": v\r\nDATE: x\r\n\r\n");
            assert!(check(&head, 100), "{len}");
        }
        assert!(check(b"HTTP/1.1 200 OK\r\nACCESS-Control-Allow-Credentials: true\r\n\r\n", 100));
    }

    #[test]
    fn what_the_walk_does_not_take_is_left_to_httparse() {
        let left: &[&[u8]] = &[
            b"\r\nHTTP/1.1 200 OK\r\n\r\n",        // a leading empty line (httparse skips it)
            b"HTTP/1.1 200 OK\n\n",                // bare LFs (httparse takes them)
            b"HTTP/1.1 200\r\n\r\n",               // no reason (httparse takes it)
            b"HTTP/1.1  200 OK\r\n\r\n",           // two spaces
            b"HTTP/1.2 200 OK\r\n\r\n",            // a version httparse refuses
            b"HTTP/1.1 2x0 OK\r\n\r\n",            // a status httparse refuses
            b"HTTP/1.1 200 O\x01K\r\n\r\n",        // a control byte in the reason
            b"HTTP/1.1 200 OK\r\nx : 1\r\n\r\n",   // a space before the colon
            b"HTTP/1.1 200 OK\r\n: 1\r\n\r\n",     // no name
            b"HTTP/1.1 200 OK\r\nx 1\r\n\r\n",     // no colon
            b"HTTP/1.1 200 OK\r\nx: a\rb\r\n\r\n", // a CR alone
            b"HTTP/1.1 200 OK\r\nx: a\nb: c\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nx: a\x7fb\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nx: 1\r\n folded\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nx: 1\r\n", // cut short
            b"HTTP/1.1 200 OK\r\nx: 1\r\n\r",
            b"HTTP/1.1 200",
        ];
        for head in left {
            assert!(!check(head, 100), "{:?}", String::from_utf8_lossy(head));
        }
        // More fields than the limit (httparse: `TooManyHeaders`); at the limit, taken.
        assert!(!check(b"HTTP/1.1 200 OK\r\na: 1\r\nb: 2\r\n\r\n", 1));
        assert!(check(b"HTTP/1.1 200 OK\r\na: 1\r\nb: 2\r\n\r\n", 2));
        // Stopped by the caller.
        assert_eq!(walk_response(USUAL, 100, |n, _, _| n != b"date"), None);
    }

    #[test]
    fn every_byte_anywhere_in_the_usual_head_is_walked_as_httparse_reads_it_or_left_to_it() {
        let head = &USUAL[..USUAL.len() - 4];
        let mut taken = 0;
        for at in 0..head.len() {
            for c in 0..=255u8 {
                let mut changed = head.to_vec();
                changed[at] = c;
                taken += usize::from(check(&changed, 100));
                // The same byte put in, not over.
                changed.insert(at, c);
                changed[at + 1] = head[at];
                taken += usize::from(check(&changed, 100));
            }
            // Cut there: never taken.
            assert!(!check(&head[..at], 100), "cut at {at}");
        }
        assert!(taken > 10_000, "{taken}");
    }

    /// A request head's line and length, and its fields' names and values.
    type ReadRequest = (WalkedRequest, Vec<(Vec<u8>, Vec<u8>)>);

    /// What httparse reads of a complete request head `buf`, in a walk's shape.
    fn httparse_reads_request(buf: &[u8], max_fields: usize) -> Option<ReadRequest> {
        let mut slots = vec![httparse::EMPTY_HEADER; max_fields];
        let mut req = httparse::Request::new(&mut slots);
        let Ok(httparse::Status::Complete(len)) = req.parse(buf) else { return None };
        let version = if req.version? == 1 { Version::HTTP_11 } else { Version::HTTP_10 };
        let at = |part: &[u8]| part.as_ptr() as usize - buf.as_ptr() as usize;
        let (method, path) = (req.method?.as_bytes(), req.path?.as_bytes());
        let method = at(method)..at(method) + method.len();
        let target = at(path)..at(path) + path.len();
        let fields = req.headers.iter().map(|h| (h.name.as_bytes().to_vec(), h.value.to_vec())).collect();
        Some((WalkedRequest { len, method, target, version }, fields))
    }

    fn walks_request(buf: &[u8], max_fields: usize) -> Option<ReadRequest> {
        let mut fields = Vec::new();
        let walked = walk_request(buf, max_fields, |n, _, v| {
            fields.push((n.to_vec(), v.to_vec()));
            true
        })?;
        Some((walked, fields))
    }

    /// Every request head the walk takes, httparse reads alike (where the method and
    /// the target are, the version, the length, every name and value).
    fn check_request(buf: &[u8], max_fields: usize) -> bool {
        let walked = walks_request(buf, max_fields);
        if let Some(w) = &walked {
            let read = httparse_reads_request(buf, max_fields);
            assert_eq!(Some(w), read.as_ref(), "{:?}", String::from_utf8_lossy(buf));
        }
        walked.is_some()
    }

    /// The benchmark's request head (wrk's, with its `Host`).
    const USUAL_REQUEST: &[u8] = b"GET /1k HTTP/1.1\r\nHost: cg.localhost:41234\r\n\r\nnext";

    #[test]
    fn the_usual_request_heads_are_walked_as_httparse_reads_them() {
        let heads: &[&[u8]] = &[
            USUAL_REQUEST,
            b"GET / HTTP/1.0\r\n\r\n",
            b"POST /up?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhello",
            b"PURGE /x HTTP/1.1\r\nHost: a\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n",
            b"GET http://a.localhost:81/p?q HTTP/1.1\r\nAccept: */*\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
            b"CONNECT a.localhost:443 HTTP/1.1\r\nHost: a.localhost:443\r\n\r\n",
            b"GET /{\"j\":1}?q=??{k:[2]}`^#frag HTTP/1.1\r\nHost: a\r\n\r\n",
            b"!#$%&'*+-.^_`|~09azAZ /~!\"#$%&'()*+,-./09:;<=>?@AZ[\\]^_`az{|} HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nx-empty:\r\nx-blank:  \t \r\nx-pad: \t a b \t\r\nx-obs: caf\xc3\xa9\x80\xff\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a.localhost\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:133.0) \
              Gecko/20100101 Firefox/133.0\r\nAccept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;\
              q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n\
              Sec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Site: none\r\n\
              Sec-Fetch-User: ?1\r\nUpgrade-Insecure-Requests: 1\r\nPriority: u=0, i\r\n\r\n",
        ];
        for head in heads {
            assert!(check_request(head, 100), "{:?}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn what_the_request_walk_does_not_take_is_left_to_httparse() {
        let left: &[&[u8]] = &[
            b"\r\nGET / HTTP/1.1\r\n\r\n",      // a leading empty line (httparse skips it)
            b"\nGET / HTTP/1.1\r\n\r\n",        // a leading bare LF
            b"GET / HTTP/1.1\n\n",              // bare LFs (httparse takes them)
            b"GET / HTTP/1.1\r\nHost: a\n\r\n", // a bare LF after a field
            b"GET  / HTTP/1.1\r\n\r\n",         // two spaces
            b"GET /  HTTP/1.1\r\n\r\n",
            b" GET / HTTP/1.1\r\n\r\n",           // no method
            b"GET\t/ HTTP/1.1\r\n\r\n",           // a tab for a space
            b"G(T / HTTP/1.1\r\n\r\n",            // a method byte that is no token
            b"GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n", // obs-text in the target (UTF-8: httparse takes it)
            b"GET /caf\xe9 HTTP/1.1\r\n\r\n",     // obs-text that is not UTF-8 (httparse refuses it)
            b"GET /a\x7fb HTTP/1.1\r\n\r\n",      // DEL in the target
            b"GET / HTTP/1.2\r\n\r\n",            // a version httparse refuses
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET / http/1.1\r\n\r\n",
            b"GET / HTTP/1.1 \r\n\r\n",                   // a space after the version
            b"GET / HTTP/1.1\r\nx : 1\r\n\r\n",           // a space before the colon
            b"GET / HTTP/1.1\r\n: 1\r\n\r\n",             // no name
            b"GET / HTTP/1.1\r\nx: a\rb\r\n\r\n",         // a CR alone
            b"GET / HTTP/1.1\r\nx: 1\r\n folded\r\n\r\n", // obs-fold
            b"GET / HTTP/1.1\r\n host: a\r\n\r\n",        // a space before the first name
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",          // HTTP/2's preface
            b"GET / HTTP/1.1\r\nx: 1\r\n",                // cut short
            b"GET / HTTP/1.1\r\nx: 1\r\n\r",
            b"GET / HTTP/1.1\r",
            b"GET / HTTP/1.",
            b"GET /",
            b"GET ",
            b"GET",
            b"",
        ];
        for head in left {
            assert!(!check_request(head, 100), "{:?}", String::from_utf8_lossy(head));
        }
        // More fields than the limit (httparse: `TooManyHeaders`); at the limit, taken.
        assert!(!check_request(b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\n\r\n", 1));
        assert!(check_request(b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\n\r\n", 2));
        assert!(check_request(b"GET / HTTP/1.1\r\n\r\n", 0));
    }

    #[test]
    fn every_byte_anywhere_in_the_usual_request_heads_is_walked_as_httparse_reads_it_or_left_to_it() {
        let post = &b"POST /a?b=c HTTP/1.0\r\nContent-Length: 0\r\nX: y\r\n\r\n"[..];
        let mut taken = 0;
        for head in [&USUAL_REQUEST[..USUAL_REQUEST.len() - 4], post] {
            for at in 0..head.len() {
                for c in 0..=255u8 {
                    let mut changed = head.to_vec();
                    changed[at] = c;
                    taken += usize::from(check_request(&changed, 100));
                    // The same byte put in, not over.
                    changed.insert(at, c);
                    changed[at + 1] = head[at];
                    taken += usize::from(check_request(&changed, 100));
                }
                // Cut there: never taken.
                assert!(!check_request(&head[..at], 100), "cut at {at}");
            }
        }
        assert!(taken > 10_000, "{taken}");
    }
}
