//! Credit is never lost: requests whose bodies the origin never reads (it answers
//! early and hangs up) must not shrink the tunnel's session window; after many of
//! them a full upload still passes.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};

#[tokio::test]
async fn bodies_the_origin_never_reads_do_not_leak_session_credit() {
    let server = server().await;
    let port = origin(|req: Request<Incoming>| async move {
        if req.uri().path() == "/ignore" {
            // Answer without reading the upload; hyper drops the rest.
            return Response::new(full("ignored"));
        }
        let body = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
        Response::new(full(body.to_string()))
    })
    .await;
    let tunnel = client(&server, port, None).await;
    let visitor = Visitor::new(&server);
    let host = host_of(&tunnel.url());
    // 64 uploads of 1 MiB each: far more than the 8 MiB session window if any of
    // the unread bytes were kept.
    let upload = Bytes::from(vec![7u8; 1 << 20]);
    for _ in 0..64 {
        let req = Request::post("/ignore").body(full(upload.clone())).unwrap();
        // The early answer may reach the visitor as a connection closed mid-upload
        // (HTTP allows it); what matters is the tunnel's credit, checked below.
        if let Ok(res) = visitor.try_send(&host, req).await {
            let _ = res.into_body().collect().await;
        }
    }
    let req = Request::post("/count").body(full(upload.clone())).unwrap();
    let res = tokio::time::timeout(Duration::from_secs(60), async {
        let res = visitor.send(&host, req).await;
        res.into_body().collect().await.unwrap().to_bytes()
    })
    .await
    .expect("the tunnel still carries a full upload");
    assert_eq!(&res[..], b"1048576");
}
