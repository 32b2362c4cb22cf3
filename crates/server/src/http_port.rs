//! The plain-HTTP port beside the TLS one (`--http-port 80`): answers ACME HTTP-01
//! challenges (`/.well-known/acme-challenge/<token>`) and redirects every other request
//! to the same URL over HTTPS (308, so methods and bodies are kept).

use std::convert::Infallible;
use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::debug;

use crate::acme::Acme;
use crate::state::{full, text_response, Body, ServerState};

const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Serves the HTTP port until `shutdown` changes.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ServerState>,
    acme: Option<Arc<Acme>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    debug!(error = %e, "HTTP port: accept failed");
                    localtunnels_driver::timers::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let header_read_timeout = state.config.limits.header_read_timeout;
        let (state, acme) = (state.clone(), acme.clone());
        let service =
            service_fn(move |req| std::future::ready(Ok::<_, Infallible>(answer(&state, acme.as_deref(), &req))));
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(localtunnels_driver::timers::HyperTimer)
                .header_read_timeout(header_read_timeout)
                .serve_connection(TokioIo::new(tcp), service);
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "HTTP port: connection ended with an error");
            }
        });
    }
}

fn answer<B>(state: &ServerState, acme: Option<&Acme>, req: &Request<B>) -> Response<Body> {
    let path = req.uri().path();
    if let Some(token) = path.strip_prefix(CHALLENGE_PREFIX) {
        return match acme.and_then(|a| a.http01_answer(token)) {
            Some(key_authorization) => {
                let mut res = Response::new(full(key_authorization));
                res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
                res
            }
            None => text_response(StatusCode::NOT_FOUND, "no such challenge"),
        };
    }
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let Some(host) = crate::hostnames::normalise(crate::hostnames::strip_port(host)) else {
        return text_response(StatusCode::BAD_REQUEST, "a Host header is required");
    };
    let port = match state.public_port {
        443 => String::new(),
        p => format!(":{p}"),
    };
    let target = format!("https://{host}{port}{}", req.uri().path_and_query().map_or("/", |p| p.as_str()));
    let mut res = text_response(StatusCode::PERMANENT_REDIRECT, format!("this server uses HTTPS: {target}"));
    if let Ok(v) = HeaderValue::from_str(&target) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}
