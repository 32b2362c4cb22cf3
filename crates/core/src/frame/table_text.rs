//! The static table left out (the `indexed-headers` feature off, as the wasm client builds the core):
//! every field is written as text and no index is read. Such a session does not announce
//! [`features::INDEXED_HEADERS`](crate::features::INDEXED_HEADERS), so a peer sends it names and values as
//! text, and an index it sends anyway is refused as a bad header index, as an index past the table is. The
//! table and its lookups were ~5.7 KB of the gzipped .wasm (docs/BENCHMARKS.md, "Sixteenth round (session
//! 17): memory and size"); the wire protocol is the same (`docs/PROTOCOL.md` §2).

use super::types::{HeaderName, HeaderValue};

/// As in the table: the bit of an index byte that names a whole field.
pub(super) const PAIR_BIT: u8 = 0x80;

/// As in the table: the code of a field written as text.
pub(super) const TEXT: u8 = 0x7f;

/// Every field is written as text.
pub(super) fn code(_name: &[u8], _value: &[u8]) -> u8 {
    TEXT
}

/// As in the table: the names' indexes of the server's forwarding fields (never written
/// here: `code_of_name` ignores them).
pub(super) const X_FORWARDED_FOR: u8 = 9;
pub(super) const X_FORWARDED_PROTO: u8 = 10;
pub(super) const X_FORWARDED_HOST: u8 = 11;

/// No field has an index.
pub(super) fn forwarded_proto_field(_value: &[u8]) -> Option<u8> {
    None
}

/// Every field is written as text.
pub(super) fn code_of_name(_name: u8, _value: &[u8]) -> u8 {
    TEXT
}

/// No name has an index.
pub(super) fn name(_i: u8) -> Option<&'static HeaderName> {
    None
}

/// No field has an index.
pub(super) fn pair(_i: u8) -> Option<(&'static HeaderName, &'static HeaderValue)> {
    None
}

/// No name has an index.
pub(super) fn name_bytes(_i: u8) -> Option<&'static [u8]> {
    None
}

/// No field has an index.
pub(super) fn pair_bytes(_i: u8) -> Option<(&'static [u8], &'static [u8])> {
    None
}

/// No field has an index.
pub(super) fn pair_name(_i: u8) -> Option<u8> {
    None
}

/// No name has an index.
pub(super) fn is_name(_i: u8) -> bool {
    false
}
