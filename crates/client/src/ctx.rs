//! [`Ctx`]: what every stream task of a running client needs (its configuration, the
//! origin, the event channel), shared by the client's loop (`client.rs`) and the
//! stream handlers (`http.rs`, `websocket.rs`), which all use this module and not
//! each other's.

use std::sync::{Arc, Mutex, PoisonError};

use localtunnels_driver::Connection;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tracing::warn;

use crate::config::{ClientConfig, HostHeader};
use crate::events::ClientEvent;
use crate::origin::Origin;

/// Per-connection context every stream task needs.
pub(crate) struct Ctx {
    pub(crate) config: ClientConfig,
    pub(crate) origin: Arc<dyn Origin>,
    pub(crate) events: broadcast::Sender<ClientEvent>,
    /// The Host header the origin sees (`--host-header rewrite`), made once: `None`
    /// passes the visitor's through.
    origin_host: Option<HeaderValue>,
    /// The session being served, for [`ClientHandle::in_flight`].
    current: Mutex<Option<Connection>>,
    /// Set by [`ClientHandle::close`]: streams cut from now on were cut by us, not by
    /// their visitors. Shared with the contexts of the joined connections.
    pub(crate) closing: Arc<std::sync::atomic::AtomicBool>,
}

impl Ctx {
    /// The context of a client of `origin`; the Host header the origin sees is made
    /// here, once.
    pub(crate) fn new(config: ClientConfig, origin: Arc<dyn Origin>) -> Ctx {
        let (events, _) = broadcast::channel(1024);
        let origin_host = match config.host_header {
            HostHeader::Rewrite => origin.authority().and_then(|a| HeaderValue::from_str(&a).ok()),
            HostHeader::Preserve => None,
        };
        Ctx { config, origin, events, origin_host, current: Mutex::default(), closing: Default::default() }
    }

    /// The context of a further connection of the same tunnel that runs on a runtime
    /// of its own (`crate::joined`): the same configuration, events and closing flag,
    /// and an origin with connections of its own where the origin keeps any (a pooled
    /// socket belongs to the runtime that opened it).
    pub(crate) fn for_joined(&self) -> Ctx {
        Ctx {
            config: self.config.clone(),
            origin: self.origin.for_another_runtime().unwrap_or_else(|| self.origin.clone()),
            events: self.events.clone(),
            origin_host: self.origin_host.clone(),
            current: Mutex::default(),
            closing: self.closing.clone(),
        }
    }

    /// `conn` is the session being served from now on.
    pub(crate) fn serving(&self, conn: &Connection) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn.clone());
    }

    /// Requests (and WebSockets) in flight through the current session.
    pub(crate) fn in_flight(&self) -> usize {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        current.as_ref().map_or(0, Connection::stream_count)
    }

    pub(crate) fn emit(&self, ev: ClientEvent) {
        // No subscriber is fine: events are for whoever listens.
        let _ = self.events.send(ev);
    }

    /// Reports a problem that did not stop the client: logged (warn) and emitted as
    /// [`ClientEvent::Error`].
    pub(crate) fn error(&self, message: String) {
        warn!("{message}");
        self.emit(ClientEvent::Error { message });
    }

    /// The Host header the origin should see instead of the visitor's, if any.
    pub(crate) fn host_for_origin(&self) -> Option<&HeaderValue> {
        self.origin_host.as_ref()
    }
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").finish_non_exhaustive()
    }
}
