//! The server's own HTTP/1 visitor path against hyper's: the same corpus of raw
//! requests (well-formed ones, the hardening work's malformed ones, request smuggling
//! attempts) and of origin responses (scripted raw bytes, unusual and invalid ones)
//! goes through two servers, one serving HTTP/1 visitors itself (the default) and one
//! with `http1_by_hyper`, each with its own tunnel to the same origin. Every response
//! the visitor reads (status, headers in order, body, whether it ended as framed) and
//! whether the connection stays usable must be the same on both; each case also names
//! the status it must get, so a change that broke both paths alike fails too.

mod common;
#[path = "http1_differential_util/mod.rs"]
mod util;

use common::*;
use localtunnels_server::{Limits, ServerConfig, ServerHandle};
use util::{handshake, normalise, scripted_origin, visit, Outcome};

/// One case: a name, the raw bytes a visitor writes (`{H}` stands for the tunnel's
/// host), the method of each request in it, and the status of its first response
/// ([`CUT`]: no complete response at all).
const CUT: u16 = 0;

struct Case {
    name: &'static str,
    raw: String,
    methods: Vec<&'static str>,
    status: u16,
}

fn case(name: &'static str, raw: &str, methods: &[&'static str], status: u16) -> Case {
    Case { name, raw: raw.to_string(), methods: methods.to_vec(), status }
}

