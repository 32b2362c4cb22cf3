//! Certificates by ACME against a real ACME server (Debian's `pebble`, validating for
//! real against the server's own ports): the apex's and a live tunnel's certificates
//! chain to pebble's root, an unknown name gets none, a restart reuses the cache, HTTP-01
//! on the plain-HTTP port (which redirects the rest to HTTPS), and a short-lived
//! certificate is renewed while a visitor's connection stays open.

mod cli_common;
mod deploy_acme_util;
mod deploy_util;

use std::path::Path;
use std::time::Duration;

use deploy_acme_util::*;
use deploy_util::*;
use localtunnels_client::{ClientConfig, ClientHandle, TunnelClient};
use localtunnels_server::{AcmeConfig, AuthToken, ServerConfig, ServerHandle, TunnelServer};
use tokio_rustls::rustls::pki_types::CertificateDer;

const APEX: &str = "localhost";
const TOKEN: &str = "acme-test-token";

async fn acme_server(pebble: &Pebble, port: u16, http_port: Option<u16>, cache: &Path) -> ServerHandle {
    // The server's ACME log lines show in a failing test's output.
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("localtunnels_server=info").try_init();
    let config = ServerConfig {
        port,
        bind: [127, 0, 0, 1].into(),
        domain: APEX.into(),
        http_port,
        tokens: vec![AuthToken::new(TOKEN).with_hostnames(["app.example.test"])],
        acme: Some(AcmeConfig {
            directory: pebble.directory.clone(),
            contact: vec!["ops@example.com".into()],
            cache: Some(cache.to_path_buf()),
            ca_root: Some(pebble.https_root.clone()),
            http01: http_port.is_some(),
            retry_min: Duration::from_secs(1),
            ..AcmeConfig::default()
        }),
        ..ServerConfig::default()
    };
    TunnelServer::new(config).start().await.expect("server starts")
}

/// A tunnel `name` to the test origin, over WSS to the apex (whose certificate the
/// client checks against pebble's root).
async fn tunnel(pebble: &Pebble, port: u16, name: &str) -> ClientHandle {
    let (subdomain, hostname) = match name.contains('.') {
        true => (None, Some(name.to_string())),
        false => (Some(name.to_string()), None),
    };
    let config = ClientConfig {
        server: Some(format!("https://{APEX}:{port}")),
        ca: Some(pebble.root_file.clone()),
        token: Some(TOKEN.into()),
        subdomain,
        hostname,
        local_host: "127.0.0.1".into(),
        local_port: deploy_origin().await,
        ..ClientConfig::default()
    };
    TunnelClient::new(config).connect().await.expect("tunnel connects over WSS with an ACME certificate")
}

/// The leaf certificate a visitor trusting only pebble's root gets for `sni`, and the
/// connection; `None` when the handshake fails.
async fn handshake(
    pebble: &Pebble,
    port: u16,
    sni: &str,
) -> Option<(CertificateDer<'static>, tokio_rustls::client::TlsStream<tokio::net::TcpStream>)> {
    let conn = tls(&tls_client(&pebble.root), tcp_from([127, 0, 0, 2].into(), port).await, sni).await.ok()?;
    let leaf = conn.get_ref().1.peer_certificates()?.first()?.clone();
    Some((leaf, conn))
}

