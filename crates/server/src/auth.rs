//! Client auth tokens: `--token`, a tokens file, `LOCALTUNNELS_TOKENS`.
//!
//! A token travels in the client's HELLO frame (the first message on the control
//! WebSocket), never in an HTTP header, because browsers cannot set headers on a
//! WebSocket upgrade (see `docs/SECURITY.md`). Only a SHA-256 digest of each
//! configured token is kept; a presented token is hashed once and compared with
//! every digest in constant time, so neither timing nor logs reveal a token.

use std::path::Path;

/// One configured token: the digest of its secret, the names it may use, and the
/// custom hostnames it is granted.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthToken {
    digest: [u8; 32],
    names: Vec<String>,
    hostnames: Vec<String>,
}

impl std::fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthToken")
            .field("secret", &"<redacted>")
            .field("names", &self.names)
            .field("hostnames", &self.hostnames)
            .finish()
    }
}

/// SHA-256 of a secret.
pub(crate) fn digest(secret: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl AuthToken {
    /// A token that may use any name.
    pub fn new(secret: &str) -> AuthToken {
        AuthToken { digest: digest(secret), names: Vec::new(), hostnames: Vec::new() }
    }

    /// A token limited to `names`: exact names, or prefixes ending in `*`
    /// (`team-*`). An empty list allows any name.
    pub fn with_names(secret: &str, names: impl IntoIterator<Item = impl Into<String>>) -> AuthToken {
        let names = names.into_iter().map(|n| n.into().to_ascii_lowercase()).collect();
        AuthToken { digest: digest(secret), names, hostnames: Vec::new() }
    }

    /// Grants custom hostnames: exact ones (`app.example.com`) or one-label wildcards
    /// (`*.customer.example` grants `app.customer.example`, as a wildcard certificate
    /// would cover it, but not `customer.example` or `a.b.customer.example`).
    pub fn with_hostnames(mut self, hostnames: impl IntoIterator<Item = impl Into<String>>) -> AuthToken {
        self.hostnames.extend(hostnames.into_iter().map(|h| h.into().to_ascii_lowercase()));
        self
    }

    /// Whether this token is granted `hostname` (already normalised).
    pub fn allows_hostname(&self, hostname: &str) -> bool {
        self.hostnames.iter().any(|pattern| match pattern.strip_prefix("*.") {
            Some(suffix) => hostname.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
            None => pattern == hostname,
        })
    }

    /// The custom hostnames and patterns this token is granted.
    pub fn hostnames(&self) -> &[String] {
        &self.hostnames
    }

    /// Whether this token may use `name` (already validated and lowercased).
    pub fn allows_name(&self, name: &str) -> bool {
        self.names.is_empty()
            || self.names.iter().any(|n| match n.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => n == name,
            })
    }

    /// The names this token is limited to (empty: any).
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// Parses a tokens file: one token per line, optionally followed by the names it
/// may use and the custom hostnames it is granted (separated by spaces or commas; a
/// word with a dot is a hostname: `app.example.com` or `*.customer.example`). Blank
/// lines and lines starting with `#` are skipped. Errors name the line, never the token.
pub fn parse_tokens(text: &str) -> Result<Vec<AuthToken>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split(|c: char| c.is_whitespace() || c == ',').filter(|w| !w.is_empty());
        let Some(secret) = words.next() else { continue };
        let (hostnames, names): (Vec<&str>, Vec<&str>) = words.partition(|w| w.contains('.'));
        for h in &hostnames {
            let bare = h.strip_prefix("*.").unwrap_or(h);
            if crate::hostnames::normalise(bare).is_none_or(|b| !b.contains('.')) {
                return Err(format!("line {}: '{h}' is not a hostname or a *.domain pattern", i + 1));
            }
        }
        for n in &names {
            let bare = n.strip_suffix('*').unwrap_or(n);
            let valid = bare.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') && (!bare.is_empty() || *n == "*");
            if !valid {
                return Err(format!("line {}: '{n}' is not a name or a name prefix ending in *", i + 1));
            }
        }
        out.push(AuthToken::with_names(secret, names).with_hostnames(hostnames));
    }
    Ok(out)
}

/// Reads and parses a tokens file.
pub fn load_tokens_file(path: &Path) -> std::io::Result<Vec<AuthToken>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot read tokens file {}: {e}", path.display())))?;
    parse_tokens(&text).map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("invalid tokens file {}: {e}", path.display()))
    })
}

/// Compares secrets in time independent of where they differ (`subtle`; unequal
/// lengths differ at once, and our secrets' lengths are not secret: digests, or the
/// length of a configured password).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

/// The index of the configured token `presented` matches, if any. Every digest is
/// compared, whatever matches first.
pub fn find(tokens: &[AuthToken], presented: &str) -> Option<usize> {
    let given = digest(presented);
    let mut found = None;
    for (i, t) in tokens.iter().enumerate() {
        if constant_time_eq(&t.digest, &given) && found.is_none() {
            found = Some(i);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_file_lines() {
        let t = parse_tokens("# comment\n\nalpha\nbeta  demo, team-*\n").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(find(&t, "alpha"), Some(0));
        assert_eq!(find(&t, "beta"), Some(1));
        assert_eq!(find(&t, "gamma"), None);
        assert_eq!(find(&t, ""), None);
        assert!(t[0].allows_name("anything"));
        assert!(t[1].allows_name("demo") && t[1].allows_name("team-a") && !t[1].allows_name("other"));
        assert!(parse_tokens("x bad_name").unwrap_err().starts_with("line 1:"));
        assert!(!format!("{t:?}").contains("alpha"));
    }

    #[test]
    fn tokens_grant_hostnames_exactly_or_by_one_label_wildcards() {
        let t = parse_tokens("gamma demo app.example.com *.customer.example\ndelta\n").unwrap();
        assert!(t[0].allows_name("demo") && !t[0].allows_name("other"));
        assert!(t[0].allows_hostname("app.example.com"));
        assert!(t[0].allows_hostname("shop.customer.example"));
        assert!(!t[0].allows_hostname("customer.example"));
        assert!(!t[0].allows_hostname("a.b.customer.example"));
        assert!(!t[0].allows_hostname("evilcustomer.example"));
        assert!(!t[0].allows_hostname("other.example.com"));
        assert!(!t[1].allows_hostname("app.example.com"), "no hostname unless granted");
        assert!(parse_tokens("x *.").unwrap_err().starts_with("line 1:"));
        assert!(parse_tokens("x a..b").unwrap_err().starts_with("line 1:"));
        assert!(parse_tokens("x *.com*").is_err());
    }
}
