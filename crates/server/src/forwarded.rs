//! The visitor's address behind a reverse proxy or load balancer (`--trusted-proxy`).
//!
//! A connection from a trusted proxy has its forwarding headers believed: the visitor is
//! the right-most address of `X-Forwarded-For` (or else of `Forwarded: for=`) that is
//! not itself a trusted proxy, so a visitor cannot forge its address by sending its own
//! `X-Forwarded-For` (the proxy appends the address it saw), and a chain of trusted
//! proxies is walked through. `X-Forwarded-Proto` (or `Forwarded: proto=`) tells the
//! origin whether the visitor used HTTPS. That address then stands for the visitor
//! everywhere: IP allow lists, per-address quotas, logs and the `X-Forwarded-For` the
//! origin sees. From any other peer these headers are dropped, as without proxies.
//!
//! With `--proxy-protocol`, a connection from a trusted proxy starts with a PROXY
//! protocol header (v1 text or v2 binary, [`crate::proxy_protocol`]) whose source
//! address is the visitor's.

use std::net::{IpAddr, SocketAddr};

use http::header::FORWARDED;
use http::{HeaderName, HeaderValue};
use localtunnels_core::{X_FORWARDED_FOR, X_FORWARDED_PROTO};

use crate::access::IpNet;
use crate::fields::Fields;

/// The fields read here, as statics (a borrowed constant would not outlive its statement).
static XFF: HeaderName = X_FORWARDED_FOR;
static XFP: HeaderName = X_FORWARDED_PROTO;
static FWD: HeaderName = FORWARDED;
use crate::state::Peer;

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parses a list of addresses or CIDR ranges (`10.0.0.0/8`, `::1`).
    pub fn parse<S: AsRef<str>>(list: &[S]) -> Result<TrustedProxies, String> {
        let nets = list
            .iter()
            .map(|s| s.as_ref().trim())
            .filter(|s| !s.is_empty())
            .map(|s| crate::access::parse_net(s).map_err(|e| e.replace("allowed address", "trusted proxy")))
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies { nets })
    }

    /// True when no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| crate::access::net_contains(n, ip))
    }

    /// The visitor's address and scheme as a trusted proxy at `peer` forwarded them in
    /// `headers`; `None` when `peer` is not trusted or the headers name no address.
    /// `headers` is a `HeaderMap`, or the HTTP/1 path's parsed list ([`Fields`]).
    pub fn visitor<F: Fields>(&self, peer: IpAddr, headers: &F) -> Option<Forwarded> {
        if !self.contains(peer) {
            return None;
        }
        let chain = header_list(headers, &XFF).map(|v| parse_ip(v.trim()));
        let mut addrs: Vec<Option<IpAddr>> = chain.collect();
        if addrs.is_empty() {
            addrs = forwarded_pairs(headers, "for").map(|v| parse_ip(&v)).collect();
        }
        // Right to left: the first address not a trusted proxy is the visitor; if every
        // hop is trusted, the left-most one. An unparsable hop stops the walk (it cannot
        // be trusted, and what lies left of it was written by the untrusted side).
        let mut visitor = None;
        for hop in addrs.iter().rev() {
            let Some(ip) = *hop else { break };
            visitor = Some(ip);
            if !self.contains(ip) {
                break;
            }
        }
        let proto = header_list(headers, &XFP)
            .next()
            .map(|p| p.trim().to_ascii_lowercase())
            .or_else(|| forwarded_pairs(headers, "proto").next().map(|p| p.to_ascii_lowercase()))
            .filter(|p| p == "http" || p == "https");
        Some(Forwarded { ip: visitor, https: proto.map(|p| p == "https") })
    }
}

/// What a trusted proxy said about its visitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarded {
    /// The visitor's address, when the proxy named one.
    pub ip: Option<IpAddr>,
    /// Whether the visitor used HTTPS, when the proxy said.
    pub https: Option<bool>,
}

