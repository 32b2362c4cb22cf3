//! The bounded store of entries, oldest evicted first.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::frame::Header;
use crate::time::Instant;

use super::body::BodyCapture;
use super::head::{self, HeadFields};
use super::pool::{Pool, Span};
mod put;

use super::record::{BodyOf, Direction, Exchange, HttpEntry, HttpRequest, HttpResponse, Part, WsShared, FIXED_WEIGHT};

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
    /// Total bytes all entries may hold (the oldest are evicted past it). Default 3 MiB:
    /// a recent history (~1,750 exchanges of a 1 KiB GET, or 48 bodies kept at 64 KiB),
    /// that keeps the client within issue 7's 32 MiB under the benchmark's 1 MiB load.
    /// The store's memory is what it counts: the client's RSS is about its RSS without
    /// the inspector plus this (docs/INSPECTOR.md).
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
            max_bytes: 3 * 1024 * 1024,
            body_limit: 64 * 1024,
            ws_preview: 4 * 1024,
            max_ws_messages: 1000,
            redact: false,
        }
    }
}

/// The index of an entry's exchange span ([`Part::Exchange`]).
const EXCHANGE: usize = Part::Exchange as usize;

/// No header fields (a head kept as a block writes its fields as its line's).
const NO_FIELDS: &[Header] = &[];

/// [`HttpEntry`]'s `blocks` bits: the request's head, the response's, kept as a header
/// block; above them each block's edits' kind ([`head::Block::kept`], two bits each, at
/// these shifts).
const REQUEST_BLOCK: u8 = 1;
const RESPONSE_BLOCK: u8 = 2;
const REQUEST_KIND: u8 = 2;
const RESPONSE_KIND: u8 = 4;

/// The edits' kind of the head kept as a block by `bit` (kind at `shift`) of an entry's
/// `blocks`, if it is kept so.
fn block_kind(blocks: u8, bit: u8, shift: u8) -> Option<u8> {
    (blocks & bit != 0).then_some((blocks >> shift) & 3)
}

/// The sequence bits of an [`EntryId`].
const SEQUENCE: u64 = (1 << 48) - 1;

/// What the inspector lists: every request (WebSocket upgrades included).
pub type Entry = HttpEntry;

/// Entries, oldest first, within [`InspectConfig::max_bytes`]; their bytes in the
/// pool's chunks ([`Pool`]), so the memory held is the memory counted.
///
/// Updates name an entry by id; an entry evicted meanwhile is simply not updated.
#[derive(Debug)]
pub struct Store {
    config: InspectConfig,
    entries: VecDeque<Entry>,
    pool: Pool,
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
            pool: Pool::default(),
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

    /// Entry `e`'s request, read back from the store's bytes.
    pub fn request(&self, e: &Entry) -> HttpRequest {
        let head = self.pool.read_range(&e.spans[EXCHANGE], 0, e.heads[0] as usize);
        // A field cut short (the store ran out of room) ends the head: `rest` is left empty.
        let mut rest = &head[..];
        let mut text = || head::take(&mut rest).map(|f| String::from_utf8_lossy(f).into_owned()).unwrap_or_default();
        let (method, uri) = (text(), text());
        let headers = head::kept_headers(rest, block_kind(e.blocks, REQUEST_BLOCK, REQUEST_KIND));
        HttpRequest { method, uri, headers, body: self.body(e, BodyOf::Request) }
    }

    /// Entry `e`'s response, once its head came back.
    pub fn response(&self, e: &Entry) -> Option<HttpResponse> {
        let status = e.status?;
        let start = e.heads[0] as usize;
        let head = self.pool.read_range(&e.spans[EXCHANGE], start, start + e.heads[1] as usize);
        let headers = head::kept_headers(&head, block_kind(e.blocks, RESPONSE_BLOCK, RESPONSE_KIND));
        Some(HttpResponse { status, headers, body: self.body(e, BodyOf::Response) })
    }

    fn body(&self, e: &Entry, of: BodyOf) -> BodyCapture {
        let span = &e.spans[of.part() as usize];
        let data = match of {
            BodyOf::Request => self.pool.read(span),
            BodyOf::Response => self.pool.read_range(span, e.heads_len(), span.len()),
        };
        BodyCapture::kept(data, e.sizes[of as usize])
    }

    /// Forgets every entry (and gives their memory back: a WebSocket session's too,
    /// which its recorder may still hold).
    pub fn clear(&mut self) {
        for e in self.entries.drain(..) {
            if let Some(ws) = &e.websocket {
                ws.lock().evict();
            }
        }
        self.pool = Pool::default();
        self.bytes = 0;
    }

