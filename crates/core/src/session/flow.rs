//! Flow control, both ways. Sending: how much a stream may queue and send (its
//! window, its fair share of the session credit and of the queue room, see
//! `docs/PROTOCOL.md` §7), and waking blocked streams when credit or room returns.
//! Receiving: granting consumed bytes back to the peer as WINDOW frames.

use crate::event::Event;
use crate::frame::{Frame, StreamId};
use crate::stream::Stream;

use super::{Session, State};

impl Session {
    /// Bytes `send_data`/`send_ws` would accept on `id` now.
    pub fn send_capacity(&self, id: StreamId) -> usize {
        let room = self.queue_room();
        let share = |s: &Stream| self.fair_share(room, s.queued);
        // A finished stream waiting for `remove_finished` is as good as gone.
        let live = self.streams.get(&id).filter(|s| !s.is_finished());
        live.map_or(0, |s| usize::try_from(s.send_credit.min(share(s))).unwrap_or(usize::MAX))
    }

    /// How much more of a `pool` one stream that already holds `held` of it may take:
    /// it may hold at most `1 / fair_divisor` of what is left to share (the pool and its
    /// own part), rounded up so that a stream holding nothing always gets something of a
    /// pool that is not empty. Streams whose readers stall each keep a share of what the
    /// ones before them left, so the pool shrinks geometrically and is not used up by
    /// them: the next stream still finds credit and queue room. The pools are the
    /// session credit (for what a stream has in flight) and the queue room (for what
    /// it has queued), see `docs/PROTOCOL.md` §7, "Fair shares".
    pub(super) fn fair_share(&self, pool: u64, held: u64) -> u64 {
        Shares::of(self).share(pool, held)
    }

    /// Payload bytes the streams may still queue, together: the peer's session window
    /// less what is queued and not sent. Each stream may queue up to its own window,
    /// but many streams whose data waits for the session window would otherwise queue
    /// `streams x stream_window` bytes here, of which only the session window can be
    /// on its way at once.
    pub(super) fn queue_room(&self) -> u64 {
        self.queue_limit().saturating_sub(self.queued)
    }

    /// The most payload all streams may queue unsent: the peer's session window, and
    /// never more than our own `max_session_queue` whatever the peer announced.
    pub(super) fn queue_limit(&self) -> u64 {
        u64::from(self.peer.session_window.min(self.config.max_session_queue))
    }

    /// `spent` payload bytes left the queue (sent, or dropped with their stream).
    /// Once a full queue has drained to half, the streams it refused may offer again.
    pub(super) fn dequeued(&mut self, spent: u64) {
        self.queued = self.queued.saturating_sub(spent);
        if self.queue_full && self.queued <= self.queue_limit() / 2 {
            self.queue_full = false;
            self.wake_blocked();
        }
    }

    /// Wakes every blocked stream that may send again, in id order from where the
    /// last wake-up started: the streams woken first offer first, and when the queue
    /// has less room than they want the ones woken later are refused again, so the
    /// first place goes round.
    pub(super) fn wake_blocked(&mut self) {
        let mut blocked: Vec<StreamId> = self.streams.iter().filter(|(_, s)| s.blocked).map(|(id, _)| *id).collect();
        sort_ids(&mut blocked);
        let start = blocked.partition_point(|&id| id <= self.wake_after);
        blocked.rotate_left(start);
        if let Some(&first) = blocked.first() {
            self.wake_after = first;
        }
        for id in blocked {
            self.wake_if_writable(id);
        }
    }

    /// The application consumed `n` received bytes of `id`: grant them back.
    /// Safe to call after the stream ended (only the session window is updated).
    pub fn release(&mut self, id: StreamId, n: usize) {
        self.settle();
        if self.state == State::Closed || n == 0 {
            return;
        }
        let n = n as u64;
        let window = u64::from(self.config.stream_window);
        let pressed = self.window_pressed();
        if let Some(s) = self.streams.get_mut(&id) {
            if !s.recv_done {
                s.recv_unacked = s.recv_unacked.saturating_add(n).min(window - s.recv_remaining.min(window));
                if should_grant(s.recv_unacked, s.recv_remaining, window) || (pressed && s.recv_unacked > 0) {
                    let inc = s.recv_unacked;
                    s.recv_unacked = 0;
                    s.recv_remaining += inc;
                    let increment = u32::try_from(inc).unwrap_or(u32::MAX);
                    self.push_control(Frame::Window { id, increment });
                }
            }
        }
        if self.state == State::Closed {
            // That grant found the control queue over its bound: nothing follows CLOSE.
            return;
        }
        self.release_session(n);
    }

    pub(super) fn release_session(&mut self, n: u64) {
        let window = u64::from(self.config.session_window);
        self.recv_unacked = self.recv_unacked.saturating_add(n).min(window - self.recv_remaining);
        if should_grant(self.recv_unacked, self.recv_remaining, window)
            || (self.window_pressed() && self.recv_unacked > 0)
        {
            let inc = self.recv_unacked;
            self.recv_unacked = 0;
            self.recv_remaining += inc;
            self.push_control(Frame::Window { id: 0, increment: u32::try_from(inc).unwrap_or(u32::MAX) });
        }
    }

