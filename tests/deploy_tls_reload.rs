//! `--tls-cert/--tls-key` (a wildcard obtained elsewhere) are reloaded without a
//! restart: when the files change, and on SIGHUP. New handshakes get the new
//! certificate; a connection opened before keeps working; unreadable files keep the
//! certificate in use.

mod cli_common;
mod deploy_util;

use std::time::Duration;

use cli_common::Proc;
use deploy_util::*;
use localtunnels_server::{ServerConfig, TlsConfig, TunnelServer};
use tokio_rustls::rustls::pki_types::CertificateDer;

const DOMAIN: &str = "tunnel.localhost";

fn names() -> Vec<String> {
    vec![DOMAIN.to_string(), format!("*.{DOMAIN}")]
}

async fn leaf(root: &CertificateDer<'static>, port: u16) -> CertificateDer<'static> {
    let conn = tls(&tls_client(root), tcp_from([127, 0, 0, 1].into(), port).await, DOMAIN).await.expect("handshake");
    conn.get_ref().1.peer_certificates().unwrap()[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_files_are_picked_up_without_a_restart() {
    let dir = TempDir::new("tls-reload");
    let ca = test_ca("reload test CA");
    let first = write_leaf(&ca, &names(), dir.path());
    let server = TunnelServer::new(ServerConfig {
        port: 0,
        bind: [127, 0, 0, 1].into(),
        domain: DOMAIN.into(),
        tls: Some(TlsConfig { cert: dir.path().join("cert.pem"), key: dir.path().join("key.pem") }),
        tls_reload_interval: Duration::from_millis(100),
        ..ServerConfig::default()
    })
    .start()
    .await
    .unwrap();
    let port = server.addr().port();
    assert_eq!(leaf(ca.der(), port).await, first);
    let open = tls(&tls_client(ca.der()), tcp_from([127, 0, 0, 1].into(), port).await, DOMAIN).await.unwrap();

    let second = write_leaf(&ca, &names(), dir.path());
    let picked_up = async {
        while leaf(ca.der(), port).await != second {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(STEP, picked_up).await.expect("the new certificate is served");
    // The connection from before still works.
    assert_eq!(get(open, DOMAIN, "/api/tls-check?domain=tunnel.localhost").await.0, 200);

    // Broken files: the certificate in use stays, and an explicit reload says why.
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    assert!(server.reload_tls().is_err());
    assert_eq!(leaf(ca.der(), port).await, second);
    server.stop().await;
}

#[tokio::test]
async fn sighup_reloads_the_cli_server() {
    let dir = TempDir::new("tls-sighup");
    let ca = test_ca("reload test CA");
    let first = write_leaf(&ca, &names(), dir.path());
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let args = [
        "server",
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
        "--domain",
        DOMAIN,
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    let mut server = Proc::spawn(&args, &[]);
    let url = server.line().await;
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(leaf(ca.der(), port).await, first);
    let second = write_leaf(&ca, &names(), dir.path());
    let pid = server.child.id().unwrap().to_string();
    std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    server.stderr_line("SIGHUP: TLS certificate reloaded").await;
    assert_eq!(leaf(ca.der(), port).await, second);
    server.terminate();
    assert_eq!(server.exit_code().await, Some(0));
}