    /// A request arrived at `now` (`unix_nanos` on the wall clock): a new entry, its
    /// head copied as it is.
    pub fn begin<H: HeadFields + ?Sized>(&mut self, now: Instant, unix_nanos: u64, ex: Exchange<'_, H>) -> EntryId {
        let id = EntryId(self.prefix | (self.next & SEQUENCE));
        self.next = self.next.saturating_add(1);
        let entry = HttpEntry {
            id,
            tunnel_name: self.tunnel_name.clone(),
            start_unix_nanos: unix_nanos,
            started: now,
            duration: None,
            status: None,
            replay_of: ex.replay_of,
            error: None,
            websocket: ex.websocket.then(|| WsShared::new(&self.config)),
            ws_weight: 0,
            spans: [Span::EMPTY; 2],
            heads: [0; 2],
            sizes: [0; 2],
            blocks: 0,
            held: FIXED_WEIGHT,
        };
        self.bytes += FIXED_WEIGHT;
        self.entries.push_back(entry);
        self.evict();
        // A store too small for even an entry keeps none.
        let Some(i) = self.entries.len().checked_sub(1) else { return id };
        let (method, uri) = (ex.method.as_bytes(), ex.uri.as_bytes());
        // Kept as a block only with the core's `raw-heads` (the native shells'): the wasm
        // client files its heads field by field, and the block's reading leaves its
        // .wasm (issue 7's size bound).
        let i = match ex.headers.block().filter(|_| cfg!(feature = "raw-heads")) {
            // The block in one copy after the line (and the chosen `Host`); its edits'
            // kind in the entry.
            Some(block) => {
                let (kind, [a, b], n) = block.kept();
                self.entries[i].blocks |= REQUEST_BLOCK | kind << REQUEST_KIND;
                let line = [method, uri, a, b];
                self.put_head(i, &line[..2 + n], NO_FIELDS)
            }
            None => self.put_head(i, &[method, uri], ex.headers),
        };
        let e = &mut self.entries[i];
        e.heads[0] = e.spans[EXCHANGE].len;
        id
    }

    /// Copies what fits of a chunk of entry `id`'s body `of` (up to the body limit).
    pub fn body_data(&mut self, id: EntryId, of: BodyOf, data: &[u8]) {
        let Some(i) = self.index(id) else { return };
        self.body_data_at(i, of, data);
    }

    /// [`Self::body_data`] for the entry at index `i`; its index after.
    #[inline(always)]
    fn body_data_at(&mut self, i: usize, of: BodyOf, data: &[u8]) -> usize {
        let kept = self.entries[i].body_len(of);
        let room = self.config.body_limit.saturating_sub(kept);
        if room > 0 {
            return self.put(i, of.part(), &data[..data.len().min(room)]);
        }
        i
    }

    /// Entry `id`'s body `of` ended (or was cut) after `size` bytes; a response's end
    /// at `now` is the exchange's end.
    pub fn body_end(&mut self, id: EntryId, of: BodyOf, size: u64, now: Instant) {
        let Some(i) = self.index(id) else { return };
        self.body_end_at(i, of, size, now);
    }

    /// [`Self::body_end`] for the entry at index `i`.
    #[inline(always)]
    fn body_end_at(&mut self, i: usize, of: BodyOf, size: u64, now: Instant) {
        let e = &mut self.entries[i];
        e.sizes[of as usize] = size;
        if of == BodyOf::Response {
            e.duration = Some(now.saturating_duration_since(e.started));
        }
    }

    /// The request's body, once it ended (or was cut).
    pub fn request_body(&mut self, id: EntryId, body: BodyCapture) {
        self.body_data(id, BodyOf::Request, body.data());
        let Some(i) = self.index(id) else { return };
        self.entries[i].sizes[BodyOf::Request as usize] = body.size();
    }

    /// The response's head came back (before any of its body: the head's fields
    /// go after the request's, and a head filed after body bytes keeps its status
    /// only; no shell does that).
    pub fn respond<H: HeadFields + ?Sized>(&mut self, id: EntryId, status: u16, headers: &H) {
        let Some(i) = self.index(id) else { return };
        self.respond_at(i, status, headers);
    }

