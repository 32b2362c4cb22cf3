//! The HTTP/1 visitor path: a visitor's connection read and written by the server's
//! own code (the `h1` codec of the driver) instead of hyper, for the requests that
//! make up nearly all traffic: plain HTTP/1.x exchanges with a tunnel on this node.
//!
//! A connection starts here. Each request head is parsed by the driver's walk, or
//! `httparse` for a head the walk leaves to it ([`localtunnels_driver::h1`]), routed as [`crate::server`] routes (trusted proxy,
//! one valid `Host`, absolute-form targets), and, for a live tunnel, carried through
//! the same checks and stream as hyper's path ([`exchange`]). Requests after it on a
//! kept-alive connection follow in order (pipelined ones wait in the read buffer).
//!
//! WebSocket handshakes without a body are upgraded here too ([`upgrade`]): a
//! visitor's through a live tunnel, and a client's control connection; the 101 is
//! written from the tunnel's answer and the WebSocket then runs on this socket.
//!
//! hyper keeps everything else, for the rest of the connection: the connection is
//! handed to it with the bytes read so far put back in front ([`Rewind`](localtunnels_driver::Rewind)) when the
//! first bytes are an HTTP/2 preface, or a request is another upgrade (`CONNECT`,
//! other protocols, a handshake with a body), is for the apex or a name this node does not serve live (held, unknown,
//! another cluster node's). A connection that negotiated `h2` by ALPN, and every
//! connection of a cluster node, goes to hyper from the start ([`crate::server`]).
//!
//! The bounds are hyper's: each head is due one header timeout after the wait for it
//! began (from the accept for the first, from the end of the previous exchange for
//! the next: the keep-alive idle time), a head is at most `max_header_bytes` (at least
//! 8 KiB) and 100 fields; malformed heads and framing get hyper's automatic answers
//! (400, 414, 431) and the connection closes.

