//! A tunnel's response head made fit for the visitor on the HTTP/1 path: what
//! [`forwardable_response_list`] and [`crate::cookies::for_tunnel_list`] do, with one
//! look at each field name for the usual head, which needs none of their changes.
//!
//! Those two walk the list four times and compare each name with a dozen others (the
//! hop-by-hop names one by one, `Connection`, `Content-Length`, `Set-Cookie`): ~0.28k
//! instructions for a two-field head, between the tunnel's read of the response and
//! the visitor's write. Every name those rules act on has one of eight lengths, so a
//! name of any other length (`date`, `content-type`, `etag`, `server`, ...) is passed
//! over after one comparison. A head with a hop-by-hop name, a `Set-Cookie`, or
//! anything but one valid `Content-Length` takes the two functions unchanged, so the
//! result is theirs in every case (`docs/BENCHMARKS.md`, fourteenth round).
//!
//! The same pass says what the visitor's head needs ([`Shape`]): a plain head without
//! `Trailer` is written field by field as it is ([`super::encode::encode_response_head`]),
//! its `Content-Length` read here once (`docs/BENCHMARKS.md`, fifteenth round).

use http::StatusCode;
use localtunnels_core::{Header, ResponseHead, StreamKind};
use localtunnels_driver::http::{final_status, forwardable_response_list, group_by_name, BadResponse};

/// What the check of a response head found that its writing can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Any head: [`super::encode::encode_head`] applies hyper's rules to every field.
    General,
    /// A plain head without `Trailer`: no field the head's writer joins, drops or
    /// changes, so each is written as it is; and the value of its one
    /// `Content-Length`, if it has one.
    Verbatim {
        /// The `Content-Length`, parsed.
        length: Option<u64>,
    },
}

/// The status and fields of `head` (a response to an HTTP request through the tunnel
/// `name` of a server on `domain`) as the visitor gets them: a final status, no
/// hop-by-hop fields, at most one `Content-Length` value, names grouped as a
/// `HeaderMap` orders them, and cookies host-only; and their [`Shape`].
pub(super) fn for_visitor(
    head: ResponseHead,
    name: &str,
    domain: &str,
) -> Result<(StatusCode, Vec<Header>, Shape), BadResponse> {
    let Some(shape) = plain_shape(&head.headers) else {
        let (status, mut headers) = forwardable_response_list(head, StreamKind::Http)?;
        crate::cookies::for_tunnel_list(&mut headers, name, domain);
        return Ok((status, headers, Shape::General));
    };
    let status = final_status(head.status, StreamKind::Http)?;
    let mut headers = head.headers;
    // Two fields or fewer are always grouped (the second either repeats the first
    // name or is new).
    if headers.len() > 2 {
        group_by_name(&mut headers);
    }
    Ok((status, headers, shape))
}

/// `Some` when `headers` has no hop-by-hop field (nor a `Connection` to name others),
/// no `Set-Cookie`, and at most one `Content-Length`, a decimal number of at most 19
/// digits: then the rules drop nothing, check nothing more and scope no cookie. The
/// shape is [`Shape::Verbatim`] unless a `Trailer` (which the head's writer joins
/// on one line) is among them.
fn plain_shape(headers: &[Header]) -> Option<Shape> {
    let mut length = None;
    let mut trailer = false;
    for (name, value) in headers {
        if !plain_field(name.as_str().as_bytes(), value.as_bytes(), &mut length, &mut trailer) {
            return None;
        }
    }
    Some(if trailer { Shape::General } else { Shape::Verbatim { length: length.flatten() } })
}

