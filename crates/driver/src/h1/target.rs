//! A request's target as the HTTP/1 path reads it: an origin-form target (`/path?query`,
//! nearly every request) kept as the places of its parts in the head's bytes, any
//! other form (absolute, authority, `*`) as an `http::Uri`.
//!
//! An origin-form target is read as `Uri::from_maybe_shared` reads it (the same bytes
//! refused, a fragment cut off) without building the `Uri`: its `Bytes`, its
//! `PathAndQuery` and their moves were ~0.17k instructions per request
//! (docs/BENCHMARKS.md, twentieth round). The tunnel carries the path and query as
//! bytes, and nothing on the usual path reads the target any other way.

use std::ops::Range;

use bytes::Bytes;
use http::Uri;

use super::head::HeadError;

/// A request target: see the module docs.
#[derive(Debug, Clone)]
pub(super) enum Target {
    /// Origin form: its path is `raw[start..query]`, its path and query `raw[start..end]`
    /// (`query == end` without one; a fragment is past `end`).
    Origin { start: usize, query: usize, end: usize },
    /// Any other form, as `http` reads it (boxed: it is rare, and a `Uri` in place made
    /// every parsed head 80 bytes larger to move).
    Other(Box<Uri>),
}

/// Bytes `http` takes in a path (its `PATH_MAP`'s valid and non-ASCII classes): not
/// `?` (the query's start) or `#` (a fragment's).
const IN_PATH: u8 = 1;
/// Bytes `http` takes in a query (its `QUERY_MAP`'s): `?` is one of them, `#` not.
const IN_QUERY: u8 = 2;

/// The classes of every byte: [`IN_PATH`] and [`IN_QUERY`] bits (the URL standard's
/// path and query states, as `http` 1.x allows them).
static CLASSES: [u8; 256] = classes();

const fn classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let path = matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x40..=0x5F | 0x61..=0x7A | 0x7C | 0x7E | 0x80..=0xFF)
            // Should be percent-encoded, but `http` takes them (JSON in a path).
            || matches!(b, b'"' | b'{' | b'}');
        let query = matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x7E | 0x80..=0xFF);
        t[i] = if path { IN_PATH } else { 0 } | if query { IN_QUERY } else { 0 };
        i += 1;
    }
    t
}

impl Target {
    /// Reads the target at `raw[range]` (httparse's, read as UTF-8 already: its `path`
    /// is a `&str`, so a part cut at an ASCII byte is UTF-8 too).
    pub(super) fn read(raw: &Bytes, range: Range<usize>) -> Result<Target, HeadError> {
        let bytes = &raw[range.clone()];
        if bytes.first() != Some(&b'/') {
            let uri = Uri::from_maybe_shared(raw.slice(range)).map_err(|_| HeadError::Target)?;
            return Ok(Target::Other(Box::new(uri)));
        }
        let (query, end) = origin_parts(bytes)?;
        Ok(Target::Origin { start: range.start, query: range.start + query, end: range.start + end })
    }
}

/// Where an origin-form target's path ends (at its `?`, or where the target ends) and
/// where its path and query end (at a `#`, or the end); an error for a byte `http`
/// refuses in either part.
fn origin_parts(bytes: &[u8]) -> Result<(usize, usize), HeadError> {
    let len = bytes.len();
    let mut i = 0;
    while i < len && CLASSES[usize::from(bytes[i])] & IN_PATH != 0 {
        i += 1;
    }
    let query = i;
    if i < len && bytes[i] == b'?' {
        i += 1;
        while i < len && CLASSES[usize::from(bytes[i])] & IN_QUERY != 0 {
            i += 1;
        }
    }
    match bytes.get(i) {
        None => Ok((query, len)),
        // The fragment is cut off, whatever it holds (as `http` cuts it).
        Some(b'#') => Ok((query, i)),
        Some(_) => Err(HeadError::Target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The path and query, the path and the `Uri` `target` reads as, as the parsed
    /// head's accessors give them.
    fn read(target: &[u8]) -> Result<(String, String, Option<String>, String), HeadError> {
        let raw = Bytes::copy_from_slice(target);
        let t = Target::read(&raw, 0..raw.len())?;
        Ok(match t {
            Target::Origin { start, query, end } => {
                let pq = std::str::from_utf8(&raw[start..end]).unwrap().to_owned();
                let path = std::str::from_utf8(&raw[start..query]).unwrap().to_owned();
                let uri = Uri::from_maybe_shared(raw.slice(start..end)).unwrap();
                (pq, path, None, uri.to_string())
            }
            Target::Other(uri) => (
                uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
                uri.path().to_owned(),
                uri.authority().map(|a| a.to_string()),
                uri.to_string(),
            ),
        })
    }

    /// What `Uri::from_maybe_shared` makes of `target`, in the same terms.
    fn by_uri(target: &[u8]) -> Result<(String, String, Option<String>, String), HeadError> {
        let uri = Uri::from_maybe_shared(Bytes::copy_from_slice(target)).map_err(|_| HeadError::Target)?;
        Ok((
            uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
            uri.path().to_owned(),
            uri.authority().map(|a| a.to_string()),
            uri.to_string(),
        ))
    }

    #[test]
    fn origin_form_targets_are_read_as_uri_reads_them() {
        let fixed: &[&[u8]] = &[
            b"/",
            b"/a",
            b"/1k",
            b"/a?b=1",
            b"/a?",
            b"/?",
            b"/a??b",
            b"/a?b?c",
            b"/a#f",
            b"/#",
            b"/a?b#f",
            b"/a#f?b",
            b"/a?b#f#g",
            b"/a#f\x7f",
            b"/caf\xc3\xa9?q=\xc3\xa9",
            b"/{\"json\":1}",
            b"/a?{\"json\":1}",
            b"/a b",
            b"/a\x7f",
            b"/a?b\x7f",
            b"/a?b c",
            b"/%20?%20",
            b"*",
            b"http://example.com/a?b#c",
            b"http://example.com",
            b"http://u@example.com/",
            b"example.com:443",
            b"a",
        ];
        for t in fixed {
            assert_eq!(read(t), by_uri(t), "{:?}", String::from_utf8_lossy(t));
        }
        // Every byte as the path's second byte, in a query, and after a fragment.
        for b in 0u8..=255 {
            for t in [vec![b'/', b], vec![b'/', b'a', b'?', b], vec![b'/', b'?', b'x', b, b'y'], vec![b'/', b'#', b]] {
                // Only UTF-8 reaches the read (httparse's `path` is a `&str`).
                if std::str::from_utf8(&t).is_ok() {
                    assert_eq!(read(&t), by_uri(&t), "{t:?}");
                }
            }
        }
    }
}
