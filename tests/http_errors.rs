//! The errors the tunnel answers itself, each with its status and a generic one-line
//! body with a request id (an HTML page for browsers): 404 unknown name, 503 +
//! Retry-After for a dropped client whose name is held, 502 when the origin refuses or
//! breaks the connection (the reason goes to the client's error event, and to the
//! visitor only with `expose_errors`), 504 when the origin is slower than the
//! configured response timeout.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use localtunnels_client::{ClientConfig, ClientEvent, ConnectError, TunnelClient};
use localtunnels_core::RefuseReason;
use localtunnels_server::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, watch};

/// Waits for a client event matching `f`.
async fn event(events: &mut broadcast::Receiver<ClientEvent>, f: impl Fn(&ClientEvent) -> bool) -> ClientEvent {
    loop {
        let ev = events.recv().await.expect("client events");
        if f(&ev) {
            return ev;
        }
    }
}

/// Waits until `cond` holds, checking after every scheduler turn (bounded, so a
/// broken condition fails the test instead of hanging it).
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..20_000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("gave up waiting for {what}");
}

/// A TCP relay in front of the server that the test can cut (every connection
/// dropped, new ones refused) and heal, to drop a client without a goodbye.
struct Relay {
    port: u16,
    open: watch::Sender<bool>,
}

impl Relay {
    async fn to(port: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay_port = listener.local_addr().unwrap().port();
        let (open, open_rx) = watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut open = open_rx.clone();
                if !*open.borrow_and_update() {
                    continue; // dropped: refused
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", port)).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = open.wait_for(|open| !open) => {}
                    }
                });
            }
        });
        Relay { port: relay_port, open }
    }

    fn cut(&self) {
        self.open.send_replace(false);
    }

    fn heal(&self) {
        self.open.send_replace(true);
    }
}

#[tokio::test]
async fn unknown_name_is_404_with_its_name() {
    let server = server().await;
    let visitor = Visitor::new(&server);
    let (status, body) = visitor.get(&host_of(&server.tunnel_url("nobody-here")), "/x").await;
    assert_eq!(status, 404);
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(body.starts_with("404 Not Found: There is no tunnel named 'nobody-here' on this server. (request id "));
    assert!(body.ends_with(")\n") && body.lines().count() == 1, "{body}");
    request_id(&body);
}

/// The request id at the end of a one-line error body.
fn request_id(body: &str) -> String {
    let id = body.trim_end().rsplit("(request id ").next().unwrap().trim_end_matches(')');
    assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{body}");
    id.to_string()
}

#[tokio::test]
async fn a_browser_gets_the_error_as_an_html_page() {
    let server = server().await;
    let req = Request::get("/x").header("accept", "text/html,application/xhtml+xml,*/*;q=0.8").body(full("")).unwrap();
    let res = Visitor::new(&server).send(&host_of(&server.tunnel_url("nobody-here")), req).await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    let body = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(body.starts_with("<!doctype html>"), "{body}");
    assert!(body.contains("<title>404 Not Found</title>") && body.contains("Request id: <code>"), "{body}");
    assert!(body.contains("There is no tunnel named &#39;nobody-here&#39;"), "{body}");
}

#[tokio::test]
async fn dropped_client_is_503_with_retry_after_until_it_reconnects() {
    let server = server().await;
    let port = origin(|_req: Request<Incoming>| async { Response::new(full("back")) }).await;
    let relay = Relay::to(server.addr().port()).await;
    let config = ClientConfig {
        server: Some(format!("http://127.0.0.1:{}", relay.port)),
        max_backoff: Duration::from_millis(50),
        subdomain: Some("flaky".into()),
        ..client_config(&server, port)
    };
    let mut tunnel = TunnelClient::new(config).connect().await.unwrap();
    let url = tunnel.url();
    let mut events = tunnel.events();
    let visitor = Visitor::new(&server);
    assert_eq!(visitor.get(&host_of(&url), "/").await, (200, Bytes::from("back")));

    relay.cut();
    event(&mut events, |e| matches!(e, ClientEvent::Disconnected { .. })).await;
    until("the server to notice the drop", || server.stats().tunnels == 0).await;

    let req = Request::get("/").body(full("")).unwrap();
    let res = visitor.send(&host_of(&url), req).await;
    assert_eq!(res.status(), 503);
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    let body = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(body.starts_with("503 Service Unavailable: The tunnel 'flaky' is offline"), "{body}");
    request_id(&body);

    // The name is held for its client: nobody else gets it meanwhile.
    let other = ClientConfig { subdomain: Some("flaky".into()), ..client_config(&server, port) };
    match TunnelClient::new(other).connect().await {
        Err(ConnectError::Refused { reason: RefuseReason::NameTaken, .. }) => {}
        other => panic!("expected NameTaken, got {other:?}"),
    }

    // Its client comes back with the same URL and traffic flows again.
    relay.heal();
    let back = event(&mut events, |e| matches!(e, ClientEvent::Connected { .. })).await;
    assert_eq!(back, ClientEvent::Connected { url: url.clone() });
    assert_eq!(visitor.get(&host_of(&url), "/").await, (200, Bytes::from("back")));
}

