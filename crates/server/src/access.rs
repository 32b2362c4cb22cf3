//! Who may reach a tunnel, and how fast: the one check every visitor request and
//! WebSocket passes before it becomes a stream.
//!
//! The client sets its tunnel's visitor rules in its hello (`--basic-auth user:pass`,
//! `--allow-ip ADDR|CIDR`); the server sets the limits ([`crate::limits::Limits`]).
//! In order: the IP allow list, matched on the TCP peer address and never on
//! `X-Forwarded-For` (403); basic auth (401 with `WWW-Authenticate`); the visitor
//! address's concurrent exchanges (503) and rate (429) in this tunnel
//! ([`crate::visitors`]); the tunnel's rate limit (429); its concurrent exchanges
//! (503); a declared body over `max_body` (413).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use http::{header, HeaderValue, Request, Response, StatusCode};
pub use ipnet::{IpNet, Ipv4Net};

use crate::fields::Fields;
use crate::state::{text_response, Body, Counters, Peer, ServerState};
use crate::tunnel::Tunnel;
use crate::visitors::{Admitted, VisitorKey, VisitorRefusal, VisitorSlot};

/// Most entries in a tunnel's IP allow list.
pub const MAX_ALLOW_ENTRIES: usize = 256;
/// Longest `user:pass`.
pub const MAX_BASIC_AUTH: usize = 1024;

/// A tunnel's visitor rules.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// `Basic <base64(user:pass)>`, when the client asked for basic auth.
    basic_auth: Option<String>,
    /// Allowed networks; empty allows everyone.
    allow: Vec<IpNet>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("basic_auth", &self.basic_auth.as_ref().map(|_| "<redacted>"))
            .field("allow", &self.allow)
            .finish()
    }
}

impl Access {
    /// The rules from a hello's `basic_auth` (`user:pass`, empty for none) and
    /// `allow_ips` (addresses or CIDR ranges, empty for everyone).
    pub fn from_hello(basic_auth: &str, allow_ips: &[String]) -> Result<Access, String> {
        let basic_auth = match basic_auth {
            "" => None,
            s if s.len() > MAX_BASIC_AUTH => return Err(format!("basic auth longer than {MAX_BASIC_AUTH} bytes")),
            s if !s.contains(':') => return Err("basic auth must be user:password".into()),
            s if s.chars().any(char::is_control) => return Err("basic auth holds control characters".into()),
            s => Some(format!("Basic {}", base64(s.as_bytes()))),
        };
        if allow_ips.len() > MAX_ALLOW_ENTRIES {
            return Err(format!("more than {MAX_ALLOW_ENTRIES} allowed addresses"));
        }
        let allow = allow_ips.iter().map(|s| parse_net(s)).collect::<Result<_, _>>()?;
        Ok(Access { basic_auth, allow })
    }

    /// True when the tunnel restricts nothing.
    pub fn is_open(&self) -> bool {
        self.basic_auth.is_none() && self.allow.is_empty()
    }

    /// Whether `ip` is on the allow list (or there is none).
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|n| net_contains(n, ip))
    }

    /// Whether `authorization` (the visitor's header) satisfies basic auth (or there is none).
    pub fn allows_credentials(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(expected) = &self.basic_auth else { return true };
        let Some(given) = authorization else { return false };
        let given = given.as_bytes();
        // The scheme is case-insensitive; the credentials are compared in constant time.
        let (scheme, rest) = given.split_at(given.len().min(6));
        scheme.eq_ignore_ascii_case(b"basic ")
            && crate::auth::constant_time_eq(rest.trim_ascii(), &expected.as_bytes()[6..])
    }
}

/// Checks a visitor's request against `tunnel`'s rules and the server's limits.
/// `Err` is the answer for a refused visitor (nothing reaches the client); `Ok` counts
/// the exchange against the visitor's address until it is dropped. Strips the
/// `Authorization` header the tunnel consumed.
pub fn check<B>(
    state: &ServerState,
    tunnel: &Tunnel,
    peer: SocketAddr,
    req: &mut Request<B>,
) -> Result<Admitted, Box<Response<Body>>> {
    check_fields(state, tunnel, peer, req.headers_mut())
}

/// [`check`] on a request's header fields alone (a `HeaderMap`, or the HTTP/1 path's
/// parsed list).
pub(crate) fn check_fields<F: Fields>(
    state: &ServerState,
    tunnel: &Tunnel,
    peer: SocketAddr,
    headers: &mut F,
) -> Result<Admitted, Box<Response<Body>>> {
    let ip = peer.ip();
    check_visitor(state, tunnel, (ip, VisitorKey::of(ip)), None, headers, &mut LazyNow::default(), false)
}

