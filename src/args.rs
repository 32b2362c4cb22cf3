//! Command-line arguments. Every flag also reads a `LOCALTUNNELS_*` environment
//! variable and a key of the TOML config file (`--config`, else the user's
//! `~/.config/localtunnels/config.toml` when it exists): the command line wins over
//! the environment, which wins over the file, which wins over the defaults. Booleans
//! from the environment take `true/false`, `1/0`, `yes/no` and `on/off`.

use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::target::LocalTarget;

/// Expose a local HTTP/WebSocket server at a public URL, or run the server that does it.
#[derive(Debug, Parser)]
#[command(name = "localtunnels", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    /// TOML file with `[server]` and/or `[client]` tables whose keys are the long flag names
    /// [default: ~/.config/localtunnels/config.toml, when it exists].
    #[arg(long, global = true, env = "LOCALTUNNELS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log lines as text for people, or as one JSON object per line for log shippers.
    #[arg(long, global = true, env = "LOCALTUNNELS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One line of text per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// Exit codes, shown by `--help`.
pub const EXIT_CODES: &str = "Exit codes: 0 ok, 1 error, 2 usage, 3 server unreachable, 4 name taken, \
5 name invalid or reserved, 6 unauthorized, 7 refused for another reason, 8 hostname not allowed.";

// Built once per run: the size of the server's variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a tunnel server: control connections and public traffic on one port.
    Server(ServerArgs),
    /// Expose a local port through a tunnel server.
    Client(ClientArgs),
    /// ngrok-style shorthand: `localtunnels http 8000` = `localtunnels client --local-port 8000`;
    /// also `http localhost:8000` and `http https://localhost:8443` (sets --local-https).
    Http {
        /// What to expose: a port, host:port or a URL (wins over --local-port/--local-host).
        // Its own id: the flattened client flags already have a `local_port`.
        #[arg(value_name = "PORT|HOST:PORT|URL", id = "http_target", value_parser = parse_target)]
        target: LocalTarget,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a shell completion script: `localtunnels completions bash > /etc/bash_completion.d/localtunnels`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `localtunnels man | man -l -`.
    Man,
    /// Read or write the config file (by default ~/.config/localtunnels/config.toml).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Start a server, a demo web app and a client in one process, and print the public URL.
    Demo {
        /// Port for the demo's server (0 picks a free one).
        #[arg(long, env = "LOCALTUNNELS_PORT", default_value_t = 3000)]
        port: u16,
    },
}

/// `localtunnels config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Set a key: `config set server https://tunnel.example.com`, `config set token SECRET`.
    /// A bare key is a client key (the long flag name); `server.KEY` sets a server key.
    Set {
        /// `KEY` or `client.KEY` or `server.KEY`.
        key: String,
        /// The value (`true`/`false`, a number, text; a comma-separated list for lists).
        value: String,
    },
    /// Print a key's value.
    Get {
        /// `KEY` or `client.KEY` or `server.KEY`.
        key: String,
    },
    /// Print the config file's path.
    Path,
}