/// The request corpus.
fn requests() -> Vec<Case> {
    let get = &["GET"][..];
    let post = &["POST"][..];
    let big_header = format!("GET /echo HTTP/1.1\r\nHost: {{H}}\r\nX-Big: {}\r\n\r\n", "b".repeat(70_000));
    let many: String = (0..101).map(|i| format!("X-{i}: 1\r\n")).collect();
    let body_3000 = "y".repeat(3000);
    vec![
        case("get", "GET /echo/a?b=1 HTTP/1.1\r\nHost: {H}\r\nUser-Agent: t\r\nX-A: 1\r\nx-a: 2\r\n\r\n", get, 200),
        case("head", "HEAD /r/head HTTP/1.1\r\nHost: {H}\r\n\r\n", &["HEAD"], 200),
        case("post-length", "POST /echo HTTP/1.1\r\nHost: {H}\r\nContent-Length: 5\r\n\r\nhello", post, 200),
        case(
            "post-chunked-trailers",
            "POST /echo HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
            post,
            200,
        ),
        case(
            "pipelined",
            "GET /echo/1 HTTP/1.1\r\nHost: {H}\r\n\r\nPOST /echo/2 HTTP/1.1\r\nHost: {H}\r\nContent-Length: 2\r\n\r\nhiGET /r/length HTTP/1.1\r\nHost: {H}\r\n\r\n",
            &["GET", "POST", "GET"],
            200,
        ),
        // Heads after the first on a connection are read with its field cache: fields
        // repeated, changed, moved, recased, and a malformed one after them.
        case(
            "kept-alive-fields",
            "GET /echo/1 HTTP/1.1\r\nHost: {H}\r\nX-A: 1\r\nAccept: */*\r\n\r\n\
             GET /echo/2 HTTP/1.1\r\nHost: {H}\r\nX-A: 2\r\nAccept: */*\r\n\r\n\
             GET /echo/3 HTTP/1.1\r\nAccept: */*\r\nhost: {H}\r\nx-a: 2\r\n\r\n\
             GET /echo/4 HTTP/1.1\r\nHost: {H}\r\nX-A: 2\r\nBad Name: 1\r\n\r\n",
            &["GET", "GET", "GET"],
            200,
        ),
        case("connection-close", "GET /echo HTTP/1.1\r\nHost: {H}\r\nConnection: close\r\n\r\n", get, 200),
        case("http10", "GET /echo HTTP/1.0\r\nHost: {H}\r\n\r\n", get, 200),
        case("http10-keep-alive", "GET /echo HTTP/1.0\r\nHost: {H}\r\nConnection: keep-alive\r\n\r\n", get, 200),
        case("http10-no-host", "GET /echo HTTP/1.0\r\n\r\n", get, 404),
        case(
            "expect-continue",
            "POST /echo HTTP/1.1\r\nHost: {H}\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
            post,
            100,
        ),
        case("bare-lf", "GET /echo HTTP/1.1\nHost: {H}\n\n", get, 200),
        case("absolute-form", "GET http://{H}/echo HTTP/1.1\r\nHost: {H}\r\n\r\n", get, 200),
        case("te-chunked-gzip-last-chunked", "POST /echo HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", post, 200),
        // Smuggling: Content-Length and Transfer-Encoding together.
        case(
            "cl-te",
            "POST /echo HTTP/1.1\r\nHost: {H}\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            post,
            200,
        ),
        case(
            "te-cl",
            "POST /echo HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            post,
            200,
        ),
        case("cl-same-twice", "POST /echo HTTP/1.1\r\nHost: {H}\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi", post, 200),
        case("cl-differ", "POST /echo HTTP/1.1\r\nHost: {H}\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi!", post, 400),
        case("cl-sign", "POST /echo HTTP/1.1\r\nHost: {H}\r\nContent-Length: +2\r\n\r\nhi", post, 400),
        case("cl-list", "POST /echo HTTP/1.1\r\nHost: {H}\r\nContent-Length: 2, 2\r\n\r\nhi", post, 400),
        case("cl-overflow", "POST /echo HTTP/1.1\r\nHost: {H}\r\nContent-Length: 99999999999999999999999\r\n\r\n", post, 400),
        case("te-http10", "POST /echo HTTP/1.0\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", post, 400),
        case("te-not-chunked", "POST /echo HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: gzip\r\n\r\nhi", post, 400),
        case("te-chunked-then-gzip", "POST /echo HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", post, 400),
        case(
            "te-two-lines",
            "POST /echo HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n",
            post,
            400,
        ),
        case("obs-fold", "GET /echo HTTP/1.1\r\nHost: {H}\r\nX-A: 1\r\n folded\r\n\r\n", get, 400),
        case("space-before-colon", "GET /echo HTTP/1.1\r\nHost : {H}\r\n\r\n", get, 400),
        case("nul-in-value", "GET /echo HTTP/1.1\r\nHost: {H}\r\nX-A: a\0b\r\n\r\n", get, 400),
        // Malformed chunked bodies.
        case("chunk-size-zz", "POST /echo HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", post, 400),
        case(
            "chunk-size-overflow",
            "POST /echo HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\nf0000000000000003\r\nabc\r\n0\r\n\r\n",
            post,
            400,
        ),
        case("chunk-ext-lf", "POST /echo HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n1;a\nb\r\nx\r\n0\r\n\r\n", post, 400),
        case("chunk-no-crlf", "POST /echo HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", post, 400),
        case("chunk-bare-lf", "POST /echo HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n", post, 400),
        // Hosts.
        case("absolute-other-host", "GET http://other.localhost/echo HTTP/1.1\r\nHost: {H}\r\n\r\n", get, 400),
        case("absolute-userinfo", "GET http://u@{H}/echo HTTP/1.1\r\nHost: {H}\r\n\r\n", get, 400),
        case("two-hosts", "GET /echo HTTP/1.1\r\nHost: {H}\r\nHost: {H}\r\n\r\n", get, 400),
        case("bracketed-host", "GET /echo HTTP/1.1\r\nHost: [diff.localhost]\r\n\r\n", get, 400),
        case("no-host", "GET /echo HTTP/1.1\r\nX-A: 1\r\n\r\n", get, 400),
        // Heads that do not parse, or are too large.
        case("long-header", &big_header, get, 431),
        case("many-headers", &format!("GET /echo HTTP/1.1\r\nHost: {{H}}\r\n{many}\r\n"), get, 431),
        case("bad-method", "G(T /echo HTTP/1.1\r\nHost: {H}\r\n\r\n", get, 400),
        case("bad-target", "GET /a\x7f HTTP/1.1\r\nHost: {H}\r\n\r\n", get, 400),
        case("http2-version", "GET /echo HTTP/2.0\r\nHost: {H}\r\n\r\n", get, 400),
        case("tls-on-plain", "\x16\x03\x01\x00\x05hello", get, 400),
        // Routing that stays with hyper, and the server's own answers.
        case("unknown-tunnel", "GET / HTTP/1.1\r\nHost: nobody.localhost\r\n\r\n", get, 404),
        case("apex", "GET /api/status HTTP/1.1\r\nHost: localhost\r\n\r\n", get, 200),
        case(
            "websocket-to-plain-origin",
            "GET /ws HTTP/1.1\r\nHost: {H}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            get,
            200,
        ),
        case("body-declared-over-limit", "POST /echo HTTP/1.1\r\nHost: {H}\r\nContent-Length: 3000\r\n\r\n", post, 413),
        case(
            "body-streamed-over-limit",
            &format!("POST /echo HTTP/1.1\r\nHost: {{H}}\r\nTransfer-Encoding: chunked\r\n\r\nbb8\r\n{body_3000}\r\n0\r\n\r\n"),
            post,
            413,
        ),
        case("html-error-page", "GET /r/switch HTTP/1.1\r\nHost: {H}\r\nAccept: text/html\r\n\r\n", get, 502),
        // Host forms (`{P}` is the server's port): case, a trailing dot, the default
        // port, an empty or zero-led port, IPv6, and a target naming the host.
        case("host-uppercase", "GET /echo HTTP/1.1\r\nHost: DIFF.LocalHost:{P}\r\n\r\n", get, 200),
        case("host-trailing-dot", "GET /echo HTTP/1.1\r\nHost: diff.localhost.:{P}\r\n\r\n", get, 200),
        case("host-no-port", "GET /echo HTTP/1.1\r\nHost: diff.localhost\r\n\r\n", get, 200),
        case("host-default-port", "GET /echo HTTP/1.1\r\nHost: Diff.localhost:80\r\n\r\n", get, 200),
        case("host-empty-port", "GET /echo HTTP/1.1\r\nHost: diff.localhost:\r\n\r\n", get, 200),
        case("host-zero-led-port", "GET /echo HTTP/1.1\r\nHost: diff.localhost:0080\r\n\r\n", get, 200),
        case("host-long-port", "GET /echo HTTP/1.1\r\nHost: diff.localhost:0{P}\r\n\r\n", get, 400),
        case("host-port-overflow", "GET /echo HTTP/1.1\r\nHost: diff.localhost:65536\r\n\r\n", get, 400),
        case("host-ipv6", "GET /echo HTTP/1.1\r\nHost: [0:0::1]:{P}\r\n\r\n", get, 404),
        case("host-ipv6-bad", "GET /echo HTTP/1.1\r\nHost: [::1]x\r\n\r\n", get, 400),
        case("host-underscore", "GET /echo HTTP/1.1\r\nHost: di_ff.localhost:{P}\r\n\r\n", get, 404),
        case("host-two-dots", "GET /echo HTTP/1.1\r\nHost: diff..localhost:{P}\r\n\r\n", get, 400),
        case("absolute-uppercase", "GET http://DIFF.localhost:{P}/echo HTTP/1.1\r\nHost: diff.localhost.:{P}\r\n\r\n", get, 200),
        case("absolute-no-host", "GET http://{H}/echo?q=1 HTTP/1.1\r\n\r\n", get, 200),
        case("absolute-other-port", "GET http://diff.localhost:1/echo HTTP/1.1\r\nHost: {H}\r\n\r\n", get, 400),
        // Request fields: repeated names with others between them, hop-by-hop ones and
        // those `Connection` names, the visitor's own forwarding headers.
        case(
            "fields-interleaved",
            "GET /echo HTTP/1.1\r\nHost: {H}\r\nX-A: 1\r\nUser-Agent: t\r\nx-a: 2\r\nAccept: */*\r\nX-A: 3\r\n\r\n",
            get,
            200,
        ),
        case(
            "fields-hop-by-hop",
            "GET /echo HTTP/1.1\r\nConnection: X-Private, keep-alive\r\nHost: {H}\r\nX-Private: 1\r\nKeep-Alive: 5\r\n\
             TE: trailers\r\nConnection: Host, x-other\r\nX-Other: 2\r\nProxy-Authorization: Basic eA==\r\n\r\n",
            get,
            200,
        ),
        // `TE`: only `te: trailers` goes on, when the visitor's `TE` lists `trailers`.
        case("te-gzip", "GET /echo HTTP/1.1\r\nHost: {H}\r\nTE: gzip\r\nX-A: 1\r\n\r\n", get, 200),
        case(
            "te-list",
            "GET /echo HTTP/1.1\r\nTE: deflate;q=0.5\r\nHost: {H}\r\nte: gzip, TRAILERS\r\nX-A: 1\r\n\r\n",
            get,
            200,
        ),
        case(
            "fields-forwarding",
            "GET /echo HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\nHost: {H}\r\nForwarded: for=1.2.3.4\r\n\
             X-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\nAuthorization: Basic eDp5\r\n\r\n",
            get,
            200,
        ),
        case(
            "fields-lengths-interleaved",
            "POST /echo HTTP/1.1\r\nContent-Length: 2\r\nHost: {H}\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nhi",
            post,
            200,
        ),
    ]
}

