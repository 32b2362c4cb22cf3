//! `localtunnels demo`: a server, a small web app and a client in one process.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use localtunnels_client::{ClientConfig, TunnelClient};
use localtunnels_server::{ServerConfig, TunnelServer};
use tokio::net::TcpListener;

/// Runs the demo until Ctrl-C.
pub async fn run(port: u16) -> anyhow::Result<()> {
    let origin = TcpListener::bind("127.0.0.1:0").await?;
    let origin_port = origin.local_addr()?.port();
    tokio::spawn(serve_app(origin));

    let config = ServerConfig { port, bind: [127, 0, 0, 1].into(), ..ServerConfig::default() };
    let server = match TunnelServer::new(config.clone()).start().await {
        Ok(s) => s,
        // The port is busy: any free port will do for a demo, and we say which.
        Err(e) if port != 0 => {
            let server = TunnelServer::new(ServerConfig { port: 0, ..config }).start().await?;
            eprintln!("port {port} is busy ({e}): the demo's server uses port {} instead", server.addr().port());
            server
        }
        Err(e) => return Err(e.into()),
    };
    let client = ClientConfig {
        server: Some(server.url()),
        local_port: origin_port,
        subdomain: Some("demo".into()),
        ..ClientConfig::default()
    };
    let tunnel = TunnelClient::new(client).connect().await?;
    let mut signals = crate::Signals::install();
    eprintln!("localtunnels demo: server {}, app on 127.0.0.1:{origin_port}, public URL:", server.url());
    println!("{}", tunnel.url());
    let url = tunnel.url();
    let (host, port) = host_and_port(&url);
    eprintln!("try: curl {url}   (Ctrl-C to stop)");
    // Browsers and curl resolve every *.localhost name to this machine; glibc's resolver
    // (Node's fetch, Python, wget) does not.
    eprintln!(
        "note: *.localhost names resolve in browsers and curl, not through glibc (Node's fetch, Python): \
         there use http://127.0.0.1:{port} with the header 'Host: {host}', or curl --resolve {host}:{port}:127.0.0.1"
    );
    signals.recv().await;
    tunnel.close().await;
    server.stop().await;
    Ok(())
}

async fn serve_app(listener: TcpListener) {
    while let Ok((tcp, _)) = listener.accept().await {
        tokio::spawn(async move {
            let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                let (content_type, body) = match req.uri().path() {
                    "/api/hello" => ("application/json", r#"{"hello":"world","via":"localtunnels"}"#.to_string()),
                    path => (
                        "text/html; charset=utf-8",
                        format!(
                            "<!doctype html><title>localtunnels demo</title><h1>Hello through localtunnels</h1>\
                             <p>You asked for <code>{}</code>. Try <a href=/api/hello>/api/hello</a>.</p>\n",
                            path.replace('&', "&amp;").replace('<', "&lt;")
                        ),
                    ),
                };
                let mut res = Response::new(Full::new(Bytes::from(body)));
                res.headers_mut()
                    .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
                Ok::<_, Infallible>(res)
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// The host (with no port) and the port of `http://name.localhost:3000`.
fn host_and_port(url: &str) -> (&str, u16) {
    let authority = url.split("://").nth(1).unwrap_or(url).trim_end_matches('/');
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().unwrap_or(80)),
        None => (authority, if url.starts_with("https") { 443 } else { 80 }),
    }
}
