//! The user's config file (`~/.config/localtunnels/config.toml`) and
//! `localtunnels config set|get|path`, so that after a first
//! `localtunnels config set server https://tunnel.example.com` and
//! `localtunnels config set token SECRET`, `localtunnels http 8000` needs no flags.

use std::path::{Path, PathBuf};

use crate::args::{ConfigCommand, ConfigFile};
use crate::UsageError;

/// `$XDG_CONFIG_HOME/localtunnels/config.toml`, else `~/.config/localtunnels/config.toml`.
/// The XDG layout on every Unix (as git, gh and cargo tools do), so the path the docs
/// name is the path on macOS too.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("localtunnels").join("config.toml"))
}

/// Runs `localtunnels config ...` on `file` (`--config`) or the default file.
pub fn run(command: ConfigCommand, file: Option<&Path>) -> anyhow::Result<()> {
    let path = match file {
        Some(p) => p.to_path_buf(),
        None => default_path().ok_or_else(|| anyhow::anyhow!("no config directory: set HOME or use --config FILE"))?,
    };
    match command {
        ConfigCommand::Path => println!("{}", path.display()),
        ConfigCommand::Get { key } => {
            let table = read(&path)?;
            let (section, name) = split_key(&key)?;
            match table.get(section).and_then(|s| s.get(name)) {
                Some(toml::Value::String(s)) => println!("{s}"),
                Some(v) => println!("{v}"),
                None => return Err(UsageError(format!("{section}.{name} is not set in {}", path.display())).into()),
            }
        }
        ConfigCommand::Set { key, value } => {
            let mut table = read(&path)?;
            let (section, name) = split_key(&key)?;
            set(&mut table, section, name, &value)?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
            }
            write_private(&path, &toml::to_string(&table)?)?;
            eprintln!("set {section}.{name} in {}", path.display());
        }
    }
    Ok(())
}

/// `KEY` is a client key; `client.KEY` and `server.KEY` name the table.
fn split_key(key: &str) -> Result<(&'static str, &str), UsageError> {
    let (section, name) = match key.split_once('.') {
        Some(("client", name)) => ("client", name),
        Some(("server", name)) => ("server", name),
        Some((other, _)) => return Err(UsageError(format!("unknown section '{other}': use client.KEY or server.KEY"))),
        None => ("client", key),
    };
    if name.is_empty() {
        return Err(UsageError(format!("'{key}' names no key")));
    }
    Ok((section, name))
}

fn read(path: &Path) -> anyhow::Result<toml::Table> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.parse().map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(toml::Table::new()),
        Err(e) => Err(anyhow::anyhow!("cannot read config file {}: {e}", path.display())),
    }
}

/// Sets `section.name` to `value`, typed as the key wants it: each reading of the text
/// (boolean, number, text, list) is tried until the whole file deserializes, so an
/// unknown key or a value of the wrong type is refused with the file left as it was.
fn set(table: &mut toml::Table, section: &str, name: &str, value: &str) -> Result<(), UsageError> {
    let mut candidates = Vec::new();
    if let Ok(b) = crate::args::parse_bool(value) {
        candidates.push(toml::Value::Boolean(b));
    }
    if let Ok(n) = value.parse::<i64>() {
        candidates.push(toml::Value::Integer(n));
    }
    candidates.push(toml::Value::String(value.to_string()));
    candidates.push(toml::Value::Array(value.split(',').map(|v| toml::Value::String(v.trim().to_string())).collect()));
    let mut last_error = String::new();
    for candidate in candidates {
        let mut trial = table.clone();
        let entry = trial.entry(section).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(t) = entry.as_table_mut() else {
            return Err(UsageError(format!("'{section}' in the config file is not a table")));
        };
        t.insert(name.to_string(), candidate);
        match toml::Value::Table(trial.clone()).try_into::<ConfigFile>() {
            Ok(_) => {
                *table = trial;
                return Ok(());
            }
            Err(e) => last_error = e.message().to_string(),
        }
    }
    Err(UsageError(format!("cannot set {section}.{name} to '{value}': {last_error}")))
}

/// Writes the file readable by its owner only: it may hold a token.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    f.write_all(text.as_bytes()).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_types_the_value_as_the_key_wants_it() {
        let mut t = toml::Table::new();
        set(&mut t, "client", "server", "https://t.example.com").unwrap();
        set(&mut t, "client", "local-port", "8000").unwrap();
        set(&mut t, "client", "print-requests", "yes").unwrap();
        set(&mut t, "client", "allow-ip", "10.0.0.0/8, ::1").unwrap();
        set(&mut t, "server", "domain", "example.com").unwrap();
        let file: ConfigFile = toml::Value::Table(t.clone()).try_into().unwrap();
        assert_eq!(file.client.server, Some(vec!["https://t.example.com".to_string()]));
        assert_eq!(file.client.local_port, Some(8000));
        assert_eq!(file.client.print_requests, Some(true));
        assert_eq!(file.client.allow_ip, Some(vec!["10.0.0.0/8".to_string(), "::1".to_string()]));
        assert!(set(&mut t, "client", "no-such-key", "1").unwrap_err().0.contains("no-such-key"));
        assert!(set(&mut t, "client", "local-port", "eighty").is_err());
        assert_eq!(split_key("server.port").unwrap(), ("server", "port"));
        assert!(split_key("nope.port").is_err());
    }
}
