//! WebSocket conformance through a tunnel: Autobahn|Testsuite's fuzzing client
//! (sections 1-7, 9 and 10: framing, pings, reserved bits, opcodes, fragmentation,
//! UTF-8, close handling, large messages, auto-fragmentation) talks to a visitor's
//! WebSocket on the server, which a tunnel relays to an echo origin. Every case must
//! pass as it does against a conforming server.
//!
//! The suite is Python 2 code; `scripts/setup` ports it to Python 3 into
//! `.tools/autobahn` (tests/autobahn/port.py, run by tests/autobahn/wstest3.py).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;

/// The cases run: every section of the protocol's framing and messaging (8 does not
/// exist; 12 and 13 are permessage-deflate, which the tunnel does not negotiate).
const CASES: [&str; 9] = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"];

/// How many cases those patterns name in Autobahn|Testsuite 25.10.1.
const CASE_COUNT: usize = 301;

/// Cases Autobahn may call NON-STRICT through the tunnel, and why: the server checks
/// each frame a visitor sends before anything is relayed, so a bad frame (reserved
/// bits, a reserved opcode, a fragment out of order, invalid UTF-8) fails the
/// connection at once, while the echo of the good message the case sent just before
/// it is still on its way back from the origin. Autobahn allows that ("fail fast")
/// and calls a strict server one that echoes first; a direct tungstenite server is
/// strict on all but 6.4.3/6.4.4. Any other verdict than OK fails the test.
/// Which of these come out NON-STRICT in a run depends on that race: all of them are
/// cases where a good message precedes the bad frame (3.4, 4.1.5 and 4.2.5, sent an
/// octet at a time, mostly pass strictly).
const MAY_BE_NON_STRICT: [&str; 14] = [
    "3.2", "3.3", "3.4", "4.1.3", "4.1.4", "4.1.5", "4.2.3", "4.2.4", "4.2.5", "5.15", "6.4.1", "6.4.2", "6.4.3",
    "6.4.4",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autobahn_fuzzing_client_passes_through_a_tunnel() {
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/autobahn");
    let python = tools.join("venv/bin/python");
    assert!(python.exists(), "no {}: run scripts/setup (it ports Autobahn|Testsuite to Python 3)", python.display());

    let server = server().await;
    let tunnel = client(&server, echo_origin().await, Some("autobahn")).await;
    let out = tempdir();
    let spec = serde_json::json!({
        "outdir": out.join("reports"),
        "servers": [{ "agent": "tunnel", "url": format!("ws://{}/echo", host_of(&tunnel.url())) }],
        "cases": CASES,
        "exclude-cases": [],
        "exclude-agent-cases": {},
    });
    let spec_path = out.join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();

    // The suite's own per-case timeouts bound each case; this bounds a hung run.
    let run = tokio::process::Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/autobahn/wstest3.py"))
        .arg(&spec_path)
        .arg("127.0.0.1")
        .env("PYTHONPATH", tools.join("suite"))
        // The cases drop a connection that has not finished 0.5-1 s after it started: on
        // a loaded 2-core machine a debug build's echo of a 64 KiB message can take that
        // long. Stretched tenfold; a case that finishes does not wait for its timer.
        .env("AUTOBAHN_TIME_SCALE", "10")
        .current_dir(&out)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(900), run).await.expect("the suite finishes").unwrap();
    let log = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "wstest failed: {}\n{log}", output.status);

    let index = std::fs::read_to_string(out.join("reports/index.json"))
        .unwrap_or_else(|e| panic!("no report ({e}); the suite said:\n{log}"));
    let index: serde_json::Value = serde_json::from_str(&index).unwrap();
    let cases = index["tunnel"].as_object().expect("the tunnel's results");
    assert_eq!(cases.len(), CASE_COUNT, "cases run");
    let mut failed = Vec::new();
    let mut non_strict = Vec::new();
    for (case, result) in cases {
        let behavior = result["behavior"].as_str().unwrap_or("?");
        let close = result["behaviorClose"].as_str().unwrap_or("?");
        let passed = match behavior {
            "OK" | "INFORMATIONAL" => true,
            "NON-STRICT" => {
                non_strict.push(case.clone());
                MAY_BE_NON_STRICT.contains(&case.as_str())
            }
            _ => false,
        };
        if !passed || !matches!(close, "OK" | "INFORMATIONAL") {
            let detail = case_detail(&out.join("reports"), result);
            failed.push(format!("{case}: {behavior} / close {close}: {detail}"));
        }
    }
    eprintln!("Autobahn: {} cases, NON-STRICT: {non_strict:?}", cases.len());
    assert!(failed.is_empty(), "{} of {CASE_COUNT} cases failed:\n{}", failed.len(), failed.join("\n"));
    tunnel.close().await;
    let _ = std::fs::remove_dir_all(&out);
}

/// An echo server that conforms as Autobahn checks it: tungstenite, which fails bad
/// frames with the right close codes, plus the close reply sent before the socket is
/// dropped (tungstenite queues it; nothing writes it unless the stream is flushed).
async fn echo_origin() -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else { return };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_close() {
                        let _ = ws.flush().await;
                        break;
                    }
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// The reasons Autobahn gives for a case's verdict, from its report file.
fn case_detail(reports: &Path, result: &serde_json::Value) -> String {
    let Some(file) = result["reportfile"].as_str() else { return String::new() };
    let Ok(text) = std::fs::read_to_string(reports.join(file)) else { return String::new() };
    let Ok(report) = serde_json::from_str::<serde_json::Value>(&text) else { return String::new() };
    format!("{} / {}", report["result"].as_str().unwrap_or(""), report["resultClose"].as_str().unwrap_or(""))
}

/// A fresh directory for the spec and the reports.
fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("localtunnels-autobahn-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
