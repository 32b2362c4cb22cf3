//! The server's own pages live on the apex host only: the landing page,
//! `/api/status` (JSON: version, uptime, streams, tunnels) and `/metrics`
//! (Prometheus text, or OpenMetrics when asked). On a tunnel host every path, these included, is the tunnel's.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::*;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::sync::oneshot;

/// The operator's token: `/api/status` lists tunnels only with it
/// (tests/security_names.rs), and `/metrics` then needs it too.
const ADMIN: &str = "Bearer admin-token";

async fn get_json(visitor: &Visitor, host: &str, path: &str) -> serde_json::Value {
    let res = visitor.send(host, Request::get(path).header("authorization", ADMIN).body(full("")).unwrap()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).expect("JSON")
}

/// `name{labels}` → value, from Prometheus text; checks every line's shape.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            assert!(line.split_whitespace().count() >= 4, "{line}");
            continue;
        }
        let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("metric line: {line}"));
        let name_end = key.find('{').unwrap_or(key.len());
        assert!(key[..name_end].bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'), "{line}");
        out.insert(key.to_string(), value.parse().unwrap_or_else(|_| panic!("value in {line}")));
    }
    out
}

#[tokio::test]
async fn status_and_metrics_describe_the_server() {
    let admin_token = Some(localtunnels_server::AuthToken::new("admin-token"));
    let server = server_with(localtunnels_server::ServerConfig { admin_token, ..Default::default() }).await;
    // The origin holds `/hold` until the test lets go, to see a stream in flight.
    let (held_tx, held_rx) = oneshot::channel::<()>();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let hooks = Arc::new(Mutex::new(Some((held_tx, release_rx))));
    let port = origin(move |req: Request<Incoming>| {
        let hooks = hooks.clone();
        async move {
            if req.uri().path() == "/hold" {
                let (held, release) = hooks.lock().unwrap().take().expect("one hold");
                let _ = held.send(());
                let _ = release.await;
            }
            Response::new(full("ok"))
        }
    })
    .await;
    let one = client(&server, port, Some("one")).await;
    let two = client(&server, port, Some("two")).await;
    let visitor = Visitor::new(&server);
    let apex = host_of(&server.url());

    let status = get_json(&visitor, &apex, "/api/status").await;
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert!(status["uptime_secs"].is_u64());
    assert_eq!(status["streams"], 0);
    let tunnels = status["tunnels"].as_array().expect("tunnels list");
    let mut names: Vec<_> = tunnels.iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["one", "two"]);
    let first = tunnels.iter().find(|t| t["name"] == "one").unwrap();
    assert_eq!(first["url"], one.url());
    assert_eq!(first["client"], "native");

    // One exchange in flight shows as a stream, on the server and on its tunnel.
    let held = {
        let (visitor, host) = (visitor.clone(), host_of(&one.url()));
        tokio::spawn(async move { visitor.get(&host, "/hold").await })
    };
    held_rx.await.unwrap();
    let status = get_json(&visitor, &apex, "/api/status").await;
    assert_eq!(status["streams"], 1);
    let first = status["tunnels"].as_array().unwrap().iter().find(|t| t["name"] == "one").unwrap().clone();
    assert_eq!(first["streams"], 1);
    assert_eq!(first["requests"], 1);
    release_tx.send(()).unwrap();
    assert_eq!(held.await.unwrap().0, 200);

    assert_eq!(visitor.get(&host_of(&server.tunnel_url("ghost")), "/").await.0, 404);
    assert_eq!(visitor.get(&host_of(&two.url()), "/").await.0, 200);
    // A refused handshake (a reserved name) is counted by its reason.
    let reserved = localtunnels_client::ClientConfig { subdomain: Some("www".into()), ..client_config(&server, 1) };
    assert!(localtunnels_client::TunnelClient::new(reserved).connect().await.is_err());
    let res =
        visitor.send(&apex, Request::get("/metrics").header("authorization", ADMIN).body(full("")).unwrap()).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let m = parse_metrics(&text);
    assert_eq!(m["localtunnels_tunnels"], 2.0);
    assert_eq!(m["localtunnels_streams"], 0.0);
    assert_eq!(m["localtunnels_requests_total"], 2.0);
    assert_eq!(m["localtunnels_sessions_total"], 2.0);
    assert_eq!(m["localtunnels_errors_total{status=\"404\"}"], 1.0);
    // Prometheus conventions: process metrics, build info, a duration histogram,
    // bytes both ways, refusals by reason; nothing labelled with a tunnel name.
    let started = m["process_start_time_seconds"];
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(started > now - 600.0 && started <= now + 1.0, "{started} vs {now}");
    for key in ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_max_fds"] {
        assert!(m.contains_key(key), "{key} missing:\n{text}");
    }
    assert!(m["process_resident_memory_bytes"] > 0.0 && m["process_open_fds"] > 0.0);
    assert_eq!(m[&format!("localtunnels_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))], 1.0);
    // The two requests that went through a tunnel (not the 404 of an unknown name).
    assert_eq!(m["localtunnels_request_duration_seconds_count"], 2.0, "{text}");
    assert!(m["localtunnels_request_duration_seconds_sum"] > 0.0);
    assert_eq!(m["localtunnels_request_duration_seconds_bucket{le=\"+Inf\"}"], 2.0);
    assert!(m["localtunnels_tunnel_received_bytes_total"] > 0.0 && m["localtunnels_tunnel_sent_bytes_total"] > 0.0);
    assert_eq!(m["localtunnels_refused_total{reason=\"name_invalid\"}"], 1.0, "{text}");
    assert!(!m.contains_key("localtunnels_uptime_seconds"));
    assert!(text.contains("# TYPE localtunnels_requests_total counter"), "{text}");
    assert!(!text.contains("\"one\"") && !text.contains("\"two\""), "a tunnel name in a label:\n{text}");

    // A scraper that asks for OpenMetrics gets it.
    let req = Request::get("/metrics")
        .header("authorization", ADMIN)
        .header("accept", "application/openmetrics-text;version=1.0.0,*/*;q=0.1");
    let res = visitor.send(&apex, req.body(full("")).unwrap()).await;
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text; version=1.0.0"));
    let text = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(text.ends_with("# EOF\n") && text.contains("# TYPE localtunnels_requests counter"), "{text}");

    let (status, body) = visitor.get(&apex, "/").await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("<h1>localtunnels</h1>"));
    assert_eq!(visitor.get(&apex, "/nothing-here").await.0, 404);
}

#[tokio::test]
async fn a_tunnel_host_owns_every_path() {
    let server = server().await;
    let port = origin(|req: Request<Incoming>| async move {
        Response::builder().header("x-from", "origin").body(full(format!("origin {}", req.uri()))).unwrap()
    })
    .await;
    let tunnel = client(&server, port, Some("mine")).await;
    let visitor = Visitor::new(&server);
    let host = host_of(&tunnel.url());
    for path in ["/", "/status", "/health", "/metrics", "/api/status", "/api/tunnel", "/favicon.ico"] {
        let res = visitor.send(&host, Request::get(path).body(full("")).unwrap()).await;
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()["x-from"], "origin", "{path}");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(String::from_utf8_lossy(&body), format!("origin {path}"));
    }
}
