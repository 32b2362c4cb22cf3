//! The server behind a real TLS-terminating proxy, as docs/DEPLOY.md sets them up:
//! Caddy with on-demand TLS that asks `/api/tls-check`, and nginx with a wildcard
//! certificate and the WebSocket upgrade lines. A visitor over HTTPS (trusting only the
//! proxy's CA) reaches a tunnel with a request, a streamed download and a WebSocket; the
//! origin sees the visitor's address in `X-Forwarded-For` (the visitor connects from
//! 127.0.0.2, the proxy from 127.0.0.1), and a tunnel's IP allow list is matched on it.
//!
//! The proxies (Debian's `caddy` and `nginx`, installed by scripts/setup) run in temp
//! dirs on free ports; each test waits for the proxy's own readiness line.

mod common;
mod deploy_util;
mod relay;

use std::net::IpAddr;

use common::*;
use deploy_util::*;
use localtunnels_client::{ClientConfig, TunnelClient};
use localtunnels_server::{ServerConfig, ServerHandle, TrustedProxies};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;

const DOMAIN: &str = "tunnel.localhost";

fn visitor_ip() -> IpAddr {
    [127, 0, 0, 2].into()
}

/// A server that trusts the proxy at 127.0.0.1 and hands out `https://` URLs on the
/// proxy's port.
async fn server_behind(proxy_port: u16) -> ServerHandle {
    let mut config =
        ServerConfig { trusted_proxies: TrustedProxies::parse(&["127.0.0.1"]).unwrap(), ..ServerConfig::default() };
    config.set_public_url(&format!("https://{DOMAIN}:{proxy_port}"), false).unwrap();
    server_with(config).await
}

/// Tunnels `demo` (open) and `guarded` (only 127.0.0.2) to the test origin.
async fn tunnels(server: &ServerHandle) -> Vec<localtunnels_client::ClientHandle> {
    let port = deploy_origin().await;
    let mut out = Vec::new();
    for (name, allow) in [("demo", vec![]), ("guarded", vec!["127.0.0.2".to_string()])] {
        let config = ClientConfig { subdomain: Some(name.into()), allow_ips: allow, ..client_config(server, port) };
        out.push(TunnelClient::new(config).connect().await.expect("tunnel connects"));
    }
    out
}

