//! The server's own pages, on the apex host only: a landing page, `/api/status`
//! (JSON), `/metrics` (Prometheus, [`crate::metrics`]), `/api/tls-check?domain=<host>`
//! (for a proxy's on-demand TLS) and the control endpoint.
//!
//! `/api/status` shows counts only:
//! `{"version":"0.1.0","uptime_secs":42,"streams":3,"tunnels":1,"held":0}`.
//! With the operator's `--admin-token` (`Authorization: Bearer <token>`) it lists every
//! tunnel: `"tunnels":[{"name":"demo","url":"http://demo.localhost:3000",
//! "client":"native","streams":3,"requests":17,"connected_secs":40}]`. Tunnel names are
//! not public: a tunnel behind basic auth or an IP list is still found by its name.
//! `/metrics` carries no names; when an admin token is set it requires it too.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};

use crate::state::{full, text_response, Body, Peer, ServerState};
use crate::visitor_error::{accepts_html, as_html, visitor_error};

/// Serves a request for the apex host.
pub fn handle<B: Send + 'static>(state: Arc<ServerState>, peer: &Peer, req: Request<B>) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (_, localtunnels_driver::CONTROL_PATH) => crate::control::upgrade(state, peer, req),
        (&Method::GET | &Method::HEAD, "/") => landing(&state),
        (&Method::GET | &Method::HEAD, "/api/status") => status(&state, is_admin(&state, &req)),
        (&Method::GET | &Method::HEAD, "/metrics") => {
            if state.config.admin_token.is_some() && !is_admin(&state, &req) {
                return unauthorized();
            }
            let openmetrics = crate::metrics::wants_openmetrics(req.headers().get(header::ACCEPT));
            let (body, content_type) = crate::metrics::render(&state, openmetrics);
            with_type(Response::new(full(body)), content_type)
        }
        (&Method::GET | &Method::HEAD, "/api/tls-check") => tls_check(&state, req.uri().query()),
        (&Method::GET | &Method::HEAD, _) => {
            let res = visitor_error(StatusCode::NOT_FOUND, "There is no page at this address.", None);
            if accepts_html(req.headers()) {
                as_html(res)
            } else {
                res
            }
        }
        _ => text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    }
}

/// Whether `req` carries the configured admin token as `Authorization: Bearer <token>`.
fn is_admin<B>(state: &ServerState, req: &Request<B>) -> bool {
    let Some(token) = &state.config.admin_token else { return false };
    let Some(given) = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else { return false };
    let Some((scheme, secret)) = given.trim().split_once(' ') else { return false };
    scheme.eq_ignore_ascii_case("bearer") && crate::auth::find(std::slice::from_ref(token), secret.trim()).is_some()
}

fn unauthorized() -> Response<Body> {
    let mut res = text_response(StatusCode::UNAUTHORIZED, "this endpoint needs the server's admin token");
    res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

fn with_type(mut res: Response<Body>, content_type: &'static str) -> Response<Body> {
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

fn landing(state: &ServerState) -> Response<Body> {
    let tunnels = state.registry.counts().live;
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

fn status(state: &ServerState, admin: bool) -> Response<Body> {
    let live = state.registry.live();
    let streams: usize = live.iter().map(|t| t.stream_count()).sum();
    if !admin {
        let counts = state.registry.counts();
        let mut body = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": state.started.elapsed().as_secs(),
            "streams": streams,
            "tunnels": counts.live,
            "held": counts.held,
        });
        with_cluster(state, &mut body);
        return with_type(Response::new(full(body.to_string())), "application/json");
    }
    let tunnels: Vec<_> = live
        .iter()
        .map(|t| {
            serde_json::json!({
                "name": t.name,
                "url": state.tunnel_url(&t.name),
                "client": t.client_kind,
                "streams": t.stream_count(),
                "connections": t.connections(),
                "streams_by_connection": t.streams_by_connection(),
                "shard_by_connection": t.shard_by_connection(),
                "cross_shard_opens": t.cross_shard_opens(),
                "requests": t.requests.load(Ordering::Relaxed),
                "connected_secs": t.connected_at.elapsed().as_secs(),
            })
        })
        .collect();
    let mut body = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": state.started.elapsed().as_secs(),
        "streams": streams,
        "tunnels": tunnels,
        "held": state.registry.counts().held,
    });
    with_cluster(state, &mut body);
    with_type(Response::new(full(body.to_string())), "application/json")
}

/// Adds a cluster node's id and lease counts ([`crate::cluster`]) to a status body.
fn with_cluster(state: &ServerState, body: &mut serde_json::Value) {
    if let (Some(c), Some(obj)) = (&state.cluster, body.as_object_mut()) {
        obj.insert("cluster".into(), c.status());
    }
}