/// A counter or gauge from the server's `/metrics`, over HTTPS.
async fn metric(pebble: &Pebble, port: u16, name: &str) -> u64 {
    let (_, conn) = handshake(pebble, port, APEX).await.expect("apex certificate");
    let (status, body) = get(conn, APEX, "/metrics").await;
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body).into_owned();
    let line = text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name} in {text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn_certificates_for_real_names_only_and_cached_across_restarts() {
    let port = free_port();
    let pebble = Pebble::start(Targets { tls_port: port, http_port: free_port(), validity_secs: 0 }).await;
    let cache = TempDir::new("acme-cache");
    let server = acme_server(&pebble, port, None, cache.path()).await;
    let demo = tunnel(&pebble, port, "demo").await;

    let (leaf, conn) = handshake(&pebble, port, "demo.localhost").await.expect("a valid chain for a live name");
    let (status, body) = get(conn, "demo.localhost", "/ip").await;
    assert_eq!((status, String::from_utf8_lossy(&body).as_ref()), (200, "for=127.0.0.2 proto=https"));
    assert!(handshake(&pebble, port, APEX).await.is_some(), "a valid chain for the apex");
    assert!(handshake(&pebble, port, "nope.localhost").await.is_none(), "an unknown name got a certificate");
    assert_eq!(metric(&pebble, port, "localtunnels_acme_orders_total").await, 2, "the apex and demo, nothing else");

    // Concurrent first handshakes for a new name share one order.
    let _many = tunnel(&pebble, port, "many").await;
    let handshakes = (0..6).map(|_| handshake(&pebble, port, "many.localhost"));
    let leaves = futures_util::future::join_all(handshakes).await;
    assert!(leaves.iter().all(Option::is_some), "every concurrent handshake got a certificate");
    assert_eq!(metric(&pebble, port, "localtunnels_acme_orders_total").await, 3);
    assert_eq!(metric(&pebble, port, "localtunnels_acme_certificates").await, 3);

    // Everything in the cache is private to the server's user.
    let files: Vec<_> = std::fs::read_dir(cache.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 4, "an account and three certificates: {files:?}");
    for f in &files {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o600, "{f:?}");
    }

    // A restart presents the cached certificates without a new order.
    demo.close().await;
    server.stop().await;
    let server = acme_server(&pebble, port, None, cache.path()).await;
    let _demo = tunnel(&pebble, port, "demo").await;
    let (again, _) = handshake(&pebble, port, "demo.localhost").await.expect("the cached certificate");
    assert_eq!(again, leaf, "the restarted server ordered a new certificate");
    assert_eq!(metric(&pebble, port, "localtunnels_acme_orders_total").await, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_on_the_plain_port_which_redirects_the_rest() {
    let (port, http_port) = (free_port(), free_port());
    let pebble = Pebble::start(Targets { tls_port: port, http_port, validity_secs: 0 }).await;
    let cache = TempDir::new("acme-cache");
    let server = acme_server(&pebble, port, Some(http_port), cache.path()).await;
    let _demo = tunnel(&pebble, port, "demo").await;
    let (_, conn) = handshake(&pebble, port, "demo.localhost").await.expect("a valid chain by HTTP-01");
    assert_eq!(get(conn, "demo.localhost", "/ip").await.0, 200);
    // A granted custom hostname gets its certificate on demand too; an ungranted one none.
    let _app = tunnel(&pebble, port, "app.example.test").await;
    let (_, conn) = handshake(&pebble, port, "app.example.test").await.expect("a valid chain for the hostname");
    assert_eq!(get(conn, "app.example.test", "/ip").await.0, 200);
    assert!(handshake(&pebble, port, "other.example.test").await.is_none());

    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(
        tcp_from([127, 0, 0, 2].into(), http_port).await,
    ))
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get("/a/b?c=d")
        .header("host", format!("demo.localhost:{http_port}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), 308);
    assert_eq!(res.headers()["location"], format!("https://demo.localhost:{port}/a/b?c=d").as_str());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lived_certificate_is_renewed_while_a_connection_stays_open() {
    let port = free_port();
    // 30 s certificates: renewed when 10 s are left.
    let pebble = Pebble::start(Targets { tls_port: port, http_port: free_port(), validity_secs: 30 }).await;
    let cache = TempDir::new("acme-cache");
    let server = acme_server(&pebble, port, None, cache.path()).await;
    let _demo = tunnel(&pebble, port, "demo").await;
    let (first, conn) = handshake(&pebble, port, "demo.localhost").await.expect("a first certificate");
    // A visitor's WebSocket, open across the renewal.
    let (mut ws, _) = tokio_tungstenite::client_async("wss://demo.localhost/ws", conn).await.expect("WebSocket");
    echo(&mut ws, "before").await;

    // Wait (bounded) for the renewal the server schedules by itself.
    let renewed = async {
        loop {
            if let Some((leaf, _)) = handshake(&pebble, port, "demo.localhost").await {
                if leaf != first {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(90), renewed).await.expect("a renewed certificate within 90 s");
    assert!(metric(&pebble, port, "localtunnels_acme_renewals_total").await >= 1);
    // The visitor's connection from before the renewal still works.
    echo(&mut ws, "after").await;
    server.stop().await;
}

/// Sends `text` on `ws` and checks the echo.
async fn echo<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, text: &'static str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    ws.send(tokio_tungstenite::tungstenite::Message::text(text)).await.expect("send");
    let got = tokio::time::timeout(STEP, ws.next()).await.expect("echo in time").expect("open").expect("message");
    assert_eq!(got.into_text().unwrap().as_str(), text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_obtains_certificates_with_flags_and_toml_keys() {
    let (port, http_port) = (free_port(), free_port());
    let pebble = Pebble::start(Targets { tls_port: port, http_port, validity_secs: 0 }).await;
    let dir = TempDir::new("acme-cli");
    let cache = dir.path().join("acme");
    let toml = format!(
        "[server]\ndomain = \"{APEX}\"\nacme = true\nacme-email = \"ops@example.com\"\nacme-cache = \"{}\"\n",
        cache.display()
    );
    let config = dir.path().join("server.toml");
    std::fs::write(&config, toml).unwrap();
    let (port_arg, http_arg) = (port.to_string(), http_port.to_string());
    let args = [
        "server",
        "--config",
        config.to_str().unwrap(),
        "--bind",
        "127.0.0.1",
        "--port",
        &port_arg,
        "--http-port",
        &http_arg,
        "--acme-directory",
        &pebble.directory,
        "--acme-ca-root",
        pebble.https_root.to_str().unwrap(),
    ];
    let mut server = cli_common::Proc::spawn(&args, &[]);
    assert_eq!(server.line().await, format!("https://{APEX}:{port}"));
    server.stderr_line("ACME certificate issued").await;
    let (_, conn) = handshake(&pebble, port, APEX).await.expect("the apex certificate, by HTTP-01");
    assert_eq!(get(conn, APEX, "/api/tls-check?domain=localhost").await.0, 200);
    assert!(std::fs::read_dir(&cache).unwrap().count() >= 2, "account and certificate cached");
    server.terminate();
    assert_eq!(server.exit_code().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_orders_back_off_and_show_in_metrics() {
    // An ACME directory nobody answers, and a fallback certificate for the apex.
    let dir = TempDir::new("acme-fail");
    let ca = test_ca("fallback CA");
    write_leaf(&ca, &[APEX.to_string(), format!("*.{APEX}")], dir.path());
    let config = ServerConfig {
        port: 0,
        bind: [127, 0, 0, 1].into(),
        domain: APEX.into(),
        tls: Some(localtunnels_server::TlsConfig {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        }),
        acme: Some(AcmeConfig {
            directory: format!("https://127.0.0.1:{}/dir", free_port()),
            retry_min: Duration::from_secs(3600),
            ..AcmeConfig::default()
        }),
        ..ServerConfig::default()
    };
    let server = TunnelServer::new(config).start().await.unwrap();
    let port = server.addr().port();
    let metrics = || async {
        let conn = tls(&tls_client(ca.der()), tcp_from([127, 0, 0, 1].into(), port).await, APEX).await.unwrap();
        let (_, body) = get(conn, APEX, "/metrics").await;
        String::from_utf8_lossy(&body).into_owned()
    };
    let value = |text: &str, name: &str| -> u64 {
        text.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).unwrap().parse().unwrap()
    };
    // The apex's order at start fails; the fallback certificate keeps the server reachable.
    let failed = async {
        loop {
            let text = metrics().await;
            if value(&text, "localtunnels_acme_failures_total") >= 1 {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let text = tokio::time::timeout(STEP, failed).await.expect("the failure is counted");
    assert_eq!(value(&text, "localtunnels_acme_certificates"), 0);
    // Within the backoff, handshakes for the apex start no new order.
    for _ in 0..3 {
        metrics().await;
    }
    let text = metrics().await;
    assert_eq!(value(&text, "localtunnels_acme_orders_total"), 1, "{text}");
    server.stop().await;
}
