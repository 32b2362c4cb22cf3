//! Any node serves any visitor (issue 18): a client on node A serves visitors who came
//! in through node C, forwarded over the nodes' HTTP/2 connection, with the visitor's
//! own address for the tunnel's allow list, basic auth and `X-Forwarded-For`; forwarded
//! WebSockets are streams of that same connection (RFC 8441).

mod cli_common;
mod cluster_util;
mod common;
mod websocket_util;

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use cli_common::Proc;
use cluster_util::{node, Redis};
use common::{full, origin, TestBody};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The streamed download: 50 MiB in chunks of 64 KiB, never held whole on either end.
const BIG: usize = 50 << 20;
const CHUNK: usize = 64 << 10;
static CHUNK_BYTES: [u8; CHUNK] = [7u8; CHUNK];

/// A visitor from `from` (a loopback address) to the node at `base`, for `host`.
async fn send(from: [u8; 4], base: &str, host: &str, mut req: Request<TestBody>) -> Response<hyper::body::Incoming> {
    let mut http = HttpConnector::new();
    http.set_local_address(Some(IpAddr::from(from)));
    let client: Client<_, TestBody> = Client::builder(TokioExecutor::new()).build(http);
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    *req.uri_mut() = format!("{base}{path}").parse().unwrap();
    req.headers_mut().insert(hyper::header::HOST, host.parse().unwrap());
    client.request(req).await.expect("visitor request")
}

async fn get(from: [u8; 4], base: &str, host: &str, path: &str, auth: Option<&str>) -> (u16, Bytes) {
    let mut req = Request::get(path);
    if let Some(a) = auth {
        req = req.header(hyper::header::AUTHORIZATION, a);
    }
    let res = send(from, base, host, req.body(full(Bytes::new())).unwrap()).await;
    let status = res.status().as_u16();
    (status, res.into_body().collect().await.expect("body").to_bytes())
}

/// A CLI client of the node at `server` exposing the origin on `port` as `name`.
fn client(server: &str, port: u16, name: &str, extra: &[&str]) -> Proc {
    let port = port.to_string();
    let mut args = vec!["client", "--server", server, "--local-port", &port, "--local-host", "127.0.0.1"];
    args.extend_from_slice(&["--subdomain", name, "--no-state"]);
    args.extend_from_slice(extra);
    Proc::spawn(&args, &[])
}

