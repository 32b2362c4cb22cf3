//! The request inspector's cost: the 1 KiB rate through a second `localtunnels
//! client` of the same server with `--no-inspect`, measured right after the rate
//! through the default client (inspector on) in every run. The issue asks the rate
//! with the inspector on to be at least 0.9x the rate with it off.

use std::path::Path;
use std::time::Duration;

use crate::load::Shot;
use crate::procs::{ready, Proc};
use crate::targets::localtunnels_client_with;

/// The subdomain of the client without an inspector.
const NAME: &str = "bench-no-inspect";

/// A running client with the inspector off.
#[derive(Debug)]
pub struct NoInspect {
    client: Proc,
    port: u16,
}

impl NoInspect {
    /// Starts it on the server at `server_port`; returns once a GET through it answers.
    pub async fn start(bin: &Path, logs: &Path, server_port: u16, origin_port: u16) -> anyhow::Result<NoInspect> {
        let mut client = localtunnels_client_with(
            bin,
            logs,
            server_port,
            origin_port,
            NAME,
            &["--no-inspect", "--connections", crate::targets::CLIENT_CONNECTIONS],
        )?;
        client.line(Duration::from_secs(20)).await?;
        ready(server_port, &format!("{NAME}.localhost:{server_port}"), "/1k", Duration::from_secs(20)).await?;
        Ok(NoInspect { client, port: server_port })
    }

    /// The 1 KiB GET through it.
    pub fn shot(&self) -> Shot {
        Shot { port: self.port, host: format!("{NAME}.localhost:{}", self.port), path: "/1k", post: None }
    }

    /// Stops the client.
    pub async fn stop(self) {
        self.client.stop().await;
    }
}
