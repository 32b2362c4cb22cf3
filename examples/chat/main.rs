//! The seed's real-time chat, exposed through localtunnels.
//!
//! Runs the chat server (a page and a WebSocket that broadcasts each message to the
//! other clients) on a local port and exposes it at a public URL. With `--server`
//! it uses that localtunnels server; without, it starts one in this process.
//!
//! ```text
//! cargo run --example chat                                  # all in one process
//! cargo run --example chat -- --server http://localhost:3000 --subdomain chat
//! ```
//!
//! Open the printed URL in a few browser tabs and chat.

mod server;

use std::sync::Arc;

use clap::Parser;
use localtunnels_client::{ClientConfig, TunnelClient};
use localtunnels_server::{ServerConfig, TunnelServer};
use tokio::net::TcpListener;

/// The chat example's options.
#[derive(Debug, Parser)]
struct Args {
    /// A localtunnels server to use (e.g. http://localhost:3000); default: start one here.
    #[arg(long)]
    server: Option<String>,
    /// Port of the local chat server; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The name to ask for.
    #[arg(long, default_value = "chat")]
    subdomain: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(("127.0.0.1", args.port)).await?;
    let local_port = listener.local_addr()?.port();
    tokio::spawn(server::serve(listener, Arc::new(server::Room::default())));

    let (own_server, server_url) = match args.server {
        Some(url) => (None, url),
        None => {
            let config = ServerConfig { port: 0, bind: [127, 0, 0, 1].into(), ..ServerConfig::default() };
            let server = TunnelServer::new(config).start().await?;
            let url = format!("http://127.0.0.1:{}", server.addr().port());
            (Some(server), url)
        }
    };
    let config = ClientConfig {
        server: Some(server_url),
        local_host: "127.0.0.1".into(),
        local_port,
        subdomain: Some(args.subdomain),
        ..ClientConfig::default()
    };
    let tunnel = TunnelClient::new(config).connect().await?;
    eprintln!("chat server on http://127.0.0.1:{local_port}, public URL:");
    println!("{}", tunnel.url());
    eprintln!("open it in a few browser tabs (Ctrl-C to stop)");
    tokio::signal::ctrl_c().await?;
    tunnel.close().await;
    if let Some(server) = own_server {
        server.stop().await;
    }
    Ok(())
}
