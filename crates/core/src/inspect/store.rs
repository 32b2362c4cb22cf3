//! The bounded store of entries, oldest evicted first.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::frame::Header;
use crate::time::Instant;

use super::body::BodyCapture;
use super::record::{Direction, Exchange, HttpEntry, HttpRequest, HttpResponse, WsMessage, WsSession, MESSAGE_WEIGHT};

/// An entry's id: the store's 16-bit prefix (so ids of two runs differ) above a
/// 48-bit sequence number (which never wraps in practice, so ids grow with time).
/// Written as 16 hex digits, as ngrok's are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId(pub u64);

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for EntryId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(EntryId)
    }
}

/// The inspector's bounds and options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectConfig {
    /// Total bytes all entries may hold (the oldest are evicted past it). Default 32 MiB.
    pub max_bytes: usize,
    /// Bytes kept of each body; the rest is counted and marked truncated. Default 64 KiB.
    pub body_limit: usize,
    /// Bytes kept of each WebSocket message. Default 4 KiB.
    pub ws_preview: usize,
    /// Messages kept per WebSocket session (the most recent). Default 1,000.
    pub max_ws_messages: usize,
    /// Mask `Authorization`, `Cookie`, `Set-Cookie` (and `Proxy-Authorization`) values
    /// wherever entries are shown. Default false.
    pub redact: bool,
}

impl Default for InspectConfig {
    fn default() -> Self {
        InspectConfig {
            max_bytes: 32 * 1024 * 1024,
            body_limit: 64 * 1024,
            ws_preview: 4 * 1024,
            max_ws_messages: 1000,
            redact: false,
        }
    }
}

/// The sequence bits of an [`EntryId`].
const SEQUENCE: u64 = (1 << 48) - 1;

/// What the inspector lists: every request (WebSocket upgrades included).
pub type Entry = HttpEntry;

/// Entries, oldest first, within [`InspectConfig::max_bytes`].
///
/// Updates name an entry by id; an entry evicted meanwhile is simply not updated.
#[derive(Debug)]
pub struct Store {
    config: InspectConfig,
    entries: VecDeque<Entry>,
    bytes: usize,
    prefix: u64,
    next: u64,
    tunnel_name: Arc<str>,
}

impl Store {
    /// An empty store; the low 16 bits of `id_prefix` (random, from the shell) start every id.
    pub fn new(config: InspectConfig, id_prefix: u32) -> Self {
        Store {
            config,
            entries: VecDeque::new(),
            bytes: 0,
            prefix: u64::from(id_prefix & 0xffff) << 48,
            next: 0,
            tunnel_name: Arc::from(""),
        }
    }

    /// The bounds.
    pub fn config(&self) -> &InspectConfig {
        &self.config
    }

    /// The name new entries are filed under (the tunnel's granted name).
    pub fn set_tunnel_name(&mut self, name: &str) {
        if &*self.tunnel_name != name {
            self.tunnel_name = Arc::from(name);
        }
    }

