//! The request inspector of `localtunnels client`, over real sockets: the agent API
//! with ngrok's paths and field names (read the way scripts read it), replay reaching
//! the origin, clearing, the loopback-only rule, and the bounds (a 1 GiB download
//! keeps the client's RSS within 40 MiB, many requests keep the store within its bytes, and
//! thousands of small captures keep the client within 40 MiB with a 4 MiB store, and
//! so do large responses after small ones with the default store), and responses of
//! every shape recorded as the visitor got them.

mod cli_common;
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use cli_common::{server, Proc};
use common::{full, host_of, origin, TestBody};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use serde_json::Value;

type HttpClient = hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, TestBody>;

fn http_client() -> HttpClient {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new())
}

/// Sends `method url` with `headers` and `body`: status and body.
async fn call(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> (u16, Bytes) {
    let mut req = Request::builder().method(method).uri(url);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let res = http_client().request(req.body(full(body.to_string())).unwrap()).await.unwrap();
    let status = res.status().as_u16();
    (status, res.into_body().collect().await.unwrap().to_bytes())
}

/// GET `url` as JSON.
async fn get_json(url: &str) -> Value {
    let (status, body) = call("GET", url, &[], "").await;
    assert_eq!(status, 200, "{url}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// A tunnel client process with its inspector on a free port: the process, its
/// public URL and the inspector's base URL (from the `inspect:` line on stderr).
async fn client(server_port: u16, origin_port: u16, extra: &[&str]) -> (Proc, String, String) {
    let server = format!("http://127.0.0.1:{server_port}");
    let origin = origin_port.to_string();
    let mut args = vec!["client", "--server", &server, "--local-host", "127.0.0.1", "--local-port", &origin];
    args.extend_from_slice(&["--inspect-addr", "127.0.0.1:0"]);
    args.extend_from_slice(extra);
    let mut proc = Proc::spawn(&args, &[]);
    let public = proc.line().await;
    let line = proc.stderr_line("inspect: ").await;
    let inspect = line.trim().strip_prefix("inspect: ").unwrap().to_string();
    assert!(inspect.starts_with("http://127.0.0.1:"), "{line}");
    (proc, public, inspect)
}

/// What the origin saw: each request's method, path and body.
type Seen = Arc<Mutex<Vec<(String, String, Bytes)>>>;

/// An origin that records every request and answers with JSON.
async fn recording_origin() -> (u16, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let port = origin(move |req: Request<Incoming>| {
        let log = log.clone();
        async move {
            let (method, path) = (req.method().to_string(), req.uri().to_string());
            let body = req.into_body().collect().await.unwrap().to_bytes();
            log.lock().unwrap().push((method, path.clone(), body));
            Response::builder()
                .header("content-type", "application/json")
                .header("set-cookie", "session=abc")
                .body(full(format!(r#"{{"path":"{path}","ok":true}}"#)))
                .unwrap()
        }
    })
    .await;
    (port, seen)
}

fn decode(raw: &Value) -> String {
    let bytes = base64::engine::general_purpose::STANDARD.decode(raw.as_str().unwrap()).unwrap();
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn the_agent_api_lists_requests_in_ngrok_shape_and_replays_them_to_the_origin() {
    let (_server, port) = server(&[]).await;
    let (origin_port, seen) = recording_origin().await;
    let (mut proc, public, inspect) = client(port, origin_port, &["--subdomain", "inspected"]).await;
    let host = host_of(&public);

    // The way scripts find the public URL: GET /api/tunnels, tunnels[0].public_url.
    let tunnels = get_json(&format!("{inspect}/api/tunnels")).await;
    let t = &tunnels["tunnels"][0];
    assert_eq!(t["public_url"], public, "{tunnels}");
    assert_eq!((t["name"].as_str(), t["proto"].as_str()), (Some("inspected"), Some("http")));
    assert_eq!(t["config"]["addr"], format!("http://127.0.0.1:{origin_port}"));
    assert_eq!(t["config"]["inspect"], true);

    let url = format!("http://127.0.0.1:{port}/orders?x=1");
    let sent = r#"{"item":"tea","qty":2}"#;
    let (status, _) = call("POST", &url, &[("host", &host), ("content-type", "application/json")], sent).await;
    assert_eq!(status, 200);

    let list = get_json(&format!("{inspect}/api/requests/http?limit=10&tunnel_name=inspected")).await;
    assert_eq!(list["uri"], "/api/requests/http");
    let entries = list["requests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{list}");
    let e = &entries[0];
    let id = e["id"].as_str().unwrap().to_string();
    assert_eq!(e["uri"], format!("/api/requests/http/{id}"));
    assert_eq!(e["tunnel_name"], "inspected");
    assert_eq!(e["remote_addr"], "127.0.0.1");
    assert!(e["start"].as_str().unwrap().ends_with('Z'), "{e}");
    assert!(e["duration"].as_u64().unwrap() > 0, "{e}");
    let req = &e["request"];
    assert_eq!(
        (req["method"].as_str(), req["proto"].as_str(), req["uri"].as_str()),
        (Some("POST"), Some("HTTP/1.1"), Some("/orders?x=1"))
    );
    assert_eq!(req["headers"]["Content-Type"][0], "application/json");
    let raw = decode(&req["raw"]);
    assert!(raw.starts_with("POST /orders?x=1 HTTP/1.1\r\n") && raw.ends_with(sent), "{raw}");
    let res = &e["response"];
    assert_eq!((res["status"].as_str(), res["status_code"].as_u64()), (Some("200 OK"), Some(200)));
    assert_eq!(res["headers"]["Set-Cookie"][0], "session=abc");
    assert!(decode(&res["raw"]).ends_with(r#"{"path":"/orders?x=1","ok":true}"#));
    assert_eq!(get_json(&format!("{inspect}/api/requests/http/{id}")).await["id"], id);

    // Replay: 204, the origin gets the request again, and a new entry says so.
    let (status, body) = call(
        "POST",
        &format!("{inspect}/api/requests/http"),
        &[("content-type", "application/json")],
        &format!(r#"{{"id":"{id}"}}"#),
    )
    .await;
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1], ("POST".to_string(), "/orders?x=1".to_string(), Bytes::from(sent)));
    }
    let list = get_json(&format!("{inspect}/api/requests/http")).await;
    let replayed = &list["requests"][0];
    assert_eq!(replayed["replay_of"], id.as_str(), "{list}");
    assert_ne!(replayed["id"], id.as_str());
    assert_eq!(replayed["response"]["status_code"], 200);

    // Replay with edits (our extension): another method, path and body.
    let edit = format!(r#"{{"id":"{id}","edit":{{"method":"PUT","uri":"/edited","body":"aGk="}}}}"#);
    let (status, _) = call("POST", &format!("{inspect}/api/requests/http"), &[], &edit).await;
    assert_eq!(status, 204);
    assert_eq!(seen.lock().unwrap()[2], ("PUT".to_string(), "/edited".to_string(), Bytes::from("hi")));
    let (status, _) = call("POST", &format!("{inspect}/api/requests/http"), &[], r#"{"id":"ffffffffffffffff"}"#).await;
    assert_eq!(status, 404);

    let (status, _) = call("DELETE", &format!("{inspect}/api/requests/http"), &[], "").await;
    assert_eq!(status, 204);
    assert_eq!(get_json(&format!("{inspect}/api/requests/http")).await["requests"], Value::Array(vec![]));
    let (status, _) = call("GET", &format!("{inspect}/api/requests/http/{id}"), &[], "").await;
    assert_eq!(status, 404);

    // The page is served from the binary.
    let (status, page) = call("GET", &format!("{inspect}/"), &[], "").await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&page).contains("localtunnels inspector"));
    proc.terminate();
    assert_eq!(proc.exit_code().await, Some(0));
}

#[tokio::test]
async fn only_loopback_hosts_are_answered_and_secrets_can_be_redacted() {
    let (_server, port) = server(&[]).await;
    let (origin_port, _seen) = recording_origin().await;
    let (_proc, public, inspect) = client(port, origin_port, &["--inspect-redact"]).await;
    let api = format!("{inspect}/api/requests/http");
    let inspect_port = inspect.rsplit(':').next().unwrap().to_string();
    // A DNS-rebinding page: its own name, resolving to 127.0.0.1.
    let (status, _) = call("GET", &api, &[("host", &format!("evil.example:{inspect_port}"))], "").await;
    assert_eq!(status, 403);
    // A cross-site page posting to 127.0.0.1.
    let (status, _) = call("DELETE", &api, &[("origin", "http://evil.example")], "").await;
    assert_eq!(status, 403);
    for host in [format!("localhost:{inspect_port}"), format!("127.0.0.1:{inspect_port}")] {
        assert_eq!(call("GET", &api, &[("host", &host)], "").await.0, 200, "{host}");
    }

    let visit = format!("http://127.0.0.1:{port}/secret");
    let headers = [("host", host_of(&public)), ("authorization", "Bearer s3cret".into()), ("cookie", "a=b".into())];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    assert_eq!(call("GET", &visit, &headers, "").await.0, 200);
    let list = get_json(&api).await;
    let text = list.to_string();
    assert!(!text.contains("s3cret") && !text.contains("a=b") && !text.contains("session=abc"), "{text}");
    let e = &list["requests"][0];
    assert_eq!(e["request"]["headers"]["Authorization"][0], "[redacted]");
    assert!(!decode(&e["request"]["raw"]).contains("s3cret"));
}

#[tokio::test]
async fn the_inspector_can_be_turned_off_from_the_environment() {
    let (_server, port) = server(&[]).await;
    let (origin_port, _seen) = recording_origin().await;
    let server = format!("http://127.0.0.1:{port}");
    let origin = origin_port.to_string();
    let args = ["client", "--server", &server, "--local-host", "127.0.0.1", "--local-port", &origin];
    let mut proc = Proc::spawn(&args, &[("LOCALTUNNELS_NO_INSPECT", "true")]);
    proc.line().await;
    proc.stderr_line("forwarding").await;
    proc.terminate();
    assert_eq!(proc.exit_code().await, Some(0));
    let rest = proc.stderr_rest().await;
    assert!(!rest.iter().any(|l| l.contains("inspect")), "{rest:?}");
}

/// A body of `total` bytes in 64 KiB chunks of one repeated byte.
fn download(total: u64) -> TestBody {
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    let chunks = futures_util::stream::unfold(0u64, move |sent| {
        let chunk = chunk.clone();
        async move {
            (sent < total).then(|| {
                let n = usize::try_from((total - sent).min(chunk.len() as u64)).unwrap();
                (Ok::<_, common::BoxError>(Frame::data(chunk.slice(..n))), sent + n as u64)
            })
        }
    });
    http_body_util::StreamBody::new(chunks).boxed()
}

/// Peak resident memory of a process, in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_download_and_many_requests_stay_within_the_bounds() {
    const GIB: u64 = 1 << 30;
    const STORE: u64 = 1 << 20;
    let (_server, port) = server(&[]).await;
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let origin_port = origin(move |req: Request<Incoming>| {
        counter.fetch_add(1, Ordering::Relaxed);
        async move {
            match req.uri().path() {
                "/big" => Response::new(download(GIB)),
                _ => Response::new(full(vec![b'y'; 20_000])),
            }
        }
    })
    .await;
    let (proc, public, inspect) = client(port, origin_port, &["--inspect-max-bytes", &STORE.to_string()]).await;
    let host = host_of(&public);
    let pid = proc.child.id().unwrap();

    let req = Request::get(format!("http://127.0.0.1:{port}/big")).header("host", &host).body(full("")).unwrap();
    let res = http_client().request(req).await.unwrap();
    let mut body = res.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        n += frame.unwrap().into_data().map_or(0, |d| d.len() as u64);
    }
    assert_eq!(n, GIB);
    let e = &get_json(&format!("{inspect}/api/requests/http")).await["requests"][0];
    assert_eq!(e["response"]["body_size"], GIB);
    assert_eq!(e["response"]["truncated"], true);
    let kept = base64::engine::general_purpose::STANDARD.decode(e["response"]["raw"].as_str().unwrap()).unwrap();
    assert!(kept.len() < 64 * 1024 + 1024 && kept.ends_with(&[b'x'; 1000]), "{} bytes kept", kept.len());
    let peak = peak_kib(pid);
    eprintln!("client peak RSS {peak} KiB after 1 GiB");
    assert!(peak < 40 * 1024, "the client peaked at {peak} KiB");

    for i in 0..300 {
        let (status, _) = call("GET", &format!("http://127.0.0.1:{port}/r{i}"), &[("host", &host)], "").await;
        assert_eq!(status, 200);
    }
    let usage = get_json(&format!("{inspect}/api/inspector")).await;
    assert!(usage["bytes"].as_u64().unwrap() <= STORE, "{usage}");
    let entries = usage["entries"].as_u64().unwrap();
    assert!(entries > 10 && entries < 300, "{usage}");
    let newest = &get_json(&format!("{inspect}/api/requests/http?limit=1")).await["requests"][0];
    assert_eq!(newest["request"]["uri"], "/r299");
    assert_eq!(hits.load(Ordering::Relaxed), 301);
}

/// Many small exchanges at once, each captured whole: the client's memory follows the
/// store's byte bound. Header values decoded from a frame or parsed by hyper share the
/// whole buffer they were read from; a capture that kept them as they were pinned
/// kilobytes per entry that the store never counted (the client reached 149 MiB under
/// the benchmark's 1 KiB load), so captures copy what they keep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_captures_keep_the_client_within_the_store_bound() {
    const STORE: u64 = 4 << 20;
    const TASKS: usize = 16;
    const EACH: usize = 400;
    let (_server, port) = server(&[]).await;
    let origin_port = origin(|_req: Request<Incoming>| async move {
        Response::builder()
            .header("content-type", "text/plain")
            .header("x-origin-note", "a header the inspector keeps")
            .body(full(vec![b'z'; 64]))
            .unwrap()
    })
    .await;
    let (proc, public, inspect) = client(port, origin_port, &["--inspect-max-bytes", &STORE.to_string()]).await;
    let host = host_of(&public);
    let pid = proc.child.id().unwrap();

    let tasks = (0..TASKS).map(|t| {
        let host = host.clone();
        tokio::spawn(async move {
            let client = http_client();
            for i in 0..EACH {
                let req = Request::get(format!("http://127.0.0.1:{port}/t{t}/r{i}"))
                    .header("host", &host)
                    .header("user-agent", "inspector-memory-test/1.0")
                    .header("accept", "*/*")
                    .body(full(""))
                    .unwrap();
                let res = client.request(req).await.unwrap();
                assert_eq!(res.status(), 200);
                assert_eq!(res.into_body().collect().await.unwrap().to_bytes().len(), 64);
            }
        })
    });
    for task in tasks.collect::<Vec<_>>() {
        task.await.unwrap();
    }
    let usage = get_json(&format!("{inspect}/api/inspector")).await;
    assert!(usage["bytes"].as_u64().unwrap() <= STORE, "{usage}");
    assert!(usage["entries"].as_u64().unwrap() > 100, "{usage}");
    let peak = peak_kib(pid);
    eprintln!("client peak RSS {peak} KiB after {} captured requests ({usage})", TASKS * EACH);
    assert!(peak < 40 * 1024, "the client peaked at {peak} KiB with a {STORE}-byte store");
}

/// Small exchanges fill the store, then large responses replace them: with an 8 MiB
/// store the client's memory stays near issue 7's "RSS under 1 MiB load" bound (32 MiB
/// for the release build under the benchmark's load; 50 here for a debug build, which
/// measured ~39 with this store; the code before the chunked store, release build, 51
/// with its 32 MiB one). Captures used to be allocations of their own sizes: after the
/// small ones were evicted for large ones the allocator kept the holes, and the client
/// held three times its store (98 MiB under the benchmark's 1 MiB load); now they live
/// in fixed-size chunks that eviction hands to the next capture.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_responses_after_small_ones_keep_the_client_within_the_bound() {
    const TASKS: usize = 8;
    const SMALL: usize = 600;
    const BIG: usize = 40;
    const MIB: u64 = 1 << 20;
    let (_server, port) = server(&[]).await;
    let origin_port = origin(|req: Request<Incoming>| async move {
        match req.uri().path() {
            p if p.starts_with("/big") => Response::new(download(MIB)),
            _ => Response::new(full(vec![b'z'; 200])),
        }
    })
    .await;
    let (proc, public, inspect) = client(port, origin_port, &["--inspect-max-bytes", "8388608"]).await;
    let host = host_of(&public);
    let pid = proc.child.id().unwrap();

    let run = |path: &'static str, each: usize, size: u64| {
        let tasks = (0..TASKS).map(|t| {
            let host = host.clone();
            tokio::spawn(async move {
                let client = http_client();
                for i in 0..each {
                    let req = Request::get(format!("http://127.0.0.1:{port}{path}/{t}/{i}"))
                        .header("host", &host)
                        .body(full(""))
                        .unwrap();
                    let res = client.request(req).await.unwrap();
                    assert_eq!(res.status(), 200);
                    let mut body = res.into_body();
                    let mut n = 0u64;
                    while let Some(frame) = body.frame().await {
                        n += frame.unwrap().into_data().map_or(0, |d| d.len() as u64);
                    }
                    assert_eq!(n, size);
                }
            })
        });
        tasks.collect::<Vec<_>>()
    };
    for task in run("/small", SMALL, 200) {
        task.await.unwrap();
    }
    let usage = get_json(&format!("{inspect}/api/inspector")).await;
    assert!(usage["entries"].as_u64().unwrap() > 1000, "the small ones fill the store: {usage}");
    for task in run("/big", BIG, MIB) {
        task.await.unwrap();
    }
    let usage = get_json(&format!("{inspect}/api/inspector")).await;
    assert!(usage["bytes"].as_u64().unwrap() <= usage["max_bytes"].as_u64().unwrap(), "{usage}");
    let newest = &get_json(&format!("{inspect}/api/requests/http?limit=1")).await["requests"][0];
    assert!(newest["request"]["uri"].as_str().unwrap().starts_with("/big/"), "{newest}");
    assert_eq!(
        (newest["response"]["body_size"].as_u64(), newest["response"]["truncated"].as_bool()),
        (Some(MIB), Some(true))
    );
    let peak = peak_kib(pid);
    eprintln!("client peak RSS {peak} KiB after {} small and {} 1 MiB exchanges ({usage})", TASKS * SMALL, TASKS * BIG);
    assert!(peak < 50 * 1024, "the client peaked at {peak} KiB");
}

/// An origin that answers each request with the canned bytes for its method and path
/// (read up to the end of the head), then closes the connection.
async fn canned_origin(answers: Vec<(&'static str, &'static str, &'static [u8])>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let answers = Arc::new(answers);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let answers = answers.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_string();
                let mut words = line.split(' ');
                let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                if let Some((_, _, answer)) = answers.iter().find(|(m, p, _)| *m == method && *p == path) {
                    let _ = socket.write_all(answer).await;
                }
                let _ = socket.shutdown().await;
            });
        }
    });
    port
}

