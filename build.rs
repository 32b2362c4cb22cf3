//! Links the `localtunnels` binary with the functions a tunnel runs first in `.text`, packed together
//! (src/symbol-order.txt, written by bench/symbol-order): the kernel maps code 64 KiB around every page a
//! process touches, so the same code spread over the whole `.text` kept ~4 MiB more of the binary resident in
//! every server and client (docs/BENCHMARKS.md, "Sixteenth round (session 17): memory and size"). Only where
//! the linker is lld, as rustc's default for x86_64 Linux is since Rust 1.90; `LOCALTUNNELS_NO_SYMBOL_ORDER=1` turns it off
//! (a build with another linker, or to compare). The names carry hashes that change with the code: names the
//! file lists that a build lacks are skipped silently, and bench/symbol-order writes the file again.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=src/symbol-order.txt");
    println!("cargo:rerun-if-env-changed=LOCALTUNNELS_NO_SYMBOL_ORDER");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let target = env::var("TARGET").unwrap_or_default();
    if target != "x86_64-unknown-linux-gnu"
        || env::var_os("LOCALTUNNELS_NO_SYMBOL_ORDER").is_some()
        || !links_with_lld()
    {
        return;
    }
    let Some(dir) = env::var_os("CARGO_MANIFEST_DIR") else { return };
    let file = Path::new(&dir).join("src/symbol-order.txt");
    if !file.is_file() {
        return;
    }
    println!("cargo:rustc-link-arg-bin=localtunnels=-Wl,--symbol-ordering-file={}", file.display());
    println!("cargo:rustc-link-arg-bin=localtunnels=-Wl,--no-warn-symbol-ordering");
}

/// Whether the binary is linked by rustc's own lld: its default on x86_64 Linux since Rust 1.90, unless a linker
/// was chosen (`RUSTC_LINKER`, or a linker flag in RUSTFLAGS). The GNU linker an older toolchain uses would
/// refuse the flag.
fn links_with_lld() -> bool {
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if env::var_os("RUSTC_LINKER").is_some() || flags.contains("linker") || flags.contains("fuse-ld") {
        return false;
    }
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = std::process::Command::new(rustc).arg("--version").output() else { return false };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let version = String::from_utf8_lossy(&out.stdout);
    let minor = version.split_whitespace().nth(1).and_then(|v| v.split('.').nth(1)).and_then(|m| m.parse::<u32>().ok());
    minor.is_some_and(|m| m >= 90)
}
