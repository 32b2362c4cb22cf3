//! Request hygiene at the visitor's edge (issue 17, items 11 and 12), over raw TCP so
//! the requests are exactly what an attacker writes: a malformed chunked body gets 400
//! at once; a request names exactly one host (two `Host` headers, a bracketed
//! non-address, a missing `Host`, a target that disagrees with `Host`: 400, and the
//! origin sees nothing); `Connection: Host` cannot strip the Host that
//! `--host-header preserve` promises; `X-Forwarded-Host` is in normal form.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use hyper::body::Incoming;
use hyper::{HeaderMap, Request, Response};
use localtunnels_client::{ClientHandle, HostHeader, TunnelClient};
use localtunnels_server::{ServerConfig, ServerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The request heads an origin received.
type Seen = Arc<Mutex<Vec<HeaderMap>>>;

/// An origin that records every request's headers and answers 200 `ok` (after reading
/// the whole body).
async fn recording_origin() -> (u16, Seen) {
    let seen = Seen::default();
    let record = seen.clone();
    let port = origin(move |req: Request<Incoming>| {
        let record = record.clone();
        async move {
            record.lock().unwrap().push(req.headers().clone());
            let _ = http_body_util::BodyExt::collect(req.into_body()).await;
            Response::new(full("ok"))
        }
    })
    .await;
    (port, seen)
}

/// A tunnel named `name` to a recording origin, with the Host policy `policy`.
async fn tunnel(server: &ServerHandle, name: &str, policy: HostHeader) -> (ClientHandle, Seen) {
    let (port, seen) = recording_origin().await;
    let config = localtunnels_client::ClientConfig {
        subdomain: Some(name.into()),
        host_header: policy,
        ..client_config(server, port)
    };
    (TunnelClient::new(config).connect().await.expect("tunnel connects"), seen)
}

/// A response as a raw visitor reads it.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
}

/// Writes `request` on a fresh connection and reads the response head (and a
/// `Content-Length` body), within 20 s.
async fn send_raw(server: &ServerHandle, request: &str) -> Raw {
    let exchange = async {
        let mut tcp = TcpStream::connect(("127.0.0.1", server.addr().port())).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let status = head.get(9..12).and_then(|s| s.parse().ok()).expect("a status line");
                return Raw { status, head };
            }
            match tcp.read(&mut chunk).await.unwrap() {
                0 => panic!("connection closed before a response head: {:?}", String::from_utf8_lossy(&buf)),
                n => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), exchange).await.expect("a response within 20 s")
}

