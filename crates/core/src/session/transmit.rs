//! Outputs: [`Session::poll_transmit`] and its batching variants pick the next
//! frames to send (the latest pong, control frames, then stream data round-robin),
//! [`Session::poll_event`] and [`Session::poll_timeout`]; and the queues behind them
//! (the bounded control queue, the stream ring).

use bytes::{BufMut, Bytes, BytesMut};

use crate::config::Config;
use crate::event::Event;
use crate::frame::{
    encode_batch_entry, kind, put_batch_entry, CloseCode, Frame, StreamId, BATCH_ENTRY_OVERHEAD, BATCH_HEADER,
};
use crate::time::Instant;

use super::{Session, State};

impl Session {
    /// The next frame to send, as one WebSocket binary message.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.next_output().map(Output::encode)
    }

    /// The next frame to send: an encoded control frame, or a stream's next frame,
    /// still to encode (so a batch can encode it in place).
    fn next_output(&mut self) -> Option<Output> {
        if let Some(o) = self.held.pop_front() {
            return Some(o);
        }
        if let Some(v) = self.pending_pong.take() {
            return Some(Output::Encoded(Frame::Pong(v).encode()));
        }
        if let Some(b) = self.control.pop_front() {
            self.control_bytes -= b.len();
            return Some(Output::Encoded(b));
        }
        let payload_limit = Config::payload_limit(self.peer.max_frame);
        let stream_window = u64::from(self.peer.stream_window);
        while let Some(id) = self.ring.pop_front() {
            let Some(s) = self.streams.get(&id) else { continue };
            let credit = self.send_allowance(stream_window, s);
            let Some(s) = self.streams.get_mut(&id) else { continue };
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
                return Some(Output::Frame(frame));
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
            self.dequeued(spent as u64);
            self.reap(id);
            return Some(Output::Frame(frame));
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
        match self.next_message()? {
            Message::Whole(b) => Some(b),
            Message::Alone(o) => Some(o.encode()),
        }
    }

    /// [`Session::poll_transmit_batch`] as two parts, `head` then `payload`, to be sent
    /// as one message: a DATA or WS_MESSAGE frame that goes alone (a large one, mostly)
    /// leaves its payload apart, as the application queued it, for a driver that copies
    /// into its own buffer anyway (a WebSocket client masks what it sends) or writes
    /// buffers as they are. Anything else comes whole, with an empty payload.
    pub fn poll_transmit_parts(&mut self) -> Option<(Bytes, Bytes)> {
        match self.next_message()? {
            Message::Whole(b) => Some((b, Bytes::new())),
            Message::Alone(Output::Frame(f)) => Some(f.encode_parts()),
            Message::Alone(Output::Encoded(b)) => Some((b, Bytes::new())),
        }
    }

    fn next_message(&mut self) -> Option<Message> {
        let first = self.next_output()?;
        if !self.peer_accepts_batch() || !self.has_transmit() {
            return Some(Message::Alone(first));
        }
        let limit = usize::try_from(self.peer.max_frame).unwrap_or(usize::MAX);
        // Take out what fits first, so the batch is allocated once at its size: growing
        // it frame by frame copied everything packed so far on each reallocation, and a
        // fixed large reserve cost an allocation outside the allocator's thread cache
        // for every small batch.
        let mut picked = std::mem::take(&mut self.picked);
        let mut size = BATCH_HEADER + BATCH_ENTRY_OVERHEAD + first.len_hint();
        picked.push(first);
        while self.has_transmit() {
            let Some(next) = self.next_output() else { break };
            let more = BATCH_ENTRY_OVERHEAD + next.len_hint();
            if size + more > limit {
                self.held.push_front(next);
                break;
            }
            size += more;
            picked.push(next);
        }
        if picked.len() == 1 {
            // Nothing else fitted: the frame goes out as it is.
            let only = picked.pop().map(Message::Alone);
            self.picked = picked;
            return only;
        }
        let mut b = BytesMut::with_capacity(size);
        b.put_u8(kind::BATCH);
        b.put_u32(0);
        let mut entries = 0;
        let mut rest = picked.drain(..);
        for next in rest.by_ref() {
            let at = b.len();
            next.put_entry(&mut b);
            if b.len() > limit && entries > 0 {
                // Longer than its hint said: it and what follows go next time, in order.
                let entry = b.split_off(at).freeze();
                self.held.push_front(Output::Encoded(entry.slice(BATCH_ENTRY_OVERHEAD..)));
                break;
            }
            entries += 1;
        }
        for (i, later) in rest.enumerate() {
            self.held.insert(i + 1, later);
        }
        self.picked = picked;
        let batch = b.freeze();
        if entries == 1 {
            return Some(Message::Whole(batch.slice(BATCH_HEADER + BATCH_ENTRY_OVERHEAD..)));
        }
        Some(Message::Whole(batch))
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

    pub(super) fn push_control(&mut self, frame: &Frame) {
        let b = frame.encode();
        self.control_bytes += b.len();
        self.control.push_back(b);
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

/// The next message to send: already encoded, or one frame alone (which
/// [`Session::poll_transmit_parts`] may encode in two parts).
enum Message {
    Whole(Bytes),
    Alone(Output),
}

/// A frame on its way out (see `Session::next_output`).
#[derive(Debug)]
pub(super) enum Output {
    /// Already encoded: control frames, and a frame split off a batch.
    Encoded(Bytes),
    /// A stream's frame, encoded where it goes.
    Frame(Frame),
}

impl Output {
    fn encode(self) -> Bytes {
        match self {
            Output::Encoded(b) => b,
            Output::Frame(f) => f.encode(),
        }
    }

    fn len_hint(&self) -> usize {
        match self {
            Output::Encoded(b) => b.len(),
            Output::Frame(f) => f.encoded_len_hint(),
        }
    }

    fn put_entry(&self, b: &mut BytesMut) {
        match self {
            Output::Encoded(frame) => put_batch_entry(b, frame),
            Output::Frame(f) => encode_batch_entry(b, f),
        }
    }
}
