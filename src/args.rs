//! Command-line arguments. Every flag also reads a `LOCALTUNNELS_*` environment
//! variable and a key of the TOML config file (`--config`): the command line wins over
//! the environment, which wins over the file, which wins over the defaults.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

/// Expose a local HTTP/WebSocket server at a public URL, or run the server that does it.
#[derive(Debug, Parser)]
#[command(name = "localtunnels", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    /// TOML file with `[server]` and/or `[client]` tables whose keys are the long flag names.
    #[arg(long, global = true, env = "LOCALTUNNELS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// Exit codes, shown by `--help`.
pub const EXIT_CODES: &str = "Exit codes: 0 ok, 1 error, 2 usage, 3 server unreachable, 4 name taken, \
5 name invalid or reserved, 6 unauthorized, 7 refused for another reason.";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a tunnel server: control connections and public traffic on one port.
    Server(ServerArgs),
    /// Expose a local port through a tunnel server.
    Client(ClientArgs),
    /// ngrok-style shorthand: `localtunnels http 8000` = `localtunnels client --local-port 8000`.
    Http {
        /// Local port to expose (wins over --local-port).
        // Its own id: the flattened client flags already have a `local_port`.
        #[arg(value_name = "PORT", id = "http_port")]
        local_port: u16,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Start a server, a demo web app and a client in one process, and print the public URL.
    Demo {
        /// Port for the demo's server (0 picks a free one).
        #[arg(long, env = "LOCALTUNNELS_PORT", default_value_t = 3000)]
        port: u16,
    },
}