/// Whether one field (`name` lowercase) leaves a head plain for [`plain_shape`]: not a
/// hop-by-hop name nor `Connection`, not `Set-Cookie`, not a second `Content-Length`
/// nor one that is not a decimal number of at most 19 digits. Notes the
/// `Content-Length` in `length` and a `Trailer` in `trailer`. Every name these rules
/// act on has one of eight lengths: any other is passed over after one comparison.
/// The HTTP/1 visitor's head written from the frame's bytes checks each field with it
/// too (`super::block_head`).
pub(super) fn plain_field(name: &[u8], value: &[u8], length: &mut Option<Option<u64>>, trailer: &mut bool) -> bool {
    match name.len() {
        2 => name != b"te",
        7 => {
            *trailer |= name == b"trailer";
            name != b"upgrade"
        }
        10 => name != b"connection" && name != b"keep-alive" && name != b"set-cookie",
        14 if name == b"content-length" => {
            // At most 19 digits: the number fits a `u64`.
            let decimal = if value.len() <= 19 { localtunnels_driver::h1::framing::decimal(value) } else { None };
            decimal.is_some() && length.replace(decimal).is_none()
        }
        16 => name != b"proxy-connection",
        17 => name != b"transfer-encoding",
        18 => name != b"proxy-authenticate",
        19 => name != b"proxy-authorization",
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderName, HeaderValue};

    use super::*;

    fn field(name: &str, value: &str) -> Header {
        (HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap())
    }

    /// Whatever the head, the result is the one of `forwardable_response_list` then
    /// `for_tunnel_list`: heads the shortcut takes and heads it passes on, each name
    /// the rules act on alone and among others, and names of the same lengths that
    /// they do not act on.
    #[test]
    fn the_result_is_the_rules_result_for_every_head() {
        let special = [
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("connection", "close"),
            ("connection", "x-a"),
            ("keep-alive", "timeout=5"),
            ("set-cookie", "a=1; Domain=example.test"),
            ("set-cookie", "a=1; Domain=t.example.test"),
            ("content-length", "5"),
            ("content-length", "05"),
            ("content-length", ""),
            ("content-length", "5 "),
            ("content-length", "12345678901234567890"),
            ("proxy-connection", "close"),
            ("transfer-encoding", "chunked"),
            ("proxy-authenticate", "Basic"),
            ("proxy-authorization", "Basic x"),
        ];
        let ordinary = [
            ("date", "Sun, 06 Dec 2026 14:00:00 GMT"),
            ("tt", "1"),
            ("trailer", "x-a"),
            ("x-a", "1"),
            ("x-b", "2"),
            ("x-cookie-1", "1"),
            ("content-lengths", "5"),
            ("x-content-len1", "5"),
            ("content-type", "text/plain"),
            ("proxy-connectio1", "1"),
            ("transfer-encodin1", "1"),
            ("x-a", "3"),
        ];
        let mut heads: Vec<Vec<Header>> = vec![vec![]];
        for (n, v) in ordinary.iter().chain(special.iter()) {
            heads.push(vec![field(n, v)]);
            heads.push(vec![field("date", "d"), field(n, v), field("x-a", "1")]);
            heads.push(vec![field(n, v), field("content-length", "5")]);
        }
        heads.push(ordinary.iter().map(|(n, v)| field(n, v)).collect());
        heads.push(vec![field("content-length", "5"), field("content-length", "5")]);
        heads.push(vec![field("x-a", "1"), field("x-b", "2"), field("x-a", "3")]);
        heads.push(vec![field("x-a", "1"), field("x-a", "3")]);
        for status in [200, 204, 101, 103, 600] {
            for headers in &heads {
                let head = ResponseHead { status, headers: headers.clone() };
                let got = for_visitor(head.clone(), "t", "example.test").map(|(s, h, _)| (s, h));
                let want = forwardable_response_list(head, StreamKind::Http).map(|(s, mut h)| {
                    crate::cookies::for_tunnel_list(&mut h, "t", "example.test");
                    (s, h)
                });
                assert_eq!(got, want, "{status} {headers:?}");
            }
        }
    }

    /// The usual head is taken by the shortcut; a head with anything to change is not.
    #[test]
    fn only_heads_without_anything_to_change_are_plain() {
        let usual = [field("date", "d"), field("content-type", "text/plain"), field("content-length", "1024")];
        assert_eq!(plain_shape(&usual), Some(Shape::Verbatim { length: Some(1024) }));
        assert_eq!(plain_shape(&[]), Some(Shape::Verbatim { length: None }));
        assert_eq!(plain_shape(&[field("trailer", "x-a"), field("content-length", "1")]), Some(Shape::General));
        assert_eq!(plain_shape(&[field("connection", "keep-alive")]), None);
        assert_eq!(plain_shape(&[field("set-cookie", "a=1")]), None);
        assert_eq!(plain_shape(&[field("content-length", "1"), field("content-length", "1")]), None);
        assert_eq!(plain_shape(&[field("content-length", "x")]), None);
        assert_eq!(plain_shape(&[field("content-length", "")]), None);
        let longest = "9".repeat(19);
        assert_eq!(
            plain_shape(&[field("content-length", &longest)]),
            Some(Shape::Verbatim { length: Some(9_999_999_999_999_999_999) })
        );
        assert_eq!(plain_shape(&[field("content-length", &"1".repeat(20))]), None);
    }
}
