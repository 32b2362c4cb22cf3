//! `localtunnels-bench`: measures the origin directly, through localtunnels, through
//! bore and through rathole, in one run on one machine, and writes the table to
//! `bench/results.md` (see docs/BENCHMARKS.md).
//!
//! ```sh
//! cargo run -p localtunnels-bench --release             # everything, ~18 min on 2 cores
//! cargo run -p localtunnels-bench --release -- --quick  # 1 s runs, 1,000 idle tunnels, ~3 min
//! ```
//!
//! Not a test: nothing here asserts a timing.

#![forbid(unsafe_code)]

mod cases;
mod cluster;
mod inspect;
mod load;
mod nginx;
mod origin;
mod procs;
mod report;
mod startup;
mod targets;
mod tunnels;
mod wasm;
mod ws;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Benchmarks localtunnels against the direct origin, bore and rathole.
#[derive(Debug, Parser)]
#[command(name = "localtunnels-bench", version, about)]
pub struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Seconds per measured run.
    #[arg(long, default_value_t = 5)]
    pub duration: u64,
    /// Runs per case and target (medians are reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Short runs (1 s), 1,000 idle tunnels only: a smoke run of the whole thing.
    #[arg(long)]
    pub quick: bool,
    /// Keep-alive connections for the request-rate cases.
    #[arg(long, default_value_t = 32)]
    pub conns: usize,
    /// WebSocket connections for the message-rate case.
    #[arg(long, default_value_t = 64)]
    pub ws_conns: usize,
    /// Idle-tunnel counts for the memory-per-tunnel case.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    pub tunnels: Vec<usize>,
    /// Targets besides direct: any of localtunnels, bore, rathole.
    #[arg(long, value_delimiter = ',', default_value = "localtunnels,bore,rathole")]
    pub peers: Vec<String>,
    /// Origins of the HTTP cases, each with its own table: bench (the benchmark's own
    /// origin), nginx (Debian's nginx, one process, the same bodies). The WebSocket,
    /// start-up, idle-tunnel and cluster cases always use the benchmark's origin.
    #[arg(long, value_delimiter = ',', default_value = "bench,nginx")]
    pub origin: Vec<String>,
    /// Case groups: http, ws, startup, tunnels, wasm, cluster (two nodes and redis-server).
    #[arg(long, value_delimiter = ',', default_value = "http,ws,startup,tunnels,wasm,cluster")]
    pub only: Vec<String>,
    /// Do not install missing tools (bore, rathole, oha via cargo; wrk via apt).
    #[arg(long)]
    pub no_install: bool,
    /// Use this localtunnels binary instead of building the release one.
    #[arg(long, value_name = "PATH")]
    pub localtunnels_bin: Option<PathBuf>,
    /// Where the markdown table goes (relative to the workspace root).
    #[arg(long, default_value = "bench/results.md")]
    pub out: PathBuf,
    /// A label for this run in the output (e.g. "before", "after").
    #[arg(long, default_value = "")]
    pub label: String,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run only the benchmark origin (prints its port).
    #[command(hide = true)]
    Origin,
    /// Echo SIZE-byte WebSocket messages (default 32) through `ws://127.0.0.1:PORT/ws`
    /// with `Host: HOST` for SECS seconds, one at a time, and print how many round trips
    /// that made (the load `bench/callgrind` puts on a WebSocket).
    #[command(hide = true)]
    WsEcho {
        port: u16,
        host: String,
        secs: u64,
        #[arg(default_value_t = ws::PAYLOAD)]
        size: usize,
    },
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    match args.cmd.take() {
        Some(Cmd::Origin) => return exit("origin", origin::run()),
        Some(Cmd::WsEcho { port, host, secs, size }) => {
            let echoed = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(ws::round_trips(port, &host, secs, size)))
                .map(|samples| println!("{} round trips", samples.len()));
            return exit("ws-echo", echoed);
        }
        None => {}
    }
    if args.quick {
        args.duration = 1;
        args.tunnels.retain(|&n| n <= 1000);
    }
    args.runs = args.runs.max(1);
    // 10,000 tunnels are 10,000 sockets here and 10,000 in the server (which inherits
    // this limit): take the whole hard limit.
    if let Ok((_, hard)) = rlimit::Resource::NOFILE.get() {
        let _ = rlimit::Resource::NOFILE.set(hard, hard);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    exit("error", runtime.block_on(cases::run(args)))
}

/// The exit code of a run, its error (if any) printed after `what`.
fn exit(what: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{what}: {e:#}");
            ExitCode::FAILURE
        }
    }
}
