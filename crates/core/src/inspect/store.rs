//! The bounded store of entries, oldest evicted first.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::time::Instant;

use super::body::BodyCapture;
use super::head::{self, HeadFields};
use super::ring::{Ring, Span};
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

/// No header fields (a head kept as a block writes its fields as its line's): a type of
/// its own, not an empty list, so that [`Store::put_head`] is made for it apart, its
/// field walk and [`head::HeadFields::field_count`]'s branches gone.
struct NoFields;

impl HeadFields for NoFields {
    fn field_count(&self) -> usize {
        0
    }

    fn each(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        std::iter::empty()
    }
}

const NO_FIELDS: &NoFields = &NoFields;

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

/// Bytes of the entries' deque's room it may hold beyond what its entries are counted
/// for ([`Store::shrink_entries`]): a few entries' worth, so that a small store does not
/// reallocate it back and forth.
const ENTRIES_SLACK: usize = 4096;

/// The sequence bits of an [`EntryId`].
const SEQUENCE: u64 = (1 << 48) - 1;

/// What the inspector lists: every request (WebSocket upgrades included).
pub type Entry = HttpEntry;

/// Entries, oldest first, within [`InspectConfig::max_bytes`]; their bytes in one
/// ring ([`Ring`]), so the memory held is the memory counted.
///
/// Updates name an entry by id; an entry evicted meanwhile is simply not updated.
#[derive(Debug)]
pub struct Store {
    config: InspectConfig,
    entries: VecDeque<Entry>,
    ring: Ring,
    /// What the store counts: its entries' weights and the bytes its ring holds.
    bytes: usize,
    prefix: u64,
    next: u64,
    tunnel_name: Arc<str>,
}

impl Store {
    /// An empty store; the low 16 bits of `id_prefix` (random, from the shell) start every id.
    pub fn new(config: InspectConfig, id_prefix: u32) -> Self {
        Store {
            entries: VecDeque::new(),
            ring: Ring::new(config.max_bytes),
            config,
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
        let head = self.ring.read_range(&e.spans[EXCHANGE], 0, e.heads[0] as usize);
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
        let head = self.ring.read_range(&e.spans[EXCHANGE], start, start + e.heads[1] as usize);
        let headers = head::kept_headers(&head, block_kind(e.blocks, RESPONSE_BLOCK, RESPONSE_KIND));
        Some(HttpResponse { status, headers, body: self.body(e, BodyOf::Response) })
    }

    fn body(&self, e: &Entry, of: BodyOf) -> BodyCapture {
        let span = &e.spans[of.part() as usize];
        let data = match of {
            BodyOf::Request => self.ring.read(span),
            BodyOf::Response => self.ring.read_range(span, e.heads_len(), span.len()),
        };
        BodyCapture::kept(data, e.sizes[of as usize])
    }

    /// Forgets every entry (and gives their memory back: a WebSocket session's too,
    /// which its recorder may still hold).
    pub fn clear(&mut self) {
        // The deque's allocation goes too (its room is counted only while it holds entries).
        for e in std::mem::take(&mut self.entries) {
            if let Some(ws) = &e.websocket {
                ws.lock().evict();
            }
        }
        self.ring = Ring::new(self.config.max_bytes);
        self.bytes = 0;
    }

    /// A request arrived at `now` (`unix_nanos` on the wall clock): a new entry, its
    /// head copied as it is. The target is bytes ([`Exchange::uri`]): the client's raw
    /// OPEN's is filed with no `from_utf8` call (~58 instructions a request,
    /// docs/BENCHMARKS.md, twenty-fifth round, inspect).
    #[inline]
    pub fn begin<H: HeadFields + ?Sized>(&mut self, now: Instant, unix_nanos: u64, ex: Exchange<'_, H>) -> EntryId {
        let id = EntryId(self.prefix | (self.next & SEQUENCE));
        self.next = self.next.saturating_add(1);
        // Before the entry is made, so that it is made in its place in the deque (made
        // first, then the check, it was made beside it and copied in: ~30 instructions).
        if self.entries.len() == self.entries.capacity() {
            self.grow_entries();
        }
        self.entries.push_back(HttpEntry {
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
            mark: self.ring.head(),
            heads: [0; 2],
            sizes: [0; 2],
            blocks: 0,
            held: FIXED_WEIGHT,
        });
        self.bytes += FIXED_WEIGHT;
        self.evict();
        // A store too small for even an entry keeps none.
        let Some(i) = self.entries.len().checked_sub(1) else { return id };
        let (method, uri) = (ex.method.as_bytes(), ex.uri);
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
                self.put_line(i, &line[..2 + n], &[]).0
            }
            None => self.put_head(i, &[method, uri], ex.headers, &[]).0,
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
        self.respond_at(i, status, headers, &[]);
    }