/// The response corpus: `GET /r/NAME` for each script of the origin, and its status.
fn responses() -> Vec<Case> {
    let scripts = [
        ("length", 200),
        ("close-delimited", 200),
        ("no-content", 204),
        ("not-modified", 304),
        ("cookies", 200),
        ("hop-by-hop", 200),
        ("switch", 502),
        ("early-hints", 200),
        ("same-lengths", 200),
        // Content-Length beside a chunked body: the client drops the length (RFC 9112 §6.3),
        // so the visitor gets the whole decoded body.
        ("length-and-chunked", 200),
        ("odd-status", 599),
        ("dated", 200),
        ("empty-chunked", 200),
        ("big", 200),
        ("big-chunked", 200),
        ("cut", CUT),
        ("chunked-trailers", 200),
        ("interleaved", 200),
        ("connection-repeated", 200),
        ("trailer-interleaved", 200),
    ];
    let mut cases: Vec<Case> = scripts
        .iter()
        .map(|(name, status)| case(name, &format!("GET /r/{name} HTTP/1.1\r\nHost: {{H}}\r\n\r\n"), &["GET"], *status))
        .collect();
    cases.push(case(
        "trailers-asked-for",
        "GET /r/chunked-trailers HTTP/1.1\r\nHost: {H}\r\nTE: trailers\r\n\r\n",
        &["GET"],
        200,
    ));
    cases.push(case("head-of-length", "HEAD /r/head HTTP/1.0\r\nHost: {H}\r\n\r\n", &["HEAD"], 200));
    cases.push(case("http10-unknown-length", "GET /r/big-chunked HTTP/1.0\r\nHost: {H}\r\n\r\n", &["GET"], 200));
    for name in ["interleaved", "connection-repeated"] {
        // The server's own `Connection` value joins the response's fields: for an HTTP/1.0
        // visitor kept alive, and for a visitor that closes.
        let old = format!("GET /r/{name} HTTP/1.0\r\nHost: {{H}}\r\nConnection: keep-alive\r\n\r\n");
        cases.push(case(name, &old, &["GET"], 200));
        let close = format!("GET /r/{name} HTTP/1.1\r\nHost: {{H}}\r\nConnection: close\r\n\r\n");
        cases.push(case(name, &close, &["GET"], 200));
    }
    cases.push(case(
        "trailer-interleaved-asked-for",
        "GET /r/trailer-interleaved HTTP/1.1\r\nHost: {H}\r\nTE: trailers\r\n\r\n",
        &["GET"],
        200,
    ));
    cases
}

