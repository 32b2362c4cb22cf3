//! The command line as someone coming from ngrok or localtunnel meets it: `http
//! localhost:8000` and URL targets, a server without a scheme, short flags, completions
//! and a man page, `config set` and the default config file, booleans as `1/yes/on`,
//! usage errors (exit code 2) for bad values, Ctrl-C twice, `demo` on a busy port, log
//! lines (`--log-format json`, reconnects as warnings), and the visitor's error page.

mod cli_common;
mod common;

use std::path::PathBuf;

use bytes::Bytes;
use cli_common::{server, Proc};
use common::{full, host_of, origin};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};

/// A visitor's request through the server on `port`: status, headers and body.
async fn visit(port: u16, host: &str, path: &str, accept: Option<&str>) -> (u16, http::HeaderMap, Bytes) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let mut req = Request::get(format!("http://127.0.0.1:{port}{path}")).header("host", host);
    if let Some(accept) = accept {
        req = req.header("accept", accept);
    }
    let res = client.request(req.body(full("")).unwrap()).await.unwrap();
    let (parts, body) = res.into_parts();
    (parts.status.as_u16(), parts.headers, body.collect().await.unwrap().to_bytes())
}

async fn hello_origin() -> u16 {
    origin(|req: Request<Incoming>| async move { Response::new(full(format!("hello {}", req.uri().path()))) }).await
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("localtunnels-ux-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn http_takes_host_port_and_urls_and_the_server_needs_no_scheme() {
    let (_srv, port) = server(&[]).await;
    let origin_port = hello_origin().await;
    let server_arg = format!("localhost:{port}");

    // `http 127.0.0.1:PORT`, a server without a scheme, short flags.
    let target = format!("127.0.0.1:{origin_port}");
    let mut client = Proc::spawn(&["http", &target, "--server", &server_arg, "-s", "hostport"], &[]);
    let url = client.line().await;
    assert_eq!(url, format!("http://hostport.localhost:{port}"));
    let note = client.stderr_line("no scheme").await;
    assert!(note.contains(&format!("assuming http://localhost:{port}")), "{note}");
    let (status, _, body) = visit(port, &host_of(&url), "/a", None).await;
    assert_eq!((status, body), (200, Bytes::from("hello /a")));

    // `http http://127.0.0.1:PORT/`: the URL form.
    let target = format!("http://127.0.0.1:{origin_port}/");
    let mut client = Proc::spawn(&["http", &target, "--server", &server_arg, "--subdomain", "url-form"], &[]);
    let url = client.line().await;
    assert_eq!(visit(port, &host_of(&url), "/b", None).await.2, Bytes::from("hello /b"));

    // `http https://localhost:PORT` speaks TLS to the origin.
    let target = format!("https://localhost:{origin_port}");
    let mut client = Proc::spawn(&["http", &target, "--server", &server_arg, "-s", "tls-form"], &[]);
    client.line().await;
    client.stderr_line(&format!("-> https://localhost:{origin_port}")).await;

    // Not a port, host:port or URL: a usage error naming the forms.
    let bad = Proc::run(&["http", "localhost", "--server", &server_arg], &[]).await;
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(bad.stderr.contains("no port"), "{}", bad.stderr);
}

#[tokio::test]
async fn completions_and_a_man_page_come_from_the_same_definitions() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Proc::run(&["completions", shell], &[]).await;
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        assert!(out.stdout.contains("localtunnels") && out.stdout.contains("subdomain"), "{shell}");
    }
    let man = Proc::run(&["man"], &[]).await;
    assert_eq!(man.code, Some(0));
    assert!(man.stdout.starts_with(".ie") || man.stdout.contains(".TH localtunnels"), "{}", &man.stdout[..200]);
    assert!(man.stdout.contains("completions"));
}

