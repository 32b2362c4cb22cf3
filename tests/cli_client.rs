//! The `localtunnels` command line as a person uses it: URL lines on stdout, logs on
//! stderr, `--print-requests`, flags from `LOCALTUNNELS_*` variables and a TOML file
//! (flag > environment > file), `--help`, the `http PORT` alias, the exit codes, and
//! `--local-https` (system roots by default, `--allow-invalid-cert` for self-signed).

mod cli_common;
mod common;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use cli_common::{server, Proc};
use common::{full, host_of, origin};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};

/// GET `path` on `host` through the server on `port`: status and body.
async fn visit(port: u16, host: &str, method: &str, path: &str, body: &'static str) -> (u16, Bytes) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let req = Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"))
        .header("host", host)
        .body(full(body))
        .unwrap();
    let res = client.request(req).await.unwrap();
    let status = res.status().as_u16();
    (status, res.into_body().collect().await.unwrap().to_bytes())
}

/// An origin answering `/hello` with "hello", `/items` with 201, `/host` with the
/// Host it saw, anything else with 404.
async fn app() -> u16 {
    origin(|req: Request<Incoming>| async move {
        let host = req.headers().get("host").map(|h| h.to_str().unwrap().to_string()).unwrap_or_default();
        match req.uri().path() {
            "/hello" => Response::new(full("hello")),
            "/items" => Response::builder().status(201).body(full("created")).unwrap(),
            "/host" => Response::new(full(host)),
            _ => Response::builder().status(404).body(full("nope")).unwrap(),
        }
    })
    .await
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("localtunnels-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn urls_go_to_stdout_alone_and_logs_to_stderr() {
    let (mut srv, port) = server(&[]).await;
    let origin_port = app().await;
    let mut client = Proc::spawn(
        &[
            "client",
            "--server",
            &format!("http://127.0.0.1:{port}"),
            "--local-host",
            "127.0.0.1",
            "--local-port",
            &origin_port.to_string(),
            "--subdomain",
            "quiet",
        ],
        &[],
    );
    let url = client.line().await;
    assert_eq!(url, format!("http://quiet.localhost:{port}"));
    client.stderr_line(&format!("forwarding {url} -> 127.0.0.1:{origin_port}")).await;
    assert_eq!(visit(port, &host_of(&url), "GET", "/hello", "").await, (200, Bytes::from("hello")));
    // Ctrl-C stops a client as gracefully as SIGTERM.
    client.interrupt();
    assert_eq!(client.exit_code().await, Some(0));
    srv.terminate();
    assert_eq!(srv.exit_code().await, Some(0));
    // Nothing else was printed on stdout by either: only the URL lines.
    assert!(client.stdout_rest().await.is_empty());
    assert!(srv.stdout_rest().await.is_empty());
}

/// Checks a `--print-requests` line: `HH:MM:SS METHOD PATH STATUS <n>ms <n>B`.
fn assert_request_line(line: &str, method: &str, path: &str, status: u16, bytes: usize) {
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields.len(), 6, "{line}");
    let time: Vec<&str> = fields[0].split(':').collect();
    assert!(time.len() == 3 && time.iter().all(|t| t.len() == 2 && t.bytes().all(|c| c.is_ascii_digit())), "{line}");
    assert_eq!(fields[1], method, "{line}");
    assert_eq!(fields[2], path, "{line}");
    assert_eq!(fields[3], status.to_string(), "{line}");
    let ms = fields[4].strip_suffix("ms").unwrap_or_else(|| panic!("duration in {line}"));
    assert!(ms.parse::<u64>().is_ok(), "{line}");
    assert_eq!(fields[5], format!("{bytes}B"), "{line}");
}

#[tokio::test]
async fn print_requests_prints_one_line_per_request() {
    let (_srv, port) = server(&[]).await;
    let origin_port = app().await;
    let mut client = Proc::spawn(
        &[
            "client",
            "--server",
            &format!("http://127.0.0.1:{port}"),
            "--local-host",
            "127.0.0.1",
            "--local-port",
            &origin_port.to_string(),
            "--print-requests",
        ],
        &[],
    );
    let host = host_of(&client.line().await);
    assert_eq!(visit(port, &host, "GET", "/hello?x=1", "").await.0, 200);
    assert_request_line(&client.line().await, "GET", "/hello?x=1", 200, 5);
    assert_eq!(visit(port, &host, "POST", "/items", "payload").await.0, 201);
    assert_request_line(&client.line().await, "POST", "/items", 201, 7);
    assert_eq!(visit(port, &host, "DELETE", "/missing", "").await.0, 404);
    assert_request_line(&client.line().await, "DELETE", "/missing", 404, 4);
}

