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

pub mod access;
pub mod acme;
mod acme_cache;
mod addr;
mod apex;
pub mod auth;
pub mod certs;
pub mod cluster;
mod config;
mod control;
mod cookies;
mod counting;
pub mod forwarded;
pub mod host;
mod hostnames;
mod http_port;
pub mod limits;
mod metrics;
pub mod names;
mod process;
mod proxy;
pub mod proxy_protocol;
pub mod registry;
mod server;
mod state;
mod timer;
pub mod tls;
mod tls_port;
mod tunnel;
mod upload;
mod visitor_error;
mod visitor_h1;
pub mod visitors;
mod websocket;
pub mod write_deadline;

pub use acme::AcmeConfig;
pub use auth::AuthToken;
pub use config::ServerConfig;
pub use control::{check_hello, Admission, Refusal};
pub use forwarded::TrustedProxies;
pub use limits::{Limits, RateLimit};
pub use server::{tunnel_name, ServerHandle, Stats, TunnelServer};
pub use tls::TlsConfig;
pub use tunnel::Tunnel;