    /// [`Self::respond`] for the entry at index `i`; its index after. Inlined, as the
    /// steps of [`Self::respond_whole`] are: out of line they cost more than the
    /// look-ups they save (docs/BENCHMARKS.md, sixteenth round).
    #[inline(always)]
    fn respond_at<H: HeadFields + ?Sized>(&mut self, i: usize, status: u16, headers: &H) -> usize {
        let e = &mut self.entries[i];
        e.status = Some(status);
        let before = e.spans[EXCHANGE].len;
        if before as usize != e.heads_len() {
            return i;
        }
        let i = match headers.block() {
            // A head with no field is kept as nothing, as a list's is.
            Some(block) if cfg!(feature = "raw-heads") && headers.field_count() > 0 => {
                let (kind, line, n) = block.kept();
                e.blocks |= RESPONSE_BLOCK | kind << RESPONSE_KIND;
                self.put_head(i, &line[..n], NO_FIELDS)
            }
            _ => self.put_head(i, &[], headers),
        };
        let e = &mut self.entries[i];
        e.heads[1] += e.spans[EXCHANGE].len - before;
        i
    }

    /// The response came back whole at `now` (its head, and `body`: all of it): the
    /// exchange is over. What [`Self::respond`], [`Self::body_data`] and
    /// [`Self::body_end`] do in turn, for a shell that files a small exchange's
    /// response in one step (one lock instead of two or three).
    /// One look-up of the entry instead of three (evictions for the head's or the
    /// body's chunks move its index, which the steps return).
    pub fn respond_whole<H: HeadFields + ?Sized>(
        &mut self,
        id: EntryId,
        now: Instant,
        status: u16,
        headers: &H,
        body: &[u8],
    ) {
        let Some(mut i) = self.index(id) else { return };
        i = self.respond_at(i, status, headers);
        if !body.is_empty() {
            i = self.body_data_at(i, BodyOf::Response, body);
        }
        self.body_end_at(i, BodyOf::Response, body.len() as u64, now);
    }

    /// The rest of a response that came back whole, its head filed already with
    /// [`Self::respond`]: its `body` (all of it) and its end at `now`. What
    /// [`Self::body_data`] then [`Self::body_end`] do, with one look-up of the entry.
    pub fn respond_rest(&mut self, id: EntryId, now: Instant, body: &[u8]) {
        let Some(mut i) = self.index(id) else { return };
        if !body.is_empty() {
            i = self.body_data_at(i, BodyOf::Response, body);
        }
        self.body_end_at(i, BodyOf::Response, body.len() as u64, now);
    }

    /// The response's body ended (or was cut) at `now`: the exchange is over.
    pub fn response_body(&mut self, id: EntryId, now: Instant, body: BodyCapture) {
        self.body_data(id, BodyOf::Response, body.data());
        self.body_end(id, BodyOf::Response, body.size(), now);
    }

    /// No response: `message` says why.
    pub fn fail(&mut self, id: EntryId, now: Instant, message: &str) {
        self.update(id, |e| {
            e.error = Some(message.to_string());
            e.duration.get_or_insert(now.saturating_duration_since(e.started));
        });
    }

    /// A WebSocket message (or a later fragment of one: `first` false) went by: what
    /// [`WsShared::record`] and [`Self::ws_weight`] do, under the store's lock (a shell
    /// with the session's handle files it without: the client's recorder).
    pub fn ws_message(&mut self, id: EntryId, unix_nanos: u64, dir: Direction, binary: bool, first: bool, data: &[u8]) {
        let Some(i) = self.index(id) else { return };
        let Some(ws) = self.entries[i].websocket.as_ref() else { return };
        if let Some(weight) = ws.record(dir, unix_nanos, binary, first, data) {
            self.ws_weight_at(i, weight);
        }
    }

    /// The handle on entry `id`'s WebSocket session, for a recorder that files its
    /// messages without the store's lock ([`WsShared::record`]).
    pub fn ws_session(&self, id: EntryId) -> Option<WsShared> {
        self.get(id)?.websocket.clone()
    }

    /// Entry `id`'s WebSocket session now weighs `weight` (what [`WsShared::record`]
    /// returned): counted, and the oldest entries evicted if the store is over its
    /// bound. Only when the session's bytes left their step, not at every message.
    pub fn ws_weight(&mut self, id: EntryId, weight: usize) {
        let Some(i) = self.index(id) else { return };
        self.ws_weight_at(i, weight);
    }

    fn ws_weight_at(&mut self, i: usize, weight: usize) {
        let e = &mut self.entries[i];
        let before = e.ws_weight;
        e.ws_weight = weight;
        e.held = e.held.saturating_sub(before) + weight;
        self.bytes = self.bytes.saturating_sub(before) + weight;
        // Only what grew can be over the bound (every change ends within it).
        if weight > before {
            self.evict();
        }
    }

