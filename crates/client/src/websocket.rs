//! Tunneled WebSockets on the client: bridged to a WebSocket on the origin.

use std::sync::Arc;

use localtunnels_core::{RequestHead, ResponseHead};
use localtunnels_driver::StreamHandle;

use crate::client::Ctx;

/// Serves one WebSocket stream.
pub(crate) async fn serve(_ctx: Arc<Ctx>, stream: StreamHandle, _head: RequestHead) {
    let head = ResponseHead { status: 501, headers: vec![] };
    let _ = stream.sender.respond(head, false);
    let _ = stream.sender.send_data(bytes::Bytes::from_static(b"WebSocket passthrough is not available yet\n")).await;
    let _ = stream.sender.finish();
}