#[tokio::test]
async fn a_client_on_node_a_serves_a_visitor_who_came_in_through_node_c() {
    let redis = Redis::start().await;
    // Renewal rounds (and so the cluster's counts) every 2 s.
    let (_a, a) = node(&redis, "127.0.0.1", "node-a", &["--lease-ttl", "6"]).await;
    let (_c, c) = node(&redis, "127.0.0.3", "node-c", &["--lease-ttl", "6"]).await;
    let port = origin(|req: Request<hyper::body::Incoming>| async move {
        match req.uri().path() {
            "/xff" => {
                let xff = req.headers().get("x-forwarded-for").map(|v| v.to_str().unwrap_or("").to_string());
                Response::new(full(xff.unwrap_or_default()))
            }
            "/big" => {
                let chunks =
                    (0..BIG / CHUNK).map(|_| Ok::<_, common::BoxError>(Frame::data(Bytes::from_static(&CHUNK_BYTES))));
                Response::new(BodyExt::boxed(StreamBody::new(futures_util::stream::iter(chunks))))
            }
            "/te" => {
                let te = req.headers().get_all("te").iter().map(|v| v.to_str().unwrap_or("?")).collect::<Vec<_>>();
                Response::new(full(te.join("|")))
            }
            "/upload" => {
                let n = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
                Response::new(full(n.to_string()))
            }
            _ => Response::new(full("hello from A's client")),
        }
    })
    .await;
    let mut far = client(&a, port, "far", &["--basic-auth", "user:pass", "--allow-ip", "127.0.0.9/32"]);
    let url = far.line().await;
    assert!(url.starts_with("http://far.localhost:"), "{url}");
    let host = "far.localhost";
    let auth = "Basic dXNlcjpwYXNz"; // user:pass

    // Through node C, from the allowed address, with the password.
    assert_eq!(get([127, 0, 0, 9], &c, host, "/", Some(auth)).await, (200, Bytes::from("hello from A's client")));
    // The origin sees the visitor's address, not node C's.
    assert_eq!(get([127, 0, 0, 9], &c, host, "/xff", Some(auth)).await, (200, Bytes::from("127.0.0.9")));
    // A `TE` that lists `trailers` reaches the origin as `te: trailers` across the
    // nodes' HTTP/2 leg (which takes no other `TE`); any other `TE` does not.
    for (te, seen) in [("trailers, deflate;q=0.5", "trailers"), ("gzip", ""), ("trailers", "trailers")] {
        let req = Request::get("/te").header(hyper::header::AUTHORIZATION, auth).header("te", te);
        let res = send([127, 0, 0, 9], &c, host, req.body(full(Bytes::new())).unwrap()).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), Bytes::from(seen), "TE: {te}");
    }
    // Basic auth and the allow list are applied with the visitor's address.
    assert_eq!(get([127, 0, 0, 9], &c, host, "/", None).await.0, 401);
    assert_eq!(get([127, 0, 0, 8], &c, host, "/", Some(auth)).await.0, 403);
    // A streamed download, counted as it arrives, and a chunked upload.
    let req = Request::get("/big").header(hyper::header::AUTHORIZATION, auth).body(full(Bytes::new())).unwrap();
    let res = send([127, 0, 0, 9], &c, host, req).await;
    assert_eq!(res.status(), 200);
    let (mut body, mut received) = (res.into_body(), 0);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("the download streams to its end").into_data() {
            assert!(data.iter().all(|&b| b == 7));
            received += data.len();
        }
    }
    assert_eq!(received, BIG);
    let chunks = futures_util::stream::iter(
        (0..64).map(|_| Ok::<_, common::BoxError>(Frame::data(Bytes::from(vec![1u8; 16 << 10])))),
    );
    let upload: TestBody = BodyExt::boxed(StreamBody::new(chunks));
    let req = Request::post("/upload").header(hyper::header::AUTHORIZATION, auth).body(upload).unwrap();
    let res = send([127, 0, 0, 9], &c, host, req).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), Bytes::from((64 * (16 << 10)).to_string()));
    // Node C's own unknown names are still 404.
    assert_eq!(get([127, 0, 0, 9], &c, "nothing.localhost", "/", None).await.0, 404);

    // /metrics counts the forwarded requests on both sides; /api/status names the node.
    let out = get([127, 0, 0, 9], &c, "localhost", "/metrics", None).await.1;
    assert!(metric(&String::from_utf8_lossy(&out), "localtunnels_cluster_forwarded_out_total") >= 6);
    let inn = get([127, 0, 0, 9], &a, "localhost", "/metrics", None).await.1;
    assert!(metric(&String::from_utf8_lossy(&inn), "localtunnels_cluster_forwarded_in_total") >= 6);

    // /api/status: the node's own id and leases, and the cluster's counts (a second
    // tunnel on node C; the others' counts arrive with their next renewal round).
    let mut near = client(&c, port, "near", &[]);
    assert!(near.line().await.starts_with("http://near.localhost:"));
    for (base, id) in [(&a, "node-a"), (&c, "node-c")] {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let status = get([127, 0, 0, 9], base, "localhost", "/api/status", None).await.1;
            let status: serde_json::Value = serde_json::from_slice(&status).unwrap();
            let cluster = &status["cluster"];
            assert_eq!(cluster["node_id"], id);
            assert_eq!(cluster["leases"], 1, "{status}");
            if cluster["nodes"] == 2 && cluster["tunnels"] == 2 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "cluster counts never reached 2 nodes, 2 tunnels: {status}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn a_request_claiming_to_come_from_a_node_without_the_secret_is_refused() {
    let redis = Redis::start().await;
    let (_a, a) = node(&redis, "127.0.0.1", "node-a", &[]).await;
    let port = origin(|_req| async move { Response::new(full("origin")) }).await;
    let mut client = client(&a, port, "guarded", &["--allow-ip", "127.0.0.9/32"]);
    assert!(client.line().await.starts_with("http://guarded.localhost:"));
    // A visitor pretending to be a node, naming an allowed visitor address.
    let req = Request::get("/")
        .header("x-localtunnels-node", "0000")
        .header("x-localtunnels-visitor", SocketAddr::from(([127, 0, 0, 9], 1)).to_string())
        .body(full(Bytes::new()))
        .unwrap();
    let res = send([127, 0, 0, 7], &a, "guarded.localhost", req).await;
    assert_eq!(res.status(), 401);
}

