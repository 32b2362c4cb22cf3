//! A visitor's HTTP/1 request opened through a tunnel with its OPEN written straight
//! from the parsed head: the fields that go on are written into the frame's header
//! block as they are walked, then the server's `X-Forwarded-*`, where the general path
//! ([`tunnel_head_of`](crate::exchange::tunnel_head_of), then `Session::open`) moves
//! the list into a `RequestHead`, filters it, pushes the forwarded fields (clones),
//! allocates the target's `String`, has the session size, plan and check the list in
//! one walk and write it in another when it is sent, then drops it all after the
//! send. The frame is the same byte for byte (the differential test below runs both
//! over a corpus of heads).

use http::header::HOST;
use http::HeaderValue;
use localtunnels_core::{Header, OpenFields, StreamKind};
use localtunnels_driver::h1::ParsedRequest;
use localtunnels_driver::http::{group_by_name, retain_request_end_to_end};
use localtunnels_driver::{OpenWithinError, StreamHandle};

use super::present::Present;
use crate::exchange::{forwarded_proto, is_forwarding};
use crate::state::{Peer, ServerState};
use crate::tunnel::Tunnel;

/// Opens `req` (an HTTP exchange; its body follows unless `end`) through `tunnel` for
/// `peer`, with `host` as its `X-Forwarded-Host`. `req`'s fields are left as they go
/// on (grouped by name, hop-by-hop ones dropped), the visitor's `X-Forwarded-*` among
/// them; they carry the names `present` has or fewer (the walks for the others are
/// skipped), grouped by name already when `grouped`. The tunnel's stream limit is
/// checked here, by the open ([`OpenWithinError::Busy`]: nothing is sent).
pub(super) fn open(
    state: &ServerState,
    tunnel: &Tunnel,
    peer: &Peer,
    req: &mut ParsedRequest,
    (present, grouped): (Present, bool),
    host: Option<&HeaderValue>,
    end: bool,
) -> Result<StreamHandle, OpenWithinError> {
    let has_host = end_to_end(&mut req.headers, present, grouped);
    let authority = if has_host { None } else { req.authority() };
    let (target, headers) = (req.path_and_query_bytes(), &req.headers);
    let forwarding = present.has(Present::FORWARDING);
    let max_streams = state.config.limits.max_streams_per_tunnel;
    tunnel.open_fields_within(max_streams, StreamKind::Http, req.method.as_str(), target, end, |w| {
        write_fields(w, state, peer, headers, forwarding, authority, host)
    })
}

/// Leaves the fields that go on in `headers` (grouped by name, hop-by-hop ones
/// dropped, `te: trailers` last if the visitor's `TE` asks for trailers:
/// `request_head_from_list`'s steps); whether the visitor sent a `Host`, read before
/// (`Connection: host` does not take it away), as `tunnel_head_of` reads it. A head
/// without hop-by-hop names (nearly every one) walks none of it; one without `TE`
/// skips the walk for it.
fn end_to_end(headers: &mut Vec<Header>, present: Present, grouped: bool) -> bool {
    let has_host = present.has(Present::HOST) && headers.iter().any(|(n, _)| n == HOST);
    if !grouped {
        group_by_name(headers);
    }
    if present.has(Present::HOP_BY_HOP) {
        retain_request_end_to_end(headers, StreamKind::Http, present.has(Present::TE));
    }
    has_host
}

