//! The static table of header fields (HPACK's idea, RFC 7541 appendix A, with the
//! fields a tunnel carries on every request): towards a peer that announced
//! [`features::INDEXED_HEADERS`](crate::features::INDEXED_HEADERS), a header block
//! writes a name found here as a one-byte index instead of its text, and a whole field
//! (name and value) found here as one byte. `docs/PROTOCOL.md` §2 ("Header blocks")
//! lists both tables: they are part of the protocol, so an entry is never moved or
//! removed, and new ones go only at the end under a new feature bit.
//!
//! Why: a decoded name otherwise goes through `HeaderName::from_bytes` (a parse and a
//! lookup, ~0.11k instructions a field), and a decoded value through
//! `HeaderValue::from_maybe_shared` (a check of every byte and a reference to the
//! frame's buffer); an index becomes the shared constant at once. On the sending side
//! an index is found by a `match` on the name's text (which the compiler turns into a
//! switch on the length and a comparison or two), not by a scan of the table.

use super::types::{HeaderName, HeaderValue};

/// Index bytes `0x00..0x7f` are names (`NAMES[i]`); `PAIR_BIT | i` is the whole field
/// `PAIRS[i]`.
pub(super) const PAIR_BIT: u8 = 0x80;

/// Not an index: the code of a field written as text (the names table stops below it).
pub(super) const TEXT: u8 = 0x7f;

/// Declares the names table and its reverse lookup from one list, so the two cannot
/// disagree. The wire index of each name is written next to it.
macro_rules! names {
    ($($index:literal => $name:literal,)*) => {
        /// Header names by wire index.
        pub(super) static NAMES: [HeaderName; [$($index),*].len()] = [$(HeaderName::from_static($name)),*];

        /// `NAMES` as bytes, for a reader of a block that wants no `HeaderName`
        /// (`HeaderName::as_str` is a `match` over the standard names).
        static NAME_BYTES: [&[u8]; [$($index),*].len()] = [$($name.as_bytes()),*];

        /// The wire index of a name (lowercase, as a `HeaderName` holds it). By its
        /// bytes: a block written from a parser's bytes has no `&str` of the name, and
        /// making one (`str::from_utf8`) cost ~40 instructions a field. A chain of
        /// slice comparisons, as a `match` on a `&str` is lowered (the compiler makes it
        /// a switch on the length); a `match` on byte-string patterns compiled to a
        /// function of its own testing byte by byte (+0.17k per request on the server).
        pub(super) fn name_index(name: &[u8]) -> Option<u8> {
            $(if name == $name.as_bytes() {
                return Some($index);
            })*
            None
        }
    };
}

/// Declares the fields table and its reverse lookup from one list. A field's name is
/// given by its index in `NAMES`, so that the sender looks a value up only among the
/// values of the name it already found.
macro_rules! pairs {
    ($($index:literal => ($name:literal, $value:literal),)*) => {
        /// Whole header fields by wire index (without [`PAIR_BIT`]).
        pub(super) static PAIRS: [(u8, HeaderValue); [$($index),*].len()] =
            [$(($name, HeaderValue::from_static(static_str($value)))),*];

        /// `PAIRS` as bytes (see `NAME_BYTES`).
        static PAIR_BYTES: [(&[u8], &[u8]); [$($index),*].len()] = [$((NAME_BYTES[$name], $value)),*];

        /// The wire index (without [`PAIR_BIT`]) of a field whose name has index `name`.
        pub(super) fn pair_index(name: u8, value: &[u8]) -> Option<u8> {
            // Byte-string patterns, not guards: the compiler switches on the name, then
            // the length, and compares the bytes of the one or two values left.
            match (name, value) {
                $(($name, $value) => Some($index),)*
                _ => None,
            }
        }
    };
}