#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServerArgs {
    /// Port for control connections and public traffic.
    #[arg(long, env = "LOCALTUNNELS_PORT")]
    pub port: Option<u16>,
    /// Address to listen on.
    #[arg(long, env = "LOCALTUNNELS_BIND")]
    pub bind: Option<std::net::IpAddr>,
    /// Apex domain: tunnels are <name>.<domain>.
    #[arg(long, env = "LOCALTUNNELS_DOMAIN", value_parser = parse_domain)]
    pub domain: Option<String>,
    /// Public URLs use https (TLS here or in a proxy in front).
    #[arg(long, env = "LOCALTUNNELS_SECURE", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub secure: Option<bool>,
    /// Port shown in public URLs when behind a proxy [default: the listening port].
    #[arg(long, env = "LOCALTUNNELS_PUBLIC_PORT")]
    pub public_port: Option<u16>,
    /// Scheme of public URLs when a proxy in front terminates TLS [default: https with
    /// TLS here or --secure, else http].
    #[arg(long, env = "LOCALTUNNELS_PUBLIC_SCHEME", value_enum)]
    pub public_scheme: Option<PublicSchemeArg>,
    /// The public URL of the apex, e.g. https://tunnels.example.com: sets the scheme, the
    /// domain and the port that printed and handed-out URLs carry (for a proxy in front).
    #[arg(long, env = "LOCALTUNNELS_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Believe X-Forwarded-For/-Proto and Forwarded (and PROXY headers with
    /// --proxy-protocol) only from these proxies (repeatable or comma-separated).
    #[arg(long, env = "LOCALTUNNELS_TRUSTED_PROXIES", value_delimiter = ',', value_name = "CIDR")]
    pub trusted_proxy: Option<Vec<String>>,
    /// Connections from a --trusted-proxy start with a PROXY protocol v1/v2 header (TCP load balancers).
    #[arg(long, env = "LOCALTUNNELS_PROXY_PROTOCOL", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub proxy_protocol: Option<bool>,
    /// Seconds a visitor waits for the origin's response head before a 504.
    #[arg(long, env = "LOCALTUNNELS_RESPONSE_TIMEOUT", value_name = "SECS")]
    pub response_timeout: Option<u64>,
    /// Seconds a dropped client's name is held for it.
    #[arg(long, env = "LOCALTUNNELS_GRACE_PERIOD", value_name = "SECS")]
    pub grace_period: Option<u64>,
    /// Share names with other nodes through Redis: redis://HOST:PORT[/DB] or redis+unix:///path/to/redis.sock.
    #[arg(long, env = "LOCALTUNNELS_CLUSTER", value_name = "URL")]
    pub cluster: Option<String>,
    /// Where other cluster nodes reach this one [default: from --bind and --port].
    #[arg(long, env = "LOCALTUNNELS_NODE_URL", value_name = "URL")]
    pub node_url: Option<String>,
    /// This node's id in the cluster, unique per process [default: random, printed at start].
    #[arg(long, env = "LOCALTUNNELS_NODE_ID", value_name = "ID")]
    pub node_id: Option<String>,
    /// Seconds a node's claim on a name lasts without renewal (renewed every third of it).
    #[arg(long, env = "LOCALTUNNELS_LEASE_TTL", value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub lease_ttl: Option<u64>,
    /// Most HTTP/2 streams one connection to this node may have open at once (the other
    /// nodes' one connection carries every request and WebSocket they forward here).
    #[arg(long, env = "LOCALTUNNELS_NODE_STREAMS", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub node_streams: Option<u32>,
    /// The secret cluster nodes authenticate each other with (required with --cluster).
    #[arg(long, env = "LOCALTUNNELS_CLUSTER_SECRET", value_name = "SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// Most tunnels at once.
    #[arg(long, env = "LOCALTUNNELS_MAX_TUNNELS")]
    pub max_tunnels: Option<usize>,
    /// Log every request and session.
    #[arg(long, env = "LOCALTUNNELS_VERBOSE", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub verbose: Option<bool>,
    /// Require clients to present this auth token (repeatable; the environment variable
    /// takes a comma-separated list). Any token or --tokens-file turns auth on.
    #[arg(long, env = "LOCALTUNNELS_TOKENS", value_delimiter = ',', hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<Vec<String>>,
    /// File of auth tokens: one per line, optionally followed by the names it may use
    /// (`secret demo team-*`); `#` starts a comment. Turns auth on.
    #[arg(long, env = "LOCALTUNNELS_TOKENS_FILE", value_name = "FILE")]
    pub tokens_file: Option<PathBuf>,
    /// Operator token for the full /api/status (every tunnel's name and URL) and, when
    /// set, for /metrics: `Authorization: Bearer <token>`. Without it /api/status shows
    /// counts only.
    #[arg(long, env = "LOCALTUNNELS_ADMIN_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub admin_token: Option<String>,
    /// PEM certificate chain: serve HTTPS and WSS on the port (needs --tls-key).
    #[arg(long, env = "LOCALTUNNELS_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "LOCALTUNNELS_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Obtain and renew certificates by ACME (Let's Encrypt by default): the apex's at
    /// start, a live or held name's at its first TLS handshake. Serves HTTPS on --port.
    #[arg(long, env = "LOCALTUNNELS_ACME", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub acme: Option<bool>,
    /// Contact address for the ACME account.
    #[arg(long, env = "LOCALTUNNELS_ACME_EMAIL", value_name = "EMAIL")]
    pub acme_email: Option<String>,
    /// ACME directory URL [default: Let's Encrypt's production directory].
    #[arg(long, env = "LOCALTUNNELS_ACME_DIRECTORY", value_name = "URL")]
    pub acme_directory: Option<String>,
    /// Use Let's Encrypt's staging directory (untrusted certificates, for trials).
    #[arg(long, env = "LOCALTUNNELS_ACME_STAGING", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub acme_staging: Option<bool>,
    /// Keep the ACME account and certificates here (files 0600), reused across restarts.
    #[arg(long, env = "LOCALTUNNELS_ACME_CACHE", value_name = "DIR")]
    pub acme_cache: Option<PathBuf>,
    /// PEM root to trust for the ACME server's own HTTPS (a private or test CA).
    #[arg(long, env = "LOCALTUNNELS_ACME_CA_ROOT", value_name = "FILE")]
    pub acme_ca_root: Option<PathBuf>,
    /// Plain-HTTP port: redirects to HTTPS, and ACME validates by HTTP-01 here instead
    /// of TLS-ALPN-01 on --port.
    #[arg(long, env = "LOCALTUNNELS_HTTP_PORT", value_name = "PORT")]
    pub http_port: Option<u16>,
    /// Most tunnels one auth token may hold at once.
    #[arg(long, env = "LOCALTUNNELS_MAX_TUNNELS_PER_TOKEN", value_name = "N")]
    pub max_tunnels_per_token: Option<usize>,
    /// Most tunnels one client IP address may hold at once.
    #[arg(long, env = "LOCALTUNNELS_MAX_TUNNELS_PER_IP", value_name = "N")]
    pub max_tunnels_per_ip: Option<usize>,
    /// Most visitor requests in flight through one tunnel; more get 503.
    #[arg(long, env = "LOCALTUNNELS_MAX_STREAMS_PER_TUNNEL", value_name = "N")]
    pub max_streams_per_tunnel: Option<usize>,
    /// Most control connections one tunnel may have (a client's `--connections`), its
    /// first one included; 1 lets none join.
    #[arg(long, env = "LOCALTUNNELS_MAX_CONNECTIONS_PER_TUNNEL", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub max_connections_per_tunnel: Option<u16>,
    /// Most requests in flight through one tunnel from one visitor address (IPv6: one
    /// /64); more from that address get 503 [default: 256].
    #[arg(long, env = "LOCALTUNNELS_MAX_STREAMS_PER_VISITOR", value_name = "N")]
    pub max_streams_per_visitor: Option<usize>,
    /// New visitor requests per second per tunnel; more get 429 [default: unlimited].
    #[arg(long, env = "LOCALTUNNELS_RATE_LIMIT", value_name = "PER_SEC")]
    pub rate_limit: Option<u32>,
    /// Burst allowed above --rate-limit [default: twice the rate].
    #[arg(long, env = "LOCALTUNNELS_RATE_BURST", value_name = "N")]
    pub rate_burst: Option<u32>,
    /// New requests per second per tunnel from one visitor address; more get 429
    /// [default: unlimited].
    #[arg(long, env = "LOCALTUNNELS_VISITOR_RATE_LIMIT", value_name = "PER_SEC")]
    pub visitor_rate_limit: Option<u32>,
    /// Burst allowed above --visitor-rate-limit [default: twice the rate].
    #[arg(long, env = "LOCALTUNNELS_VISITOR_RATE_BURST", value_name = "N")]
    pub visitor_rate_burst: Option<u32>,
    /// Largest visitor request body in bytes; larger ones get 413 [default: unlimited].
    #[arg(long, env = "LOCALTUNNELS_MAX_BODY", value_name = "BYTES")]
    pub max_body: Option<u64>,
    /// Largest visitor request head in bytes; larger ones get 431.
    #[arg(long, env = "LOCALTUNNELS_MAX_HEADER_SIZE", value_name = "BYTES")]
    pub max_header_size: Option<usize>,
    /// Seconds a connection has to send a request head (slow clients are cut).
    #[arg(long, env = "LOCALTUNNELS_HEADER_READ_TIMEOUT", value_name = "SECS")]
    pub header_read_timeout: Option<u64>,
    /// Seconds a connection may stay silent both ways before it is closed.
    #[arg(long, env = "LOCALTUNNELS_IDLE_TIMEOUT", value_name = "SECS")]
    pub idle_timeout: Option<u64>,
    /// Seconds a visitor may read nothing of a response the server is writing before
    /// it is dropped, giving back what it held of its tunnel's window (0: never).
    #[arg(long, env = "LOCALTUNNELS_VISITOR_WRITE_TIMEOUT", value_name = "SECS")]
    pub visitor_write_timeout: Option<u64>,
    /// Largest control frame a client may send, in bytes.
    #[arg(long, env = "LOCALTUNNELS_MAX_FRAME", value_name = "BYTES")]
    pub max_frame: Option<u32>,
    /// Largest stream or session window taken from a client's hello: larger ones are
    /// clamped to it [default: 16777216].
    #[arg(long, env = "LOCALTUNNELS_MAX_PEER_WINDOW", value_name = "BYTES", value_parser = clap::value_parser!(u32).range(1024..))]
    pub max_peer_window: Option<u32>,
    /// Most visitor bytes queued unsent for one tunnel's client, whatever window it
    /// announced [default: 8388608].
    #[arg(long, env = "LOCALTUNNELS_MAX_SESSION_QUEUE", value_name = "BYTES", value_parser = clap::value_parser!(u32).range(1024..))]
    pub max_session_queue: Option<u32>,
    /// Most bytes of control frames (request heads, window updates, resets) waiting for
    /// one tunnel's client; a client that lets more pile up does not read, and its
    /// session is closed (SlowReader).
    #[arg(long, env = "LOCALTUNNELS_MAX_CONTROL_QUEUE", value_name = "BYTES", value_parser = clap::value_parser!(u32).range(1024..))]
    pub max_control_queue: Option<u32>,
    /// Largest WebSocket message relayed through a tunnel; larger ones close the
    /// WebSocket with 1009.
    #[arg(long, env = "LOCALTUNNELS_MAX_WS_MESSAGE", value_name = "BYTES")]
    pub max_ws_message: Option<usize>,
    /// Worker threads [default: one per two cores, at least one].
    #[arg(long, env = "LOCALTUNNELS_THREADS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Serve on N threads with a single-threaded runtime each (shards): connections go
    /// to each in turn, and a request stays on its connection's thread, opened on a
    /// control connection of the same shard when the tunnel has one (instead of
    /// --threads) [default: off].
    #[arg(long, env = "LOCALTUNNELS_SHARDS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub shards: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublicSchemeArg {
    /// Public URLs are http:// and ws://.
    Http,
    /// Public URLs are https:// and wss://.
    Https,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostHeaderArg {
    /// The origin sees Host: <local-host>:<local-port>.
    Rewrite,
    /// The origin sees the visitor's Host.
    Preserve,
}

