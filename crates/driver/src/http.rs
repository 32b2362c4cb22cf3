//! Converting between `http` types and protocol heads, and the proxy header rules
//! both ends share.

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use localtunnels_core::{Header, RequestHead, ResponseHead, StreamKind};

/// Hop-by-hop headers (RFC 9110 §7.6.1): meaningful for one connection only, never
/// forwarded. `Trailer` is end-to-end (it names the trailer fields that follow; hyper
/// only sends trailers a message declared there), so it crosses the tunnel.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Headers of the WebSocket handshake that each leg negotiates for itself.
const WS_HANDSHAKE: &[&str] =
    &["sec-websocket-key", "sec-websocket-version", "sec-websocket-accept", "sec-websocket-extensions"];

/// Headers a `Connection` header cannot remove. `Host` is meant for every recipient
/// (RFC 9110 §7.6.1 forbids naming such a field as a connection option): honouring
/// `Connection: Host` would let a visitor strip the Host that `--host-header preserve`
/// promises the origin.
const NOT_CONNECTION_OPTIONS: &[&str] = &["host"];

/// True for headers that must not cross the tunnel: the hop-by-hop set, anything the
/// `Connection` header names (but `Host`), and for WebSockets the per-leg handshake headers.
fn is_hop_by_hop(name: &str, connection_named: &[String], kind: StreamKind) -> bool {
    HOP_BY_HOP.contains(&name)
        || (connection_named.iter().any(|n| n == name) && !NOT_CONNECTION_OPTIONS.contains(&name))
        || (kind == StreamKind::WebSocket && WS_HANDSHAKE.contains(&name))
}

fn connection_tokens(headers: &HeaderMap) -> Vec<String> {
    tokens_of(headers.get_all(http::header::CONNECTION).iter())
}