names! {
    0 => "host",
    1 => "content-length",
    2 => "content-type",
    3 => "date",
    4 => "user-agent",
    5 => "accept",
    6 => "accept-encoding",
    7 => "accept-language",
    8 => "connection",
    9 => "x-forwarded-for",
    10 => "x-forwarded-proto",
    11 => "x-forwarded-host",
    12 => "cache-control",
    13 => "cookie",
    14 => "set-cookie",
    15 => "etag",
    16 => "last-modified",
    17 => "server",
    18 => "location",
    19 => "referer",
    20 => "origin",
    21 => "authorization",
    22 => "content-encoding",
    23 => "transfer-encoding",
    24 => "vary",
    25 => "accept-ranges",
    26 => "if-modified-since",
    27 => "if-none-match",
    28 => "upgrade",
    29 => "sec-websocket-key",
    30 => "sec-websocket-version",
    31 => "sec-websocket-accept",
    32 => "sec-websocket-protocol",
    33 => "sec-websocket-extensions",
    34 => "keep-alive",
    35 => "te",
    36 => "trailer",
    37 => "expires",
    38 => "pragma",
    39 => "age",
    40 => "allow",
    41 => "content-disposition",
    42 => "content-language",
    43 => "content-location",
    44 => "content-range",
    45 => "range",
    46 => "if-match",
    47 => "if-range",
    48 => "if-unmodified-since",
    49 => "expect",
    50 => "from",
    51 => "link",
    52 => "max-forwards",
    53 => "proxy-authenticate",
    54 => "proxy-authorization",
    55 => "retry-after",
    56 => "refresh",
    57 => "strict-transport-security",
    58 => "via",
    59 => "www-authenticate",
    60 => "accept-charset",
    61 => "access-control-allow-origin",
    62 => "access-control-allow-credentials",
    63 => "access-control-allow-headers",
    64 => "access-control-allow-methods",
    65 => "access-control-expose-headers",
    66 => "access-control-max-age",
    67 => "access-control-request-headers",
    68 => "access-control-request-method",
    69 => "content-security-policy",
    70 => "x-content-type-options",
    71 => "x-frame-options",
    72 => "x-xss-protection",
    73 => "x-requested-with",
    74 => "x-real-ip",
    75 => "forwarded",
    76 => "dnt",
    77 => "upgrade-insecure-requests",
    78 => "sec-fetch-dest",
    79 => "sec-fetch-mode",
    80 => "sec-fetch-site",
    81 => "sec-fetch-user",
    82 => "sec-ch-ua",
    83 => "sec-ch-ua-mobile",
    84 => "sec-ch-ua-platform",
    85 => "priority",
    86 => "referrer-policy",
    87 => "alt-svc",
}

pairs! {
    0 => (10, b"http"),
    1 => (10, b"https"),
    2 => (8, b"keep-alive"),
    3 => (8, b"close"),
    4 => (8, b"upgrade"),
    5 => (8, b"Upgrade"),
    6 => (28, b"websocket"),
    7 => (30, b"13"),
    8 => (5, b"*/*"),
    9 => (6, b"gzip, deflate, br, zstd"),
    10 => (6, b"gzip, deflate, br"),
    11 => (6, b"gzip, deflate"),
    12 => (6, b"gzip"),
    13 => (25, b"bytes"),
    14 => (2, b"text/html"),
    15 => (2, b"text/html; charset=utf-8"),
    16 => (2, b"text/plain"),
    17 => (2, b"text/plain; charset=utf-8"),
    18 => (2, b"application/json"),
    19 => (2, b"application/javascript"),
    20 => (2, b"text/css"),
    21 => (2, b"application/octet-stream"),
    22 => (12, b"no-cache"),
    23 => (12, b"no-store"),
    24 => (12, b"max-age=0"),
    25 => (23, b"chunked"),
    26 => (24, b"Accept-Encoding"),
    27 => (24, b"accept-encoding"),
    28 => (22, b"gzip"),
    29 => (22, b"br"),
    30 => (70, b"nosniff"),
    31 => (1, b"0"),
    32 => (77, b"1"),
    33 => (81, b"?1"),
    34 => (83, b"?0"),
    35 => (78, b"document"),
    36 => (78, b"empty"),
    37 => (79, b"navigate"),
    38 => (79, b"cors"),
    39 => (79, b"no-cors"),
    40 => (80, b"none"),
    41 => (80, b"same-origin"),
    42 => (80, b"cross-site"),
}

