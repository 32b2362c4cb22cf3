//! The host a visitor's request is for, checked as RFC 9112 §3.2 asks before anything
//! is routed by it or forwarded.
//!
//! A request names its host in its `Host` header and, in absolute form
//! (`GET http://demo.example.com/ HTTP/1.1`, and always over HTTP/2 as `:authority`),
//! in its target. Refused with 400:
//!
//! - more than one `Host` field line (RFC 9112 §3.2: a server MUST answer 400), so no
//!   origin ever receives two;
//! - a `Host` (or target authority) that is not a host: a registered name of letters,
//!   digits, `-`, `_` and non-empty dot-separated labels (one trailing dot allowed), or
//!   an IP literal (`[::1]` must be a real IPv6 address: `[demo.localhost]` is refused,
//!   not routed to `demo`), with an optional decimal port up to 65535; user info
//!   (`user@host`) is refused too (RFC 9110 §4.2.4);
//! - an HTTP/1.1 request with no `Host` at all (RFC 9112 §3.2: MUST answer 400);
//! - a target authority that names another host or port than `Host`. RFC 9112 §3.2.2
//!   lets an origin server prefer the target; we refuse instead, because one request
//!   naming two hosts is how routing and cache-poisoning confusion between layers
//!   starts (a proxy in front may route by one, the origin behind by the other), HTTP/2
//!   calls the same disagreement malformed (RFC 9113 §8.3.1), and no real client sends
//!   it. When both agree, or only one is present, that one is the host.
//!
//! Hosts compare case-insensitively, without a trailing dot, with an absent port equal
//! to the scheme's default. [`forwarded_host`] gives the same normal form to the
//! origin as `X-Forwarded-Host`.

use std::net::Ipv6Addr;

use http::uri::Authority;
use http::{HeaderValue, Request, Version};

use crate::fields::Fields;

/// Why a request's host is refused (the visitor gets 400 with this text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// More than one `Host` field line.
    #[error("more than one Host header: a request names exactly one host (RFC 9112 §3.2)")]
    Repeated,
    /// A `Host` or target authority that is not a host with an optional port.
    #[error("invalid Host header: expected a host name or IP address and an optional port")]
    Invalid,
    /// An HTTP/1.1 request without `Host`.
    #[error("an HTTP/1.1 request needs a Host header (RFC 9112 §3.2)")]
    Missing,
    /// An absolute-form target (or `:authority`) naming another host than `Host`.
    #[error("the request target names another host than the Host header")]
    Disagrees,
}

/// A checked host and port as the visitor wrote them (borrowed from the request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host<'a> {
    /// The whole value as written (`Demo.Example.com.:443`).
    raw: &'a str,
    /// The host without its port and trailing dot; IPv6 literals keep their brackets.
    name: &'a str,
    /// The IPv6 address of an IP literal.
    ipv6: Option<Ipv6Addr>,
    /// The port, if one was written (an empty `host:` port counts as none).
    port: Option<u16>,
    /// `raw` is already in normal form but for the port, seen while parsing: a
    /// lowercase name without trailing dot, and either no port at all or one written
    /// without leading zeros (the caller's default port is checked later).
    plain: bool,
}