/// A server (its own HTTP/1 path, or hyper's) with a tunnel `diff` to `origin`.
async fn side(http1_by_hyper: bool, origin: u16) -> (ServerHandle, localtunnels_client::ClientHandle) {
    let limits = Limits { max_body: Some(2048), ..Limits::default() };
    let server = server_with(ServerConfig { limits, http1_by_hyper, ..ServerConfig::default() }).await;
    let tunnel = client(&server, origin, Some("diff")).await;
    (server, tunnel)
}

async fn run(server: &ServerHandle, case: &Case, ports: &[u16]) -> Outcome {
    let port = server.addr().port();
    let host = format!("diff.localhost:{port}");
    let raw = case.raw.replace("{H}", &host).replace("{P}", &port.to_string());
    let probe = format!("GET /echo/probe HTTP/1.1\r\nHost: {host}\r\n\r\n");
    visit(port, raw.as_bytes(), &case.methods, &probe, &|text| normalise(text, ports)).await
}

/// `outcome` with a response cut short, and what follows it, left out: whether the
/// head of a broken response got out before the break depends on timing, on both paths.
fn comparable(mut outcome: Outcome) -> Outcome {
    if let Some(cut) = outcome.responses.iter().position(|r| !r.complete) {
        outcome.responses.truncate(cut);
    }
    outcome
}

