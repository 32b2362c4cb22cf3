//! HTTP semantics through the tunnel: methods, statuses, query strings, header order
//! and repeats both ways, hop-by-hop and `X-Forwarded-*` rules, Content-Length and
//! chunked bodies both ways, HEAD, 204, 304, `Expect: 100-continue` and trailers.
//!
//! The echo origin answers with a dump of what it received, so each test states
//! exactly what the origin saw.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{HeaderMap, Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the echo origin saw, parsed back from its response.
#[derive(Debug)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl Seen {
    fn get(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }
}

fn pairs(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter().map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect()
}

/// Answers every request with a line-based dump: method and target, the headers in
/// order, then the body. Also reports the request's framing in
/// `x-echo-framing` (`length N` or `chunked`).
async fn echo(req: Request<Incoming>) -> Response<TestBody> {
    let framing = match req.headers().get("content-length") {
        Some(n) => format!("length {}", n.to_str().unwrap()),
        None if req.headers().contains_key("transfer-encoding") => "chunked".to_string(),
        None => "none".to_string(),
    };
    let mut dump = format!("{} {}\n", req.method(), req.uri());
    for (n, v) in pairs(req.headers()) {
        dump.push_str(&format!("{n}: {v}\n"));
    }
    let collected = req.into_body().collect().await.expect("request body");
    dump.push_str("--trailers\n--body\n");
    let mut out = dump.into_bytes();
    out.extend_from_slice(&collected.to_bytes());
    Response::builder().header("x-echo-framing", framing).body(full(out)).unwrap()
}

