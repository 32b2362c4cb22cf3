//! The wasm client's size: the gzipped (`gzip -9`) size of the `.wasm` built by
//! `scripts/build-wasm` (into `pkg/`), when present.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The built `.wasm` files under `root/pkg` (not `pkg/node`, a copy for Node).
pub fn built(root: &Path) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(root.join("pkg")) else { return Vec::new() };
    let mut v: Vec<PathBuf> =
        dir.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "wasm")).collect();
    v.sort();
    v
}

/// `gzip -9` size of `path` in bytes.
pub fn gzipped(path: &Path) -> anyhow::Result<u64> {
    let out = Command::new("gzip").args(["-9", "-c"]).arg(path).output()?;
    anyhow::ensure!(out.status.success(), "gzip failed on {}", path.display());
    Ok(out.stdout.len() as u64)
}
