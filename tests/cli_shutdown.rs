//! Graceful shutdown on SIGTERM, for the server and for the client: the exchange in
//! flight completes, nothing new is taken, and the other side is told.

mod cli_common;
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cli_common::{server, Proc};
use common::{full, host_of, origin, BoxError, Visitor};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use tokio::sync::{oneshot, watch};

/// An origin whose `/slow` answers at once with a head and a first chunk, then holds
/// the rest of the body until `release` is set; `arrived` fires when `/slow` came in.
async fn slow_origin(arrived: oneshot::Sender<()>, release: watch::Receiver<bool>) -> u16 {
    let arrived = Arc::new(Mutex::new(Some(arrived)));
    origin(move |req: Request<Incoming>| {
        let (arrived, release) = (arrived.clone(), release.clone());
        async move {
            if req.uri().path() != "/slow" {
                return Response::new(full("quick"));
            }
            if let Some(tx) = arrived.lock().unwrap().take() {
                let _ = tx.send(());
            }
            let body = futures_util::stream::unfold(0, move |step| {
                let mut release = release.clone();
                async move {
                    match step {
                        0 => Some((Ok::<_, BoxError>(Frame::data(Bytes::from("started, "))), 1)),
                        1 => {
                            let _ = release.wait_for(|go| *go).await;
                            Some((Ok(Frame::data(Bytes::from("finished"))), 2))
                        }
                        _ => None,
                    }
                }
            });
            Response::new(StreamBody::new(body).boxed())
        }
    })
    .await
}

/// A visitor GET that runs in the background; resolves to status and whole body.
fn visit_in_background(port: u16, host: String, path: &'static str) -> tokio::task::JoinHandle<(u16, Bytes)> {
    tokio::spawn(async move {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
        let req = Request::get(format!("http://127.0.0.1:{port}{path}")).header("host", host).body(full("")).unwrap();
        let res = client.request(req).await.expect("response");
        let status = res.status().as_u16();
        (status, res.into_body().collect().await.expect("the whole body").to_bytes())
    })
}

#[tokio::test]
async fn server_sigterm_stops_accepting_finishes_in_flight_and_tells_clients() {
    server_sigterm(&[]).await;
}

#[tokio::test]
async fn a_sharded_server_on_sigterm_finishes_in_flight_and_tells_clients_too() {
    server_sigterm(&["--shards", "2"]).await;
}

/// SIGTERM to a server started with `extra` flags: the listener closes, the client is
/// told, the exchange in flight completes and the server exits 0.
async fn server_sigterm(extra: &[&str]) {
    let (mut srv, port) = server(extra).await;
    let (arrived_tx, arrived) = oneshot::channel();
    let (release, release_rx) = watch::channel(false);
    let origin_port = slow_origin(arrived_tx, release_rx).await;
    let server_url = format!("http://127.0.0.1:{port}");
    let mut client = Proc::spawn(
        &["client", "--server", &server_url, "--local-host", "127.0.0.1", "--local-port", &origin_port.to_string()],
        &[],
    );
    let host = host_of(&client.line().await);
    let in_flight = visit_in_background(port, host, "/slow");
    arrived.await.unwrap();

    srv.terminate();
    srv.stderr_line("no new connections").await;
    // The listener is closed: new visitors (and clients) are refused at once.
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
    assert!(refused.is_err(), "the server still accepts connections");
    // The client was told the server is going away.
    client.stderr_line("server going away").await;

    // The exchange in flight completes, body and all.
    release.send_replace(true);
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"started, finished");
    assert_eq!(srv.exit_code().await, Some(0));

    // The client notices the end of the session and keeps trying until told to stop.
    client.stderr_line("disconnected").await;
    client.terminate();
    assert_eq!(client.exit_code().await, Some(0));
}

#[tokio::test]
async fn client_sigterm_finishes_in_flight_then_leaves() {
    let server = common::server().await;
    let port = server.addr().port();
    let (arrived_tx, arrived) = oneshot::channel();
    let (release, release_rx) = watch::channel(false);
    let origin_port = slow_origin(arrived_tx, release_rx).await;
    let server_url = format!("http://127.0.0.1:{port}");
    let mut client = Proc::spawn(
        &[
            "client",
            "--server",
            &server_url,
            "--local-host",
            "127.0.0.1",
            "--local-port",
            &origin_port.to_string(),
            "--subdomain",
            "leaving",
        ],
        &[],
    );
    let host = host_of(&client.line().await);
    let in_flight = visit_in_background(port, host.clone(), "/slow");
    arrived.await.unwrap();

    client.terminate();
    client.stderr_line("stopping: waiting up to 10 s for 1 request in flight; Ctrl-C again to quit now").await;
    client.stderr_line("closing the tunnel").await;
    release.send_replace(true);
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"started, finished");
    assert_eq!(client.exit_code().await, Some(0));

    // Gone on purpose: once the server has seen the session end, the name is free
    // (not held for a client that may come back), and visitors get the 404 of no tunnel.
    for _ in 0..10_000 {
        if server.stats().tunnels == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(server.stats().tunnels, 0);
    let (status, _) = Visitor::new(&server).get(&host, "/").await;
    assert_eq!(status, 404);
}