/// [`check_fields`] for a connection's visitor, whose address key is already hashed,
/// with the request's clock (`now` charges the rate limits, and is read only if one
/// applies): the HTTP/1 path reads it once per request for this, the request's start
/// and its response deadline. `slot` is the connection's hold on its count
/// ([`crate::visitors::Visitors::admit_held`]). The tunnel's stream limit is left to
/// the caller's open ([`crate::tunnel::Tunnel::open_fields_within`], answered with
/// [`tunnel_busy`]) but for a request whose body is over the limit.
pub(crate) fn check_fields_at<F: Fields>(
    state: &ServerState,
    tunnel: &Tunnel,
    peer: &Peer,
    slot: &mut VisitorSlot,
    headers: &mut F,
    now: &mut LazyNow,
) -> Result<Admitted, Box<Response<Body>>> {
    check_visitor(state, tunnel, (peer.addr.ip(), peer.visitor_key), Some(slot), headers, now, true)
}

/// The clock as a request reads it: once, when first needed. Without rate limits the
/// checks do not need it, and the HTTP/1 path then reads it after the request has
/// gone into the tunnel, off the visitor's wait (~0.05k instructions before the OPEN's
/// send; docs/BENCHMARKS.md, fifteenth round). On that path it is the reading of the
/// connection's task for the poll ([`crate::poll_clock`]): usually the one its socket's
/// idle deadline took when the head was read.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct LazyNow(Option<Instant>);

impl LazyNow {
    /// The time read on the first call (that call reads the clock).
    pub(crate) fn get(&mut self) -> Instant {
        *self.0.get_or_insert_with(|| crate::poll_clock::now().into_std())
    }
}

/// The checks of [`check_fields`], for the visitor at `ip` (counted under `key`, through
/// the connection's `slot` when it keeps one).
fn check_visitor<F: Fields>(
    state: &ServerState,
    tunnel: &Tunnel,
    (ip, key): (IpAddr, VisitorKey),
    slot: Option<&mut VisitorSlot>,
    headers: &mut F,
    now: &mut LazyNow,
    busy_at_open: bool,
) -> Result<Admitted, Box<Response<Body>>> {
    let access = &tunnel.access;
    if !access.allows_ip(ip) {
        Counters::bump(&state.counters.forbidden);
        return Err(Box::new(text_response(StatusCode::FORBIDDEN, "your address may not use this tunnel")));
    }
    // The fields are walked for `Authorization` only when the tunnel asks for it (a
    // walk of a browser's 11 fields is ~0.05k instructions per request).
    if access.basic_auth.is_some() && !access.allows_credentials(headers.first(&header::AUTHORIZATION)) {
        Counters::bump(&state.counters.unauthorized);
        let mut res = text_response(StatusCode::UNAUTHORIZED, "this tunnel requires a user name and password");
        let challenge = format!("Basic realm=\"{}\", charset=\"UTF-8\"", tunnel.name);
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        return Err(Box::new(res));
    }
    if access.basic_auth.is_some() {
        headers.remove_all(&header::AUTHORIZATION);
    }
    // The visitor's own limits come first, so that an offender's requests are not
    // charged to the tunnel's rate or streams.
    let admitted = match slot {
        Some(slot) => tunnel.visitors.admit_held(key, slot, || now.get()),
        None => tunnel.visitors.admit_key(key, || now.get()),
    };
    let admitted = match admitted {
        Ok(a) => a,
        Err(VisitorRefusal::Busy(n)) => {
            let name = &tunnel.name;
            let message =
                format!("Too many requests from your address to '{name}' are in flight. Please try again soon.");
            let detail = format!("{n} requests from this address in flight, the most one address may have");
            return Err(Box::new(busy(state, message, &detail)));
        }
        Err(VisitorRefusal::RateLimited(wait)) => return Err(Box::new(rate_limited(state, &tunnel.name, wait))),
    };
    if let Some(bucket) = &tunnel.rate {
        if let Err(wait) = bucket.try_take(now.get()) {
            return Err(Box::new(rate_limited(state, &tunnel.name, wait)));
        }
    }
    let too_large_max = state.config.limits.max_body.filter(|&max| {
        let declared = headers
            .first(&header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        declared.is_some_and(|n| n > max)
    });
    // The tunnel's stream limit: here, or (`busy_at_open`, a body within the limit)
    // checked by the open under its own lock ([`Tunnel::open_fields_within`]), with
    // nothing between that could answer otherwise. A body over the limit is answered
    // here, after this check, as before.
    if !busy_at_open || too_large_max.is_some() {
        let in_flight = tunnel.stream_count();
        if in_flight >= state.config.limits.max_streams_per_tunnel {
            return Err(Box::new(tunnel_busy(state, &tunnel.name, in_flight)));
        }
    }
    if let Some(max) = too_large_max {
        return Err(Box::new(too_large(state, max)));
    }
    Ok(admitted)
}

/// The answer to a request over the tunnel's limit of streams in flight (`in_flight`
/// of them): 503, `Retry-After: 1`.
pub(crate) fn tunnel_busy(state: &ServerState, name: &str, in_flight: usize) -> Response<Body> {
    let message = format!("The tunnel '{name}' is busy. Please try again in a moment.");
    let detail = format!("{in_flight} requests in flight, the most a tunnel may have");
    busy(state, message, &detail)
}

/// The answer to a request over a limit of exchanges in flight: 503, `Retry-After: 1`.
fn busy(state: &ServerState, message: String, detail: &str) -> Response<Body> {
    Counters::bump(&state.counters.unavailable);
    crate::visitor_error::retry_later(message, 1, Some(detail))
}

/// The answer to a request over a rate limit: 429 with `Retry-After`.
fn rate_limited(state: &ServerState, name: &str, wait: std::time::Duration) -> Response<Body> {
    Counters::bump(&state.counters.rate_limited);
    let mut res = text_response(StatusCode::TOO_MANY_REQUESTS, format!("too many requests to tunnel '{name}'"));
    let secs = wait.as_secs().saturating_add(1);
    res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    res
}

/// The answer to a request body over `max` bytes.
pub fn too_large(state: &ServerState, max: u64) -> Response<Body> {
    Counters::bump(&state.counters.too_large);
    let mut res = text_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body exceeds this server's limit of {max} bytes"),
    );
    res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

/// Parses an allowed address (`1.2.3.4`, `::1`: that address alone) or range
/// (`10.0.0.0/8`, `2001:db8::/32`), with the `ipnet` crate.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let bad = |why: &str| format!("invalid allowed address '{}': {why}", s.chars().take(64).collect::<String>());
    let s = s.trim();
    if s.contains('/') {
        let net: IpNet = s.parse().map_err(|_| bad("not an address range (e.g. 10.0.0.0/8)"))?;
        // A range given as IPv4-mapped IPv6 (`::ffff:10.0.0.0/104`) is the IPv4 range.
        return Ok(match net {
            IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
                Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
                None => net,
            },
            net => net,
        });
    }
    let addr: IpAddr = s.parse().map_err(|_| bad("not an IP address"))?;
    Ok(IpNet::from(canonical(addr)))
}