mod block_head;
mod closing;
mod direct;
mod encode;
mod exchange;
mod lent;
mod open;
mod present;
mod response_fields;
mod route;
mod upgrade;
mod upload;
mod write;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, HOST};
use http::{HeaderValue, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::Watcher;
use localtunnels_driver::h1::head::MAX_HEADERS;
use localtunnels_driver::h1::{
    parse_request, parse_request_cached, request_framing, BodyLength, FieldCache, HeadError, HeadLimits, ParsedRequest,
    RequestFraming,
};
use localtunnels_driver::lazy_deadline::LazyDeadline;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::debug;

use crate::fields::Fields;
use crate::host::{forwarded_value, host_of};
use crate::registry::Lookup;
use crate::state::{text_response, Body, Counters, Peer, ServerState};
use crate::tunnel::Tunnel;

use closing::Closing;
pub(crate) use encode::{BodySize, Reply};
use route::RouteCache;
use upgrade::Upgrade;

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A visitor connection on the HTTP/1 path.
pub(crate) struct Conn<T> {
    io: T,
    /// Bytes read and not yet consumed: the next head, body bytes, pipelined requests.
    buf: BytesMut,
    /// What goes out next.
    out: BytesMut,
    /// Bytes read ahead while a response is awaited (kept for its capacity).
    early: BytesMut,
    /// The deadline of the wait for each response, made for the first and set again
    /// for each after it (the requests come one at a time: none is lent or returned).
    response_due: Option<LazyDeadline>,
    /// The server is shutting down: the exchange under way is the connection's last.
    closing: bool,
    /// The fields of the last request head, for the next one to clone what it repeats.
    fields: FieldCache,
    /// The socket as the tunnel's reader writes it (plain TCP only: [`direct`]).
    direct: Option<direct::Lender>,
    /// The exchange lent to the tunnel's reader, until its task learns how it ended
    /// ([`lent`]).
    lent: Option<lent::Lent>,
    /// The count of exchanges in flight from the visitor's address that its last
    /// exchange was counted in, for the next one ([`crate::visitors::VisitorSlot`]).
    visitor: crate::visitors::VisitorSlot,
}

/// What the wait for a head ended with.
enum Next {
    /// A head, put in the caller's slot (not returned: moving the parsed request out
    /// of the parse, the wait's future and its result was four `memcpy` calls of its
    /// ~180 bytes per request, ~0.12k instructions; docs/BENCHMARKS.md, fifteenth round).
    Head,
    /// An HTTP/2 preface: hyper serves the connection.
    Http2,
    /// Closed, timed out, shutting down, or an I/O error: nothing to answer.
    Done,
}

/// What becomes of one request. Made once per request and matched at once.
enum Plan {
    /// hyper serves this request and the rest of the connection.
    Hyper,
    /// The server answers at once (a refused host).
    Answer(Box<http::Response<Body>>),
    /// Through this tunnel (with the request's `X-Forwarded-Host`), for the visitor a
    /// trusted proxy named, or else the connection's peer. The named visitor is boxed
    /// (only behind a trusted proxy): a `Peer` in place made every plan a `memcpy`
    /// call each time it moved, twice per request.
    Tunnel(Arc<Tunnel>, Option<Box<Peer>>, Option<HeaderValue>),
    /// A WebSocket upgrade through this tunnel (the same parts as `Tunnel`).
    WebSocket(Arc<Tunnel>, Option<Box<Peer>>, Option<HeaderValue>),
    /// A client's control connection (its `Sec-WebSocket-Key`), from the visitor a
    /// trusted proxy named, or else the connection's peer.
    Control(Option<Box<Peer>>, HeaderValue),
}

/// Serves `io` from `peer`, accepted at `accepted`, until it closes (or hands it to hyper).
/// `direct`: a second descriptor of a plain TCP socket, for the tunnel's reader to
/// write the usual small response to ([`direct`]).
pub(crate) async fn serve<T>(
    state: Arc<ServerState>,
    peer: Peer,
    accepted: Instant,
    io: T,
    direct: Option<std::net::TcpStream>,
    watcher: Watcher,
    shutdown: watch::Receiver<bool>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = HeadLimits { max_bytes: state.config.limits.max_header_bytes.max(8192), max_headers: MAX_HEADERS };
    let header_timeout = state.config.limits.header_read_timeout;
    let (buf, out) = (BytesMut::with_capacity(8192), BytesMut::with_capacity(4096));
    let mut conn = Conn {
        io,
        buf,
        out,
        early: BytesMut::new(),
        response_due: None,
        closing: false,
        fields: FieldCache::default(),
        direct: direct.map(|socket| direct::Lender(direct::DirectSocket::new(socket, state.clone()))),
        lent: None,
        visitor: Default::default(),
    };
    let mut due = LazyDeadline::new(accepted + header_timeout);
    let mut first = true;
    let mut shutdown = Closing::new(shutdown);
    let mut route = RouteCache::default();
    // Each request's head, parsed in place ([`Next::Head`]); emptied after its exchange.
    let mut parsed = None;
    loop {
        match conn.read_head(&limits, &mut due, first, &mut shutdown, &mut parsed).await {
            Ok(Next::Head) => {}
            // No request yet: hyper holds the first one to the deadline from the accept.
            Ok(Next::Http2) => return conn.hand_off(state, peer, Some(accepted), None, watcher).await,
            Ok(Next::Done) => return,
            Err(e) => return conn.refuse_head(e.status()).await,
        };
        let Some(head) = parsed.as_mut() else { return };
        first = false;
        let framing = match request_framing(head.version, &head.method, &head.headers) {
            Ok(f) => f,
            Err(e) => {
                debug!(%peer, error = %e, "request framing refused");
                return conn.refuse_head(400).await;
            }
        };
        conn.closing = shutdown.now();
        let keep = match plan(&state, &peer, head, &framing, &mut route) {
            Plan::Hyper => return conn.hand_off(state, peer, None, parsed.map(|h| h.raw), watcher).await,
            Plan::Answer(res) => conn.answer_unread(head, framing, *res).await,
            Plan::Tunnel(tunnel, visitor, host) => {
                let visitor = visitor.as_deref().unwrap_or(&peer);
                // Lent, not moved: the exchange's future holds a reference, not the head.
                conn.exchange(&state, tunnel, visitor, head, host, framing).await
            }
            Plan::WebSocket(tunnel, visitor, host) => {
                let visitor = visitor.as_deref().unwrap_or(&peer);
                let Some(head) = parsed.take() else { return };
                match conn.websocket(&state, tunnel, visitor, head, host, framing).await {
                    Upgrade::Answered(keep) => keep,
                    Upgrade::Switched(switched) => {
                        // Upgraded connections are not waited for at shutdown (as with hyper).
                        drop(watcher);
                        peer.idle.disable();
                        return conn.bridge(&state, switched).await;
                    }
                }
            }
            Plan::Control(visitor, key) => {
                drop(watcher);
                let visitor = visitor.map_or(peer, |v| *v);
                let Some(head) = parsed.take() else { return };
                return conn.control(state, visitor, head, framing, key).await;
            }
        };
        parsed = None;
        // Lent to the tunnel's reader: the exchange ended for this task, which learns
        // how with the next bytes, a deadline or the reader's news ([`lent`]).
        if conn.lent.is_some() {
            match conn.past_lent(&state, &mut due, header_timeout, &mut shutdown).await {
                true => continue,
                false => break,
            }
        }
        if !keep || shutdown.now() {
            break;
        }
        // From the end of the exchange: the response's write.
        due.set(crate::poll_clock::now() + header_timeout);
    }
    let _ = conn.io.shutdown().await;
    drop(watcher);
}

/// Where a request goes, decided before anything is counted or charged. The checks
/// are those of hyper's path ([`crate::server`]), read from the parsed header list.
///
/// Upgrades stay here when they are WebSocket handshakes without a body (a visitor's
/// through a live tunnel, or a client's control connection, [`upgrade`]); hyper takes
/// every other one (`CONNECT`, other protocols, a body to read first).
///
/// A request that names the tunnel the connection's last one went to, the same way,
/// takes that route again without routing it ([`route`]).
fn plan(
    state: &ServerState,
    peer: &Peer,
    head: &mut ParsedRequest,
    framing: &RequestFraming,
    route: &mut RouteCache,
) -> Plan {
    let websocket = framing.upgrade;
    if websocket
        && (head.method != http::Method::GET
            || framing.body != BodyLength::Empty
            || !crate::websocket::asks_websocket(head.version, &head.headers))
    {
        return Plan::Hyper;
    }
    // Read before any lookup: a change to the registry during it is seen next time.
    let generation = state.registry.generation();
    match route.get(generation, head) {
        Some((tunnel, forwarded)) => tunnel_plan(state, peer, head, framing, tunnel, forwarded),
        None => route_anew(state, peer, head, framing, route, generation),
    }
}

/// Routes `head` by its host: through the live tunnel it names (kept in `route` for
/// the next request, under the registry's `generation` read before the lookup), or
/// whatever else becomes of it.
fn route_anew(
    state: &ServerState,
    peer: &Peer,
    head: &mut ParsedRequest,
    framing: &RequestFraming,
    route: &mut RouteCache,
    generation: Option<u64>,
) -> Plan {
    let websocket = framing.upgrade;
    let port = state.default_port();
    let (tunnel, forwarded) = match host_of(&head.headers, head.authority(), head.version, port) {
        Ok(Some(h)) => {
            let Some((tunnel, keepable)) = live_tunnel(state, h.name()) else {
                return match websocket && upgrade::is_apex(state, h.name()) {
                    true => control_plan(state, peer, head),
                    false => Plan::Hyper,
                };
            };
            let forwarded = forwarded_value(&h, head.headers.first(&HOST), port);
            if keepable {
                route.keep(generation, head, &tunnel, &forwarded);
            }
            (tunnel, forwarded)
        }
        Ok(None) if websocket => return control_plan(state, peer, head),
        Ok(None) => return Plan::Hyper,
        Err(e) => {
            Counters::bump(&state.counters.bad_request);
            return Plan::Answer(Box::new(text_response(StatusCode::BAD_REQUEST, e.to_string())));
        }
    };
    tunnel_plan(state, peer, head, framing, tunnel, forwarded)
}

/// The plan for a request routed to the live `tunnel`.
fn tunnel_plan(
    state: &ServerState,
    peer: &Peer,
    head: &mut ParsedRequest,
    framing: &RequestFraming,
    tunnel: Arc<Tunnel>,
    forwarded: Option<HeaderValue>,
) -> Plan {
    let websocket = framing.upgrade;
    // One `Content-Length` goes on, as hyper passes it: repeats (equal, or the head
    // was refused) are dropped, and all of them when `Transfer-Encoding` came too. The
    // usual head has at most one and no walk (~0.04k instructions).
    if framing.drop_content_length || framing.repeated_content_length {
        let mut length_seen = framing.drop_content_length;
        head.headers.retain(|(name, _)| name != CONTENT_LENGTH || !std::mem::replace(&mut length_seen, true));
    }
    let visitor = proxied_visitor(state, peer, head);
    match websocket {
        true => Plan::WebSocket(tunnel, visitor, forwarded),
        false => Plan::Tunnel(tunnel, visitor, forwarded),
    }
}

/// A WebSocket handshake for the apex: a client's control connection when it is for
/// the control endpoint with a key (hyper answers the rest as it does today).
fn control_plan(state: &ServerState, peer: &Peer, head: &ParsedRequest) -> Plan {
    if head.path() != localtunnels_driver::CONTROL_PATH {
        return Plan::Hyper;
    }
    let Some(key) = head.headers.first(&http::header::SEC_WEBSOCKET_KEY) else { return Plan::Hyper };
    Plan::Control(proxied_visitor(state, peer, head), key.clone())
}

/// Behind a trusted proxy, the visitor it names, who stands for the connection's peer.
/// Without a trusted proxy (the default) nothing is looked up: the lookup's call and
/// its check of the peer's address cost ~0.1k instructions per request.
fn proxied_visitor(state: &ServerState, peer: &Peer, head: &ParsedRequest) -> Option<Box<Peer>> {
    let proxies = &state.config.trusted_proxies;
    if proxies.is_empty() {
        return None;
    }
    proxies.visitor(peer.addr.ip(), &head.headers).map(|f| Box::new(f.apply(peer)))
}

/// The live tunnel on this node that `host` (a checked host name, no port) names, as
/// `<name>.<domain>` or as a custom hostname; `None` for anything else (hyper's path
/// answers it: the apex, held and unknown names, other cluster nodes' tunnels). With
/// it, whether the name came from the host alone (a custom hostname's mapping may
/// change without the registry: its route is not kept).
fn live_tunnel(state: &ServerState, host: &str) -> Option<(Arc<Tunnel>, bool)> {
    let (lookup, keepable) = match crate::hostnames::name_under(host, &state.config.domain) {
        Some(name) if name.bytes().any(|b| b.is_ascii_uppercase()) => {
            (state.registry.lookup(&name.to_ascii_lowercase()), true)
        }
        Some(name) => (state.registry.lookup(name), true),
        None => (state.registry.lookup(&crate::server::custom_hostname(state, host)?), false),
    };
    match lookup {
        Lookup::Live(tunnel) => Some((tunnel, keepable)),
        _ => None,
    }
}

impl<T> Conn<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Reads until a whole head is buffered (and parsed into `head`), `due` passes, or
    /// the connection ends.
    async fn read_head(
        &mut self,
        limits: &HeadLimits,
        due: &mut LazyDeadline,
        first: bool,
        shutdown: &mut Closing,
        head: &mut Option<ParsedRequest>,
    ) -> Result<Next, HeadError> {
        loop {
            if first && is_preface_start(&self.buf) {
                if self.buf.len() >= H2_PREFACE.len() {
                    return Ok(Next::Http2);
                }
            } else if self.buf.is_empty() {
                // Nothing to parse yet (the usual state after an exchange).
            } else if self.parse(limits, first, head)? {
                return Ok(Next::Head);
            }
            if self.buf.is_empty() && shutdown.now() {
                return Ok(Next::Done);
            }
            if self.buf.capacity() - self.buf.len() < 1024 {
                self.buf.reserve(8192);
            }
            let idle = self.buf.is_empty();
            let read = tokio::select! {
                biased;
                read = self.io.read_buf(&mut self.buf) => read,
                () = std::future::poll_fn(|cx| due.poll_expired(cx)) => {
                    debug!("no request head within the header timeout; closing");
                    return Ok(Next::Done);
                }
                () = std::future::poll_fn(|cx| shutdown.poll_changed(cx)), if idle => return Ok(Next::Done),
            };
            match read {
                Ok(0) | Err(_) => return Ok(Next::Done),
                Ok(_) => {}
            }
        }
    }

    /// The head at the front of the read buffer, into `head`, if it is whole (true). The
    /// first head of a connection is parsed as it is; the ones after it with the
    /// connection's [`FieldCache`], which clones the names and values that repeat the
    /// last head's (~0.1k instructions a name, ~3 a value's byte: docs/BENCHMARKS.md,
    /// fourteenth round), so that a connection that carries one request pays nothing to
    /// fill it.
    fn parse(&mut self, limits: &HeadLimits, first: bool, head: &mut Option<ParsedRequest>) -> Result<bool, HeadError> {
        *head = match first {
            true => parse_request(&mut self.buf, limits)?,
            false => parse_request_cached(&mut self.buf, limits, &mut self.fields)?,
        };
        Ok(head.is_some())
    }

    /// hyper's answer to a head it cannot read; the connection then closes.
    async fn refuse_head(mut self, status: u16) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        let reply = Reply { version: http::Version::HTTP_11, head: false, keep_alive: false };
        if encode::encode_head(&mut self.out, reply, status, &mut Vec::new(), BodySize::Ended).is_ok() {
            let _ = self.io.write_all(&self.out).await;
        }
        let _ = self.io.shutdown().await;
    }

    /// Closes the second descriptor ([`direct`]) of a connection that leaves the HTTP/1
    /// path (to hyper, a WebSocket bridge or a client's control session): only this
    /// path's responses use it, and a long-lived connection holding it would take two
    /// of the process's descriptors for its whole life (10,000 tunnels, 20,000).
    fn let_go_direct(&mut self) {
        self.direct = None;
    }

    /// Hands the connection to hyper, `head` (if any) and the unread bytes first; with
    /// `accepted`, its first request is due one header timeout after it.
    async fn hand_off(
        mut self,
        state: Arc<ServerState>,
        peer: Peer,
        accepted: Option<Instant>,
        head: Option<Bytes>,
        watcher: Watcher,
    ) {
        self.let_go_direct();
        let prefix = match head {
            Some(head) if self.buf.is_empty() => head,
            Some(head) => {
                let mut all = BytesMut::with_capacity(head.len() + self.buf.len());
                all.extend_from_slice(&head);
                all.extend_from_slice(&self.buf);
                all.freeze()
            }
            None => self.buf.freeze(),
        };
        let io = TokioIo::new(localtunnels_driver::Rewind::new(prefix, self.io));
        crate::server::serve_hyper(state, peer, accepted, io, watcher).await;
    }
}

/// Whether `buf` starts as an HTTP/2 preface does (and may be one).
fn is_preface_start(buf: &[u8]) -> bool {
    !buf.is_empty() && H2_PREFACE.starts_with(&buf[..buf.len().min(H2_PREFACE.len())])
}
