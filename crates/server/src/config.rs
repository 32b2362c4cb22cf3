//! The server's configuration, with documented defaults.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// How a `TunnelServer` runs. Every field has a default ([`ServerConfig::default`]).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Port for control connections and public traffic alike. Default 3000; 0 picks a free port.
    pub port: u16,
    /// Address to listen on. Default 0.0.0.0.
    pub bind: IpAddr,
    /// Apex domain: tunnels are `<name>.<domain>`. Default `localhost`.
    pub domain: String,
    /// Public URLs use `https`/`wss` (TLS here or in front of the server). Default false.
    pub secure: bool,
    /// Log every request. Default false.
    pub verbose: bool,
    /// Port shown in public URLs when the server sits behind a proxy; default: the
    /// listening port.
    pub public_port: Option<u16>,
    /// How long a visitor waits for the origin's response head. Default 30 s.
    pub response_timeout: Duration,
    /// How long a dropped client's name is held for it. Default 60 s.
    pub grace_period: Duration,
    /// How long in-flight exchanges may run after a shutdown starts. Default 10 s.
    pub shutdown_timeout: Duration,
    /// Most tunnels at once. Default 10,000.
    pub max_tunnels: usize,
    /// Limits and timings of each control session.
    pub session: localtunnels_core::Config,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            port: 3000,
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            domain: "localhost".to_string(),
            secure: false,
            verbose: false,
            public_port: None,
            response_timeout: Duration::from_secs(30),
            grace_period: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(10),
            max_tunnels: 10_000,
            session: localtunnels_core::Config::default(),
        }
    }
}
