//! The server's handshake parsing: a control connection's first message decoded as a
//! frame, its hello checked by `check_hello` (auth token, name, the token's name
//! restrictions, the visitor rules) under an open server, a server with tokens and a
//! fail-closed one; then the visitor rules applied to arbitrary addresses and
//! `Authorization` headers, and visitor Host headers routed, parsed and normalised.
//!
//! Checks: no panic; auth fails closed; an accepted name is valid, lowercase and
//! allowed for the token; a refusal never depends on (so never repeats) a rejected token;
//! a parsed Host's normal form is valid, stable and names the same host.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use localtunnels_core::{DecodeLimits, Frame, Hello, RefuseReason, PROTOCOL_VERSION};
use localtunnels_server::host::{forwarded_host, request_host, Host};
use localtunnels_server::{check_hello, find_token, tunnel_name, validate_name, Access, AuthToken, ServerConfig};

/// A token no configuration accepts.
const SENTINEL: &str = "\u{1}not-a-token\u{1}";

/// A hello built field by field, so the fuzzer reaches the checks without first
/// having to discover the wire format.
#[derive(Debug, Arbitrary)]
struct Fields {
    name: String,
    token: String,
    reconnect_token: String,
    basic_auth: String,
    allow_ips: Vec<String>,
    authorization: Vec<u8>,
    peer: [u8; 16],
    host: String,
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut u = Unstructured::new(rest);
    let (hello, extra) = match mode % 3 {
        // The first message exactly as a client sent it.
        0 => match Frame::decode(Bytes::copy_from_slice(rest), &DecodeLimits::default()) {
            Ok(Frame::Hello(h)) => (*h, None),
            _ => return,
        },
        // A hello frame whose fields are the fuzzer's bytes.
        1 => {
            let mut msg = vec![0x01, 0, 0, 0, 0, b'L', b'T', b'U', b'N'];
            msg.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
            msg.extend_from_slice(rest);
            match Frame::decode(Bytes::from(msg), &DecodeLimits::default()) {
                Ok(Frame::Hello(h)) => (*h, None),
                _ => return,
            }
        }
        // Structured fields, round-tripped through the codec first.
        _ => {
            let Ok(f) = Fields::arbitrary(&mut u) else { return };
            let hello = Hello {
                version: PROTOCOL_VERSION,
                name: f.name.clone(),
                token: f.token.clone(),
                reconnect_token: f.reconnect_token.clone(),
                basic_auth: f.basic_auth.clone(),
                allow_ips: f.allow_ips.clone(),
                ..Hello::default()
            };
            let wire = Frame::Hello(Box::new(hello.clone())).encode();
            let back = match Frame::decode(wire, &DecodeLimits { max_frame: usize::MAX, max_header_bytes: usize::MAX })
            {
                Ok(Frame::Hello(back)) => *back,
                Ok(other) => panic!("a hello decoded as {other:?}"),
                Err(_) => return,
            };
            // What survives the wire: empty fields mean "absent" (an empty allow-list
            // entry is dropped, which is why the client refuses to send one), and a
            // field is at most 65,535 bytes.
            let fits = [&hello.name, &hello.token, &hello.reconnect_token, &hello.basic_auth]
                .into_iter()
                .chain(&hello.allow_ips)
                .all(|v| v.len() <= usize::from(u16::MAX));
            if fits {
                let mut expected = hello.clone();
                expected.allow_ips.retain(|ip| !ip.is_empty());
                assert_eq!(back, expected, "hello round trip");
            }
            (back, Some(f))
        }
    };
    if hello.version != PROTOCOL_VERSION {
        return;
    }

    let open = ServerConfig::default();
    let with_tokens = ServerConfig {
        tokens: vec![AuthToken::new("alpha-token"), AuthToken::with_names("beta-token", ["demo", "team-*"])],
        ..ServerConfig::default()
    };
    let closed = ServerConfig { tokens_file: Some("/nonexistent".into()), ..ServerConfig::default() };

