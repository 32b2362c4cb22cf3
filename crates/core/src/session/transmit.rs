//! Outputs: [`Session::poll_transmit`] and its batching variants pick the next
//! frames to send (the latest pong, control frames, then stream data round-robin),
//! [`Session::poll_event`] and [`Session::poll_timeout`]; and the queues behind them
//! (the bounded control queue, the stream ring).

use bytes::{BufMut, Bytes, BytesMut};

use crate::config::Config;
use crate::event::Event;
use crate::frame::{
    kind, put_batch_entry, CloseCode, FieldCoding, Frame, HeadPlan, StreamId, BATCH_ENTRY_OVERHEAD, BATCH_HEADER,
    DATA_OVERHEAD,
};
use crate::time::Instant;

use super::flow::Shares;
use super::{Session, State};

impl Session {
    /// The next frame to send, as one WebSocket binary message.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        let out = self.next_output().map(Output::into_bytes);
        // Only `poll_message`'s driver removes finished streams after its write.
        self.settle();
        out
    }

    /// The next frame to send: a control frame or a stream's next frame, still to
    /// encode (where it goes: a batch, the driver's buffer), or one already encoded.
    fn next_output(&mut self) -> Option<Output> {
        if let Some(o) = self.held.pop_front() {
            return Some(o);
        }
        if let Some(v) = self.pending_pong.take() {
            return Some(Output::of(Frame::Pong(v), FieldCoding::Text));
        }
        if let Some(o) = self.control.pop_front() {
            self.control_bytes -= o.len();
            return Some(o);
        }
        if self.ring.is_empty() {
            return None;
        }
        let payload_limit = Config::payload_limit(self.peer.max_frame);
        let coding = self.field_coding();
        let stream_window = u64::from(self.peer.stream_window);
        let shares = Shares::of(self);
        while let Some(id) = self.ring.pop_front() {
            // One lookup of the stream for its allowance, its frame and whether it is
            // finished (three were ~50 instructions more per frame; docs/BENCHMARKS.md,
            // fourteenth round).
            let Some(s) = self.streams.get_mut(&id) else { continue };
            let credit = shares.send_allowance(self.send_credit, stream_window, s);
            s.in_ring = false;
            let session_credit = usize::try_from(credit).unwrap_or(usize::MAX);
            let Some((frame, spent)) = s.next_frame(id, payload_limit, session_credit) else {
                // Only payload is queued and the session window is shut (or the stream
                // has its share of it in flight): wait for a WINDOW, which puts blocked
                // streams back in the ring.
                s.blocked = true;
                continue;
            };
            s.queued -= spent as u64;
            self.send_credit -= spent as u64;
            if matches!(frame, Frame::Reset { .. }) {
                // A RESET carries no payload; removing the stream dequeues what is left.
                self.remove_stream(id);
                return Some(Output::of(frame, coding));
            }
            if !s.queue.is_empty() {
                s.in_ring = true;
                self.ring.push_back(id);
            } else if s.blocked && s.send_credit > 0 {
                // Its queue is empty: a stream refused for its share of the queue may
                // offer again.
                s.blocked = false;
                self.events.push_back(Event::Writable { id });
            }
            // What `reap` checks, on the stream at hand.
            let finished = s.is_finished();
            self.dequeued(spent as u64);
            if finished {
                // Removed after the write (`remove_finished`), off the peer's path.
                self.finished.push(id);
            }
            return Some(Output::of_stream(frame, coding));
        }
        None
    }

    /// Like [`Session::poll_transmit`], but for a peer that accepts `BATCH` frames it
    /// packs every frame that is ready, in the same order, into one message of at most
    /// the peer's `max_frame` (a frame that does not fit goes first in the next one). A
    /// driver whose every send costs (a browser's `WebSocket.send`) drains this instead.
    /// For a peer that did not announce batches it is exactly `poll_transmit`.
    /// Stream data is encoded straight into the batch: its payload is copied once.
    pub fn poll_transmit_batch(&mut self) -> Option<Bytes> {
        let message = self.poll_message()?;
        self.settle();
        match message.inner {
            Packed::Alone(o) => Some(o.into_bytes()),
            Packed::Batch(_) => {
                let mut b = BytesMut::with_capacity(message.len);
                self.encode_message(message, &mut b, usize::MAX);
                Some(b.freeze())
            }
        }
    }

    /// [`Session::poll_transmit_batch`] as two parts, `head` then `payload`, to be sent
    /// as one message: a DATA or WS_MESSAGE frame that goes alone (a large one, mostly)
    /// or last in a batch leaves its payload apart, as the application queued it, for
    /// a driver that copies into its own buffer anyway (a WebSocket client masks what
    /// it sends) or writes buffers as they are. Anything else comes whole, with an empty payload.
    pub fn poll_transmit_parts(&mut self) -> Option<(Bytes, Bytes)> {
        let message = self.poll_message()?;
        self.settle();
        let len = message.len;
        let mut head = BytesMut::with_capacity(len.min(4096));
        let payload = self.encode_message(message, &mut head, 0);
        if payload.is_empty() {
            return Some((head.freeze(), payload));
        }
        if head.is_empty() {
            // An encoded frame (a pong, a frame cut from a batch) comes whole.
            return Some((payload, Bytes::new()));
        }
        Some((head.freeze(), payload))
    }

    /// The next message [`Session::poll_transmit_batch`] would send, not encoded yet
    /// (the streams it finishes stay until [`Session::remove_finished`], to be called
    /// after its write, or the session's next call):
    /// its exact [`OutMessage::len`] lets a driver write the WebSocket header first
    /// and the message straight after it with [`Session::encode_message`], in its own
    /// buffer, with no intermediate allocation or copy.
    pub fn poll_message(&mut self) -> Option<OutMessage> {
        let first = self.next_output()?;
        if !self.peer_accepts_batch() || !self.has_transmit() {
            return Some(OutMessage { len: first.len(), inner: Packed::Alone(first) });
        }
        let limit = usize::try_from(self.peer.max_frame).unwrap_or(usize::MAX);
        // Take out what fits first, so that the batch's size is known before it is
        // encoded (into one allocation of that size, or the driver's buffer).
        let mut picked = std::mem::take(&mut self.picked);
        let mut size = BATCH_HEADER + first.entries_len();
        picked.push(first);
        while self.has_transmit() {
            let Some(next) = self.next_output() else { break };
            let more = next.entries_len();
            if size + more > limit {
                self.held.push_front(next);
                break;
            }
            size += more;
            picked.push(next);
        }
        if picked.len() == 1 {
            // Nothing else fitted: the frame goes out as it is.
            let only = picked.pop().map(|o| OutMessage { len: o.len(), inner: Packed::Alone(o) });
            self.picked = picked;
            return only;
        }
        Some(OutMessage { len: size, inner: Packed::Batch(picked) })
    }

    /// Appends `message` (from [`Session::poll_message`]) to `out`, exactly
    /// [`OutMessage::len`] bytes of it, except the payload of a DATA or WS_MESSAGE frame
    /// sent alone or last in a batch, or an already encoded frame, of at least
    /// `apart_from` bytes: that is returned as it is (not copied), to be sent right
    /// after what `out` got. Returns an empty `Bytes` when all of it went into `out`.
    pub fn encode_message(&mut self, message: OutMessage, out: &mut BytesMut, apart_from: usize) -> Bytes {
        match message.inner {
            Packed::Alone(o) => o.encode_apart(out, apart_from),
            Packed::Batch(picked) => self.encode_batch(message.len, picked, out, apart_from, &mut None),
        }
    }

    /// Appends the `BATCH` of the frames `picked`, `len` bytes in all, to `out`, except
    /// the payload of a last DATA or WS_MESSAGE frame of at least `apart_from` bytes,
    /// which it returns (the batch's end, to be sent right after `out`). A large body's
    /// first frames are batched (its RESPONSE, pieces of 8-32 KiB read from an origin)
    /// and their payload was copied in: ~90k instructions per 1 MiB response on the
    /// client (docs/BENCHMARKS.md, twenty-second round). The first frame with a header
    /// list goes to `spent` (if it is empty) instead of being dropped (see
    /// [`Session::encode_message_spent`]).
    fn encode_batch(
        &mut self,
        len: usize,
        mut picked: Vec<Output>,
        out: &mut BytesMut,
        apart_from: usize,
        spent: &mut Option<Frame>,
    ) -> Bytes {
        let last = picked.pop();
        let kept = match &last {
            Some(Output::Frame(Frame::Data { data, .. } | Frame::WsMessage { data, .. }, ..))
                if data.len() >= apart_from =>
            {
                data.len()
            }
            _ => 0,
        };
        out.reserve(len - kept);
        out.put_u8(kind::BATCH);
        out.put_u32(0);
        for o in picked.drain(..) {
            put_batch_output(out, o, spent);
        }
        let apart = match last {
            Some(Output::Frame(f @ (Frame::Data { .. } | Frame::WsMessage { .. }), len, plan)) => {
                out.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
                f.encode_apart(out, apart_from, &plan)
            }
            Some(o) => {
                put_batch_output(out, o, spent);
                Bytes::new()
            }
            None => Bytes::new(),
        };
        // The vector goes back for the next batch, with its allocation.
        self.picked = picked;
        apart
    }

    /// [`Session::encode_message`], except that a lone frame with a header list (an
    /// OPEN, a RESPONSE, TRAILERS), or a batch's first one, goes to `spent` once
    /// encoded instead of being dropped: its fields, strings and list are freed by the
    /// driver after the write, off the path the peer waits on (~0.24k instructions for
    /// a proxied request's OPEN, ~0.15k for a RESPONSE batched with its body).
    pub fn encode_message_spent(
        &mut self,
        message: OutMessage,
        out: &mut BytesMut,
        apart_from: usize,
        spent: &mut Option<Frame>,
    ) -> Bytes {
        match message.inner {
            Packed::Alone(o) => o.encode_spent(out, apart_from, spent),
            Packed::Batch(picked) => self.encode_batch(message.len, picked, out, apart_from, spent),
        }
    }

    /// True when [`Session::poll_transmit`] may have something to send (a control
    /// frame, or a stream with queued output that credit may let through). A
    /// driver can leave its writer asleep while this is false and
    /// [`Session::poll_timeout`] did not move earlier.
    pub fn has_transmit(&self) -> bool {
        !self.held.is_empty() || self.pending_pong.is_some() || !self.control.is_empty() || !self.ring.is_empty()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Session::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Closed => None,
            State::Established => {
                let dead = self.unanswered_since.map_or(self.last_recv, |since| since.min(self.last_recv));
                Some(self.next_ping.min(dead + self.idle_timeout))
            }
            _ => Some(self.last_recv + self.idle_timeout),
        }
    }

    /// Queues a control frame, encoded when it is sent (into the driver's buffer)
    /// unless it is a handshake frame.
    pub(super) fn push_control(&mut self, frame: Frame) {
        self.push_output(Output::of(frame, self.field_coding()));
    }

    /// Queues a control frame already sized (see [`Session::push_control`]).
    pub(super) fn push_output(&mut self, o: Output) {
        self.control_bytes += o.len();
        self.control.push_back(o);
        if self.control_bytes > self.config.max_control_queue as usize {
            // The peer leaves what we send unread. Closing clears the queue first, so
            // the CLOSE itself always fits.
            let message = format!(
                "the peer does not read: over {} bytes of control frames waited for it",
                self.config.max_control_queue
            );
            self.close(CloseCode::SlowReader, &message);
        }
    }

    pub(super) fn clear_output(&mut self) {
        self.held.clear();
        self.control.clear();
        self.control_bytes = 0;
        self.pending_pong = None;
        self.ring.clear();
        self.streams.clear();
        self.queued = 0;
        self.queue_full = false;
        self.local_open = 0;
        self.peer_open = 0;
    }

    pub(super) fn schedule(&mut self, id: StreamId) {
        if let Some(s) = self.streams.get_mut(&id) {
            if !s.in_ring {
                s.in_ring = true;
                self.ring.push_back(id);
            }
        }
    }
}

