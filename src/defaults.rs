//! The `[default: ...]` that `--help` shows for each flag, read from the libraries' own
//! defaults (`ServerConfig`, `Limits`, `ClientConfig`): the one table of defaults. The
//! flags stay `Option`s so that the command line, the environment and the config file
//! can be layered (`main::server_config` fills what none of them gave from the same
//! `Default`s), and the help text cannot drift from what the server and client do.
//! Defaults that are not values (a random name, unlimited, the listening port) stay in
//! the flags' own doc comments.

use clap::Command;
use localtunnels_client::ClientConfig;
use localtunnels_server::{Limits, ServerConfig};

/// The command line's definition with each flag's default in its help.
pub fn command() -> Command {
    let server = server_defaults();
    let client = client_defaults();
    <crate::args::Cli as clap::CommandFactory>::command()
        .mut_subcommand("server", |c| with_defaults(c, &server))
        .mut_subcommand("client", |c| with_defaults(c, &client))
        .mut_subcommand("http", |c| with_defaults(c, &client))
}

/// Flag id → default, for `localtunnels server`.
fn server_defaults() -> Vec<(&'static str, String)> {
    let d = ServerConfig::default();
    let l = Limits::default();
    vec![
        ("port", format!("{}; 0 picks a free port", d.port)),
        ("bind", d.bind.to_string()),
        ("domain", d.domain),
        ("response_timeout", d.response_timeout.as_secs().to_string()),
        ("grace_period", d.grace_period.as_secs().to_string()),
        ("lease_ttl", localtunnels_server::cluster::DEFAULT_LEASE_TTL.as_secs().to_string()),
        ("node_streams", localtunnels_server::cluster::NODE_STREAMS.to_string()),
        ("max_tunnels", d.max_tunnels.to_string()),
        ("max_tunnels_per_token", l.max_tunnels_per_token.to_string()),
        ("max_tunnels_per_ip", l.max_tunnels_per_ip.to_string()),
        ("max_streams_per_tunnel", l.max_streams_per_tunnel.to_string()),
        ("max_connections_per_tunnel", l.max_connections_per_tunnel.to_string()),
        ("max_header_size", l.max_header_bytes.to_string()),
        ("header_read_timeout", l.header_read_timeout.as_secs().to_string()),
        ("idle_timeout", l.idle_timeout.as_secs().to_string()),
        ("max_frame", d.session.max_frame.to_string()),
        ("max_control_queue", d.session.max_control_queue.to_string()),
        ("max_ws_message", d.max_ws_message.to_string()),
    ]
}

/// Flag id → default, for `localtunnels client` and `localtunnels http`.
fn client_defaults() -> Vec<(&'static str, String)> {
    let d = ClientConfig::default();
    vec![
        ("host", d.host),
        ("port", d.port.to_string()),
        ("local_port", d.local_port.to_string()),
        ("local_host", d.local_host),
        ("max_ws_message", d.max_ws_message.to_string()),
        ("connections", d.connections.to_string()),
    ]
}

fn with_defaults(command: Command, table: &[(&'static str, String)]) -> Command {
    command.mut_args(|arg| match table.iter().find(|(id, _)| arg.get_id() == *id) {
        Some((_, default)) => {
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            arg.help(format!("{help} [default: {default}]"))
        }
        None => arg,
    })
}
