//! Tunnel names: a requested valid name is granted (lowercased), no name gets a
//! random readable one, reserved and invalid names are refused with `NameInvalid`, a
//! name in use is refused with `NameTaken` and a message that says what to do.

mod common;

use common::*;
use hyper::body::Incoming;
use hyper::{Request, Response};
use localtunnels_client::{ClientConfig, ConnectError, TunnelClient};
use localtunnels_core::RefuseReason;

async fn hello_origin() -> u16 {
    origin(|_req: Request<Incoming>| async { Response::new(full("hi")) }).await
}

async fn refusal(config: ClientConfig) -> (RefuseReason, String) {
    match TunnelClient::new(config).connect().await {
        Err(ConnectError::Refused { reason, message }) => (reason, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_requested_valid_name_is_granted() {
    let server = server().await;
    let port = hello_origin().await;
    for (asked, granted) in
        [("myapp", "myapp"), ("My-App-2", "my-app-2"), ("x", "x"), (&*"a".repeat(63), &*"a".repeat(63))]
    {
        let tunnel = client(&server, port, Some(asked)).await;
        assert_eq!(tunnel.name(), granted);
        assert_eq!(tunnel.url(), server.tunnel_url(granted));
        assert_eq!(Visitor::new(&server).get(&host_of(&tunnel.url()), "/").await.0, 200);
        tunnel.close().await;
    }
}

#[tokio::test]
async fn no_name_gets_a_random_readable_one() {
    let server = server().await;
    let port = hello_origin().await;
    let mut names = Vec::new();
    let mut connected = Vec::new(); // kept up, so every name is distinct
    for _ in 0..5 {
        let tunnel = client(&server, port, None).await;
        let name = tunnel.name().to_string();
        // adjective-noun-NNNN, e.g. brave-otter-4821
        let parts: Vec<&str> = name.split('-').collect();
        assert_eq!(parts.len(), 3, "{name}");
        assert!(
            parts[0].bytes().all(|c| c.is_ascii_lowercase()) && parts[1].bytes().all(|c| c.is_ascii_lowercase()),
            "{name}"
        );
        assert!(parts[2].len() == 4 && parts[2].bytes().all(|c| c.is_ascii_digit()), "{name}");
        assert_eq!(Visitor::new(&server).get(&host_of(&tunnel.url()), "/").await.0, 200);
        names.push(name);
        connected.push(tunnel);
    }
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{names:?}");
}

#[tokio::test]
async fn reserved_names_are_refused() {
    let server = server().await;
    let port = hello_origin().await;
    for name in ["www", "api", "admin", "WWW", "Admin"] {
        let config = ClientConfig { subdomain: Some(name.into()), ..client_config(&server, port) };
        let (reason, message) = refusal(config).await;
        assert_eq!(reason, RefuseReason::NameInvalid, "{name}");
        assert!(message.contains("reserved"), "{name}: {message}");
    }
}

#[tokio::test]
async fn invalid_labels_are_refused() {
    let server = server().await;
    let port = hello_origin().await;
    let too_long = "a".repeat(64);
    for name in ["bad_name", "-lead", "trail-", "a.b", "spa ce", "ünï", too_long.as_str()] {
        let config = ClientConfig { subdomain: Some(name.into()), ..client_config(&server, port) };
        let (reason, message) = refusal(config).await;
        assert_eq!(reason, RefuseReason::NameInvalid, "{name}");
        assert!(message.contains("not a valid name"), "{name}: {message}");
        assert!(message.contains("letters, digits and hyphens"), "{name}: {message}");
    }
}

#[tokio::test]
async fn a_name_in_use_is_refused_with_name_taken() {
    let server = server().await;
    let port = hello_origin().await;
    let first = client(&server, port, Some("popular")).await;
    let config = ClientConfig { subdomain: Some("popular".into()), ..client_config(&server, port) };
    let (reason, message) = refusal(config).await;
    assert_eq!(reason, RefuseReason::NameTaken);
    assert!(message.contains("'popular' is in use"), "{message}");
    assert!(message.contains("choose another subdomain"), "{message}");
    // The holder is untouched.
    assert_eq!(Visitor::new(&server).get(&host_of(&first.url()), "/").await.0, 200);
}
