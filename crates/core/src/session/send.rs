//! Commands: what the driver asks of the session. The server's `accept`/`refuse` of
//! a hello; `open`, `respond`, `send_data`, `send_ws`, `send_trailers`, `finish`,
//! `close_ws` and `reset` on a stream; `go_away` and `close` for the session. Each
//! checks the stream's state and the peer's limits, then queues frames or payload
//! for [`Session::poll_transmit`].

use bytes::{BufMut, Bytes, BytesMut};

use crate::config::{Config, Limits};
use crate::error::{OpenError, StreamError};
use crate::event::Event;
use crate::frame::{
    check_headers, check_request_line, flags, header_block_len, kind, open_len, plan_checked, response_len, CloseCode,
    Frame, Header, HeaderBlock, RequestHead, ResetCode, ResponseHead, SentBlock, StreamId, StreamKind,
    BATCH_ENTRY_OVERHEAD, BATCH_HEADER, DATA_OVERHEAD,
};
use crate::handshake::{features, RefuseReason, Welcome, PROTOCOL_VERSION};
use crate::stream::{Chunk, Stream};
use crate::time::Instant;

use super::flow::Shares;
use super::transmit::Output;
use super::{clamp, Session, State};

impl Session {
    /// Server: accepts the client's hello.
    pub fn accept(&mut self, mut welcome: Welcome, now: Instant) {
        if self.state != State::Deciding {
            return;
        }
        welcome.version = PROTOCOL_VERSION;
        welcome.limits = Some(Limits::from(&self.config));
        // The server's own bits (e.g. [`features::JOIN`]) stay; the session's are added.
        welcome.features |= features::SESSION;
        welcome.heartbeat_ms = u32::try_from(self.ping_interval.as_millis()).unwrap_or(u32::MAX);
        welcome.idle_timeout_ms = u32::try_from(self.idle_timeout.as_millis()).unwrap_or(u32::MAX);
        self.push_control(Frame::Welcome(Box::new(welcome)));
        self.state = State::Established;
        self.next_ping = now + self.ping_interval;
    }

    /// Server: refuses the client's hello and closes the session.
    pub fn refuse(&mut self, reason: RefuseReason, message: &str) {
        if self.state == State::Closed {
            return;
        }
        self.clear_output();
        self.push_control(Frame::Refuse { reason, message: self.short_message(message) });
        self.state = State::Closed;
        let message = format!("refused ({}): {message}", reason.as_str());
        self.events.push_back(Event::Closed { code: CloseCode::Normal, message, by_peer: false });
    }

    /// Opens a stream with `head`. `end` means no body follows.
    pub fn open(&mut self, head: RequestHead, end: bool) -> Result<StreamId, OpenError> {
        self.may_open()?;
        // The fields are sized as text (for the limit), planned as they are written, and
        // checked in one walk; the frame is queued with that plan, not planned again.
        let block = plan_checked(&head.headers, self.field_coding());
        let size = block.text_len + head.method.len() + head.target.len() + 16;
        let limit = self.head_limit();
        if size > limit {
            return Err(OpenError::HeadTooLarge { size, limit });
        }
        check_request_line(&head).and(block.invalid.map_or(Ok(()), Err)).map_err(OpenError::InvalidHead)?;
        let Ok(id) = StreamId::try_from(self.next_local_id) else {
            // Ids are never reused: a session that used them all must be replaced.
            self.go_away(CloseCode::Normal, "stream ids exhausted: reconnect");
            return Err(OpenError::GoingAway);
        };
        self.next_local_id += 2;
        let mut s = self.new_stream(head.kind, true);
        s.send_done = end;
        self.streams.insert(id, s);
        self.local_open += 1;
        let len = open_len(&head, block.len);
        self.push_output(Output::Frame(Frame::Open { id, head, end }, len, block.plan));
        Ok(id)
    }