impl<'a> Host<'a> {
    /// Parses a `Host` value or an authority (`host[:port]`, `[v6][:port]`), in one
    /// pass over its bytes for a name (the usual case): the labels, the port, and
    /// whether it is in normal form.
    pub fn parse(raw: &'a str) -> Result<Host<'a>, HostError> {
        if raw.starts_with('[') {
            return Host::parse_ipv6(raw);
        }
        let bytes = raw.as_bytes();
        // A name: non-empty labels of letters, digits, `-` and `_`, one dot between
        // them, one trailing dot allowed; then `:port` or nothing.
        let (mut label, mut upper, mut end) = (0usize, false, bytes.len());
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => label += 1,
                b'A'..=b'Z' => {
                    upper = true;
                    label += 1;
                }
                b'.' if label > 0 => label = 0,
                b':' => {
                    end = i;
                    break;
                }
                _ => return Err(HostError::Invalid),
            }
        }
        let host = &raw[..end];
        let dot = label == 0 && !host.is_empty();
        let name = if dot { &host[..host.len() - 1] } else { host };
        if name.is_empty() || name.len() > 253 {
            return Err(HostError::Invalid);
        }
        let (port, plain_port) = match raw.get(end + 1..) {
            None => (None, true),
            Some(p) => parse_port(p)?,
        };
        Ok(Host { raw, name, ipv6: None, port, plain: !upper && !dot && plain_port })
    }

    /// `[v6][:port]`: the address must be a real IPv6 address.
    fn parse_ipv6(raw: &'a str) -> Result<Host<'a>, HostError> {
        let close = raw.find(']').ok_or(HostError::Invalid)?;
        let (host, rest) = raw.split_at(close + 1);
        let port = match rest {
            "" => None,
            _ => parse_port(rest.strip_prefix(':').ok_or(HostError::Invalid)?)?.0,
        };
        let inner = &host[1..host.len() - 1];
        let ipv6 = inner.parse::<Ipv6Addr>().map_err(|_| HostError::Invalid)?;
        Ok(Host { raw, name: host, ipv6: Some(ipv6), port, plain: false })
    }

    /// The host without port or trailing dot, as written (compare it case-insensitively).
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The port, if one was written.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Whether `self` and `other` name the same host and port (`default_port` for none).
    pub fn same_as(&self, other: &Host<'_>, default_port: u16) -> bool {
        let same_name = match (self.ipv6, other.ipv6) {
            (Some(a), Some(b)) => a == b,
            (None, None) => self.name.eq_ignore_ascii_case(other.name),
            _ => false,
        };
        same_name && self.port.unwrap_or(default_port) == other.port.unwrap_or(default_port)
    }

    /// The normal form: lowercase, no trailing dot, IPv6 as `[canonical]`, and the port
    /// only when it is not `default_port`. `None` when `raw` is already that.
    pub fn normalized(&self, default_port: u16) -> Option<String> {
        if self.plain && self.port != Some(default_port) {
            return None;
        }
        let port = self.port.filter(|p| *p != default_port);
        let name = match self.ipv6 {
            Some(v6) => format!("[{v6}]"),
            None => self.name.to_ascii_lowercase(),
        };
        let normal = match port {
            Some(p) => format!("{name}:{p}"),
            None => name,
        };
        (normal != self.raw).then_some(normal)
    }
}

/// A port after its colon: none (empty), or up to five digits up to 65535; with
/// whether it is written as its normal form would write it (no leading zero, not empty).
fn parse_port(p: &str) -> Result<(Option<u16>, bool), HostError> {
    if p.is_empty() {
        return Ok((None, false));
    }
    if p.len() > 5 {
        return Err(HostError::Invalid);
    }
    let mut n: u32 = 0;
    for b in p.bytes() {
        if !b.is_ascii_digit() {
            return Err(HostError::Invalid);
        }
        n = n * 10 + u32::from(b - b'0');
    }
    let port = u16::try_from(n).map_err(|_| HostError::Invalid)?;
    Ok((Some(port), !p.starts_with('0')))
}

/// The host `req` is for, after the checks in the module docs: `Ok(None)` when it
/// names none (an HTTP/1.0 or HTTP/2 request without one, or an empty `Host`).
/// `default_port` is the port of the visitor's scheme (80 or 443).
pub fn request_host<B>(req: &Request<B>, default_port: u16) -> Result<Option<Host<'_>>, HostError> {
    host_of(req.headers(), req.uri().authority(), req.version(), default_port)
}