/// The lowercase options named by `Connection` values.
fn tokens_of<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> Vec<String> {
    values
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The end-to-end headers of `headers`, in order (repeated names keep their values'
/// order), as protocol headers (names and values shared, not copied).
pub fn end_to_end_headers(headers: &HeaderMap, kind: StreamKind) -> Vec<Header> {
    let named = connection_tokens(headers);
    headers
        .iter()
        .filter(|(name, _)| !is_hop_by_hop(name.as_str(), &named, kind))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// Keeps the end-to-end headers of a header list in place, in order: what
/// [`end_to_end_headers`] does for a `HeaderMap`, for a head parsed straight from the wire.
pub fn retain_end_to_end(headers: &mut Vec<Header>, kind: StreamKind) {
    let has_connection = headers.iter().any(|(n, _)| n == http::header::CONNECTION);
    if !has_connection && kind == StreamKind::Http && !headers.iter().any(|(n, _)| is_fixed_hop_by_hop(n)) {
        // The usual head: nothing to drop, and no field compared with every name of
        // the lists (~0.18k instructions per response on the client).
        return;
    }
    if let Some(drop) = hop_by_hop_fields(headers, kind) {
        if drop != 0 {
            let mut i = 0;
            headers.retain(|_| {
                i += 1;
                drop & (1 << (i - 1)) == 0
            });
        }
        return;
    }
    let named = match has_connection {
        true => tokens_of(headers.iter().filter(|(n, _)| n == http::header::CONNECTION).map(|(_, v)| v)),
        false => Vec::new(),
    };
    headers.retain(|(name, _)| !is_hop_by_hop(name.as_str(), &named, kind));
}

/// Which fields of `headers` are hop-by-hop (as [`is_hop_by_hop`] says, with the
/// options its `Connection` values name), one bit per field; `None` for a list this
/// does not take (over 64 fields, or over [`OPTIONS`] options named).
/// The options are read off the values' bytes, in place, where `tokens_of` lowercases
/// each into a `String` of its own: ~1k instructions per response for nginx's
/// `Connection: keep-alive` (docs/BENCHMARKS.md, thirteenth round).
fn hop_by_hop_fields(headers: &[Header], kind: StreamKind) -> Option<u64> {
    if headers.len() > 64 {
        return None;
    }
    // The options `tokens_of` reads: of the `Connection` values that are visible ASCII
    // (`to_str` takes them), each comma-separated part, trimmed, if not empty.
    let mut options: [&[u8]; OPTIONS] = [&[]; OPTIONS];
    let mut count = 0;
    for (_, value) in headers.iter().filter(|(n, _)| n == http::header::CONNECTION) {
        let Ok(text) = value.to_str() else { continue };
        for option in text.as_bytes().split(|b| *b == b',').map(<[u8]>::trim_ascii).filter(|o| !o.is_empty()) {
            *options.get_mut(count)? = option;
            count += 1;
        }
    }
    let options = &options[..count];
    let mut drop = 0u64;
    for (i, (name, _)) in headers.iter().enumerate() {
        let name = name.as_str();
        let named = || options.iter().any(|o| o.len() == name.len() && o.eq_ignore_ascii_case(name.as_bytes()));
        let hop = is_listed_hop_by_hop(name)
            || (named() && !NOT_CONNECTION_OPTIONS.contains(&name))
            || (kind == StreamKind::WebSocket && WS_HANDSHAKE.contains(&name));
        drop |= u64::from(hop) << i;
    }
    Some(drop)
}

/// Most `Connection` options [`hop_by_hop_fields`] reads (a head with more takes the
/// general way).
const OPTIONS: usize = 8;

/// `HOP_BY_HOP.contains(&name)`, by length first: most names are ruled out by one
/// comparison, where the list's loop cost ~55 instructions a field.
fn is_listed_hop_by_hop(name: &str) -> bool {
    match name.len() {
        2 => name == "te",
        7 => name == "upgrade",
        10 => name == "connection" || name == "keep-alive",
        16 => name == "proxy-connection",
        17 => name == "transfer-encoding",
        18 => name == "proxy-authenticate",
        19 => name == "proxy-authorization",
        _ => false,
    }
}

/// `Keep-Alive` and `Proxy-Connection` (outside `http`'s standard names).
const KEEP_ALIVE: http::HeaderName = http::HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: http::HeaderName = http::HeaderName::from_static("proxy-connection");

/// [`HOP_BY_HOP`]'s names, compared as `HeaderName`s (a standard name is one
/// comparison of its tag, not of its text).
fn is_fixed_hop_by_hop(name: &http::HeaderName) -> bool {
    use http::header::{CONNECTION, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRANSFER_ENCODING, UPGRADE};
    // A `static`, not a `const`: a `const` array would be built and dropped per call.
    static NAMES: [http::HeaderName; 8] = [
        CONNECTION,
        TRANSFER_ENCODING,
        TE,
        UPGRADE,
        PROXY_AUTHENTICATE,
        PROXY_AUTHORIZATION,
        KEEP_ALIVE,
        PROXY_CONNECTION,
    ];
    NAMES.iter().any(|h| h == name)
}

/// Whether a request's `TE` values list `trailers` (RFC 9110 §10.1.4: `TE` is a comma
/// list of the keyword `trailers` and of transfer codings, each coding with optional
/// parameters such as `;q=0.5`; the keyword takes none), case-insensitively. `TE` is
/// hop-by-hop, but this one member says the client can take trailers, so a proxy that
/// forwards trailers passes it on to the next hop, as Go's `httputil.ReverseProxy`
/// does: the tunnel head carries one `te: trailers` ([`te_trailers`]) for such a
/// request and no `TE` for any other.
pub fn asks_for_trailers<'a>(mut values: impl Iterator<Item = &'a HeaderValue>) -> bool {
    values.any(|v| crate::h1::framing::has_token(v, "trailers"))
}

/// The one `TE` field a request head carries across the tunnel (see [`asks_for_trailers`];
/// the client forwards it to the origin: `localtunnels_core::is_te_trailers`).
pub fn te_trailers() -> Header {
    (http::header::TE, HeaderValue::from_static("trailers"))
}

/// The `TE` values of a header list.
fn te_values(headers: &[Header]) -> impl Iterator<Item = &HeaderValue> {
    headers.iter().filter(|(n, _)| n == http::header::TE).map(|(_, v)| v)
}

/// A request head for the tunnel from a visitor's request: its end-to-end headers,
/// then `te: trailers` if its `TE` asks for trailers ([`asks_for_trailers`]).
pub fn request_head(method: &Method, uri: &http::Uri, headers: &HeaderMap, kind: StreamKind) -> RequestHead {
    let mut list = end_to_end_headers(headers, kind);
    if kind == StreamKind::Http && asks_for_trailers(headers.get_all(http::header::TE).iter()) {
        list.push(te_trailers());
    }
    RequestHead { kind, method: RequestHead::method_of(method), target: target_of(uri), headers: list }
}

/// [`retain_end_to_end`] for a request's list: the hop-by-hop fields dropped, then
/// `te: trailers` last if its `TE` asks for trailers ([`asks_for_trailers`]; an HTTP
/// stream's only: a WebSocket has no trailers). `may_have_te`: the list may hold a
/// `TE` field (false skips the walk for one).
pub fn retain_request_end_to_end(headers: &mut Vec<Header>, kind: StreamKind, may_have_te: bool) {
    let trailers = may_have_te && kind == StreamKind::Http && asks_for_trailers(te_values(headers));
    retain_end_to_end(headers, kind);
    if trailers {
        headers.push(te_trailers());
    }
}

/// [`request_head`] from a header list parsed from the wire (moved, not copied): its
/// end-to-end headers in the order [`request_head`] gives for the same fields in a
/// `HeaderMap` ([`group_by_name`]).
pub fn request_head_from_list(
    method: &Method,
    uri: &http::Uri,
    mut headers: Vec<Header>,
    kind: StreamKind,
) -> RequestHead {
    group_by_name(&mut headers);
    retain_request_end_to_end(&mut headers, kind, true);
    RequestHead { kind, method: RequestHead::method_of(method), target: target_of(uri), headers }
}

/// A request's target as the tunnel carries it: its path and query.
fn target_of(uri: &http::Uri) -> String {
    uri.path_and_query().map_or("/", |p| p.as_str()).to_string()
}

/// A response head for the tunnel from an origin's response.
pub fn response_head(status: StatusCode, headers: &HeaderMap, kind: StreamKind) -> ResponseHead {
    ResponseHead { status: status.as_u16(), headers: end_to_end_headers(headers, kind) }
}

/// Why a response head from the other end of the tunnel (or from an origin) cannot be
/// forwarded as the final response to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadResponse {
    /// A status outside 100-599.
    #[error("status {0} is not an HTTP status (100-599)")]
    Status(u16),
    /// A 1xx other than an upgrade's 101: interim responses are not carried, and one
    /// cannot stand for the final response.
    #[error("status {0} is an interim response where the final one was due")]
    Interim(u16),
    /// A 101 to a request that asked for no upgrade.
    #[error("status 101 (Switching Protocols) answers a request that asked for no upgrade")]
    UnaskedSwitch,
    /// `Content-Length` values that are not one decimal number.
    #[error("invalid Content-Length")]
    ContentLength,
}

/// The status of a final response to a request of `kind`: 200-599, or 101 where the
/// request asked for an upgrade (a WebSocket stream).
pub fn final_status(status: u16, kind: StreamKind) -> Result<StatusCode, BadResponse> {
    match status {
        101 if kind == StreamKind::WebSocket => Ok(StatusCode::SWITCHING_PROTOCOLS),
        101 => Err(BadResponse::UnaskedSwitch),
        100..=199 => Err(BadResponse::Interim(status)),
        200..=599 => StatusCode::from_u16(status).map_err(|_| BadResponse::Status(status)),
        _ => Err(BadResponse::Status(status)),
    }
}

/// A response head as the next hop gets it: a checked final status ([`final_status`])
/// and the end-to-end headers (hop-by-hop ones, those `Connection` names and, for a
/// WebSocket, the per-leg handshake headers dropped), with at most one `Content-Length`
/// value, a decimal number. Peers and origins are not trusted to have done this.
pub fn forwardable_response(head: &ResponseHead, kind: StreamKind) -> Result<(StatusCode, HeaderMap), BadResponse> {
    let status = final_status(head.status, kind)?;
    let named = tokens_of(head.headers.iter().filter(|(n, _)| n == http::header::CONNECTION).map(|(_, v)| v));
    let mut headers = HeaderMap::with_capacity(head.headers.len());
    for (name, value) in &head.headers {
        if !is_hop_by_hop(name.as_str(), &named, kind) {
            headers.append(name.clone(), value.clone());
        }
    }
    check_lengths(headers.get_all(http::header::CONTENT_LENGTH).iter())?;
    Ok((status, headers))
}

/// [`forwardable_response`] as a header list (taken from `head`, nothing copied) in
/// the order a `HeaderMap` would give ([`group_by_name`]), for a caller that writes
/// the head itself rather than handing a `HeaderMap` to hyper.
pub fn forwardable_response_list(
    head: ResponseHead,
    kind: StreamKind,
) -> Result<(StatusCode, Vec<Header>), BadResponse> {
    let status = final_status(head.status, kind)?;
    let mut headers = head.headers;
    retain_end_to_end(&mut headers, kind);
    check_lengths(headers.iter().filter(|(n, _)| n == http::header::CONTENT_LENGTH).map(|(_, v)| v))?;
    group_by_name(&mut headers);
    Ok((status, headers))
}

/// At most one `Content-Length` value, a decimal number (repeats of the same value
/// allowed).
fn check_lengths<'a>(mut lengths: impl Iterator<Item = &'a HeaderValue>) -> Result<(), BadResponse> {
    if let Some(first) = lengths.next() {
        let decimal = !first.is_empty() && first.as_bytes().iter().all(u8::is_ascii_digit) && first.len() <= 19;
        if !decimal || lengths.any(|v| v != first) {
            return Err(BadResponse::ContentLength);
        }
    }
    Ok(())
}

