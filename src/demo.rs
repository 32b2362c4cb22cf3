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
        // The default port is busy: any free port will do for a demo.
        Err(_) if port != 0 => TunnelServer::new(ServerConfig { port: 0, ..config }).start().await?,
        Err(e) => return Err(e.into()),
    };
    let client = ClientConfig {
        server: Some(server.url()),
        local_port: origin_port,
        subdomain: Some("demo".into()),
        ..ClientConfig::default()
    };
    let tunnel = TunnelClient::new(client).connect().await?;
    let signal = crate::shutdown_signal();
    eprintln!("localtunnels demo: server {}, app on 127.0.0.1:{origin_port}, public URL:", server.url());
    println!("{}", tunnel.url());
    eprintln!("try: curl {}   (Ctrl-C to stop)", tunnel.url());
    signal.await;
    tunnel.close().await;
    server.stop().await;
    Ok(())
}

async fn serve_app(listener: TcpListener) {
    while let Ok((tcp, _)) = listener.accept().await {
        tokio::spawn(async move {
            let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                let body = match req.uri().path() {
                    "/api/hello" => r#"{"hello":"world","via":"localtunnels"}"#.to_string(),
                    path => format!(
                        "<!doctype html><title>localtunnels demo</title><h1>Hello through localtunnels</h1>\
                         <p>You asked for <code>{}</code>. Try <a href=/api/hello>/api/hello</a>.</p>\n",
                        path.replace('<', "&lt;")
                    ),
                };
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}