#[tokio::test]
async fn refused_origin_is_502_with_the_reason() {
    let server = server().await;
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut tunnel = client(&server, closed_port, None).await;
    let mut events = tunnel.events();
    let (status, body) = Visitor::new(&server).get(&host_of(&tunnel.url()), "/").await;
    assert_eq!(status, 502);
    // The visitor learns nothing of the origin: no address, no OS error.
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(body.starts_with("502 Bad Gateway: "), "{body}");
    assert!(!body.contains(&closed_port.to_string()) && !body.to_lowercase().contains("refused"), "{body}");
    assert!(body.ends_with('\n') && body.lines().count() == 1, "{body}");
    // The owner gets the detail, under the same request id.
    let id = request_id(&body);
    let ClientEvent::Error { message } = event(&mut events, |e| matches!(e, ClientEvent::Error { .. })).await else {
        unreachable!()
    };
    assert!(message.contains(&format!("GET / (request id {id})")), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{closed_port}")), "{message}");
    assert!(message.to_lowercase().contains("refused") && message.contains("is the local server running?"));

    // An owner who opts in shows visitors the detail too (for development).
    let config = ClientConfig { expose_errors: true, ..client_config(&server, closed_port) };
    let exposed = TunnelClient::new(config).connect().await.unwrap();
    let (status, body) = Visitor::new(&server).get(&host_of(&exposed.url()), "/").await;
    assert_eq!(status, 502);
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(body.contains(&format!("127.0.0.1:{closed_port}")) && body.contains("is the local server running?"));
    assert_eq!(body.lines().count(), 1, "{body}");
}

/// An origin that reads the request head and hangs up without answering.
async fn hang_up_origin() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                drop(tcp);
            });
        }
    });
    port
}

#[tokio::test]
async fn origin_that_hangs_up_is_502_with_the_reason() {
    let server = server().await;
    let mut tunnel = client(&server, hang_up_origin().await, None).await;
    let mut events = tunnel.events();
    let (status, body) = Visitor::new(&server).get(&host_of(&tunnel.url()), "/").await;
    assert_eq!(status, 502);
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(body.starts_with("502 Bad Gateway: ") && !body.contains("closed"), "{body}");
    let ClientEvent::Error { message } = event(&mut events, |e| matches!(e, ClientEvent::Error { .. })).await else {
        unreachable!()
    };
    assert!(message.contains("127.0.0.1:") && message.contains("closed"), "{message}");
}

#[tokio::test]
async fn origin_that_breaks_mid_body_breaks_the_visitor_body_too() {
    // Head and part of the body, then the origin's connection dies: the visitor must
    // see an error, never a short body that looks complete.
    let server = server().await;
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let mut chunk = [0u8; 4096];
                let _ = tcp.read(&mut chunk).await;
                let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n").await;
                drop(tcp);
            }
        });
        port
    };
    let tunnel = client(&server, port, None).await;
    assert_cut(&server, &tunnel).await;

    // Same with a Content-Length the origin does not honour.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let mut chunk = [0u8; 4096];
                let _ = tcp.read(&mut chunk).await;
                let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly a part").await;
                drop(tcp);
            }
        });
        port
    };
    let tunnel = client(&server, port, None).await;
    assert_cut(&server, &tunnel).await;
}

/// The visitor's exchange fails: the connection is cut before the head or in the
/// body (hyper may not have flushed the head when the body fails), never a clean end.
async fn assert_cut(server: &localtunnels_server::ServerHandle, tunnel: &localtunnels_client::ClientHandle) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let req = Request::get(format!("http://127.0.0.1:{}/", server.addr().port()))
        .header("host", host_of(&tunnel.url()))
        .body(full(""))
        .unwrap();
    if let Ok(res) = client.request(req).await {
        assert_eq!(res.status(), 200);
        assert!(res.into_body().collect().await.is_err(), "a cut body must not end cleanly");
    }
}