#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ClientArgs {
    /// Server URL, e.g. https://tunnel.example.com (overrides --host/--port/--secure).
    /// Repeatable or comma-separated: the nodes of one cluster, tried in order on
    /// connect and on every reconnect.
    #[arg(long, env = "LOCALTUNNELS_SERVER", value_name = "URL", value_delimiter = ',')]
    #[serde(default, deserialize_with = "one_or_many")]
    pub server: Option<Vec<String>>,
    /// Server host.
    #[arg(long, env = "LOCALTUNNELS_HOST")]
    pub host: Option<String>,
    /// Server port.
    #[arg(long, env = "LOCALTUNNELS_PORT")]
    pub port: Option<u16>,
    /// Connect to the server with TLS (wss://).
    #[arg(long, env = "LOCALTUNNELS_SECURE", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub secure: Option<bool>,
    /// Local port to expose.
    #[arg(short = 'p', long, env = "LOCALTUNNELS_LOCAL_PORT")]
    pub local_port: Option<u16>,
    /// Local host to expose.
    #[arg(long, env = "LOCALTUNNELS_LOCAL_HOST")]
    pub local_host: Option<String>,
    /// The local server speaks HTTPS.
    #[arg(long, env = "LOCALTUNNELS_LOCAL_HTTPS", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub local_https: Option<bool>,
    /// Accept an invalid (e.g. self-signed) certificate from the local server.
    #[arg(long, env = "LOCALTUNNELS_ALLOW_INVALID_CERT", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub allow_invalid_cert: Option<bool>,
    /// Name to request: the public URL becomes <NAME>.<domain> [default: a random name].
    /// A DNS label (letters, digits, hyphens); reserved names such as www, api and admin
    /// are refused (exit code 5). A name another client holds is refused (exit code 4);
    /// after a disconnect the server keeps your name for you for its grace period.
    #[arg(short = 's', long, env = "LOCALTUNNELS_SUBDOMAIN", value_name = "NAME")]
    pub subdomain: Option<String>,
    /// A custom hostname instead of a name under the server's domain (its DNS points at
    /// the server, e.g. a CNAME); granted only where the server lets your token use it,
    /// else refused (exit code 8).
    #[arg(long, env = "LOCALTUNNELS_HOSTNAME", value_name = "HOST", conflicts_with = "subdomain")]
    pub hostname: Option<String>,
    /// Where to keep the reconnect token of a --subdomain tunnel, one file per server and
    /// name, so that a client restarted after a crash gets its name back at once
    /// [default: $XDG_STATE_HOME/localtunnels, else ~/.local/state/localtunnels].
    #[arg(long, env = "LOCALTUNNELS_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Keep no state file (a crashed client's name is then held for the server's grace period).
    #[arg(long, env = "LOCALTUNNELS_NO_STATE", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub no_state: Option<bool>,
    /// Auth token, for servers that require one.
    #[arg(short = 't', long, env = "LOCALTUNNELS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Host header the local server sees [default: rewrite].
    #[arg(long, env = "LOCALTUNNELS_HOST_HEADER", value_enum)]
    pub host_header: Option<HostHeaderArg>,
    /// Make visitors log in with this user name and password (HTTP basic auth).
    #[arg(long, env = "LOCALTUNNELS_BASIC_AUTH", hide_env_values = true, value_name = "USER:PASS")]
    pub basic_auth: Option<String>,
    /// Only let visitors from this address or CIDR range in (repeatable; the environment
    /// variable takes a comma-separated list). Matched on the visitor's TCP address.
    #[arg(long, env = "LOCALTUNNELS_ALLOW_IPS", value_delimiter = ',', value_name = "ADDR|CIDR", value_parser = parse_allow_ip)]
    pub allow_ip: Option<Vec<String>>,
    /// PEM file of the CA that signed the server's certificate, or of the server's own
    /// (self-signed) certificate, trusted instead of the system roots.
    #[arg(long, env = "LOCALTUNNELS_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Largest WebSocket message relayed to or from the local server; larger ones
    /// close the WebSocket with 1009.
    #[arg(long, env = "LOCALTUNNELS_MAX_WS_MESSAGE", value_name = "BYTES")]
    pub max_ws_message: Option<usize>,
    /// Print one line per request on stdout: time, method, path, status, duration, bytes.
    #[arg(long, env = "LOCALTUNNELS_PRINT_REQUESTS", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub print_requests: Option<bool>,
    /// Show visitors the detail of an origin error (its address, the OS error) on the
    /// error page, for development. Without it they get a generic page with a request
    /// id, and the detail is printed here.
    #[arg(long, env = "LOCALTUNNELS_EXPOSE_ERRORS", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub expose_errors: Option<bool>,
    /// Where the request inspector (web page and ngrok-compatible agent API) listens
    /// [default: 127.0.0.1:4040, or the next free port up to 4049].
    #[arg(long, env = "LOCALTUNNELS_INSPECT_ADDR", value_name = "ADDR")]
    pub inspect_addr: Option<std::net::SocketAddr>,
    /// Turn the request inspector off (nothing is captured or served).
    #[arg(long, env = "LOCALTUNNELS_NO_INSPECT", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub no_inspect: Option<bool>,
    /// Bytes of each request and response body the inspector keeps (default 64 KiB);
    /// the rest is counted and marked truncated.
    #[arg(long, env = "LOCALTUNNELS_INSPECT_BODY_LIMIT", value_name = "BYTES")]
    pub inspect_body_limit: Option<usize>,
    /// Bytes the inspector's captures may hold in all (default 3 MiB: a recent history of
    /// ~1,750 small exchanges or 48 large bodies); the oldest are evicted past it.
    #[arg(long, env = "LOCALTUNNELS_INSPECT_MAX_BYTES", value_name = "BYTES")]
    pub inspect_max_bytes: Option<usize>,
    /// Mask Authorization, Cookie and Set-Cookie values in the inspector.
    #[arg(long, env = "LOCALTUNNELS_INSPECT_REDACT", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub inspect_redact: Option<bool>,
    /// Control connections to the server, 1 to 16: each further one joins the tunnel
    /// from a thread of its own, and the server spreads new requests over them, so a
    /// busy tunnel's work uses several CPUs (only with a server that lets connections
    /// join; it may allow fewer).
    #[arg(long, env = "LOCALTUNNELS_CONNECTIONS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=16))]
    pub connections: Option<u16>,
    /// Worker threads [default: 1: every request of a tunnel crosses its one control
    /// connection, and a single thread spares them cross-thread wake-ups].
    #[arg(long, env = "LOCALTUNNELS_THREADS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

