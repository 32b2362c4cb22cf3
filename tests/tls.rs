//! TLS on the server's one port: HTTPS and WSS for visitors and for tunnel clients,
//! with a CA and a certificate made at test time (rcgen). Clients trust that CA with
//! `--ca`; without it (system roots) they refuse the server.
//!
//! The server's domain here is `tunnel.localhost`, not `localhost`: certificate
//! verifiers (webpki, browsers) do not match a wildcard directly under a one-label
//! name such as `*.localhost`, so tunnel hosts need a wildcard one level deeper, as
//! `*.tunnel.example.com` in production.

mod common;
mod deploy_util;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use deploy_util::tls_client_offering;
use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use localtunnels_client::{ClientConfig, ConnectError, TunnelClient};
use localtunnels_server::{Limits, ServerConfig, ServerHandle, TlsConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// A test CA and a server certificate it signed, written as PEM files.
struct Pki {
    dir: PathBuf,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    ca_der: CertificateDer<'static>,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn make_pki() -> Pki {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("lt-tls-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "localtunnels test CA");
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let names = ["localhost", "*.localhost", DOMAIN, "*.tunnel.localhost", "127.0.0.1"].map(String::from).to_vec();
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca).unwrap();
    let pki = Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        ca_der: ca.der().clone(),
        dir,
    };
    std::fs::write(&pki.ca, ca.pem()).unwrap();
    std::fs::write(&pki.cert, cert.pem()).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    pki
}

const DOMAIN: &str = "tunnel.localhost";

async fn tls_server(pki: &Pki, limits: Limits) -> ServerHandle {
    server_with(ServerConfig {
        domain: DOMAIN.into(),
        tls: Some(TlsConfig { cert: pki.cert.clone(), key: pki.key.clone() }),
        limits,
        ..ServerConfig::default()
    })
    .await
}

fn secure_client(server: &ServerHandle, pki: Option<&Pki>, local_port: u16, name: &str) -> ClientConfig {
    ClientConfig {
        server: Some(format!("https://127.0.0.1:{}", server.addr().port())),
        ca: pki.map(|p| p.ca.clone()),
        subdomain: Some(name.into()),
        reconnect: false,
        ..client_config(server, local_port)
    }
}

/// A TLS connection to the server as a visitor for `sni`, offering `alpn`.
async fn tls_visitor(
    port: u16,
    ca: &CertificateDer<'static>,
    sni: &str,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = ServerName::try_from(sni.to_string()).unwrap();
    tls_client_offering(ca, alpn).connect(name, tcp).await.expect("TLS handshake with the server")
}

