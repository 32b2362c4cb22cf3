//! Helpers for the deployment tests (a real Caddy, nginx or pebble in front of or beside
//! the server): free ports, temp dirs, child processes that say when they are ready,
//! and a visitor that speaks HTTPS from a chosen loopback address.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig as RustlsClient, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;

/// Size of the origin's streamed download.
pub const DOWNLOAD: usize = 4 << 20;
/// Generous bound for a step on a loaded machine.
pub const STEP: Duration = Duration::from_secs(60);

/// A temp dir removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("lt-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port that was free a moment ago, for tools that must be told a port before it is
/// bound (pebble validates challenges on the server's ports, which the server binds only
/// later). Port 0 would give one from the kernel's ephemeral range, where every outgoing
/// connection of the tests running beside this one also takes its local port: one of
/// them can hold it by the time the server binds it (`AddrInUse`, seen under
/// `scripts/test`). So the port comes from below that range, where only callers of this
/// function bind: a spot spread by the process id, then the next ones in turn, each
/// checked free by binding it.
pub fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    const LOWEST: usize = 10_000;
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<usize>().ok())
        .unwrap_or(32_768);
    let span = ephemeral.saturating_sub(LOWEST);
    if span >= 1_000 {
        let start = (std::process::id() as usize).wrapping_mul(7_919);
        for _ in 0..span {
            let offset = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % span;
            let Ok(port) = u16::try_from(LOWEST + offset) else { continue };
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A child process whose stderr and stdout lines are echoed and can be waited for.
pub struct Child {
    pub child: tokio::process::Child,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Child {
    /// Starts `cmd` with `args` in `dir`.
    pub fn spawn(cmd: &str, args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Child {
        // nginx lives in /usr/sbin, which a non-root PATH may lack.
        let program = match Path::new("/usr/sbin").join(cmd) {
            p if p.exists() && !cmd.contains('/') => p,
            _ => PathBuf::from(cmd),
        };
        let mut child = tokio::process::Command::new(&program)
            .args(args)
            .current_dir(dir)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd} (scripts/setup installs it): {e}"));
        let (tx, lines) = mpsc::unbounded_channel();
        let tag = cmd.rsplit('/').next().unwrap_or(cmd).to_string();
        let out = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let err = BufReader::new(child.stderr.take().expect("stderr")).lines();
        for mut lines in [Box::new(out) as Box<dyn LineSource>, Box::new(err)] {
            let (tx, tag) = (tx.clone(), tag.clone());
            tokio::spawn(async move {
                while let Some(line) = lines.next().await {
                    eprintln!("[{tag}] {line}");
                    let _ = tx.send(line);
                }
            });
        }
        Child { child, lines }
    }

    /// Waits for an output line containing `needle`.
    pub async fn wait_for(&mut self, needle: &str) -> String {
        let wait = async {
            loop {
                match self.lines.recv().await {
                    Some(line) if line.contains(needle) => return line,
                    Some(_) => {}
                    None => panic!("the process ended before saying '{needle}'"),
                }
            }
        };
        tokio::time::timeout(STEP, wait).await.unwrap_or_else(|_| panic!("no '{needle}' in time"))
    }
}

trait LineSource: Send {
    fn next(&mut self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send + '_>>;
}

impl<R: tokio::io::AsyncBufRead + Unpin + Send> LineSource for tokio::io::Lines<R> {
    fn next(&mut self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send + '_>> {
        Box::pin(async move { self.next_line().await.ok().flatten() })
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// The origin behind the tunnel: `/ip` answers with the forwarding headers it got,
/// `/download` streams [`DOWNLOAD`] bytes, an upgrade becomes a WebSocket echo.
pub async fn deploy_origin() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req| async move { Ok::<_, Infallible>(answer(req)) });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    port
}

fn answer(mut req: Request<Incoming>) -> Response<Body> {
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("-").to_string();
    if let Some(key) = req.headers().get("sec-websocket-key").cloned() {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(io) = upgrade.await else { return };
            let mut ws =
                tokio_tungstenite::WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None).await;
            while let Some(Ok(msg)) = ws.next().await {
                if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                    break;
                }
            }
        });
        return Response::builder()
            .status(101)
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
            .body(Full::new(Bytes::new()).boxed())
            .expect("101");
    }
    match req.uri().path() {
        "/download" => {
            let chunks = futures_util::stream::iter((0..DOWNLOAD / 65536).map(|i| {
                Ok::<_, Infallible>(Frame::data(Bytes::from(vec![u8::try_from(i % 251).unwrap_or(0); 65536])))
            }));
            Response::new(BodyExt::boxed(StreamBody::new(chunks)))
        }
        _ => {
            let text = format!("for={} proto={}", header("x-forwarded-for"), header("x-forwarded-proto"));
            Response::new(Full::new(Bytes::from(text)).boxed())
        }
    }
}

