//! Visitor WebSockets through a tunnel.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode};

use crate::state::{text_response, Body, ServerState};
use crate::tunnel::Tunnel;

/// Carries a visitor's WebSocket upgrade through `tunnel`.
pub async fn proxy(
    _state: Arc<ServerState>,
    _tunnel: Arc<Tunnel>,
    _peer: SocketAddr,
    _req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    text_response(StatusCode::NOT_IMPLEMENTED, "WebSocket passthrough is not available yet")
}