/// A message [`Session::poll_message`] took out: encode it with
/// [`Session::encode_message`].
#[derive(Debug)]
pub struct OutMessage {
    /// Its exact encoded size.
    len: usize,
    inner: Packed,
}

impl OutMessage {
    /// The exact size of the encoded message (the payload returned apart included).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: a message holds at least a frame's type and stream id.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What a message holds: one frame, or the frames of a `BATCH`. A lone frame is the
/// common case: boxing it would cost an allocation per message.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Packed {
    Alone(Output),
    Batch(Vec<Output>),
}

/// A frame on its way out (see `Session::next_output`).
#[derive(Debug)]
pub(super) enum Output {
    /// Already encoded: the handshake's frames, and a frame split off a batch.
    Encoded(Bytes),
    /// A frame to encode where it goes, its exact encoded size, and how its header
    /// block is written (the size depends on it).
    Frame(Frame, usize, HeadPlan),
    /// A whole response that went past its stream's queue (`Session::respond_whole_block`):
    /// its RESPONSE frame, encoded, and its body, sent as the DATA frame that ends the
    /// stream. Both are entries of a `BATCH` (the session makes it only for a peer that
    /// takes batches): alone, it is a batch of these two; in a batch, two of its entries.
    Whole { response: Bytes, id: StreamId, data: Bytes },
}

