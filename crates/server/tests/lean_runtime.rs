//! The server on a lean runtime (`localtunnels_driver::timers::CurrentThread`, no tokio
//! time driver): it serves the default configuration there, and refuses, with an error
//! rather than a panic later, one whose libraries bring their own tokio timers (the
//! cluster's redis client and connector, ACME's client).

use std::time::Duration;

use localtunnels_driver::timers::CurrentThread;
use localtunnels_server::cluster::ClusterConfig;
use localtunnels_server::{ServerConfig, TunnelServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn local() -> ServerConfig {
    ServerConfig { port: 0, bind: [127, 0, 0, 1].into(), ..ServerConfig::default() }
}

#[test]
fn a_lean_runtime_serves_the_default_configuration() {
    let runtime = CurrentThread::new(true).unwrap();
    runtime.block_on(async {
        let server = TunnelServer::new(local()).start().await.expect("starts");
        // A request for no tunnel: answered (404) on the lean runtime.
        let mut tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nhost: nobody.localhost\r\nconnection: close\r\n\r\n").await.unwrap();
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer).await.unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 404"), "{}", String::from_utf8_lossy(&answer));
        server.stop().await;
    });
}

/// Linux only: elsewhere every runtime has tokio's timers.
#[cfg(target_os = "linux")]
#[test]
fn a_configuration_that_needs_tokios_timers_is_refused_on_a_lean_runtime() {
    let cluster = ClusterConfig {
        redis_url: "redis://127.0.0.1:9".into(),
        node_id: "n1".into(),
        node_url: None,
        lease_ttl: Duration::from_secs(30),
        node_streams: 8,
        secret: "s".into(),
    };
    let config = ServerConfig { cluster: Some(cluster), ..local() };
    assert!(config.needs_tokio_timers());
    let runtime = CurrentThread::new(true).unwrap();
    assert!(runtime.is_lean());
    let Err(refused) = runtime.block_on(TunnelServer::new(config).start()) else { panic!("started") };
    assert!(refused.to_string().contains("need tokio's timers"), "{refused}");
    assert!(!local().needs_tokio_timers());
}
