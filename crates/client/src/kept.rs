//! What an exchange whose head came raw keeps of it once it is written ([`Kept`]): the
//! raw head holds the tunnel reader's buffer, and goes after the write.

use std::fmt;

use localtunnels_core::error_page::wants_html;
use localtunnels_core::RawRequestHead;

/// What an exchange whose head came raw keeps of it once it is written (the raw head
/// holds the tunnel reader's buffer, and goes): its target (as the decoded head's is)
/// and its `Accept` value's bytes for an error page (copied, not checked: `wants_html`
/// reads them only if there is an error page, and takes non-UTF-8 as no HTML).
pub(crate) struct Kept {
    target: Target,
    accept: Option<Box<[u8]>>,
}

impl Kept {
    pub(crate) fn of(raw: &RawRequestHead) -> Kept {
        // Walked only for a block that has an `Accept` (the session's check counted it).
        let accept = if raw.has_accept() { raw.fields().find(|(n, _)| *n == b"accept").map(|(_, v)| v) } else { None };
        Kept { target: Target::of(raw.target()), accept: accept.map(Box::from) }
    }

    /// Whether the error page is HTML (as `VisitorHead::of` finds it for a decoded head).
    pub(crate) fn html(&self) -> bool {
        wants_html(self.accept.as_deref())
    }

    pub(crate) fn into_target(self) -> Target {
        self.target
    }
}

/// Most bytes of a target kept in place (the rest of [`Target`]'s 24 bytes are its
/// length and its kind: the size of the `String` it replaces).
const INLINE: usize = 22;

/// A raw request's target (its bytes UTF-8, checked when the OPEN was read), kept for
/// the exchange's messages: an error's line, the debug log. Read only for those, it
/// is kept as bytes, in place when it is short (most are: `/1k`, `/`, `/api/items`),
/// else in a box. Each request's `String` of it was an allocation, a copy through
/// `memcpy` and a free, ~0.1k instructions per request at 32 connections
/// (docs/BENCHMARKS.md, twenty-fifth round, cli).
#[derive(Clone)]
pub(crate) enum Target {
    Short { len: u8, bytes: [u8; INLINE] },
    Long(Box<[u8]>),
}

impl Default for Target {
    fn default() -> Self {
        Target::Short { len: 0, bytes: [0; INLINE] }
    }
}

impl Target {
    pub(crate) fn of(target: &[u8]) -> Target {
        let mut bytes = [0; INLINE];
        match (bytes.get_mut(..target.len()), u8::try_from(target.len())) {
            (Some(place), Ok(len)) => {
                place.copy_from_slice(target);
                Target::Short { len, bytes }
            }
            _ => Target::Long(Box::from(target)),
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Target::Short { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or_default(),
            Target::Long(bytes) => bytes,
        }
    }
}

/// The target as text (its bytes are UTF-8: a byte that is not would show as U+FFFD).
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&String::from_utf8_lossy(self.as_bytes()), f)
    }
}

impl From<Target> for String {
    fn from(target: Target) -> String {
        target.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length to past the inline room, ASCII and multi-byte UTF-8: the bytes,
    /// the text and the `String` are the target's, as the `String` kept before gave.
    #[test]
    fn a_target_is_kept_as_it_came() {
        for len in 0..=40 {
            for unit in ["a", "é", "/", "%20"] {
                let text: String = unit.repeat(len).chars().take(len).collect();
                let target = Target::of(text.as_bytes());
                assert_eq!(target.as_bytes(), text.as_bytes(), "{text:?}");
                assert_eq!(target.to_string(), text);
                assert_eq!(format!("{target}"), text);
                assert_eq!(String::from(target.clone()), text);
                let short = text.len() <= INLINE;
                assert_eq!(matches!(target, Target::Short { .. }), short, "{text:?}");
            }
        }
        assert_eq!(Target::default().to_string(), "");
        assert_eq!(std::mem::size_of::<Target>(), std::mem::size_of::<String>());
    }
}