/// `true/false`, `1/0`, `yes/no`, `on/off` (any case), as the environment's booleans.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "y" | "on" => Ok(true),
        "false" | "0" | "no" | "n" | "off" => Ok(false),
        _ => Err(format!("'{s}' is not a boolean (true/false, 1/0, yes/no, on/off)")),
    }
}

fn parse_target(s: &str) -> Result<LocalTarget, String> {
    crate::target::parse_local_target(s)
}

/// A DNS name: dot-separated labels of letters, digits and hyphens (not at a label's
/// ends), 1-63 bytes each, 253 in all. Returned lowercase.
pub fn parse_domain(s: &str) -> Result<String, String> {
    let name = s.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!("'{s}' is not a domain name (letters, digits, hyphens and dots, e.g. tunnel.example.com)"));
    }
    Ok(name)
}

/// An address (`203.0.113.7`, `::1`) or a CIDR range (`10.0.0.0/8`).
pub fn parse_allow_ip(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.parse::<std::net::IpAddr>().is_ok() || s.parse::<ipnet::IpNet>().is_ok() {
        return Ok(s.to_string());
    }
    Err(format!("'{s}' is neither an IP address nor a CIDR range (e.g. 203.0.113.7 or 10.0.0.0/8)"))
}

/// Fills every `None` field of `$a` from `$b`.
/// A TOML value that is one string or a list of them (`server = "URL"` or `server = ["URL", ...]`).
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(Some(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        OneOrMany::Many(v) => v,
    }))
}