#[tokio::test]
async fn a_failed_origin_request_is_printed_too() {
    let (_srv, port) = server(&[]).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut client = Proc::spawn(
        &[
            "client",
            "--server",
            &format!("http://127.0.0.1:{port}"),
            "--local-host",
            "127.0.0.1",
            "--local-port",
            &closed.to_string(),
            "--print-requests",
        ],
        &[],
    );
    let host = host_of(&client.line().await);
    assert_eq!(visit(port, &host, "GET", "/down", "").await.0, 502);
    assert_request_line(&client.line().await, "GET", "/down", 502, 0);
    client.stderr_line("is the local server running?").await;
}

#[tokio::test]
async fn every_setting_can_come_from_the_environment() {
    let mut srv = Proc::spawn(
        &["server"],
        &[
            ("LOCALTUNNELS_PORT", "0"),
            ("LOCALTUNNELS_BIND", "127.0.0.1"),
            ("LOCALTUNNELS_DOMAIN", "env.localhost"),
            ("LOCALTUNNELS_RESPONSE_TIMEOUT", "1"),
        ],
    );
    let url = srv.line().await;
    assert!(url.starts_with("http://env.localhost:"), "{url}");
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let origin_port = origin(|req: Request<Incoming>| async move {
        if req.uri().path() == "/slow" {
            std::future::pending::<()>().await;
        }
        let host = req.headers().get("host").map(|h| h.to_str().unwrap().to_string()).unwrap_or_default();
        Response::new(full(host))
    })
    .await;
    let server_url = format!("http://127.0.0.1:{port}");
    let origin_port = origin_port.to_string();
    let mut client = Proc::spawn(
        &["client"],
        &[
            ("LOCALTUNNELS_SERVER", &server_url),
            ("LOCALTUNNELS_LOCAL_HOST", "127.0.0.1"),
            ("LOCALTUNNELS_LOCAL_PORT", &origin_port),
            ("LOCALTUNNELS_SUBDOMAIN", "from-env"),
            ("LOCALTUNNELS_HOST_HEADER", "preserve"),
            ("LOCALTUNNELS_PRINT_REQUESTS", "true"),
        ],
    );
    let public = client.line().await;
    assert_eq!(public, format!("http://from-env.env.localhost:{port}"));
    let host = host_of(&public);
    // Host preserved: the origin sees the public host.
    assert_eq!(visit(port, &host, "GET", "/", "").await, (200, Bytes::from(host.clone())));
    assert_request_line(&client.line().await, "GET", "/", 200, host.len());
    // The server's response timeout (1 s) came from the environment too.
    let (status, body) = visit(port, &host, "GET", "/slow", "").await;
    assert_eq!(status, 504);
    let body = String::from_utf8_lossy(&body);
    assert!(body.starts_with("504 Gateway Timeout: The app behind this tunnel did not answer within 1 s."), "{body}");
}

