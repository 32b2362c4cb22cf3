//! The wasm client: the gzipped (`gzip -9`) size of the `.wasm` built by
//! `scripts/build-wasm` (into `pkg/`), and the request rate of a headless Chromium
//! tab answering 1 KiB through it (`bench/wasm-chromium.mjs`).

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

/// Why the Chromium case cannot run here, if it cannot.
pub fn chromium_missing(root: &Path) -> Option<String> {
    let mut needs = vec![
        (root.join("pkg/localtunnels.js"), "pkg/ (run scripts/build-wasm)"),
        (PathBuf::from("/usr/bin/chromium"), "/usr/bin/chromium (apt-get install chromium)"),
    ];
    // The script starts Chromium itself; playwright only for the old way of measuring.
    if std::env::var_os("VIA_PLAYWRIGHT").is_some() {
        needs.push((root.join(".tools/js/node_modules/playwright-core/package.json"), ".tools/js (run scripts/setup)"));
    }
    if crate::procs::which("node").is_none() {
        return Some("node is not installed".into());
    }
    needs.iter().find(|(p, _)| !p.exists()).map(|(_, what)| format!("missing {what}"))
}