    for config in [&open, &with_tokens, &closed] {
        match check_hello(config, &hello) {
            Ok(a) => {
                assert!(!std::ptr::eq(config, &closed), "a server with no token admitted a client");
                if let Some(name) = &a.name {
                    assert_eq!(validate_name(name).as_deref(), Ok(name.as_str()), "admitted an invalid name");
                    assert_eq!(name, &hello.name.to_ascii_lowercase());
                }
                if std::ptr::eq(config, &with_tokens) {
                    match a.token {
                        Some(0) => assert_eq!(hello.token, "alpha-token"),
                        Some(1) => {
                            assert_eq!(hello.token, "beta-token");
                            let n = a.name.as_deref().expect("a restricted token needs a name");
                            assert!(n == "demo" || n.starts_with("team-"), "token used a name it may not: {n}");
                        }
                        other => panic!("admitted with token {other:?}"),
                    }
                } else {
                    assert_eq!(a.token, None);
                }
                exercise_access(&a.access, extra.as_ref());
            }
            Err(r) => {
                if std::ptr::eq(config, &closed) {
                    assert_eq!(r.reason, RefuseReason::Unauthorized);
                }
                // The refusal must not depend on a rejected token's value: swapping it
                // for another rejected token gives the very same refusal. (A substring
                // test is not enough: the fuzzer finds tokens that are pieces of the
                // fixed texts or of the echoed name.)
                let t = &hello.token;
                if !t.is_empty() && t != SENTINEL && find_token(&config.tokens, t).is_none() {
                    let swapped = Hello { token: SENTINEL.to_string(), ..hello.clone() };
                    let again = check_hello(config, &swapped).expect_err("a rejected token stays rejected");
                    assert_eq!(again, r, "a refusal depends on the token's value");
                }
            }
        }
    }

    if let Some(f) = &extra {
        let _ = tunnel_name(&f.host, "localhost");
        let _ = tunnel_name(&f.host, "tunnel.example.com");
        check_host(&f.host);
    }
});

/// A visitor's `Host`: whatever parses has a normal form (the `X-Forwarded-Host` the
/// origin sees) that is a valid header value, lowercase, without a trailing dot, that
/// parses again to the same host and port, and is its own normal form; a request
/// with it routes as the parsed host does.
fn check_host(raw: &str) {
    let Ok(host) = Host::parse(raw) else { return };
    for default_port in [80, 443] {
        let normal = host.normalized(default_port);
        let text = normal.as_deref().unwrap_or(raw);
        assert!(http::HeaderValue::from_str(text).is_ok(), "normal form {text:?} is no header value");
        assert!(!text.bytes().any(|b| b.is_ascii_uppercase()) && !text.contains(".:") && !text.ends_with('.'));
        let again = Host::parse(text).expect("a normal form parses");
        assert!(again.same_as(&host, default_port), "{text:?} names another host than {raw:?}");
        assert_eq!(again.normalized(default_port), None, "the normal form of {raw:?} is not stable");
        let req = http::Request::get("/").header(http::header::HOST, raw).body(()).expect("a valid request");
        let routed = request_host(&req, default_port).expect("a parsed Host is accepted").expect("a host");
        assert_eq!(routed.name(), host.name());
        let forwarded = forwarded_host(&req, default_port).expect("an X-Forwarded-Host");
        assert_eq!(forwarded.as_bytes(), text.as_bytes());
    }
}

fn exercise_access(access: &Access, extra: Option<&Fields>) {
    let fixed =
        [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST), IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))];
    for ip in fixed {
        let _ = access.allows_ip(ip);
    }
    let Some(f) = extra else { return };
    let v6 = IpAddr::V6(Ipv6Addr::from(f.peer));
    let v4 = IpAddr::V4(Ipv4Addr::new(f.peer[0], f.peer[1], f.peer[2], f.peer[3]));
    // An IPv4 peer and its IPv4-mapped IPv6 form are the same visitor.
    let mapped = IpAddr::V6(Ipv4Addr::new(f.peer[0], f.peer[1], f.peer[2], f.peer[3]).to_ipv6_mapped());
    assert_eq!(access.allows_ip(v4), access.allows_ip(mapped));
    let _ = access.allows_ip(v6);
    if let Ok(value) = http::HeaderValue::from_bytes(&f.authorization) {
        let _ = access.allows_credentials(Some(&value));
    }
    if access.is_open() {
        assert!(access.allows_credentials(None));
    }
}
