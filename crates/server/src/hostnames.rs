//! Which host names this server answers for: the apex, `<name>.<domain>` for names
//! live or held, and custom hostnames granted to a client's token (kept in the
//! registry under the full hostname, which a name, being one DNS label, never is).
//!
//! One decision for `GET /api/tls-check?domain=<host>` (a TLS-terminating proxy's
//! on-demand certificates, e.g. Caddy's `on_demand_tls { ask ... }`) and for the
//! server's own on-demand certificates: never for an unknown name, which would only
//! spend a certificate authority's rate limits.

use crate::auth::AuthToken;
use crate::config::ServerConfig;
use crate::registry::Lookup;
use crate::state::ServerState;

/// Longest host name considered (DNS's own limit).
const MAX_HOST: usize = 253;

/// `host` lowercased, without a trailing dot; `None` when it cannot be a DNS name.
pub fn normalise(host: &str) -> Option<String> {
    let host = host.trim().trim_end_matches('.');
    let ok = !host.is_empty()
        && host.len() <= MAX_HOST
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    ok.then(|| host.to_ascii_lowercase())
}

/// Whether the server answers for `host` (no port): the apex, a live or held name, or a
/// live or held custom hostname.
pub fn is_served(state: &ServerState, host: &str) -> bool {
    let Some(host) = normalise(host) else { return false };
    let domain = state.config.domain.trim_end_matches('.');
    if host.eq_ignore_ascii_case(domain) {
        return true;
    }
    let key = tunnel_name(&host, domain).unwrap_or(host);
    !matches!(state.registry.lookup(&key), Lookup::Unknown)
}

/// Checks a hello's custom `hostname` against the client's `token`: a DNS name of two
/// labels or more, not the apex nor a name under it (those are `--subdomain`'s), and
/// granted to the token ([`AuthToken::allows_hostname`]). Returns it normalised, or why
/// not (for the `HostnameNotAllowed` refusal).
pub fn grant(config: &ServerConfig, token: Option<&AuthToken>, hostname: &str) -> Result<String, String> {
    let refuse = |message: String| message;
    let shown: String = hostname.chars().take(80).collect();
    let host = normalise(hostname)
        .filter(|h| h.contains('.'))
        .ok_or_else(|| refuse(format!("'{shown}' is not a valid hostname")))?;
    let domain = config.domain.trim_end_matches('.');
    if host.eq_ignore_ascii_case(domain) || tunnel_name(&host, domain).is_some() {
        return Err(refuse(format!("'{host}' is this server's own domain: use --subdomain for names under it")));
    }
    match token {
        Some(t) if t.allows_hostname(&host) => Ok(host),
        Some(_) => Err(refuse(format!("this token is not granted the hostname '{host}'"))),
        None => Err(refuse(format!(
            "custom hostnames are granted per token: '{host}' needs a token the operator granted it to"
        ))),
    }
}

/// The tunnel name in `host` (`name.domain[:port]`), if it is a tunnel host.
pub fn tunnel_name(host: &str, domain: &str) -> Option<String> {
    name_under(strip_port(host), domain).map(str::to_ascii_lowercase)
}

/// [`tunnel_name`] for a host already without its port, as written (not lowercased:
/// the caller lowercases it only when it has to, which it rarely does).
pub(crate) fn name_under<'a>(host: &'a str, domain: &str) -> Option<&'a str> {
    let (host, domain) = (trim_dots(host), trim_dots(domain));
    let split = host.len().checked_sub(domain.len())?;
    // `get` and not slicing: `split` may fall inside a multi-byte character.
    let (prefix, suffix) = (host.get(..split)?, host.get(split..)?);
    // The exact comparison first: hosts are nearly always written in lowercase.
    if suffix != domain && !suffix.eq_ignore_ascii_case(domain) {
        return None;
    }
    let prefix = prefix.strip_suffix('.')?;
    (!prefix.is_empty()).then_some(prefix)
}

/// `s` without trailing dots (`trim_end_matches('.')`, in a plain loop: this runs on
/// every visitor request).
fn trim_dots(s: &str) -> &str {
    let mut end = s.len();
    while end > 0 && s.as_bytes()[end - 1] == b'.' {
        end -= 1;
    }
    // Only ASCII dots were dropped: `end` is a character boundary.
    s.get(..end).unwrap_or(s)
}

pub(crate) fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().unwrap_or(host).trim_start_matches('[');
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::{normalise, tunnel_name};

    #[test]
    fn hosts_route_to_tunnels_or_apex() {
        assert_eq!(tunnel_name("demo.localhost:3000", "localhost").as_deref(), Some("demo"));
        assert_eq!(tunnel_name("Demo.Example.com", "example.com").as_deref(), Some("demo"));
        assert_eq!(tunnel_name("localhost:3000", "localhost"), None);
        assert_eq!(tunnel_name("127.0.0.1:3000", "localhost"), None);
        assert_eq!(tunnel_name("xlocalhost", "localhost"), None);
        assert_eq!(tunnel_name("a.b.localhost", "localhost").as_deref(), Some("a.b"));
        assert_eq!(tunnel_name("localhost", "localhost"), None);
        assert_eq!(tunnel_name(".localhost", "localhost"), None);
        assert_eq!(tunnel_name("ä.localhost", "calhost"), None);
        assert_eq!(tunnel_name("démo.LOCALHOST.", "localhost").as_deref(), Some("démo"));
    }

    #[test]
    fn host_names_are_normalised_or_refused() {
        assert_eq!(normalise("App.Example.COM.").as_deref(), Some("app.example.com"));
        assert_eq!(normalise("localhost").as_deref(), Some("localhost"));
        for bad in ["", ".", "a..b", "-a.b", "a_b.c", "a.b:443", "1.2.3.4/8", &"a".repeat(64)] {
            assert_eq!(normalise(bad), None, "{bad}");
        }
    }
}