/// Longest list [`group_by_name`] checks pair by pair; a longer one is regrouped
/// through a `HeaderMap` (linear, where the pairwise check is quadratic).
const GROUP_PAIRWISE: usize = 32;

/// Orders `headers` as a `HeaderMap` built from them iterates: each name's values
/// together, in order, where the name first appeared. A list whose repeated names are
/// already adjacent (nearly every head) is left as it is, without allocating. Both
/// HTTP/1 paths of the server (hyper's, through a `HeaderMap`, and its own, from the
/// parsed list) so forward and write fields in the same order.
pub fn group_by_name(headers: &mut Vec<Header>) {
    if is_left_grouped(headers) {
        return;
    }
    let map = header_map(headers);
    *headers = header_list(map);
}

/// Whether [`group_by_name`] leaves `headers` as they are. A list it leaves keeps being
/// left when fields are removed from it.
pub fn is_left_grouped(headers: &[Header]) -> bool {
    headers.len() <= GROUP_PAIRWISE && is_grouped(headers)
}

/// Whether no name comes back after another name came between. One pass: a bit per
/// name (from its length and three of its bytes) in a 64-bit mask of the names seen
/// before the previous one; only a name whose bit is already set is looked for among
/// them. Comparing every pair (a `memcmp` call for two names of the same length outside
/// the standard set) cost ~1k instructions for a browser's dozen fields
/// (docs/BENCHMARKS.md, fourteenth round).
fn is_grouped(headers: &[Header]) -> bool {
    let Some((first, _)) = headers.first() else { return true };
    let mut before = 0u64;
    let mut previous = name_bit(first);
    for i in 1..headers.len() {
        let (name, bit) = (&headers[i].0, name_bit(&headers[i].0));
        let new_name = bit != previous || *name != headers[i - 1].0;
        if new_name && before & bit != 0 && headers[..i - 1].iter().any(|(n, _)| n == name) {
            return false;
        }
        before |= previous;
        previous = bit;
    }
    true
}

