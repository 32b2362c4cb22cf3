//! Access control end to end: client auth tokens (fail closed, per-token names, a
//! tokens file, the environment), keeping a name across drops (a shared token cannot
//! take over a live tunnel), visitor basic auth and IP allow lists, per-token /
//! per-address tunnel quotas (held names count), and who may list tunnel names.

mod common;
mod relay;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use hyper::{Request, Response};
use localtunnels_client::{ClientConfig, ClientEvent, ClientHandle, ConnectError, TunnelClient};
use localtunnels_core::RefuseReason;
use localtunnels_server::{AuthToken, Limits, ServerConfig, ServerHandle};
use relay::Relay;

/// An origin that says which path it saw and whether an Authorization header reached it.
async fn echo_origin() -> u16 {
    origin(|req: Request<hyper::body::Incoming>| async move {
        let auth = req.headers().contains_key(hyper::header::AUTHORIZATION);
        Response::new(full(format!("{} auth={auth}", req.uri().path())))
    })
    .await
}

fn with(server: &ServerHandle, port: u16, token: Option<&str>, name: Option<&str>) -> ClientConfig {
    ClientConfig {
        token: token.map(str::to_string),
        subdomain: name.map(str::to_string),
        reconnect: false,
        ..client_config(server, port)
    }
}

async fn connect(config: ClientConfig) -> Result<ClientHandle, ConnectError> {
    TunnelClient::new(config).connect().await
}

fn refused(r: Result<ClientHandle, ConnectError>) -> (RefuseReason, String) {
    match r {
        Err(ConnectError::Refused { reason, message }) => (reason, message),
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(h) => panic!("expected a refusal, got a tunnel at {}", h.url()),
    }
}

