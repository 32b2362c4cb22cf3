//! Links the `localtunnels` binary with the functions a tunnel runs first in `.text`, packed together
//! (src/symbol-order.txt, written by bench/symbol-order): the kernel maps code 64 KiB around every page a
//! process touches, so the same code spread over the whole `.text` kept ~4 MiB more of the binary resident in
//! every server and client (docs/BENCHMARKS.md, "Sixteenth round (session 17): memory and size"). Only where
//! the linker is lld, as rustc's default for x86_64 Linux is; `LOCALTUNNELS_NO_SYMBOL_ORDER=1` turns it off
//! (a build with another linker, or to compare). The names carry hashes that change with the code: names the
//! file lists that a build lacks are skipped silently, and bench/symbol-order writes the file again.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=src/symbol-order.txt");
    println!("cargo:rerun-if-env-changed=LOCALTUNNELS_NO_SYMBOL_ORDER");
    let target = env::var("TARGET").unwrap_or_default();
    if target != "x86_64-unknown-linux-gnu" || env::var_os("LOCALTUNNELS_NO_SYMBOL_ORDER").is_some() {
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
