//! The queue of events one stream's receiver has not read yet ([`crate::stream`]):
//! the first two held in the queue itself, more in a `VecDeque` that is allocated only
//! when more than two wait at once.
//!
//! An HTTP response is usually two events delivered together (its head, then its body
//! with the end) and read together, and a WebSocket's messages are read as they come:
//! two places nearly always suffice. A `VecDeque` allocated on the first push and freed
//! with the stream cost the server ~0.25k instructions per 1 KiB request, ~0.1k of it
//! between the tunnel's read of the response and the visitor's write (docs/BENCHMARKS.md,
//! fourteenth round).

use std::collections::VecDeque;

use crate::stream::StreamEvent;

/// Events held in place.
const INLINE: usize = 2;

/// A first-in first-out queue of [`StreamEvent`]s.
#[derive(Default)]
pub(crate) struct EventQueue {
    /// The oldest events: `len` of them, from `start`, round the two places. Every
    /// event here came before every event in `spill`, because an event goes here only
    /// while `spill` is empty.
    inline: [Option<StreamEvent>; INLINE],
    start: usize,
    len: usize,
    /// What came while both places were taken (or after something went here).
    spill: VecDeque<StreamEvent>,
}

impl EventQueue {
    /// Adds `ev` at the back.
    pub(crate) fn push_back(&mut self, ev: StreamEvent) {
        if self.len < INLINE && self.spill.is_empty() {
            self.inline[(self.start + self.len) % INLINE] = Some(ev);
            self.len += 1;
        } else {
            self.spill.push_back(ev);
        }
    }

    /// Takes the oldest event.
    pub(crate) fn pop_front(&mut self) -> Option<StreamEvent> {
        if self.len == 0 {
            return self.spill.pop_front();
        }
        let ev = self.inline[self.start].take();
        self.start = (self.start + 1) % INLINE;
        self.len -= 1;
        ev
    }

    /// No event is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0 && self.spill.is_empty()
    }

    /// The payload bytes of every event held (what still counts against the windows).
    pub(crate) fn payload_len(&self) -> usize {
        let inline = self.inline.iter().flatten();
        inline.chain(self.spill.iter()).map(StreamEvent::payload_len).sum()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn data(n: usize) -> StreamEvent {
        StreamEvent::Data { data: Bytes::from(vec![0; n]), end: false }
    }

    fn len_of(ev: Option<StreamEvent>) -> Option<usize> {
        ev.map(|ev| ev.payload_len())
    }

    /// Any interleaving of pushes and pops gives the events back in the order they
    /// came, across the two places and the spill (sizes stand for the events).
    #[test]
    fn events_come_out_in_the_order_they_went_in() {
        let mut queue = EventQueue::default();
        let mut model = VecDeque::new();
        let mut next = 1;
        // Pushes (true) and pops (false): fill past the two places, drain partly,
        // push while the spill holds events, drain all, then alternate.
        let steps = [
            true, true, true, true, false, true, false, false, true, false, false, false, false, true, false, true,
            true, false, true, false, false, true, true, true, false, false, false, false,
        ];
        for push in steps {
            if push {
                queue.push_back(data(next));
                model.push_back(next);
                next += 1;
            } else {
                assert_eq!(len_of(queue.pop_front()), model.pop_front());
            }
            assert_eq!(queue.payload_len(), model.iter().sum::<usize>());
        }
        assert_eq!(len_of(queue.pop_front()), None);
    }

    /// Two events waiting at once (a response's head and body) take no allocation.
    #[test]
    fn two_events_stay_in_place() {
        let mut queue = EventQueue::default();
        for round in 0..3 {
            queue.push_back(StreamEvent::Reset { code: localtunnels_core::ResetCode::Cancel, message: String::new() });
            queue.push_back(data(round + 1));
            assert_eq!(queue.spill.capacity(), 0);
            assert_eq!(queue.payload_len(), round + 1);
            assert!(matches!(queue.pop_front(), Some(StreamEvent::Reset { .. })));
            assert_eq!(len_of(queue.pop_front()), Some(round + 1));
        }
        assert!(queue.pop_front().is_none());
    }
}
