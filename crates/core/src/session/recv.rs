//! Inputs: [`Session::handle_message`] decodes each received message (one frame or
//! a `BATCH`) and dispatches its frames by session state (the handshake's hello,
//! welcome and refuse; then stream frames, windows, pings, go-away and close);
//! [`Session::handle_timeout`] sends heartbeats and closes a silent peer. Receive
//! credit is charged here too ([`Session::take_credit`]).
//!
//! A frame looks its stream up once: the checks, the credit and whether the stream is
//! finished (then dropped) are read from that one lookup (three to four lookups per
//! request's response were ~0.1k instructions; docs/BENCHMARKS.md, thirteenth round).

use std::time::Duration;

use bytes::Bytes;

use crate::config::{Limits, PeerStreams, MAX_REFUSED_STREAMS};
use crate::error::ProtocolError;
use crate::event::Event;
use crate::frame::{
    batch_body, BatchEntries, CloseCode, Frame, RawRequestHead, RequestHead, ResetCode, ResponseBlockFrame,
    ResponseHead, StreamId, StreamKind,
};
use crate::handshake::{features, Hello, RefuseReason, Welcome, PROTOCOL_VERSION};
use crate::ids::BATCH_HEADER;
use crate::stream::Stream;
use crate::time::Instant;

use super::{Role, Session, State};

impl Session {
    /// Feeds one received WebSocket binary message: one frame, or a `BATCH` whose
    /// frames are handled in order as if each had come alone. On a protocol error the
    /// session queues a CLOSE with the error's code, emits [`Event::Closed`] and returns
    /// the error (frames of a batch before the bad one have been handled).
    pub fn handle_message(&mut self, now: Instant, msg: Bytes) -> Result<(), ProtocolError> {
        self.settle();
        if self.state == State::Closed {
            return Ok(());
        }
        self.last_recv = now;
        let result = self.handle_frames(now, msg);
        if let Err(e) = &result {
            self.close(e.close_code(), &e.to_string());
        }
        result
    }

    fn handle_frames(&mut self, now: Instant, msg: Bytes) -> Result<(), ProtocolError> {
        let body = match batch_body(msg) {
            Ok(body) => body,
            Err(msg) => {
                if let Some(opened) = self.open_raw(&msg) {
                    return opened;
                }
                if let Some(response) = self.response_block(&msg) {
                    return self.on_response_block(response);
                }
                let frame = Frame::decode_recent(msg, &self.decode_limits, Some(&mut self.recent_values))?;
                return self.handle_frame(now, frame);
            }
        };
        let size = BATCH_HEADER + body.len();
        if size > self.decode_limits.max_frame {
            let limit = self.decode_limits.max_frame;
            return Err(crate::DecodeError::FrameTooLarge { size, limit }.into());
        }
        // A client may batch only once the welcome told it we accept batches.
        if self.role == Role::Server && self.state != State::Established {
            return Err(ProtocolError::Unexpected("batch before the handshake completed"));
        }
        // Cut and handle one frame at a time: nothing is allocated for the batch as
        // a whole, and a CLOSE inside it ends the session like a CLOSE alone would.
        let mut entries = BatchEntries::new(body);
        while let Some(entry) = entries.next_entry()? {
            if self.state == State::Closed {
                break;
            }
            // A stream an earlier frame finished is removed before the next frame, which
            // then finds it gone as if it had come alone (`drop_if`); the last frame's
            // stream waits for the driver's write.
            self.settle();
            if let Some(opened) = self.open_raw(&entry) {
                opened?;
                continue;
            }
            if let Some(response) = self.response_block(&entry) {
                self.on_response_block(response)?;
                continue;
            }
            let frame = Frame::decode_inner(entry, &self.decode_limits, Some(&mut self.recent_values))?;
            self.handle_frame(now, frame)?;
        }
        Ok(())
    }