#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServerArgs {
    /// Port for control connections and public traffic [default: 3000; 0 picks a free port].
    #[arg(long, env = "LOCALTUNNELS_PORT")]
    pub port: Option<u16>,
    /// Address to listen on [default: 0.0.0.0].
    #[arg(long, env = "LOCALTUNNELS_BIND")]
    pub bind: Option<std::net::IpAddr>,
    /// Apex domain: tunnels are <name>.<domain> [default: localhost].
    #[arg(long, env = "LOCALTUNNELS_DOMAIN")]
    pub domain: Option<String>,
    /// Public URLs use https (TLS here or in a proxy in front).
    #[arg(long, env = "LOCALTUNNELS_SECURE", num_args = 0..=1, default_missing_value = "true")]
    pub secure: Option<bool>,
    /// Port shown in public URLs when behind a proxy [default: the listening port].
    #[arg(long, env = "LOCALTUNNELS_PUBLIC_PORT")]
    pub public_port: Option<u16>,
    /// Seconds a visitor waits for the origin's response head before a 504 [default: 30].
    #[arg(long, env = "LOCALTUNNELS_RESPONSE_TIMEOUT", value_name = "SECS")]
    pub response_timeout: Option<u64>,
    /// Seconds a dropped client's name is held for it [default: 60].
    #[arg(long, env = "LOCALTUNNELS_GRACE_PERIOD", value_name = "SECS")]
    pub grace_period: Option<u64>,
    /// Most tunnels at once [default: 10000].
    #[arg(long, env = "LOCALTUNNELS_MAX_TUNNELS")]
    pub max_tunnels: Option<usize>,
    /// Log every request and session.
    #[arg(long, env = "LOCALTUNNELS_VERBOSE", num_args = 0..=1, default_missing_value = "true")]
    pub verbose: Option<bool>,
    /// Require clients to present this auth token (repeatable; the environment variable
    /// takes a comma-separated list). Any token or --tokens-file turns auth on.
    #[arg(long, env = "LOCALTUNNELS_TOKENS", value_delimiter = ',', hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<Vec<String>>,
    /// File of auth tokens: one per line, optionally followed by the names it may use
    /// (`secret demo team-*`); `#` starts a comment. Turns auth on.
    #[arg(long, env = "LOCALTUNNELS_TOKENS_FILE", value_name = "FILE")]
    pub tokens_file: Option<PathBuf>,
    /// PEM certificate chain: serve HTTPS and WSS on the port (needs --tls-key).
    #[arg(long, env = "LOCALTUNNELS_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "LOCALTUNNELS_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Most tunnels one auth token may hold at once [default: 100].
    #[arg(long, env = "LOCALTUNNELS_MAX_TUNNELS_PER_TOKEN", value_name = "N")]
    pub max_tunnels_per_token: Option<usize>,
    /// Most tunnels one client IP address may hold at once [default: 100].
    #[arg(long, env = "LOCALTUNNELS_MAX_TUNNELS_PER_IP", value_name = "N")]
    pub max_tunnels_per_ip: Option<usize>,
    /// Most visitor requests in flight through one tunnel; more get 503 [default: 1024].
    #[arg(long, env = "LOCALTUNNELS_MAX_STREAMS_PER_TUNNEL", value_name = "N")]
    pub max_streams_per_tunnel: Option<usize>,
    /// New visitor requests per second per tunnel; more get 429 [default: unlimited].
    #[arg(long, env = "LOCALTUNNELS_RATE_LIMIT", value_name = "PER_SEC")]
    pub rate_limit: Option<u32>,
    /// Burst allowed above --rate-limit [default: twice the rate].
    #[arg(long, env = "LOCALTUNNELS_RATE_BURST", value_name = "N")]
    pub rate_burst: Option<u32>,
    /// Largest visitor request body in bytes; larger ones get 413 [default: unlimited].
    #[arg(long, env = "LOCALTUNNELS_MAX_BODY", value_name = "BYTES")]
    pub max_body: Option<u64>,
    /// Largest visitor request head in bytes; larger ones get 431 [default: 65536].
    #[arg(long, env = "LOCALTUNNELS_MAX_HEADER_SIZE", value_name = "BYTES")]
    pub max_header_size: Option<usize>,
    /// Seconds a connection has to send a request head (slow clients are cut) [default: 10].
    #[arg(long, env = "LOCALTUNNELS_HEADER_READ_TIMEOUT", value_name = "SECS")]
    pub header_read_timeout: Option<u64>,
    /// Seconds a connection may stay silent both ways before it is closed [default: 300].
    #[arg(long, env = "LOCALTUNNELS_IDLE_TIMEOUT", value_name = "SECS")]
    pub idle_timeout: Option<u64>,
    /// Seconds a visitor may read nothing of a response the server is writing before
    /// it is dropped, giving back what it held of its tunnel's window (0: never) [default: 30].
    #[arg(long, env = "LOCALTUNNELS_VISITOR_WRITE_TIMEOUT", value_name = "SECS")]
    pub visitor_write_timeout: Option<u64>,
    /// Largest control frame a client may send, in bytes [default: 65600].
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
    /// Largest WebSocket message relayed through a tunnel; larger ones close the
    /// WebSocket with 1009 [default: 16777216].
    #[arg(long, env = "LOCALTUNNELS_MAX_WS_MESSAGE", value_name = "BYTES")]
    pub max_ws_message: Option<usize>,
    /// Worker threads [default: one per two cores, at least one].
    #[arg(long, env = "LOCALTUNNELS_THREADS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
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
    #[arg(long, env = "LOCALTUNNELS_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// Server host [default: localhost].
    #[arg(long, env = "LOCALTUNNELS_HOST")]
    pub host: Option<String>,
    /// Server port [default: 3000].
    #[arg(long, env = "LOCALTUNNELS_PORT")]
    pub port: Option<u16>,
    /// Connect to the server with TLS (wss://).
    #[arg(long, env = "LOCALTUNNELS_SECURE", num_args = 0..=1, default_missing_value = "true")]
    pub secure: Option<bool>,
    /// Local port to expose [default: 8000].
    #[arg(long, env = "LOCALTUNNELS_LOCAL_PORT")]
    pub local_port: Option<u16>,
    /// Local host to expose [default: localhost].
    #[arg(long, env = "LOCALTUNNELS_LOCAL_HOST")]
    pub local_host: Option<String>,
    /// The local server speaks HTTPS.
    #[arg(long, env = "LOCALTUNNELS_LOCAL_HTTPS", num_args = 0..=1, default_missing_value = "true")]
    pub local_https: Option<bool>,
    /// Accept an invalid (e.g. self-signed) certificate from the local server.
    #[arg(long, env = "LOCALTUNNELS_ALLOW_INVALID_CERT", num_args = 0..=1, default_missing_value = "true")]
    pub allow_invalid_cert: Option<bool>,
    /// Name to request: the public URL becomes <NAME>.<domain> [default: a random name].
    /// A DNS label (letters, digits, hyphens); reserved names such as www, api and admin
    /// are refused (exit code 5). A name another client holds is refused (exit code 4);
    /// after a disconnect the server keeps your name for you for its grace period.
    #[arg(long, env = "LOCALTUNNELS_SUBDOMAIN", value_name = "NAME")]
    pub subdomain: Option<String>,
    /// Auth token, for servers that require one.
    #[arg(long, env = "LOCALTUNNELS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Host header the local server sees [default: rewrite].
    #[arg(long, env = "LOCALTUNNELS_HOST_HEADER", value_enum)]
    pub host_header: Option<HostHeaderArg>,
    /// Make visitors log in with this user name and password (HTTP basic auth).
    #[arg(long, env = "LOCALTUNNELS_BASIC_AUTH", hide_env_values = true, value_name = "USER:PASS")]
    pub basic_auth: Option<String>,
    /// Only let visitors from this address or CIDR range in (repeatable; the environment
    /// variable takes a comma-separated list). Matched on the visitor's TCP address.
    #[arg(long, env = "LOCALTUNNELS_ALLOW_IPS", value_delimiter = ',', value_name = "ADDR|CIDR")]
    pub allow_ip: Option<Vec<String>>,
    /// PEM file of the CA that signed the server's certificate (instead of the system roots).
    #[arg(long, env = "LOCALTUNNELS_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Largest WebSocket message relayed to or from the local server; larger ones
    /// close the WebSocket with 1009 [default: 16777216].
    #[arg(long, env = "LOCALTUNNELS_MAX_WS_MESSAGE", value_name = "BYTES")]
    pub max_ws_message: Option<usize>,
    /// Print one line per request on stdout: time, method, path, status, duration, bytes.
    #[arg(long, env = "LOCALTUNNELS_PRINT_REQUESTS", num_args = 0..=1, default_missing_value = "true")]
    pub print_requests: Option<bool>,
    /// Worker threads [default: 1: every request of a tunnel crosses its one control
    /// connection, and a single thread spares them cross-thread wake-ups].
    #[arg(long, env = "LOCALTUNNELS_THREADS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

