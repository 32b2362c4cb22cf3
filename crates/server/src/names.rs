//! Tunnel names: validation, reserved names and random readable names.

use rand::seq::SliceRandom;
use rand::Rng;

/// Names no client may take: they look like the service's own hosts.
pub const RESERVED: &[&str] = &[
    "www",
    "api",
    "admin",
    "app",
    "apps",
    "mail",
    "smtp",
    "ftp",
    "ns",
    "ns1",
    "ns2",
    "dns",
    "status",
    "health",
    "metrics",
    "dashboard",
    "console",
    "root",
    "localtunnels",
    "tunnel",
    "tunnels",
    "static",
    "assets",
    "cdn",
    "support",
    "help",
    "docs",
    "blog",
    "login",
    "auth",
    "account",
    "billing",
];

/// Why a requested name cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not a DNS label.
    #[error("'{0}' is not a valid name: use 1-63 letters, digits and hyphens, not starting or ending with a hyphen")]
    Invalid(String),
    /// Reserved for the service.
    #[error("'{0}' is reserved; pick another name")]
    Reserved(String),
}

/// Checks a requested name and returns it lowercased.
pub fn validate(name: &str) -> Result<String, NameError> {
    let lower = name.to_ascii_lowercase();
    let valid = !lower.is_empty()
        && lower.len() <= 63
        && lower.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !lower.starts_with('-')
        && !lower.ends_with('-');
    if !valid {
        return Err(NameError::Invalid(name.chars().take(80).collect()));
    }
    if RESERVED.contains(&lower.as_str()) {
        return Err(NameError::Reserved(lower));
    }
    Ok(lower)
}

const ADJECTIVES: &[&str] = &[
    "amber", "brave", "calm", "clever", "cosy", "crisp", "daring", "eager", "fancy", "gentle", "golden", "happy",
    "jolly", "keen", "lively", "lucky", "mellow", "merry", "nimble", "polite", "proud", "quick", "quiet", "rapid",
    "shiny", "silent", "sunny", "swift", "tidy", "vivid", "witty", "zesty", "agile", "bold", "bright", "breezy",
    "cheery", "cool", "dapper", "deft", "fair", "fresh", "frosty", "glad", "grand", "hardy", "humble", "jazzy", "kind",
    "lush", "mighty", "misty", "noble", "plucky", "rosy", "rustic", "snug", "spry", "steady", "sturdy", "sleek",
    "upbeat", "warm", "wise",
];
const NOUNS: &[&str] = &[
    "badger", "beaver", "bison", "comet", "coral", "crane", "falcon", "ferret", "fox", "gecko", "heron", "koala",
    "lemur", "lynx", "meadow", "otter", "panda", "pebble", "puffin", "raven", "river", "robin", "salmon", "walrus",
    "willow", "wombat", "yak", "zebra", "maple", "cedar", "harbor", "canyon", "aspen", "bay", "birch", "brook",
    "cliff", "cloud", "dune", "ember", "fern", "fjord", "glade", "grove", "hawk", "hill", "island", "lagoon", "lake",
    "marsh", "moose", "newt", "oak", "orca", "owl", "pine", "reef", "ridge", "seal", "sparrow", "stone", "swan",
    "tiger", "valley",
];

/// How many different names [`random_name`] makes: 64 × 64 × 9,000 = 36,864,000,
/// over 3,600 times the names a default server holds at most (`max_tunnels`, 10,000,
/// live and held together), so a free one is found at the first or second try.
/// The tests check the word lists against it.
#[cfg(test)]
const RANDOM_NAMES: u64 = 64 * 64 * 9_000;

/// A random readable name such as `brave-otter-4821`.
pub fn random_name() -> String {
    let mut rng = rand::thread_rng();
    let adj = ADJECTIVES.choose(&mut rng).copied().unwrap_or("quick");
    let noun = NOUNS.choose(&mut rng).copied().unwrap_or("fox");
    format!("{adj}-{noun}-{}", rng.gen_range(1000..10_000))
}

/// A random secret (hex), for reconnect tokens.
pub fn random_secret() -> String {
    let bytes: [u8; 16] = rand::thread_rng().gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_validated() {
        assert_eq!(validate("My-App1").unwrap(), "my-app1");
        assert!(matches!(validate("-x"), Err(NameError::Invalid(_))));
        assert!(matches!(validate("a.b"), Err(NameError::Invalid(_))));
        assert!(matches!(validate(&"a".repeat(64)), Err(NameError::Invalid(_))));
        assert!(matches!(validate(""), Err(NameError::Invalid(_))));
        assert!(matches!(validate("WWW"), Err(NameError::Reserved(_))));
        assert!(validate(&random_name()).is_ok());
    }

    /// The space is what [`RANDOM_NAMES`] says: distinct words, none reserved, every
    /// name a valid label (92,160 names before issue 17 let one address exhaust it).
    #[test]
    fn the_random_name_space_is_wide() {
        let distinct = |words: &[&str]| words.iter().collect::<std::collections::HashSet<_>>().len();
        assert_eq!((distinct(ADJECTIVES), distinct(NOUNS)), (ADJECTIVES.len(), NOUNS.len()));
        let space = ADJECTIVES.len() as u64 * NOUNS.len() as u64 * 9_000;
        assert_eq!(space, RANDOM_NAMES);
        let max_tunnels = u64::try_from(crate::ServerConfig::default().max_tunnels).unwrap();
        assert!(RANDOM_NAMES >= 1000 * max_tunnels, "the space must dwarf the default max_tunnels");
        for w in ADJECTIVES.iter().chain(NOUNS) {
            assert!(validate(&format!("{w}-{w}-1000")).is_ok(), "{w}");
        }
        assert!((0..1000).map(|_| random_name()).all(|n| validate(&n).is_ok() && n.len() <= 63));
    }
}