macro_rules! fill {
    ($a:expr, $b:expr; $($f:ident),* $(,)?) => { $( if $a.$f.is_none() { $a.$f = $b.$f.clone(); } )* };
}

impl ServerArgs {
    /// Fields not given on the command line or in the environment come from `file`.
    pub fn or(mut self, file: &ServerArgs) -> Self {
        fill!(self, file; port, bind, domain, secure, public_port, public_scheme, public_url, trusted_proxy,
            proxy_protocol, response_timeout, grace_period, cluster, node_url, node_id, lease_ttl, node_streams, cluster_secret, max_tunnels, verbose, token, tokens_file, admin_token,
            tls_cert, tls_key, acme, acme_email, acme_directory, acme_staging, acme_cache, acme_ca_root, http_port,
            max_tunnels_per_token, max_tunnels_per_ip, max_streams_per_tunnel, max_connections_per_tunnel, max_streams_per_visitor, rate_limit,
            rate_burst, visitor_rate_limit, visitor_rate_burst, max_body, max_header_size, header_read_timeout,
            idle_timeout, visitor_write_timeout, max_frame, max_peer_window, max_session_queue, max_control_queue, max_ws_message,
            threads, shards);
        self
    }
}

impl ClientArgs {
    /// Fields not given on the command line or in the environment come from `file`.
    pub fn or(mut self, file: &ClientArgs) -> Self {
        fill!(self, file; server, host, port, secure, local_port, local_host, local_https, allow_invalid_cert,
            subdomain, hostname, state_dir, no_state, token, host_header, print_requests, expose_errors, basic_auth,
            allow_ip, ca, max_ws_message, connections, threads);
        fill!(self, file; inspect_addr, no_inspect, inspect_body_limit, inspect_max_bytes, inspect_redact);
        self
    }
}