/// The value of the counter `name` in a `/metrics` text.
fn metric(text: &str, name: &str) -> u64 {
    let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// How many established TCP connections (IPv4) go to `addr`, from /proc/net/tcp.
fn established_to(addr: SocketAddr) -> usize {
    let IpAddr::V4(ip) = addr.ip() else { panic!("IPv4 only") };
    let remote = format!("{:08X}:{:04X}", u32::from_le_bytes(ip.octets()), addr.port());
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(2) == Some(&remote.as_str()) && f.get(3) == Some(&"01")
        })
        .count()
}

/// Sends `count` text messages and one large binary one over `ws`, checking each echo.
async fn echoes<S>(ws: &mut WebSocketStream<S>, tag: &str, count: usize)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    for i in 0..count {
        ws.send(Message::text(format!("{tag} {i}"))).await.unwrap();
        let echoed = ws.next().await.expect("an echo").unwrap();
        assert_eq!(echoed, Message::text(format!("{tag} {i}")));
    }
}

/// A visitor's WebSocket over HTTP/2 (RFC 8441, as a browser may open one): an
/// extended CONNECT to the node at `addr` for `host`.
async fn h2_websocket(
    addr: &str,
    host: &str,
) -> (WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>, hyper::client::conn::http2::SendRequest<TestBody>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let mut req = Request::connect(format!("http://{host}/chat"))
        .version(hyper::Version::HTTP_2)
        .header("sec-websocket-version", "13")
        .body(full(Bytes::new()))
        .unwrap();
    req.extensions_mut().insert(hyper::ext::Protocol::from_static("websocket"));
    let mut res = send.send_request(req).await.expect("the extended CONNECT is answered");
    assert_eq!(res.status(), 200);
    let upgraded = hyper::upgrade::on(&mut res).await.expect("the stream carries the WebSocket");
    (WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await, send)
}