/// A TCP connection to 127.0.0.1:`port` from the loopback address `from`.
pub async fn tcp_from(from: IpAddr, port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(from, 0)).expect("bind visitor address");
    socket.connect(SocketAddr::from(([127, 0, 0, 1], port))).await.expect("connect")
}

/// A TLS client that trusts only `root`, offering HTTP/1.1.
pub fn tls_client(root: &CertificateDer<'static>) -> TlsConnector {
    tls_client_offering(root, &[b"http/1.1"])
}

/// A TLS client that trusts only `root`, offering the protocols `alpn` (in order).
pub fn tls_client_offering(root: &CertificateDer<'static>, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(root.clone()).expect("root");
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = RustlsClient::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

/// A TLS handshake for `sni` over `tcp`.
pub async fn tls(
    connector: &TlsConnector,
    tcp: TcpStream,
    sni: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = ServerName::try_from(sni.to_string()).expect("server name");
    tokio::time::timeout(STEP, connector.connect(name, tcp)).await.unwrap_or_else(|_| panic!("TLS handshake for {sni}"))
}

/// GET `path` with `Host: host` over `io`; the status and the whole body.
pub async fn get<I>(io: I, host: &str, path: &str) -> (u16, Bytes)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.expect("HTTP handshake");
    tokio::spawn(conn);
    let req = Request::get(path).header("host", host).body(Full::new(Bytes::new())).expect("request");
    let res = tokio::time::timeout(STEP, sender.send_request(req)).await.expect("response in time").expect("response");
    let status = res.status().as_u16();
    let body = tokio::time::timeout(STEP, res.into_body().collect()).await.expect("body in time").expect("body");
    (status, body.to_bytes())
}

/// Checks a download from [`origin`].
pub fn check_download(body: &[u8]) {
    assert_eq!(body.len(), DOWNLOAD);
    for (i, chunk) in body.chunks(65536).enumerate() {
        assert!(chunk.iter().all(|b| usize::from(*b) == i % 251), "chunk {i} corrupted");
    }
}

/// A WebSocket to `wss://host/ws` over `io`: sends a few messages and checks the echoes.
pub async fn websocket_echo<I>(io: I, host: &str)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let url = format!("wss://{host}/ws");
    let (mut ws, res) = tokio::time::timeout(STEP, tokio_tungstenite::client_async(url, io))
        .await
        .expect("WebSocket handshake in time")
        .expect("WebSocket handshake");
    assert_eq!(res.status().as_u16(), 101);
    for i in 0..5 {
        let text = format!("hello {i}");
        ws.send(Message::text(text.clone())).await.expect("send");
        let got = tokio::time::timeout(STEP, ws.next()).await.expect("echo in time").expect("echo").expect("message");
        assert_eq!(got.into_text().expect("text").as_str(), text);
    }
    let big = vec![7u8; 300_000];
    ws.send(Message::binary(big.clone())).await.expect("send");
    let got = tokio::time::timeout(STEP, ws.next()).await.expect("echo in time").expect("echo").expect("message");
    assert_eq!(got.into_data().as_ref(), big.as_slice());
    let _ = ws.close(None).await;
}

/// A certificate authority made for one test.
pub type TestCa = rcgen::CertifiedIssuer<'static, rcgen::KeyPair>;

/// A new CA called `name`.
pub fn test_ca(name: &str) -> TestCa {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().expect("CA key")).expect("CA")
}

/// Writes a new certificate for `names` signed by `ca` to `dir`/cert.pem and its key to
/// `dir`/key.pem (the key first); returns the certificate.
pub fn write_leaf(ca: &TestCa, names: &[String], dir: &Path) -> CertificateDer<'static> {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(names.to_vec()).expect("params").signed_by(&key, ca).expect("leaf");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write key");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write certificate");
    cert.der().clone()
}

/// The fenced block that follows `<!-- tested: TAG -->` in docs/DEPLOY.md, so that a test
/// runs the very configuration the docs show.
pub fn docs_block(tag: &str) -> String {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/DEPLOY.md")).expect("DEPLOY.md");
    let marker = format!("<!-- tested: {tag} -->");
    let after = docs.split_once(&marker).unwrap_or_else(|| panic!("no {marker} in docs/DEPLOY.md")).1;
    let fence = after.split_once("```").expect("a fenced block after the marker").1;
    let body = fence.split_once('\n').expect("the fence's language line").1;
    body.split_once("```").expect("the end of the fenced block").0.to_string()
}