    /// `message` cut (on a character boundary) to what a reset, go-away, close or
    /// refuse frame may carry: at most 1024 bytes, and small enough for the peer's
    /// `max_frame`.
    fn short_message(&self, message: &str) -> String {
        let fit = usize::try_from(self.peer.max_frame).unwrap_or(usize::MAX).saturating_sub(16);
        let mut message = message.to_string();
        truncate_utf8(&mut message, fit.min(MAX_MESSAGE));
        message
    }

    /// Whether the session takes a new stream of ours now (established, not going
    /// away, under the peer's stream limit).
    #[inline]
    pub(super) fn may_open(&mut self) -> Result<(), OpenError> {
        self.settle();
        match self.state {
            State::Established => {}
            State::Closed => return Err(OpenError::Closed),
            _ => return Err(OpenError::NotEstablished),
        }
        if self.is_going_away() {
            return Err(OpenError::GoingAway);
        }
        if self.local_open >= self.peer.max_streams {
            return Err(OpenError::TooManyStreams(self.peer.max_streams));
        }
        Ok(())
    }

    pub(super) fn head_limit(&self) -> usize {
        let h = usize::try_from(self.peer.max_header_bytes).unwrap_or(usize::MAX);
        let f = usize::try_from(self.peer.max_frame).unwrap_or(usize::MAX);
        h.min(f)
    }

    fn live_stream(&mut self, id: StreamId) -> Result<&mut Stream, StreamError> {
        if self.state == State::Closed {
            return Err(StreamError::Closed);
        }
        self.streams.get_mut(&id).ok_or(StreamError::UnknownStream(id))
    }

    /// Sends the response head for a stream the peer opened. For a WebSocket,
    /// status 101 accepts it; any other status refuses it (a body may follow).
    pub fn respond(&mut self, id: StreamId, head: ResponseHead, end: bool) -> Result<(), StreamError> {
        self.settle();
        // As `open`: the fields sized, planned and checked in one walk (three walks
        // were ~0.1k instructions per response), the frame queued with that plan.
        let block = plan_checked(&head.headers, self.field_coding());
        let end = self.accept_response(id, head.status, block.text_len + 16, block.invalid, end)?;
        self.push_output(Output::Frame(Frame::Response { id, head, end }, response_len(block.len), block.plan));
        self.reap(id);
        Ok(())
    }

    /// [`Session::respond`] for a head whose fields are a [`HeaderBlock`] already
    /// encoded (a shell that parsed the head from bytes: no typed list in between).
    /// The same checks in the same order (size, state, status, the fields), the same
    /// frame on the wire. A block in another coding than this session's is re-encoded.
    pub fn respond_block(
        &mut self,
        id: StreamId,
        status: u16,
        block: HeaderBlock,
        end: bool,
    ) -> Result<(), StreamError> {
        if block.coding() != self.field_coding() {
            return self.respond(id, ResponseHead { status, headers: block.headers() }, end);
        }
        self.settle();
        let end = self.accept_response(id, status, block.text_len() + 16, block.invalid(), end)?;
        self.push_output(Output::Encoded(block.into_response(id, status, end)));
        self.reap(id);
        Ok(())
    }

    /// [`Session::respond_block`] that keeps the block's fields in `kept` for the caller
    /// to read after the frame is written: a [`SentBlock`] sharing the queued frame's
    /// bytes (a reference count), or the block's own when it was refused or re-encoded.
    /// The fields come back whatever the result, so that a caller that files them (the
    /// client's inspector, after the write) files the same head either way. Written
    /// into the caller's place, not returned with the result: a `(SentBlock, Result)`
    /// moved through the driver's call cost ~20 instructions more per response.
    pub fn respond_block_kept(
        &mut self,
        id: StreamId,
        status: u16,
        block: HeaderBlock,
        end: bool,
        kept: &mut SentBlock,
    ) -> Result<(), StreamError> {
        if block.coding() != self.field_coding() {
            let r = self.respond(id, ResponseHead { status, headers: block.headers() }, end);
            *kept = block.into_sent();
            return r;
        }
        self.settle();
        let end = match self.accept_response(id, status, block.text_len() + 16, block.invalid(), end) {
            Ok(end) => end,
            Err(e) => {
                *kept = block.into_sent();
                return Err(e);
            }
        };
        let frame = block.into_response(id, status, end);
        *kept = SentBlock::of_frame(frame.clone());
        self.push_output(Output::Encoded(frame));
        self.reap(id);
        Ok(())
    }

