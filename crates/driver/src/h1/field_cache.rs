//! What one connection's message heads leave for the next: the fields of the last
//! head, by position, the parser's scratch list, and the origin leg's last response head
//! whole (`repeat_head`).
//!
//! An origin answers every request with the same fields in the same order, most with
//! the same values (a framework's `content-length`, `date`, `content-type`; nginx's
//! `Server`, `Date`, `Content-Type`, `Content-Length`, `Last-Modified`, `Connection`,
//! `ETag`, `Accept-Ranges`), and a visitor's browser sends every request on a kept-alive
//! connection with the same fields (`Host`, `User-Agent`, `Accept*`, `Sec-Fetch-*`,
//! mostly with the same values). Building a `HeaderName` from a field's bytes looks the
//! name up among the standard ones after lowering its case (~110 instructions a field,
//! measured with `bench/callgrind`: docs/BENCHMARKS.md, thirteenth round), and a
//! `HeaderValue` checks every byte (~3 a byte). A name or a value whose bytes are
//! exactly those found at the same place in the last head is the same name or value,
//! and is cloned instead (a value remembered as a copy of its own: the read buffer it
//! came in is not kept). Anything else is built as before and remembered. A request
//! head whose field lines are the last remembered ones byte for byte (a kept-alive
//! visitor's usual head) gets that head's fields cloned whole, and what its caller
//! noted of them ([`FieldCache::note`]). So a head gives the same fields with or without
//! the cache.

use std::ops::Range;

use bytes::Bytes;
use http::header::InvalidHeaderName;
use http::{HeaderName, HeaderValue};
use localtunnels_core::Header;

use super::head::HeadError;
use super::repeat_head::RepeatHead;

/// Positions remembered: the fields past these are built each time (a bound on the
/// memory an idle connection keeps).
const POSITIONS: usize = 32;

/// Longest name remembered (longer ones are built each time).
const NAME_BYTES: usize = 32;

/// Longest value remembered. A browser's `User-Agent` and `Accept` (75 and 71 bytes
/// for Firefox's navigation) repeat on every request: compared by `memcmp`, they cost a
/// few dozen instructions instead of a `HeaderValue`'s check of every byte (~3 a byte),
/// measured with `bench/callgrind` (docs/BENCHMARKS.md, sixteenth round).
const VALUE_BYTES: usize = 256;

/// Most bytes of remembered values, all positions together: the bound on what an idle
/// connection keeps (a value that would pass it is not remembered; the ones before it
/// stay). A browser's navigation head has ~0.4 KiB of values.
const VALUES_BUDGET: usize = 1024;

/// A value that changed this many times in a row (a request id, say) is remembered
/// again only at every [`RETRY_EVERY`]th change, not copied for nothing each time.
const CHANGES: u8 = 2;
const RETRY_EVERY: u8 = 32;

/// Longest field region (a request head's fields, from the first name to the last
/// value) remembered whole.
const REGION_BYTES: usize = 1024;

/// A field's range of bytes in a head: its name's and its value's.
pub(crate) type FieldRange = (std::ops::Range<usize>, std::ops::Range<usize>);

/// The field names one connection's last head carried, and a list to parse into.
#[derive(Debug, Default)]
pub struct FieldCache {
    names: Vec<Remembered>,
    values: Vec<RememberedValue>,
    /// The parser's list of field ranges, kept with its allocation.
    pub(crate) ranges: Vec<FieldRange>,
    /// The bytes of the values remembered (at most [`VALUES_BUDGET`]).
    value_bytes: usize,
    /// The last request head's fields whole, when they fit [`REGION_BYTES`].
    region: Option<Region>,
    /// The last response head the origin leg's walk took whole (`origin_head`).
    pub(crate) repeat: RepeatHead,
    /// What the last request head read with the cache did with the region.
    last: LastHead,
}

/// What a request head read with the cache did with the remembered region.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum LastHead {
    /// Its fields were the region's.
    Same,
    /// Its fields became the region.
    Remembered,
    /// Neither (no field, a region not remembered, an error).
    #[default]
    Other,
}

/// A request head's field region as a copy of its own, the fields made of it, and how
/// many times in a row the region changed.
#[derive(Debug)]
struct Region {
    bytes: Bytes,
    fields: Vec<Header>,
    changes: u8,
    /// What the caller noted of these fields ([`FieldCache::set_note`]).
    note: Option<u32>,
}

/// A name's bytes as they came (case and all) and the name they made.
#[derive(Debug)]
struct Remembered {
    bytes: [u8; NAME_BYTES],
    len: usize,
    name: HeaderName,
}