    /// The WebSocket closed at `now` (`code`: the first close code seen, if any).
    pub fn ws_closed(&mut self, id: EntryId, now: Instant, code: Option<u16>) {
        self.update(id, |e| {
            if let Some(ws) = &e.websocket {
                let mut ws = ws.lock();
                ws.close_code = ws.close_code.or(code);
            }
            e.duration.get_or_insert(now.saturating_duration_since(e.started));
        });
    }

    fn index(&self, id: EntryId) -> Option<usize> {
        // Each entry's id is one more than the one before it (entries leave only from
        // the front), so an id's place is its distance from the first.
        let first = self.entries.front()?.id.0;
        let i = usize::try_from(id.0.checked_sub(first)?).ok()?;
        self.entries.get(i).filter(|e| e.id == id).map(|_| i)
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
            if !self.evict_oldest() {
                break;
            }
        }
    }

    fn evict_oldest(&mut self) -> bool {
        let Some(old) = self.entries.front_mut() else { return false };
        for span in &mut old.spans {
            self.pool.release(span);
        }
        // The recorder may hold the session still: its messages go now, and it keeps
        // no more.
        if let Some(ws) = &old.websocket {
            ws.lock().evict();
        }
        self.bytes = self.bytes.saturating_sub(old.held);
        // Dropped where it lies in the native shells' build (`raw-heads`): `pop_front`
        // moves the entry (~0.25 KB) out to drop it (~0.013k instructions per exchange).
        // `drain`'s code is ~0.5 KB of the wasm client's .wasm (issue 7's size bound),
        // which pops it.
        if cfg!(feature = "raw-heads") {
            self.entries.drain(..1);
        } else {
            self.entries.pop_front();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Header;
    use crate::inspect::pool::CHUNK;
    use crate::inspect::WsMessage;

    fn exchange(store: &mut Store, uri: &str, headers: &[Header], body: &[u8]) -> EntryId {
        let ex = Exchange { method: "GET", uri, headers, websocket: false, replay_of: None };
        let id = store.begin(Instant::ZERO, 0, ex);
        store.respond(id, 200, headers);
        store.body_data(id, BodyOf::Response, body);
        store.body_end(id, BodyOf::Response, body.len() as u64, Instant::ZERO);
        id
    }

    /// A response filed whole is the entry the three steps give: the same head, body
    /// (truncated past the limit), size, duration and bytes held.
    #[test]
    fn a_response_filed_whole_is_the_three_steps() {
        let config = InspectConfig { body_limit: 700, ..InspectConfig::default() };
        let h = [(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"))];
        let at = Instant::from_elapsed(std::time::Duration::from_millis(5));
        for body in [&b""[..], b"hello", &[7; 1000]] {
            let (mut steps, mut whole) = (Store::new(config.clone(), 1), Store::new(config.clone(), 1));
            let ex = Exchange { method: "GET", uri: "/x", headers: &h, websocket: false, replay_of: None };
            let (a, b) = (steps.begin(Instant::ZERO, 0, ex), whole.begin(Instant::ZERO, 0, ex));
            steps.respond(a, 201, &h);
            steps.body_data(a, BodyOf::Response, body);
            steps.body_end(a, BodyOf::Response, body.len() as u64, at);
            whole.respond_whole(b, at, 201, &h, body);
            let mut rest = Store::new(config.clone(), 1);
            let c = rest.begin(Instant::ZERO, 0, ex);
            rest.respond(c, 201, &h);
            rest.respond_rest(c, at, body);
            assert_eq!((rest.get(c), rest.bytes()), (steps.get(a), steps.bytes()));
            let (ea, eb) = (steps.get(a).unwrap(), whole.get(b).unwrap());
            assert_eq!(ea, eb);
            assert_eq!(steps.response(ea), whole.response(eb));
            assert_eq!(steps.bytes(), whole.bytes());
            assert_eq!(eb.duration, Some(std::time::Duration::from_millis(5)));
        }
    }

    /// The heads and the response's body share one span: whatever the request head's
    /// size (so wherever the response head starts, across a chunk's end or not), each
    /// part reads back as it was filed, and the store counts the chunks it holds.
    #[test]
    fn heads_and_the_response_body_read_back_apart_wherever_they_fall() {
        let res_h = [
            (http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain")),
            (
                http::HeaderName::from_static("x-long-response-header"),
                http::HeaderValue::from_static("0123456789abcdef0123"),
            ),
        ];
        for pad in (0..1200).step_by(37) {
            let value = http::HeaderValue::from_bytes(&vec![b'p'; pad]).unwrap();
            let req_h = [(http::header::HOST, http::HeaderValue::from_static("a.test")), (http::header::COOKIE, value)];
            let mut store = Store::new(InspectConfig { body_limit: 1000, ..InspectConfig::default() }, 1);
            let ex = Exchange { method: "POST", uri: "/p?q=1", headers: &req_h, websocket: false, replay_of: None };
            let id = store.begin(Instant::ZERO, 0, ex);
            store.request_body(id, BodyCapture::of(b"request body", 1000));
            store.respond(id, 200, &res_h);
            let body: Vec<u8> = (0..1500u32).map(|i| i as u8).collect();
            store.body_data(id, BodyOf::Response, &body[..700]);
            store.body_data(id, BodyOf::Response, &body[700..]);
            store.body_end(id, BodyOf::Response, 1500, Instant::ZERO);
            let e = store.get(id).unwrap();
            let (req, res) = (store.request(e), store.response(e).unwrap());
            assert_eq!((req.method.as_str(), req.uri.as_str(), &req.headers[..]), ("POST", "/p?q=1", &req_h[..]));
            assert_eq!((req.body.data(), req.body.size()), (&b"request body"[..], 12));
            assert_eq!((res.status, &res.headers[..]), (200, &res_h[..]));
            assert_eq!((res.body.data(), res.body.size(), res.body.truncated()), (&body[..1000], 1500, true));
            let held = e.spans.iter().map(|s| s.len().div_ceil(CHUNK) * CHUNK).sum::<usize>();
            assert_eq!((store.bytes(), e.weight()), (FIXED_WEIGHT + held, FIXED_WEIGHT + held), "pad {pad}");
        }
    }

    /// A target longer than a chunk (the head's first field goes across chunks from
    /// the start), a response head without fields, an empty body: each reads back as
    /// filed, and the store counts only the chunks written.
    #[test]
    fn a_head_whose_first_field_is_larger_than_a_chunk_and_one_with_no_fields() {
        let uri = format!("/{}", "u".repeat(1500));
        let h = [(http::header::HOST, http::HeaderValue::from_static("a.test"))];
        let mut store = Store::new(InspectConfig::default(), 1);
        let ex = Exchange { method: "GET", uri: &uri, headers: &h, websocket: false, replay_of: None };
        let id = store.begin(Instant::ZERO, 0, ex);
        store.respond_whole(id, Instant::ZERO, 204, &[], b"");
        let e = store.get(id).unwrap();
        assert_eq!((store.request(e).uri, store.request(e).headers), (uri.clone(), h.to_vec()));
        let res = store.response(e).unwrap();
        assert_eq!((res.status, res.headers.len(), res.body.size()), (204, 0, 0));
        let written = 4 + 3 + 4 + uri.len() + 8 + 4 + 6;
        assert_eq!(store.bytes(), FIXED_WEIGHT + written.div_ceil(CHUNK) * CHUNK);
    }

    /// A small exchange's heads and body share their chunks: three for a 1 KiB
    /// response (the two heads and the first bytes of the body in the first).
    #[test]
    fn a_small_exchange_takes_the_chunks_its_bytes_need() {
        let mut store = Store::new(InspectConfig::default(), 1);
        let h = [(http::header::HOST, http::HeaderValue::from_static("a.test"))];
        exchange(&mut store, "/", &h, &[1; 1024]);
        assert_eq!(store.bytes(), FIXED_WEIGHT + 3 * CHUNK);
        exchange(&mut store, "/", &h, b"tiny");
        assert_eq!(store.bytes(), 2 * FIXED_WEIGHT + 4 * CHUNK);
    }

    /// A WebSocket's messages, counted as they come and go (fragments, previews cut
    /// at the limit, the oldest dropped at the bound), weigh what weighing the entry
    /// gives.
    #[test]
    fn websocket_messages_are_counted_as_the_entry_weighs() {
        let config = InspectConfig { ws_preview: 10, max_ws_messages: 5, ..InspectConfig::default() };
        let mut store = Store::new(config, 1);
        let ex = Exchange { method: "GET", uri: "/ws", headers: &[], websocket: true, replay_of: None };
        let id = store.begin(Instant::ZERO, 0, ex);
        store.respond(id, 101, &[]);
        for i in 0..40u64 {
            let dir = if i % 3 == 0 { Direction::In } else { Direction::Out };
            let data = vec![b'm'; (i as usize * 7) % 30];
            store.ws_message(id, i, dir, i % 2 == 0, i % 4 != 1, &data);
            let e = store.get(id).unwrap();
            assert_eq!((store.bytes(), e.held), (e.weight(), e.weight()), "message {i}");
        }
        let ws = store.get(id).unwrap().websocket.as_ref().unwrap().lock();
        assert_eq!(ws.len(), 5);
        assert!(ws.messages().all(|m| m.preview.len() <= 10));
    }

    /// At its bound the ring turns in place: what it keeps is what a plain list that
    /// drops its oldest message keeps (the most recent messages, in order, each with
    /// its own direction, time, kind, size and preview, fragments added to the last
    /// message of their direction), whatever the sizes of the previews it reuses.
    #[test]
    fn a_full_message_ring_keeps_the_most_recent_messages_as_a_plain_list_would() {
        let config = InspectConfig { ws_preview: 12, max_ws_messages: 6, ..InspectConfig::default() };
        let mut store = Store::new(config, 1);
        let ex = Exchange { method: "GET", uri: "/ws", headers: &[], websocket: true, replay_of: None };
        let id = store.begin(Instant::ZERO, 0, ex);
        let mut model: Vec<WsMessage> = Vec::new();
        let mut dropped = 0;
        for i in 0..200u64 {
            let dir = if i % 3 == 0 { Direction::In } else { Direction::Out };
            let (binary, first) = (i % 2 == 0, i % 7 != 3);
            let data: Vec<u8> = (0..(i * 5 % 40) as u8).map(|b| b ^ i as u8).collect();
            store.ws_message(id, i, dir, binary, first, &data);
            match model.iter_mut().rev().find(|m| m.direction == dir).filter(|_| !first) {
                Some(m) => {
                    m.size += data.len() as u64;
                    let room = 12 - m.preview.len();
                    m.preview.extend_from_slice(&data[..data.len().min(room)]);
                }
                None => {
                    let preview = data[..data.len().min(12)].to_vec();
                    model.push(WsMessage { direction: dir, unix_nanos: i, binary, size: data.len() as u64, preview });
                    if model.len() > 6 {
                        model.remove(0);
                        dropped += 1;
                    }
                }
            }
            let ws = store.get(id).unwrap().websocket.as_ref().unwrap().lock();
            assert_eq!((ws.messages().cloned().collect::<Vec<_>>(), ws.dropped), (model.clone(), dropped), "{i}");
            drop(ws);
            let e = store.get(id).unwrap();
            assert_eq!((store.bytes(), e.held), (e.weight(), e.weight()), "message {i}");
        }
    }

    /// A recorder's messages, filed through the session's handle (without the store's
    /// lock), are counted in steps: the store's count for the session is at least what
    /// its messages hold and less than two steps over it, moves only when they leave
    /// their step (never for a steady session's messages), and bounds the store as
    /// before: a session evicted (or cleared) under its recorder gives its messages
    /// back and keeps no more.
    #[test]
    fn a_recorders_messages_are_counted_in_steps_and_an_evicted_session_keeps_none() {
        use crate::inspect::record::WS_WEIGHT_STEP;
        let config =
            InspectConfig { max_bytes: 64 * 1024, ws_preview: 100, max_ws_messages: 200, ..Default::default() };
        let mut store = Store::new(config.clone(), 1);
        let ex = Exchange { method: "GET", uri: "/ws", headers: &[], websocket: true, replay_of: None };
        let id = store.begin(Instant::ZERO, 0, ex);
        let ws = store.ws_session(id).unwrap();
        let mut reports = 0;
        for i in 0..600u64 {
            // Sizes that vary, fragments among them, then whole messages of 50 bytes
            // each (a steady session's).
            let len = if i < 300 { (i as usize * 13) % 150 } else { 50 };
            let (dir, first) = (if i % 2 == 0 { Direction::In } else { Direction::Out }, i >= 300 || i % 5 != 4);
            if let Some(weight) = ws.record(dir, i, false, first, &vec![b'x'; len]) {
                store.ws_weight(id, weight);
                reports += 1;
                assert!(i < 500, "message {i} of a steady session moved the count");
            }
            let held = ws.lock().held;
            let e = store.get(id).unwrap();
            assert!(
                (held..held + 2 * WS_WEIGHT_STEP).contains(&e.ws_weight),
                "message {i}: {} for {held}",
                e.ws_weight
            );
            assert_eq!((store.bytes(), e.held), (e.weight(), e.weight()), "message {i}");
        }
        assert!(reports <= 20, "{reports} reports for 600 messages");
        // Other entries push the session out of the store: its messages go with it.
        while store.get(id).is_some() {
            exchange(&mut store, "/x", &[], &[1; 1000]);
            assert!(store.bytes() <= config.max_bytes);
        }
        let (kept, held) = {
            let s = ws.lock();
            (s.len(), s.held)
        };
        assert_eq!((kept, held), (0, 0));
        assert_eq!(ws.record(Direction::In, 0, false, true, b"late"), None);
        assert!(ws.lock().is_empty());
        // A cleared store lets its sessions go the same way.
        let ex = Exchange { method: "GET", uri: "/ws2", headers: &[], websocket: true, replay_of: None };
        let id = store.begin(Instant::ZERO, 0, ex);
        let ws = store.ws_session(id).unwrap();
        assert!(ws.record(Direction::In, 0, false, true, b"kept").is_some());
        store.clear();
        assert!(ws.lock().is_empty());
        assert_eq!(ws.record(Direction::In, 1, false, true, b"late"), None);
        assert!(ws.lock().is_empty());
    }

    /// Thousands of small entries evicted for large ones, and back: the chunks the
    /// store allocated never exceed its bound, and what it reads back is what it kept.
    #[test]
    fn memory_held_is_memory_counted_whatever_the_sizes() {
        let config = InspectConfig { max_bytes: 1 << 20, body_limit: 64 * 1024, ..InspectConfig::default() };
        let mut store = Store::new(config, 1);
        let h = [(http::header::ACCEPT, http::HeaderValue::from_static("*/*"))];
        for round in 0..3 {
            for i in 0..5000 {
                exchange(&mut store, &format!("/small/{round}/{i}"), &h, &[1; 100]);
            }
            for i in 0..100 {
                exchange(&mut store, &format!("/big/{round}/{i}"), &h, &vec![2; 100_000]);
            }
            assert!(store.bytes() <= 1 << 20);
            let allocated = store.pool.allocated();
            assert!(allocated <= (1 << 20) + 64 * 1024, "{allocated} bytes of chunks");
        }
        let newest = store.newest_first().next().unwrap();
        let res = store.response(newest).unwrap();
        assert_eq!((res.body.data().len(), res.body.size(), res.body.truncated()), (64 * 1024, 100_000, true));
        assert_eq!(store.request(newest).uri, "/big/2/99");
    }

    /// A head filed from a header block (a RESPONSE's, as the client files it: kept as
    /// the block, one copy, [`head::Block`]) reads back as the same head filed from its
    /// typed list, whatever its size against a chunk's room and the store's: field
    /// counts from none to forty, values of every length up to 700 bytes, repeated
    /// names, obs-text, both field codings. A store too small for a head keeps a
    /// prefix of its fields, as it does of a list's (not the same prefix: the two
    /// take different room), and never more than its bound.
    #[test]
    fn a_head_kept_as_its_block_reads_back_as_its_list() {
        use crate::frame::{FieldCoding, HeaderBlock};
        let value = |i: usize| {
            let mut v = vec![b'a' + (i % 26) as u8; (i * 37) % 700];
            if i.is_multiple_of(5) && !v.is_empty() {
                v[0] = 0x80 + (i % 100) as u8; // obs-text: not UTF-8
            }
            http::HeaderValue::from_bytes(&v).unwrap()
        };
        for max_bytes in [InspectConfig::default().max_bytes, 4096, 1024] {
            for coding in [FieldCoding::Text, FieldCoding::Indexed] {
                let config = InspectConfig { max_bytes, ..InspectConfig::default() };
                let (mut listed, mut blocked) = (Store::new(config.clone(), 1), Store::new(config, 1));
                for n in 0..40 {
                    let h: Vec<Header> = (0..n)
                        .map(|i| match i % 3 {
                            0 => (http::header::ACCEPT, value(i + n)),
                            1 => (http::HeaderName::from_static("x-field"), value(i * n)),
                            _ => (http::header::USER_AGENT, value(i)),
                        })
                        .collect();
                    let block = HeaderBlock::from_headers(&h, coding);
                    assert!(block.block().is_some());
                    let uri = format!("/{}", "u".repeat(n * 13));
                    let ex = Exchange { method: "GET", uri: &uri, headers: &h[..], websocket: false, replay_of: None };
                    let a = listed.begin(Instant::ZERO, 0, ex);
                    let ex_block =
                        Exchange { method: "GET", uri: &uri, headers: &block, websocket: false, replay_of: None };
                    let b = blocked.begin(Instant::ZERO, 0, ex_block);
                    listed.respond_whole(a, Instant::ZERO, 200, &h[..], b"body");
                    blocked.respond_whole(b, Instant::ZERO, 200, &block, b"body");
                    let what = format!("{n} fields, {coding:?}, {max_bytes} bytes");
                    assert!(blocked.bytes() <= max_bytes, "{what}");
                    let (Some(ea), Some(eb)) = (listed.get(a), blocked.get(b)) else { continue };
                    let (qa, qb) = (listed.request(ea), blocked.request(eb));
                    let (ra, rb) = (listed.response(ea).unwrap(), blocked.response(eb).unwrap());
                    assert_eq!((&qb.method, &qb.uri), (&qa.method, &qa.uri), "{what}");
                    assert_eq!((rb.status, rb.body.data()), (ra.status, ra.body.data()), "{what}");
                    if max_bytes == InspectConfig::default().max_bytes {
                        assert_eq!((qb, rb), (qa, ra), "{what}");
                    } else {
                        // Each a prefix of the head (the whole of it when it fitted).
                        assert!(h.starts_with(&qb.headers) && h.starts_with(&rb.headers), "{what}");
                        assert!(h.starts_with(&qa.headers) && h.starts_with(&ra.headers), "{what}");
                    }
                }
            }
        }
    }

    /// A block's edits for a raw request ([`head::Edits::Origin`]) read back as the
    /// list they stand for: `te` fields dropped and `te: trailers` last; a chosen `Host`
    /// first when the block has none, else each `Host` value replaced.
    #[test]
    fn a_raw_requests_block_reads_back_with_the_origins_rules() {
        use crate::frame::{FieldCoding, HeaderBlock};
        use head::{Block, Edits};
        let f =
            |n: &'static str, v: &'static str| (http::HeaderName::from_static(n), http::HeaderValue::from_static(v));
        let with_host = vec![f("te", "gzip"), f("host", "a.test"), f("x-a", "1"), f("te", "trailers"), f("x-a", "2")];
        let without = vec![f("accept", "*/*"), f("te", "x")];
        for coding in [FieldCoding::Text, FieldCoding::Indexed] {
            for (h, host, want) in [
                (&with_host, None, vec![f("host", "a.test"), f("x-a", "1"), f("x-a", "2"), f("te", "trailers")]),
                (&with_host, Some("o:1"), vec![f("host", "o:1"), f("x-a", "1"), f("x-a", "2"), f("te", "trailers")]),
                (&without, None, vec![f("accept", "*/*"), f("te", "trailers")]),
                (&without, Some("o:1"), vec![f("host", "o:1"), f("accept", "*/*"), f("te", "trailers")]),
            ] {
                let block = HeaderBlock::from_headers(h, coding);
                let first = !h.iter().any(|(n, _)| n == http::header::HOST);
                let edits = Edits::Origin { host: host.map(str::as_bytes), first };
                let edited = Block { bytes: block.encoded(), edits };
                struct Raw<'a>(Block<'a>);
                impl HeadFields for Raw<'_> {
                    fn field_count(&self) -> usize {
                        self.0.each().count()
                    }
                    fn each(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
                        self.0.each()
                    }
                    fn block(&self) -> Option<Block<'_>> {
                        Some(self.0)
                    }
                }
                let mut store = Store::new(InspectConfig::default(), 1);
                let ex = Exchange { method: "GET", uri: "/", headers: &Raw(edited), websocket: false, replay_of: None };
                let id = store.begin(Instant::ZERO, 0, ex);
                assert_eq!(store.request(store.get(id).unwrap()).headers, want, "{coding:?} {host:?}");
            }
        }
    }

    /// A head larger than a chunk is kept whole across chunks; a store too small for
    /// it keeps what fits, and one too small for any entry keeps none.
    #[test]
    fn large_heads_span_chunks_and_a_full_store_cuts_them() {
        let long = http::HeaderValue::from_bytes(&[b'v'; 3000]).unwrap();
        let h = [(http::header::COOKIE, long.clone())];
        let mut store = Store::new(InspectConfig::default(), 1);
        let id = exchange(&mut store, "/a", &h, b"ok");
        let e = store.get(id).unwrap();
        assert_eq!(store.request(e).headers, h.to_vec());
        assert_eq!(store.response(e).unwrap().headers, h.to_vec());

        let tiny = InspectConfig { max_bytes: 1024, ..InspectConfig::default() };
        let mut store = Store::new(tiny, 1);
        let id = exchange(&mut store, "/b", &h, b"ok");
        let e = store.get(id).unwrap();
        assert_eq!((store.request(e).uri.as_str(), store.request(e).headers.len()), ("/b", 0));
        assert!(store.bytes() <= 1024);
        let none = InspectConfig { max_bytes: 10, ..InspectConfig::default() };
        let mut store = Store::new(none, 1);
        let id = exchange(&mut store, "/c", &h, b"ok");
        assert!(store.get(id).is_none() && store.is_empty());
    }
}
