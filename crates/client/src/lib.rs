//! The native localtunnels client: exposes a local port, or an in-process `tower`
//! service, at a public URL of a localtunnels server.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use localtunnels_client::{ClientConfig, TunnelClient};
//! let client = TunnelClient::new(ClientConfig { local_port: 8000, ..ClientConfig::default() });
//! let tunnel = client.connect().await?;
//! println!("{}", tunnel.url());
//! tunnel.close().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod client;
mod config;
mod ctx;
mod events;
mod exchange;
mod forward;
mod http;
mod inspect;
mod joined;
mod kept;
mod origin;
mod pinned;
mod pool;
mod raw_request;
mod state;
mod tls;
mod websocket;

pub use client::{backoff, ClientHandle, ConnectError, TunnelClient, CLOSE_GRACE};
pub use config::{ClientConfig, HostHeader, ServerAddr, MAX_CONNECTIONS};
pub use events::ClientEvent;
pub use inspect::{serve_inspector, Edit, InspectConfig, InspectServer, Inspector, ReplayError, DEFAULT_PORTS};
pub use origin::{BoxError, ConnectFuture, LocalOrigin, Origin, OriginBody, OriginFuture, OriginStream, ServiceOrigin};
pub use state::default_state_dir;
