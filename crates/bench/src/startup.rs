//! Time from starting a tunnel client process to the first 200 through the tunnel.
//! The tunnel's server is already up; the clock starts just before the spawn and
//! stops when a visitor's GET (a fresh connection every 200 µs) gets a 200.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use crate::procs::{free_port, ready};
use crate::targets::{bore_client, localtunnels_client, Programs, Recipe, Target};

const GIVE_UP: Duration = Duration::from_secs(20);

/// One start-up, in milliseconds. `i` makes names and ports unique per run.
pub async fn once(target: &mut Target, p: &Programs, logs: &Path, origin_port: u16, i: usize) -> anyhow::Result<f64> {
    match target.recipe.clone() {
        Recipe::None => Err(anyhow!("nothing to start")),
        Recipe::Localtunnels { server_port } => {
            // A fresh name each time: a killed client's name is held for its grace period.
            let name = format!("start{i}");
            let host = format!("{name}.localhost:{server_port}");
            let t = Instant::now();
            let client = localtunnels_client(&p.localtunnels, logs, server_port, origin_port, &name)?;
            let waited = ready(server_port, &host, "/1k", GIVE_UP).await;
            let total = t.elapsed();
            client.stop().await;
            waited?;
            Ok(total.as_secs_f64() * 1e3)
        }
        Recipe::Bore => {
            let bin = p.bore.as_ref().ok_or_else(|| anyhow!("bore is not installed"))?;
            let port = free_port()?;
            let host = format!("127.0.0.1:{port}");
            let t = Instant::now();
            let client = bore_client(bin, logs, origin_port, port, &format!("start{i}"))?;
            let waited = ready(port, &host, "/1k", GIVE_UP).await;
            let total = t.elapsed();
            client.stop().await;
            waited?;
            Ok(total.as_secs_f64() * 1e3)
        }
        Recipe::Rathole { client_toml } => {
            let bin = p.rathole.as_ref().ok_or_else(|| anyhow!("rathole is not installed"))?;
            // rathole's service has one client: stop the running one first.
            if let Some(c) = target.client.take() {
                c.stop().await;
            }
            let toml = client_toml.display().to_string();
            let host = target.host.clone();
            let t = Instant::now();
            let client =
                crate::procs::Proc::spawn(logs, &format!("rathole-client-start{i}"), bin, &["--client", &toml])?;
            let waited = ready(target.port, &host, "/1k", GIVE_UP).await;
            let total = t.elapsed();
            // Keep this one as the target's client; the next run replaces it.
            target.client = Some(client);
            waited?;
            Ok(total.as_secs_f64() * 1e3)
        }
    }
}