/// Writes the fields of a request head as `with_forwarded` leaves them: the visitor's
/// `headers` but its forwarding ones (looked for only when `forwarding`: the head may
/// carry some), a `Host` from the target's `authority` (for a request without one),
/// then the server's `X-Forwarded-For`, `-Proto` and `-Host`.
fn write_fields(
    w: &mut OpenFields<'_>,
    state: &ServerState,
    peer: &Peer,
    headers: &[Header],
    forwarding: bool,
    authority: Option<&http::uri::Authority>,
    host: Option<&HeaderValue>,
) {
    for (name, value) in headers {
        if !forwarding || !is_forwarding(name) {
            w.push(name, value);
        }
    }
    if let Some(authority) = authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
        w.push(&HOST, &authority);
    }
    // The server's own fields, written together by their names' constant indexes.
    w.push_forwarding(&peer.forwarded_for, forwarded_proto(state, peer), host);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use bytes::BytesMut;
    use localtunnels_core::{FieldCoding, Frame};
    use localtunnels_driver::h1::{parse_request, HeadLimits};

    use super::*;
    use crate::config::ServerConfig;
    use crate::exchange::tunnel_head_of;

    fn state(secure: bool) -> ServerState {
        let config = ServerConfig { secure, ..ServerConfig::default() };
        ServerState {
            registry: Arc::new(crate::registry::LocalRegistry::new(config.grace_period)),
            config,
            counters: Default::default(),
            started: Instant::now(),
            public_port: 80,
            tls: None,
            cluster: None,
        }
    }

    /// Heads of the hardening work and of browsers, with the fields each path sees
    /// (routing and the checks leave them as parsed, but for repeated lengths).
    const HEADS: &[&str] = &[
        "GET /1k HTTP/1.1\r\nHost: cg.localhost:8080\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a.localhost\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 \
         Firefox/133.0\r\nAccept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
         Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br, zstd\r\nSec-Fetch-Dest: document\r\n\
         Sec-Fetch-Mode: navigate\r\nSec-Fetch-Site: none\r\nSec-Fetch-User: ?1\r\nUpgrade-Insecure-Requests: 1\r\n\
         Priority: u=0, i\r\n\r\n",
        "POST /up?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        "GET / HTTP/1.1\r\nX-Forwarded-For: 6.6.6.6\r\nHost: a\r\nForwarded: for=1.2.3.4\r\nX-Forwarded-Host: evil\r\n\
         X-Forwarded-Proto: https\r\nX-Other: 1\r\n\r\n",
        "GET / HTTP/1.1\r\nConnection: keep-alive, X-Drop, Host\r\nX-Drop: 1\r\nHost: a\r\nKeep-Alive: 5\r\n\
         TE: trailers\r\nProxy-Connection: x\r\nUpgrade: h2c\r\n\r\n",
        "GET http://a.localhost:81/p?q HTTP/1.1\r\nAccept: */*\r\n\r\n",
        "GET http://b.localhost/p HTTP/1.0\r\nHost: a.localhost\r\n\r\n",
        "GET / HTTP/1.1\r\nAccept: a\r\nX-A: 1\r\nAccept: b\r\nx-a: 2\r\nHOST: A.LOCALHOST\r\nX-Empty:\r\n\
         X-Obs: café\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        "PURGE /x HTTP/1.1\r\nHost: a\r\nCookie: a=1\r\nCookie: b=2\r\nAuthorization: Basic eDp5\r\n\r\n",
        // Hop-by-hop names without `Connection`, forwarding names alone, their neighbours.
        "GET / HTTP/1.1\r\nHost: a\r\nKeep-Alive: 5\r\nX-Forwarded-Fox: 1\r\nProxy-Connectiom: y\r\n\r\n",
        "GET / HTTP/1.1\r\nProxy-Connection: x\r\nHost: a\r\nTE: trailers\r\nForwarded: for=1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: http\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET /t HTTP/1.1\r\nExpect: 100-continue\r\nUpgrade: websocket\r\n\r\n",
        // `TE`: asking for trailers (a list, parameters, repeated, named by
        // `Connection`) or not.
        "GET / HTTP/1.1\r\nHost: a\r\nTE: gzip\r\nX-A: 1\r\n\r\n",
        "GET / HTTP/1.1\r\nTE: trailers, deflate;q=0.5\r\nHost: a\r\nX-A: 1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nTE: deflate;q=0.5\r\nX-A: 1\r\nte: TRAILERS\r\n\r\n",
        "GET / HTTP/1.1\r\nConnection: TE\r\nTE: trailers\r\nAccept: */*\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nTE: trailers;q=0.5, gzip\r\n\r\n",
        // Targets: a fragment (cut off), a path with JSON and a query with `?`, a path
        // and a query with UTF-8.
        "GET /a?b=1#frag?x HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /#f HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /{\"j\":1}?q=??{k:[2]}`^ HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /caf\u{e9}?q=\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n",
    ];

    /// A head of `n` distinct fields (over `is_grouped`'s pairwise bound, some repeated
    /// apart, so `group_by_name` reorders them).
    fn many(n: usize) -> String {
        let mut head = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 0..n {
            head.push_str(&format!("X-F{}: v{i}\r\n", i % (n / 2).max(1)));
        }
        head + "\r\n"
    }

    #[test]
    fn the_written_open_is_the_one_the_list_made() {
        let limits = HeadLimits { max_bytes: 64 * 1024, max_headers: 100 };
        let mut heads: Vec<String> = HEADS.iter().map(|h| h.to_string()).collect();
        heads.extend([many(40), many(99)]);
        let addr = std::net::SocketAddr::from(([10, 1, 2, 3], 4444));
        let mut proxied = Peer::new(addr, Default::default());
        proxied.proto = Some(HeaderValue::from_static("https"));
        let peers = [Peer::new(addr, Default::default()), proxied];
        for text in &heads {
            let mut buf = BytesMut::from(text.as_bytes());
            let parsed = parse_request(&mut buf, &limits).expect("a head").expect("whole");
            for (secure, peer, host, coding, end) in combinations(&peers) {
                let state = state(secure);
                let host = host.then(|| HeaderValue::from_static("a.localhost:8080"));
                // Today's path: the list moved into a head, encoded as queued.
                let head = tunnel_head_of(
                    &state,
                    peer,
                    &parsed.method,
                    &parsed.uri(),
                    parsed.headers.clone(),
                    host.clone(),
                    StreamKind::Http,
                );
                let listed = Frame::Open { id: 2, head, end }.encode_with(coding);
                // The written one, from the same parsed head.
                let mut req = parsed.clone();
                let present = Present::of(&req.headers);
                let grouped = localtunnels_driver::http::is_left_grouped(&req.headers);
                let has_host = end_to_end(&mut req.headers, present, grouped);
                let authority = if has_host { None } else { req.authority() };
                let target = req.path_and_query_bytes();
                let written =
                    Frame::encode_open_fields(2, StreamKind::Http, req.method.as_str(), target, end, coding, |w| {
                        let forwarding = present.has(Present::FORWARDING);
                        write_fields(w, &state, peer, &req.headers, forwarding, authority, host.as_ref())
                    });
                assert_eq!(written, listed, "{text:?} secure={secure} coding={coding:?} end={end}");
            }
        }
    }

    /// The tunnel head carries one `te: trailers`, last of the visitor's fields, when
    /// the visitor's `TE` lists `trailers`, and no `TE` otherwise.
    #[test]
    fn te_goes_on_as_trailers_only_when_the_visitor_asked() {
        let limits = HeadLimits { max_bytes: 64 * 1024, max_headers: 100 };
        let cases: &[(&str, bool)] = &[
            ("Host: a\r\n", false),
            ("Host: a\r\nTE: trailers\r\nX-A: 1\r\n", true),
            ("Host: a\r\nTE: gzip\r\n", false),
            ("TE: trailers, deflate;q=0.5\r\nHost: a\r\n", true),
            ("TE: deflate\r\nHost: a\r\nTE: Trailers\r\n", true),
            ("Connection: te\r\nTE: trailers\r\n", true),
            ("TE: trailers;q=0.5\r\n", false),
            ("TE: trailersx, xtrailers\r\nConnection: close\r\n", false),
        ];
        for (fields, asked) in cases {
            let text = format!("GET / HTTP/1.1\r\n{fields}\r\n");
            let mut buf = BytesMut::from(text.as_bytes());
            let mut req = parse_request(&mut buf, &limits).expect("a head").expect("whole");
            let present = Present::of(&req.headers);
            end_to_end(&mut req.headers, present, false);
            let te: Vec<_> = req.headers.iter().filter(|(n, _)| n == http::header::TE).map(|(_, v)| v).collect();
            let want: &[&str] = if *asked { &["trailers"] } else { &[] };
            assert_eq!(te, want, "{fields:?}");
            if *asked {
                assert_eq!(req.headers.last().map(|(n, _)| n), Some(&http::header::TE), "{fields:?}");
            }
        }
    }

    /// Every combination of the server's scheme, the peer, an `X-Forwarded-Host`, the
    /// field coding and the end flag.
    fn combinations(peers: &[Peer]) -> Vec<(bool, &Peer, bool, FieldCoding, bool)> {
        let mut all = Vec::new();
        for secure in [false, true] {
            for peer in peers {
                for host in [false, true] {
                    for coding in [FieldCoding::Text, FieldCoding::Indexed] {
                        for end in [false, true] {
                            all.push((secure, peer, host, coding, end));
                        }
                    }
                }
            }
        }
        all
    }
}
