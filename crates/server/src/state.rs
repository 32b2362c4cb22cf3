//! What every connection task shares: configuration, registry, counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};

use crate::config::ServerConfig;
use crate::registry::Registry;

/// A visitor's TCP peer, with its address already formatted for `X-Forwarded-For`:
/// once per connection, not once per request.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The address the connection came from.
    pub addr: std::net::SocketAddr,
    /// `addr`'s IP, as an `X-Forwarded-For` value.
    pub forwarded_for: http::HeaderValue,
    /// The scheme a trusted proxy said the visitor used (`X-Forwarded-Proto`), when
    /// one did; else the server's own ([`crate::forwarded`]).
    pub proto: Option<http::HeaderValue>,
    /// `addr` as the per-visitor limits count it, hashed once per connection.
    pub(crate) visitor_key: crate::visitors::VisitorKey,
    /// The connection's timer for the wait for a tunnel's response, lent to one
    /// request at a time (see [`crate::timer`]).
    pub(crate) response_deadline: crate::timer::DeadlineSlot,
    /// Turns the connection's idle timeout off (for upgrades to long-lived WebSockets).
    pub(crate) idle: crate::limits::IdleSwitch,
}

impl Peer {
    /// The peer at `addr`, on a connection whose idle timeout `idle` turns off.
    pub(crate) fn new(addr: std::net::SocketAddr, idle: crate::limits::IdleSwitch) -> Self {
        let forwarded_for = ip_header(addr);
        let visitor_key = crate::visitors::VisitorKey::of(addr.ip());
        Peer { addr, forwarded_for, proto: None, visitor_key, response_deadline: Default::default(), idle }
    }

    /// Stands for the visitor at `addr` (as a trusted proxy or PROXY header named it).
    pub(crate) fn set_addr(&mut self, addr: std::net::SocketAddr) {
        self.forwarded_for = ip_header(addr);
        self.visitor_key = crate::visitors::VisitorKey::of(addr.ip());
        self.addr = addr;
    }
}

/// `addr`'s IP as a header value (an IP address in text always is a valid one).
fn ip_header(addr: std::net::SocketAddr) -> http::HeaderValue {
    http::HeaderValue::from_str(&addr.ip().to_string()).unwrap_or_else(|_| http::HeaderValue::from_static("unknown"))
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.addr.fmt(f)
    }
}

/// The body type of every response the server produces.
pub type Body = BoxBody<Bytes, localtunnels_driver::BodyError>;

/// Counters exposed by `/api/status` and `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Visitor HTTP requests routed to a tunnel host.
    pub requests: AtomicU64,
    /// Visitor WebSockets opened through tunnels.
    pub websockets: AtomicU64,
    /// Control connections accepted (handshakes that succeeded).
    pub sessions: AtomicU64,
    /// Handshakes refused.
    pub refused: AtomicU64,
    /// 404: unknown tunnel.
    pub not_found: AtomicU64,
    /// 502: origin unreachable or broken.
    pub bad_gateway: AtomicU64,
    /// 503: tunnel offline or busy.
    pub unavailable: AtomicU64,
    /// 504: origin too slow.
    pub timeouts: AtomicU64,
    /// 400: a request refused before routing (its host) or a malformed request body.
    pub bad_request: AtomicU64,
    /// 401: a tunnel's basic auth not satisfied.
    pub unauthorized: AtomicU64,
    /// 403: a visitor address not on a tunnel's allow list.
    pub forbidden: AtomicU64,
    /// 413: a request body over `max_body`.
    pub too_large: AtomicU64,
    /// 429: a tunnel's rate limit.
    pub rate_limited: AtomicU64,
    /// Responses the tunnel's reader wrote straight to a visitor's socket
    /// (`visitor_h1::direct`), for tests: not exposed.
    pub direct_writes: AtomicU64,
    /// Durations, bytes and refusals by reason (see [`crate::metrics`]).
    pub recorded: crate::metrics::Recorded,
}

impl Counters {
    /// Adds one to `c`.
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Shared server state.
#[derive(Debug)]
pub struct ServerState {
    /// The configuration.
    pub config: ServerConfig,
    /// Name → tunnel.
    pub registry: Arc<dyn Registry>,
    /// Counters.
    pub counters: Counters,
    /// When the server started.
    pub started: Instant,
    /// The port public URLs carry.
    pub public_port: u16,
    /// Certificates and ACME, when the port speaks TLS.
    pub(crate) tls: Option<Arc<crate::tls_port::TlsPort>>,
    /// The cluster this node belongs to (`--cluster`); `None` on a single node.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl ServerState {
    /// The public URL of tunnel `name`; a custom hostname (it has dots, a name never
    /// does) is its own host.
    pub fn tunnel_url(&self, name: &str) -> String {
        if name.contains('.') {
            return format!("{}://{name}{}", self.scheme(), self.port_suffix());
        }
        format!("{}://{name}.{}{}", self.scheme(), self.config.domain, self.port_suffix())
    }

    /// The server's own (apex) URL.
    pub fn apex_url(&self) -> String {
        format!("{}://{}{}", self.scheme(), self.config.domain, self.port_suffix())
    }

    /// The default port of the visitors' scheme: 443 over TLS, else 80.
    pub fn default_port(&self) -> u16 {
        if self.config.secure {
            443
        } else {
            80
        }
    }

    fn scheme(&self) -> &'static str {
        if self.config.secure {
            "https"
        } else {
            "http"
        }
    }

    fn port_suffix(&self) -> String {
        let default = if self.config.secure { 443 } else { 80 };
        if self.public_port == default {
            String::new()
        } else {
            format!(":{}", self.public_port)
        }
    }
}

/// A short plain-text response, as every error the server itself produces.
pub fn text_response(status: StatusCode, text: impl Into<String>) -> Response<Body> {
    let mut body = text.into();
    body.push('\n');
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    res.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    res
}

/// A complete in-memory body.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}