#[tokio::test]
async fn websockets_through_node_c_share_its_one_connection_to_node_a_with_requests() {
    let redis = Redis::start().await;
    let (_a, a) = node(&redis, "127.0.0.1", "node-a", &[]).await;
    let (_c, c) = node(&redis, "127.0.0.3", "node-c", &[]).await;
    let ws_port = websocket_util::echo_origin().await;
    let mut echo_client = client(&a, ws_port, "echoes", &[]);
    assert!(echo_client.line().await.starts_with("http://echoes.localhost:"));
    let http_port = origin(|_req| async move { Response::new(full("plain")) }).await;
    let mut plain_client = client(&a, http_port, "plain", &[]);
    assert!(plain_client.line().await.starts_with("http://plain.localhost:"));

    let node_c = c.trim_start_matches("http://");
    let url = format!("ws://echoes.localhost:{}/chat", node_c.rsplit(':').next().unwrap());
    // Three visitors' HTTP/1.1 upgrades, open at once, and one over HTTP/2.
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let tcp = tokio::net::TcpStream::connect(node_c).await.unwrap();
        let (ws, res) = tokio_tungstenite::client_async(url.as_str(), tcp).await.expect("the WebSocket opens");
        assert_eq!(res.status(), 101);
        sockets.push(ws);
    }
    let (mut h2, _h2_conn) = h2_websocket(node_c, "echoes.localhost").await;
    // Messages on every socket, interleaved with plain requests through node C.
    for round in 0..5 {
        for (i, ws) in sockets.iter_mut().enumerate() {
            echoes(ws, &format!("socket {i} round {round}"), 4).await;
        }
        echoes(&mut h2, &format!("h2 round {round}"), 4).await;
        assert_eq!(get([127, 0, 0, 9], &c, "plain.localhost", "/", None).await, (200, Bytes::from("plain")));
    }
    sockets[0].send(Message::binary(vec![9u8; 100_000])).await.unwrap();
    assert_eq!(sockets[0].next().await.unwrap().unwrap(), Message::binary(vec![9u8; 100_000]));
    h2.send(Message::binary(vec![8u8; 100_000])).await.unwrap();
    assert_eq!(h2.next().await.unwrap().unwrap(), Message::binary(vec![8u8; 100_000]));

    // Everything went over one connection from node C to node A: node C opened one,
    // and the kernel sees three connections to node A (two clients, one node).
    assert_eq!(established_to(a.trim_start_matches("http://").parse().unwrap()), 3);
    let out = get([127, 0, 0, 9], &c, "localhost", "/metrics", None).await.1;
    let out = String::from_utf8_lossy(&out);
    assert_eq!(metric(&out, "localtunnels_cluster_node_connections_total"), 1, "{out}");
    assert!(metric(&out, "localtunnels_cluster_forwarded_out_total") >= 9, "{out}");
    let inn = get([127, 0, 0, 9], &a, "localhost", "/metrics", None).await.1;
    assert!(metric(&String::from_utf8_lossy(&inn), "localtunnels_cluster_forwarded_in_total") >= 9);
    for mut ws in sockets {
        ws.close(None).await.unwrap();
    }
    h2.close(None).await.unwrap();
}

/// The SETTINGS a server sends first on an HTTP/2 connection (RFC 9113 §6.5), as
/// (identifier, value) pairs: read off the socket, not through an HTTP/2 library, which
/// would apply them out of sight.
async fn http2_settings(addr: &str) -> Vec<(u16, u32)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The client preface, then an empty SETTINGS frame.
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    let mut head = [0u8; 9];
    tcp.read_exact(&mut head).await.unwrap();
    assert_eq!((head[3], head[4]), (0x4, 0x0), "the server's first frame is its SETTINGS (not an ACK)");
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await.unwrap();
    payload
        .chunks_exact(6)
        .map(|s| (u16::from_be_bytes([s[0], s[1]]), u32::from_be_bytes([s[2], s[3], s[4], s[5]])))
        .collect()
}

#[tokio::test]
async fn node_streams_is_the_stream_bound_a_node_advertises_on_http2() {
    const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;
    let redis = Redis::start().await;
    let (_a, a) = node(&redis, "127.0.0.1", "node-a", &["--node-streams", "7"]).await;
    let (_b, b) = node(&redis, "127.0.0.2", "node-b", &[]).await;

    let settings = http2_settings(a.trim_start_matches("http://")).await;
    assert!(settings.contains(&(MAX_CONCURRENT_STREAMS, 7)), "{settings:?}");
    assert!(settings.contains(&(ENABLE_CONNECT_PROTOCOL, 1)), "{settings:?}");
    // The default: 4096 streams per connection.
    let settings = http2_settings(b.trim_start_matches("http://")).await;
    assert!(settings.contains(&(MAX_CONCURRENT_STREAMS, 4096)), "{settings:?}");
}
