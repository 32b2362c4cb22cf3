//! An exchange's heads as the store keeps them: each field's bytes after its length
//! (4 bytes, little-endian), the method and target first for a request, then each
//! header's name and value. Copied once as they pass, with no check (they were checked
//! when parsed); parsed back only when the inspector's API, page or replay reads them.

use crate::frame::Header;

/// The length prefix of a field.
pub(crate) fn prefix(field: &[u8]) -> [u8; 4] {
    u32::try_from(field.len()).unwrap_or(u32::MAX).to_le_bytes()
}

/// The fields of an encoded head, in order; a field cut short (the store ran out of
/// room) ends them.
pub(crate) fn fields(mut bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (len, rest) = bytes.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
        let field = rest.get(..len)?;
        bytes = &rest[len..];
        Some(field)
    })
}

/// Headers from the name and value fields that follow (a name without its value is dropped).
pub(crate) fn headers<'a>(mut fields: impl Iterator<Item = &'a [u8]>) -> Vec<Header> {
    let mut out = Vec::new();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        // They were a valid name and value when kept.
        if let (Ok(n), Ok(v)) = (http::HeaderName::from_bytes(name), http::HeaderValue::from_bytes(value)) {
            out.push((n, v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_a_cut_field_ends_them() {
        let mut bytes = Vec::new();
        for f in [&b"GET"[..], b"/a b", b"accept", b"*/*", b"x-long", b"value"] {
            bytes.extend_from_slice(&prefix(f));
            bytes.extend_from_slice(f);
        }
        let mut all = fields(&bytes);
        assert_eq!((all.next(), all.next()), (Some(&b"GET"[..]), Some(&b"/a b"[..])));
        let h = headers(all);
        assert_eq!(h.len(), 2);
        assert_eq!((h[1].0.as_str(), h[1].1.as_bytes()), ("x-long", &b"value"[..]));
        let cut = &bytes[..bytes.len() - 2];
        assert_eq!(headers(fields(cut).skip(2)).len(), 1);
    }
}