/// Responses of every shape, those the capture files in one step with their head (a
/// small body, none, an empty one) and those it files piece by piece (several chunks,
/// trailers, a body until close): the visitor gets each as the origin sent it, and
/// the inspector has its status, body, size and the exchange's end.
#[tokio::test]
async fn every_response_shape_reaches_the_visitor_and_the_inspector() {
    // (method, path, the origin's answer, the visitor's status and body)
    let cases: Vec<(&str, &str, &[u8], u16, &str)> = vec![
        ("GET", "/small", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", 200, "hello"),
        ("HEAD", "/small", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n", 200, ""),
        (
            "GET",
            "/chunked",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            200,
            "hello world",
        ),
        (
            "GET",
            "/trailers",
            b"HTTP/1.1 200 OK\r\nTrailer: x-sum\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nok\r\n0\r\nx-sum: 42\r\n\r\n",
            200,
            "ok",
        ),
        (
            "GET",
            "/empty-chunked",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
            200,
            "",
        ),
        ("GET", "/no-content", b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", 204, ""),
        ("GET", "/until-close", b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of this", 200, "all of this"),
    ];
    let (_server, port) = server(&[]).await;
    let origin_port = canned_origin(cases.iter().map(|c| (c.0, c.1, c.2)).collect()).await;
    let (_proc, public, inspect) = client(port, origin_port, &[]).await;
    let host = host_of(&public);
    for (method, path, _, status, body) in &cases {
        let got = call(method, &format!("http://127.0.0.1:{port}{path}"), &[("host", &host)], "").await;
        assert_eq!((got.0, &got.1[..]), (*status, body.as_bytes()), "{method} {path}");
    }
    let list = get_json(&format!("{inspect}/api/requests/http?limit=50")).await;
    let entries = list["requests"].as_array().unwrap();
    assert_eq!(entries.len(), cases.len(), "{list}");
    for (method, path, _, status, body) in &cases {
        let e = entries
            .iter()
            .find(|e| e["request"]["method"] == *method && e["request"]["uri"] == *path)
            .unwrap_or_else(|| panic!("{method} {path} not listed: {list}"));
        let res = &e["response"];
        assert_eq!(res["status_code"].as_u64(), Some(u64::from(*status)), "{e}");
        assert_eq!(
            (res["body_size"].as_u64(), res["truncated"].as_bool()),
            (Some(body.len() as u64), Some(false)),
            "{e}"
        );
        assert!(decode(&res["raw"]).ends_with(&format!("\r\n\r\n{body}")), "{e}");
        assert!(e["duration"].as_u64().unwrap() > 0, "{e}");
        assert!(e.get("error").is_none_or(|v| v.is_null()), "{e}");
    }
}

/// Small responses that come back while another exchange is in flight on the tunnel
/// (the capture files them whole at once instead of after their write) and the one in
/// flight, alone when it ends (filed after its write): each is listed whole as soon
/// as its visitor has it, with its status, body, size and duration.
#[tokio::test]
async fn responses_filed_while_another_exchange_is_in_flight_are_listed_whole() {
    let (_server, port) = server(&[]).await;
    let (arrived_tx, arrived_rx) = tokio::sync::oneshot::channel::<()>();
    let arrived = Arc::new(Mutex::new(Some(arrived_tx)));
    let release = Arc::new(tokio::sync::Notify::new());
    let origin_port = origin({
        let release = release.clone();
        move |req: Request<Incoming>| {
            let (arrived, release) = (arrived.clone(), release.clone());
            async move {
                let path = req.uri().path().to_string();
                if path == "/slow" {
                    let waiting = release.notified();
                    if let Some(tx) = arrived.lock().unwrap().take() {
                        let _ = tx.send(());
                    }
                    waiting.await;
                }
                Response::builder().header("x-path", &path).body(full(format!("answer to {path}"))).unwrap()
            }
        }
    })
    .await;
    let (_proc, public, inspect) = client(port, origin_port, &[]).await;
    let host = host_of(&public);
    let slow = tokio::spawn({
        let host = host.clone();
        async move { call("GET", &format!("http://127.0.0.1:{port}/slow"), &[("host", &host)], "").await }
    });
    arrived_rx.await.expect("the slow request reached the origin");
    let check = |list: &Value, path: &str| {
        let entries = list["requests"].as_array().unwrap();
        let e =
            entries.iter().find(|e| e["request"]["uri"] == path).unwrap_or_else(|| panic!("{path} not listed: {list}"));
        let body = format!("answer to {path}");
        let res = &e["response"];
        assert_eq!(res["status_code"].as_u64(), Some(200), "{e}");
        assert_eq!(res["body_size"].as_u64(), Some(body.len() as u64), "{e}");
        assert_eq!(res["headers"]["X-Path"][0], path, "{e}");
        assert!(decode(&res["raw"]).ends_with(&format!("\r\n\r\n{body}")), "{e}");
        assert!(e["duration"].as_u64().unwrap() > 0, "{e}");
        assert!(e.get("error").is_none_or(|v| v.is_null()), "{e}");
    };
    for i in 0..5 {
        let path = format!("/fast/{i}");
        let got = call("GET", &format!("http://127.0.0.1:{port}{path}"), &[("host", &host)], "").await;
        assert_eq!((got.0, &got.1[..]), (200, format!("answer to {path}").as_bytes()));
        check(&get_json(&format!("{inspect}/api/requests/http?limit=50")).await, &path);
    }
    // The slow one is listed in flight meanwhile, without a response.
    let list = get_json(&format!("{inspect}/api/requests/http?limit=50")).await;
    let e = list["requests"].as_array().unwrap().iter().find(|e| e["request"]["uri"] == "/slow").cloned();
    let e = e.unwrap_or_else(|| panic!("/slow not listed in flight: {list}"));
    assert!(e["response"].is_null(), "{e}");
    release.notify_one();
    let got = slow.await.unwrap();
    assert_eq!((got.0, &got.1[..]), (200, &b"answer to /slow"[..]));
    check(&get_json(&format!("{inspect}/api/requests/http?limit=50")).await, "/slow");
}