    /// Payload bytes received and not yet released: what the application holds (its
    /// streams' queues, what their readers took and did not release yet), at most our
    /// session window. A driver may read its socket differently while this is large
    /// (`localtunnels_driver`'s tunnel reader sizes its buffers by it).
    pub fn received_held(&self) -> u64 {
        u64::from(self.config.session_window).saturating_sub(self.recv_remaining + self.recv_unacked)
    }

    /// The peer has less than half our session window left to send (stalled readers
    /// hold the rest): consumed bytes are granted back at once, as our
    /// `features::EAGER_WINDOW` promises, so that a sender keeping its streams to fair
    /// shares is never left waiting for a batched grant.
    fn window_pressed(&self) -> bool {
        self.recv_remaining < u64::from(self.config.session_window) / 2
    }

    pub(super) fn wake_if_writable(&mut self, id: StreamId) {
        let session_open = self.send_credit > 0;
        let room = self.queue_room() > 0;
        let Some(s) = self.streams.get_mut(&id) else { return };
        if s.blocked && s.send_credit > 0 && session_open {
            if room {
                s.blocked = false;
                self.events.push_back(Event::Writable { id });
            } else {
                // Only the queue holds it back now: wake it when that drains.
                self.queue_full = true;
            }
        }
        if session_open && !s.queue.is_empty() {
            self.schedule(id);
        }
    }
}

/// Sorts `ids` ascending, as `sort_unstable` does: a heapsort, ~0.2 KB of code where the
/// standard library's sort is ~4.8 KB of the wasm client (docs/BENCHMARKS.md, "Sixteenth
/// round (session 17): memory and size"). It runs only when a full send queue has drained,
/// over the streams it refused: O(n log n), like the standard one.
fn sort_ids(ids: &mut [StreamId]) {
    let n = ids.len();
    for root in (0..n / 2).rev() {
        sift_down(ids, root, n);
    }
    for end in (1..n).rev() {
        ids.swap(0, end);
        sift_down(ids, 0, end);
    }
}

/// Moves `ids[root]` down the max-heap `ids[..end]` to its place.
fn sift_down(ids: &mut [StreamId], mut root: usize, end: usize) {
    loop {
        let mut child = 2 * root + 1;
        if child >= end {
            return;
        }
        if child + 1 < end && ids[child] < ids[child + 1] {
            child += 1;
        }
        if ids[root] >= ids[child] {
            return;
        }
        ids.swap(root, child);
        root = child;
    }
}

/// `len`, or less if the queue has less `room`.
pub(super) fn clamp(len: usize, room: u64) -> usize {
    usize::try_from(room).map_or(len, |room| len.min(room))
}

/// Whether consumed bytes (`unacked`) are worth a WINDOW frame now. Grants are batched
/// to a quarter of the window, but never held back once they are at least what the
/// peer has left (`remaining`): bytes the application holds unreleased shrink the part
/// of the window that cycles, and a fixed threshold larger than that part would never
/// be reached, stalling every other stream of the session.
fn should_grant(unacked: u64, remaining: u64, window: u64) -> bool {
    unacked > 0 && (unacked >= window / 4 || unacked >= remaining)
}

/// The session's fair-share parameters, copied out so that a stream borrowed from the
/// session's map can be weighed without looking it up again (see
/// [`Session::fair_share`]).
#[derive(Clone, Copy)]
pub(super) struct Shares {
    divisor: u64,
    free: u64,
}

impl Shares {
    pub(super) fn of(session: &Session) -> Shares {
        Shares { divisor: session.fair_divisor, free: session.fair_free }
    }

    /// [`Session::fair_share`].
    pub(super) fn share(self, pool: u64, held: u64) -> u64 {
        if self.divisor <= 1 || pool >= self.free {
            return pool;
        }
        pool.saturating_add(held).div_ceil(self.divisor).saturating_sub(held).min(pool)
    }

    /// Payload bytes stream `s` may send now: its fair share of the session credit
    /// (`send_credit`) less what it has in flight (sent, not granted back on the
    /// stream). A stream with bytes in flight waits until its allowance is at least half
    /// its share (or covers all it has queued) rather than sending what each small grant
    /// frees: those dribs would come back as small grants, and the frames would never
    /// grow again (the silly window syndrome). It can wait: its bytes in flight will be
    /// granted back.
    pub(super) fn send_allowance(self, send_credit: u64, stream_window: u64, s: &Stream) -> u64 {
        if self.divisor <= 1 || send_credit >= self.free {
            return send_credit;
        }
        let in_flight = stream_window.saturating_sub(s.send_credit.saturating_add(s.queued));
        let allowed = self.share(send_credit, in_flight);
        let share = allowed + in_flight;
        if in_flight > 0 && allowed < share / 2 && allowed < s.queued {
            return 0;
        }
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn ids_sort_as_the_standard_sort_does() {
        let mut seed = 0x2545_f491_u32;
        for len in (0..40).chain([255, 1000]) {
            let mut ids: Vec<StreamId> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed % 64 * 2 + 1
                })
                .collect();
            let mut want = ids.clone();
            want.sort_unstable();
            sort_ids(&mut ids);
            assert_eq!(ids, want, "{len} ids");
        }
    }
}
