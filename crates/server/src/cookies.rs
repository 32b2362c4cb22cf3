//! Cookie tossing: every tunnel is a subdomain of the server's domain, so a tunnel
//! answering `Set-Cookie: x=1; Domain=<domain>` would set a cookie that the browser
//! then sends to the apex and to every other tunnel (and could shadow their cookies).
//!
//! The server removes a `Domain` attribute that names the server's domain or any parent
//! of the tunnel's host, which makes the cookie host-only (sent back to this tunnel
//! only). `Domain=<the tunnel's own hostname>` is kept: it only widens the cookie to
//! the tunnel's own subdomains, where no other tunnel lives. Other domains are left
//! alone: browsers refuse a cookie for a domain the response's host is not in.
//!
//! This covers cookies set by response headers. A page's script can still write
//! `document.cookie` with a parent domain; only listing the domain on the Public
//! Suffix List stops that (`docs/SECURITY.md`, "Cookies").

use http::header::SET_COOKIE;
use http::{HeaderMap, HeaderValue};
use localtunnels_core::Header;

/// [`host_only`] for the tunnel `name` of a server on `domain`; builds the hostname
/// only when there is a cookie to look at.
pub fn for_tunnel(headers: &mut HeaderMap, name: &str, domain: &str) {
    if headers.contains_key(SET_COOKIE) {
        host_only(headers, &format!("{name}.{}", domain.trim_end_matches('.')));
    }
}

/// Makes every `Set-Cookie` in `headers` host-only unless its `Domain` is `host`
/// (the tunnel's hostname, lowercase, without port or trailing dot).
pub fn host_only(headers: &mut HeaderMap, host: &str) {
    // `entry` may grow the map: only look when there is a cookie.
    if !headers.contains_key(SET_COOKIE) {
        return;
    }
    if let http::header::Entry::Occupied(mut cookies) = headers.entry(SET_COOKIE) {
        scrub_all(cookies.iter_mut(), host);
    }
}

/// [`for_tunnel`] on a header list (the HTTP/1 visitor path writes heads from one).
pub fn for_tunnel_list(headers: &mut [Header], name: &str, domain: &str) {
    if headers.iter().any(|(n, _)| n == SET_COOKIE) {
        let host = format!("{name}.{}", domain.trim_end_matches('.'));
        scrub_all(headers.iter_mut().filter(|(n, _)| n == SET_COOKIE).map(|(_, v)| v), &host);
    }
}

/// Makes each of `cookies` host-only unless its `Domain` is `host`.
fn scrub_all<'a>(cookies: impl Iterator<Item = &'a mut HeaderValue>, host: &str) {
    for value in cookies {
        if let Some(scrubbed) = scrub(value.as_bytes(), host) {
            *value = scrubbed;
        }
    }
}

/// The `Set-Cookie` value without the `Domain` attributes `host` must not hand out, or
/// `None` when it needs no change.
fn scrub(value: &[u8], host: &str) -> Option<HeaderValue> {
    let parts = || value.split(|&b| b == b';');
    if !parts().skip(1).any(|attr| tossed(attr, host)) {
        return None;
    }
    let mut out = Vec::with_capacity(value.len());
    for (i, part) in parts().enumerate() {
        if i > 0 && tossed(part, host) {
            continue;
        }
        if i > 0 {
            out.push(b';');
        }
        out.extend_from_slice(part);
    }
    HeaderValue::from_bytes(&out).ok()
}

/// Whether `attr` (one `;`-separated attribute) is a `Domain` that `host` must not set:
/// a parent of `host` (which includes the server's domain).
fn tossed(attr: &[u8], host: &str) -> bool {
    let attr = attr.trim_ascii();
    let Some((name, domain)) = attr.split_at_checked(6) else { return false };
    if !name.eq_ignore_ascii_case(b"domain") {
        return false;
    }
    let Some(domain) = domain.trim_ascii_start().strip_prefix(b"=") else { return false };
    // A leading dot is ignored by browsers (RFC 6265 §5.2.3).
    let domain = domain.trim_ascii();
    let domain = domain.strip_prefix(b".").unwrap_or(domain);
    let domain = domain.strip_suffix(b".").unwrap_or(domain);
    if domain.is_empty() || domain.eq_ignore_ascii_case(host.as_bytes()) {
        return false;
    }
    // `host` is `domain` or below it: `domain` is a parent.
    let host = host.as_bytes();
    host.len() > domain.len()
        && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain)
        && host[host.len() - domain.len() - 1] == b'.'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrubbed(cookie: &str) -> String {
        let mut h = HeaderMap::new();
        h.append(SET_COOKIE, HeaderValue::from_str(cookie).unwrap());
        host_only(&mut h, "demo.tunnel.example.com");
        h.get(SET_COOKIE).unwrap().to_str().unwrap().to_string()
    }

    #[test]
    fn parent_domains_are_removed_and_the_own_host_kept() {
        assert_eq!(scrubbed("a=1; Domain=tunnel.example.com; Path=/"), "a=1; Path=/");
        assert_eq!(scrubbed("a=1; domain=.TUNNEL.example.com"), "a=1");
        assert_eq!(scrubbed("a=1;Domain = example.com;HttpOnly"), "a=1;HttpOnly");
        assert_eq!(scrubbed("a=1; Domain=com"), "a=1");
        assert_eq!(scrubbed("a=1; Domain=tunnel.example.com."), "a=1");
        for kept in [
            "a=1; Domain=demo.tunnel.example.com",
            "a=1; Domain=.Demo.Tunnel.Example.com; Secure",
            "a=1; Path=/",
            "a=1; Domain=other.tunnel.example.com",
            "a=1; Domain=ample.com",
            "a=1; Domain=",
            "domain=tunnel.example.com",
        ] {
            assert_eq!(scrubbed(kept), kept);
        }
    }

    #[test]
    fn every_cookie_of_a_response_is_checked() {
        let mut h = HeaderMap::new();
        h.append(SET_COOKIE, HeaderValue::from_static("a=1; Domain=example.com"));
        h.append(SET_COOKIE, HeaderValue::from_static("b=2; Domain=demo.tunnel.example.com"));
        h.append(
            SET_COOKIE,
            HeaderValue::from_static("c=3; Domain=tunnel.example.com; Domain=demo.tunnel.example.com"),
        );
        host_only(&mut h, "demo.tunnel.example.com");
        let all: Vec<_> = h.get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(all, ["a=1", "b=2; Domain=demo.tunnel.example.com", "c=3; Domain=demo.tunnel.example.com"]);
    }
}