    /// Sends a whole response in one step: its head (fields as a [`HeaderBlock`]), as
    /// much of `data` as the stream's window takes, and the end when it took all of it.
    /// Returns how many body bytes were taken (the rest goes with `send_data`, then
    /// `finish`); the frames, the checks and their errors are those of
    /// [`Session::respond_block`] (or [`Session::respond_block_kept`], with `kept`),
    /// then `send_data` and `finish`. With `kept`, the block's fields are written there
    /// whatever the result.
    ///
    /// The usual small response (a body within the stream's window and its shares, one
    /// DATA frame, a peer that takes `BATCH`) skips the stream's queue: its RESPONSE and
    /// its DATA(end) are queued together as one output, the credit taken at once, and
    /// written as the two entries of a batch, exactly as the queue would have sent them
    /// (the stream had nothing queued, so nothing of it can be overtaken). The stream's
    /// queue, the ring and the batch's picking of the second frame were ~0.4k
    /// instructions per response (docs/BENCHMARKS.md, eighteenth round, clibody).
    pub fn respond_whole_block(
        &mut self,
        id: StreamId,
        status: u16,
        block: HeaderBlock,
        data: &Bytes,
        kept: Option<&mut SentBlock>,
    ) -> Result<usize, StreamError> {
        let len = data.len();
        if block.coding() != self.field_coding() {
            let r = self.respond(id, ResponseHead { status, headers: block.headers() }, false);
            if let Some(kept) = kept {
                *kept = block.into_sent();
            }
            r?;
            return self.send_rest(id, data);
        }
        self.settle();
        if let Err(e) = self.accept_response(id, status, block.text_len() + 16, block.invalid(), false) {
            if let Some(kept) = kept {
                *kept = block.into_sent();
            }
            return Err(e);
        }
        let frame = block.into_response(id, status, false);
        if let Some(kept) = kept {
            *kept = SentBlock::of_frame(frame.clone());
        }
        if len > 0 && self.takes_whole(id, frame.len(), len) {
            self.push_output(Output::Whole { response: frame, id, data: data.clone() });
            return Ok(len);
        }
        self.push_output(Output::Encoded(frame));
        self.send_rest(id, data)
    }

    /// What `respond_whole_block` does after the head on the queue's path: the body as
    /// the window takes it, and the end if it took all.
    fn send_rest(&mut self, id: StreamId, data: &Bytes) -> Result<usize, StreamError> {
        let len = data.len();
        let n = if len == 0 { 0 } else { self.send_data(id, data.clone())? };
        if n == len {
            self.finish(id)?;
        }
        Ok(n)
    }

    /// Whether a response just accepted on `id` (its head `head_len` bytes, encoded) and
    /// a whole body of `len` bytes go out past the stream's queue (see
    /// [`Session::respond_whole_block`]): only when the queue's path would have taken
    /// every byte at once and sent them as one DATA frame in the head's batch. Then the
    /// credit is taken and the stream's sending ended here, and the stream, if its input
    /// ended too, is removed after the write (`finished`), as the queue's path does.
    fn takes_whole(&mut self, id: StreamId, head_len: usize, len: usize) -> bool {
        if !self.peer_accepts_batch() {
            return false;
        }
        let entries = 2 * BATCH_ENTRY_OVERHEAD + head_len + DATA_OVERHEAD + len;
        let max_frame = usize::try_from(self.peer.max_frame).unwrap_or(usize::MAX);
        if len > Config::payload_limit(self.peer.max_frame)
            || BATCH_HEADER + entries > max_frame
            || self.control_bytes + BATCH_HEADER + entries > self.config.max_control_queue as usize
        {
            return false;
        }
        let room = self.queue_room();
        let (credit, stream_window) = (self.send_credit, u64::from(self.peer.stream_window));
        let shares = Shares::of(self);
        let Some(s) = self.streams.get_mut(&id) else { return false };
        let wanted = len as u64;
        // As `queue_payload` then `next_output` would weigh it: the stream's window, its
        // share of the queue's room, its allowance of the session credit.
        if !s.queue.is_empty()
            || s.in_ring
            || s.send_done
            || s.ws_open()
            || s.send_credit < wanted
            || shares.share(room, s.queued) < wanted
            || shares.send_allowance(credit, stream_window, s) < wanted
        {
            return false;
        }
        s.send_credit -= wanted;
        s.send_done = true;
        let finished = s.is_finished();
        self.send_credit -= wanted;
        if finished {
            self.finished.push(id);
        }
        true
    }