/// A table's byte string as the `&str` that `HeaderValue::from_static` takes (checked
/// when the table is compiled).
const fn static_str(bytes: &'static [u8]) -> &'static str {
    match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(_) => panic!("a header value in the table is not UTF-8"),
    }
}

/// How a field is written towards a peer that reads indexes: `PAIR_BIT` and the whole
/// field's index, else its name's index, else [`TEXT`]. Inlined into the block's
/// writer (the call and its return ~10 instructions a field); `pair_index`, a jump
/// table of its own, stays a call.
#[inline]
pub(super) fn code(name: &[u8], value: &[u8]) -> u8 {
    match name_index(name) {
        Some(n) => pair_index(n, value).map_or(n, |field| PAIR_BIT | field),
        None => TEXT,
    }
}

/// The names' indexes of the server's own forwarding fields (`OpenFields::push_forwarding`
/// writes them as constants; the tests hold them to `names!`).
pub(super) const X_FORWARDED_FOR: u8 = 9;
pub(super) const X_FORWARDED_PROTO: u8 = 10;
pub(super) const X_FORWARDED_HOST: u8 = 11;

/// [`code_of_name`] of an `X-Forwarded-Proto` value that is a whole field of the table
/// (`http` or `https`), `None` for any other: the two compared in place, not by
/// `pair_index`'s jump table (a call, ~15 instructions). `X-Forwarded-For` and
/// `X-Forwarded-Host` have no whole fields. The tests hold both to `pairs!`. By `==`,
/// a length and a word compared, not a `match` on byte strings, which compares byte by
/// byte: after its chain of branches the compiler took the writes that follow for
/// rare ones and left them calls (~60 instructions per request).
#[inline]
pub(super) fn forwarded_proto_field(value: &[u8]) -> Option<u8> {
    if value == b"http" {
        Some(PAIR_BIT)
    } else if value == b"https" {
        Some(PAIR_BIT | 1)
    } else {
        None
    }
}

/// [`code`] of a field whose name's index `name` the caller knows.
pub(super) fn code_of_name(name: u8, value: &[u8]) -> u8 {
    pair_index(name, value).map_or(name, |field| PAIR_BIT | field)
}

/// The name at wire index `i`.
/// The name index of whole field `i` (without [`PAIR_BIT`]), if there is one.
pub(super) fn pair_name(i: u8) -> Option<u8> {
    PAIRS.get(usize::from(i)).map(|(name, _)| *name)
}

/// Whether `i` is a name's index.
pub(super) fn is_name(i: u8) -> bool {
    usize::from(i) < NAMES.len()
}

pub(super) fn name(i: u8) -> Option<&'static HeaderName> {
    NAMES.get(usize::from(i))
}

/// The whole field at wire index `i` (without [`PAIR_BIT`]).
pub(super) fn pair(i: u8) -> Option<(&'static HeaderName, &'static HeaderValue)> {
    let (name_index, value) = PAIRS.get(usize::from(i))?;
    Some((name(*name_index)?, value))
}

/// [`name`] as bytes.
pub(super) fn name_bytes(i: u8) -> Option<&'static [u8]> {
    NAME_BYTES.get(usize::from(i)).copied()
}

