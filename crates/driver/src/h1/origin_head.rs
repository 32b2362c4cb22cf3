//! A response head read for the tunnel on the client's origin leg
//! ([`parse_origin_response`]): the usual head's fields written by the parse straight
//! into the RESPONSE's [`HeaderBlock`], any other parsed into a list for the general
//! rules (`crates/driver/tests/origin_block.rs` holds the two ways to the same answers).

use bytes::{Buf, BytesMut};
use http::Version;
use localtunnels_core::{FieldCoding, HeaderBlock};

use super::field_cache::FieldCache;
use super::head::{
    field_range, fields, parse_status_head, slices_range, slots, within, HeadError, HeadLimits, ParsedResponse,
    StatusHead, MAX_HEADERS,
};
use super::head_walk::{walk_response, Walked};
use super::origin::{add_content_length, ResponseFramingError};

/// A response head as the origin leg reads it for the tunnel (see
/// [`parse_origin_response`]).
#[derive(Debug)]
pub enum OriginHead {
    /// The usual head, its fields written straight into the RESPONSE's block.
    Block(BlockResponse),
    /// Any other, as a typed list for the general rules.
    Listed(ParsedResponse),
}

impl OriginHead {
    /// The status code.
    pub fn status(&self) -> u16 {
        match self {
            OriginHead::Block(r) => r.status,
            OriginHead::Listed(r) => r.status,
        }
    }

    /// HTTP/1.0 or HTTP/1.1.
    pub fn version(&self) -> Version {
        match self {
            OriginHead::Block(r) => r.version,
            OriginHead::Listed(r) => r.version,
        }
    }
}

/// A response head whose fields went straight from the parser into a [`HeaderBlock`]:
/// one with no `Transfer-Encoding` and no hop-by-hop field (none that a proxy drops or
/// that changes the connection's fate), so that the framing rules need only its
/// `Content-Length` values, folded as they were read.
#[derive(Debug)]
pub struct BlockResponse {
    /// The status code (100-999).
    pub status: u16,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// Every field in order, names lowercase.
    pub block: HeaderBlock,
    /// What its `Content-Length` values say (`origin::add_content_length`).
    pub length: Result<Option<u64>, ResponseFramingError>,
}

/// Reads a response head off the front of `buf`, as [`parse_response_cached`] does,
/// for a proxy that passes it on: the usual head (see [`BlockResponse`]) is written
/// into a [`HeaderBlock`] coded as `coding` says, in the walk that checks its fields,
/// with no `HeaderName`, `HeaderValue` or list in between (~0.5k instructions per
/// response on the client's critical path: docs/BENCHMARKS.md, sixteenth round). The
/// usual head is read by one walk over its bytes (`head_walk`, no httparse: ~0.2k
/// fewer, twenty-first round), which takes only heads httparse reads the same way;
/// any other head is parsed by httparse, into the block if it is the usual head, else
/// into a list, as before. All ways refuse the same heads. A head whose bytes are the
/// last walked head's (the connection's [`FieldCache`] keeps it: `repeat_head`) is not
/// read again: what its walk made is copied (~0.87k instructions fewer per response,
/// docs/BENCHMARKS.md, twenty-fourth round).
pub fn parse_origin_response(
    buf: &mut BytesMut,
    limits: &HeadLimits,
    cache: &mut FieldCache,
    coding: FieldCoding,
) -> Result<Option<OriginHead>, HeadError> {
    // One walk over the head (`head_walk`): the usual head's fields written into the
    // block as they are read; every field's place kept too, so that a head with a field
    // for the general rules (an nginx's `Connection`, say) makes its list from the same
    // walk, with no httparse (a second walk for it, or httparse, cost ~1-3k instructions
    // more on nginx's head: docs/BENCHMARKS.md, twenty-first round). A head the walk
    // does not take whole is parsed by httparse below, as before.
    let max = limits.max_headers.min(MAX_HEADERS);
    let window = within(buf, limits);
    // The last head again, byte for byte: what its walk made, copied (`repeat_head`).
    if let Some((len, head)) = cache.repeat.repeat(window, max, coding) {
        buf.advance(len);
        return Ok(Some(OriginHead::Block(head)));
    }
    let mut block = HeaderBlock::new(coding);
    let mut length = Ok(None);
    let mut lean = true;
    let mut ranges = std::mem::take(&mut cache.ranges);
    let walked = walk_response(window, max, |name, lower, value| {
        ranges.push(slices_range(window, name, value));
        if lean {
            let kind = match lower {
                Some(lower) => lean_lower(lower),
                None => lean_field(name),
            };
            match kind {
                Lean::Plain => {}
                Lean::ContentLength => add_content_length(&mut length, value),
                Lean::Not => {
                    lean = false;
                    return true;
                }
            }
            // The walk held the name to token characters and the value to visible
            // bytes, spaces, tabs and obs-text, as httparse does, and lowercased the
            // name as it read it (unless it is longer than any table name).
            match lower {
                Some(lower) => block.push_parsed_lower(lower, value),
                None => block.push_parsed(name, value),
            }
        }
        true
    });
    match walked {
        Some(Walked { len, status, version }) if lean => {
            ranges.clear();
            cache.ranges = ranges;
            let head = BlockResponse { status, version, block, length };
            cache.repeat.walked(&window[..len], max, &head);
            buf.advance(len);
            return Ok(Some(OriginHead::Block(head)));
        }
        Some(Walked { len, status, version }) => {
            // The general way: the list, as `parse_response_cached` makes it.
            let raw = buf.split_to(len).freeze();
            let headers = fields(&raw, &ranges, Some(cache));
            ranges.clear();
            cache.ranges = ranges;
            return Ok(Some(OriginHead::Listed(ParsedResponse { status, version, headers: headers? })));
        }
        None => {
            ranges.clear();
            cache.ranges = ranges;
        }
    }
    let mut slots = slots();
    let Some(StatusHead { len, status, version, fields: parsed }) = parse_status_head(buf, limits, &mut slots)? else {
        return Ok(None);
    };
    let mut block = HeaderBlock::new(coding);
    let mut length = Ok(None);
    let mut lean = true;
    for h in parsed {
        match lean_field(h.name.as_bytes()) {
            Lean::Plain => {}
            Lean::ContentLength => add_content_length(&mut length, h.value),
            Lean::Not => {
                lean = false;
                break;
            }
        }
        // httparse held the name to token characters and the value to visible bytes,
        // spaces, tabs and obs-text (what `HeaderName`/`HeaderValue` take).
        block.push_parsed(h.name.as_bytes(), h.value);
    }
    if lean {
        buf.advance(len);
        return Ok(Some(OriginHead::Block(BlockResponse { status, version, block, length })));
    }
    // The general way: the list (from the same parse), as `parse_response_cached` makes it.
    let mut ranges = std::mem::take(&mut cache.ranges);
    ranges.extend(parsed.iter().map(|h| field_range(buf, h)));
    let raw = buf.split_to(len).freeze();
    let headers = fields(&raw, &ranges, Some(cache));
    ranges.clear();
    cache.ranges = ranges;
    Ok(Some(OriginHead::Listed(ParsedResponse { status, version, headers: headers? })))
}

