//! Routing: every request on a kept-alive visitor connection goes where its own Host
//! header says; many tunnels on one server carry hundreds of concurrent requests each
//! without cross-talk.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::net::TcpStream;

/// An origin that answers `<name> <method> <path> <body>`.
async fn named_origin(name: &'static str) -> u16 {
    origin(move |req: Request<Incoming>| async move {
        let head = format!("{name} {} {}", req.method(), req.uri());
        let body = req.into_body().collect().await.unwrap().to_bytes();
        Response::new(full(format!("{head} {}", String::from_utf8_lossy(&body))))
    })
    .await
}

#[tokio::test]
async fn each_request_on_a_kept_alive_connection_is_routed_by_its_own_host() {
    let server = server().await;
    let alpha = client(&server, named_origin("alpha").await, Some("alpha")).await;
    let beta = client(&server, named_origin("beta").await, Some("beta")).await;
    let (alpha, beta) = (host_of(&alpha.url()), host_of(&beta.url()));
    let apex = host_of(&server.url());
    let nobody = host_of(&server.tunnel_url("nobody"));

    let tcp = TcpStream::connect(("127.0.0.1", server.addr().port())).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let steps: [(&str, &str, &str, u16, &str); 7] = [
        (&alpha, "GET", "/one", 200, "alpha GET /one "),
        (&beta, "POST", "/two?x=1", 200, "beta POST /two?x=1 body"),
        (&alpha, "PUT", "/three", 200, "alpha PUT /three body"),
        (&nobody, "GET", "/", 404, "404 Not Found: There is no tunnel named 'nobody' on this server. (request id "),
        (&apex, "GET", "/metrics", 200, "# HELP"),
        (&beta, "GET", "/four", 200, "beta GET /four "),
        (&alpha, "DELETE", "/five", 200, "alpha DELETE /five "),
    ];
    for (host, method, path, status, expected) in steps {
        let body = if method == "POST" || method == "PUT" { "body" } else { "" };
        let req = Request::builder().method(method).uri(path).header("host", host).body(full(body)).unwrap();
        sender.ready().await.expect("the same connection stays usable");
        let res = sender.send_request(req).await.expect("response");
        assert_eq!(res.status(), status, "{host} {path}");
        let got = res.into_body().collect().await.unwrap().to_bytes();
        assert!(got.starts_with(expected.as_bytes()), "{host} {path}: {got:?}");
    }
}

/// A kept-alive visitor connection keeps its last route only while the registry does
/// not change (`visitor_h1/route.rs`): when the client's session is replaced by its
/// successor (the same reconnect token), the next request on it reaches the new one.
#[tokio::test]
async fn a_kept_alive_connection_follows_its_tunnel_to_a_new_session() {
    let server = server().await;
    let first = client(&server, named_origin("first").await, Some("moving")).await;
    let host = host_of(&first.url());

    let tcp = TcpStream::connect(("127.0.0.1", server.addr().port())).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let mut get = async |path: &str| {
        let req = Request::get(path).header("host", &host).body(full(Bytes::new())).unwrap();
        sender.ready().await.expect("the same connection stays usable");
        let res = sender.send_request(req).await.expect("response");
        let status = res.status().as_u16();
        (status, res.into_body().collect().await.unwrap().to_bytes())
    };
    assert_eq!(get("/a").await, (200, Bytes::from_static(b"first GET /a ")));
    assert_eq!(get("/b").await, (200, Bytes::from_static(b"first GET /b ")));

    let config = localtunnels_client::ClientConfig {
        subdomain: Some("moving".into()),
        reconnect_token: Some(first.reconnect_token()),
        ..client_config(&server, named_origin("second").await)
    };
    let second = localtunnels_client::TunnelClient::new(config).connect().await.expect("the successor connects");
    assert_eq!(host_of(&second.url()), host);
    assert_eq!(get("/c").await, (200, Bytes::from_static(b"second GET /c ")));
    assert_eq!(get("/d").await, (200, Bytes::from_static(b"second GET /d ")));
    second.close().await;
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tunnels_many_concurrent_requests_no_cross_talk() {
    const TUNNELS: usize = 8;
    const PER_TUNNEL: usize = 200;
    let server = server().await;
    let mut tunnels = Vec::new();
    for t in 0..TUNNELS {
        // Each origin holds every request until all PER_TUNNEL of its tunnel arrived:
        // they are all in flight through the tunnel at once.
        let barrier = Arc::new(tokio::sync::Barrier::new(PER_TUNNEL));
        let port = origin(move |req: Request<Incoming>| {
            let barrier = barrier.clone();
            async move {
                let id = req.headers()["x-request-id"].to_str().unwrap().to_string();
                let path = req.uri().path().to_string();
                let body = req.into_body().collect().await.unwrap().to_bytes();
                barrier.wait().await;
                let mut res = Response::new(full(format!("tunnel-{t} {path} {id} {}", String::from_utf8_lossy(&body))));
                res.headers_mut().insert("x-request-id", id.parse().unwrap());
                res
            }
        })
        .await;
        tunnels.push(client(&server, port, Some(&format!("tunnel-{t}"))).await);
    }
    let visitor = Visitor::new(&server);
    let mut tasks = tokio::task::JoinSet::new();
    for (t, tunnel) in tunnels.iter().enumerate() {
        let host = host_of(&tunnel.url());
        for i in 0..PER_TUNNEL {
            let (visitor, host) = (visitor.clone(), host.clone());
            tasks.spawn(async move {
                let id = format!("{t}-{i}");
                let body = format!("payload-{}", "x".repeat(i % 50));
                let req =
                    Request::post(format!("/req/{i}")).header("x-request-id", &id).body(full(body.clone())).unwrap();
                let res = visitor.send(&host, req).await;
                assert_eq!(res.status(), 200);
                assert_eq!(res.headers()["x-request-id"], id.as_str());
                let got = res.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(got, Bytes::from(format!("tunnel-{t} /req/{i} {id} {body}")));
            });
        }
    }
    let all = async {
        while let Some(done) = tasks.join_next().await {
            done.expect("request task");
        }
    };
    // A guard against a hang (a lost request would keep its barrier closed).
    tokio::time::timeout(Duration::from_secs(120), all).await.expect("all requests answered");
    assert_eq!(server.stats().requests, (TUNNELS * PER_TUNNEL) as u64);
}
