//! `localtunnels server --cluster ...`: the cluster flags, checked and applied.

use std::time::Duration;

use localtunnels_server::cluster::{random_node_id, ClusterConfig, DEFAULT_LEASE_TTL, NODE_STREAMS};
use localtunnels_server::ServerConfig;

use crate::args::ServerArgs;

/// Turns cluster mode on when `--cluster` is given; the other cluster flags need it.
pub fn apply(a: &ServerArgs, config: &mut ServerConfig) -> anyhow::Result<()> {
    let Some(url) = a.cluster.as_deref().filter(|u| !u.is_empty()) else {
        if a.node_url.is_some() || a.node_id.is_some() || a.lease_ttl.is_some() || a.node_streams.is_some() {
            anyhow::bail!("--node-url, --node-id, --lease-ttl and --node-streams need --cluster");
        }
        return Ok(());
    };
    if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("redis+unix://")) {
        anyhow::bail!("--cluster '{url}': expected redis://HOST:PORT[/DB] or redis+unix:///path/to/redis.sock");
    }
    let secret = a.cluster_secret.clone().filter(|s| !s.is_empty()).ok_or_else(|| {
        anyhow::anyhow!(
            "--cluster needs --cluster-secret (or LOCALTUNNELS_CLUSTER_SECRET): nodes authenticate each other with it"
        )
    })?;
    let node_id = match a.node_id.clone().filter(|s| !s.is_empty()) {
        Some(id) => id,
        None => {
            let id = random_node_id();
            eprintln!("cluster node id: {id}");
            id
        }
    };
    config.cluster = Some(ClusterConfig {
        redis_url: url.to_string(),
        node_id,
        node_url: a.node_url.clone().filter(|u| !u.is_empty()),
        lease_ttl: a.lease_ttl.map_or(DEFAULT_LEASE_TTL, Duration::from_secs),
        node_streams: a.node_streams.unwrap_or(NODE_STREAMS),
        secret,
    });
    Ok(())
}
