//! `--ca FILE` with a self-signed server certificate (issue 17, item 14): the
//! certificate the usual openssl recipe makes is marked `CA:TRUE`, which webpki alone
//! refuses as a server's own (`CaUsedAsEndEntity`). Given with `--ca`, the client
//! accepts it as a pinned certificate, as `curl --cacert` and Node do; another
//! certificate, or one for another name, is refused with an error that names the fix.
//!
//! Real processes: certificates from the `openssl` command line, a `localtunnels
//! server` process serving TLS with one, and `localtunnels client` processes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("lt-pinned-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=<cn> -addext subjectAltName=<san>`:
/// the recipe users follow. Returns the certificate and key files.
fn openssl_self_signed(dir: &Path, stem: &str, cn: &str, san: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join(format!("{stem}.pem")), dir.join(format!("{stem}-key.pem")));
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-subj", &format!("/CN={cn}"), "-addext", &format!("subjectAltName={san}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl req failed");
    (cert, key)
}

/// A `localtunnels server` process on 127.0.0.1, port 0, serving TLS with `cert`;
/// returns it and its port.
async fn tls_server(cert: &Path, key: &Path) -> (Cli, u16) {
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let mut server = Cli::spawn(&[
        "server",
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
        "--domain",
        "localhost",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ]);
    let url = server.line().await;
    assert!(url.starts_with("https://localhost:"), "{url}");
    let port = url.rsplit(':').next().unwrap().parse().unwrap();
    (server, port)
}

/// A client process trusting `ca`, connecting to `server_url`, that must fail: its
/// exit code and its error output.
async fn refused_client(server_url: &str, ca: &Path) -> (i32, String) {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_localtunnels"))
        .args(["client", "--server", server_url, "--local-port", "9"])
        .arg("--ca")
        .arg(ca)
        .env_remove("LOCALTUNNELS_PORT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run).await.expect("the client gives up").unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn a_self_signed_certificate_given_with_ca_is_pinned() {
    let dir = TempDir::new();
    let (cert, key) = openssl_self_signed(&dir.0, "server", "localhost", "DNS:localhost,IP:127.0.0.1");
    // The recipe's certificate is a CA certificate: the case webpki refuses alone.
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&cert)
        .output()
        .expect("openssl runs");
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("CA:TRUE"), "openssl made no CA:TRUE certificate:\n{text}");

    let (mut server, port) = tls_server(&cert, &key).await;
    let origin_port =
        origin(|_req: hyper::Request<hyper::body::Incoming>| async { hyper::Response::new(full("x")) }).await;
    let local = origin_port.to_string();
    let ca = cert.to_str().unwrap();
    // By name (DNS SAN) and by address (IP SAN).
    for (host, name) in [("localhost", "pinned"), ("127.0.0.1", "pinnedip")] {
        let server_url = format!("https://{host}:{port}");
        let mut client =
            Cli::spawn(&["client", "--server", &server_url, "--ca", ca, "--local-port", &local, "--subdomain", name]);
        assert_eq!(client.line().await, format!("https://{name}.localhost:{port}"), "via {host}");
        client.terminate();
        assert!(client.child.wait().await.unwrap().success());
    }

    // Another self-signed certificate for the same names is not the server's: refused,
    // and the error says what to give --ca.
    let (other, _) = openssl_self_signed(&dir.0, "other", "localhost", "DNS:localhost,IP:127.0.0.1");
    let (code, stderr) = refused_client(&format!("https://localhost:{port}"), &other).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("--ca") && stderr.contains("--tls-cert"), "no fix named: {stderr}");

    // A server's own certificate, connected to by a name it does not cover (an
    // address, where its subjectAltName has only the DNS name).
    let (named, named_key) = openssl_self_signed(&dir.0, "named", "localhost", "DNS:localhost");
    let (mut named_server, named_port) = tls_server(&named, &named_key).await;
    let (code, stderr) = refused_client(&format!("https://127.0.0.1:{named_port}"), &named).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("subjectAltName"), "no fix named: {stderr}");

    for s in [&mut server, &mut named_server] {
        s.terminate();
        assert!(s.child.wait().await.unwrap().success());
    }
}