/// The config file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigFile {
    pub server: ServerArgs,
    pub client: ClientArgs,
}

impl ConfigFile {
    /// Reads `path`, else the user's default config file when it exists, else the
    /// empty config.
    pub fn load(path: Option<&std::path::Path>) -> anyhow::Result<ConfigFile> {
        let default = crate::settings::default_path().filter(|p| p.is_file());
        let Some(path) = path.or(default.as_deref()) else { return Ok(ConfigFile::default()) };
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        // clap checks ids, flags and env names here (in debug builds it would
        // otherwise only panic when a user runs the faulty subcommand).
        Cli::command().debug_assert();
        crate::defaults::command().debug_assert();
    }

    #[test]
    fn help_shows_the_libraries_defaults() {
        let mut cmd = crate::defaults::command();
        let server = cmd.find_subcommand_mut("server").unwrap().render_help().to_string();
        assert!(server.contains("[default: 3000; 0 picks a free port]"), "{server}");
        assert!(server.contains("[default: 65600]") && server.contains("[default: 1024]"), "{server}");
        let http = cmd.find_subcommand_mut("http").unwrap().render_help().to_string();
        assert!(http.contains("[default: 8000]") && http.contains("[default: localhost]"), "{http}");
    }

    /// `--max-control-queue` (and its config file key) reaches the sessions' config,
    /// the library default when neither is given; the help shows that default.
    #[test]
    fn max_control_queue_reaches_the_session_config() {
        let default = localtunnels_core::Config::DEFAULT.max_control_queue;
        let server = |argv: &[&str]| {
            let cli = Cli::try_parse_from([&["localtunnels", "server"], argv].concat()).unwrap();
            let Command::Server(a) = cli.command else { panic!("not a server") };
            a
        };
        assert_eq!(crate::server_config(&server(&[])).session.max_control_queue, default);
        let a = server(&["--max-control-queue", "65536"]);
        assert_eq!(crate::server_config(&a).session.max_control_queue, 65536);
        let file: ConfigFile = toml::from_str("[server]\nmax-control-queue = 8192\n").unwrap();
        assert_eq!(crate::server_config(&server(&[]).or(&file.server)).session.max_control_queue, 8192);
        assert_eq!(crate::server_config(&a.or(&file.server)).session.max_control_queue, 65536, "the flag wins");
        assert!(Cli::try_parse_from(["localtunnels", "server", "--max-control-queue", "100"]).is_err());
        let help = crate::defaults::command().find_subcommand_mut("server").unwrap().render_help().to_string();
        assert!(help.contains(&format!("[default: {default}]")), "{help}");
    }