fn parse_seen(body: &[u8]) -> Seen {
    let text_end = find(body, b"--body\n").expect("echo dump") + b"--body\n".len();
    let text = std::str::from_utf8(&body[..text_end]).unwrap();
    let mut lines = text.lines();
    let (method, target) = lines.next().unwrap().split_once(' ').unwrap();
    let mut headers = Vec::new();
    for line in lines.take_while(|l| *l != "--trailers") {
        let (n, v) = line.split_once(": ").unwrap_or((line.trim_end_matches(':'), ""));
        headers.push((n.to_string(), v.to_string()));
    }
    Seen {
        method: method.to_string(),
        target: target.to_string(),
        headers,
        body: Bytes::copy_from_slice(&body[text_end..]),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

struct Setup {
    _server: localtunnels_server::ServerHandle,
    _tunnel: localtunnels_client::ClientHandle,
    visitor: Visitor,
    host: String,
    port: u16,
}

async fn setup<F, Fut>(handler: F) -> Setup
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<TestBody>> + Send + 'static,
{
    let server = server().await;
    let origin_port = origin(handler).await;
    let tunnel = client(&server, origin_port, None).await;
    let visitor = Visitor::new(&server);
    let host = host_of(&tunnel.url());
    let port = server.addr().port();
    Setup { _server: server, _tunnel: tunnel, visitor, host, port }
}

async fn send(s: &Setup, req: Request<TestBody>) -> (Response<()>, Bytes) {
    let res = s.visitor.send(&s.host, req).await;
    let (parts, body) = res.into_parts();
    (Response::from_parts(parts, ()), body.collect().await.expect("response body").to_bytes())
}

#[tokio::test]
async fn every_method_and_query_string_reaches_the_origin() {
    let s = setup(echo).await;
    let targets = ["/", "/a/b%20c/?q=1&q=2&empty=&flag", "/x?redirect=%2Fhome%3Fa%3D1&u=%E2%9C%93#frag"];
    let methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PURGE", "MKCOL", "PROPFIND", "BREW"];
    for method in methods {
        for target in targets {
            let req = Request::builder().method(method).uri(target).body(full("payload")).unwrap();
            let (res, body) = send(&s, req).await;
            assert_eq!(res.status(), 200, "{method} {target}");
            let seen = parse_seen(&body);
            assert_eq!(seen.method, method);
            // The fragment never leaves the visitor; everything else arrives verbatim.
            assert_eq!(seen.target, target.split('#').next().unwrap(), "{method}");
            assert_eq!(&seen.body[..], b"payload", "{method} {target}");
        }
    }
}

#[tokio::test]
async fn statuses_and_bodies_come_back_as_the_origin_sent_them() {
    let s = setup(|req: Request<Incoming>| async move {
        let code: u16 = req.uri().path().trim_start_matches('/').parse().unwrap();
        Response::builder().status(code).body(full(format!("origin says {code}"))).unwrap()
    })
    .await;
    let codes = [
        200, 201, 202, 203, 206, 226, 301, 302, 303, 307, 308, 400, 401, 403, 404, 405, 409, 410, 418, 422, 429, 451,
        500, 501, 502, 503, 504, 599,
    ];
    for code in codes {
        let (res, body) = send(&s, Request::get(format!("/{code}")).body(full("")).unwrap()).await;
        assert_eq!(res.status().as_u16(), code);
        // An origin's 404/502/503/504 is the origin's, not one the server made up.
        assert_eq!(body, format!("origin says {code}"));
    }
}

#[tokio::test]
async fn header_order_and_repeats_survive_both_ways() {
    let s = setup(|req: Request<Incoming>| async move {
        let mut res = echo(req).await;
        let h = res.headers_mut();
        for (n, v) in [
            ("set-cookie", "a=1; Path=/"),
            ("x-resp-first", "1"),
            ("set-cookie", "b=2; HttpOnly"),
            ("x-resp-multi", "one"),
            ("x-resp-last", "2"),
            ("x-resp-multi", "two"),
        ] {
            h.append(n, v.parse().unwrap());
        }
        res
    })
    .await;
    let req = Request::get("/")
        .header("x-first", "1")
        .header("x-multi", "one")
        .header("cookie", "a=1")
        .header("x-middle", "2")
        .header("x-multi", "two")
        .header("cookie", "b=2")
        .header("x-last", "3")
        .body(full(""))
        .unwrap();
    let (res, body) = send(&s, req).await;
    let seen = parse_seen(&body);
    let ours: Vec<_> = seen
        .headers
        .iter()
        .filter(|(n, _)| (n.starts_with("x-") && !n.starts_with("x-forwarded")) || n == "cookie")
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        ours,
        [
            ("x-first", "1"),
            ("x-multi", "one"),
            ("x-multi", "two"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
            ("x-middle", "2"),
            ("x-last", "3")
        ]
    );

    let back: Vec<_> =
        pairs(res.headers()).into_iter().filter(|(n, _)| n == "set-cookie" || n.starts_with("x-resp")).collect();
    let back: Vec<_> = back.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    assert_eq!(
        back,
        [
            ("set-cookie", "a=1; Path=/"),
            ("set-cookie", "b=2; HttpOnly"),
            ("x-resp-first", "1"),
            ("x-resp-multi", "one"),
            ("x-resp-multi", "two"),
            ("x-resp-last", "2"),
        ]
    );
}

#[tokio::test]
async fn hop_by_hop_headers_are_dropped_both_ways() {
    let s = setup(|req: Request<Incoming>| async move {
        let mut res = echo(req).await;
        let h = res.headers_mut();
        for (n, v) in [
            ("connection", "x-resp-private"),
            ("x-resp-private", "secret"),
            ("keep-alive", "timeout=5"),
            ("proxy-authenticate", "Basic realm=x"),
            ("x-resp-kept", "yes"),
        ] {
            h.append(n, v.parse().unwrap());
        }
        res
    })
    .await;
    let req = Request::get("/")
        .header("connection", "keep-alive, x-private")
        .header("x-private", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("te", "gzip")
        .header("x-kept", "yes")
        .body(full(""))
        .unwrap();
    let (res, body) = send(&s, req).await;
    let seen = parse_seen(&body);
    for gone in ["x-private", "keep-alive", "proxy-connection", "proxy-authorization"] {
        assert!(seen.get(gone).is_empty(), "origin saw {gone}: {:?}", seen.headers);
    }
    // `TE: gzip` is the visitor's leg's alone: the origin gets no `TE`.
    assert!(seen.get("te").is_empty(), "origin saw te: {:?}", seen.headers);
    assert!(seen.get("connection").iter().all(|v| !v.contains("x-private")));
    assert_eq!(seen.get("x-kept"), ["yes"]);

    for gone in ["x-resp-private", "keep-alive", "proxy-authenticate"] {
        assert!(!res.headers().contains_key(gone), "visitor saw {gone}: {:?}", res.headers());
    }
    assert!(res.headers().get_all("connection").iter().all(|v| v != "x-resp-private"));
    assert_eq!(res.headers()["x-resp-kept"], "yes");
}

/// `TE` reaches the origin only as `te: trailers`, and only when the visitor's `TE`
/// lists `trailers` (RFC 9110 §10.1.4: a comma list, codings with `;q=` weights).
#[tokio::test]
async fn te_reaches_the_origin_only_as_trailers_when_the_visitor_asked() {
    let s = setup(|req: Request<Incoming>| async move { echo(req).await }).await;
    let cases: &[(&[&str], &[&str])] = &[
        (&[], &[]),
        (&["trailers"], &["trailers"]),
        (&["gzip"], &[]),
        (&["trailers, deflate;q=0.5"], &["trailers"]),
        (&["deflate;q=0.5", "Trailers"], &["trailers"]),
        (&["trailers;q=0.5"], &[]),
    ];
    for (sent, want) in cases {
        let mut req = Request::get("/te");
        for v in *sent {
            req = req.header("te", *v);
        }
        let (res, body) = send(&s, req.body(full("")).unwrap()).await;
        assert_eq!(res.status(), 200);
        assert_eq!(parse_seen(&body).get("te"), *want, "sent {sent:?}");
    }
}

#[tokio::test]
async fn forwarded_headers_are_set_by_the_server_and_never_trusted() {
    let s = setup(echo).await;
    let req = Request::get("/")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-for", "7.7.7.7")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
        .header("forwarded", "for=6.6.6.6;proto=https")
        .body(full(""))
        .unwrap();
    let (_, body) = send(&s, req).await;
    let seen = parse_seen(&body);
    assert_eq!(seen.get("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen.get("x-forwarded-proto"), ["http"]);
    assert_eq!(seen.get("x-forwarded-host"), [s.host.as_str()]);
    assert!(seen.get("forwarded").is_empty());
    // Host rewrite (the default): the origin sees itself as the host.
    assert_eq!(seen.get("host").len(), 1);
    assert!(seen.get("host")[0].starts_with("127.0.0.1:"));
}

/// A body of `n` bytes in `chunks` frames with no size hint: hyper sends it chunked.
fn chunked(n: usize, chunks: usize) -> TestBody {
    let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    let step = n.div_ceil(chunks);
    let frames: Vec<_> = data.chunks(step).map(|c| Ok::<_, BoxError>(Frame::data(Bytes::copy_from_slice(c)))).collect();
    StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn content_length_and_chunked_bodies_pass_both_ways() {
    // The origin echoes the body back with the framing it received it in.
    let s = setup(|req: Request<Incoming>| async move {
        let length = req.headers().get("content-length").cloned();
        let framing = if length.is_some() { "length" } else { "chunked" };
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let mut res = match length {
            Some(_) => Response::new(full(body)),
            None => {
                let parts: Vec<_> =
                    body.chunks(4096).map(|c| Ok::<_, BoxError>(Frame::data(Bytes::copy_from_slice(c)))).collect();
                Response::new(StreamBody::new(futures_util::stream::iter(parts)).boxed())
            }
        };
        res.headers_mut().insert("x-framing", framing.parse().unwrap());
        res
    })
    .await;
    let n = 1_000_003; // several stream windows, not a multiple of anything
    let (res, body) = send(&s, Request::post("/").body(full(pattern(n))).unwrap()).await;
    assert_eq!(res.headers()["x-framing"], "length");
    assert_eq!(res.headers()["content-length"], n.to_string().as_str());
    assert!(!res.headers().contains_key("transfer-encoding"));
    assert!(body[..] == pattern(n)[..]);

    let (res, body) = send(&s, Request::post("/").body(chunked(n, 37)).unwrap()).await;
    assert_eq!(res.headers()["x-framing"], "chunked");
    assert_eq!(res.headers()["transfer-encoding"], "chunked");
    assert!(!res.headers().contains_key("content-length"));
    assert!(body[..] == pattern(n)[..]);

    // Empty bodies both ways.
    let (res, body) = send(&s, Request::post("/").body(full("")).unwrap()).await;
    assert_eq!(res.status(), 200);
    assert!(body.is_empty());
}

/// Sends requests one after another on a single HTTP/1.1 connection to the server.
struct OneConnection {
    sender: hyper::client::conn::http1::SendRequest<TestBody>,
}

impl OneConnection {
    async fn open(port: u16) -> Self {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
        tokio::spawn(conn);
        OneConnection { sender }
    }

    async fn send(&mut self, host: &str, mut req: Request<TestBody>) -> (Response<()>, Bytes) {
        req.headers_mut().insert("host", host.parse().unwrap());
        self.sender.ready().await.expect("connection still usable");
        let res = self.sender.send_request(req).await.expect("response");
        let (parts, body) = res.into_parts();
        (Response::from_parts(parts, ()), body.collect().await.unwrap().to_bytes())
    }
}

#[tokio::test]
async fn head_204_and_304_have_no_body_and_keep_the_connection_usable() {
    let s = setup(|req: Request<Incoming>| async move {
        match req.uri().path() {
            "/file" => Response::builder()
                .header("content-length", "1234")
                .header("etag", "\"v1\"")
                .body(full(if req.method() == "HEAD" { Bytes::new() } else { Bytes::from(vec![b'x'; 1234]) }))
                .unwrap(),
            "/empty" => Response::builder().status(204).header("x-done", "1").body(full("")).unwrap(),
            "/cached" if req.headers().get("if-none-match").is_some_and(|v| v == "\"v1\"") => Response::builder()
                .status(304)
                .header("etag", "\"v1\"")
                .header("cache-control", "max-age=60")
                .body(full(""))
                .unwrap(),
            _ => Response::new(full("fresh")),
        }
    })
    .await;
    let mut conn = OneConnection::open(s.port).await;
    let (res, body) = conn.send(&s.host, Request::head("/file").body(full("")).unwrap()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-length"], "1234");
    assert_eq!(res.headers()["etag"], "\"v1\"");
    assert!(body.is_empty());

    let (res, body) = conn.send(&s.host, Request::get("/file").body(full("")).unwrap()).await;
    assert_eq!(res.headers()["content-length"], "1234");
    assert_eq!(body.len(), 1234);

    let (res, body) = conn.send(&s.host, Request::get("/empty").body(full("")).unwrap()).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(res.headers()["x-done"], "1");
    assert!(!res.headers().contains_key("content-length") && !res.headers().contains_key("transfer-encoding"));
    assert!(body.is_empty());

    let req = Request::get("/cached").header("if-none-match", "\"v1\"").body(full("")).unwrap();
    let (res, body) = conn.send(&s.host, req).await;
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(res.headers()["etag"], "\"v1\"");
    assert_eq!(res.headers()["cache-control"], "max-age=60");
    assert!(body.is_empty());

    // Still in step after all of that.
    let (res, body) = conn.send(&s.host, Request::get("/other").body(full("")).unwrap()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(&body[..], b"fresh");
}

/// Reads from `tcp` until `buf` holds `needle`; returns everything read so far.
async fn read_until(tcp: &mut TcpStream, buf: &mut Vec<u8>, needle: &[u8]) {
    while find(buf, needle).is_none() {
        let mut chunk = [0u8; 4096];
        let n = tcp.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed; got {:?}", String::from_utf8_lossy(buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn expect_100_continue_gets_a_100_before_the_body_is_sent() {
    let s = setup(echo).await;
    let mut tcp = TcpStream::connect(("127.0.0.1", s.port)).await.unwrap();
    let head =
        format!("POST /upload HTTP/1.1\r\nHost: {}\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n", s.host);
    tcp.write_all(head.as_bytes()).await.unwrap();
    // Nothing of the body has been sent: the server must invite it.
    let mut buf = Vec::new();
    read_until(&mut tcp, &mut buf, b"\r\n\r\n").await;
    assert!(buf.starts_with(b"HTTP/1.1 100 Continue\r\n"), "{:?}", String::from_utf8_lossy(&buf));
    tcp.write_all(b"hello world").await.unwrap();
    let mut buf = Vec::new();
    read_until(&mut tcp, &mut buf, b"hello world").await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    let body_at = find(&buf, b"\r\n\r\n").unwrap() + 4;
    let seen = parse_seen(&buf[body_at..]);
    assert_eq!(seen.method, "POST");
    assert_eq!(&seen.body[..], b"hello world");
    // The expectation was met on the visitor's leg; the origin is not asked again.
    assert!(seen.get("expect").is_empty());
}

#[tokio::test]
async fn trailers_pass_both_ways() {
    let s = setup(|req: Request<Incoming>| async move {
        let seen_te = req.headers().get("te").cloned();
        let collected = req.into_body().collect().await.unwrap();
        let got = collected.trailers().and_then(|t| t.get("x-checksum")).cloned();
        let mut trailers = HeaderMap::new();
        trailers.insert("x-origin-checksum", "abc123".parse().unwrap());
        let frames = vec![
            Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"streamed "))),
            Ok(Frame::data(Bytes::from_static(b"body"))),
            Ok(Frame::trailers(trailers)),
        ];
        let mut res = Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed());
        let h = res.headers_mut();
        h.insert("trailer", "x-origin-checksum".parse().unwrap());
        h.insert("x-got-trailer", got.unwrap_or_else(|| "none".parse().unwrap()));
        h.insert("x-got-te", seen_te.unwrap_or_else(|| "none".parse().unwrap()));
        res
    })
    .await;
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "deadbeef".parse().unwrap());
    let frames = vec![Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"data"))), Ok(Frame::trailers(trailers))];
    let req = Request::post("/")
        .header("te", "trailers")
        .header("trailer", "x-checksum")
        .body(StreamBody::new(futures_util::stream::iter(frames)).boxed())
        .unwrap();
    let res = s.visitor.send(&s.host, req).await;
    assert_eq!(res.headers()["x-got-trailer"], "deadbeef");
    assert_eq!(res.headers()["x-got-te"], "trailers");
    let collected = res.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("response trailers");
    assert_eq!(trailers["x-origin-checksum"], "abc123");
    assert_eq!(&collected.to_bytes()[..], b"streamed body");
}
