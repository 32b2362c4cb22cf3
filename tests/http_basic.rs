//! The first end-to-end path: a visitor's GET reaches the origin through the tunnel.

mod common;

use common::*;

#[tokio::test]
async fn get_through_the_tunnel() {
    let server = server().await;
    let port = origin(|req: hyper::Request<hyper::body::Incoming>| async move {
        hyper::Response::new(full(format!("hello {}", req.uri())))
    })
    .await;
    let tunnel = client(&server, port, Some("hello")).await;
    assert_eq!(tunnel.url(), server.tunnel_url("hello"));
    let visitor = Visitor::new(&server);
    let (status, body) = visitor.get(&host_of(&tunnel.url()), "/a?b=c").await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"hello /a?b=c");
    let (status, body) = visitor.get(&host_of(&server.tunnel_url("nobody")), "/").await;
    assert_eq!(status, 404);
    assert!(body.starts_with(b"404 Not Found: There is no tunnel named 'nobody'"), "{body:?}");
}

#[tokio::test]
async fn cli_server_and_client_print_their_urls() {
    let mut server = Cli::spawn(&["server", "--port", "0", "--bind", "127.0.0.1"]);
    let url = server.line().await;
    assert!(url.starts_with("http://localhost:"), "{url}");
    let port = url.rsplit(':').next().unwrap().to_string();
    let origin_port =
        origin(|_req: hyper::Request<hyper::body::Incoming>| async { hyper::Response::new(full("ok")) }).await;
    let mut client = Cli::spawn(&[
        "client",
        "--server",
        &format!("http://127.0.0.1:{port}"),
        "--local-port",
        &origin_port.to_string(),
        "--subdomain",
        "cli",
    ]);
    let public = client.line().await;
    assert_eq!(public, format!("http://cli.localhost:{port}"));
    client.terminate();
    server.terminate();
    assert!(client.child.wait().await.unwrap().success());
    assert!(server.child.wait().await.unwrap().success());
}
