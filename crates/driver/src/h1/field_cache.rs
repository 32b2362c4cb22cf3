//! What one connection's message heads leave for the next: the field names of the
//! last head, by position, and the parser's scratch list.
//!
//! An origin answers every request with the same fields in the same order (a
//! framework's `content-length`, `date`, `content-type`; nginx's `Server`, `Date`,
//! `Content-Type`, `Content-Length`, `Last-Modified`, `Connection`, `ETag`,
//! `Accept-Ranges`). Building a `HeaderName` from a field's bytes looks the name up
//! among the standard ones after lowering its case (~110 instructions a field, measured
//! with `bench/callgrind`: docs/BENCHMARKS.md, thirteenth round); a name whose bytes are
//! exactly those found at the same place in the last head is the same name, and is
//! cloned instead. Any other name is built as before and remembered. So a head gives
//! the same fields with or without the cache.

use http::header::InvalidHeaderName;
use http::HeaderName;

/// Positions remembered: the fields past these are built each time (a bound on the
/// memory an idle connection keeps).
const POSITIONS: usize = 32;

/// Longest name remembered (longer ones are built each time).
const NAME_BYTES: usize = 32;

/// A field's range of bytes in a head: its name's and its value's.
pub(crate) type FieldRange = (std::ops::Range<usize>, std::ops::Range<usize>);

/// The field names one connection's last head carried, and a list to parse into.
#[derive(Debug, Default)]
pub struct FieldCache {
    names: Vec<Remembered>,
    /// The parser's list of field ranges, kept with its allocation.
    pub(crate) ranges: Vec<FieldRange>,
}

/// A name's bytes as they came (case and all) and the name they made.
#[derive(Debug)]
struct Remembered {
    bytes: [u8; NAME_BYTES],
    len: usize,
    name: HeaderName,
}

impl FieldCache {
    /// The name made of `bytes`, the field at `position` of a head: the one
    /// remembered there when its bytes are the same, else a new one (then remembered).
    pub(crate) fn name(&mut self, position: usize, bytes: &[u8]) -> Result<HeaderName, InvalidHeaderName> {
        if let Some(r) = self.names.get(position) {
            if r.bytes.get(..r.len) == Some(bytes) {
                return Ok(r.name.clone());
            }
        }
        let name = HeaderName::from_bytes(bytes)?;
        if position < POSITIONS && position <= self.names.len() {
            // Too long to remember: a length no field can match (a name is not empty).
            let mut r = Remembered { bytes: [0; NAME_BYTES], len: 0, name: name.clone() };
            if let Some(dst) = r.bytes.get_mut(..bytes.len()) {
                dst.copy_from_slice(bytes);
                r.len = bytes.len();
            }
            match self.names.get_mut(position) {
                Some(slot) => *slot = r,
                None => self.names.push(r),
            }
        }
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_the_one_its_bytes_make_whatever_was_remembered() {
        let mut cache = FieldCache::default();
        let long = "x-".repeat(NAME_BYTES);
        let heads: [&[&str]; 4] = [
            &["Content-Length", "Date", "X-Custom"],
            &["Content-Length", "Date", "X-Custom"],
            &["content-length", "X-Custom", "date", &long, "etag"],
            &["Content-Length", "x-custom", "DATE", &long, "ETag"],
        ];
        for head in heads {
            for (i, raw) in head.iter().enumerate() {
                let made = HeaderName::from_bytes(raw.as_bytes()).unwrap();
                assert_eq!(cache.name(i, raw.as_bytes()).unwrap(), made, "{raw} at {i}");
            }
        }
        assert!(cache.name(0, b"bad name").is_err());
        // The bad name was not remembered: the same position still knows its last one.
        assert_eq!(cache.name(0, b"Content-Length").unwrap(), http::header::CONTENT_LENGTH);
    }

    #[test]
    fn only_the_first_positions_are_remembered() {
        let mut cache = FieldCache::default();
        for i in 0..POSITIONS + 8 {
            assert_eq!(cache.name(i, b"x-a").unwrap().as_str(), "x-a");
        }
        assert_eq!(cache.names.len(), POSITIONS);
    }
}