    /// Call when the instant from [`Session::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.settle();
        if self.state == State::Closed {
            return;
        }
        if now >= self.last_recv + self.idle_timeout {
            let secs = crate::time::secs_tenths(self.idle_timeout);
            self.close(CloseCode::Timeout, &format!("no frame from the peer for {secs} s"));
            return;
        }
        if self.unanswered_since.is_some_and(|since| now >= since + self.idle_timeout) {
            let secs = crate::time::secs_tenths(self.idle_timeout);
            self.close(CloseCode::Timeout, &format!("the peer answered no ping for {secs} s (it does not read)"));
            return;
        }
        if self.state == State::Established && now >= self.next_ping {
            self.ping_seq = self.ping_seq.wrapping_add(1);
            self.ping_outstanding = Some((self.ping_seq, now));
            self.unanswered_since.get_or_insert(now);
            self.push_control(Frame::Ping(self.ping_seq));
            self.next_ping = now + self.ping_interval;
        }
    }

    fn handle_frame(&mut self, now: Instant, frame: Frame) -> Result<(), ProtocolError> {
        // The usual frame, taken before the match below: moving the frame into its
        // tuple cost ~30 instructions a frame.
        if self.state == State::Established && !matches!(frame, Frame::Close { .. }) {
            return self.on_established_frame(now, frame);
        }
        match (self.state, frame) {
            (_, Frame::Close { code, message }) => {
                self.state = State::Closed;
                self.clear_output();
                self.events.push_back(Event::Closed { code, message, by_peer: true });
            }
            (State::Handshake, Frame::Hello(hello)) if self.role == Role::Server => self.on_hello(hello),
            (State::Handshake, Frame::Welcome(w)) if self.role == Role::Client => self.on_welcome(now, w)?,
            (State::Handshake, Frame::Refuse { reason, message }) if self.role == Role::Client => {
                self.state = State::Closed;
                self.events.push_back(Event::Refused { reason, message });
            }
            (State::Established, frame) => self.on_established_frame(now, frame)?,
            (State::Deciding, Frame::Ping(v)) => self.pending_pong = Some(v),
            (_, _) => return Err(ProtocolError::Unexpected("frame not allowed during the handshake")),
        }
        Ok(())
    }

    fn on_hello(&mut self, hello: Box<Hello>) {
        if hello.version != PROTOCOL_VERSION {
            let message = format!(
                "client speaks protocol version {}, this server speaks version {PROTOCOL_VERSION}: upgrade the client",
                hello.version
            );
            self.push_control(Frame::Refuse { reason: RefuseReason::VersionUnsupported, message: message.clone() });
            self.state = State::Closed;
            self.events.push_back(Event::Closed { code: CloseCode::ProtocolError, message, by_peer: false });
            return;
        }
        self.learn_peer(hello.limits, hello.features);
        self.state = State::Deciding;
        self.events.push_back(Event::Hello(hello));
    }

    fn on_welcome(&mut self, now: Instant, w: Box<Welcome>) -> Result<(), ProtocolError> {
        if w.version != PROTOCOL_VERSION {
            return Err(ProtocolError::Unexpected("welcome for a protocol version this client does not speak"));
        }
        self.learn_peer(w.limits, w.features);
        if w.heartbeat_ms > 0 {
            self.ping_interval = Duration::from_millis(u64::from(w.heartbeat_ms));
            self.next_ping = now + self.ping_interval;
        }
        if w.idle_timeout_ms > 0 {
            self.idle_timeout = Duration::from_millis(u64::from(w.idle_timeout_ms)).max(self.idle_floor);
        }
        self.state = State::Established;
        self.events.push_back(Event::Welcome(w));
        Ok(())
    }

    /// Takes the peer's limits (clamped to ours: nothing it announces is taken on
    /// trust) and features from its hello or welcome.
    fn learn_peer(&mut self, limits: Option<Limits>, peer_features: u32) {
        if let Some(l) = limits {
            self.peer = self.config.clamp_peer(l);
            self.send_credit = u64::from(self.peer.session_window);
        }
        self.peer_features = peer_features;
        // Fair shares need a receiver that grants small consumptions back at once when
        // its window runs short; with a batching one a stream kept to a small share
        // could wait for a grant that never comes. The divisor lets one stream alone
        // still use a whole stream window with a quarter of the session window not yet
        // granted back (3/4 S / W: 6 with the defaults), and is 1 (no sharing) when the
        // session window holds no more than one stream window.
        self.fair_divisor = if peer_features & features::EAGER_WINDOW != 0 {
            let (s, w) = (u64::from(self.peer.session_window), u64::from(self.peer.stream_window).max(1));
            (s * 3 / 4 / w).max(1)
        } else {
            1
        };
        self.fair_free = self.fair_divisor.saturating_mul(u64::from(self.peer.stream_window));
    }

    fn on_established_frame(&mut self, now: Instant, frame: Frame) -> Result<(), ProtocolError> {
        match frame {
            Frame::Open { id, head, end } => self.on_open(id, head, end)?,
            Frame::Response { id, head, end } => {
                let Some((finished, _)) = self.take_response_head(id, head.status, end)? else { return Ok(()) };
                self.events.push_back(Event::Response { id, head, end });
                self.drop_if(finished, id);
            }
            Frame::Data { id, data, end } => {
                let Some(finished) = self.take_credit(id, data.len(), |s| {
                    if s.recv_done || (s.local && !s.response_received) || s.ws_accepted {
                        return Err(ProtocolError::Unexpected("data on a stream that cannot take it"));
                    }
                    s.recv_done = end;
                    Ok(())
                })?
                else {
                    return Ok(());
                };
                self.events.push_back(Event::Data { id, data, end });
                self.drop_if(finished, id);
            }
            Frame::Trailers { id, headers } => {
                let Some(s) = self.known_stream(id)? else { return Ok(()) };
                if s.recv_done || (s.local && !s.response_received) || s.ws_accepted {
                    return Err(ProtocolError::Unexpected("trailers on a stream that cannot take them"));
                }
                s.recv_done = true;
                let finished = s.is_finished();
                self.events.push_back(Event::Trailers { id, headers });
                self.drop_if(finished, id);
            }
            Frame::WsMessage { id, binary, fin, data } => {
                let Some(_) = self.take_credit(id, data.len(), |s| {
                    if s.recv_done || !s.ws_open() {
                        return Err(ProtocolError::Unexpected("message on a stream that is not an open WebSocket"));
                    }
                    Ok(())
                })?
                else {
                    return Ok(());
                };
                self.events.push_back(Event::WsMessage { id, binary, fin, data });
            }
            Frame::WsClose { id, code, reason } => {
                let Some(s) = self.known_stream(id)? else { return Ok(()) };
                if s.recv_done || !s.ws_open() {
                    return Err(ProtocolError::Unexpected("close on a stream that is not an open WebSocket"));
                }
                s.recv_done = true;
                let finished = s.is_finished();
                self.events.push_back(Event::WsClose { id, code, reason });
                self.drop_if(finished, id);
            }
            Frame::Reset { id, code, message } => {
                let discarded = self.streams.get(&id).is_some_and(|s| s.discard);
                if discarded {
                    self.remove_stream(id);
                } else if self.known_stream(id)?.is_some() {
                    self.remove_stream(id);
                    self.events.push_back(Event::Reset { id, code, message });
                }
            }
            Frame::Window { id: 0, increment } => {
                // A conforming receiver never grants more than its window: credit above
                // it is not taken.
                let window = u64::from(self.peer.session_window);
                self.send_credit = self.send_credit.saturating_add(u64::from(increment)).min(window);
                self.wake_blocked();
            }
            Frame::Window { id, increment } => {
                let window = u64::from(self.peer.stream_window);
                if let Some(s) = self.known_stream(id)? {
                    s.send_credit = s.send_credit.saturating_add(u64::from(increment)).min(window);
                    s.granted = s.granted.saturating_add(u64::from(increment));
                    self.wake_if_writable(id);
                }
            }
            Frame::Ping(v) => self.pending_pong = Some(v),
            Frame::Pong(v) => {
                self.unanswered_since = None;
                if let Some((seq, sent)) = self.ping_outstanding {
                    if seq == v {
                        self.rtt = Some(now.saturating_duration_since(sent));
                        self.ping_outstanding = None;
                    }
                }
            }
            Frame::GoAway { last_id, code, message } => {
                self.going_away_peer = true;
                let refused: Vec<StreamId> =
                    self.streams.keys().copied().filter(|id| self.is_local(*id) && *id > last_id).collect();
                for id in refused {
                    let discarded = self.streams.get(&id).is_some_and(|s| s.discard);
                    self.remove_stream(id);
                    if discarded {
                        continue;
                    }
                    let message = "the peer is going away and did not process this stream".to_string();
                    self.events.push_back(Event::Reset { id, code: ResetCode::Refused, message });
                }
                self.events.push_back(Event::GoAway { code, message });
            }
            Frame::Hello(_) | Frame::Welcome(_) | Frame::Refuse { .. } => {
                return Err(ProtocolError::Unexpected("handshake frame after the handshake"))
            }
            Frame::Close { .. } => unreachable!("handled before the state match"),
            // `decode_inner` refuses a batch inside a batch; a batch alone never gets here.
            Frame::Batch(_) => return Err(ProtocolError::Unexpected("batch inside a batch")),
        }
        Ok(())
    }

    /// An HTTP OPEN in `msg` taken with its header block undecoded, if the owner asked
    /// for those ([`Session::set_raw_request_heads`]) and the OPEN is one
    /// ([`RawRequestHead::decode_open`]); `None` leaves `msg` to the typed decoder.
    fn open_raw(&mut self, msg: &Bytes) -> Option<Result<(), ProtocolError>> {
        // Without `raw-heads` (the wasm client) the decoder is left out of the build.
        if !cfg!(feature = "raw-heads") || !self.raw_request_heads || self.state != State::Established {
            return None;
        }
        let (id, head, end) = RawRequestHead::decode_open(msg, &self.decode_limits)?;
        Some(self.admit_peer_stream(id, StreamKind::Http, end).map(|admitted| {
            if admitted {
                self.events.push_back(Event::OpenedRaw { id, head, end });
            }
        }))
    }

    fn on_open(&mut self, id: StreamId, head: RequestHead, end: bool) -> Result<(), ProtocolError> {
        if self.admit_peer_stream(id, head.kind, end)? {
            self.events.push_back(Event::Opened { id, head, end });
        }
        Ok(())
    }

    /// Checks a stream the peer opens and adds it; `false` if it was refused (a reset
    /// is queued).
    fn admit_peer_stream(&mut self, id: StreamId, kind: StreamKind, end: bool) -> Result<bool, ProtocolError> {
        if self.is_local(id) || id <= self.last_peer_id {
            return Err(ProtocolError::BadStreamId(id));
        }
        self.last_peer_id = id;
        if self.going_away_local {
            let message = "the session is going away".to_string();
            self.push_control(Frame::Reset { id, code: ResetCode::Refused, message });
            return Ok(false);
        }
        if self.config.peer_streams == PeerStreams::Refuse {
            return self.refuse_peer_stream(id).map(|()| false);
        }
        if self.peer_open >= self.config.max_streams {
            return Err(ProtocolError::TooManyStreams(self.config.max_streams));
        }
        let mut s = self.new_stream(kind, false);
        s.recv_done = end;
        self.streams.insert(id, s);
        self.peer_open += 1;
        Ok(true)
    }

    /// Refuses a stream the peer opened under [`PeerStreams::Refuse`]: a reset at
    /// once, and past [`MAX_REFUSED_STREAMS`] the session is closed.
    fn refuse_peer_stream(&mut self, id: StreamId) -> Result<(), ProtocolError> {
        let (us, them) = match self.role {
            Role::Server => ("server", "clients"),
            Role::Client => ("client", "servers"),
        };
        self.refused_peer_streams = self.refused_peer_streams.saturating_add(1);
        if self.refused_peer_streams > MAX_REFUSED_STREAMS {
            return Err(ProtocolError::StreamsRefused(them));
        }
        let message = format!("the {us} does not accept streams from {them}");
        self.push_control(Frame::Reset { id, code: ResetCode::Refused, message });
        Ok(())
    }

    /// The live stream `id`, `None` for a stream that existed and is gone (frames may
    /// still be in flight after a reset), or an error for an id never opened.
    /// The RESPONSE `msg` with its block kept as bytes, when the driver asked for
    /// blocks ([`Session::set_response_blocks`]), the session is established and the
    /// frame's fields decode to themselves; else `None` (decoded the typed way).
    ///
    /// The frame's type is tested first, inline: most messages are not a RESPONSE (each
    /// WebSocket message and DATA frame), and they skip the decoder's call.
    #[inline]
    fn response_block(&self, msg: &Bytes) -> Option<ResponseBlockFrame> {
        if msg.first() != Some(&crate::ids::kind::RESPONSE) {
            return None;
        }
        if !cfg!(feature = "raw-heads") || !self.response_blocks || self.state != State::Established {
            return None;
        }
        ResponseBlockFrame::decode(msg, &self.decode_limits)
    }

    /// [`Frame::Response`]'s handling for a head whose block is kept: the same checks
    /// and state, then [`Event::ResponseBlock`] (a WebSocket's head as a list, as its
    /// drivers take it).
    fn on_response_block(&mut self, r: ResponseBlockFrame) -> Result<(), ProtocolError> {
        let ResponseBlockFrame { id, status, block, end } = r;
        let Some((finished, kind)) = self.take_response_head(id, status, end)? else { return Ok(()) };
        let event = match kind {
            StreamKind::Http => Event::ResponseBlock { id, status, block, end },
            StreamKind::WebSocket => {
                Event::Response { id, head: ResponseHead { status, headers: block.headers() }, end }
            }
        };
        self.events.push_back(event);
        self.drop_if(finished, id);
        Ok(())
    }

    /// A response head with `status` on stream `id`: refused on a stream that cannot
    /// take one; the stream's state moved on. `None` for a stream already forgotten
    /// (the head is ignored); else whether the stream is finished, and its kind.
    fn take_response_head(
        &mut self,
        id: StreamId,
        status: u16,
        end: bool,
    ) -> Result<Option<(bool, StreamKind)>, ProtocolError> {
        let Some(s) = self.known_stream(id)? else { return Ok(None) };
        if !s.local || s.response_received || s.recv_done {
            return Err(ProtocolError::Unexpected("response head on a stream that cannot take one"));
        }
        s.response_received = true;
        s.ws_accepted = s.kind == StreamKind::WebSocket && status == 101;
        if end {
            s.recv_done = true;
        }
        Ok(Some((s.is_finished(), s.kind)))
    }

    fn known_stream(&mut self, id: StreamId) -> Result<Option<&mut Stream>, ProtocolError> {
        if self.never_opened(id) {
            return Err(ProtocolError::BadStreamId(id));
        }
        Ok(self.streams.get_mut(&id).filter(|s| !s.discard))
    }

    /// An id the peer cannot know: one of ours not opened yet, or one of its own above
    /// the last it opened.
    fn never_opened(&self, id: StreamId) -> bool {
        if self.is_local(id) {
            u64::from(id) >= self.next_local_id
        } else {
            id > self.last_peer_id
        }
    }

    /// Charges a received payload to the session and stream windows, then checks the
    /// stream as [`Self::known_stream`] does and runs `accept` on it (the frame's own
    /// checks and state change), all from one lookup. Payloads for streams that are
    /// gone are granted straight back to the session window (`None`). `Some` says
    /// whether the stream is now finished (see [`Self::drop_if`]). The errors come in
    /// the order of the checks made one by one: session credit, stream credit, an id
    /// never opened, then `accept`'s.
    fn take_credit(
        &mut self,
        id: StreamId,
        len: usize,
        accept: impl FnOnce(&mut Stream) -> Result<(), ProtocolError>,
    ) -> Result<Option<bool>, ProtocolError> {
        let len = len as u64;
        if len > self.recv_remaining {
            return Err(ProtocolError::FlowControl(0));
        }
        self.recv_remaining -= len;
        let never_opened = self.never_opened(id);
        match self.streams.get_mut(&id) {
            Some(s) if !s.discard => {
                if len > s.recv_remaining {
                    return Err(ProtocolError::FlowControl(id));
                }
                s.recv_remaining -= len;
                if never_opened {
                    return Err(ProtocolError::BadStreamId(id));
                }
                accept(s)?;
                Ok(Some(s.is_finished()))
            }
            _ => {
                self.release_session(len);
                if never_opened {
                    return Err(ProtocolError::BadStreamId(id));
                }
                Ok(None)
            }
        }
    }

    /// Drops stream `id` when `finished` (read from the stream, see
    /// [`Stream::is_finished`], before its event was queued): what [`Self::reap`] does
    /// without looking the stream up again. The removal waits in `finished`, as a
    /// stream's that finished on its last frame sent does, for the driver's
    /// [`Session::remove_finished`] after it handled the event (a server's write of the
    /// response to its visitor: ~0.1k instructions off the path the visitor waits on;
    /// docs/BENCHMARKS.md, twenty-second round), or the session's next call, or the
    /// batch's next frame. Nothing meanwhile can reach the stream: it takes no more
    /// frames, and every call but the getters settles first.
    #[inline]
    fn drop_if(&mut self, finished: bool, id: StreamId) {
        if finished {
            self.defer_removal(id);
        }
    }

    /// `drop_if`'s push, out of line: inlined, it cost the frames that finish nothing
    /// (each WebSocket message) their handler's code around it.
    #[inline(never)]
    fn defer_removal(&mut self, id: StreamId) {
        self.finished.push(id);
    }
}