    /// What [`Session::respond`] and [`Session::respond_block`] check before a response
    /// head of `size` bytes is queued, in this order: the stream's state, the size, the
    /// status, the fields (`invalid`: the first bad one); then the stream's state after it
    /// (the response sent, a WebSocket accepted by 101, the send side done with `end`).
    /// Returns `end` as the frame carries it (never on an accepted WebSocket). Inlined:
    /// it is on every response's path.
    #[inline(always)]
    fn accept_response(
        &mut self,
        id: StreamId,
        status: u16,
        size: usize,
        invalid: Option<&'static str>,
        end: bool,
    ) -> Result<bool, StreamError> {
        let limit = self.head_limit();
        let s = self.live_stream(id)?;
        if s.local || s.response_sent {
            return Err(StreamError::InvalidState { id, what: "a response head" });
        }
        if size > limit {
            return Err(StreamError::HeadTooLarge { size, limit });
        }
        let invalid = if (100..=999).contains(&status) { invalid } else { Some("status") };
        if let Some(what) = invalid {
            return Err(StreamError::InvalidHead { id, what });
        }
        s.response_sent = true;
        s.ws_accepted = s.kind == StreamKind::WebSocket && status == 101;
        let end = end && !s.ws_accepted;
        s.send_done = end;
        Ok(end)
    }

    fn check_body_send(s: &Stream, id: StreamId, ws: bool) -> Result<(), StreamError> {
        if s.send_done {
            return Err(StreamError::AlreadyFinished(id));
        }
        let head_ok = s.local || s.response_sent;
        if !head_ok || ws != s.ws_open() {
            let what = if ws { "a WebSocket message" } else { "body data" };
            return Err(StreamError::InvalidState { id, what });
        }
        Ok(())
    }

    /// Queues body bytes; returns how many were taken (bounded by the stream's
    /// window, and by the session's queue: at most the peer's session window of
    /// payload waits unsent across all streams). When fewer than offered were taken,
    /// [`Event::Writable`] follows once the peer grants more or the queue drains.
    pub fn send_data(&mut self, id: StreamId, data: Bytes) -> Result<usize, StreamError> {
        self.settle();
        self.queue_payload(id, false, data.len(), |n| (n > 0).then(|| Chunk::Data(data.slice(..n))))
    }

    /// Queues a WebSocket message, or its next part; returns how many bytes were
    /// taken. `fin` marks the message's last part and applies only if every byte
    /// was taken; otherwise offer the rest again after [`Event::Writable`].
    pub fn send_ws(&mut self, id: StreamId, binary: bool, data: Bytes, fin: bool) -> Result<usize, StreamError> {
        self.settle();
        let len = data.len();
        self.queue_payload(id, true, len, |n| {
            (n > 0 || (len == 0 && fin)).then(|| Chunk::Ws { binary, fin: fin && n == len, data: data.slice(..n) })
        })
    }