    /// [`Self::respond`] for the entry at index `i`, and the response's whole `body`
    /// (its kept bytes) after the head in one step when it fits the head's room; its
    /// index after, and the body's bytes written (0 or all: [`Store::put_head`]).
    /// Inlined, as the steps of [`Self::respond_whole`] are: out of line they cost more
    /// than the look-ups they save (docs/BENCHMARKS.md, sixteenth round).
    #[inline(always)]
    fn respond_at<H: HeadFields + ?Sized>(
        &mut self,
        i: usize,
        status: u16,
        headers: &H,
        body: &[u8],
    ) -> (usize, usize) {
        let e = &mut self.entries[i];
        e.status = Some(status);
        let before = e.spans[EXCHANGE].len;
        if before as usize != e.heads_len() {
            return (i, 0);
        }
        let (i, body) = match headers.block() {
            // A head with no field is kept as nothing, as a list's is.
            Some(block) if cfg!(feature = "raw-heads") && headers.field_count() > 0 => {
                let (kind, line, n) = block.kept();
                e.blocks |= RESPONSE_BLOCK | kind << RESPONSE_KIND;
                self.put_line(i, &line[..n], body)
            }
            _ => self.put_head(i, &[], headers, body),
        };
        let e = &mut self.entries[i];
        e.heads[1] += e.spans[EXCHANGE].len - before - body as u32;
        (i, body)
    }

    /// The response came back whole at `now` (its head, and `body`: all of it): the
    /// exchange is over. What [`Self::respond`], [`Self::body_data`] and
    /// [`Self::body_end`] do in turn, for a shell that files a small exchange's
    /// response in one step (one lock instead of two or three).
    /// One look-up of the entry instead of three (evictions for the head's or the
    /// body's bytes move its index, which the steps return).
    pub fn respond_whole<H: HeadFields + ?Sized>(
        &mut self,
        id: EntryId,
        now: Instant,
        status: u16,
        headers: &H,
        body: &[u8],
    ) {
        let Some(i) = self.index(id) else { return };
        // The body in the head's room when it fits (a small exchange's: one count, one
        // commit), else after it as [`Self::body_data`] files it.
        let kept = &body[..body.len().min(self.config.body_limit)];
        let (mut i, written) = self.respond_at(i, status, headers, kept);
        if written == 0 && !kept.is_empty() {
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

    /// Makes room in the full entries' deque for a quarter more (and a few): its
    /// memory stays within what the store counts for its entries ([`FIXED_WEIGHT`]
    /// each, the entry's bytes in the deque among them), where doubling (`push_back`'s
    /// own growth) held up to twice that (docs/BENCHMARKS.md, twenty-first round,
    /// clievict). Filling a deque of `n` this way copies its entries ~4 times over
    /// once, not again while the store stays full.
    #[cold]
    fn grow_entries(&mut self) {
        self.entries.reserve_exact(self.entries.len() / 4 + 4);
    }

    /// Gives back the entries' deque's room past what its entries are counted for (and
    /// [`ENTRIES_SLACK`]): after the store held many small entries, then fewer larger
    /// ones. Its length and a quarter, as [`Self::grow_entries`] leaves it.
    #[cold]
    fn shrink_entries(&mut self) {
        let len = self.entries.len();
        self.entries.shrink_to(len + len / 4 + 4);
    }

    fn evict_oldest(&mut self) -> bool {
        let Some(old) = self.entries.pop_front() else { return false };
        // The recorder may hold the session still: its messages go now, and it keeps
        // no more.
        if let Some(ws) = &old.websocket {
            ws.lock().evict();
        }
        self.bytes = self.bytes.saturating_sub(old.held);
        drop(old);
        if self.entries.capacity() * size_of::<Entry>() > self.entries.len() * FIXED_WEIGHT + ENTRIES_SLACK {
            self.shrink_entries();
        }
        // The ring lets go of the bytes before the next entry's (all of the evicted
        // entry's, and any of older ones' that came after its mark).
        let to = self.entries.front().map_or(self.ring.head(), |e| e.mark);
        self.bytes = self.bytes.saturating_sub(self.ring.release_to(to));
        true
    }
}

#[cfg(test)]
mod tests;
