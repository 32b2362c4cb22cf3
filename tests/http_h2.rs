//! HTTP/2 visitors (h2c with prior knowledge): the server's port speaks both HTTP/1.1
//! and HTTP/2. Requests for two tunnels share one HTTP/2 connection, each routed by
//! its own `:authority`, many at once.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
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