/// A name's bit for [`is_grouped`]: the same for equal names.
fn name_bit(name: &http::HeaderName) -> u64 {
    let b = name.as_str().as_bytes();
    let at = |i: usize| usize::from(b.get(i).copied().unwrap_or(0));
    1 << ((b.len() * 7 + at(0) * 3 + at(b.len() / 2) * 5 + at(b.len().wrapping_sub(1))) % 64)
}

/// A `HeaderMap` as a header list, in its iteration order (names and values moved, not
/// copied): the inverse of [`header_map`].
pub fn header_list(map: HeaderMap) -> Vec<Header> {
    let mut list = Vec::with_capacity(map.len());
    let mut current: Option<http::HeaderName> = None;
    for (name, value) in map {
        if let Some(name) = name {
            current = Some(name);
        }
        if let Some(name) = &current {
            list.push((name.clone(), value));
        }
    }
    list
}

/// Rebuilds a `HeaderMap` from protocol headers, in order (values keep sharing the
/// frame's bytes).
pub fn header_map(headers: &[Header]) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        map.append(name.clone(), value.clone());
    }
    map
}

/// True if the request asks for a WebSocket upgrade.
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get_all(http::header::UPGRADE)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("websocket"))));
    upgrade && connection_tokens(headers).iter().any(|t| t == "upgrade")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.append("connection", "keep-alive, x-private".parse().unwrap());
        h.append("x-private", "1".parse().unwrap());
        h.append("set-cookie", "a=1".parse().unwrap());
        h.append("transfer-encoding", "chunked".parse().unwrap());
        h.append("set-cookie", "b=2".parse().unwrap());
        let out = end_to_end_headers(&h, StreamKind::Http);
        let names: Vec<_> = out.iter().map(|(n, v)| (n.as_str(), v.as_ref())).collect();
        assert_eq!(names, vec![("set-cookie", &b"a=1"[..]), ("set-cookie", &b"b=2"[..])]);
    }

    #[test]
    fn only_final_statuses_are_forwarded() {
        assert_eq!(final_status(200, StreamKind::Http), Ok(StatusCode::OK));
        assert_eq!(final_status(599, StreamKind::Http).map(|s| s.as_u16()), Ok(599));
        assert_eq!(final_status(101, StreamKind::WebSocket), Ok(StatusCode::SWITCHING_PROTOCOLS));
        assert_eq!(final_status(101, StreamKind::Http), Err(BadResponse::UnaskedSwitch));
        assert_eq!(final_status(103, StreamKind::Http), Err(BadResponse::Interim(103)));
        assert_eq!(final_status(100, StreamKind::WebSocket), Err(BadResponse::Interim(100)));
        assert_eq!(final_status(999, StreamKind::Http), Err(BadResponse::Status(999)));
        assert_eq!(final_status(600, StreamKind::Http), Err(BadResponse::Status(600)));
        assert_eq!(final_status(0, StreamKind::Http), Err(BadResponse::Status(0)));
    }

    #[test]
    fn forwarded_responses_lose_hop_by_hop_headers() {
        let h = |n: &'static str, v: &'static str| (http::HeaderName::from_static(n), HeaderValue::from_static(v));
        let head = ResponseHead {
            status: 200,
            headers: vec![
                h("connection", "close, x-private"),
                h("keep-alive", "timeout=5"),
                h("proxy-connection", "keep-alive"),
                h("transfer-encoding", "chunked"),
                h("upgrade", "h2c"),
                h("te", "trailers"),
                h("x-private", "1"),
                h("content-length", "2"),
                h("trailer", "x-checksum"),
                h("set-cookie", "a=1"),
            ],
        };
        let (status, headers) = forwardable_response(&head, StreamKind::Http).unwrap();
        assert_eq!(status, StatusCode::OK);
        let names: Vec<_> = headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, vec!["content-length", "trailer", "set-cookie"]);
        for lengths in [&["2", "3"][..], &["-1"], &["1e3"], &[""], &["99999999999999999999"]] {
            let headers = lengths.iter().map(|v| h("content-length", v)).collect();
            let bad = ResponseHead { status: 200, headers };
            assert_eq!(forwardable_response(&bad, StreamKind::Http), Err(BadResponse::ContentLength), "{lengths:?}");
        }
        let same = ResponseHead { status: 200, headers: vec![h("content-length", "2"), h("content-length", "2")] };
        assert!(forwardable_response(&same, StreamKind::Http).is_ok());
    }

    #[test]
    fn lists_are_grouped_as_a_header_map_orders_them() {
        let h = |n: &'static str, v: &'static str| (http::HeaderName::from_static(n), HeaderValue::from_static(v));
        let order =
            |list: &[Header]| list.iter().map(|(n, v)| format!("{n}={}", v.to_str().unwrap())).collect::<Vec<_>>();
        let grouped = vec![h("a", "1"), h("a", "2"), h("b", "3"), h("c", "4")];
        let mut same = grouped.clone();
        group_by_name(&mut same);
        assert_eq!(order(&same), order(&grouped));
        let mut interleaved = vec![h("a", "1"), h("b", "2"), h("a", "3"), h("c", "4"), h("b", "5")];
        group_by_name(&mut interleaved);
        assert_eq!(order(&interleaved), ["a=1", "a=3", "b=2", "b=5", "c=4"]);
        // Names with the same fingerprint (length, first, middle and last bytes) are
        // still told apart.
        let mut alike = vec![h("x-ab-c", "1"), h("x-cb-c", "2"), h("x-ab-c", "3")];
        group_by_name(&mut alike);
        assert_eq!(order(&alike), ["x-ab-c=1", "x-ab-c=3", "x-cb-c=2"]);
        let apart = vec![h("x-ab-c", "1"), h("x-cb-c", "2"), h("x-cb-c", "3")];
        let mut kept = apart.clone();
        group_by_name(&mut kept);
        assert_eq!(order(&kept), order(&apart));
        // More names than the mask has bits: colliding bits are looked up, not taken
        // for a repeat.
        let names: Vec<String> = (0..80).map(|i| format!("x-{i}")).collect();
        let mut many: Vec<Header> = names
            .iter()
            .map(|n| (http::HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_static("v")))
            .collect();
        assert!(is_grouped(&many));
        many.push(many[3].clone());
        assert!(!is_grouped(&many));
        // Long lists take the HeaderMap's way, with the same order.
        let mut long: Vec<Header> = (0..40).map(|i| h(if i % 2 == 0 { "x" } else { "y" }, "v")).collect();
        group_by_name(&mut long);
        assert!(long[..20].iter().all(|(n, _)| n == "x") && long[20..].iter().all(|(n, _)| n == "y"));
        for list in [grouped, vec![h("a", "1"), h("b", "2"), h("a", "3")]] {
            let mut via_list = list.clone();
            group_by_name(&mut via_list);
            assert_eq!(order(&via_list), order(&header_list(header_map(&list))));
        }
    }

    #[test]
    fn a_response_list_is_checked_as_the_map_is() {
        let h = |n: &'static str, v: &'static str| (http::HeaderName::from_static(n), HeaderValue::from_static(v));
        let heads = [
            vec![
                h("connection", "close, x-p"),
                h("x-p", "1"),
                h("set-cookie", "a"),
                h("te", "x"),
                h("set-cookie", "b"),
            ],
            vec![h("content-length", "2"), h("x-a", "1"), h("content-length", "2")],
            vec![h("content-length", "2"), h("content-length", "3")],
            vec![h("content-length", "+2")],
        ];
        for headers in heads {
            let head = ResponseHead { status: 200, headers };
            let map = forwardable_response(&head, StreamKind::Http).map(|(s, m)| (s, header_list(m)));
            assert_eq!(forwardable_response_list(head, StreamKind::Http), map);
        }
    }

    /// Each hop-by-hop name alone among end-to-end ones (no `Connection` to name it) is
    /// dropped from a list as from a map: the list's shortcut for heads without one
    /// must not let it through.
    #[test]
    fn a_list_loses_each_hop_by_hop_name_without_a_connection_header() {
        let h = |n: &str, v: &'static str| (n.parse::<http::HeaderName>().unwrap(), HeaderValue::from_static(v));
        for kind in [StreamKind::Http, StreamKind::WebSocket] {
            for hop in HOP_BY_HOP.iter().chain(WS_HANDSHAKE).chain(["x-other", "keep-alives", "t"].iter()) {
                let list = vec![h("content-type", "text/plain"), h(hop, "1"), h("x-forwarded-for", "127.0.0.1")];
                let mut via_list = list.clone();
                retain_end_to_end(&mut via_list, kind);
                assert_eq!(via_list, end_to_end_headers(&header_map(&list), kind), "{hop} ({kind:?})");
                let hop_by_hop =
                    HOP_BY_HOP.contains(hop) || (kind == StreamKind::WebSocket && WS_HANDSHAKE.contains(hop));
                assert_eq!(via_list.len(), if hop_by_hop { 2 } else { 3 }, "{hop} ({kind:?})");
            }
        }
    }

    /// Lists with `Connection` fields (the way without allocations, and its fallbacks)
    /// lose exactly what a map loses.
    #[test]
    fn a_list_with_connection_options_loses_what_a_map_loses() {
        let h = |n: &str, v: &[u8]| (n.parse::<http::HeaderName>().unwrap(), HeaderValue::from_bytes(v).unwrap());
        let connections: [&[&[u8]]; 11] = [
            &[b"keep-alive"],
            &[b"close"],
            &[b"Close, X-P"],
            &[b" x-p ,\tKeep-Alive,,"],
            &[b"host, x-p"],
            &[b"x-p, \xc3\xa9"],
            &[b"x-q", b"x-p"],
            &[b"upgrade", b"x-q", b"te", b"x-r", b"x-p"],
            &[b"sec-websocket-key"],
            &[b""],
            &[b"a, b, c, d", b"e, f, g, h, x-p"],
        ];
        for kind in [StreamKind::Http, StreamKind::WebSocket] {
            for values in connections {
                for extra in [0, 70] {
                    let mut list: Vec<Header> = values.iter().map(|v| h("connection", v)).collect();
                    list.extend([
                        h("host", b"a"),
                        h("x-p", b"1"),
                        h("x-q", b"2"),
                        h("close", b"3"),
                        h("keep-alive", b"4"),
                        h("sec-websocket-key", b"5"),
                        h("upgrade", b"6"),
                    ]);
                    list.extend((0..extra).map(|i| h(&format!("x-many-{i}"), b"7")));
                    let mut via_list = list.clone();
                    retain_end_to_end(&mut via_list, kind);
                    let via_map = end_to_end_headers(&header_map(&list), kind);
                    let sorted = |l: &[Header]| {
                        let mut l: Vec<_> = l.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect();
                        l.sort();
                        l
                    };
                    assert_eq!(sorted(&via_list), sorted(&via_map), "{values:?} ({kind:?}, {extra} more)");
                }
            }
        }
    }

    #[test]
    fn the_listed_hop_by_hop_names_are_the_list() {
        for name in HOP_BY_HOP {
            assert!(is_listed_hop_by_hop(name), "{name}");
        }
        for name in ["t", "tf", "upgrades", "connections", "keep-alives", "content-length", "proxy-connectiom", "", "x"]
        {
            assert!(!is_listed_hop_by_hop(name), "{name}");
        }
    }

    #[test]
    fn connection_cannot_remove_host() {
        let mut h = HeaderMap::new();
        h.append("connection", "Host, x-private".parse().unwrap());
        h.append("host", "demo.localhost".parse().unwrap());
        h.append("x-private", "1".parse().unwrap());
        let out = end_to_end_headers(&h, StreamKind::Http);
        let names: Vec<_> = out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["host"]);
    }

    #[test]
    fn websocket_upgrade_is_detected() {
        let mut h = HeaderMap::new();
        h.append("connection", "keep-alive, Upgrade".parse().unwrap());
        h.append("upgrade", "WebSocket".parse().unwrap());
        assert!(is_websocket_upgrade(&h));
        h.remove("connection");
        assert!(!is_websocket_upgrade(&h));
    }
}