    /// [`Session::send_ws`] of a whole message written straight into `out`, the
    /// driver's buffer of what it sends next, as the WS_MESSAGE frame that `send_ws`
    /// would queue and [`Session::poll_message`] would then give alone
    /// (`DATA_OVERHEAD + data.len()` bytes: one binary message, which the caller
    /// frames): the same bytes and the same bookkeeping (credit, the session's queue
    /// count, a blocked stream's `Writable`), without the chunk queued and taken back,
    /// the ring, the stream's second look-up and the output's moves. Only when nothing
    /// is queued ([`Session::has_transmit`] false, the stream's own queue empty) and the
    /// whole message goes now in one frame (its credit, its share of the queue, its
    /// allowance, the frame limit); `Ok(false)` otherwise, with nothing written or
    /// changed: queue it with `send_ws`. Errors are `send_ws`'s, with nothing written.
    pub fn send_ws_into(
        &mut self,
        id: StreamId,
        binary: bool,
        data: &[u8],
        out: &mut BytesMut,
    ) -> Result<bool, StreamError> {
        self.settle();
        if self.has_transmit() {
            return Ok(false);
        }
        let len = data.len();
        let room = self.queue_room();
        let shares = Shares::of(self);
        let payload_limit = Config::payload_limit(self.peer.max_frame);
        let stream_window = u64::from(self.peer.stream_window);
        let send_credit = self.send_credit;
        let s = match self.state {
            State::Closed => return Err(StreamError::Closed),
            _ => self.streams.get_mut(&id).ok_or(StreamError::UnknownStream(id))?,
        };
        Self::check_body_send(s, id, true)?;
        // `queue_payload` would take all of it (no `blocked` set) ...
        if !s.queue.is_empty() || clamp(len, shares.share(room, s.queued)) < len || s.send_credit < len as u64 {
            return Ok(false);
        }
        s.send_credit -= len as u64;
        // ... and `next_output` would send all of it in one frame (what it weighs,
        // with the message queued).
        s.queued += len as u64;
        let credit = shares.send_allowance(send_credit, stream_window, s);
        s.queued -= len as u64;
        if len > payload_limit.min(usize::try_from(credit).unwrap_or(usize::MAX)) {
            s.send_credit += len as u64;
            return Ok(false);
        }
        let [i0, i1, i2, i3] = id.to_be_bytes();
        let f = flags::FIN | if binary { flags::BINARY } else { 0 };
        out.reserve(DATA_OVERHEAD + len);
        out.put_slice(&[kind::WS_MESSAGE, i0, i1, i2, i3, f]);
        out.put_slice(data);
        // What `next_output` does once the stream's queue is empty again.
        if s.blocked && s.send_credit > 0 {
            s.blocked = false;
            self.events.push_back(Event::Writable { id });
        }
        let finished = s.is_finished();
        self.send_credit -= len as u64;
        self.queued += len as u64;
        self.dequeued(len as u64);
        if finished {
            self.finished.push(id);
        }
        Ok(true)
    }

    /// Takes as many of `offered` payload bytes on stream `id` as its credit and the
    /// session's queue room allow, and queues `chunk(taken)` if it makes one. A stream
    /// given fewer is marked blocked (`Writable` follows); a refusal for lack of room
    /// is noted so that the blocked streams are woken when the queue drains.
    fn queue_payload(
        &mut self,
        id: StreamId,
        ws: bool,
        offered: usize,
        chunk: impl FnOnce(usize) -> Option<Chunk>,
    ) -> Result<usize, StreamError> {
        let room = self.queue_room();
        let shares = Shares::of(self);
        // One lookup of the stream for the checks, the credit and the ring (three were
        // ~40 instructions more per message; docs/BENCHMARKS.md, fourteenth round).
        let s = match self.state {
            State::Closed => return Err(StreamError::Closed),
            _ => self.streams.get_mut(&id).ok_or(StreamError::UnknownStream(id))?,
        };
        Self::check_body_send(s, id, ws)?;
        let share = shares.share(room, s.queued);
        let taken = s.take_send_credit(clamp(offered, share));
        if taken < offered {
            s.blocked = true;
        }
        s.queued += taken as u64;
        if let Some(c) = chunk(taken) {
            s.queue.push_back(c);
            // As `schedule` does, on the stream at hand.
            if !s.in_ring {
                s.in_ring = true;
                self.ring.push_back(id);
            }
        }
        if taken < offered && taken as u64 == room {
            self.queue_full = true;
        }
        self.queued += taken as u64;
        Ok(taken)
    }

