//! The client's configuration, with documented defaults.

use std::time::Duration;

/// What Host header the origin sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostHeader {
    /// `local_host:local_port`, as if the visitor had called the origin directly
    /// (what dev servers with host checks expect). The default.
    #[default]
    Rewrite,
    /// The visitor's own Host (`name.domain`).
    Preserve,
}

/// How a `TunnelClient` connects and what it exposes. Mirrors the seed's
/// `TunnelClient` options (`host`, `port`, `secure`, `localPort`, `subdomain`).
/// Its `Debug` output hides the token and the basic-auth password.
#[derive(Clone)]
pub struct ClientConfig {
    /// The server's URL (`http://host:port`, `https://...`, `ws://...`); when set it
    /// overrides `host`, `port` and `secure`.
    pub server: Option<String>,
    /// Server host. Default `localhost`.
    pub host: String,
    /// Server port. Default 3000.
    pub port: u16,
    /// Use `wss://` (TLS) to reach the server, verified against the system's root
    /// certificates (or [`ClientConfig::ca`]). Default false.
    pub secure: bool,
    /// A PEM file of certificates to trust for the server instead of the system roots:
    /// CAs (a private CA), or the server's own self-signed certificate, accepted as it
    /// is when the server presents it (as `curl --cacert` does). Default: none.
    pub ca: Option<std::path::PathBuf>,
    /// Host of the local origin. Default `localhost`.
    pub local_host: String,
    /// Port of the local origin. Default 8000.
    pub local_port: u16,
    /// The origin speaks HTTPS. Default false.
    pub local_https: bool,
    /// Accept an invalid (e.g. self-signed) certificate from the origin. Default false.
    pub allow_invalid_cert: bool,
    /// Requested name; `None` for a random one.
    pub subdomain: Option<String>,
    /// A full custom hostname (`app.example.com`, pointed at the server by DNS) instead
    /// of a name under the server's domain; the server grants it only where the token
    /// allows it (else refused with `HostnameNotAllowed`). Default: none.
    pub hostname: Option<String>,
    /// Auth token for servers that require one. Sent inside the handshake, never logged.
    pub token: Option<String>,
    /// `user:password` the server demands of visitors (HTTP basic auth). Default: none.
    pub basic_auth: Option<String>,
    /// Visitor addresses or CIDR ranges allowed to use the tunnel, matched on the
    /// visitor's TCP address at the server. Default: empty, everyone.
    pub allow_ips: Vec<String>,
    /// Host header policy. Default [`HostHeader::Rewrite`].
    pub host_header: HostHeader,
    /// Show visitors the detail of an error on this side (the origin's address and
    /// the OS error) on the error page, for development. Default false: visitors get
    /// a generic page with a request id, the detail goes to [`ClientEvent::Error`](crate::ClientEvent::Error).
    pub expose_errors: bool,
    /// Reconnect after a drop. Default true.
    pub reconnect: bool,
    /// A reconnect token from an earlier session of this name on this server (see
    /// `ClientHandle::reconnect_token`): presented on the first connect, it takes the
    /// name back at once while the server still holds it. Default: none.
    pub reconnect_token: Option<String>,
    /// Where to keep the reconnect token between runs, one file per server and name
    /// (`<dir>/<host>_<port>/<name>`; used only with a `subdomain`). Default: none,
    /// nothing is kept (the CLI passes `default_state_dir()` unless `--no-state`).
    pub state_dir: Option<std::path::PathBuf>,
    /// Upper bound of the reconnect backoff. Default 30 s.
    pub max_backoff: Duration,
    /// Time to connect and complete the handshake before an attempt counts as
    /// failed. Default 10 s.
    pub handshake_timeout: Duration,
    /// Largest WebSocket message relayed either way, in bytes; a larger one closes the
    /// WebSocket with 1009. Default 16 MiB ([`localtunnels_core::DEFAULT_MAX_WS_MESSAGE`]).
    pub max_ws_message: usize,
    /// Limits and timings of the control session.
    pub session: localtunnels_core::Config,
    /// Emit [`ClientEvent::Request`](crate::ClientEvent::Request) and
    /// [`ClientEvent::Response`](crate::ClientEvent::Response) for every exchange
    /// (default true). Turn off when nothing reads them: under load they are a
    /// noticeable share of the client's work per request. Errors are always emitted.
    pub request_events: bool,
    /// Capture every exchange into this request inspector (serve it with
    /// [`serve_inspector`](crate::serve_inspector)). Default: none.
    pub inspector: Option<crate::Inspector>,
    /// Control connections to the server (1 to [`MAX_CONNECTIONS`]). The first claims
    /// the name; each further one joins the tunnel from a thread of its own, with its
    /// own connections to the origin, and the server hands each new request to the
    /// connection with the fewest in flight, so a busy tunnel's work spreads over
    /// several CPUs. Only towards a server that lets connections join (its welcome
    /// says so); its `--max-connections-per-tunnel` may allow fewer. Default 1.
    pub connections: usize,
}

