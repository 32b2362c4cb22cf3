//! The client's state file: the reconnect token of the last session, one file per
//! server and name, so that a process that crashed (or was killed) takes its name
//! back at once instead of waiting out the server's grace hold.
//!
//! Layout: `<state dir>/<host>_<port>/<name>`, holding the token and nothing else,
//! readable by its owner only, next to `<name>.lock`, which the running client holds
//! locked: a second process started with the same name while the first runs must be
//! refused the name (`name_taken`), not take it over with the first one's token. A
//! client that closes on purpose deletes its file: the server freed the name, and the
//! token died with it.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::ServerAddr;

/// The default state directory: `$XDG_STATE_HOME/localtunnels`, else
/// `~/.local/state/localtunnels` (Unix), `%LOCALAPPDATA%\localtunnels` (Windows).
pub fn default_state_dir() -> Option<PathBuf> {
    let non_empty = |v: &str| std::env::var_os(v).filter(|s| !s.is_empty()).map(PathBuf::from);
    if let Some(dir) = non_empty("XDG_STATE_HOME") {
        return Some(dir.join("localtunnels"));
    }
    if cfg!(windows) {
        return non_empty("LOCALAPPDATA").map(|d| d.join("localtunnels"));
    }
    non_empty("HOME").map(|h| h.join(".local").join("state").join("localtunnels"))
}

/// One tunnel's state file.
#[derive(Debug)]
pub(crate) struct StateFile {
    path: PathBuf,
    /// The lock file, held (locked) while this process runs the tunnel.
    lock: Option<std::fs::File>,
}

/// Keeps letters, digits, `-` and `.` (a host name, a DNS label); anything else
/// becomes `_`, so no name can climb out of the directory.
fn file_safe(s: &str) -> String {
    let cleaned: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect();
    match cleaned.trim_start_matches('.') {
        "" => "_".to_string(),
        rest => rest.to_string(),
    }
}

impl StateFile {
    /// The file for `name` on `server` under `dir`.
    pub(crate) fn new(dir: &Path, server: &ServerAddr, name: &str) -> StateFile {
        let server = file_safe(&format!("{}_{}", server.host, server.port));
        StateFile { path: dir.join(server).join(file_safe(name)), lock: None }
    }

    /// Takes the lock for this process; `false` when another process holds it (or it
    /// cannot be made): then this process neither reads nor writes the token.
    pub(crate) fn lock(&mut self) -> bool {
        let lock_path = self.path.with_extension("lock");
        let locked = lock_path.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| {
            let file = std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(&lock_path)?;
            file.try_lock().map_err(std::io::Error::other)?;
            Ok(file)
        });
        self.lock = locked.ok();
        self.lock.is_some()
    }

    /// The token kept, if any.
    pub(crate) fn load(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let token = text.trim();
        (!token.is_empty()).then(|| token.to_string())
    }

    /// Keeps `token` (written to a temporary file, then renamed: a crash mid-write
    /// leaves the old token or the new one, never half of one).
    pub(crate) fn save(&self, token: &str) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = self.path.with_extension("tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(token.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }

    /// Forgets the token.
    pub(crate) fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// Where the file is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(host: &str, port: u16) -> ServerAddr {
        ServerAddr { host: host.to_string(), port, secure: false }
    }

    #[test]
    fn one_file_per_server_and_name_that_stays_inside_the_directory() {
        let dir = Path::new("/state");
        assert_eq!(
            StateFile::new(dir, &addr("tunnel.example.com", 443), "demo").path(),
            dir.join("tunnel.example.com_443/demo")
        );
        assert_eq!(StateFile::new(dir, &addr("::1", 3000), "../x").path(), dir.join("__1_3000/_x"));
        assert_eq!(StateFile::new(dir, &addr("h", 1), "..").path(), dir.join("h_1/_"));
    }

    #[test]
    fn one_process_at_a_time_holds_a_tunnel_s_state() {
        let dir = std::env::temp_dir().join(format!("localtunnels-lock-test-{}", std::process::id()));
        let mut first = StateFile::new(&dir, &addr("127.0.0.1", 3000), "demo");
        let mut second = StateFile::new(&dir, &addr("127.0.0.1", 3000), "demo");
        assert!(first.lock());
        assert!(!second.lock(), "a second holder while the first runs");
        drop(first);
        assert!(second.lock(), "free once the first is gone");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn saves_loads_and_removes_a_token() {
        let dir = std::env::temp_dir().join(format!("localtunnels-state-test-{}", std::process::id()));
        let file = StateFile::new(&dir, &addr("127.0.0.1", 3000), "demo");
        assert_eq!(file.load(), None);
        file.save("secret-1").unwrap();
        file.save("secret-2").unwrap();
        assert_eq!(file.load().as_deref(), Some("secret-2"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "readable by its owner only");
        }
        file.remove();
        assert_eq!(file.load(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
