//! HTTP/2 visitors (h2c with prior knowledge): the server's port speaks both HTTP/1.1
//! and HTTP/2. Requests for two tunnels share one HTTP/2 connection, each routed by
//! its own `:authority`, many at once; `te: trailers` from an HTTP/2 visitor reaches
//! the origin, and its trailers come back.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use http_body_util::StreamBody;
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::net::TcpStream;

async fn named_origin(name: &'static str) -> u16 {
    origin(move |req: Request<Incoming>| async move {
        let head = format!(
            "{name} {} {} host={}",
            req.method(),
            req.uri(),
            req.headers()["x-forwarded-host"].to_str().unwrap()
        );
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let mut res = Response::new(full(format!("{head} body={}", String::from_utf8_lossy(&body))));
        res.headers_mut().append("set-cookie", "a=1".parse().unwrap());
        res.headers_mut().append("set-cookie", "b=2".parse().unwrap());
        res
    })
    .await
}

#[tokio::test]
async fn h2c_prior_knowledge_visitors_are_served() {
    let server = server().await;
    let red = client(&server, named_origin("red").await, Some("red")).await;
    let blue = client(&server, named_origin("blue").await, Some("blue")).await;
    let tcp = TcpStream::connect(("127.0.0.1", server.addr().port())).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let (name, url) = if i % 2 == 0 { ("red", red.url()) } else { ("blue", blue.url()) };
        let mut sender = sender.clone();
        tasks.spawn(async move {
            let req = Request::post(format!("{url}/item/{i}?q={i}")).body(full(format!("payload {i}"))).unwrap();
            let res = sender.send_request(req).await.expect("h2 response");
            assert_eq!(res.version(), hyper::Version::HTTP_2);
            assert_eq!(res.status(), 200);
            let cookies: Vec<_> = res.headers().get_all("set-cookie").iter().cloned().collect();
            assert_eq!(cookies, ["a=1", "b=2"]);
            let body = res.into_body().collect().await.unwrap().to_bytes();
            let host = host_of(&url);
            let expected = format!("{name} POST /item/{i}?q={i} host={host} body=payload {i}");
            assert_eq!(body, Bytes::from(expected));
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("h2 request");
    }

    // The apex pages answer over HTTP/2 too.
    let mut sender = sender.clone();
    let req = Request::get(format!("{}/api/status", server.url())).body(full("")).unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
}

/// An HTTP/2 visitor's `te: trailers` (what gRPC clients send) reaches the origin as
/// `te: trailers`, and the origin's chunked trailers reach the visitor; a request
/// without it reaches the origin without `TE`.
#[tokio::test]
async fn h2c_te_trailers_reaches_the_origin_and_trailers_come_back() {
    let server = server().await;
    let port = origin(|req: Request<Incoming>| async move {
        let te = req.headers().get("te").map_or("none".to_string(), |v| v.to_str().unwrap().to_string());
        let mut trailers = hyper::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let frames =
            vec![Ok::<_, BoxError>(Frame::data(Bytes::from(format!("te={te}")))), Ok(Frame::trailers(trailers))];
        let mut res = Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed());
        res.headers_mut().insert("trailer", "grpc-status".parse().unwrap());
        res
    })
    .await;
    let tunnel = client(&server, port, None).await;
    let tcp = TcpStream::connect(("127.0.0.1", server.addr().port())).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    for (te, seen) in [(Some("trailers"), "te=trailers"), (None, "te=none")] {
        let mut req = Request::get(format!("{}/g", tunnel.url()));
        if let Some(te) = te {
            req = req.header("te", te);
        }
        let res = sender.send_request(req.body(full("")).unwrap()).await.expect("h2 response");
        assert_eq!(res.status(), 200);
        let collected = res.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned();
        assert_eq!(&collected.to_bytes()[..], seen.as_bytes());
        if te.is_some() {
            assert_eq!(trailers.expect("trailers")["grpc-status"], "0");
        }
    }
}
