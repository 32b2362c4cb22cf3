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
        pub(super) static NAMES: [HeaderName; [$($index),*].len()] =
            [$(HeaderName::from_static(static_str($name))),*];

        /// The wire index of a name (lowercase, as a `HeaderName` holds it). By its
        /// bytes: a block written from a parser's bytes has no `&str` of the name, and
        /// making one (`str::from_utf8`) cost ~40 instructions a field.
        pub(super) fn name_index(name: &[u8]) -> Option<u8> {
            match name {
                $($name => Some($index),)*
                _ => None,
            }
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
    0 => b"host",
    1 => b"content-length",
    2 => b"content-type",
    3 => b"date",
    4 => b"user-agent",
    5 => b"accept",
    6 => b"accept-encoding",
    7 => b"accept-language",
    8 => b"connection",
    9 => b"x-forwarded-for",
    10 => b"x-forwarded-proto",
    11 => b"x-forwarded-host",
    12 => b"cache-control",
    13 => b"cookie",
    14 => b"set-cookie",
    15 => b"etag",
    16 => b"last-modified",
    17 => b"server",
    18 => b"location",
    19 => b"referer",
    20 => b"origin",
    21 => b"authorization",
    22 => b"content-encoding",
    23 => b"transfer-encoding",
    24 => b"vary",
    25 => b"accept-ranges",
    26 => b"if-modified-since",
    27 => b"if-none-match",
    28 => b"upgrade",
    29 => b"sec-websocket-key",
    30 => b"sec-websocket-version",
    31 => b"sec-websocket-accept",
    32 => b"sec-websocket-protocol",
    33 => b"sec-websocket-extensions",
    34 => b"keep-alive",
    35 => b"te",
    36 => b"trailer",
    37 => b"expires",
    38 => b"pragma",
    39 => b"age",
    40 => b"allow",
    41 => b"content-disposition",
    42 => b"content-language",
    43 => b"content-location",
    44 => b"content-range",
    45 => b"range",
    46 => b"if-match",
    47 => b"if-range",
    48 => b"if-unmodified-since",
    49 => b"expect",
    50 => b"from",
    51 => b"link",
    52 => b"max-forwards",
    53 => b"proxy-authenticate",
    54 => b"proxy-authorization",
    55 => b"retry-after",
    56 => b"refresh",
    57 => b"strict-transport-security",
    58 => b"via",
    59 => b"www-authenticate",
    60 => b"accept-charset",
    61 => b"access-control-allow-origin",
    62 => b"access-control-allow-credentials",
    63 => b"access-control-allow-headers",
    64 => b"access-control-allow-methods",
    65 => b"access-control-expose-headers",
    66 => b"access-control-max-age",
    67 => b"access-control-request-headers",
    68 => b"access-control-request-method",
    69 => b"content-security-policy",
    70 => b"x-content-type-options",
    71 => b"x-frame-options",
    72 => b"x-xss-protection",
    73 => b"x-requested-with",
    74 => b"x-real-ip",
    75 => b"forwarded",
    76 => b"dnt",
    77 => b"upgrade-insecure-requests",
    78 => b"sec-fetch-dest",
    79 => b"sec-fetch-mode",
    80 => b"sec-fetch-site",
    81 => b"sec-fetch-user",
    82 => b"sec-ch-ua",
    83 => b"sec-ch-ua-mobile",
    84 => b"sec-ch-ua-platform",
    85 => b"priority",
    86 => b"referrer-policy",
    87 => b"alt-svc",
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
/// field's index, else its name's index, else [`TEXT`].
pub(super) fn code(name: &[u8], value: &[u8]) -> u8 {
    match name_index(name) {
        Some(n) => pair_index(n, value).map_or(n, |field| PAIR_BIT | field),
        None => TEXT,
    }
}

/// The name at wire index `i`.
pub(super) fn name(i: u8) -> Option<&'static HeaderName> {
    NAMES.get(usize::from(i))
}

/// The whole field at wire index `i` (without [`PAIR_BIT`]).
pub(super) fn pair(i: u8) -> Option<(&'static HeaderName, &'static HeaderValue)> {
    let (name_index, value) = PAIRS.get(usize::from(i))?;
    Some((name(*name_index)?, value))
}

#[cfg(test)]
mod tests {
    use super::*;

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