#[tokio::test]
async fn the_http1_path_answers_every_case_as_hyper_does() {
    let origin = scripted_origin().await;
    let (lean, _lean_tunnel) = side(false, origin).await;
    let (hyper, _hyper_tunnel) = side(true, origin).await;
    let ports = [lean.addr().port(), hyper.addr().port(), origin];
    let mut differ = Vec::new();
    let corpus: Vec<Case> = requests().into_iter().chain(responses()).collect();
    for case in &corpus {
        let ours = run(&lean, case, &ports).await;
        let theirs = run(&hyper, case, &ports).await;
        let (ours, theirs) = (comparable(ours), comparable(theirs));
        let first = ours.responses.first().map(|r| r.status);
        if first.unwrap_or(0) != case.status {
            differ.push(format!("case {}: status {first:?}, not {}: {ours:?}", case.name, case.status));
        }
        if ours != theirs {
            differ.push(format!("case {}:\n  ours:   {ours:?}\n  hyper's: {theirs:?}", case.name));
        }
    }
    assert!(differ.is_empty(), "{} findings over {} cases:\n{}", differ.len(), corpus.len(), differ.join("\n"));
    // Both paths served every case: the lean one did not fall back where it should not.
    assert!(lean.stats().requests > 0 && hyper.stats().requests > 0);
    // The usual responses among them went from the tunnel's reader (`visitor_h1::direct`),
    // with the bytes hyper's path writes; hyper's path has no such write.
    assert!(lean.direct_writes() > 0 && hyper.direct_writes() == 0);
}

/// One WebSocket handshake case: the raw request (`{H}` the tunnel's host, `{P}` the
/// server's port, `{K}` the handshake's usual fields), a message sent right behind
/// the head, whether messages are echoed after a 101, and the status it must get.
struct Handshake {
    name: &'static str,
    raw: &'static str,
    early: Option<&'static str>,
    echo: bool,
    status: u16,
}

fn hs(name: &'static str, raw: &'static str, status: u16) -> Handshake {
    Handshake { name, raw, early: None, echo: status == 101, status }
}

