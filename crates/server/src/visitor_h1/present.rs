//! Which of the names that the HTTP/1 path's checks look for a request head carries,
//! read in one walk of its fields, so that a check whose name is absent (nearly every
//! head: no `Connection`, no `X-Forwarded-*`, no `TE`) walks nothing. Without it, a
//! browser's eleven fields were walked for `Host`, then for the hop-by-hop names (eight
//! comparisons a field), for the visitor's forwarding fields (five string comparisons
//! a field), for `Accept` and for `TE`: measured with `bench/callgrind`,
//! docs/BENCHMARKS.md, sixteenth round ("the server's HTTP/1 request head").
//!
//! The set is read after routing, once the head's fields are final but for removals
//! (a repeated `Content-Length`, `Authorization` under basic auth, hop-by-hop fields):
//! a name it lacks is absent from the list, a name it has may be gone since, and the
//! check then walks the list as before. Nothing adds a field to the list after it but
//! `te: trailers` in place of `TE` fields (`TE` is then in the set).

use http::header::{self, HeaderName};
use localtunnels_core::Header;
use localtunnels_driver::h1::FieldCache;
use localtunnels_driver::http::is_left_grouped;

use crate::exchange::is_forwarding;

/// A set of the names [`Present::of`] looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Present(u8);

impl Present {
    /// `Host`.
    pub(super) const HOST: u8 = 1;
    /// `Accept`.
    pub(super) const ACCEPT: u8 = 1 << 1;
    /// `TE`.
    pub(super) const TE: u8 = 1 << 2;
    /// A name `retain_end_to_end` drops or reads for an HTTP stream: `Connection` and
    /// the fixed hop-by-hop ones (a head without any is left as it is).
    pub(super) const HOP_BY_HOP: u8 = 1 << 3;
    /// A name a visitor may not set ([`is_forwarding`]).
    pub(super) const FORWARDING: u8 = 1 << 4;

    /// The names of [`Present`] that `headers` carries.
    pub(super) fn of(headers: &[Header]) -> Present {
        let mut set = 0;
        for (name, _) in headers {
            set |= bit(name);
        }
        Present(set)
    }

    /// Whether `names` (one or more of the constants) may be in the head.
    pub(super) fn has(self, names: u8) -> bool {
        self.0 & names != 0
    }
}

/// What the exchange reads of a head's fields before it opens the stream: the names
/// [`Present`], and whether `group_by_name` leaves the list as it is. Both depend on
/// the fields alone, so they are noted in the connection's field cache with the fields
/// it remembers, and a head whose fields repeat them reads them back instead of
/// walking its list twice more (~0.8k instructions for a browser's eleven fields:
/// docs/BENCHMARKS.md, sixteenth round).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Noted {
    pub present: Present,
    pub grouped: bool,
}

impl Noted {
    /// The fields' [`Noted`], from `cache`'s note when they are the fields it noted.
    /// `headers` are the last head read with `cache` (or the connection's first head,
    /// read without it: then nothing is noted).
    pub(super) fn of(headers: &[Header], cache: &mut FieldCache) -> Noted {
        if let Some(note) = cache.note() {
            return Noted { present: Present(note as u8), grouped: note & GROUPED != 0 };
        }
        let noted = Noted { present: Present::of(headers), grouped: is_left_grouped(headers) };
        cache.set_note(u32::from(noted.present.0) | if noted.grouped { GROUPED } else { 0 });
        noted
    }
}

/// [`Noted::grouped`]'s bit in a note (the set's are below it).
const GROUPED: u32 = 1 << 8;

/// The constant of [`Present`] for `name`, or 0. A standard name is told by its
/// constant; the few others looked for (`keep-alive`, `proxy-connection`,
/// `x-forwarded-*`) by their length first, so that a browser's own names
/// (`sec-fetch-*`, `priority`) cost a length comparison.
fn bit(name: &HeaderName) -> u8 {
    match *name {
        header::HOST => Present::HOST,
        header::ACCEPT => Present::ACCEPT,
        header::TE => Present::TE | Present::HOP_BY_HOP,
        header::CONNECTION
        | header::TRANSFER_ENCODING
        | header::UPGRADE
        | header::PROXY_AUTHENTICATE
        | header::PROXY_AUTHORIZATION => Present::HOP_BY_HOP,
        header::FORWARDED | header::EXPECT => Present::FORWARDING,
        _ => match name.as_str().len() {
            // `keep-alive`, `proxy-connection`, `x-forwarded-for`, `-host`, `-proto`.
            10 | 15..=17 => other(name),
            _ => 0,
        },
    }
}