/// A value as a copy of its own, and how many times in a row it changed.
#[derive(Debug)]
struct RememberedValue {
    value: Option<HeaderValue>,
    changes: u8,
}

impl FieldCache {
    /// The field at `position` of a head, its name's and value's bytes at `name` and
    /// `value` in `raw`.
    pub(crate) fn field(
        &mut self,
        position: usize,
        raw: &Bytes,
        name: Range<usize>,
        value: Range<usize>,
    ) -> Result<Header, HeadError> {
        let name = self.name(position, &raw[name]).map_err(|_| HeadError::Header)?;
        let bytes = &raw[value.clone()];
        if let Some(RememberedValue { value: Some(v), changes }) = self.values.get_mut(position) {
            if v.as_bytes() == bytes {
                *changes = 0;
                return Ok((name, v.clone()));
            }
        }
        let made = HeaderValue::from_maybe_shared(raw.slice(value)).map_err(|_| HeadError::Header)?;
        if position < POSITIONS && bytes.len() <= VALUE_BYTES {
            self.remember(position, bytes);
        }
        Ok((name, made))
    }

    /// Remembers `bytes` (a valid value) as the value at `position`, within the budget
    /// and unless the value there keeps changing.
    fn remember(&mut self, position: usize, bytes: &[u8]) {
        let remembered = self.values.len();
        let r = match self.values.get_mut(position) {
            Some(r) => {
                r.changes = r.changes.saturating_add(1);
                if r.changes > CHANGES && r.changes % RETRY_EVERY != 0 {
                    return;
                }
                r
            }
            None if position == remembered => {
                self.values.push(RememberedValue { value: None, changes: 0 });
                let Some(r) = self.values.last_mut() else { return };
                r
            }
            None => return,
        };
        // The old value's bytes are given back to the budget whatever takes its place.
        let old = r.value.take().map_or(0, |v| v.len());
        self.value_bytes = self.value_bytes.saturating_sub(old);
        if self.value_bytes + bytes.len() <= VALUES_BUDGET {
            r.value = HeaderValue::from_bytes(bytes).ok();
            self.value_bytes += r.value.as_ref().map_or(0, |v| v.len());
        }
    }

    /// The fields of a request head whose field region is `bytes`, when it is the last
    /// remembered one byte for byte: its fields cloned (room for `extra` more), with no
    /// field compared or built. A browser's and a load generator's kept-alive requests
    /// repeat their fields whole (one `memcmp` instead of two a field: docs/BENCHMARKS.md,
    /// sixteenth round).
    pub(crate) fn same_region(&mut self, bytes: &[u8], extra: usize) -> Option<Vec<Header>> {
        self.last = LastHead::Other;
        let r = self.region.as_mut()?;
        if r.bytes[..] != *bytes {
            return None;
        }
        self.last = LastHead::Same;
        r.changes = 0;
        let mut fields = Vec::with_capacity(r.fields.len() + extra);
        fields.extend(r.fields.iter().cloned());
        Some(fields)
    }

    /// Records that the last request head had no region (no field).
    pub(crate) fn forget_last(&mut self) {
        self.last = LastHead::Other;
    }

    /// Remembers the field region `raw[region]` of a request head, whose fields at
    /// `ranges` (of `raw`) made `made`: as a copy with values of its own (the read
    /// buffer is not kept), unless it is too long or changes on every head (then it is
    /// copied again only at every [`RETRY_EVERY`]th change).
    pub(crate) fn remember_region(&mut self, raw: &[u8], region: Range<usize>, ranges: &[FieldRange], made: &[Header]) {
        let changes = self.region.as_ref().map_or(0, |r| r.changes.saturating_add(1));
        if region.len() > REGION_BYTES {
            self.region = None;
            return;
        }
        if changes > CHANGES && !changes.is_multiple_of(RETRY_EVERY) {
            if let Some(r) = self.region.as_mut() {
                r.changes = changes;
            }
            return;
        }
        let bytes = Bytes::copy_from_slice(&raw[region.clone()]);
        let mut fields = Vec::with_capacity(made.len());
        for ((name, _), (_, value)) in made.iter().zip(ranges) {
            let at = value.start - region.start..value.end - region.start;
            let Ok(value) = HeaderValue::from_maybe_shared(bytes.slice(at)) else {
                self.region = None;
                return;
            };
            fields.push((name.clone(), value));
        }
        self.region = Some(Region { bytes, fields, changes, note: None });
        self.last = LastHead::Remembered;
    }