/// The WebSocket handshakes: upgraded (through the tunnel, and the client's control
/// connection), refused by the origin, refused by the server, and upgrades the server
/// does not take (other protocols, a body, HTTP/1.0).
fn handshakes() -> Vec<Handshake> {
    vec![
        hs("accepted", "GET /ws/accept HTTP/1.1\r\nHost: {H}\r\n{K}Sec-WebSocket-Protocol: chat, other\r\n\r\n", 101),
        Handshake {
            early: Some("sent with the head"),
            ..hs("accepted-message-with-head", "GET /ws/accept HTTP/1.1\r\nHost: {H}\r\n{K}\r\n", 101)
        },
        hs(
            "accepted-connection-tokens",
            "GET /ws/accept?q=1 HTTP/1.1\r\nHost: {H}\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            101,
        ),
        hs(
            "accepted-connection-two-lines",
            "GET /ws/accept HTTP/1.1\r\nHost: {H}\r\nConnection: keep-alive\r\nUpgrade: foo, websocket\r\n\
             Connection: upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            101,
        ),
        hs("accepted-connection-close", "GET /ws/accept HTTP/1.1\r\nHost: {H}\r\n{K}Connection: close\r\n\r\n", 101),
        hs("accepted-absolute-form", "GET http://{H}/ws/accept HTTP/1.1\r\nHost: {H}\r\n{K}\r\n", 101),
        hs("origin-refuses", "GET /r/refused HTTP/1.1\r\nHost: {H}\r\n{K}\r\n", 403),
        hs("origin-is-plain", "GET /echo HTTP/1.1\r\nHost: {H}\r\n{K}\r\n", 200),
        hs("origin-switches-cut", "GET /r/switch HTTP/1.1\r\nHost: {H}\r\n{K}\r\n", 502),
        hs(
            "no-key",
            "GET /ws/accept HTTP/1.1\r\nHost: {H}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
            400,
        ),
        hs(
            "empty-key",
            "GET /ws/accept HTTP/1.1\r\nHost: {H}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: \r\n\r\n",
            400,
        ),
        hs(
            "no-version",
            "GET /ws/accept HTTP/1.1\r\nHost: {H}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: a2V5\r\n\r\n",
            426,
        ),
        hs(
            "version-8",
            "GET /ws/accept HTTP/1.1\r\nHost: {H}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n\
             Sec-WebSocket-Key: a2V5\r\n\r\n",
            426,
        ),
        hs("post-with-body", "POST /ws/accept HTTP/1.1\r\nHost: {H}\r\n{K}Content-Length: 5\r\n\r\nhello", 405),
        hs("delete", "DELETE /ws/accept HTTP/1.1\r\nHost: {H}\r\n{K}\r\n", 405),
        hs("http10", "GET /echo HTTP/1.0\r\nHost: {H}\r\n{K}\r\n", 200),
        hs("upgrade-h2c", "GET /echo HTTP/1.1\r\nHost: {H}\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n", 200),
        hs("upgrade-without-connection", "GET /echo HTTP/1.1\r\nHost: {H}\r\nUpgrade: websocket\r\n\r\n", 200),
        hs("bad-host", "GET /ws/accept HTTP/1.1\r\nHost: diff.localhost:65536\r\n{K}\r\n", 400),
        hs("unknown-tunnel", "GET /ws/accept HTTP/1.1\r\nHost: nobody.localhost\r\n{K}\r\n", 404),
        hs(
            "control",
            "GET /api/tunnel HTTP/1.1\r\nHost: localhost:{P}\r\n{K}Sec-WebSocket-Protocol: localtunnels.v1\r\n\r\n",
            101,
        ),
        hs("control-no-subprotocol", "GET /api/tunnel HTTP/1.1\r\nHost: 127.0.0.1:{P}\r\n{K}\r\n", 101),
        hs(
            "control-no-key",
            "GET /api/tunnel HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            426,
        ),
    ]
}

#[tokio::test]
async fn websocket_handshakes_are_answered_as_hyper_answers_them() {
    let origin = scripted_origin().await;
    let (lean, _lean_tunnel) = side(false, origin).await;
    let (hyper, _hyper_tunnel) = side(true, origin).await;
    let ports = [lean.addr().port(), hyper.addr().port(), origin];
    let key = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
               Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let mut differ = Vec::new();
    for case in handshakes() {
        let mut seen = Vec::new();
        for server in [&lean, &hyper] {
            let port = server.addr().port();
            let host = format!("diff.localhost:{port}");
            let raw = case.raw.replace("{K}", key).replace("{H}", &host).replace("{P}", &port.to_string());
            let probe = format!("GET /echo/probe HTTP/1.1\r\nHost: {host}\r\n\r\n");
            let normal = |text: &str| normalise(text, &ports);
            seen.push(handshake(port, raw.as_bytes(), case.early, case.echo, &probe, &normal).await);
        }
        let (ours, theirs) = (&seen[0], &seen[1]);
        let status = ours.response.as_ref().map(|r| r.status);
        if status != Some(case.status) {
            differ.push(format!("case {}: status {status:?}, not {}: {ours:?}", case.name, case.status));
        }
        if case.echo && ours.echoed.len() != 2 + usize::from(case.early.is_some()) {
            differ.push(format!("case {}: messages not echoed: {ours:?}", case.name));
        }
        if ours != theirs {
            differ.push(format!("case {}:\n  ours:   {ours:?}\n  hyper's: {theirs:?}", case.name));
        }
    }
    assert!(differ.is_empty(), "{} findings:\n{}", differ.len(), differ.join("\n"));
}