#[tokio::test]
async fn config_set_writes_the_default_file_that_later_runs_read() {
    let dir = scratch_dir("config");
    let xdg = dir.to_str().unwrap();
    let env = [("XDG_CONFIG_HOME", xdg)];
    let (_srv, port) = server(&[]).await;
    let origin_port = hello_origin().await;

    let path = Proc::run(&["config", "path"], &env).await;
    assert_eq!(path.stdout.trim(), dir.join("localtunnels/config.toml").to_str().unwrap());
    let server_url = format!("http://127.0.0.1:{port}");
    for (key, value) in [("server", server_url.as_str()), ("local-host", "127.0.0.1"), ("subdomain", "from-file")] {
        let set = Proc::run(&["config", "set", key, value], &env).await;
        assert_eq!(set.code, Some(0), "{}", set.stderr);
    }
    let get = Proc::run(&["config", "get", "server"], &env).await;
    assert_eq!(get.stdout.trim(), server_url);
    // Unknown keys and mistyped values are usage errors, and the file is left as it was.
    let unknown = Proc::run(&["config", "set", "no-such-key", "1"], &env).await;
    assert_eq!(unknown.code, Some(2), "{}", unknown.stderr);
    assert!(unknown.stderr.contains("no-such-key"), "{}", unknown.stderr);
    assert_eq!(Proc::run(&["config", "set", "local-port", "eighty"], &env).await.code, Some(2));

    // `http PORT` with no other flag: the rest comes from the file.
    let mut client = Proc::spawn(&["http", &origin_port.to_string()], &env);
    let url = client.line().await;
    assert_eq!(url, format!("http://from-file.localhost:{port}"));
    assert_eq!(visit(port, &host_of(&url), "/c", None).await.2, Bytes::from("hello /c"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn usage_errors_exit_with_code_2_before_anything_starts() {
    let cases: [&[&str]; 5] = [
        &["server", "--domain", "bad domain"],
        &["server", "--port", "0", "--tls-cert", "cert.pem"],
        &["server", "--port", "0", "--tls-key", "key.pem"],
        &["client", "--allow-ip", "999.1.1.1"],
        &["client", "--allow-ip", "10.0.0.0/99"],
    ];
    for args in cases {
        let out = Proc::run(args, &[]).await;
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
    }
    // From the environment and from the config file too.
    let env = Proc::run(&["server", "--port", "0"], &[("LOCALTUNNELS_DOMAIN", "bad domain")]).await;
    assert_eq!(env.code, Some(2), "{}", env.stderr);
    let dir = scratch_dir("usage");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[server]\ndomain = \"bad domain\"\n").unwrap();
    let out = Proc::run(&["server", "--port", "0", "--config", file.to_str().unwrap()], &[]).await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("bad domain"), "{}", out.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn booleans_from_the_environment_take_1_yes_and_on() {
    let (_srv, port) = server(&[]).await;
    let origin_port = hello_origin().await.to_string();
    let server_url = format!("http://127.0.0.1:{port}");
    for value in ["1", "yes", "on", "TRUE"] {
        let mut client = Proc::spawn(
            &["http", &origin_port, "--server", &server_url, "--local-host", "127.0.0.1"],
            &[("LOCALTUNNELS_PRINT_REQUESTS", value)],
        );
        let host = host_of(&client.line().await);
        assert_eq!(visit(port, &host, "/d", None).await.0, 200);
        let line = client.line().await;
        assert!(line.ends_with(" GET /d 200") || line.contains(" GET /d 200 "), "{value}: {line}");
    }
    let off = Proc::run(&["client", "--server", &server_url], &[("LOCALTUNNELS_PRINT_REQUESTS", "maybe")]).await;
    assert_eq!(off.code, Some(2), "{}", off.stderr);
}

#[tokio::test]
async fn request_lines_show_the_local_time() {
    let (_srv, port) = server(&[]).await;
    let origin_port = hello_origin().await.to_string();
    let server_url = format!("http://127.0.0.1:{port}");
    // A zone 5:30 ahead of UTC, as a POSIX TZ string (no tz database needed).
    let mut client = Proc::spawn(
        &["http", &origin_port, "--server", &server_url, "--local-host", "127.0.0.1", "--print-requests"],
        &[("TZ", "XST-5:30")],
    );
    let host = host_of(&client.line().await);
    assert_eq!(visit(port, &host, "/t", None).await.0, 200);
    let line = client.line().await;
    let time = line.split(' ').next().unwrap();
    let parts: Vec<u64> = time.split(':').map(|p| p.parse().unwrap()).collect();
    let printed = parts[0] * 3600 + parts[1] * 60 + parts[2];
    let utc = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 86_400;
    let expected = (utc + 5 * 3600 + 30 * 60) % 86_400;
    let off_by = printed.abs_diff(expected).min(86_400 - printed.abs_diff(expected));
    assert!(off_by < 120, "printed {time}, local time is {expected} s after midnight: {line}");
}

/// A server process, a client process for an origin that never answers, and a visitor
/// whose request to `path` the origin has received (it waits for an answer).
struct InFlight {
    server: Proc,
    client: Proc,
    visitor: tokio::task::JoinHandle<(u16, http::HeaderMap, Bytes)>,
}

async fn request_in_flight(path: &'static str) -> InFlight {
    let (server, port) = server(&[]).await;
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel();
    let origin_port = origin(move |_req: Request<Incoming>| {
        let arrived = arrived_tx.clone();
        async move {
            let _ = arrived.send(());
            std::future::pending::<()>().await;
            Response::new(full("never"))
        }
    })
    .await;
    let server_url = format!("http://127.0.0.1:{port}");
    let mut client =
        Proc::spawn(&["http", &origin_port.to_string(), "--server", &server_url, "--local-host", "127.0.0.1"], &[]);
    let host = host_of(&client.line().await);
    let visitor = tokio::spawn(async move { visit(port, &host, path, None).await });
    arrived.recv().await.unwrap();
    InFlight { server, client, visitor }
}

#[tokio::test]
async fn ctrl_c_waits_for_requests_in_flight_and_a_second_one_quits_at_once() {
    let InFlight { server: _server, mut client, visitor } = request_in_flight("/slow").await;
    client.interrupt();
    client.stderr_line("stopping: waiting up to 10 s for 1 request in flight; Ctrl-C again to quit now").await;
    client.interrupt();
    // Quit at once (130, as for an interrupted program), not after the 10 s.
    assert_eq!(client.exit_code().await, Some(130));
    visitor.abort();
}

#[tokio::test]
async fn demo_says_when_it_moves_off_a_busy_port_and_its_app_sends_a_content_type() {
    let busy = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port().to_string();
    let mut demo = Proc::spawn(&["demo", "--port", &busy_port], &[]);
    let url = demo.line().await;
    let moved = demo.stderr_line("is busy").await;
    assert!(moved.contains(&format!("port {busy_port} is busy")), "{moved}");
    demo.stderr_line("not through glibc").await;
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let (status, headers, body) = visit(port, &host_of(&url), "/", None).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(body.starts_with(b"<!doctype html>"));
    let (_, headers, _) = visit(port, &host_of(&url), "/api/hello", None).await;
    assert_eq!(headers["content-type"], "application/json");
    drop(busy);
}

#[tokio::test]
async fn origin_errors_are_generic_for_visitors_and_detailed_in_json_logs() {
    let (_srv, port) = server(&[]).await;
    let server_url = format!("http://127.0.0.1:{port}");
    let closed = closed_port().to_string();
    let mut client = Proc::spawn(
        &["http", &closed, "--server", &server_url, "--local-host", "127.0.0.1", "--log-format", "json"],
        &[],
    );
    let host = host_of(&client.line().await);
    let (status, headers, body) = visit(port, &host, "/down", Some("text/html,*/*;q=0.8")).await;
    assert_eq!(status, 502);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(!body.contains(&closed) && !body.contains("refused"), "{body}");
    let id = body.split("Request id: <code>").nth(1).unwrap().split('<').next().unwrap().to_string();
    // The owner's log has the detail under the same id, as one JSON object per line.
    let line = client.stderr_line(&id).await;
    let log: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(log["level"], "WARN", "{line}");
    let message = log["message"].as_str().unwrap();
    assert!(message.contains(&format!("127.0.0.1:{closed}")) && message.contains("GET /down"), "{message}");
    assert!(log["timestamp"].as_str().is_some(), "{line}");
}

#[tokio::test]
async fn a_lost_server_is_one_warning_and_reconnect_attempts_are_not_errors() {
    let (mut srv, port) = server(&[]).await;
    let origin_port = hello_origin().await.to_string();
    let server_url = format!("http://127.0.0.1:{port}");
    let mut client = Proc::spawn(&["http", &origin_port, "--server", &server_url], &[]);
    client.line().await;
    srv.child.start_kill().unwrap();
    srv.child.wait().await.unwrap();
    let lines = client.stderr_until("(attempt 2): cannot reach the server").await;
    let last = lines.last().unwrap();
    assert!(last.contains("WARN") && last.contains("reconnecting in "), "{last}");
    assert_eq!(lines.iter().filter(|l| l.contains("disconnected")).count(), 1, "{lines:#?}");
    assert!(lines.iter().all(|l| !l.contains("ERROR") && !l.starts_with("error:")), "{lines:#?}");
}

#[tokio::test]
async fn debug_logs_show_each_request_and_the_connection() {
    let (_srv, port) = server(&[]).await;
    let origin_port = hello_origin().await.to_string();
    let server_url = format!("http://127.0.0.1:{port}");
    let mut client = Proc::spawn(
        &["http", &origin_port, "--server", &server_url, "--local-host", "127.0.0.1"],
        &[("LOCALTUNNELS_LOG", "debug")],
    );
    let host = host_of(&client.line().await);
    let connecting = client.stderr_line("connecting to ").await;
    assert!(connecting.contains("DEBUG") && connecting.contains(&format!("ws://127.0.0.1:{port}/")), "{connecting}");
    assert_eq!(visit(port, &host, "/e", None).await.0, 200);
    let line = client.stderr_line("status=200").await;
    for field in ["stream=", "path=/e", "status=200", "bytes=8", "ms="] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
}

#[tokio::test]
async fn a_request_cut_by_our_own_close_does_not_blame_the_visitor() {
    let InFlight { server: _server, mut client, visitor } = request_in_flight("/hang").await;
    client.terminate();
    // The grace (10 s) runs out while the visitor still waits: the line says so.
    let lines = client.stderr_until("GET /hang").await;
    let last = lines.last().unwrap();
    assert!(last.contains("the tunnel closed before the origin answered"), "{last}");
    assert!(lines.iter().all(|l| !l.contains("visitor is gone")), "{lines:#?}");
    assert_eq!(client.exit_code().await, Some(0));
    // The visitor got an answer, not a hang.
    let (status, _, _) = visitor.await.unwrap();
    assert!(status == 502 || status == 503, "{status}");
}

#[tokio::test]
async fn a_server_stopping_says_what_it_waits_for_and_a_second_ctrl_c_quits() {
    let InFlight { server: mut srv, client: _client, visitor } = request_in_flight("/slow").await;
    srv.interrupt();
    srv.stderr_line("stopping: waiting up to 10 s for 1 request in flight; Ctrl-C again to quit now").await;
    srv.interrupt();
    assert_eq!(srv.exit_code().await, Some(130));
    visitor.abort();
}
