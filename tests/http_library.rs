//! The library API: `TunnelServer::start` → a handle with its address, stats and a
//! graceful `stop()`; `TunnelClient::connect` → a handle with `url()`, a stream of
//! events and a graceful `close()`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use localtunnels_client::ClientEvent;
use tokio::sync::{broadcast, oneshot, watch};

async fn next_event(events: &mut broadcast::Receiver<ClientEvent>) -> ClientEvent {
    tokio::time::timeout(Duration::from_secs(30), events.recv()).await.expect("an event in time").expect("events")
}

#[tokio::test]
async fn client_events_tell_the_story_of_each_request() {
    let server = server().await;
    let port = origin(|req: Request<Incoming>| async move {
        match req.uri().path() {
            "/ok" => Response::new(full("12345")),
            _ => Response::builder().status(404).body(full("")).unwrap(),
        }
    })
    .await;
    let mut tunnel = client(&server, port, Some("story")).await;
    let mut events = tunnel.events();
    assert_eq!(next_event(&mut events).await, ClientEvent::Connected { url: tunnel.url() });

    let visitor = Visitor::new(&server);
    assert_eq!(visitor.get(&host_of(&tunnel.url()), "/ok?x=1").await.0, 200);
    assert_eq!(next_event(&mut events).await, ClientEvent::Request { method: "GET".into(), path: "/ok?x=1".into() });
    match next_event(&mut events).await {
        ClientEvent::Response { method, path, status, bytes, .. } => {
            assert_eq!((method.as_str(), path.as_str(), status, bytes), ("GET", "/ok?x=1", 200, 5));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(visitor.get(&host_of(&tunnel.url()), "/nothing").await.0, 404);
    assert!(matches!(next_event(&mut events).await, ClientEvent::Request { .. }));
    assert!(matches!(next_event(&mut events).await, ClientEvent::Response { status: 404, bytes: 0, .. }));
    let stats = server.stats();
    assert_eq!((stats.tunnels, stats.requests), (1, 2));
}

#[tokio::test]
async fn an_unreachable_origin_is_an_error_event_and_a_502_response() {
    let server = server().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut tunnel = client(&server, closed, None).await;
    let mut events = tunnel.events();
    assert!(matches!(next_event(&mut events).await, ClientEvent::Connected { .. }));
    assert_eq!(Visitor::new(&server).get(&host_of(&tunnel.url()), "/").await.0, 502);
    assert!(matches!(next_event(&mut events).await, ClientEvent::Request { .. }));
    match next_event(&mut events).await {
        ClientEvent::Error { message } => assert!(message.contains("is the local server running?"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(next_event(&mut events).await, ClientEvent::Response { status: 502, .. }));
}

/// An origin whose `/slow` sends a first chunk, then waits for `release`; `arrived`
/// fires when `/slow` came in.
async fn slow_origin() -> (u16, oneshot::Receiver<()>, watch::Sender<bool>) {
    let (arrived_tx, arrived) = oneshot::channel();
    let (release, release_rx) = watch::channel(false);
    let arrived_tx = Arc::new(Mutex::new(Some(arrived_tx)));
    let port = origin(move |_req: Request<Incoming>| {
        let (arrived_tx, release_rx) = (arrived_tx.clone(), release_rx.clone());
        async move {
            if let Some(tx) = arrived_tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
            let body = futures_util::stream::unfold(0, move |step| {
                let mut release = release_rx.clone();
                async move {
                    match step {
                        0 => Some((Ok::<_, BoxError>(Frame::data(Bytes::from("a"))), 1)),
                        1 => {
                            let _ = release.wait_for(|go| *go).await;
                            Some((Ok(Frame::data(Bytes::from("b"))), 2))
                        }
                        _ => None,
                    }
                }
            });
            Response::new(StreamBody::new(body).boxed())
        }
    })
    .await;
    (port, arrived, release)
}

#[tokio::test]
async fn server_stop_is_graceful() {
    let server = server().await;
    let addr = server.addr();
    let (port, arrived, release) = slow_origin().await;
    let mut tunnel = client(&server, port, None).await;
    let mut events = tunnel.events();
    assert!(matches!(next_event(&mut events).await, ClientEvent::Connected { .. }));
    let visitor = Visitor::new(&server);
    let host = host_of(&tunnel.url());
    let in_flight = tokio::spawn(async move { visitor.get(&host, "/").await });
    arrived.await.unwrap();

    let stopping = tokio::spawn(server.stop());
    // In flight when the stop began: it completes.
    release.send_replace(true);
    assert_eq!(in_flight.await.unwrap(), (200, Bytes::from("ab")));
    stopping.await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "a stopped server accepts nothing");
    // The client hears about it.
    loop {
        if let ClientEvent::Disconnected { reason } = next_event(&mut events).await {
            assert!(reason.contains("shutting down"), "{reason}");
            break;
        }
    }
}

#[tokio::test]
async fn client_close_is_graceful() {
    let server = server().await;
    let (port, arrived, release) = slow_origin().await;
    let tunnel = client(&server, port, None).await;
    let visitor = Visitor::new(&server);
    let host = host_of(&tunnel.url());
    let in_flight = {
        let (visitor, host) = (visitor.clone(), host.clone());
        tokio::spawn(async move { visitor.get(&host, "/").await })
    };
    arrived.await.unwrap();
    let closing = tokio::spawn(tunnel.close());
    release.send_replace(true);
    assert_eq!(in_flight.await.unwrap(), (200, Bytes::from("ab")));
    closing.await.unwrap();
}