/// What every proxy must carry: the request with the visitor's address, a streamed
/// download, a WebSocket, and the allow list matched on the forwarded address.
async fn check_through_proxy(proxy_port: u16, root: &CertificateDer<'static>) {
    let tls_client = tls_client(root);
    let host = format!("demo.{DOMAIN}");
    let connect = |from: IpAddr, host: String| {
        let tls_client = tls_client.clone();
        async move { tls(&tls_client, tcp_from(from, proxy_port).await, &host).await.expect("a valid certificate") }
    };

    let (status, body) = get(connect(visitor_ip(), host.clone()).await, &host, "/ip").await;
    assert_eq!((status, String::from_utf8_lossy(&body).as_ref()), (200, "for=127.0.0.2 proto=https"));

    let (status, body) = get(connect(visitor_ip(), host.clone()).await, &host, "/download").await;
    assert_eq!(status, 200);
    check_download(&body);

    websocket_echo(connect(visitor_ip(), host.clone()).await, &host).await;

    let guarded = format!("guarded.{DOMAIN}");
    let (status, _) = get(connect(visitor_ip(), guarded.clone()).await, &guarded, "/ip").await;
    assert_eq!(status, 200, "the allowed visitor address gets in");
    let (status, _) = get(connect([127, 0, 0, 3].into(), guarded.clone()).await, &guarded, "/ip").await;
    assert_eq!(status, 403, "another visitor address is refused, though the proxy's is allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_with_on_demand_tls_in_front() {
    let dir = TempDir::new("caddy");
    let (https_port, http_port) = (free_port(), free_port());
    let server = server_behind(https_port).await;
    let _tunnels = tunnels(&server).await;
    assert_eq!(_tunnels[0].url(), format!("https://demo.{DOMAIN}:{https_port}"));

    // docs/DEPLOY.md's Caddyfile, with Caddy's own CA instead of a public one, and what
    // keeps a test instance to itself (no admin port, its own storage and ports).
    let storage = dir.path().join("storage");
    let server_addr = format!("127.0.0.1:{}", server.addr().port());
    let caddyfile = docs_block("caddy")
        .replacen(
            "{\n",
            &format!(
                "{{\n\tadmin off\n\tstorage file_system {}\n\tskip_install_trust\n\thttp_port {http_port}\n\thttps_port {https_port}\n",
                storage.display()
            ),
            1,
        )
        .replace("https:// {\n", "https:// {\n\tbind 127.0.0.1\n")
        .replace("\ttls {\n", "\ttls internal {\n")
        .replace("127.0.0.1:3000", &server_addr);
    assert!(caddyfile.contains("ask http://127.0.0.1:") && caddyfile.contains("tls internal {"), "{caddyfile}");
    let config = dir.path().join("Caddyfile");
    std::fs::write(&config, caddyfile).unwrap();
    let home = dir.path().display().to_string();
    let mut caddy = Child::spawn(
        "caddy",
        &["run", "--config", config.to_str().unwrap(), "--adapter", "caddyfile"],
        dir.path(),
        &[("HOME", &home), ("XDG_DATA_HOME", &home), ("XDG_CONFIG_HOME", &home)],
    );
    caddy.wait_for("serving initial configuration").await;
    let root_file = dir.path().join("storage/pki/authorities/local/root.crt");
    let root = CertificateDer::from_pem_file(&root_file).expect("Caddy's local root");

    check_through_proxy(https_port, &root).await;

    // A name with no tunnel: Caddy asks the server, which says no; no certificate.
    let tcp = tcp_from(visitor_ip(), https_port).await;
    let refused = tls(&tls_client(&root), tcp, &format!("nope.{DOMAIN}")).await;
    assert!(refused.is_err(), "an unknown name got a certificate");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_with_a_wildcard_certificate_in_front() {
    let dir = TempDir::new("nginx");
    let port = free_port();
    let server = server_behind(port).await;
    let _tunnels = tunnels(&server).await;

    // A CA and a wildcard certificate for the domain, as an operator gets by DNS-01.
    let ca = test_ca("deploy test CA");
    // 127.0.0.1 too, so that a tunnel client can reach the apex through nginx by address.
    write_leaf(&ca, &[DOMAIN.to_string(), format!("*.{DOMAIN}"), "127.0.0.1".to_string()], dir.path());
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();

    let d = dir.path().display();
    let server_port = server.addr().port();
    // The same server block as docs/DEPLOY.md, plus what a test in a temp dir needs.
    // docs/DEPLOY.md's server block, on a free loopback port, inside what an nginx of
    // its own in a temp dir needs.
    let site = docs_block("nginx")
        .replace("listen 443 ssl;", &format!("listen 127.0.0.1:{port} ssl;"))
        .replace("tunnels.example.com", DOMAIN)
        .replace("/etc/ssl/tunnels/fullchain.pem", &format!("{d}/cert.pem"))
        .replace("/etc/ssl/tunnels/privkey.pem", &format!("{d}/key.pem"))
        .replace("127.0.0.1:3000", &format!("127.0.0.1:{server_port}"));
    assert!(site.contains("proxy_set_header Upgrade $http_upgrade;"), "{site}");
    let conf = format!(
        "worker_processes 1;
pid {d}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{site}
}}
"
    );
    let config = dir.path().join("nginx.conf");
    std::fs::write(&config, conf).unwrap();
    let prefix = format!("{d}/");
    let mut nginx =
        Child::spawn("nginx", &["-p", &prefix, "-c", config.to_str().unwrap(), "-g", "daemon off;"], dir.path(), &[]);
    nginx.wait_for("start worker process").await;

    check_through_proxy(port, ca.der()).await;

    // A tunnel client whose control WebSocket goes through nginx too.
    let config = ClientConfig {
        server: Some(format!("https://127.0.0.1:{port}")),
        ca: Some(dir.path().join("ca.pem")),
        subdomain: Some("via-nginx".into()),
        ..client_config(&server, deploy_origin().await)
    };
    let via = TunnelClient::new(config).connect().await.expect("a tunnel through nginx");
    assert_eq!(via.url(), format!("https://via-nginx.{DOMAIN}:{port}"));
    let host = format!("via-nginx.{DOMAIN}");
    let conn = tls(&tls_client(ca.der()), tcp_from(visitor_ip(), port).await, &host).await.unwrap();
    assert_eq!(get(conn, &host, "/ip").await, (200, "for=127.0.0.2 proto=https".into()));

    // nginx holds a wildcard: an unknown name gets a certificate, and the server's 404.
    let host = format!("nope.{DOMAIN}");
    let conn = tls(&tls_client(ca.der()), tcp_from(visitor_ip(), port).await, &host).await.unwrap();
    assert_eq!(get(conn, &host, "/").await.0, 404);
    server.stop().await;
}

#[tokio::test]
async fn forwarding_headers_count_only_from_trusted_proxies() {
    let server = server_with(ServerConfig {
        trusted_proxies: TrustedProxies::parse(&["127.0.0.1"]).unwrap(),
        ..ServerConfig::default()
    })
    .await;
    let _tunnels = tunnels(&server).await;
    let port = server.addr().port();
    let ask = |from: IpAddr, xff: &'static str| async move {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp_from(from, port).await))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get("/ip")
            .header("host", "guarded.localhost")
            .header("x-forwarded-for", xff)
            .header("x-forwarded-proto", "https")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        let status = res.status().as_u16();
        let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    // From the trusted proxy: the right-most untrusted address is the visitor.
    assert_eq!(ask([127, 0, 0, 1].into(), "6.6.6.6, 127.0.0.2").await, (200, "for=127.0.0.2 proto=https".into()));
    assert_eq!(ask([127, 0, 0, 1].into(), "127.0.0.9").await.0, 403);
    // From anyone else the headers are dropped: the TCP peer counts.
    assert_eq!(ask([127, 0, 0, 2].into(), "127.0.0.9").await, (200, "for=127.0.0.2 proto=http".into()));
    assert_eq!(ask([127, 0, 0, 4].into(), "127.0.0.2").await.0, 403);
    server.stop().await;
}