    #[test]
    fn node_streams_reach_the_cluster_config_and_need_cluster() {
        let server = |argv: &[&str]| {
            let cli = Cli::try_parse_from([&["localtunnels", "server"], argv].concat()).unwrap();
            let Command::Server(a) = cli.command else { panic!("not a server") };
            a
        };
        let cluster = ["--cluster", "redis://127.0.0.1:1", "--cluster-secret", "s", "--node-id", "n"];
        let streams = |argv: &[&str]| {
            let mut config = localtunnels_server::ServerConfig::default();
            crate::cluster::apply(&server(argv), &mut config).unwrap();
            config.cluster.unwrap().node_streams
        };
        assert_eq!(streams(&cluster), localtunnels_server::cluster::NODE_STREAMS);
        assert_eq!(streams(&[&cluster[..], &["--node-streams", "64"]].concat()), 64);
        let mut config = localtunnels_server::ServerConfig::default();
        assert!(crate::cluster::apply(&server(&["--node-streams", "64"]), &mut config).is_err());
        assert!(Cli::try_parse_from(["localtunnels", "server", "--node-streams", "0"]).is_err());
        let help = crate::defaults::command().find_subcommand_mut("server").unwrap().render_help().to_string();
        assert!(help.contains("--node-streams") && help.contains("[default: 4096]"), "{help}");
    }

