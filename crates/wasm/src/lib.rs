//! The localtunnels client for WebAssembly: a browser tab, a Worker, Deno or Node as
//! the origin of a public URL.
//!
//! It connects to a localtunnels server with the runtime's own `WebSocket`
//! (`ws(s)://host:port/api/tunnel`, subprotocol `localtunnels.v1`, one binary message
//! per frame) and drives the same sans-IO [`localtunnels_core::Session`] as the native
//! client. Visitors' requests reach JavaScript as real `Request` objects; the handler's
//! `Response` goes back streamed, under the protocol's flow control.
//!
//! ```js
//! import init, { TunnelClient, forward } from 'localtunnels'
//! await init()
//! const client = new TunnelClient({ server: 'https://tunnel.example.com', subdomain: 'demo' })
//! client.onRequest(async (request) => new Response(`hello from ${new URL(request.url).pathname}`))
//! client.onWebSocket((socket) => { socket.onmessage = (e) => socket.send(e.data) })
//! client.on('reconnecting', ({ attempt, delay }) => console.log('retry', attempt, 'in', delay, 'ms'))
//! console.log('public at', await client.connect())
//! ```
//!
//! Layout: `client.rs` is the JavaScript class, `tunnel.rs` the event loop and the
//! shell around the core's `ClientLifecycle` (dial, reconnect, give up), `conn.rs` one
//! WebSocket and its session, `http.rs` and `socket.rs` the two kinds of visitor stream,
//! `forward.rs` the `forward(url)` handler.

#![forbid(unsafe_code)]

mod client;
mod conn;
mod forward;
mod http;
mod inspect;
mod js;
mod options;
mod socket;
mod tunnel;

pub use client::TunnelClient;
pub use forward::forward;
pub use socket::TunnelSocket;

use wasm_bindgen::prelude::wasm_bindgen;

// The TypeScript declarations of the client, its options, events and sockets, written by
// hand so that editors autocomplete the options objects and events; wasm-bindgen appends
// them to pkg/localtunnels.d.ts.
#[wasm_bindgen(typescript_custom_section)]
const TYPESCRIPT: &'static str = include_str!("types.d.ts");