#[tokio::test]
async fn proxy_protocol_headers_name_the_visitor() {
    use tokio::io::AsyncWriteExt;
    let server = server_with(ServerConfig {
        trusted_proxies: TrustedProxies::parse(&["127.0.0.9"]).unwrap(),
        proxy_protocol: true,
        ..ServerConfig::default()
    })
    .await;
    // The load balancer is 127.0.0.9; the tunnel clients connect directly from 127.0.0.1.
    let _tunnels = tunnels(&server).await;
    let port = server.addr().port();
    let with_header = |from: IpAddr, header: Vec<u8>| async move {
        let mut tcp = tcp_from(from, port).await;
        tcp.write_all(&header).await.unwrap();
        get(tcp, "guarded.localhost", "/ip").await
    };
    let v1 = b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 443\r\n".to_vec();
    let (status, body) = with_header([127, 0, 0, 9].into(), v1).await;
    assert_eq!((status, String::from_utf8_lossy(&body).as_ref()), (200, "for=127.0.0.2 proto=http"));
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend_from_slice(&[0x21, 0x11, 0, 12, 127, 0, 0, 5, 127, 0, 0, 1, 0x9c, 0x40, 1, 187]);
    assert_eq!(with_header([127, 0, 0, 9].into(), v2).await.0, 403, "127.0.0.5 is not on the allow list");
    // From an untrusted peer a PROXY line is not believed: it is not HTTP either.
    let mut tcp = tcp_from([127, 0, 0, 2].into(), port).await;
    tcp.write_all(b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 443\r\nGET /ip HTTP/1.1\r\nHost: guarded.localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut answer).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 400"), "{}", String::from_utf8_lossy(&answer));
    server.stop().await;
}

#[tokio::test]
async fn tls_check_answers_for_the_apex_and_live_or_held_names_only() {
    let server = server_with(ServerConfig {
        domain: DOMAIN.into(),
        grace_period: std::time::Duration::from_secs(600),
        ..ServerConfig::default()
    })
    .await;
    // The tunnel's link goes through a relay, so that it can drop (a deliberate close
    // would free the name at once).
    let relay = relay::Relay::start(server.addr()).await;
    let config = ClientConfig {
        server: Some(relay.url()),
        subdomain: Some("demo".into()),
        reconnect: false,
        ..client_config(&server, deploy_origin().await)
    };
    let mut demo = TunnelClient::new(config).connect().await.expect("tunnel connects");
    let visitor = Visitor::new(&server);
    let check = |domain: String| {
        let visitor = visitor.clone();
        async move { visitor.get("127.0.0.1", &format!("/api/tls-check?domain={domain}")).await.0 }
    };
    assert_eq!(check(DOMAIN.into()).await, 200);
    assert_eq!(check(format!("demo.{DOMAIN}")).await, 200);
    assert_eq!(check(format!("DEMO.{}.", DOMAIN.to_uppercase())).await, 200);
    assert_eq!(check(format!("nope.{DOMAIN}")).await, 404);
    assert_eq!(check("example.com".into()).await, 404);
    assert_eq!(check("bad_host.example".into()).await, 404);
    assert_eq!(visitor.get("127.0.0.1", "/api/tls-check").await.0, 400);
    // A dropped client's name is held for it: still a real tunnel.
    relay.cut();
    demo.stopped().await;
    tunnels_become(&server, 0).await;
    assert_eq!(check(format!("demo.{DOMAIN}")).await, 200);
    server.stop().await;
}

#[tokio::test]
async fn public_url_flags_set_the_printed_urls() {
    let mut cli =
        Cli::spawn(&["server", "--port", "0", "--bind", "127.0.0.1", "--public-url", "https://tunnels.example.com"]);
    assert_eq!(cli.line().await, "https://tunnels.example.com");
    cli.terminate();
    let mut cli = Cli::spawn(&[
        "server",
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
        "--domain",
        "t.example",
        "--public-scheme",
        "https",
        "--public-port",
        "8443",
        "--trusted-proxy",
        "10.0.0.0/8,::1",
    ]);
    assert_eq!(cli.line().await, "https://t.example:8443");
    cli.terminate();
    for bad in [
        &["--public-url", "ftp://x.example"][..],
        &["--public-url", "https://x.example/path"],
        &["--domain", "a.example", "--public-url", "https://b.example"],
        &["--trusted-proxy", "not-an-address"],
        &["--proxy-protocol"],
        &["--acme-email", "ops@example.com"],
        &["--http-port", "0"],
    ] {
        let mut args = vec!["server", "--port", "0", "--bind", "127.0.0.1"];
        args.extend_from_slice(bad);
        let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_localtunnels"))
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .unwrap();
        assert!(!status.success(), "{bad:?} was accepted");
    }
}
