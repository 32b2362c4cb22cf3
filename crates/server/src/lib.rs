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
mod apex;
pub mod auth;
mod config;
mod control;
pub mod limits;
pub mod names;
mod proxy;
pub mod registry;
mod server;
mod state;
mod timer;
pub mod tls;
mod tunnel;
mod websocket;
pub mod write_deadline;

pub use auth::AuthToken;
pub use config::ServerConfig;
pub use control::{check_hello, Admission, Refusal};
pub use limits::{Limits, RateLimit};
pub use server::{tunnel_name, ServerHandle, Stats, TunnelServer};
pub use tls::TlsConfig;
pub use tunnel::Tunnel;
