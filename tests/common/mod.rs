//! Shared harness for the end-to-end tests: an in-process server on port 0, origins,
//! tunnel clients and a visitor, all on 127.0.0.1. Nothing sleeps: every step waits on
//! a readiness signal (a bound listener, a welcome, a printed line).

#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::process::Stdio;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use localtunnels_client::{ClientConfig, ClientHandle, TunnelClient};
use localtunnels_server::{ServerConfig, ServerHandle, TunnelServer};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type TestBody = BoxBody<Bytes, BoxError>;

/// A server on 127.0.0.1, port 0, domain `localhost`.
pub async fn server() -> ServerHandle {
    server_with(ServerConfig::default()).await
}

/// A server with `config`, forced onto 127.0.0.1 and port 0.
pub async fn server_with(config: ServerConfig) -> ServerHandle {
    let config = ServerConfig { port: 0, bind: [127, 0, 0, 1].into(), ..config };
    TunnelServer::new(config).start().await.expect("server starts")
}

/// An HTTP origin on 127.0.0.1:0 answering with `handler`. Returns its port.
pub async fn origin<F, Fut>(handler: F) -> u16
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<TestBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
    let port = listener.local_addr().expect("origin addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    port
}

/// A complete body.
pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// A client config pointing at `server`, exposing `local_port`.
pub fn client_config(server: &ServerHandle, local_port: u16) -> ClientConfig {
    ClientConfig {
        server: Some(format!("http://127.0.0.1:{}", server.addr().port())),
        local_host: "127.0.0.1".into(),
        local_port,
        ..ClientConfig::default()
    }
}

/// A connected tunnel client exposing `local_port` through `server`.
pub async fn client(server: &ServerHandle, local_port: u16, subdomain: Option<&str>) -> ClientHandle {
    let config = ClientConfig { subdomain: subdomain.map(str::to_string), ..client_config(server, local_port) };
    TunnelClient::new(config).connect().await.expect("tunnel connects")
}

/// The Host header visitors use for `tunnel_url` (e.g. `demo.localhost:1234`).
pub fn host_of(url: &str) -> String {
    url.split("://").nth(1).unwrap_or(url).trim_end_matches('/').to_string()
}

/// A visitor: an HTTP/1.1 client that connects to the server's address and sets Host.
#[derive(Clone)]
pub struct Visitor {
    addr: SocketAddr,
    client: Client<HttpConnector, TestBody>,
}

impl Visitor {
    pub fn new(server: &ServerHandle) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], server.addr().port()));
        Visitor { addr, client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()) }
    }

    /// Sends `req` (whose URI is a path) to `host` through the server.
    pub async fn send(&self, host: &str, req: Request<TestBody>) -> Response<Incoming> {
        self.try_send(host, req).await.expect("visitor request")
    }

    /// [`Visitor::send`], for requests the server may rightly cut short (an upload
    /// answered early, then the connection closed).
    pub async fn try_send(
        &self,
        host: &str,
        mut req: Request<TestBody>,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
        *req.uri_mut() = format!("http://{}{path}", self.addr).parse().expect("uri");
        req.headers_mut().insert(hyper::header::HOST, host.parse().expect("host"));
        self.client.request(req).await
    }

    /// GET `path` on `host`; returns status and body.
    pub async fn get(&self, host: &str, path: &str) -> (u16, Bytes) {
        let req = Request::get(path).body(full(Bytes::new())).expect("request");
        let res = self.send(host, req).await;
        let status = res.status().as_u16();
        (status, res.into_body().collect().await.expect("body").to_bytes())
    }
}

/// A `localtunnels` process; stdout lines are read one at a time.
pub struct Cli {
    pub child: tokio::process::Child,
    pub stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Cli {
    /// Starts the binary with `args` (stderr inherited so failures show in test output).
    pub fn spawn(args: &[&str]) -> Cli {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_localtunnels"))
            .args(args)
            .env_remove("LOCALTUNNELS_PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn localtunnels");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Cli { child, stdout }
    }

    /// The next line on stdout (panics at EOF).
    pub async fn line(&mut self) -> String {
        self.stdout.next_line().await.expect("read stdout").expect("a line on stdout")
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        }
    }
}

/// An origin that holds every request for `/hold...` until `release` is notified,
/// adding a permit to `arrived` for each; answers `answered <path>`.
pub async fn holding_origin(
    arrived: std::sync::Arc<tokio::sync::Semaphore>,
    release: std::sync::Arc<tokio::sync::Notify>,
) -> u16 {
    origin(move |req: hyper::Request<hyper::body::Incoming>| {
        let (arrived, release) = (arrived.clone(), release.clone());
        async move {
            let path = req.uri().path().to_string();
            if path.starts_with("/hold") {
                let released = release.notified();
                arrived.add_permits(1);
                released.await;
            }
            hyper::Response::new(full(format!("answered {path}")))
        }
    })
    .await
}

/// The admin status's entry for the tunnel `name` (null when there is none), asked over
/// `admin` (a client the caller keeps: a kept-alive one adds no connection per call)
/// with the admin token `token`.
pub async fn tunnel_status(
    admin: &Client<HttpConnector, TestBody>,
    server: &ServerHandle,
    token: &str,
    name: &str,
) -> serde_json::Value {
    let port = server.addr().port();
    let req = hyper::Request::get(format!("http://127.0.0.1:{port}/api/status"))
        .header("host", format!("localhost:{port}"))
        .header("authorization", format!("Bearer {token}"))
        .body(full(Bytes::new()))
        .unwrap();
    let res = admin.request(req).await.expect("status request");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let status: serde_json::Value = serde_json::from_slice(&body).expect("status is JSON");
    status["tunnels"]
        .as_array()
        .and_then(|list| list.iter().find(|t| t["name"] == name).cloned())
        .unwrap_or(serde_json::Value::Null)
}

/// Waits until the server counts `n` live tunnels; panics after 20 s.
pub async fn tunnels_become(server: &ServerHandle, n: usize) {
    tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while server.stats().tunnels != n {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the server never counted {n} tunnels (has {})", server.stats().tunnels));
}

/// Reads until the server closes the connection; false if it stays open 20 s.
pub async fn closed_by_server(tcp: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), read_all).await.is_ok()
}
