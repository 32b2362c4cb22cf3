//! The ACME cache directory (`--acme-cache DIR`): the account's credentials, one file
//! per ACME directory (`account-<hash>.json`, so staging and production never mix), and
//! one file per certificate (`cert-<name>.pem`: the chain, then its private key).
//! The directory is 0700 and every file 0600, written to a temporary file and renamed,
//! so a crash never leaves half a key.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use instant_acme::AccountCredentials;
use tracing::warn;

/// Creates the cache directory (0700) if it is missing.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot create the ACME cache {}: {e}", dir.display())))
}

/// Writes `bytes` to `path` with mode 0600, atomically.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    // An existing file keeps its mode on open: set it in any case.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn account_path(dir: &Path, directory: &str) -> PathBuf {
    let digest = ring::digest::digest(&ring::digest::SHA256, directory.as_bytes());
    let hex: String = digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("account-{hex}.json"))
}

/// The cached account for the ACME `directory`, if any.
pub fn load_account(dir: &Path, directory: &str) -> Option<AccountCredentials> {
    let path = account_path(dir, directory);
    let text = std::fs::read_to_string(&path).ok()?;
    serde_json::from_str(&text)
        .map_err(
            |e| warn!(path = %path.display(), error = %e, "unreadable ACME account in the cache: a new one is made"),
        )
        .ok()
}

/// Caches the account for the ACME `directory`.
pub fn save_account(dir: &Path, directory: &str, credentials: &AccountCredentials) -> std::io::Result<()> {
    let json = serde_json::to_vec(credentials).map_err(std::io::Error::other)?;
    write_private(&account_path(dir, directory), &json)
}

/// Caches `name`'s certificate chain and key.
pub fn save_certificate(dir: &Path, name: &str, cert_pem: &[u8], key_pem: &[u8]) -> std::io::Result<()> {
    let mut both = cert_pem.to_vec();
    if !both.ends_with(b"\n") {
        both.push(b'\n');
    }
    both.extend_from_slice(key_pem);
    write_private(&dir.join(format!("cert-{name}.pem")), &both)
}

/// Every cached certificate: name, PEM text (the key's PEM block is found in it too).
pub fn load_certificates(dir: &Path) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = file.strip_prefix("cert-").and_then(|f| f.strip_suffix(".pem")) else { continue };
        match std::fs::read(entry.path()) {
            Ok(pem) => out.push((name.to_string(), pem.clone(), pem)),
            Err(e) => warn!(file = %entry.path().display(), error = %e, "unreadable ACME certificate in the cache"),
        }
    }
    out
}