/// [`bit`] for a name that is not a standard one of the set.
fn other(name: &HeaderName) -> u8 {
    match name.as_str() {
        "keep-alive" | "proxy-connection" => Present::HOP_BY_HOP,
        _ if is_forwarding(name) => Present::FORWARDING,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use localtunnels_core::StreamKind;
    use localtunnels_driver::http::retain_end_to_end;

    use super::*;

    /// Names of every kind: the set's, their neighbours by length, a browser's own.
    const NAMES: &[&str] = &[
        "host",
        "accept",
        "accept-language",
        "accept-encoding",
        "te",
        "connection",
        "transfer-encoding",
        "upgrade",
        "upgrade-insecure-requests",
        "proxy-authenticate",
        "proxy-authorization",
        "keep-alive",
        "keep-alivf",
        "proxy-connection",
        "proxy-connectiom",
        "x-forwarded-for",
        "x-forwarded-fox",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-hosts",
        "forwarded",
        "expect",
        "content-length",
        "authorization",
        "sec-fetch-dest",
        "sec-fetch-user",
        "priority",
        "user-agent",
        "cookie",
        "x-real-ip",
        "trailer",
    ];

    #[test]
    fn each_name_is_in_the_set_as_the_walks_it_spares_would_find_it() {
        for text in NAMES {
            let name = HeaderName::from_bytes(text.as_bytes()).unwrap();
            let field = (name.clone(), HeaderValue::from_static("x"));
            let present = Present::of(std::slice::from_ref(&field));
            assert_eq!(present.has(Present::HOST), name == header::HOST, "{text}");
            assert_eq!(present.has(Present::ACCEPT), name == header::ACCEPT, "{text}");
            assert_eq!(present.has(Present::TE), name == header::TE, "{text}");
            assert_eq!(present.has(Present::FORWARDING), is_forwarding(&name), "{text}");
            // A name not in the set is left by `retain_end_to_end` (what skipping it assumes).
            let mut list = vec![field.clone(), (header::HOST, HeaderValue::from_static("a"))];
            retain_end_to_end(&mut list, StreamKind::Http);
            if !present.has(Present::HOP_BY_HOP) {
                assert_eq!(list.len(), 2, "{text} dropped though not in the set");
            }
        }
    }

    #[test]
    fn what_is_noted_of_repeated_fields_is_what_they_would_read() {
        use bytes::BytesMut;
        use localtunnels_driver::h1::{parse_request_cached, HeadLimits};
        let heads = [
            "GET /a HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n",
            "GET /b HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n",
            "GET /c HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n",
            "GET /d HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nAccept: */*\r\nX-A: 2\r\n\r\n",
            "GET /e HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nAccept: */*\r\nX-A: 2\r\n\r\n",
            "GET /f HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nAccept: */*\r\nX-A: 2\r\n\r\n",
            "GET /g HTTP/1.1\r\nConnection: close\r\nTE: trailers\r\nX-Forwarded-For: 1\r\n\r\n",
            "GET /h HTTP/1.1\r\nConnection: close\r\nTE: trailers\r\nX-Forwarded-For: 1\r\n\r\n",
            "GET /i HTTP/1.1\r\n\r\n",
            "GET /j HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n",
            "GET /k HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n",
        ];
        let mut cache = FieldCache::default();
        let mut noted_again = 0;
        for head in heads {
            let mut buf = BytesMut::from(head);
            let req = parse_request_cached(&mut buf, &HeadLimits::default(), &mut cache).unwrap().unwrap();
            noted_again += usize::from(cache.note().is_some());
            let read = Noted { present: Present::of(&req.headers), grouped: is_left_grouped(&req.headers) };
            assert_eq!(Noted::of(&req.headers, &mut cache), read, "{head:?}");
        }
        assert!(noted_again >= 4, "the notes of repeated fields were read back {noted_again} times");
    }

    #[test]
    fn a_head_has_the_union_of_its_names() {
        let head: Vec<Header> = [header::HOST, header::ACCEPT, HeaderName::from_static("x-forwarded-for")]
            .into_iter()
            .map(|n| (n, HeaderValue::from_static("x")))
            .collect();
        let present = Present::of(&head);
        assert!(present.has(Present::HOST) && present.has(Present::ACCEPT) && present.has(Present::FORWARDING));
        assert!(!present.has(Present::TE | Present::HOP_BY_HOP));
        assert!(!Present::of(&[]).has(u8::MAX));
    }
}
