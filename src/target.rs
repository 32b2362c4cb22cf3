//! The forms people type for "what to expose" and "which server", as ngrok and
//! localtunnel taught them: `8000`, `localhost:8000`, `https://localhost:8443`, and a
//! server without a scheme (`localhost:3000`, `tunnel.example.com`).

use std::net::IpAddr;

/// What `localtunnels http TARGET` exposes: a port, `host:port` or a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTarget {
    /// The origin's host, when the target named one.
    pub host: Option<String>,
    /// The origin's port.
    pub port: u16,
    /// `Some(true)` for an `https://` URL, `Some(false)` for `http://`, `None` without scheme.
    pub https: Option<bool>,
}

/// Parses `8000`, `localhost:8000`, `[::1]:8000`, `http://localhost:8000` or
/// `https://localhost:8443` (a URL without a port takes its scheme's: 80 or 443).
pub fn parse_local_target(s: &str) -> Result<LocalTarget, String> {
    let s = s.trim();
    if let Ok(port) = s.parse::<u16>() {
        return nonzero(LocalTarget { host: None, port, https: None });
    }
    let (https, rest) = match s.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (Some(false), rest),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => (Some(true), rest),
        Some((scheme, _)) => return Err(format!("unsupported scheme '{scheme}://': use http:// or https://")),
        None => (None, s),
    };
    // A path after the authority is not ours to use: the visitor's path is forwarded.
    let authority = rest.split('/').next().unwrap_or("");
    let (host, port) = split_host_port(authority)?;
    let port = match (port, https) {
        (Some(p), _) => p,
        (None, Some(true)) => 443,
        (None, Some(false)) => 80,
        (None, None) => return Err(format!("'{s}' has no port: give a port (8000), host:port or a URL")),
    };
    nonzero(LocalTarget { host: Some(host), port, https })
}

fn nonzero(t: LocalTarget) -> Result<LocalTarget, String> {
    if t.port == 0 {
        return Err("port 0 cannot be exposed: give the port your local server listens on".into());
    }
    Ok(t)
}

/// Splits `host`, `host:port` or `[v6]:port`; checks the host is a plausible name or address.
fn split_host_port(authority: &str) -> Result<(String, Option<u16>), String> {
    let bad_port = |p: &str| format!("invalid port '{p}' in '{authority}'");
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| format!("unclosed '[' in '{authority}'"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse::<u16>().map_err(|_| bad_port(p))?),
            None if after.is_empty() => None,
            None => return Err(format!("unexpected '{after}' after the address in '{authority}'")),
        };
        (host.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.parse::<u16>().map_err(|_| bad_port(p))?)),
            None => (authority.to_string(), None),
        }
    };
    let plausible = host.parse::<IpAddr>().is_ok()
        || (!host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if !plausible {
        return Err(format!("invalid host '{host}'"));
    }
    Ok((host, port))
}

/// A server given without a scheme gets one: `http://` for localhost, `*.localhost` and
/// loopback addresses (a server on this machine rarely has a certificate), `https://`
/// otherwise. Returns the URL to use and, when a scheme was assumed, a note saying so.
pub fn normalize_server(server: &str) -> Result<(String, Option<String>), String> {
    let server = server.trim();
    if server.contains("://") {
        return Ok((server.to_string(), None));
    }
    let authority = server.split('/').next().unwrap_or("");
    let (host, _) = split_host_port(authority).map_err(|e| format!("invalid --server '{server}': {e}"))?;
    let local = host.eq_ignore_ascii_case("localhost")
        || host.to_ascii_lowercase().ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    let scheme = if local { "http" } else { "https" };
    let url = format!("{scheme}://{server}");
    let why = if local { "a server on this machine" } else { "a remote server" };
    Ok((url.clone(), Some(format!("--server {server} has no scheme: assuming {url} ({why})"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: Option<&str>, port: u16, https: Option<bool>) -> LocalTarget {
        LocalTarget { host: host.map(str::to_string), port, https }
    }

    #[test]
    fn local_targets_take_ngroks_forms() {
        assert_eq!(parse_local_target("8000"), Ok(target(None, 8000, None)));
        assert_eq!(parse_local_target("localhost:8000"), Ok(target(Some("localhost"), 8000, None)));
        assert_eq!(parse_local_target("[::1]:8000"), Ok(target(Some("::1"), 8000, None)));
        assert_eq!(parse_local_target("https://localhost:8443"), Ok(target(Some("localhost"), 8443, Some(true))));
        assert_eq!(parse_local_target("http://127.0.0.1/"), Ok(target(Some("127.0.0.1"), 80, Some(false))));
        assert_eq!(parse_local_target("https://app.internal"), Ok(target(Some("app.internal"), 443, Some(true))));
        assert!(parse_local_target("0").is_err());
        assert!(parse_local_target("localhost").unwrap_err().contains("no port"));
        assert!(parse_local_target("ftp://x:1").unwrap_err().contains("scheme"));
        assert!(parse_local_target("localhost:99999").is_err());
        assert!(parse_local_target("bad host:80").is_err());
    }

    #[test]
    fn a_server_without_scheme_gets_one_and_a_note() {
        let (url, note) = normalize_server("localhost:3000").unwrap();
        assert_eq!(url, "http://localhost:3000");
        assert!(note.unwrap().contains("assuming http://localhost:3000"));
        assert_eq!(normalize_server("127.0.0.1:4000").unwrap().0, "http://127.0.0.1:4000");
        assert_eq!(normalize_server("demo.localhost").unwrap().0, "http://demo.localhost");
        assert_eq!(normalize_server("tunnel.example.com").unwrap().0, "https://tunnel.example.com");
        assert_eq!(normalize_server("https://t.example.com"), Ok(("https://t.example.com".into(), None)));
        assert!(normalize_server("bad host").is_err());
    }
}