#[tokio::test]
async fn a_config_file_sets_flags_and_the_environment_and_flags_win_over_it() {
    let dir = scratch_dir("config");
    let origin_port = app().await;
    let server_file = dir.join("server.toml");
    std::fs::write(&server_file, "[server]\nport = 0\nbind = \"127.0.0.1\"\ndomain = \"file.localhost\"\n").unwrap();
    let mut srv = Proc::spawn(&["server", "--config", server_file.to_str().unwrap()], &[]);
    let url = srv.line().await;
    assert!(url.starts_with("http://file.localhost:"), "{url}");
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();

    let client_file = dir.join("client.toml");
    std::fs::write(
        &client_file,
        format!(
            "[client]\nserver = \"http://127.0.0.1:{port}\"\nlocal-host = \"127.0.0.1\"\nlocal-port = {origin_port}\n\
             subdomain = \"from-file\"\nprint-requests = true\nhost-header = \"preserve\"\n"
        ),
    )
    .unwrap();
    let file = client_file.to_str().unwrap();
    // The file alone, named by LOCALTUNNELS_CONFIG.
    let mut client = Proc::spawn(&["client"], &[("LOCALTUNNELS_CONFIG", file)]);
    let public = client.line().await;
    assert_eq!(public, format!("http://from-file.file.localhost:{port}"));
    let host = host_of(&public);
    assert_eq!(visit(port, &host, "GET", "/host", "").await, (200, Bytes::from(host.clone())));
    assert_request_line(&client.line().await, "GET", "/host", 200, host.len());

    // The environment beats the file; a flag beats both.
    let mut by_env = Proc::spawn(&["client", "--config", file], &[("LOCALTUNNELS_SUBDOMAIN", "from-env")]);
    assert_eq!(by_env.line().await, format!("http://from-env.file.localhost:{port}"));
    let mut by_flag = Proc::spawn(
        &["client", "--config", file, "--subdomain", "from-flag"],
        &[("LOCALTUNNELS_SUBDOMAIN", "from-env")],
    );
    assert_eq!(by_flag.line().await, format!("http://from-flag.file.localhost:{port}"));

    // A mistake in the file is named, not ignored.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[client]\nsubdomian = \"typo\"\n").unwrap();
    let run = Proc::run(&["client", "--config", bad.to_str().unwrap()], &[]).await;
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("invalid config file") && run.stderr.contains("subdomian"), "{}", run.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The option entries of a `--help` text: each starts at a line beginning with `-`
/// under the flag indentation (descriptions are indented further) and runs until
/// the next.
fn option_entries(help: &str) -> Vec<String> {
    let mut entries: Vec<String> = Vec::new();
    let mut in_options = false;
    for line in help.lines() {
        if line == "Options:" {
            in_options = true;
            continue;
        }
        if !in_options {
            continue;
        }
        if line.is_empty() || !line.starts_with(' ') {
            if !line.is_empty() {
                in_options = false;
            }
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if indent < 10 && line.trim_start().starts_with('-') {
            entries.push(line.trim().to_string());
        } else if let Some(last) = entries.last_mut() {
            last.push(' ');
            last.push_str(line.trim());
        }
    }
    entries
}

#[tokio::test]
async fn help_documents_every_flag_with_its_environment_variable() {
    let top = Proc::run(&["--help"], &[]).await;
    assert_eq!(top.code, Some(0));
    for word in ["server", "client", "http", "--config", "Exit codes:", "3 server unreachable", "4 name taken"] {
        assert!(top.stdout.contains(word), "top-level help lacks {word}:\n{}", top.stdout);
    }
    for sub in ["server", "client", "http"] {
        let help = Proc::run(&[sub, "--help"], &[]).await;
        assert_eq!(help.code, Some(0));
        let entries = option_entries(&help.stdout);
        assert!(entries.len() > 5, "{sub}: {}", help.stdout);
        for entry in &entries {
            if entry.starts_with("-h, --help") {
                continue;
            }
            assert!(entry.contains("[env: LOCALTUNNELS_"), "{sub}: '{entry}' has no environment variable");
        }
        assert!(help.stdout.contains("TOML"), "{sub} help does not mention the config file");
    }
    let http = Proc::run(&["http", "--help"], &[]).await;
    assert!(http.stdout.contains("<PORT>"), "{}", http.stdout);
}

#[tokio::test]
async fn the_http_alias_exposes_a_port_and_a_verbose_server_logs_each_request() {
    let (mut srv, port) = server(&["--verbose"]).await;
    let origin_port = app().await.to_string();
    let port_arg = port.to_string();
    // The server by --host and --port this time, instead of --server.
    let args = [
        "http",
        &origin_port,
        "--host",
        "127.0.0.1",
        "--port",
        &port_arg,
        "--local-host",
        "127.0.0.1",
        "--subdomain",
        "alias",
    ];
    let mut client = Proc::spawn(&args, &[]);
    let public = client.line().await;
    assert_eq!(public, format!("http://alias.localhost:{port}"));
    assert_eq!(visit(port, &host_of(&public), "GET", "/hello?q=1", "").await, (200, Bytes::from("hello")));
    let line = srv.stderr_line("path=/hello?q=1").await;
    for part in ["request", "tunnel=alias", "method=GET", "status=200", "ms="] {
        assert!(line.contains(part), "{line}");
    }
}

#[tokio::test]
async fn exit_codes_and_messages_say_what_went_wrong() {
    // 3: nobody listens where the server should be.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let run = Proc::run(&["client", "--server", &format!("http://127.0.0.1:{closed}"), "--local-port", "1"], &[]).await;
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(run.stderr.contains("cannot reach the server"), "{}", run.stderr);
    assert!(run.stdout.is_empty());

    let (_srv, port) = server(&[]).await;
    let server_url = format!("http://127.0.0.1:{port}");
    let client = |name: &'static str| {
        ["client", "--server", &server_url, "--local-port", "1", "--subdomain", name].map(String::from)
    };

    // 4: the name is in use.
    let mut holder = Proc::spawn(&client("taken").each_ref().map(String::as_str), &[]);
    holder.line().await;
    let run = Proc::run(&client("taken").each_ref().map(String::as_str), &[]).await;
    assert_eq!(run.code, Some(4), "{}", run.stderr);
    assert!(run.stderr.contains("'taken' is in use"), "{}", run.stderr);
    assert!(run.stderr.contains("choose another subdomain"), "{}", run.stderr);

    // 5: invalid or reserved.
    for (name, says) in [("bad_name", "not a valid name"), ("admin", "reserved")] {
        let run = Proc::run(&client(name).each_ref().map(String::as_str), &[]).await;
        assert_eq!(run.code, Some(5), "{name}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{name}: {}", run.stderr);
    }

    // 2: a usage mistake.
    let run = Proc::run(&["client", "--local-port", "not-a-port"], &[]).await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
}

/// A CA and a `localhost` certificate it signed, as PEM files in `dir`; serves HTTPS
/// with them on 127.0.0.1:0 and returns the port.
async fn https_origin(dir: &std::path::Path) -> u16 {
    use tokio_rustls::rustls;
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "localtunnels origin test CA");
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&key, &ca).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, std::convert::Infallible>(Response::new(full("secure hello")))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    port
}