impl Forwarded {
    /// `peer` as this forwarded visitor (same connection, the visitor's address).
    pub(crate) fn apply(self, peer: &Peer) -> Peer {
        let mut visitor = peer.clone();
        if let Some(ip) = self.ip {
            visitor.set_addr(SocketAddr::new(ip, 0));
        }
        if let Some(https) = self.https {
            visitor.proto = Some(HeaderValue::from_static(if https { "https" } else { "http" }));
        }
        visitor
    }
}

/// The comma-separated values of every `name` header, in order.
fn header_list<'a, F: Fields>(headers: &'a F, name: &'a HeaderName) -> impl Iterator<Item = &'a str> {
    headers.values_of(name).filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(','))
}

/// The values of `key=` in every element of every `Forwarded` header (RFC 7239), in order.
fn forwarded_pairs<'a, F: Fields>(headers: &'a F, key: &'static str) -> impl Iterator<Item = String> + 'a {
    header_list(headers, &FWD).filter_map(move |element| {
        element.split(';').find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            k.trim().eq_ignore_ascii_case(key).then(|| v.trim().trim_matches('"').to_string())
        })
    })
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]:5678`.
fn parse_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[').and_then(|r| r.split(']').next()).and_then(|r| r.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_trusted_peers_are_believed() {
        let t = TrustedProxies::parse(&["127.0.0.1", "10.0.0.0/8"]).unwrap();
        let h = headers(&[("x-forwarded-for", "203.0.113.7"), ("x-forwarded-proto", "https")]);
        assert_eq!(t.visitor(ip("192.0.2.1"), &h), None);
        let f = t.visitor(ip("127.0.0.1"), &h).unwrap();
        assert_eq!(f, Forwarded { ip: Some(ip("203.0.113.7")), https: Some(true) });
        // An IPv4-mapped peer is the same proxy.
        assert!(t.visitor(ip("::ffff:10.1.2.3"), &h).is_some());
    }

    #[test]
    fn a_forged_left_part_of_the_chain_is_skipped() {
        let t = TrustedProxies::parse(&["127.0.0.1", "10.0.0.0/8"]).unwrap();
        // The visitor sent "1.1.1.1"; the edge proxy appended the visitor's real address,
        // an inner trusted proxy appended the edge's.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.9"), ("x-forwarded-for", "10.0.0.5")]);
        assert_eq!(t.visitor(ip("127.0.0.1"), &h).unwrap().ip, Some(ip("198.51.100.9")));
        let all_trusted = headers(&[("x-forwarded-for", "10.0.0.9, 10.0.0.5")]);
        assert_eq!(t.visitor(ip("127.0.0.1"), &all_trusted).unwrap().ip, Some(ip("10.0.0.9")));
        let garbage = headers(&[("x-forwarded-for", "nonsense")]);
        assert_eq!(t.visitor(ip("127.0.0.1"), &garbage).unwrap().ip, None);
    }

    #[test]
    fn the_forwarded_header_is_read_when_there_is_no_x_forwarded_for() {
        let t = TrustedProxies::parse(&["::1"]).unwrap();
        let h = headers(&[("forwarded", "for=\"[2001:db8::1]:4711\";proto=https, for=10.0.0.1")]);
        // 10.0.0.1 is not trusted here: it is the visitor.
        assert_eq!(t.visitor(ip("::1"), &h).unwrap(), Forwarded { ip: Some(ip("10.0.0.1")), https: Some(true) });
        let h = headers(&[("forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43")]);
        assert_eq!(t.visitor(ip("::1"), &h).unwrap(), Forwarded { ip: Some(ip("192.0.2.60")), https: Some(false) });
    }

    #[test]
    fn bad_ranges_are_refused() {
        assert!(TrustedProxies::parse(&["10.0.0.0/33"]).unwrap_err().contains("trusted proxy"));
        assert!(TrustedProxies::parse(&["proxy.example"]).is_err());
        assert!(TrustedProxies::parse::<&str>(&[]).unwrap().is_empty());
    }
}