/// Whether the token `name` is `known` (lowercase letters and `-`) in any case. A
/// token's byte with its 0x20 bit set is one of `known`'s only if it is that letter in
/// either case (or `-` itself: CR, the other byte it could be, is no token character),
/// so one OR per byte folds the case, without `eq_ignore_ascii_case`'s branches.
fn folded_eq(name: &[u8], known: &[u8]) -> bool {
    name.len() == known.len() && name.iter().zip(known).fold(0, |diff, (a, k)| diff | ((a | 0x20) ^ k)) == 0
}

/// How a response's field bears on taking the lean way.
#[derive(Debug, PartialEq)]
enum Lean {
    /// Passed on as it is, no rule reads it.
    Plain,
    /// `Content-Length`: the framing reads it.
    ContentLength,
    /// `Transfer-Encoding`, or a hop-by-hop field (`Connection` and the fields a proxy
    /// drops): the general way.
    Not,
}

/// Which [`Lean`] a field named `name` (any case) is; by length first, as most names
/// are ruled out by one comparison.
fn lean_field(name: &[u8]) -> Lean {
    lean_by(name, |known| folded_eq(name, known))
}

/// [`lean_field`] of a name the walk lowercased: compared as it is, with no case to
/// fold (the compiler compares a known length a word at a time).
fn lean_lower(lower: &[u8]) -> Lean {
    lean_by(lower, |known| lower == known)
}

/// [`lean_field`] with `is` telling whether the name is a given lowercase name.
#[inline(always)]
fn lean_by(name: &[u8], is: impl Fn(&[u8]) -> bool) -> Lean {
    let not = match name.len() {
        14 if is(b"content-length") => return Lean::ContentLength,
        2 => is(b"te"),
        7 => is(b"upgrade"),
        10 => is(b"connection") || is(b"keep-alive"),
        16 => is(b"proxy-connection"),
        17 => is(b"transfer-encoding"),
        18 => is(b"proxy-authenticate"),
        19 => is(b"proxy-authorization"),
        _ => false,
    };
    if not {
        Lean::Not
    } else {
        Lean::Plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lowercased_name_is_sorted_as_the_name_in_any_case() {
        let names = [
            "content-length",
            "te",
            "upgrade",
            "connection",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "proxy-authenticate",
            "proxy-authorization",
            "content-lengtx",
            "tf",
            "date",
            "x-connection",
            "",
        ];
        for name in names {
            let upper = name.to_ascii_uppercase();
            assert_eq!(lean_lower(name.as_bytes()), lean_field(upper.as_bytes()), "{name}");
            assert_eq!(lean_lower(name.as_bytes()), lean_field(name.as_bytes()), "{name}");
        }
        assert_eq!(lean_lower(b"content-length"), Lean::ContentLength);
        assert_eq!(lean_lower(b"connection"), Lean::Not);
        assert_eq!(lean_lower(b"date"), Lean::Plain);
    }
}