/// [`pair`] as bytes.
pub(super) fn pair_bytes(i: u8) -> Option<(&'static [u8], &'static [u8])> {
    PAIR_BYTES.get(usize::from(i)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn the_byte_tables_say_what_the_typed_ones_say() {
        assert_eq!(NAME_BYTES.len(), NAMES.len());
        for i in 0..=u8::MAX {
            assert_eq!(name_bytes(i), name(i).map(|n| n.as_str().as_bytes()), "name {i}");
            assert_eq!(pair_bytes(i), pair(i).map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())), "pair {i}");
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn every_entry_is_found_at_its_own_index() {
        assert!(NAMES.len() <= usize::from(TEXT), "names overlap the code of a text field");
        assert!(PAIRS.len() <= usize::from(PAIR_BIT), "more fields than one byte indexes");
        for (i, n) in NAMES.iter().enumerate() {
            // The lookup is by the `HeaderName`'s own text, so each entry must be in
            // the form it keeps (lowercase), and appear once.
            assert_eq!(n.as_str(), n.as_str().to_ascii_lowercase());
            assert_eq!(name_index(n.as_str().as_bytes()).map(usize::from), Some(i), "{n}");
            assert_eq!(HeaderName::from_bytes(n.as_str().as_bytes()).ok().as_ref(), Some(n));
        }
        for (i, (name_index, value)) in PAIRS.iter().enumerate() {
            assert!(name(*name_index).is_some(), "field {i} names no name");
            assert_eq!(pair_index(*name_index, value.as_bytes()).map(usize::from), Some(i), "{value:?}");
            assert_eq!(HeaderValue::from_bytes(value.as_bytes()).ok().as_ref(), Some(value));
        }
    }

    /// The forwarding fields' constants are the tables' own: the names' indexes, the two
    /// whole fields of `X-Forwarded-Proto` and none of the other two names (so every value
    /// of theirs is written by the name's index), for every value in the table and others.
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn the_forwarding_constants_are_the_tables() {
        assert_eq!(name_index(b"x-forwarded-for"), Some(X_FORWARDED_FOR));
        assert_eq!(name_index(b"x-forwarded-proto"), Some(X_FORWARDED_PROTO));
        assert_eq!(name_index(b"x-forwarded-host"), Some(X_FORWARDED_HOST));
        let proto_pairs: Vec<&[u8]> = PAIR_BYTES
            .iter()
            .zip(PAIRS.iter())
            .filter(|(_, (n, _))| *n == X_FORWARDED_PROTO)
            .map(|((_, v), _)| *v)
            .collect();
        assert_eq!(proto_pairs, [&b"http"[..], b"https"]);
        assert!(PAIRS.iter().all(|(n, _)| *n != X_FORWARDED_FOR && *n != X_FORWARDED_HOST));
        let mut values: Vec<&[u8]> = PAIR_BYTES.iter().map(|(_, v)| *v).collect();
        values.extend([&b""[..], b"HTTP", b"http ", b"htt", b"httpss", b"ws", b"10.0.0.1", b"a.localhost:8080"]);
        for v in values {
            let proto = forwarded_proto_field(v).map_or(X_FORWARDED_PROTO, |i| i);
            assert_eq!(proto, code_of_name(X_FORWARDED_PROTO, v), "{v:?}");
            assert_eq!(code_of_name(X_FORWARDED_FOR, v), X_FORWARDED_FOR, "{v:?}");
            assert_eq!(code_of_name(X_FORWARDED_HOST, v), X_FORWARDED_HOST, "{v:?}");
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn what_is_not_in_the_table_is_not_found() {
        // A block looks names up from a copy of at most 32 bytes.
        assert!(NAMES.iter().all(|n| n.as_str().len() <= 32));
        assert_eq!(name_index(b"x-custom"), None);
        assert_eq!(name_index(b"Host"), None, "names are looked up as a HeaderName holds them");
        assert_eq!(pair_index(10, b"ftp"), None);
        assert_eq!(pair_index(0, b"http"), None, "a value counts only under its own name");
        assert_eq!(name(u8::try_from(NAMES.len()).unwrap()), None);
        assert_eq!(pair(u8::try_from(PAIRS.len()).unwrap()), None);
    }
}
