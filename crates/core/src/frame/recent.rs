//! The values a session's decoder saw last under the static table's names, so that a
//! value that comes again (a tunnel's `host` and `x-forwarded-host` on every request,
//! an origin's `date` for a second) becomes a clone of the one kept instead of being
//! checked byte by byte again (`HeaderValue::from_maybe_shared`, ~5 instructions a
//! byte, against a comparison of the bytes).
//!
//! Only the receiver keeps this: nothing changes on the wire. A kept value is a copy of
//! its own, never a slice of a received message (which would hold that message's
//! buffer, and the reader's buffer behind it, for as long as it is kept); it is made
//! when the same value comes twice in a row under a name, so a name whose value
//! changes on every request (`x-forwarded-for` with many visitors) costs a
//! fingerprint, not a copy. Bounded: [`SLOTS`] values of at most [`MAX_KEPT`] bytes.

use bytes::Bytes;

use super::types::HeaderValue;

/// Slots, picked by the name's table index modulo their number.
const SLOTS: usize = 16;

/// Longest value kept: longer ones are rarely repeated byte for byte, and a copy of
/// each would cost more than the check it saves.
const MAX_KEPT: usize = 64;

/// The last values of names of the static table, one per slot (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct RecentValues {
    slots: [Slot; SLOTS],
}

#[derive(Debug, Default)]
struct Slot {
    /// The table index of the name this slot is about.
    name: u8,
    /// The value kept for it, if it came twice in a row.
    kept: Option<HeaderValue>,
    /// The fingerprint of the last value seen that is not the one kept.
    seen: u64,
}

impl RecentValues {
    /// The value of a field whose name has table index `name`, its bytes `raw`: the
    /// kept one if the bytes are the same, else the bytes as `cut` gives them (a slice
    /// of the frame, cut only now) checked (and, the second time in a row, a copy
    /// kept). `Err` says whether the wire allows the refused bytes, as in
    /// `get_headers`.
    pub(crate) fn value(&mut self, name: u8, raw: &[u8], cut: impl FnOnce() -> Bytes) -> Result<HeaderValue, bool> {
        let slot = &mut self.slots[usize::from(name) % SLOTS];
        if slot.name == name {
            if let Some(kept) = slot.kept.as_ref().filter(|kept| kept.as_bytes() == raw) {
                return Ok(kept.clone());
            }
        }
        let value = HeaderValue::from_maybe_shared(cut()).map_err(|_| super::headers::valid_header_value(raw))?;
        if raw.len() <= MAX_KEPT {
            let print = fingerprint(raw);
            if slot.name != name {
                *slot = Slot { name, kept: None, seen: print };
            } else if slot.seen == print {
                // A copy of its own, checked again once: not a slice of this message.
                slot.kept = HeaderValue::from_maybe_shared(Bytes::copy_from_slice(raw)).ok();
            } else {
                slot.seen = print;
            }
        }
        Ok(value)
    }
}

/// A cheap fingerprint of a value: its length and its first and last eight bytes. Two
/// values that share one only make a needless copy; what is returned is always
/// compared byte for byte.
fn fingerprint(raw: &[u8]) -> u64 {
    let mut head = [0u8; 8];
    let mut tail = [0u8; 8];
    let n = raw.len().min(8);
    head[..n].copy_from_slice(&raw[..n]);
    tail[..n].copy_from_slice(&raw[raw.len() - n..]);
    let len = u64::try_from(raw.len()).unwrap_or(u64::MAX);
    u64::from_le_bytes(head) ^ u64::from_le_bytes(tail).rotate_left(29) ^ len.rotate_left(58)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(recent: &mut RecentValues, name: u8, v: &'static str) -> HeaderValue {
        recent.value(name, v.as_bytes(), || Bytes::from_static(v.as_bytes())).unwrap()
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn a_value_is_kept_the_second_time_in_a_row_and_always_compared() {
        let mut recent = RecentValues::default();
        for v in ["a.example:80", "a.example:80", "a.example:80", "b.example:80", "b.example:80", "a.example:80"] {
            assert_eq!(value(&mut recent, 0, v), v);
        }
        let slot = &recent.slots[0];
        assert_eq!(slot.kept.as_ref().map(HeaderValue::as_bytes), Some(&b"b.example:80"[..]));
        // Same fingerprint (length, first and last eight bytes), other bytes: compared.
        let mut recent = RecentValues::default();
        for v in ["0123456789-x-0123456789", "0123456789-x-0123456789", "0123456789-y-0123456789"] {
            assert_eq!(value(&mut recent, 3, v), v);
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn names_sharing_a_slot_take_turns_and_long_or_bad_values_are_not_kept() {
        let mut recent = RecentValues::default();
        let name = u8::try_from(SLOTS).unwrap();
        for _ in 0..3 {
            assert_eq!(value(&mut recent, 0, "x"), "x");
            assert_eq!(value(&mut recent, name, "y"), "y");
        }
        assert!(recent.slots[0].kept.is_none(), "two names in one slot keep nothing");
        let long = "z".repeat(MAX_KEPT + 1);
        for _ in 0..3 {
            let v = recent.value(1, long.as_bytes(), || Bytes::from(long.clone())).unwrap();
            assert_eq!(v, long.as_str());
        }
        assert!(recent.slots[1].kept.is_none());
        assert_eq!(recent.value(2, b"a\rb", || Bytes::from_static(b"a\rb")), Err(false));
        assert_eq!(recent.value(2, b"a\x01b", || Bytes::from_static(b"a\x01b")), Err(true));
    }
}
