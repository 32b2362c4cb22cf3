//! WebSocket upgrades on the HTTP/1 path: a visitor's handshake through a tunnel (the
//! checks and answers of hyper's path, [`crate::proxy`] and [`crate::websocket`]) and
//! a client's control connection ([`crate::control`]).
//!
//! The 101 is written as hyper writes it (its headers built by the same functions as
//! hyper's path, in a `HeaderMap`: once per WebSocket), and the WebSocket then runs on
//! this connection's socket, with the bytes the visitor sent after its head put back
//! in front ([`Rewind`]). Every message read and written skips hyper's `Upgraded` and
//! its adapters (docs/BENCHMARKS.md). A refused handshake (the server's own answer, or
//! the origin's non-101 response with its body) leaves the connection open for the
//! next request, as hyper leaves it.

use std::sync::Arc;

use http::{HeaderValue, StatusCode};
use localtunnels_core::{ResetCode, StreamKind};
use localtunnels_driver::h1::{ParsedRequest, RequestFraming};
use localtunnels_driver::http::{forwardable_response_list, header_list, header_map};
use localtunnels_driver::websocket::{bridge, bridge_direct, Leg};
use localtunnels_driver::{Rewind, StreamEvent, StreamReceiver, StreamSender};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info_span, Instrument, Span};

use super::block_head::StreamHead;
use super::encode::{encode_head, BodySize, Reply};
use super::exchange::{begin, reply_to, Begun, Html};
use super::present::Present;
use super::response_fields::Shape;
use super::write::{write_streamed, Answered, Streamed};
use super::Conn;
use crate::exchange::{invalid_response, open_error, reset_response, tunnel_head_of};
use crate::state::{Body, Counters, Peer, ServerState};
use crate::tunnel::Tunnel;
use crate::visitors::Admitted;

/// What a visitor's WebSocket handshake ended with.
pub(super) enum Upgrade {
    /// Answered without switching; true when the connection may carry another request.
    Answered(bool),
    /// The 101 is out: the WebSocket runs next ([`Conn::bridge`]).
    Switched(Switched),
}

/// An accepted WebSocket: its stream through the tunnel, its count against the
/// visitor's address, and the span its end is logged in.
pub(super) struct Switched {
    tx: StreamSender,
    rx: StreamReceiver,
    admitted: Admitted,
    span: Span,
}

/// Whether `host` (a checked host name, no port) is answered by the apex pages, as
/// [`crate::server`] routes it: not a tunnel name, nor a custom hostname.
pub(super) fn is_apex(state: &ServerState, host: &str) -> bool {
    crate::server::tunnel_name(host, &state.config.domain).is_none()
        && crate::server::custom_hostname(state, host).is_none()
}