/// [`request_host`] for a request given by its parts: its header fields (a
/// `HeaderMap`, or the HTTP/1 path's parsed list), its target's authority and its version.
pub(crate) fn host_of<'a, F: Fields>(
    headers: &'a F,
    authority: Option<&'a Authority>,
    version: Version,
    default_port: u16,
) -> Result<Option<Host<'a>>, HostError> {
    static HOST: http::HeaderName = http::header::HOST;
    let mut fields = headers.values_of(&HOST);
    let field = fields.next();
    if fields.next().is_some() {
        return Err(HostError::Repeated);
    }
    let header = match field.map(|v| v.to_str().map_err(|_| HostError::Invalid)).transpose()? {
        None | Some("") => None,
        Some(v) => Some(Host::parse(v)?),
    };
    let target = match authority {
        None => None,
        Some(a) if a.as_str().contains('@') => return Err(HostError::Invalid),
        Some(a) => Some(Host::parse(a.as_str())?),
    };
    match (header, target) {
        (Some(h), Some(t)) if !h.same_as(&t, default_port) => Err(HostError::Disagrees),
        (Some(h), _) => Ok(Some(h)),
        (None, Some(t)) => Ok(Some(t)),
        (None, None) if field.is_none() && version == Version::HTTP_11 => Err(HostError::Missing),
        (None, None) => Ok(None),
    }
}

/// The `X-Forwarded-Host` for `req`: its host in normal form ([`Host::normalized`]),
/// or `None` when it names none. Shares the visitor's `Host` value when that is
/// already in normal form (the usual case: no copy).
pub fn forwarded_host<B>(req: &Request<B>, default_port: u16) -> Option<HeaderValue> {
    let host = request_host(req, default_port).ok()??;
    forwarded_value(&host, req.headers().get(http::header::HOST), default_port)
}