/// The value of `localtunnels_errors_total{status="400"}` on `/metrics`.
async fn errors_400(server: &ServerHandle) -> u64 {
    let (_, body) = Visitor::new(server).get(&host_of(&server.url()), "/metrics").await;
    let text = String::from_utf8_lossy(&body).into_owned();
    let line = text.lines().find(|l| l.starts_with("localtunnels_errors_total{status=\"400\"}"));
    line.and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn a_malformed_chunked_body_gets_400_at_once() {
    // A response timeout far beyond the test's patience: only an immediate answer passes.
    let config = ServerConfig { response_timeout: Duration::from_secs(120), ..ServerConfig::default() };
    let server = server_with(config).await;
    let (demo, _seen) = tunnel(&server, "demo", HostHeader::Rewrite).await;
    let host = host_of(&demo.url());
    let before = errors_400(&server).await;
    let request = format!("POST /upload HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    let res = send_raw(&server, &request).await;
    assert_eq!(res.status, 400, "{}", res.head);
    assert_eq!(errors_400(&server).await, before + 1, "counted as a 400");
    // The same after a good chunk.
    let request =
        format!("POST /upload HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1x\r\n");
    assert_eq!(send_raw(&server, &request).await.status, 400);
    // A well-formed chunked upload still goes through.
    let request =
        format!("POST /upload HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    assert_eq!(send_raw(&server, &request).await.status, 200);
}

#[tokio::test]
async fn a_request_names_exactly_one_host() {
    let server = server().await;
    let (demo, demo_seen) = tunnel(&server, "demo", HostHeader::Preserve).await;
    let (_other, other_seen) = tunnel(&server, "other", HostHeader::Preserve).await;
    let host = host_of(&demo.url());
    let port = server.addr().port();
    let before = errors_400(&server).await;
    let refused = [
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nHost: {host}\r\n\r\n"),
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nHost: other.localhost:{port}\r\n\r\n"),
        "GET / HTTP/1.1\r\nHost: [demo.localhost]:80\r\n\r\n".to_string(),
        format!("GET / HTTP/1.1\r\nHost: [demo.localhost]:{port}\r\n\r\n"),
        format!("GET / HTTP/1.1\r\nHost: demo.localhost:{port}0000\r\n\r\n"),
        format!("GET / HTTP/1.1\r\nHost: user@{host}\r\n\r\n"),
        "GET / HTTP/1.1\r\n\r\n".to_string(),
        // An absolute-form target naming another tunnel than Host (or another port).
        format!("GET http://other.localhost:{port}/ HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        format!("GET http://{host}/ HTTP/1.1\r\nHost: other.localhost:{port}\r\n\r\n"),
        format!("GET http://demo.localhost:1/ HTTP/1.1\r\nHost: {host}\r\n\r\n"),
    ];
    for request in &refused {
        let res = send_raw(&server, request).await;
        assert_eq!(res.status, 400, "{request:?} got {}", res.head);
    }
    assert_eq!(errors_400(&server).await, before + refused.len() as u64, "each counted as a 400");
    assert!(demo_seen.lock().unwrap().is_empty(), "a refused request reached the origin");
    assert!(other_seen.lock().unwrap().is_empty(), "a refused request reached another tunnel");

    // An absolute-form target that agrees with Host (case, trailing dot) is served.
    let request = format!("GET http://DEMO.localhost.:{port}/x HTTP/1.1\r\nHost: {host}\r\n\r\n");
    assert_eq!(send_raw(&server, &request).await.status, 200);
    let seen = demo_seen.lock().unwrap().pop().expect("the origin got the request");
    assert_eq!(seen.get_all("host").iter().collect::<Vec<_>>(), [host.as_str()]);
}

#[tokio::test]
async fn preserve_keeps_the_one_host_and_forwarded_host_is_normal() {
    let server = server().await;
    let (demo, seen) = tunnel(&server, "demo", HostHeader::Preserve).await;
    let host = host_of(&demo.url());
    let port = server.addr().port();
    // `Connection: Host` does not strip Host on the way to the origin.
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: Host, keep-alive\r\n\r\n");
    assert_eq!(send_raw(&server, &request).await.status, 200);
    let h = seen.lock().unwrap().pop().expect("the origin got the request");
    assert_eq!(h.get_all("host").iter().collect::<Vec<_>>(), [host.as_str()]);
    assert_eq!(h["x-forwarded-host"], host.as_str());

    // X-Forwarded-Host: lowercase, no trailing dot, the port only when not the default.
    let cases = [
        (format!("DEMO.LocalHost.:{port}"), format!("demo.localhost:{port}")),
        ("Demo.localhost.:80".to_string(), "demo.localhost".to_string()),
        ("demo.localhost".to_string(), "demo.localhost".to_string()),
    ];
    for (sent, expected) in cases {
        let request = format!("GET / HTTP/1.1\r\nHost: {sent}\r\n\r\n");
        assert_eq!(send_raw(&server, &request).await.status, 200, "{sent}");
        let h = seen.lock().unwrap().pop().expect("the origin got the request");
        assert_eq!(h["x-forwarded-host"], expected.as_str(), "Host: {sent}");
        // Preserve passes the visitor's own Host on, and only one.
        assert_eq!(h.get_all("host").iter().collect::<Vec<_>>(), [sent.as_str()]);
    }
}

/// The targets an origin received.
type Targets = Arc<Mutex<Vec<String>>>;

#[tokio::test]
async fn a_target_goes_on_as_http_reads_it_and_a_malformed_one_gets_400() {
    // The HTTP/1 path reads an origin-form target without building a `Uri`
    // (docs/BENCHMARKS.md, twentieth round): the same targets refused, the same sent on.
    let server = server().await;
    let targets = Targets::default();
    let record = targets.clone();
    let port = origin(move |req: Request<Incoming>| {
        let record = record.clone();
        async move {
            record.lock().unwrap().push(req.uri().to_string());
            Response::new(full("ok"))
        }
    })
    .await;
    let demo = client(&server, port, Some("demo")).await;
    let host = host_of(&demo.url());
    // Bytes `http` refuses in a path (`<`, `>`, `` ` ``) or a query (`<`, `>`).
    let refused = ["/a<b", "/a>b", "/a`b", "/a?b<c", "/a?b>c", "/<#f"];
    for target in refused {
        let res = send_raw(&server, &format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n")).await;
        assert_eq!(res.status, 400, "{target:?} got {}", res.head);
    }
    assert!(targets.lock().unwrap().is_empty(), "a refused target reached the origin");
    // Taken as sent, a fragment cut off (whatever it holds).
    let served = [
        ("/a?b=1#frag<>?x", "/a?b=1"),
        ("/#f", "/"),
        ("/x#", "/x"),
        ("/{\"j\":1}|^~?q=??`{}", "/{\"j\":1}|^~?q=??`{}"),
        ("/caf\u{e9}?q=\u{e9}", "/caf\u{e9}?q=\u{e9}"),
        ("/%20/a;b=c@d", "/%20/a;b=c@d"),
    ];
    for (target, _) in served {
        let res = send_raw(&server, &format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n")).await;
        assert_eq!(res.status, 200, "{target:?} got {}", res.head);
    }
    let seen = targets.lock().unwrap().clone();
    let sent: Vec<String> = served.iter().map(|(_, on)| on.to_string()).collect();
    assert_eq!(seen, sent);
}