impl Output {
    /// `frame`, to encode later, its header fields as `coding` says, if its size is
    /// known without encoding it.
    pub(super) fn of(frame: Frame, coding: FieldCoding) -> Output {
        match frame.sized(coding) {
            Some((len, plan)) => Output::Frame(frame, len, plan),
            None => Output::Encoded(frame.encode_with(coding)),
        }
    }

    /// [`Output::of`] for a stream's frame: a DATA or WS_MESSAGE frame (the usual one)
    /// has no header block, so its size is its payload's plus the fixed overhead,
    /// without the general sizing's match.
    pub(super) fn of_stream(frame: Frame, coding: FieldCoding) -> Output {
        match &frame {
            Frame::Data { data, .. } | Frame::WsMessage { data, .. } => {
                let len = DATA_OVERHEAD + data.len();
                Output::Frame(frame, len, HeadPlan::TEXT)
            }
            _ => Output::of(frame, coding),
        }
    }

    #[inline]
    pub(super) fn len(&self) -> usize {
        match self {
            Output::Encoded(b) => b.len(),
            Output::Frame(_, len, _) => *len,
            Output::Whole { .. } => BATCH_HEADER + self.entries_len(),
        }
    }

    /// What it adds to a batch: one entry, or a whole response's two.
    #[inline]
    fn entries_len(&self) -> usize {
        match self {
            Output::Whole { response, data, .. } => {
                2 * BATCH_ENTRY_OVERHEAD + response.len() + DATA_OVERHEAD + data.len()
            }
            o => BATCH_ENTRY_OVERHEAD + o.len(),
        }
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Output::Encoded(b) => b,
            Output::Frame(f, len, plan) => {
                let mut b = BytesMut::with_capacity(len);
                f.encode_planned(&mut b, &plan);
                b.freeze()
            }
            whole @ Output::Whole { .. } => {
                let mut b = BytesMut::with_capacity(whole.len());
                whole.encode_apart(&mut b, usize::MAX);
                b.freeze()
            }
        }
    }

    fn encode_apart(self, out: &mut BytesMut, apart_from: usize) -> Bytes {
        match self {
            Output::Encoded(b) if b.len() >= apart_from => b,
            Output::Encoded(b) => {
                out.put_slice(&b);
                Bytes::new()
            }
            Output::Frame(f, _, plan) => f.encode_apart(out, apart_from, &plan),
            Output::Whole { response, id, data } => {
                // Copied whole, as a batch's frames are.
                out.put_u8(kind::BATCH);
                out.put_u32(0);
                put_whole(out, &response, id, data);
                Bytes::new()
            }
        }
    }

    /// [`Output::encode_apart`], a frame with a header list going to `spent` instead of
    /// being dropped (see [`Session::encode_message_spent`]).
    fn encode_spent(self, out: &mut BytesMut, apart_from: usize, spent: &mut Option<Frame>) -> Bytes {
        match self {
            Output::Frame(f @ (Frame::Open { .. } | Frame::Response { .. } | Frame::Trailers { .. }), _, plan) => {
                f.encode_planned(out, &plan);
                *spent = Some(f);
                Bytes::new()
            }
            o => o.encode_apart(out, apart_from),
        }
    }
}

/// Appends one batch entry for `o`; a frame with a header list goes to `spent` (if it
/// is empty) instead of being dropped. Inlined: it is the loop's body, once per
/// entry of every batch.
#[inline]
fn put_batch_output(out: &mut BytesMut, o: Output, spent: &mut Option<Frame>) {
    match o {
        Output::Encoded(frame) => put_batch_entry(out, &frame),
        Output::Whole { response, id, data } => put_whole(out, &response, id, data),
        Output::Frame(f, len, plan) => {
            out.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
            f.encode_planned(out, &plan);
            if spent.is_none() && matches!(f, Frame::Open { .. } | Frame::Response { .. } | Frame::Trailers { .. }) {
                *spent = Some(f);
            }
        }
    }
}

/// Appends a whole response's two batch entries: its RESPONSE frame, then its body as
/// the DATA frame that ends the stream (see `Output::Whole`).
fn put_whole(out: &mut BytesMut, response: &[u8], id: StreamId, data: Bytes) {
    put_batch_entry(out, response);
    out.put_u32(u32::try_from(DATA_OVERHEAD + data.len()).unwrap_or(u32::MAX));
    Frame::Data { id, data, end: true }.encode_planned(out, &HeadPlan::TEXT);
}