    /// What the caller noted ([`set_note`](Self::set_note)) of the fields of the last
    /// request head read with the cache, when that head's fields were a remembered
    /// region's, the one the note was set for: a result of its own that depends on the
    /// fields alone (read from the same fields, it would be the same).
    pub fn note(&self) -> Option<u32> {
        match self.last {
            LastHead::Same => self.region.as_ref()?.note,
            _ => None,
        }
    }

    /// Notes `note` of the fields of the last request head read with the cache (see
    /// [`note`](Self::note)): kept with them while they are the remembered region,
    /// dropped when they are not remembered.
    pub fn set_note(&mut self, note: u32) {
        if let (LastHead::Same | LastHead::Remembered, Some(r)) = (self.last, self.region.as_mut()) {
            r.note = Some(note);
        }
    }

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
    fn a_field_is_the_one_its_bytes_make_whatever_was_remembered() {
        let mut cache = FieldCache::default();
        let long = "v".repeat(VALUE_BYTES + 1);
        let heads: Vec<Vec<(&str, String)>> = vec![
            vec![("Date", "one".into()), ("X-Id", "1".into()), ("X-Long", long.clone())],
            vec![("Date", "one".into()), ("X-Id", "2".into()), ("X-Long", long.clone())],
            vec![("Date", "two".into()), ("X-Id", "3".into()), ("X-Long", long.clone())],
            vec![("X-Id", "two".into()), ("Date", "4".into()), ("X-Long", "short".into()), ("X-New", "x".into())],
            vec![("Date", "one".into()), ("X-Id", "4".into()), ("X-Long", "bad\u{7f}".into())],
        ];
        for head in heads {
            let raw: Vec<u8> = head.iter().flat_map(|(n, v)| [n.as_bytes(), v.as_bytes()].concat()).collect();
            let raw = Bytes::from(raw);
            let mut at = 0;
            for (i, (n, v)) in head.iter().enumerate() {
                let name = at..at + n.len();
                let value = name.end..name.end + v.len();
                at = value.end;
                let expected = HeaderValue::from_bytes(v.as_bytes())
                    .map(|value| (HeaderName::from_bytes(n.as_bytes()).unwrap(), value))
                    .map_err(|_| HeadError::Header);
                assert_eq!(cache.field(i, &raw, name, value), expected, "{n}: {v:?} at {i}");
            }
        }
    }

    #[test]
    fn a_value_that_keeps_changing_is_copied_now_and_then() {
        let mut cache = FieldCache::default();
        let mut copies = 0;
        for i in 0..200u32 {
            let raw = Bytes::from(format!("x-id{i}"));
            let before = cache.values.first().and_then(|r| r.value.clone());
            let field = cache.field(0, &raw, 0..4, 4..raw.len()).unwrap();
            assert_eq!(field.1.as_bytes(), &raw[4..]);
            let after = cache.values.first().and_then(|r| r.value.clone());
            copies += usize::from(before != after);
        }
        assert!(copies < 20, "{copies} copies of a value that never repeated");
    }

    #[test]
    fn a_browsers_long_values_are_remembered_within_the_budget() {
        let mut cache = FieldCache::default();
        let agent = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
        let long = "v".repeat(VALUE_BYTES);
        for round in 0..3 {
            let mut at = 0;
            let mut raw = Vec::new();
            let mut fields = Vec::new();
            for i in 0..12 {
                let value = if i == 0 { agent } else { long.as_str() };
                raw.extend_from_slice(b"x-a");
                raw.extend_from_slice(value.as_bytes());
                fields.push((at..at + 3, at + 3..at + 3 + value.len()));
                at += 3 + value.len();
            }
            let raw = Bytes::from(raw);
            for (i, (name, value)) in fields.into_iter().enumerate() {
                let field = cache.field(i, &raw, name, value.clone()).unwrap();
                assert_eq!(field.1.as_bytes(), &raw[value], "round {round}, field {i}");
            }
            let kept: usize = cache.values.iter().filter_map(|r| r.value.as_ref()).map(|v| v.len()).sum();
            assert_eq!(kept, cache.value_bytes);
            assert!(kept <= VALUES_BUDGET, "{kept} bytes remembered");
            assert_eq!(cache.values[0].value.as_ref().map(|v| v.as_bytes()), Some(agent.as_bytes()));
        }
        // A value that shrinks gives its bytes back: the next position fits again.
        let raw = Bytes::from_static(b"x-ashortx-b");
        cache.field(1, &raw, 0..3, 3..8).unwrap();
        let kept: usize = cache.values.iter().filter_map(|r| r.value.as_ref()).map(|v| v.len()).sum();
        assert_eq!(kept, cache.value_bytes);
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