    #[test]
    fn threads_must_be_at_least_one() {
        assert!(Cli::try_parse_from(["localtunnels", "server", "--threads", "0"]).is_err());
        assert!(Cli::try_parse_from(["localtunnels", "client", "--threads", "x"]).is_err());
        let cli = Cli::try_parse_from(["localtunnels", "client", "--threads", "4"]).unwrap();
        assert!(matches!(cli.command, Command::Client(ClientArgs { threads: Some(4), .. })));
    }

    #[test]
    fn shards_are_a_server_count_of_at_least_one_and_exclude_threads() {
        let server = |argv: &[&str]| {
            let cli = Cli::try_parse_from([&["localtunnels", "server"], argv].concat()).unwrap();
            let Command::Server(a) = cli.command else { panic!("not a server") };
            a
        };
        assert!(Cli::try_parse_from(["localtunnels", "server", "--shards", "0"]).is_err());
        assert!(Cli::try_parse_from(["localtunnels", "client", "--shards", "2"]).is_err());
        let a = server(&["--shards", "2"]);
        assert_eq!(crate::server_config(&a).shards, 2);
        assert!(crate::checked_server(a).is_ok());
        assert_eq!(crate::server_config(&server(&[])).shards, 0, "off by default");
        assert!(crate::checked_server(server(&["--shards", "2", "--threads", "2"])).is_err());
    }

    #[test]
    fn inspector_flags_parse_from_the_command_line_and_the_file() {
        let cli = Cli::try_parse_from(["localtunnels", "client", "--inspect-addr", "127.0.0.1:0", "--inspect-redact"])
            .unwrap();
        let Command::Client(a) = cli.command else { panic!("not a client") };
        assert_eq!(a.inspect_addr, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(a.inspect_redact, Some(true));
        let file: ConfigFile = toml::from_str("[client]\nno-inspect = true\ninspect-body-limit = 10\n").unwrap();
        let a = a.or(&file.client);
        assert_eq!((a.no_inspect, a.inspect_body_limit), (Some(true), Some(10)));
    }

    #[test]
    fn the_http_alias_takes_the_port_and_every_client_flag() {
        let cli = Cli::try_parse_from(["localtunnels", "http", "8000", "--subdomain", "demo"]).unwrap();
        match cli.command {
            Command::Http { target, client } => {
                assert_eq!(target.port, 8000);
                assert_eq!(client.subdomain.as_deref(), Some("demo"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn domains_are_dns_names() {
        assert_eq!(parse_domain("Tunnel.Example.com.").unwrap(), "tunnel.example.com");
        assert!(parse_domain("localhost").is_ok());
        for bad in ["bad domain", "", "-x.com", "a..b", "x_y.com", &"a".repeat(64)] {
            assert!(parse_domain(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn allowed_ips_are_addresses_or_ranges() {
        for ok in ["203.0.113.7", "10.0.0.0/8", "::1", "2001:db8::/32"] {
            assert!(parse_allow_ip(ok).is_ok(), "{ok}");
        }
        for bad in ["999.1.1.1", "10.0.0.0/33", "example.com", ""] {
            assert!(parse_allow_ip(bad).is_err(), "{bad:?}");
        }
    }
}
