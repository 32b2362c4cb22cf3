//! Which host names this server answers for: the apex, `<name>.<domain>` for names
//! live or held, and custom hostnames granted to a client's token (kept in the
//! registry under the full hostname, which a name, being one DNS label, never is).
//!
//! One decision for `GET /api/tls-check?domain=<host>` (a TLS-terminating proxy's
//! on-demand certificates, e.g. Caddy's `on_demand_tls { ask ... }`) and for the
//! server's own on-demand certificates: never for an unknown name, which would only
//! spend a certificate authority's rate limits.

use crate::registry::Lookup;
use crate::server::tunnel_name;
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

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn host_names_are_normalised_or_refused() {
        assert_eq!(normalise("App.Example.COM.").as_deref(), Some("app.example.com"));
        assert_eq!(normalise("localhost").as_deref(), Some("localhost"));
        for bad in ["", ".", "a..b", "-a.b", "a_b.c", "a.b:443", "1.2.3.4/8", &"a".repeat(64)] {
            assert_eq!(normalise(bad), None, "{bad}");
        }
    }
}
