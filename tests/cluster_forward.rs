//! Any node serves any visitor (issue 18): a client on node A serves visitors who came
//! in through node C, forwarded over the nodes' HTTP/2 connection, with the visitor's
//! own address for the tunnel's allow list, basic auth and `X-Forwarded-For`.

mod cli_common;
mod cluster_util;
mod common;
mod websocket_util;

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use cli_common::Proc;
use cluster_util::{node, Redis};
use common::{full, origin, TestBody};
use http_body_util::BodyExt;
use hyper::{Request, Response};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

const BIG: usize = 8 << 20;

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
    let (_a, a) = node(&redis, "127.0.0.1", "node-a", &[]).await;
    let (_c, c) = node(&redis, "127.0.0.3", "node-c", &[]).await;
    let port = origin(|req: Request<hyper::body::Incoming>| async move {
        match req.uri().path() {
            "/xff" => {
                let xff = req.headers().get("x-forwarded-for").map(|v| v.to_str().unwrap_or("").to_string());
                Response::new(full(xff.unwrap_or_default()))
            }
            "/big" => Response::new(full(vec![7u8; BIG])),
            "/upload" => {
                let n = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
                Response::new(full(n.to_string()))
            }
            _ => Response::new(full("hello from A's client")),
        }
    })
    .await;
    let mut client = client(&a, port, "far", &["--basic-auth", "user:pass", "--allow-ip", "127.0.0.9/32"]);
    let url = client.line().await;
    assert!(url.starts_with("http://far.localhost:"), "{url}");
    let host = "far.localhost";
    let auth = "Basic dXNlcjpwYXNz"; // user:pass

    // Through node C, from the allowed address, with the password.
    assert_eq!(get([127, 0, 0, 9], &c, host, "/", Some(auth)).await, (200, Bytes::from("hello from A's client")));
    // The origin sees the visitor's address, not node C's.
    assert_eq!(get([127, 0, 0, 9], &c, host, "/xff", Some(auth)).await, (200, Bytes::from("127.0.0.9")));
    // Basic auth and the allow list are applied with the visitor's address.
    assert_eq!(get([127, 0, 0, 9], &c, host, "/", None).await.0, 401);
    assert_eq!(get([127, 0, 0, 8], &c, host, "/", Some(auth)).await.0, 403);
    // A streamed download and a chunked upload.
    let (status, body) = get([127, 0, 0, 9], &c, host, "/big", Some(auth)).await;
    assert_eq!((status, body.len()), (200, BIG));
    assert!(body.iter().all(|&b| b == 7));
    let chunks = futures_util::stream::iter(
        (0..64).map(|_| Ok::<_, common::BoxError>(hyper::body::Frame::data(Bytes::from(vec![1u8; 16 << 10])))),
    );
    let upload: TestBody = http_body_util::StreamBody::new(chunks).boxed();
    let req = Request::post("/upload").header(hyper::header::AUTHORIZATION, auth).body(upload).unwrap();
    let res = send([127, 0, 0, 9], &c, host, req).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), Bytes::from((64 * (16 << 10)).to_string()));
    // Node C's own unknown names are still 404.
    assert_eq!(get([127, 0, 0, 9], &c, "nothing.localhost", "/", None).await.0, 404);

    // /metrics counts the forwarded requests on both sides; /api/status names the node.
    let metric = |text: &str, name: &str| -> u64 {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let out = get([127, 0, 0, 9], &c, "localhost", "/metrics", None).await.1;
    assert!(metric(&String::from_utf8_lossy(&out), "localtunnels_cluster_forwarded_out_total") >= 6);
    let inn = get([127, 0, 0, 9], &a, "localhost", "/metrics", None).await.1;
    assert!(metric(&String::from_utf8_lossy(&inn), "localtunnels_cluster_forwarded_in_total") >= 6);
    let status = get([127, 0, 0, 9], &a, "localhost", "/api/status", None).await.1;
    let status: serde_json::Value = serde_json::from_slice(&status).unwrap();
    assert_eq!(status["cluster"]["node_id"], "node-a");
    assert_eq!(status["cluster"]["leases"], 1);
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

#[tokio::test]
async fn a_websocket_through_node_c_reaches_the_origin_behind_node_a() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let redis = Redis::start().await;
    let (_a, a) = node(&redis, "127.0.0.1", "node-a", &[]).await;
    let (_c, c) = node(&redis, "127.0.0.3", "node-c", &[]).await;
    let port = websocket_util::echo_origin().await;
    let mut client = client(&a, port, "echoes", &[]);
    assert!(client.line().await.starts_with("http://echoes.localhost:"));
    let node_c = c.trim_start_matches("http://");
    let tcp = tokio::net::TcpStream::connect(node_c).await.unwrap();
    let url = format!("ws://echoes.localhost:{}/chat", node_c.rsplit(':').next().unwrap());
    let (mut ws, res) = tokio_tungstenite::client_async(url, tcp).await.expect("the WebSocket opens through node C");
    assert_eq!(res.status(), 101);
    for i in 0..20 {
        ws.send(Message::text(format!("message {i}"))).await.unwrap();
        let echoed = ws.next().await.expect("an echo").unwrap();
        assert_eq!(echoed, Message::text(format!("message {i}")));
    }
    ws.send(Message::binary(vec![9u8; 100_000])).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(vec![9u8; 100_000]));
    ws.close(None).await.unwrap();
}