/// The `X-Forwarded-Host` value for `host`, the checked host of a request whose `Host`
/// field is `field` (see [`forwarded_host`]; for a caller that has already checked it).
pub(crate) fn forwarded_value(host: &Host<'_>, field: Option<&HeaderValue>, default_port: u16) -> Option<HeaderValue> {
    match host.normalized(default_port) {
        Some(normal) => HeaderValue::from_str(&normal).ok(),
        None => match field {
            Some(v) if v.as_bytes() == host.raw.as_bytes() => Some(v.clone()),
            _ => HeaderValue::from_str(host.raw).ok(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parser before the one-pass one (session 10), kept as the reference: the
    /// host, port and normal form it gives, `None` where it refused.
    fn reference(raw: &str, default_port: u16) -> Option<(String, Option<u16>, Option<String>)> {
        let (host, port) = if raw.starts_with('[') {
            let close = raw.find(']')?;
            let (host, rest) = raw.split_at(close + 1);
            match rest {
                "" => (host, None),
                _ => (host, Some(rest.strip_prefix(':')?)),
            }
        } else {
            match raw.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (raw, None),
            }
        };
        let port = match port {
            None | Some("") => None,
            Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse::<u16>().ok()?),
            Some(_) => return None,
        };
        let (name, ipv6) = match host.strip_prefix('[') {
            Some(inner) => (host, Some(inner.strip_suffix(']')?.parse::<Ipv6Addr>().ok()?)),
            None => {
                let name = host.strip_suffix('.').unwrap_or(host);
                let label_ok =
                    |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
                    return None;
                }
                (name, None)
            }
        };
        let shown = port.filter(|p| *p != default_port);
        let lower = match ipv6 {
            Some(v6) => format!("[{v6}]"),
            None => name.to_ascii_lowercase(),
        };
        let normal = match shown {
            Some(p) => format!("{lower}:{p}"),
            None => lower,
        };
        Some((name.to_string(), port, (normal != raw).then_some(normal)))
    }

    #[test]
    fn the_one_pass_parser_agrees_with_the_reference_on_every_short_host() {
        let alphabet = ["a", "Z", "0", "8", "-", "_", ".", ":", "[", "]", "é", " "];
        let mut hosts = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..5 {
            last = last.iter().flat_map(|h| alphabet.iter().map(move |c| format!("{h}{c}"))).collect();
            hosts.extend(last.iter().cloned());
        }
        hosts.extend(
            ["[::1]", "[0:0::1]:80", "[::1]:080", "[::ffff:1.2.3.4]", "a.b:65535", "a.b:65536"].map(String::from),
        );
        hosts.push(format!("{}.b", "a".repeat(251)));
        hosts.push(format!("{}.b", "a".repeat(252)));
        for raw in &hosts {
            for port in [80, 443, 8] {
                let ours = Host::parse(raw).ok().map(|h| (h.name().to_string(), h.port(), h.normalized(port)));
                assert_eq!(ours, reference(raw, port), "{raw:?} (default port {port})");
            }
        }
    }

    fn req(hosts: &[&str], target: &str) -> Request<()> {
        let mut b = Request::get(target);
        for h in hosts {
            b = b.header(http::header::HOST, *h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn hosts_parse_or_are_refused() {
        let h = Host::parse("Demo.LocalHost.:8080").unwrap();
        assert_eq!((h.name(), h.port()), ("Demo.LocalHost", Some(8080)));
        assert_eq!(Host::parse("[::1]:80").unwrap().port(), Some(80));
        assert_eq!(Host::parse("demo.localhost:").unwrap().port(), None);
        assert_eq!(Host::parse("127.0.0.1").unwrap().name(), "127.0.0.1");
        for bad in [
            "[demo.localhost]:80",
            "[demo.localhost]",
            "[::1",
            "[::1]x",
            "demo.localhost:99999",
            "demo.localhost:8o",
            "demo.localhost:-1",
            "a:b:c",
            "::1",
            "demo..localhost",
            ".localhost",
            ".",
            "",
            ":80",
            "demo.localhost..",
            "dé.localhost",
            "a b.localhost",
            "a/b.localhost",
        ] {
            assert_eq!(Host::parse(bad), Err(HostError::Invalid), "{bad}");
        }
    }

    #[test]
    fn normal_form_is_lowercase_without_dot_or_default_port() {
        let n = |s: &str, port| Host::parse(s).unwrap().normalized(port);
        assert_eq!(n("Demo.Localhost.:80", 80).as_deref(), Some("demo.localhost"));
        assert_eq!(n("demo.localhost:443", 443).as_deref(), Some("demo.localhost"));
        assert_eq!(n("demo.localhost:443", 80), None);
        assert_eq!(n("demo.localhost:8080", 80), None);
        assert_eq!(n("demo.localhost", 80), None);
        assert_eq!(n("demo.localhost:", 80).as_deref(), Some("demo.localhost"));
        assert_eq!(n("[0:0::1]:8080", 80).as_deref(), Some("[::1]:8080"));
        assert_eq!(n("[::1]", 80), None);
        assert_eq!(n("demo.localhost:08080", 80).as_deref(), Some("demo.localhost:8080"));
        assert_eq!(n("demo.localhost:0", 80), None);
    }

    #[test]
    fn requests_name_one_host() {
        assert_eq!(request_host(&req(&["a.localhost", "b.localhost"], "/"), 80), Err(HostError::Repeated));
        assert_eq!(request_host(&req(&["a.localhost", "a.localhost"], "/"), 80), Err(HostError::Repeated));
        assert_eq!(request_host(&req(&[], "/"), 80), Err(HostError::Missing));
        assert_eq!(request_host(&req(&[""], "/"), 80), Ok(None));
        let target = "http://a.localhost/x";
        assert_eq!(request_host(&req(&["b.localhost"], target), 80), Err(HostError::Disagrees));
        assert_eq!(request_host(&req(&["a.localhost:81"], target), 80), Err(HostError::Disagrees));
        assert_eq!(request_host(&req(&["A.localhost.:80"], target), 80).unwrap().unwrap().name(), "A.localhost");
        assert_eq!(request_host(&req(&[], target), 80).unwrap().unwrap().name(), "a.localhost");
        assert_eq!(request_host(&req(&[], "http://u@a.localhost/"), 80), Err(HostError::Invalid));
        let mut old = req(&[], "/");
        *old.version_mut() = Version::HTTP_10;
        assert_eq!(request_host(&old, 80), Ok(None));
    }

    #[test]
    fn forwarded_host_is_normalised_and_shared_when_it_can_be() {
        let fwd = |hosts: &[&str], target| forwarded_host(&req(hosts, target), 80);
        assert_eq!(fwd(&["Demo.LOCALHOST.:80"], "/").unwrap(), "demo.localhost");
        assert_eq!(fwd(&["demo.localhost:3000"], "/").unwrap(), "demo.localhost:3000");
        assert_eq!(fwd(&[], "http://demo.localhost:3000/").unwrap(), "demo.localhost:3000");
        assert_eq!(fwd(&["a.localhost", "b.localhost"], "/"), None);
    }
}
