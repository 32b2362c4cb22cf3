//! Log lines on stderr: one per event, as text for a person or as one JSON object per
//! line (`--log-format json`) for log shippers; timestamps in local time, RFC 3339
//! with the offset. `LOCALTUNNELS_LOG` takes a filter (`debug`, `trace`,
//! `localtunnels_client=debug`, ...).

use tracing_subscriber::fmt::time::ChronoLocal;

use crate::args::LogFormat;

/// Installs the subscriber. `verbose` raises the default level (the server's `--verbose`).
pub fn init(verbose: bool, format: LogFormat) {
    let default =
        if verbose { "info,localtunnels=debug" } else { "warn,localtunnels_server=info,localtunnels_client=info" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOCALTUNNELS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_timer(ChronoLocal::rfc_3339());
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
        LogFormat::Text => {
            // Colours only for a person at a terminal, not in files, pipes and CI logs.
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            builder.with_ansi(ansi).with_target(false).init()
        }
    }
}

/// The local time of day (`21:03:04`, in the zone of `TZ` or the system's), for
/// request lines: what the person at the terminal reads on their clock. Log lines
/// carry the full RFC 3339 timestamp with its offset.
pub fn local_time() -> String {
    chrono::Local::now().format("%H:%M:%S").to_string()
}
