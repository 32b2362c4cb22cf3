//! The server's own pages, on the apex host only: a landing page, `/api/status`
//! (JSON), `/metrics` (Prometheus text), `/api/tls-check?domain=<host>` (for a
//! proxy's on-demand TLS) and the control endpoint.
//!
//! `/api/status` looks like
//! `{"version":"0.1.0","uptime_secs":42,"streams":3,"tunnels":[{"name":"demo",
//! "url":"http://demo.localhost:3000","client":"native","streams":3,"requests":17,
//! "connected_secs":40}]}`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};

use crate::state::{full, text_response, Body, Peer, ServerState};

/// Serves a request for the apex host.
pub fn handle<B: Send + 'static>(state: Arc<ServerState>, peer: &Peer, req: Request<B>) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (_, localtunnels_driver::CONTROL_PATH) => crate::control::upgrade(state, peer, req),
        (&Method::GET | &Method::HEAD, "/") => landing(&state),
        (&Method::GET | &Method::HEAD, "/api/status") => status(&state),
        (&Method::GET | &Method::HEAD, "/metrics") => metrics(&state),
        (&Method::GET | &Method::HEAD, "/api/tls-check") => tls_check(&state, req.uri().query()),
        (&Method::GET | &Method::HEAD, _) => text_response(StatusCode::NOT_FOUND, "not found"),
        _ => text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    }
}

fn with_type(mut res: Response<Body>, content_type: &'static str) -> Response<Body> {
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

fn landing(state: &ServerState) -> Response<Body> {
    let tunnels = state.registry.live().len();
    let apex = state.apex_url();
    let html = format!(
        "<!doctype html><meta charset=utf-8><title>localtunnels</title>\
         <h1>localtunnels</h1><p>This server gives public URLs to local servers. \
         {tunnels} tunnel(s) connected.</p>\
         <pre>localtunnels client --server {apex} --local-port 8000</pre>\
         <p><a href=/api/status>/api/status</a> · <a href=/metrics>/metrics</a></p>\n"
    );
    with_type(Response::new(full(html)), "text/html; charset=utf-8")
}

/// `GET /api/tls-check?domain=<host>`: 200 when the server answers for `host` (so a
/// proxy in front may get it a certificate), 404 otherwise ([`crate::hostnames`]).
fn tls_check(state: &ServerState, query: Option<&str>) -> Response<Body> {
    let domain = query.into_iter().flat_map(|q| q.split('&')).find_map(|pair| pair.strip_prefix("domain="));
    match domain {
        None => text_response(StatusCode::BAD_REQUEST, "missing ?domain=<host>"),
        Some(host) if crate::hostnames::is_served(state, host) => text_response(StatusCode::OK, "ok"),
        Some(_) => text_response(StatusCode::NOT_FOUND, "no tunnel with this host name"),
    }
}

fn status(state: &ServerState) -> Response<Body> {
    let live = state.registry.live();
    let tunnels: Vec<_> = live
        .iter()
        .map(|t| {
            serde_json::json!({
                "name": t.name,
                "url": state.tunnel_url(&t.name),
                "client": t.client_kind,
                "streams": t.conn.stream_count(),
                "requests": t.requests.load(Ordering::Relaxed),
                "connected_secs": t.connected_at.elapsed().as_secs(),
            })
        })
        .collect();
    let streams: usize = live.iter().map(|t| t.conn.stream_count()).sum();
    let body = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": state.started.elapsed().as_secs(),
        "streams": streams,
        "tunnels": tunnels,
    });
    with_type(Response::new(full(body.to_string())), "application/json")
}

fn metrics(state: &ServerState) -> Response<Body> {
    let c = &state.counters;
    let live = state.registry.live();
    let streams: usize = live.iter().map(|t| t.conn.stream_count()).sum();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
    };
    metric("localtunnels_tunnels", "gauge", "Tunnels connected.", live.len() as u64);
    metric("localtunnels_streams", "gauge", "Streams in flight.", streams as u64);
    metric("localtunnels_uptime_seconds", "gauge", "Seconds since start.", state.started.elapsed().as_secs());
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    metric("localtunnels_requests_total", "counter", "Visitor HTTP requests.", load(&c.requests));
    metric("localtunnels_websockets_total", "counter", "Visitor WebSockets.", load(&c.websockets));
    metric("localtunnels_sessions_total", "counter", "Tunnel sessions accepted.", load(&c.sessions));
    metric("localtunnels_refused_total", "counter", "Tunnel handshakes refused.", load(&c.refused));
    out.push_str("# HELP localtunnels_errors_total Errors answered by the server, by status.\n");
    out.push_str("# TYPE localtunnels_errors_total counter\n");
    let by_status = [
        (401, &c.unauthorized),
        (403, &c.forbidden),
        (404, &c.not_found),
        (413, &c.too_large),
        (429, &c.rate_limited),
        (502, &c.bad_gateway),
        (503, &c.unavailable),
        (504, &c.timeouts),
    ];
    for (status, v) in by_status {
        out.push_str(&format!("localtunnels_errors_total{{status=\"{status}\"}} {}\n", load(v)));
    }
    if let Some(acme) = state.tls.as_ref().and_then(|t| t.acme.as_ref()) {
        acme.metrics(&mut out);
    }
    with_type(Response::new(full(out)), "text/plain; version=0.0.4")
}
