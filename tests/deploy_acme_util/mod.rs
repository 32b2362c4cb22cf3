//! A real ACME server for the tests: Debian's `pebble` on free loopback ports, with its
//! own HTTPS certificate (signed by a CA made here, which the server trusts through
//! `--acme-ca-root`), validating challenges for real against the server under test: a
//! tiny DNS responder answers 127.0.0.1 for every name, so pebble's TLS-ALPN-01 and
//! HTTP-01 checks reach the server's ports.

#![allow(dead_code)]

use std::path::PathBuf;

use tokio::net::UdpSocket;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;

use crate::deploy_util::*;

/// A running pebble.
pub struct Pebble {
    pub _process: Child,
    pub dir: TempDir,
    /// The directory URL.
    pub directory: String,
    /// PEM of the CA that signed pebble's own HTTPS certificate (for `--acme-ca-root`).
    pub https_root: PathBuf,
    /// The root that signs the certificates pebble issues (new at every start).
    pub root: CertificateDer<'static>,
    /// The same, as a PEM file (for a tunnel client's `ca`).
    pub root_file: PathBuf,
}

/// Where pebble's validation goes.
pub struct Targets {
    /// The server's TLS port (TLS-ALPN-01).
    pub tls_port: u16,
    /// The server's plain-HTTP port (HTTP-01).
    pub http_port: u16,
    /// Lifetime of issued certificates in seconds (0: pebble's default of years).
    pub validity_secs: u64,
}

impl Pebble {
    pub async fn start(targets: Targets) -> Pebble {
        let dir = TempDir::new("pebble");
        let ca = test_ca("pebble HTTPS test CA");
        write_leaf(&ca, &["127.0.0.1".to_string(), "localhost".to_string()], dir.path());
        let https_root = dir.path().join("https-ca.pem");
        std::fs::write(&https_root, ca.pem()).unwrap();

        let dns = dns_responder().await;
        let (listen, management) = (free_port(), free_port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": "cert.pem",
            "privateKey": "key.pem",
            "httpPort": targets.http_port,
            "tlsPort": targets.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": targets.validity_secs,
        }});
        std::fs::write(dir.path().join("pebble.json"), config.to_string()).unwrap();
        let dns_arg = format!("127.0.0.1:{dns}");
        let mut process = Child::spawn(
            "pebble",
            &["-config", "pebble.json", "-dnsserver", &dns_arg],
            dir.path(),
            // No random delays, no nonces refused at random, no authorization reused:
            // every order validates for real, at once.
            &[("PEBBLE_VA_NOSLEEP", "1"), ("PEBBLE_WFE_NONCEREJECT", "0"), ("PEBBLE_AUTHZREUSE", "0")],
        );
        process.wait_for("ACME directory available").await;
        // pebble logs its addresses just before it listens on them: wait until it does.
        for port in [listen, management] {
            let up = async {
                while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            };
            tokio::time::timeout(STEP, up).await.expect("pebble listens");
        }

        let tls_client = tls_client(&CertificateDer::from_pem_file(&https_root).unwrap());
        let conn = tls(&tls_client, tcp_from([127, 0, 0, 1].into(), management).await, "127.0.0.1").await.unwrap();
        let (status, pem) = get(conn, &format!("127.0.0.1:{management}"), "/roots/0").await;
        assert_eq!(status, 200, "pebble's root");
        let root_file = dir.path().join("root.pem");
        std::fs::write(&root_file, &pem).unwrap();
        let root = CertificateDer::from_pem_slice(&pem).expect("pebble's root PEM");
        Pebble {
            _process: process,
            directory: format!("https://127.0.0.1:{listen}/dir"),
            https_root,
            root,
            root_file,
            dir,
        }
    }
}

/// A DNS server on a free UDP port that answers every A question with 127.0.0.1 and
/// every other question with no record.
async fn dns_responder() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            if let Some(answer) = dns_answer(&buf[..n]) {
                let _ = socket.send_to(&answer, from).await;
            }
        }
    });
    port
}

/// The answer to one DNS query (RFC 1035 §4): the question echoed, and for type A one
/// record of 127.0.0.1 (60 s).
fn dns_answer(query: &[u8]) -> Option<Vec<u8>> {
    let mut end = 12;
    loop {
        let len = usize::from(*query.get(end)?);
        end += 1 + len;
        if len == 0 {
            break;
        }
    }
    let question = query.get(12..end + 4)?;
    let is_a = question[question.len() - 4..question.len() - 2] == [0, 1];
    let mut out = vec![query[0], query[1], 0x81, 0x80, 0, 1, 0, u8::from(is_a), 0, 0, 0, 0];
    out.extend_from_slice(question);
    if is_a {
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
    }
    Some(out)
}