#[tokio::test]
async fn local_https_verifies_with_the_system_roots_or_allows_an_invalid_cert() {
    let dir = scratch_dir("https");
    let origin_port = https_origin(&dir).await.to_string();
    let (_srv, port) = server(&[]).await;
    let server_url = format!("http://127.0.0.1:{port}");
    let base = ["client", "--server", &server_url, "--local-host", "localhost", "--local-port", &origin_port];

    // The test CA is not trusted: 502 naming the certificate problem and the fix.
    let mut untrusted =
        Proc::spawn(&[&base[..], &["--local-https", "--expose-errors", "--subdomain", "untrusted"]].concat(), &[]);
    let host = host_of(&untrusted.line().await);
    let (status, body) = visit(port, &host, "GET", "/", "").await;
    assert_eq!(status, 502);
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("certificate") && body.contains("--allow-invalid-cert"), "{body}");

    // --allow-invalid-cert accepts it.
    let mut allowed =
        Proc::spawn(&[&base[..], &["--local-https", "--allow-invalid-cert", "--subdomain", "allowed"]].concat(), &[]);
    let host = host_of(&allowed.line().await);
    assert_eq!(visit(port, &host, "GET", "/", "").await, (200, Bytes::from("secure hello")));

    // With the CA among the system's roots (SSL_CERT_FILE), it verifies.
    let ca = dir.join("ca.pem");
    let mut trusted = Proc::spawn(
        &[&base[..], &["--subdomain", "trusted"]].concat(),
        &[("LOCALTUNNELS_LOCAL_HTTPS", "true"), ("SSL_CERT_FILE", ca.to_str().unwrap())],
    );
    let host = host_of(&trusted.line().await);
    assert_eq!(visit(port, &host, "GET", "/", "").await, (200, Bytes::from("secure hello")));
    let _ = std::fs::remove_dir_all(&dir);
}
