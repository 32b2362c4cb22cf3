//! Faults, with real processes on loopback: a client killed mid-response, a server
//! killed and restarted on its port, and a control link that goes silent (a relay
//! that stops forwarding without closing anything).

mod common;
mod relay;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::{Request, Response};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use localtunnels_client::{ClientConfig, ClientEvent, ClientHandle, TunnelClient};
use localtunnels_server::ServerConfig;
use relay::Relay;
use tokio::sync::broadcast;

/// GETs `path` from the server on `port` for `host`.
async fn get(port: u16, host: &str, path: &str) -> (u16, Bytes) {
    let client: Client<HttpConnector, TestBody> = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let req =
        Request::get(format!("http://127.0.0.1:{port}{path}")).header("host", host).body(full(Bytes::new())).unwrap();
    let res = client.request(req).await.expect("visitor request");
    let status = res.status().as_u16();
    (status, res.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default())
}

/// An origin answering `<tag> <path>`.
async fn tagged_origin(tag: &'static str) -> u16 {
    origin(
        move |req: Request<hyper::body::Incoming>| async move { Response::new(full(format!("{tag} {}", req.uri()))) },
    )
    .await
}

/// Waits for the first event matching `want`, up to 60 s.
async fn wait_event(events: &mut broadcast::Receiver<ClientEvent>, what: &str, want: impl Fn(&ClientEvent) -> bool) {
    let found = async {
        loop {
            match events.recv().await {
                Ok(ev) if want(&ev) => return,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("client events ended while waiting for {what}: {e}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), found).await.unwrap_or_else(|_| panic!("no {what} in 60 s"));
}

/// Skips past the `Connected` every first `events()` call starts with.
async fn events_after_connect(handle: &mut ClientHandle) -> broadcast::Receiver<ClientEvent> {
    let mut events = handle.events();
    wait_event(&mut events, "the first Connected", |e| matches!(e, ClientEvent::Connected { .. })).await;
    events
}

#[tokio::test]
async fn a_client_killed_mid_response_cuts_that_response_promptly() {
    let server = server().await;
    let port = server.addr().port();
    // The origin sends a head and one chunk, then nothing, forever.
    let slow = origin(|_req: Request<hyper::body::Incoming>| async {
        let first = futures_util::stream::iter([Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"first chunk")))]);
        let body = futures_util::StreamExt::chain(first, futures_util::stream::pending());
        Response::new(http_body_util::StreamBody::new(body).boxed())
    })
    .await;
    let mut victim = Cli::spawn(&[
        "client",
        "--server",
        &format!("http://127.0.0.1:{port}"),
        "--local-port",
        &slow.to_string(),
        "--subdomain",
        "victim",
    ]);
    assert_eq!(victim.line().await, format!("http://victim.localhost:{port}"));
    let bystander = client(&server, tagged_origin("bystander").await, Some("bystander")).await;

    let visitor = Visitor::new(&server);
    let res =
        visitor.send(&format!("victim.localhost:{port}"), Request::get("/").body(full(Bytes::new())).unwrap()).await;
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    let first = body.frame().await.expect("a first chunk").expect("no error yet").into_data().unwrap();
    assert_eq!(&first[..], b"first chunk");

    victim.child.start_kill().unwrap();
    let started = Instant::now();
    let next =
        tokio::time::timeout(Duration::from_secs(20), body.frame()).await.expect("the response is cut, not hung");
    assert!(matches!(next, Some(Err(_))), "a cut response must not look complete: {next:?}");
    eprintln!("response cut {:?} after the client was killed", started.elapsed());

    // Nobody else noticed.
    assert_eq!(visitor.get(&host_of(&bystander.url()), "/still").await, (200, Bytes::from_static(b"bystander /still")));
    // The victim's name is held for it: 503, not 404.
    assert_eq!(visitor.get(&format!("victim.localhost:{port}"), "/").await.0, 503);
    let _ = victim.child.wait().await;
}

#[tokio::test]
async fn after_a_server_restart_clients_reconnect_by_themselves_and_keep_their_names() {
    let mut server = Cli::spawn(&["server", "--port", "0", "--bind", "127.0.0.1"]);
    let url = server.line().await;
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let mut tunnels = Vec::new();
    for name in ["alpha", "beta"] {
        let config = ClientConfig {
            server: Some(format!("http://127.0.0.1:{port}")),
            local_host: "127.0.0.1".into(),
            local_port: tagged_origin(name).await,
            subdomain: Some(name.into()),
            max_backoff: Duration::from_millis(500),
            ..ClientConfig::default()
        };
        let mut handle = TunnelClient::new(config).connect().await.unwrap();
        let events = events_after_connect(&mut handle).await;
        assert_eq!(get(port, &host_of(&handle.url()), "/before").await.0, 200);
        tunnels.push((handle, events));
    }

    // The server dies without a word.
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    for (_, events) in &mut tunnels {
        wait_event(events, "Disconnected", |e| matches!(e, ClientEvent::Disconnected { .. })).await;
    }
    // While it is down the clients keep trying (and failing).
    for (_, events) in &mut tunnels {
        wait_event(events, "a failed reconnect", |e| matches!(e, ClientEvent::Error { .. })).await;
    }

    // A new server on the same port: both clients come back with their names.
    let port_arg = port.to_string();
    let mut restarted = Cli::spawn(&["server", "--port", &port_arg, "--bind", "127.0.0.1"]);
    assert_eq!(restarted.line().await, url);
    for (handle, events) in &mut tunnels {
        let name = handle.name().to_string();
        wait_event(events, "Connected", |e| matches!(e, ClientEvent::Connected { .. })).await;
        assert_eq!(handle.url(), format!("http://{name}.localhost:{port}"));
        let (status, body) = get(port, &host_of(&handle.url()), "/after").await;
        assert_eq!((status, body), (200, Bytes::from(format!("{name} /after"))));
    }
    restarted.terminate();
    for (handle, _) in tunnels {
        handle.close().await;
    }
    assert!(restarted.child.wait().await.unwrap().success());
}

#[tokio::test]
async fn a_silently_dead_control_link_is_noticed_by_both_sides_and_service_resumes() {
    let ping = Duration::from_millis(250);
    let session = localtunnels_core::Config { ping_interval: ping, idle_timeout: ping * 2, ..Default::default() };
    let server = server_with(ServerConfig { session, ..ServerConfig::default() }).await;
    let relay = Relay::start(server.addr()).await;
    let config = ClientConfig {
        server: Some(relay.url()),
        subdomain: Some("fragile".into()),
        max_backoff: Duration::from_millis(300),
        handshake_timeout: Duration::from_secs(2),
        ..client_config(&server, tagged_origin("fragile").await)
    };
    let mut fragile = TunnelClient::new(config).connect().await.unwrap();
    let mut events = events_after_connect(&mut fragile).await;
    let sturdy = client(&server, tagged_origin("sturdy").await, Some("sturdy")).await;
    let visitor = Visitor::new(&server);
    assert_eq!(visitor.get(&host_of(&fragile.url()), "/").await.0, 200);

    // The link goes silent: no FIN, no RST, bytes just stop.
    relay.pause();
    let paused_at = Instant::now();
    let server_noticed = async {
        while server.stats().tunnels != 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        paused_at.elapsed()
    };
    let server_noticed = tokio::time::timeout(Duration::from_secs(60), server_noticed).await.expect("server notices");
    wait_event(&mut events, "Disconnected", |e| matches!(e, ClientEvent::Disconnected { .. })).await;
    let client_noticed = paused_at.elapsed();
    eprintln!("heartbeat {ping:?}: server noticed after {server_noticed:?}, client after {client_noticed:?}");
    // Two heartbeat intervals by design (idle timeout = 2 x ping); the bound here is
    // loose so a loaded machine does not fail the test, and still far below "never".
    assert!(server_noticed < Duration::from_secs(10) && client_noticed < Duration::from_secs(10));

    // Meanwhile visitors get a clear 503, and the other tunnel is untouched.
    let (status, body) = visitor.get(&host_of(&fragile.url()), "/").await;
    assert_eq!(status, 503, "{body:?}");
    assert_eq!(visitor.get(&host_of(&sturdy.url()), "/").await.0, 200);

    // The link heals: the client reconnects and service resumes under the same name.
    relay.resume();
    wait_event(&mut events, "Connected", |e| matches!(e, ClientEvent::Connected { .. })).await;
    assert_eq!(fragile.url(), server.tunnel_url("fragile"));
    assert_eq!(visitor.get(&host_of(&fragile.url()), "/again").await, (200, Bytes::from_static(b"fragile /again")));
}