/// Fills every `None` field of `$a` from `$b`.
macro_rules! fill {
    ($a:expr, $b:expr; $($f:ident),* $(,)?) => { $( if $a.$f.is_none() { $a.$f = $b.$f.clone(); } )* };
}

impl ServerArgs {
    /// Fields not given on the command line or in the environment come from `file`.
    pub fn or(mut self, file: &ServerArgs) -> Self {
        fill!(self, file; port, bind, domain, secure, public_port, response_timeout, grace_period, max_tunnels, verbose,
            token, tokens_file, tls_cert, tls_key, max_tunnels_per_token, max_tunnels_per_ip, max_streams_per_tunnel,
            rate_limit, rate_burst, max_body, max_header_size, header_read_timeout, idle_timeout, visitor_write_timeout, max_frame,
            max_peer_window, max_session_queue, max_ws_message, threads);
        self
    }
}

impl ClientArgs {
    /// Fields not given on the command line or in the environment come from `file`.
    pub fn or(mut self, file: &ClientArgs) -> Self {
        fill!(self, file; server, host, port, secure, local_port, local_host, local_https, allow_invalid_cert,
            subdomain, token, host_header, print_requests, basic_auth, allow_ip, ca, max_ws_message, threads);
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
    /// Reads `path`, or the empty config when no file was given.
    pub fn load(path: Option<&std::path::Path>) -> anyhow::Result<ConfigFile> {
        let Some(path) = path else { return Ok(ConfigFile::default()) };
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
    }

    #[test]
    fn threads_must_be_at_least_one() {
        assert!(Cli::try_parse_from(["localtunnels", "server", "--threads", "0"]).is_err());
        assert!(Cli::try_parse_from(["localtunnels", "client", "--threads", "x"]).is_err());
        let cli = Cli::try_parse_from(["localtunnels", "client", "--threads", "4"]).unwrap();
        assert!(matches!(cli.command, Command::Client(ClientArgs { threads: Some(4), .. })));
    }

    #[test]
    fn the_http_alias_takes_the_port_and_every_client_flag() {
        let cli = Cli::try_parse_from(["localtunnels", "http", "8000", "--subdomain", "demo"]).unwrap();
        match cli.command {
            Command::Http { local_port, client } => {
                assert_eq!(local_port, 8000);
                assert_eq!(client.subdomain.as_deref(), Some("demo"));
            }
            other => panic!("{other:?}"),
        }
    }
}
