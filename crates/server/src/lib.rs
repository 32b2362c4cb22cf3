//! The localtunnels server: one port for control connections (a WebSocket on the apex
//! host's `/api/tunnel`) and public traffic (`<name>.<domain>`), routed by Host.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use localtunnels_server::{ServerConfig, TunnelServer};
//! let server = TunnelServer::new(ServerConfig { port: 0, ..ServerConfig::default() }).start().await?;
//! println!("{}", server.url());
//! server.stop().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod access;
pub mod acme;
mod acme_cache;
mod addr;
mod apex;
mod auth;
pub mod certs;
pub mod cluster;
mod config;
mod control;
mod cookies;
mod counting;
mod exchange;
pub mod fields;
pub mod forwarded;
pub mod host;
mod hostnames;
mod http_port;
mod limits;
mod metrics;
mod names;
mod poll_clock;
mod process;
mod proxy;
pub mod proxy_protocol;
mod registry;
mod server;
mod shards;
mod state;
mod timer;
mod tls;
mod tls_port;
mod tunnel;
mod upload;
mod visitor_error;
mod visitor_h1;
pub mod visitors;
mod websocket;

pub use access::Access;
pub use acme::AcmeConfig;
pub use auth::{find as find_token, AuthToken};
pub use config::ServerConfig;
pub use control::{check_hello, Admission, Refusal};
pub use forwarded::TrustedProxies;
pub use limits::{Limits, RateLimit};
pub use names::{validate as validate_name, NameError};
pub use server::{tunnel_name, ServerHandle, Stats, TunnelServer};
pub use tls::TlsConfig;
pub use tunnel::Tunnel;