impl<T> Conn<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Carries the WebSocket handshake `req` through `tunnel`, from `peer`, up to the
    /// visitor's answer (hyper's path: [`crate::proxy`], then [`crate::websocket::proxy`]).
    pub(super) async fn websocket(
        &mut self,
        state: &ServerState,
        tunnel: Arc<Tunnel>,
        peer: &Peer,
        mut req: ParsedRequest,
        host: Option<HeaderValue>,
        framing: RequestFraming,
    ) -> Upgrade {
        let started = std::time::Instant::now();
        let Begun { html, reply, allow_trailers } = begin(&req, Present::of(&req.headers), &framing, self.closing);
        let admitted = match crate::access::check_fields(state, &tunnel, peer.addr, &mut req.headers) {
            Ok(admitted) => admitted,
            Err(refused) => return self.answered(state, &req, framing, reply, html, *refused, started).await,
        };
        tunnel.count_request();
        Counters::bump(&state.counters.websockets);
        let key = match crate::websocket::handshake_key(&req.method, &req.headers) {
            Ok(key) => key,
            Err(res) => return self.answered(state, &req, framing, reply, html, *res, started).await,
        };
        let headers = std::mem::take(&mut req.headers);
        let head = tunnel_head_of(state, peer, &req.method, &req.uri(), headers, host, StreamKind::WebSocket);
        let target = head.target.clone();
        // The opener's side stays open: messages follow an accepted upgrade.
        let (tx, mut rx) = match tunnel.open(head, false) {
            Ok(stream) => stream.split(),
            Err(e) => {
                let res = open_error(state, &tunnel.name, e);
                return self.answered(state, &req, framing, reply, html, res, started).await;
            }
        };
        let timeout = state.config.response_timeout;
        // A WebSocket's head comes as a list (the session gives blocks for HTTP streams only).
        let res =
            match localtunnels_driver::timers::timeout(timeout, rx.recv()).await.map(|ev| ev.map(StreamEvent::typed)) {
                Err(_) => {
                    tx.reset(ResetCode::Timeout, "no handshake answer in time");
                    let secs = timeout.as_secs_f32();
                    reset_response(state, ResetCode::Timeout, &format!("no WebSocket handshake answer within {secs} s"))
                }
                Ok(Some(StreamEvent::Response { head, end })) => {
                    match forwardable_response_list(head, StreamKind::WebSocket) {
                        Err(e) => invalid_response(state, &tx, e),
                        Ok((status, mut headers)) if status != StatusCode::SWITCHING_PROTOCOLS => {
                            // The origin refused: its answer, with its body. The upgrade request has
                            // no body: this side ends so that the stream can finish.
                            let _ = tx.finish();
                            crate::cookies::for_tunnel_list(&mut headers, &tunnel.name, &state.config.domain);
                            log(state, &tunnel, peer, &req, status, started);
                            let head = StreamHead::Listed { headers, shape: Shape::General };
                            let response = Streamed { status, head, end, allow_trailers };
                            let keep = write_streamed(
                                &mut self.io,
                                &mut self.out,
                                reply,
                                response,
                                &mut rx,
                                &mut Answered::none(),
                            )
                            .await;
                            drop(admitted);
                            return Upgrade::Answered(keep);
                        }
                        Ok((status, headers)) => {
                            let mut map = crate::websocket::switching_headers(&key, header_map(&headers));
                            crate::cookies::for_tunnel(&mut map, &tunnel.name, &state.config.domain);
                            let mut headers = header_list(map);
                            log(state, &tunnel, peer, &req, status, started);
                            let Ok(_) = encode_head(&mut self.out, reply, status, &mut headers, BodySize::Ended) else {
                                return Upgrade::Answered(false);
                            };
                            // The visitor left before the switch: dropping the stream resets it.
                            if !super::write::flush(&mut self.io, &mut self.out).await {
                                return Upgrade::Answered(false);
                            }
                            let span = info_span!("websocket", tunnel = %tunnel.name, %peer, %target);
                            return Upgrade::Switched(Switched { tx, rx, admitted, span });
                        }
                    }
                }
                Ok(Some(StreamEvent::Reset { code, message })) => reset_response(state, code, &message),
                Ok(_) => reset_response(state, ResetCode::Internal, "the exchange ended without a handshake answer"),
            };
        self.answered(state, &req, framing, reply, html, res, started).await
    }

    /// The server's own answer to a handshake it did not carry through.
    #[allow(clippy::too_many_arguments)]
    async fn answered(
        &mut self,
        state: &ServerState,
        req: &ParsedRequest,
        framing: RequestFraming,
        reply: Reply,
        html: Html,
        res: http::Response<Body>,
        started: std::time::Instant,
    ) -> Upgrade {
        Upgrade::Answered(self.finish(state, req, html, framing, reply, res, started).await)
    }

    /// Runs an accepted WebSocket on this connection until either side ends it.
    /// A plain TCP visitor's bridge has the tunnel's reader write the messages from the
    /// tunnel to its socket, through a second descriptor of it
    /// ([`localtunnels_driver::websocket::bridge_direct`]).
    pub(super) async fn bridge(mut self, state: &ServerState, switched: Switched) {
        let second = self.direct.as_ref().and_then(|d| d.second());
        self.let_go_direct();
        let Switched { tx, rx, admitted, span } = switched;
        let io = Rewind::new(self.buf.freeze(), self.io);
        let max = state.config.max_ws_message;
        // The span is entered to log, not around the bridge: entering and leaving it on
        // every poll cost ~450 instructions per message (docs/BENCHMARKS.md).
        let end = match second {
            Some(second) => bridge_direct(io, second, tx, rx, max).await,
            None => bridge(io, tx, rx, Leg::Visitor, max).await,
        };
        span.in_scope(|| debug!(?end, "visitor WebSocket ended"));
        // The WebSocket counted against the visitor's address while it lasted.
        drop(admitted);
    }

    /// Answers a client's control-connection handshake with its 101 and runs the
    /// session on this connection ([`crate::control::upgrade`] on hyper's path).
    pub(super) async fn control(
        mut self,
        state: Arc<ServerState>,
        peer: Peer,
        req: ParsedRequest,
        framing: RequestFraming,
        key: HeaderValue,
    ) {
        self.let_go_direct();
        let offered = crate::control::offers_subprotocol(&req.headers);
        let reply = reply_to(&req, &framing, self.closing);
        let mut headers = header_list(crate::control::switching_headers(&key, offered));
        let status = StatusCode::SWITCHING_PROTOCOLS;
        if encode_head(&mut self.out, reply, status, &mut headers, BodySize::Ended).is_err()
            || !super::write::flush(&mut self.io, &mut self.out).await
        {
            return;
        }
        // The session's own heartbeats find dead clients.
        peer.idle.disable();
        let io = Rewind::new(self.buf.freeze(), self.io);
        let addr = peer.addr;
        crate::control::run_session(state, addr, io).instrument(info_span!("control", peer = %addr)).await;
    }
}

/// The request's line in the log with `--verbose` (as hyper's path writes it).
fn log(
    state: &ServerState,
    tunnel: &Tunnel,
    peer: &Peer,
    req: &ParsedRequest,
    status: StatusCode,
    started: std::time::Instant,
) {
    if state.config.verbose {
        let path = req.path_and_query();
        let (status, ms) = (status.as_u16(), started.elapsed().as_millis());
        tracing::info!(tunnel = %tunnel.name, %peer, method = %req.method, %path, status, ms, "request");
    }
}