/// An origin that echoes WebSocket messages.
async fn ws_echo_origin() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else { return };
                while let Some(Ok(m)) = ws.next().await {
                    if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn https_and_wss_for_visitors_and_clients_on_one_port() {
    let pki = make_pki();
    let server = tls_server(&pki, Limits::default()).await;
    let port = server.addr().port();
    assert_eq!(server.url(), format!("https://tunnel.localhost:{port}"));

    let origin_port = origin(|req: Request<hyper::body::Incoming>| async move {
        hyper::Response::new(full(format!("secure {}", req.uri())))
    })
    .await;
    // The client's control connection is WSS, verified against the test CA.
    let tunnel = TunnelClient::new(secure_client(&server, Some(&pki), origin_port, "vault")).connect().await.unwrap();
    assert_eq!(tunnel.url(), format!("https://vault.tunnel.localhost:{port}"));

    // A visitor over HTTPS, HTTP/1.1.
    let tls = tls_visitor(port, &pki.ca_der, "vault.tunnel.localhost", &[b"http/1.1"]).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let req =
        Request::get("/one").header("host", format!("vault.tunnel.localhost:{port}")).body(full(Bytes::new())).unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(&res.into_body().collect().await.unwrap().to_bytes()[..], b"secure /one");

    // A visitor over HTTPS, HTTP/2 (ALPN).
    let tls = tls_visitor(port, &pki.ca_der, "vault.tunnel.localhost", &[b"h2"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::get(format!("https://vault.tunnel.localhost:{port}/two")).body(full(Bytes::new())).unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(&res.into_body().collect().await.unwrap().to_bytes()[..], b"secure /two");

    // A visitor WebSocket over WSS through a tunnel.
    let ws_port = ws_echo_origin().await;
    let echo = TunnelClient::new(secure_client(&server, Some(&pki), ws_port, "echo")).connect().await.unwrap();
    assert_eq!(echo.url(), format!("https://echo.tunnel.localhost:{port}"));
    let tls = tls_visitor(port, &pki.ca_der, "echo.tunnel.localhost", &[b"http/1.1"]).await;
    let req = format!("wss://echo.tunnel.localhost:{port}/chat").into_client_request().unwrap();
    let (mut ws, res) = tokio_tungstenite::client_async(req, tls).await.expect("WSS through the tunnel");
    assert_eq!(res.status(), 101);
    ws.send(Message::Text("over tls".into())).await.unwrap();
    let back = ws.next().await.unwrap().unwrap();
    assert_eq!(back.into_text().unwrap().as_str(), "over tls");
}

#[tokio::test]
async fn clients_refuse_a_server_they_cannot_verify() {
    let pki = make_pki();
    let other = make_pki();
    let server = tls_server(&pki, Limits::default()).await;
    let origin_port = origin(|_req: Request<hyper::body::Incoming>| async { hyper::Response::new(full("x")) }).await;
    // System roots (no --ca): the test CA is not among them.
    let err = TunnelClient::new(secure_client(&server, None, origin_port, "nope")).connect().await.unwrap_err();
    assert!(matches!(&err, ConnectError::Unreachable { reason, .. } if reason.contains("certificate")), "{err}");
    // Another CA.
    let err = TunnelClient::new(secure_client(&server, Some(&other), origin_port, "nope")).connect().await.unwrap_err();
    assert!(matches!(&err, ConnectError::Unreachable { reason, .. } if reason.contains("certificate")), "{err}");
    // A plain-text client on the TLS port gets nowhere either.
    let plain = ClientConfig {
        server: Some(format!("http://127.0.0.1:{}", server.addr().port())),
        ..client_config(&server, origin_port)
    };
    assert!(TunnelClient::new(plain).connect().await.is_err());
    assert_eq!(server.stats().tunnels, 0);
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_cut() {
    let pki = make_pki();
    let server = tls_server(&pki, Limits { handshake_timeout: Duration::from_millis(300), ..Limits::default() }).await;
    let mut silent = TcpStream::connect(server.addr()).await.unwrap();
    let mut partial = TcpStream::connect(server.addr()).await.unwrap();
    partial.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await.unwrap(); // a ClientHello that stops
    for tcp in [&mut silent, &mut partial] {
        let mut buf = [0u8; 1024];
        let closed = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "a stalled handshake held its connection");
    }
    // Meanwhile and after, the server serves TLS.
    let _ = tls_visitor(server.addr().port(), &pki.ca_der, "localhost", &[b"http/1.1"]).await;
}

#[tokio::test]
async fn the_cli_serves_tls_and_its_client_trusts_a_private_ca() {
    let pki = make_pki();
    let (cert, key, ca) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap(), pki.ca.to_str().unwrap());
    let mut server = Cli::spawn(&[
        "server",
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
        "--domain",
        DOMAIN,
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ]);
    let url = server.line().await;
    assert!(url.starts_with("https://tunnel.localhost:"), "{url}");
    let port = url.rsplit(':').next().unwrap().to_string();
    let origin_port =
        origin(|_req: Request<hyper::body::Incoming>| async { hyper::Response::new(full("cli tls")) }).await;
    let server_url = format!("https://127.0.0.1:{port}");
    let local = origin_port.to_string();
    let mut client =
        Cli::spawn(&["client", "--server", &server_url, "--ca", ca, "--local-port", &local, "--subdomain", "clitls"]);
    assert_eq!(client.line().await, format!("https://clitls.tunnel.localhost:{port}"));

    let tls = tls_visitor(port.parse().unwrap(), &pki.ca_der, "clitls.tunnel.localhost", &[b"http/1.1"]).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let req =
        Request::get("/").header("host", format!("clitls.tunnel.localhost:{port}")).body(full(Bytes::new())).unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(&res.into_body().collect().await.unwrap().to_bytes()[..], b"cli tls");

    // A key without a certificate is a usage error, not a plain-text server.
    let half = Cli::spawn(&["server", "--port", "0", "--bind", "127.0.0.1", "--tls-key", key]);
    let status = half.child.wait_with_output().await.unwrap().status;
    assert!(!status.success());

    client.terminate();
    server.terminate();
    assert!(client.child.wait().await.unwrap().success());
    assert!(server.child.wait().await.unwrap().success());
}