/// Connects with `config` as soon as the server stops refusing it for `reason` (a
/// hold ending); panics after 20 s or on any other error.
async fn connect_once_not(reason: RefuseReason, config: ClientConfig) -> ClientHandle {
    let attempts = async {
        loop {
            match connect(config.clone()).await {
                Ok(h) => return h,
                Err(ConnectError::Refused { reason: r, .. }) if r == reason => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("{e}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), attempts).await.unwrap_or_else(|_| panic!("still {reason:?}"))
}

#[tokio::test]
async fn tokens_fail_closed_and_restrict_names() {
    let server = server_with(ServerConfig {
        tokens: vec![AuthToken::new("token-alpha"), AuthToken::with_names("token-beta", ["demo", "team-*"])],
        ..ServerConfig::default()
    })
    .await;
    let port = echo_origin().await;

    let (reason, message) = refused(connect(with(&server, port, None, None)).await);
    assert_eq!(reason, RefuseReason::Unauthorized);
    assert!(message.contains("requires an auth token"), "{message}");

    let (reason, message) = refused(connect(with(&server, port, Some("token-wrong"), None)).await);
    assert_eq!(reason, RefuseReason::Unauthorized);
    assert!(!message.contains("token-wrong"), "the refusal repeats the token: {message}");

    let alpha = connect(with(&server, port, Some("token-alpha"), None)).await.expect("a valid token connects");
    let (status, body) = Visitor::new(&server).get(&host_of(&alpha.url()), "/x").await;
    assert_eq!((status, &body[..]), (200, &b"/x auth=false"[..]));

    let (reason, message) = refused(connect(with(&server, port, Some("token-beta"), None)).await);
    assert_eq!(reason, RefuseReason::Unauthorized);
    assert!(message.contains("--subdomain"), "{message}");
    let (reason, message) = refused(connect(with(&server, port, Some("token-beta"), Some("other"))).await);
    assert_eq!(reason, RefuseReason::Unauthorized);
    assert!(message.contains("may not use the name 'other'"), "{message}");

    let demo = connect(with(&server, port, Some("token-beta"), Some("Demo"))).await.expect("an allowed name");
    assert_eq!(demo.url(), server.tunnel_url("demo"));
    let team = connect(with(&server, port, Some("token-beta"), Some("team-blue"))).await.expect("an allowed prefix");
    assert_eq!(team.url(), server.tunnel_url("team-blue"));
    assert_eq!(server.stats().tunnels, 3);
}

#[tokio::test]
async fn tokens_file_turns_auth_on_even_when_empty() {
    let dir = std::env::temp_dir().join(format!("lt-security-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tokens");
    std::fs::write(&file, "# team tokens\nfile-token-1\nfile-token-2 only-me\n").unwrap();
    let server = server_with(ServerConfig { tokens_file: Some(file.clone()), ..ServerConfig::default() }).await;
    let port = echo_origin().await;
    connect(with(&server, port, Some("file-token-1"), None)).await.expect("a token from the file");
    connect(with(&server, port, Some("file-token-2"), Some("only-me"))).await.expect("its allowed name");
    let (reason, _) = refused(connect(with(&server, port, Some("file-token-2"), Some("someone"))).await);
    assert_eq!(reason, RefuseReason::Unauthorized);

    let empty = dir.join("empty");
    std::fs::write(&empty, "# nobody yet\n").unwrap();
    let closed = server_with(ServerConfig { tokens_file: Some(empty), ..ServerConfig::default() }).await;
    let (reason, _) = refused(connect(with(&closed, port, Some("anything"), None)).await);
    assert_eq!(reason, RefuseReason::Unauthorized);
    let (reason, _) = refused(connect(with(&closed, port, None, None)).await);
    assert_eq!(reason, RefuseReason::Unauthorized);

    let missing = localtunnels_server::TunnelServer::new(ServerConfig {
        port: 0,
        bind: [127, 0, 0, 1].into(),
        tokens_file: Some(dir.join("missing")),
        ..ServerConfig::default()
    });
    let err = missing.start().await.expect_err("a missing tokens file stops the start");
    assert!(err.to_string().contains("cannot read tokens file"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The server CLI reads `LOCALTUNNELS_TOKENS`; the client CLI exits with 6 when
/// refused; no token appears in either's logs, even at debug level.
#[tokio::test]
async fn cli_tokens_from_the_environment_never_reach_the_logs() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    let spawn = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_localtunnels"));
        cmd.args(args)
            .env_remove("LOCALTUNNELS_PORT")
            .env("LOCALTUNNELS_LOG", "debug")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn().expect("spawn localtunnels")
    };
    let mut server = spawn(
        &["server", "--port", "0", "--bind", "127.0.0.1", "--verbose"],
        &[("LOCALTUNNELS_TOKENS", "env-secret-one,env-secret-two")],
    );
    let mut server_stderr = server.stderr.take().unwrap();
    let server_logs = tokio::spawn(async move {
        let mut text = String::new();
        let _ = server_stderr.read_to_string(&mut text).await;
        text
    });
    let mut out = BufReader::new(server.stdout.take().unwrap()).lines();
    let url = out.next_line().await.unwrap().expect("the server prints its URL");
    let port = url.rsplit(':').next().unwrap().to_string();
    let server_url = format!("http://127.0.0.1:{port}");
    let origin_port = echo_origin().await.to_string();

    let mut good = spawn(
        &["client", "--server", &server_url, "--local-port", &origin_port, "--subdomain", "envy"],
        &[("LOCALTUNNELS_TOKEN", "env-secret-two")],
    );
    let mut good_out = BufReader::new(good.stdout.take().unwrap()).lines();
    assert_eq!(good_out.next_line().await.unwrap().unwrap(), format!("http://envy.localhost:{port}"));

    let bad =
        spawn(&["client", "--server", &server_url, "--local-port", &origin_port, "--token", "env-secret-wrong"], &[]);
    let bad = bad.wait_with_output().await.unwrap();
    assert_eq!(bad.status.code(), Some(6), "{}", String::from_utf8_lossy(&bad.stderr));

    for child in [&good, &server] {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(child.id().unwrap().to_string()).status();
    }
    let good = good.wait_with_output().await.unwrap();
    server.wait().await.unwrap();
    let server_err = server_logs.await.unwrap();
    let logs = format!("{server_err}{}{}", String::from_utf8_lossy(&good.stderr), String::from_utf8_lossy(&bad.stderr));
    assert!(logs.contains("tunnel refused"), "the refusal is logged:\n{logs}");
    for secret in ["env-secret-one", "env-secret-two", "env-secret-wrong"] {
        assert!(!logs.contains(secret), "{secret} appears in the logs:\n{logs}");
    }
}

#[tokio::test]
async fn a_dropped_name_is_held_for_its_client_only() {
    let server = server_with(ServerConfig { grace_period: Duration::from_secs(60), ..ServerConfig::default() }).await;
    let port = echo_origin().await;
    let relay = Relay::start(server.addr()).await;
    let visitor = Visitor::new(&server);

    // A client that reconnects by itself, through a link we can cut.
    let config = ClientConfig {
        server: Some(relay.url()),
        subdomain: Some("keep".into()),
        max_backoff: Duration::from_millis(300),
        ..client_config(&server, port)
    };
    let mut keeper = connect(config).await.expect("connects");
    let mut events = keeper.events();
    assert_eq!(keeper.url(), server.tunnel_url("keep"));

    // Its link dies and the link stays down: the name is held.
    relay.pause();
    relay.cut();
    tunnels_become(&server, 0).await;
    let (status, body) = visitor.get(&host_of(&keeper.url()), "/").await;
    assert_eq!(status, 503, "{body:?}");
    let (reason, message) = refused(connect(with(&server, port, None, Some("keep"))).await);
    assert_eq!(reason, RefuseReason::NameTaken);
    assert!(message.contains("in use"), "{message}");

    // The link comes back: the client reconnects with its reconnect token and gets
    // the name back.
    relay.resume();
    let back = async {
        let mut dropped = false;
        loop {
            match events.recv().await.expect("client events") {
                ClientEvent::Disconnected { .. } => dropped = true,
                ClientEvent::Connected { url } if dropped => {
                    assert_eq!(url, server.tunnel_url("keep"), "reconnected under another name");
                    break;
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), back).await.expect("the client reconnects");
    let (status, body) = visitor.get(&host_of(&keeper.url()), "/back").await;
    assert_eq!((status, &body[..]), (200, &b"/back auth=false"[..]));
}

#[tokio::test]
async fn a_held_name_is_free_after_the_grace_period() {
    let server =
        server_with(ServerConfig { grace_period: Duration::from_millis(300), ..ServerConfig::default() }).await;
    let port = echo_origin().await;
    let first = connect(with(&server, port, None, Some("brief"))).await.unwrap();
    first.close().await;
    tunnels_become(&server, 0).await;
    // Held at first (or already expired on a slow machine); free soon after.
    let taken = connect_once_not(RefuseReason::NameTaken, with(&server, port, None, Some("brief"))).await;
    assert_eq!(taken.url(), server.tunnel_url("brief"));
}

#[tokio::test]
async fn the_same_auth_token_takes_a_name_back_once_the_stale_session_has_ended() {
    // Short heartbeats, so that the server ends a silent session quickly.
    let ping = Duration::from_millis(250);
    let session = localtunnels_core::Config { ping_interval: ping, idle_timeout: ping * 2, ..Default::default() };
    let server = server_with(ServerConfig {
        tokens: vec![AuthToken::new("owner-token"), AuthToken::new("other-token")],
        session,
        ..ServerConfig::default()
    })
    .await;
    let port = echo_origin().await;
    let relay = Relay::start(server.addr()).await;

    // The owner's link stops carrying bytes; the server ends its session (the name is
    // held). While the session was live, only its reconnect token could take it over
    // (tests/security_names.rs).
    let stale_config = ClientConfig {
        server: Some(relay.url()),
        reconnect: true,
        max_backoff: Duration::from_millis(300),
        ..with(&server, port, Some("owner-token"), Some("mine"))
    };
    let mut stale = connect(stale_config).await.unwrap();
    let mut stale_events = stale.events();
    relay.pause();
    tunnels_become(&server, 0).await;

    // Someone else cannot have the held name.
    let (reason, _) = refused(connect(with(&server, port, Some("other-token"), Some("mine"))).await);
    assert_eq!(reason, RefuseReason::NameTaken);

    // The owner, restarted elsewhere with the same token (no reconnect token), takes the
    // held name at once.
    let fresh = connect(with(&server, port, Some("owner-token"), Some("mine"))).await.expect("same token");
    assert_eq!(fresh.url(), server.tunnel_url("mine"));
    let (status, _) = Visitor::new(&server).get(&host_of(&fresh.url()), "/").await;
    assert_eq!(status, 200);
    assert_eq!(server.stats().tunnels, 1);

    // Once its link works again, the stale client's reconnect token no longer matches:
    // it cannot take the live name back.
    relay.resume();
    let refused_back = async {
        loop {
            match stale_events.recv().await.expect("events") {
                ClientEvent::Error { message } if message.contains("in use") => break,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), refused_back).await.expect("the stale client is refused");
    assert_eq!(server.stats().tunnels, 1);
    let (status, body) = Visitor::new(&server).get(&host_of(&fresh.url()), "/still").await;
    assert_eq!((status, &body[..]), (200, &b"/still auth=false"[..]));
    stale.close().await;
}

#[tokio::test]
async fn visitors_need_the_tunnels_basic_auth() {
    let server = server().await;
    let port = echo_origin().await;
    let config =
        ClientConfig { basic_auth: Some("alice:open sesame".into()), ..with(&server, port, None, Some("locked")) };
    let tunnel = connect(config).await.unwrap();
    let host = host_of(&tunnel.url());
    let visitor = Visitor::new(&server);

    let res = visitor.send(&host, Request::get("/").body(full(Bytes::new())).unwrap()).await;
    assert_eq!(res.status(), 401);
    let challenge = res.headers().get(hyper::header::WWW_AUTHENTICATE).expect("a challenge").to_str().unwrap();
    assert!(challenge.starts_with("Basic realm=\"locked\""), "{challenge}");

    let basic = |creds: &str| format!("Basic {}", b64(creds.as_bytes()));
    for wrong in ["alice:open", "bob:open sesame", "alice:open sesame "] {
        let req = Request::get("/").header("authorization", basic(wrong)).body(full(Bytes::new())).unwrap();
        assert_eq!(visitor.send(&host, req).await.status(), 401, "{wrong}");
    }
    let req = Request::get("/in").header("authorization", basic("alice:open sesame")).body(full(Bytes::new())).unwrap();
    let res = visitor.send(&host, req).await;
    assert_eq!(res.status(), 200);
    // The credentials were for the tunnel: the origin does not see them.
    assert_eq!(&res.into_body().collect().await.unwrap().to_bytes()[..], b"/in auth=false");

    let bad = connect(ClientConfig { basic_auth: Some("no-colon".into()), ..with(&server, port, None, None) }).await;
    assert!(matches!(&bad, Err(ConnectError::Config(m)) if m.contains("user:password")), "{bad:?}");
}

#[tokio::test]
async fn visitors_are_matched_on_their_tcp_address_only() {
    let server = server().await;
    let port = echo_origin().await;
    let visitor = Visitor::new(&server);
    let elsewhere = ClientConfig {
        allow_ips: vec!["10.0.0.0/8".into(), "2001:db8::/32".into()],
        ..with(&server, port, None, Some("office"))
    };
    let office = connect(elsewhere).await.unwrap();
    let req = Request::get("/")
        .header("x-forwarded-for", "10.1.2.3")
        .header("forwarded", "for=10.1.2.3")
        .body(full(Bytes::new()))
        .unwrap();
    let res = visitor.send(&host_of(&office.url()), req).await;
    assert_eq!(res.status(), 403, "X-Forwarded-For must not be trusted");

    let local = ClientConfig { allow_ips: vec!["127.0.0.0/8".into()], ..with(&server, port, None, Some("home")) };
    let home = connect(local).await.unwrap();
    let (status, _) = visitor.get(&host_of(&home.url()), "/").await;
    assert_eq!(status, 200);

    let (reason, message) =
        refused(connect(ClientConfig { allow_ips: vec!["banana".into()], ..with(&server, port, None, None) }).await);
    assert_eq!(reason, RefuseReason::Malformed);
    assert!(message.contains("banana"), "{message}");
}

#[tokio::test]
async fn tunnels_per_token_and_per_address_are_limited() {
    let server = server_with(ServerConfig {
        tokens: vec![AuthToken::new("small-token"), AuthToken::new("big-token")],
        limits: Limits { max_tunnels_per_token: 2, max_tunnels_per_ip: 3, ..Limits::default() },
        grace_period: Duration::from_millis(300),
        ..ServerConfig::default()
    })
    .await;
    let port = echo_origin().await;
    let a = connect(with(&server, port, Some("small-token"), None)).await.unwrap();
    let _b = connect(with(&server, port, Some("small-token"), None)).await.unwrap();
    let (reason, message) = refused(connect(with(&server, port, Some("small-token"), None)).await);
    assert_eq!(reason, RefuseReason::LimitReached);
    assert!(message.contains("token"), "{message}");

    // Another token still fits, up to the address's limit.
    let _c = connect(with(&server, port, Some("big-token"), None)).await.unwrap();
    let (reason, message) = refused(connect(with(&server, port, Some("big-token"), None)).await);
    assert_eq!(reason, RefuseReason::LimitReached);
    assert!(message.contains("address"), "{message}");

    // Closing one frees a place once its name is no longer held (held names count).
    a.close().await;
    tunnels_become(&server, 2).await;
    connect_once_not(RefuseReason::LimitReached, with(&server, port, Some("small-token"), None)).await;
}

/// An origin answering with `tag`.
async fn tagged_origin(tag: &'static str) -> u16 {
    origin(move |_req: Request<hyper::body::Incoming>| async move { Response::new(full(tag)) }).await
}

/// Connects with `config` through a relay, then drops the link: the server holds the
/// name for the client's return.
async fn dropped(server: &ServerHandle, config: ClientConfig) {
    let relay = Relay::start(server.addr()).await;
    let mut client = connect(ClientConfig { server: Some(relay.url()), reconnect: false, ..config }).await.unwrap();
    relay.cut();
    client.stopped().await;
}

#[tokio::test]
async fn held_names_count_in_the_per_address_and_server_quotas() {
    let server = server_with(ServerConfig {
        limits: Limits { max_tunnels_per_ip: 2, ..Limits::default() },
        grace_period: Duration::from_secs(600),
        ..ServerConfig::default()
    })
    .await;
    let port = tagged_origin("ok").await;
    // Claim a name, drop its link (held for 600 s; a deliberate close would free it),
    // and again: the address holds two names.
    for name in ["first", "second"] {
        dropped(&server, with(&server, port, None, Some(name))).await;
    }
    tunnels_become(&server, 0).await;
    let (reason, _) = refused(connect(with(&server, port, None, None)).await);
    assert_eq!(reason, RefuseReason::LimitReached, "two held names fill a quota of two");

    // The server-wide limit counts held names too.
    let server = server_with(ServerConfig { max_tunnels: 1, ..ServerConfig::default() }).await;
    dropped(&server, with(&server, port, None, Some("only"))).await;
    tunnels_become(&server, 0).await;
    assert_eq!(refused(connect(with(&server, port, None, Some("next"))).await).0, RefuseReason::ServerFull);
}

#[tokio::test]
async fn a_shared_auth_token_cannot_take_over_a_live_tunnel() {
    let server = server_with(ServerConfig {
        tokens: vec![AuthToken::new("team-token")],
        grace_period: Duration::from_secs(60),
        ..ServerConfig::default()
    })
    .await;
    let owner = connect(with(&server, tagged_origin("owner").await, Some("team-token"), Some("shared"))).await;
    let owner = owner.expect("the owner connects");
    let intruder_port = tagged_origin("intruder").await;
    let host = host_of(&owner.url());
    let visitor = Visitor::new(&server);

    // Another holder of the same token asks for the live name: refused, the owner stays.
    let (reason, _) = refused(connect(with(&server, intruder_port, Some("team-token"), Some("shared"))).await);
    assert_eq!(reason, RefuseReason::NameTaken);
    assert_eq!(visitor.get(&host, "/").await, (200, Bytes::from_static(b"owner")));
    assert_eq!(server.stats().tunnels, 1);

    // Once the owner's session has ended, the name is held for the token: it may take it.
    owner.close().await;
    tunnels_become(&server, 0).await;
    let successor = connect(with(&server, intruder_port, Some("team-token"), Some("shared"))).await;
    let successor = successor.expect("the held name goes to the same token");
    assert_eq!(successor.url(), server.tunnel_url("shared"));
    assert_eq!(visitor.get(&host, "/").await, (200, Bytes::from_static(b"intruder")));
}

async fn apex_get(visitor: &Visitor, host: &str, path: &str, bearer: Option<&str>) -> (u16, String) {
    let mut req = Request::get(path);
    if let Some(token) = bearer {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let res = visitor.send(host, req.body(full("")).unwrap()).await;
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn only_the_admin_token_lists_tunnel_names() {
    let server =
        server_with(ServerConfig { admin_token: Some(AuthToken::new("admin-secret")), ..ServerConfig::default() })
            .await;
    let port = tagged_origin("ok").await;
    let basic_auth = Some("alice:secret".to_string());
    let _hidden = connect(ClientConfig { basic_auth, ..with(&server, port, None, Some("hidden-one")) }).await.unwrap();
    let _other = connect(with(&server, port, None, Some("other-two"))).await.unwrap();
    let visitor = Visitor::new(&server);
    let apex = host_of(&server.url());

    // Anyone: counts only.
    for bearer in [None, Some("wrong"), Some("")] {
        let (status, body) = apex_get(&visitor, &apex, "/api/status", bearer).await;
        assert_eq!(status, 200);
        assert!(!body.contains("hidden-one") && !body.contains("other-two"), "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["tunnels"], 2, "{body}");
    }
    // The operator: every tunnel.
    let (status, body) = apex_get(&visitor, &apex, "/api/status", Some("admin-secret")).await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut names: Vec<_> = json["tunnels"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["hidden-one", "other-two"]);

    // /metrics needs the admin token once one is set, and never carries names.
    assert_eq!(apex_get(&visitor, &apex, "/metrics", None).await.0, 401);
    assert_eq!(apex_get(&visitor, &apex, "/metrics", Some("wrong")).await.0, 401);
    let (status, body) = apex_get(&visitor, &apex, "/metrics", Some("admin-secret")).await;
    assert_eq!(status, 200);
    assert!(body.contains("localtunnels_tunnels 2") && !body.contains("hidden-one"), "{body}");

    // A server without an admin token shows counts only, to everyone.
    let open = common::server().await;
    let _t = connect(with(&open, port, None, Some("secret-name"))).await.unwrap();
    let visitor = Visitor::new(&open);
    let (status, body) = apex_get(&visitor, &host_of(&open.url()), "/api/status", Some("anything")).await;
    assert_eq!(status, 200);
    assert!(!body.contains("secret-name"), "{body}");
    let (status, body) = apex_get(&visitor, &host_of(&open.url()), "/metrics", None).await;
    assert_eq!(status, 200);
    assert!(!body.contains("secret-name"), "{body}");
}

/// Standard base64, for Authorization headers.
fn b64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in input.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            out.push(if i <= c.len() { char::from(A[((n >> (18 - 6 * i)) & 63) as usize]) } else { '=' });
        }
    }
    out
}