    /// Bytes held by all entries.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries, newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().rev()
    }

    /// The entry `id`, if still held.
    pub fn get(&self, id: EntryId) -> Option<&Entry> {
        self.index(id).map(|i| &self.entries[i])
    }

    /// Forgets every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// A request arrived at `now` (`unix_nanos` on the wall clock): a new entry.
    pub fn begin(&mut self, now: Instant, unix_nanos: u64, ex: Exchange<'_>) -> EntryId {
        let id = EntryId(self.prefix | (self.next & SEQUENCE));
        self.next = self.next.saturating_add(1);
        let remote_addr = if ex.replay_of.is_some() { String::new() } else { HttpEntry::remote_addr_of(ex.headers) };
        let mut entry = HttpEntry {
            id,
            tunnel_name: self.tunnel_name.clone(),
            remote_addr,
            start_unix_nanos: unix_nanos,
            started: now,
            duration: None,
            request: HttpRequest {
                method: ex.method.to_string(),
                uri: ex.uri.to_string(),
                headers: owned(ex.headers),
                body: BodyCapture::new(0),
            },
            response: None,
            replay_of: ex.replay_of,
            error: None,
            websocket: ex.websocket.then(WsSession::default),
            held: 0,
        };
        entry.held = entry.weight();
        self.bytes += entry.held;
        self.entries.push_back(entry);
        self.evict();
        id
    }

    /// The request's body, once it ended (or was cut).
    pub fn request_body(&mut self, id: EntryId, body: BodyCapture) {
        self.update(id, |e| e.request.body = body);
    }

    /// The response's head came back.
    pub fn respond(&mut self, id: EntryId, status: u16, headers: &[Header]) {
        let response = HttpResponse { status, headers: owned(headers), body: BodyCapture::new(0) };
        self.update(id, |e| e.response = Some(response));
    }

    /// The response's body ended (or was cut) at `now`: the exchange is over.
    pub fn response_body(&mut self, id: EntryId, now: Instant, body: BodyCapture) {
        self.update(id, |e| {
            if let Some(r) = e.response.as_mut() {
                r.body = body;
            }
            e.duration = Some(now.saturating_duration_since(e.started));
        });
    }

    /// No response: `message` says why.
    pub fn fail(&mut self, id: EntryId, now: Instant, message: &str) {
        self.update(id, |e| {
            e.error = Some(message.to_string());
            e.duration.get_or_insert(now.saturating_duration_since(e.started));
        });
    }

    /// A WebSocket message (or a later fragment of one: `first` false) went by.
    pub fn ws_message(&mut self, id: EntryId, unix_nanos: u64, dir: Direction, binary: bool, first: bool, data: &[u8]) {
        let (preview, max) = (self.config.ws_preview, self.config.max_ws_messages);
        self.update(id, |e| {
            let Some(ws) = e.websocket.as_mut() else { return };
            let last = ws.messages.iter_mut().rev().find(|m| m.direction == dir);
            match last {
                Some(m) if !first => {
                    m.size = m.size.saturating_add(data.len() as u64);
                    let room = preview.saturating_sub(m.preview.len());
                    let add = &data[..data.len().min(room)];
                    m.preview.extend_from_slice(add);
                    ws.held += add.len();
                }
                _ => {
                    let kept = data[..data.len().min(preview)].to_vec();
                    ws.held += MESSAGE_WEIGHT + kept.len();
                    let size = data.len() as u64;
                    ws.messages.push_back(WsMessage { direction: dir, unix_nanos, binary, size, preview: kept });
                    while ws.messages.len() > max {
                        if let Some(old) = ws.messages.pop_front() {
                            ws.held = ws.held.saturating_sub(MESSAGE_WEIGHT + old.preview.len());
                            ws.dropped += 1;
                        }
                    }
                }
            }
        });
    }

    /// The WebSocket closed at `now` (`code`: the first close code seen, if any).
    pub fn ws_closed(&mut self, id: EntryId, now: Instant, code: Option<u16>) {
        self.update(id, |e| {
            if let Some(ws) = e.websocket.as_mut() {
                ws.close_code = ws.close_code.or(code);
            }
            e.duration.get_or_insert(now.saturating_duration_since(e.started));
        });
    }

    fn index(&self, id: EntryId) -> Option<usize> {
        // Ids grow with insertion order (within one prefix), so the deque is sorted.
        self.entries.binary_search_by_key(&id, |e| e.id).ok()
    }

    /// Changes an entry and re-counts its weight, evicting the oldest entries if the
    /// store is now over its bound.
    fn update(&mut self, id: EntryId, change: impl FnOnce(&mut Entry)) {
        let Some(i) = self.index(id) else { return };
        let entry = &mut self.entries[i];
        let before = entry.held;
        change(entry);
        entry.held = entry.weight();
        self.bytes = self.bytes.saturating_sub(before) + entry.held;
        self.evict();
    }

    fn evict(&mut self) {
        while self.bytes > self.config.max_bytes {
            let Some(old) = self.entries.pop_front() else { break };
            self.bytes = self.bytes.saturating_sub(old.held);
        }
    }
}

/// The headers with their values copied into one allocation of their own. A decoded
/// frame's (and an HTTP parser's) header values are slices that share the whole buffer
/// they were read from: a kept clone would hold that buffer (kilobytes per header)
/// alive for as long as the entry lives, far past what the store counts against its
/// bound. Names are cloned as they are: a standard name is a constant, any other owns
/// its bytes. (One buffer for all values, not one per value: this runs twice per
/// request with the inspector on, the default.)
fn owned(headers: &[Header]) -> Vec<Header> {
    let mut buf = bytes::BytesMut::with_capacity(headers.iter().map(|(_, v)| v.len()).sum());
    for (_, v) in headers {
        buf.extend_from_slice(v.as_bytes());
    }
    let mut values = buf.freeze();
    headers
        .iter()
        .map(|(n, v)| {
            let copy = values.split_to(v.len());
            let mut value = http::HeaderValue::from_maybe_shared(copy).unwrap_or_else(|_| v.clone());
            value.set_sensitive(v.is_sensitive());
            (n.clone(), value)
        })
        .collect()
}