/// Whether `ip` (canonical: an IPv4-mapped peer counts as IPv4) is in `net`.
pub(crate) fn net_contains(net: &IpNet, ip: IpAddr) -> bool {
    net.contains(&canonical(ip))
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`, as a dual-stack listener reports
/// IPv4 peers) as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Standard base64 with padding.
fn base64(input: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (i, o) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE=")]
        {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn networks_match_addresses() {
        let has = |net: &str, ip: &str| net_contains(&parse_net(net).unwrap(), ip.parse().unwrap());
        assert!(has("10.1.0.0/16", "10.1.200.3"));
        assert!(!has("10.1.0.0/16", "10.2.0.1"));
        assert!(has("10.1.0.0/16", "::ffff:10.1.0.9"));
        assert!(has("::ffff:10.1.0.0/112", "10.1.0.9"));
        assert!(has("0.0.0.0/0", "8.8.8.8"));
        assert!(has("::/0", "2001:db8::1"));
        assert!(!has("::/0", "8.8.8.8"));
        assert!(has("127.0.0.1", "127.0.0.1"));
        assert!(!has("127.0.0.1", "127.0.0.2"));
        assert!(has("::ffff:127.0.0.1", "127.0.0.1"));
        assert!(has("2001:db8::/32", "2001:db8:ffff::1"));
        for bad in ["", "10.0.0.0/33", "::/129", "host.example", "1.2.3.4/x", "1.2.3.4/-1"] {
            assert!(parse_net(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn basic_auth_is_checked() {
        let a = Access::from_hello("user:pa:ss", &[]).unwrap();
        let ok = HeaderValue::from_str(&format!("basic {}", base64(b"user:pa:ss"))).unwrap();
        assert!(a.allows_credentials(Some(&ok)));
        let wrong = HeaderValue::from_str(&format!("Basic {}", base64(b"user:pass"))).unwrap();
        assert!(!a.allows_credentials(Some(&wrong)));
        assert!(!a.allows_credentials(Some(&HeaderValue::from_static("Bearer x"))));
        assert!(!a.allows_credentials(Some(&HeaderValue::from_static("Basi"))));
        assert!(!a.allows_credentials(None));
        assert!(Access::default().allows_credentials(None));
        assert!(Access::from_hello("nocolon", &[]).is_err());
        assert!(Access::from_hello("", &["1.2.3.4/40".into()]).is_err());
        assert!(format!("{a:?}").contains("redacted") && !format!("{a:?}").contains("pa:ss"));
    }
}