/// The most control connections one client opens for its tunnel.
pub const MAX_CONNECTIONS: usize = 16;

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            server: None,
            host: "localhost".to_string(),
            port: 3000,
            secure: false,
            ca: None,
            local_host: "localhost".to_string(),
            local_port: 8000,
            local_https: false,
            allow_invalid_cert: false,
            subdomain: None,
            hostname: None,
            token: None,
            basic_auth: None,
            allow_ips: Vec::new(),
            host_header: HostHeader::Rewrite,
            expose_errors: false,
            reconnect: true,
            reconnect_token: None,
            state_dir: None,
            max_backoff: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            max_ws_message: localtunnels_core::DEFAULT_MAX_WS_MESSAGE,
            session: localtunnels_core::Config::default(),
            request_events: true,
            inspector: None,
            connections: 1,
        }
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("ClientConfig")
            .field("server", &self.server)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("secure", &self.secure)
            .field("ca", &self.ca)
            .field("local_host", &self.local_host)
            .field("local_port", &self.local_port)
            .field("local_https", &self.local_https)
            .field("allow_invalid_cert", &self.allow_invalid_cert)
            .field("subdomain", &self.subdomain)
            .field("hostname", &self.hostname)
            .field("token", &redacted(&self.token))
            .field("basic_auth", &redacted(&self.basic_auth))
            .field("allow_ips", &self.allow_ips)
            .field("host_header", &self.host_header)
            .field("expose_errors", &self.expose_errors)
            .field("reconnect", &self.reconnect)
            .field("reconnect_token", &redacted(&self.reconnect_token))
            .field("state_dir", &self.state_dir)
            .field("max_backoff", &self.max_backoff)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_ws_message", &self.max_ws_message)
            .field("session", &self.session)
            .field("request_events", &self.request_events)
            .field("inspector", &self.inspector.is_some())
            .field("connections", &self.connections)
            .finish()
    }
}

/// Where the control connection goes, resolved from a [`ClientConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS.
    pub secure: bool,
}

impl ServerAddr {
    /// The control endpoint's URL.
    pub fn control_url(&self) -> String {
        let scheme = if self.secure { "wss" } else { "ws" };
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("{scheme}://{host}:{}{}", self.port, localtunnels_driver::CONTROL_PATH)
    }
}

impl ClientConfig {
    /// Checks what the server cannot check for us: an empty allow-list entry would
    /// vanish on the wire (the list could become empty, which allows everyone).
    pub fn validate(&self) -> Result<(), String> {
        if self.allow_ips.iter().any(|ip| ip.trim().is_empty()) {
            return Err("an empty --allow-ip entry: give an address or a CIDR range".into());
        }
        if self.allow_ips.len() > 256 {
            return Err("more than 256 --allow-ip entries".into());
        }
        if self.basic_auth.as_ref().is_some_and(|b| !b.contains(':')) {
            return Err("--basic-auth takes user:password".into());
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.connections) {
            return Err(format!("--connections takes 1 to {MAX_CONNECTIONS}"));
        }
        Ok(())
    }

    /// The servers to connect to, in the order they are tried: `server` may be a
    /// comma-separated list (the nodes of one cluster, which share names and
    /// reconnect tokens); or why one is not a usable URL.
    pub fn server_addrs(&self) -> Result<Vec<ServerAddr>, String> {
        let Some(list) = &self.server else { return Ok(vec![self.server_addr()?]) };
        let addrs = list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(parse_server_url);
        let addrs = addrs.collect::<Result<Vec<_>, _>>()?;
        if addrs.is_empty() {
            return Err("no server URL given".into());
        }
        Ok(addrs)
    }

    /// The (first) server to connect to, or why `server` is not a usable URL.
    pub fn server_addr(&self) -> Result<ServerAddr, String> {
        let Some(url) = &self.server else {
            return Ok(ServerAddr { host: self.host.clone(), port: self.port, secure: self.secure });
        };
        parse_server_url(url.split(',').next().unwrap_or("").trim())
    }
}

/// A server URL (`http://`, `https://`, `ws://`, `wss://`) as an address.
fn parse_server_url(url: &str) -> Result<ServerAddr, String> {
    {
        let uri: http::Uri = url.parse().map_err(|e| format!("invalid server URL '{url}': {e}"))?;
        let secure = match uri.scheme_str() {
            Some("https") | Some("wss") => true,
            Some("http") | Some("ws") => false,
            _ => return Err(format!("invalid server URL '{url}': use http://, https://, ws:// or wss://")),
        };
        let host = uri.host().ok_or_else(|| format!("invalid server URL '{url}': no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        Ok(ServerAddr { host, port, secure })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_resolve() {
        let c = ClientConfig { server: Some("https://t.example.com".into()), ..Default::default() };
        assert_eq!(c.server_addr().unwrap(), ServerAddr { host: "t.example.com".into(), port: 443, secure: true });
        let c = ClientConfig { server: Some("http://127.0.0.1:4000".into()), ..Default::default() };
        assert_eq!(c.server_addr().unwrap().control_url(), "ws://127.0.0.1:4000/api/tunnel");
        let c = ClientConfig { server: Some("ftp://x".into()), ..Default::default() };
        assert!(c.server_addr().is_err());
        assert_eq!(ClientConfig::default().server_addr().unwrap().port, 3000);
    }

    #[test]
    fn empty_allow_entries_are_refused_before_they_vanish() {
        let c = ClientConfig { allow_ips: vec!["10.0.0.0/8".into(), " ".into()], ..Default::default() };
        assert!(c.validate().unwrap_err().contains("empty"));
        assert!(ClientConfig { basic_auth: Some("x".into()), ..Default::default() }.validate().is_err());
        assert!(ClientConfig { allow_ips: vec!["::1".into()], ..Default::default() }.validate().is_ok());
        assert!(ClientConfig { connections: 0, ..Default::default() }.validate().is_err());
        assert!(ClientConfig { connections: MAX_CONNECTIONS + 1, ..Default::default() }.validate().is_err());
        assert!(ClientConfig { connections: MAX_CONNECTIONS, ..Default::default() }.validate().is_ok());
    }

    #[test]
    fn debug_hides_secrets() {
        let c = ClientConfig { token: Some("s3cret".into()), basic_auth: Some("u:pw".into()), ..Default::default() };
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("u:pw") && shown.contains("<redacted>"), "{shown}");
    }
}