#[tokio::test]
async fn slow_origin_is_504_after_the_configured_timeout_and_the_tunnel_carries_on() {
    let server =
        server_with(ServerConfig { response_timeout: Duration::from_millis(200), ..ServerConfig::default() }).await;
    // `/slow` never answers while the test runs; its handler reports being dropped
    // (the origin sees the tunnel client give up on the request).
    let (dropped, mut abandoned) = mpsc::unbounded_channel::<()>();
    let port = origin(move |req: Request<Incoming>| {
        let dropped = OnDrop(dropped.clone());
        async move {
            if req.uri().path() == "/slow" {
                let _dropped = dropped;
                std::future::pending::<()>().await;
            }
            Response::new(full("fast"))
        }
    })
    .await;
    let tunnel = client(&server, port, None).await;
    let visitor = Visitor::new(&server);
    let host = host_of(&tunnel.url());
    let (status, body) = visitor.get(&host, "/slow").await;
    assert_eq!(status, 504);
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(body.starts_with("504 Gateway Timeout: The app behind this tunnel did not answer within 0.2 s."), "{body}");
    abandoned_in_time(&mut abandoned).await;
    assert_eq!(visitor.get(&host, "/").await, (200, Bytes::from("fast")));
}

/// Waits for the origin to see its request dropped. The bound only turns a
/// regression (a request left running for ever) into a failure instead of a hang.
async fn abandoned_in_time(abandoned: &mut mpsc::UnboundedReceiver<()>) {
    let dropped = tokio::time::timeout(Duration::from_secs(30), abandoned.recv()).await;
    assert!(matches!(dropped, Ok(Some(()))), "the origin's request was left running");
}

/// Sends on its channel when dropped.
struct OnDrop(mpsc::UnboundedSender<()>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

#[tokio::test]
async fn a_visitor_that_leaves_frees_the_origin() {
    let server = server().await;
    let (arrived_tx, mut arrived) = mpsc::unbounded_channel::<()>();
    let (dropped, mut abandoned) = mpsc::unbounded_channel::<()>();
    let port = origin(move |_req: Request<Incoming>| {
        let (arrived_tx, dropped) = (arrived_tx.clone(), OnDrop(dropped.clone()));
        async move {
            let _dropped = dropped;
            let _ = arrived_tx.send(());
            std::future::pending::<()>().await;
            Response::new(full("never"))
        }
    })
    .await;
    let tunnel = client(&server, port, None).await;
    let visitor = Visitor::new(&server);
    let host = host_of(&tunnel.url());
    let waiting = tokio::spawn(async move { visitor.get(&host, "/").await });
    arrived.recv().await.unwrap();
    waiting.abort(); // the visitor hangs up
    abandoned_in_time(&mut abandoned).await;
    assert_eq!(server.stats().streams, 0);
}

#[tokio::test]
async fn slow_streaming_bodies_are_not_cut_by_the_response_timeout() {
    // The timeout covers the wait for the response head only: a long download that
    // started in time runs on.
    let server =
        server_with(ServerConfig { response_timeout: Duration::from_millis(100), ..ServerConfig::default() }).await;
    let (go_tx, go_rx) = watch::channel(false);
    let port = origin(move |req: Request<Incoming>| {
        let go = go_rx.clone();
        async move {
            if req.uri().path() == "/never" {
                std::future::pending::<()>().await;
            }
            let body = futures_util::stream::unfold(0, move |i| {
                let mut go = go.clone();
                async move {
                    match i {
                        0 => Some((Ok::<_, BoxError>(Frame::data(Bytes::from("first "))), 1)),
                        1 => {
                            let _ = go.wait_for(|go| *go).await;
                            Some((Ok(Frame::data(Bytes::from("second"))), 2))
                        }
                        _ => None,
                    }
                }
            });
            Response::new(StreamBody::new(body).boxed())
        }
    })
    .await;
    let tunnel = client(&server, port, None).await;
    let visitor = Visitor::new(&server);
    let host = host_of(&tunnel.url());
    let res = visitor.send(&host, Request::get("/").body(full("")).unwrap()).await;
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"first ");
    // A request started after that one timed out, so the download has outlived the
    // response timeout (by the server's own clock) before the rest comes.
    assert_eq!(visitor.get(&host, "/never").await.0, 504);
    go_tx.send_replace(true);
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"second");
}
