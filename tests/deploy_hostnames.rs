//! Custom hostnames (`--hostname app.example.com`): granted only where the tokens file
//! grants them to the client's token (exact hostnames and one-label `*.domain`
//! patterns), refused otherwise with `hostname_not_allowed` (exit code 8 in the CLI),
//! routed by exact Host, answered by `/api/tls-check`, and kept across a reconnect.

mod cli_common;
mod common;
mod relay;

use std::time::Duration;

use common::*;
use localtunnels_client::{ClientConfig, ClientEvent, ConnectError, TunnelClient};
use localtunnels_core::RefuseReason;
use localtunnels_server::{ServerConfig, ServerHandle};

async fn tagged_origin(tag: &'static str) -> u16 {
    origin(move |req| async move { hyper::Response::new(full(format!("{tag} {}", req.uri().path()))) }).await
}

async fn server_with_tokens() -> (ServerHandle, std::path::PathBuf) {
    // A file of its own per server: the tests run at once, and one removing its file (or the
    // server watching it) must not take another's tokens away.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = std::env::temp_dir().join(format!("lt-hostnames-{}-{n}.tokens", std::process::id()));
    std::fs::write(
        &file,
        "# token, names, hostnames\nalpha app.example.com *.customer.example\nbeta demo\ngamma app.example.com\n",
    )
    .unwrap();
    let server = server_with(ServerConfig { tokens_file: Some(file.clone()), ..ServerConfig::default() }).await;
    (server, file)
}

fn config(server: &ServerHandle, port: u16, token: &str, hostname: &str) -> ClientConfig {
    ClientConfig {
        token: Some(token.into()),
        hostname: Some(hostname.into()),
        reconnect: false,
        ..client_config(server, port)
    }
}

async fn refusal(config: ClientConfig) -> (RefuseReason, String) {
    match TunnelClient::new(config).connect().await {
        Err(ConnectError::Refused { reason, message }) => (reason, message),
        Err(e) => panic!("refused expected, got {e}"),
        Ok(c) => panic!("refused expected, got a tunnel at {}", c.url()),
    }
}

#[tokio::test]
async fn granted_hostnames_are_routed_by_exact_host_and_others_refused() {
    let (server, file) = server_with_tokens().await;
    let port = server.addr().port();
    let app = TunnelClient::new(config(&server, tagged_origin("app").await, "alpha", "App.Example.com"))
        .connect()
        .await
        .expect("a granted hostname");
    assert_eq!(app.url(), format!("http://app.example.com:{port}"));
    let shop = TunnelClient::new(config(&server, tagged_origin("shop").await, "alpha", "shop.customer.example"))
        .connect()
        .await
        .expect("a hostname granted by a pattern");
    let named = TunnelClient::new(ClientConfig {
        token: Some("beta".into()),
        subdomain: Some("demo".into()),
        ..client_config(&server, tagged_origin("named").await)
    })
    .connect()
    .await
    .expect("a name beside the hostnames");

    let visitor = Visitor::new(&server);
    assert_eq!(visitor.get(&format!("app.example.com:{port}"), "/x").await.1, "app /x");
    assert_eq!(visitor.get("APP.EXAMPLE.COM.", "/y").await.1, "app /y");
    assert_eq!(visitor.get("shop.customer.example", "/").await.1, "shop /");
    assert_eq!(visitor.get("other.customer.example", "/x").await.0, 404, "an ungranted host is the apex's");
    // The server's own pages stay on the apex; a hostname tunnel owns every path.
    assert_eq!(visitor.get("app.example.com", "/api/status").await.1, "app /api/status");
    for (host, status) in [("app.example.com", 200), ("shop.customer.example", 200), ("nope.customer.example", 404)] {
        assert_eq!(visitor.get("127.0.0.1", &format!("/api/tls-check?domain={host}")).await.0, status, "{host}");
    }

    for (token, host) in [
        ("alpha", "other.example.com"),
        ("alpha", "customer.example"),
        ("alpha", "a.b.customer.example"),
        ("beta", "app.example.com"),
        ("alpha", "x.localhost"),
        ("alpha", "not a host"),
    ] {
        let (reason, message) = refusal(config(&server, 1, token, host)).await;
        assert_eq!(reason, RefuseReason::HostnameNotAllowed, "{token} {host}: {message}");
        assert_eq!(reason.as_str(), "hostname_not_allowed");
    }
    // Live for another token granted it too: taken, like a name.
    let (reason, _) = refusal(config(&server, 1, "gamma", "app.example.com")).await;
    assert_eq!(reason, RefuseReason::NameTaken);

    drop((shop, named));
    app.close().await;
    server.stop().await;
    let _ = std::fs::remove_file(file);
}

#[tokio::test]
async fn without_tokens_no_hostname_is_granted() {
    let server = server().await;
    let config = ClientConfig { hostname: Some("app.example.com".into()), ..client_config(&server, 1) };
    assert_eq!(refusal(config).await.0, RefuseReason::HostnameNotAllowed);
    server.stop().await;
}

#[tokio::test]
async fn a_hostname_is_kept_across_a_reconnect() {
    let (server, file) = server_with_tokens().await;
    let relay = relay::Relay::start(server.addr()).await;
    let config = ClientConfig {
        server: Some(relay.url()),
        reconnect: true,
        max_backoff: Duration::from_millis(300),
        ..config(&server, tagged_origin("app").await, "alpha", "app.example.com")
    };
    let mut app = TunnelClient::new(config).connect().await.expect("granted");
    let mut events = app.events();
    let visitor = Visitor::new(&server);
    assert_eq!(visitor.get("app.example.com", "/").await.1, "app /");

    relay.cut();
    let reconnected = async {
        while !matches!(events.recv().await, Ok(ClientEvent::Disconnected { .. })) {}
        loop {
            if let Ok(ClientEvent::Connected { url }) = events.recv().await {
                return url;
            }
        }
    };
    let url = tokio::time::timeout(Duration::from_secs(60), reconnected).await.expect("reconnects");
    assert_eq!(url, format!("http://app.example.com:{}", server.addr().port()));
    assert_eq!(visitor.get("app.example.com", "/again").await.1, "app /again");
    app.close().await;
    server.stop().await;
    let _ = std::fs::remove_file(file);
}

#[tokio::test]
async fn the_cli_exits_8_for_an_ungranted_hostname() {
    let (server, file) = server_with_tokens().await;
    let port = server.addr().port().to_string();
    let out = cli_common::Proc::run(
        &["client", "--port", &port, "--host", "127.0.0.1", "--token", "beta", "--hostname", "app.example.com"],
        &[],
    )
    .await;
    assert_eq!(out.code, Some(8), "{}", out.stderr);
    assert!(out.stderr.contains("not granted"), "{}", out.stderr);
    server.stop().await;
    let _ = std::fs::remove_file(file);
}