    /// Ends this side of an HTTP stream (after any data queued).
    pub fn finish(&mut self, id: StreamId) -> Result<(), StreamError> {
        self.settle();
        self.end_with(id, Chunk::End, false)
    }

    /// Ends this side of an HTTP stream with trailers.
    pub fn send_trailers(&mut self, id: StreamId, headers: Vec<Header>) -> Result<(), StreamError> {
        self.settle();
        let size = header_block_len(&headers) + 16;
        let limit = self.head_limit();
        if size > limit {
            return Err(StreamError::HeadTooLarge { size, limit });
        }
        check_headers(&headers).map_err(|what| StreamError::InvalidHead { id, what })?;
        self.end_with(id, Chunk::Trailers(headers), false)
    }

    /// Closes this side of a WebSocket with an RFC 6455 code and reason.
    pub fn close_ws(&mut self, id: StreamId, code: u16, reason: &str) -> Result<(), StreamError> {
        self.settle();
        let mut reason = reason.to_string();
        truncate_utf8(&mut reason, 123);
        self.end_with(id, Chunk::WsClose { code, reason }, true)
    }

    fn end_with(&mut self, id: StreamId, chunk: Chunk, ws: bool) -> Result<(), StreamError> {
        // One lookup of the stream, as `queue_payload`'s (`live_stream` then `schedule`
        // looked it up twice).
        let s = match self.state {
            State::Closed => return Err(StreamError::Closed),
            _ => self.streams.get_mut(&id).ok_or(StreamError::UnknownStream(id))?,
        };
        Self::check_body_send(s, id, ws)?;
        s.send_done = true;
        s.queue.push_back(chunk);
        // As `schedule` does, on the stream at hand.
        if !s.in_ring {
            s.in_ring = true;
            self.ring.push_back(id);
        }
        Ok(())
    }

    /// Abandons a stream both ways; the peer gets a RESET. If this side already
    /// finished sending and frames are still queued, they go out first and the RESET
    /// follows them (the peer gets the whole response, then learns that the rest of its
    /// input is not wanted); input for the stream is dropped meanwhile. A stream whose
    /// input had ended too is not reset at all: it ends as usual once its frames leave.
    pub fn reset(&mut self, id: StreamId, code: ResetCode, message: &str) {
        self.settle();
        if self.state == State::Closed {
            return;
        }
        let Some(s) = self.streams.get_mut(&id) else { return };
        if s.send_done && !s.queue.is_empty() {
            if s.recv_done {
                // Finished both ways: nothing of the peer's is unwanted, and the stream
                // ends as usual once its last frames leave (a RESET after them was a
                // wasted frame per exchange from a driver that resets dropped handles).
                return;
            }
            if !s.discard {
                s.discard = true;
                let message = self.short_message(message);
                let Some(s) = self.streams.get_mut(&id) else { return };
                s.queue.push_back(Chunk::Reset { code, message });
            }
            return;
        }
        self.remove_stream(id);
        let message = self.short_message(message);
        self.push_control(Frame::Reset { id, code, message });
    }

    /// Announces that no new streams will be accepted; in-flight ones finish.
    pub fn go_away(&mut self, code: CloseCode, message: &str) {
        self.settle();
        if self.state != State::Established || self.going_away_local {
            return;
        }
        self.going_away_local = true;
        let message = self.short_message(message);
        self.push_control(Frame::GoAway { last_id: self.last_peer_id, code, message });
    }

    /// Ends the session now. Queued stream data is dropped; the CLOSE frame is the
    /// last thing `poll_transmit` returns.
    pub fn close(&mut self, code: CloseCode, message: &str) {
        self.settle();
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.clear_output();
        self.push_control(Frame::Close { code, message: self.short_message(message) });
        self.events.push_back(Event::Closed { code, message: message.to_string(), by_peer: false });
    }
}

/// Longest message a RESET, GOAWAY, CLOSE or REFUSE carries, in bytes.
const MAX_MESSAGE: usize = 1024;

/// Cuts `s` to at most `max` bytes on a character boundary.
fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}
