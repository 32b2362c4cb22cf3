//! The server's configuration, with documented defaults.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use crate::acme::AcmeConfig;
use crate::auth::AuthToken;
use crate::forwarded::TrustedProxies;
use crate::limits::Limits;
use crate::tls::TlsConfig;

/// How a `TunnelServer` runs. Every field has a default ([`ServerConfig::default`]).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Port for control connections and public traffic alike. Default 3000; 0 picks a free port.
    pub port: u16,
    /// Address to listen on. Default 0.0.0.0.
    pub bind: IpAddr,
    /// Apex domain: tunnels are `<name>.<domain>`. Default `localhost`.
    pub domain: String,
    /// Public URLs use `https`/`wss` (TLS here or in front of the server). Default
    /// false; always true when [`ServerConfig::tls`] is set.
    pub secure: bool,
    /// Serve HTTPS and WSS on the port with this certificate. Default: none (plain).
    /// Its files are reloaded when they change (checked every `tls_reload_interval`)
    /// and on [`crate::ServerHandle::reload_tls`] (SIGHUP in the command line).
    pub tls: Option<TlsConfig>,
    /// How often the `tls` files are checked for changes. Default 10 s.
    pub tls_reload_interval: Duration,
    /// Obtain and renew certificates by ACME ([`crate::acme`]); serves HTTPS on the port.
    /// Default: none.
    pub acme: Option<AcmeConfig>,
    /// A plain-HTTP port beside the TLS one: ACME HTTP-01 challenges, and a redirect
    /// to HTTPS for everything else. Default: none.
    pub http_port: Option<u16>,
    /// Client auth tokens. When any token is configured, or [`ServerConfig::tokens_file`]
    /// is set, a client without a valid token is refused (`Unauthorized`). Default: none.
    pub tokens: Vec<AuthToken>,
    /// A file of tokens (see [`crate::auth::parse_tokens`]) read at start. Setting it
    /// turns auth on even if the file holds no token. Default: none.
    pub tokens_file: Option<PathBuf>,
    /// The operator's token for the full `/api/status` (every tunnel's name and URL)
    /// and, when set, for `/metrics`; presented as `Authorization: Bearer <token>`.
    /// Without it `/api/status` shows counts only. Default: none.
    pub admin_token: Option<AuthToken>,
    /// Per-connection, per-tunnel and per-client limits.
    pub limits: Limits,
    /// Log every request. Default false.
    pub verbose: bool,
    /// Port shown in public URLs when the server sits behind a proxy; default: the
    /// listening port.
    pub public_port: Option<u16>,
    /// Proxies whose `X-Forwarded-For`/`X-Forwarded-Proto`/`Forwarded` headers (and
    /// PROXY protocol headers, with [`ServerConfig::proxy_protocol`]) are believed.
    /// Default: none ([`crate::forwarded`]).
    pub trusted_proxies: TrustedProxies,
    /// Connections from a trusted proxy start with a PROXY protocol v1/v2 header.
    /// Default false.
    pub proxy_protocol: bool,
    /// How long a visitor waits for the origin's response head. Default 30 s.
    pub response_timeout: Duration,
    /// How long a dropped client's name is held for it. Default 60 s.
    pub grace_period: Duration,
    /// How long in-flight exchanges may run after a shutdown starts. Default 10 s.
    pub shutdown_timeout: Duration,
    /// Most tunnels at once. Default 10,000.
    pub max_tunnels: usize,
    /// Largest WebSocket message relayed either way, in bytes; a larger one closes the
    /// WebSocket with 1009. Default 16 MiB ([`localtunnels_core::DEFAULT_MAX_WS_MESSAGE`]).
    pub max_ws_message: usize,
    /// Limits and timings of each control session (`max_frame`: largest control
    /// frame; `ping_interval`/`idle_timeout`: heartbeats; `max_streams`: streams a
    /// client may open towards the server).
    pub session: localtunnels_core::Config,
    /// Share names with other nodes through Redis ([`crate::cluster`]). Default: none
    /// (one node, in-memory registry).
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// Serve HTTP/1 visitors with hyper, as before the server's own HTTP/1 path
    /// (`visitor_h1`) existed. Default false. For comparing the two (the differential
    /// test, A/B measurements); it changes no behaviour a visitor can see.
    pub http1_by_hyper: bool,
    /// Serve connections on this many threads, each with its own single-threaded
    /// runtime, a connection and the requests on it staying on one ([`crate::shards`]).
    /// Default 0: off (as 1), the runtime `start` is called on serves everything.
    pub shards: usize,
}

impl ServerConfig {
    /// Whether something configured brings its own tokio timers (instant-acme; the
    /// redis client and hyper-util's connector of the cluster), so the runtimes that
    /// serve must be built with tokio's time driver rather than lean
    /// ([`localtunnels_driver::timers`]).
    pub fn needs_tokio_timers(&self) -> bool {
        self.acme.is_some() || self.cluster.is_some()
    }

    /// Takes the scheme, host and port of public URLs from `url`
    /// (`https://tunnels.example.com`, `http://tunnels.example.com:8080`): for a server
    /// behind a proxy that terminates TLS. The host becomes the domain; a domain set
    /// before must match it.
    pub fn set_public_url(&mut self, url: &str, domain_given: bool) -> Result<(), String> {
        let bad = |why: &str| format!("invalid public URL '{url}': {why}");
        let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let secure = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("the scheme must be http or https")),
        };
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty()) {
            return Err(bad("it may not have a path"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let host = authority.host().trim_end_matches('.').to_ascii_lowercase();
        if domain_given && !host.eq_ignore_ascii_case(self.domain.trim_end_matches('.')) {
            return Err(bad(&format!("its host is not the domain {}", self.domain)));
        }
        self.domain = host;
        self.secure = secure;
        self.public_port = Some(authority.port_u16().unwrap_or(if secure { 443 } else { 80 }));
        Ok(())
    }

    /// Whether clients must present a valid token.
    pub fn auth_required(&self) -> bool {
        !self.tokens.is_empty() || self.tokens_file.is_some()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            port: 3000,
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            domain: "localhost".to_string(),
            secure: false,
            tls: None,
            tls_reload_interval: Duration::from_secs(10),
            acme: None,
            http_port: None,
            tokens: Vec::new(),
            tokens_file: None,
            admin_token: None,
            limits: Limits::default(),
            verbose: false,
            public_port: None,
            trusted_proxies: TrustedProxies::default(),
            proxy_protocol: false,
            response_timeout: Duration::from_secs(30),
            grace_period: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(10),
            max_tunnels: 10_000,
            max_ws_message: localtunnels_core::DEFAULT_MAX_WS_MESSAGE,
            session: localtunnels_core::Config::default(),
            cluster: None,
            http1_by_hyper: false,
            shards: 0,
        }
    }
}
