//! The futures a connection's reader task runs, and the wake-ups that say which of them
//! to poll: the socket's reading (key 0) and the stream futures (keys from 1).
//!
//! A small executor of its own rather than `FuturesUnordered`, for two reasons measured
//! with `bench/callgrind` (docs/BENCHMARKS.md, tenth round): `FuturesUnordered` wakes its
//! task again after every poll in which it polled all its futures (with one stream in
//! flight, every poll), which cost the tunnel's task a third poll per request; and the
//! socket would be polled on every wake-up of a stream. Here each future has a waker of
//! its own that queues its key, and wakes the task only when it is not already in its
//! turn (the turn polls what was queued meanwhile before it ends).
//!
//! The socket's reading, woken once per message that arrives, is not queued: its waker's
//! own flag says it is due, and the queue's lock is taken only when a flag says a stream
//! future was queued (each lock and unlock is ~25 instructions, and a turn that only
//! reads took it four times; docs/BENCHMARKS.md, thirteenth round). The first stream
//! woken between two turns takes a slot of its own, without the lock (with one stream in
//! flight, the client's usual case, the lock is never taken: its origin's wake-up is on
//! the request's critical path; docs/BENCHMARKS.md, seventeenth round); later ones queue
//! behind the lock.
//!
//! A stream future that awaits [`crate::after_write`] before the turn's write is kept
//! aside and polled again once the reader wrote ([`Tasks::run_after`]).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

use crate::after_write::{self, BeforeWrite};
use crate::conn::StreamFuture;

/// The key of the socket's reading.
pub(crate) const READ: usize = 0;

/// How many times a turn polls the queue of woken futures before it yields to the
/// runtime (waking itself if more is queued): a future that wakes itself at every
/// poll, or one out of cooperative budget, must not keep the turn going.
const PASSES: usize = 4;

/// What the futures' wakers share with the reader task.
#[derive(Default)]
pub(crate) struct Wakeups {
    /// The key of the first stream future woken since the last take, queued without
    /// the lock ([`READ`], 0, when none: the reading is never queued).
    first: AtomicUsize,
    /// Keys of stream futures woken since they were last polled while `first` was
    /// taken.
    ready: Mutex<Vec<usize>>,
    /// `ready` may not be empty: set after a push, cleared before a take.
    spilled: AtomicBool,
    /// `first` or `ready` may not be empty: set after a push, cleared before a take.
    queued: AtomicBool,
    /// The reader task's own waker.
    task: AtomicWaker,
    /// The reader task is in its turn: it polls the queue again before the turn ends,
    /// so a wake-up needs no wake of the task.
    in_turn: AtomicBool,
}

impl Wakeups {
    fn push(&self, key: usize) {
        if key != READ {
            if self.first.compare_exchange(READ, key, Ordering::AcqRel, Ordering::Acquire).is_err() {
                self.ready.lock().unwrap_or_else(|e| e.into_inner()).push(key);
                self.spilled.store(true, Ordering::SeqCst);
            }
            self.queued.store(true, Ordering::SeqCst);
        }
        self.wake_task();
    }

    /// Wakes the reader task unless it is in its turn (which looks at the queue and the
    /// reading's flag again before it ends).
    fn wake_task(&self) {
        if !self.in_turn.load(Ordering::SeqCst) {
            self.task.wake();
        }
    }

    /// A stream future was woken and waits to be polled.
    pub(crate) fn stream_queued(&self) -> bool {
        self.queued.load(Ordering::SeqCst)
    }

    /// Takes the queued keys: returns the slot's ([`READ`] if none) and swaps the locked
    /// queue's with `keys` (emptied first), which keeps both allocations; the slot's key
    /// usually woke first (the order does not matter). Each flag is cleared before what it guards is read: a key
    /// pushed meanwhile sets it again and is taken by the next call (the turn's next
    /// round or its next turn).
    #[inline]
    fn take(&self, keys: &mut Vec<usize>) -> usize {
        keys.clear();
        if !self.queued.swap(false, Ordering::SeqCst) {
            return READ;
        }
        let first = self.first.swap(READ, Ordering::AcqRel);
        if self.spilled.swap(false, Ordering::SeqCst) {
            std::mem::swap(&mut *self.ready.lock().unwrap_or_else(|e| e.into_inner()), keys);
        }
        first
    }
}

/// One future's waker: queues its key once until it is polled.
struct KeyWaker {
    key: usize,
    queued: AtomicBool,
    wakeups: Arc<Wakeups>,
}

impl Wake for KeyWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::SeqCst) {
            self.wakeups.push(self.key);
        }
    }
}

/// A key's future, if one runs under it, and the key's waker. The waker outlives its
/// future and serves the next one under the same key: one allocation per key, not one
/// per stream. (A stale copy of it, left by the finished future with a socket, can
/// only cause a spurious poll, which a key's next future got before too: keys are
/// reused either way.)
struct Entry {
    future: Option<StreamFuture>,
    key_waker: Arc<KeyWaker>,
    waker: Waker,
}

/// The stream futures and the socket's reading, polled as their wakers say.
pub(crate) struct Tasks {
    wakeups: Arc<Wakeups>,
    read: Arc<KeyWaker>,
    read_waker: Waker,
    /// Indexed by key - 1; a finished future's slot is reused.
    streams: Vec<Entry>,
    free: Vec<usize>,
    live: usize,
    /// The keys a round polls (swapped with the queue's vector, to keep allocations).
    keys: Vec<usize>,
    /// New stream futures, taken from the connection the same way.
    spawned: Vec<StreamFuture>,
    /// Indexes of the stream futures that yielded until after the turn's write.
    after: Vec<usize>,
}

impl Tasks {
    pub(crate) fn new() -> Tasks {
        let wakeups = Arc::new(Wakeups::default());
        // The socket is read first.
        let read = Arc::new(KeyWaker { key: READ, queued: AtomicBool::new(true), wakeups: wakeups.clone() });
        let read_waker = Waker::from(read.clone());
        Tasks {
            wakeups,
            read,
            read_waker,
            streams: Vec::new(),
            free: Vec::new(),
            live: 0,
            keys: Vec::new(),
            spawned: Vec::new(),
            after: Vec::new(),
        }
    }

    /// The wake-ups the futures share (for the socket's reading to see a stream woken).
    pub(crate) fn wakeups(&self) -> Arc<Wakeups> {
        self.wakeups.clone()
    }

    /// Stream futures still running.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Adds a stream future, to be polled in this turn.
    pub(crate) fn push(&mut self, future: StreamFuture) {
        let index = match self.free.pop() {
            Some(index) => {
                let entry = &mut self.streams[index];
                entry.future = Some(future);
                entry.key_waker.queued.store(true, Ordering::SeqCst);
                index
            }
            None => {
                let index = self.streams.len();
                let key_waker =
                    Arc::new(KeyWaker { key: index + 1, queued: AtomicBool::new(true), wakeups: self.wakeups.clone() });
                let waker = Waker::from(key_waker.clone());
                self.streams.push(Entry { future: Some(future), key_waker, waker });
                index
            }
        };
        self.live += 1;
        self.wakeups.push(index + 1);
    }

    /// Starts a turn of the task polled with `cx`.
    pub(crate) fn begin(&self, cx: &Context<'_>) {
        self.wakeups.task.register(cx.waker());
        self.wakeups.in_turn.store(true, Ordering::SeqCst);
    }

    /// Polls what was woken, in up to [`PASSES`] rounds: `read` polls the socket's
    /// reading with the context it is given; after each round `spawned` moves the
    /// stream futures that reading opened into the vector it is given, and they start.
    ///
    /// `read` returns true when it put its socket poll off until the streams its
    /// messages opened or woke have run: the next round polls the reading again,
    /// after them, not before (see `crate::conn_reader`).
    pub(crate) fn run(
        &mut self,
        mut read: impl FnMut(&mut Context<'_>) -> bool,
        mut spawned: impl FnMut(&mut Vec<StreamFuture>),
    ) {
        let mut keys = std::mem::take(&mut self.keys);
        // Until the turn's write, `after_write` yields (see `crate::after_write`).
        let _before = BeforeWrite::enter();
        let mut read_last = false;
        for _ in 0..PASSES {
            // The reading first, as a queue holding its key would have it first when
            // the socket's wake-up came before the streams' (the usual order), unless
            // it asked to come after them.
            let reading = self.read.queued.swap(false, Ordering::SeqCst);
            let first = self.wakeups.take(&mut keys);
            if !reading && first == READ && keys.is_empty() {
                break;
            }
            // One call of `read` (inlined there, with the reading's future).
            let after_streams = std::mem::take(&mut read_last);
            if after_streams {
                self.poll_streams(first, &keys);
            }
            if reading {
                read_last = read(&mut Context::from_waker(&self.read_waker));
                if read_last {
                    // Due again, as if it woke itself (without its waker's queue).
                    self.read.queued.store(true, Ordering::SeqCst);
                }
            }
            if !after_streams {
                self.poll_streams(first, &keys);
            }
            let mut new = std::mem::take(&mut self.spawned);
            spawned(&mut new);
            for future in new.drain(..) {
                self.push(future);
            }
            self.spawned = new;
        }
        self.keys = keys;
    }

    /// Stream futures yielded until after the turn's write.
    pub(crate) fn has_after(&self) -> bool {
        !self.after.is_empty()
    }

    /// After the turn's write: polls the stream futures that yielded until then, in the
    /// order they yielded. What they produce for the socket is written the way a
    /// command outside the turn writes it.
    pub(crate) fn run_after(&mut self) {
        // By index: a poll after the write yields no more (`after` does not grow).
        let mut i = 0;
        while let Some(&index) = self.after.get(i) {
            self.poll_stream(index);
            i += 1;
        }
        self.after.clear();
    }

    /// Ends the turn; if work is queued (a wake-up from another thread, or what the
    /// last round left), the task wakes itself for another turn.
    pub(crate) fn end(&self) {
        self.wakeups.in_turn.store(false, Ordering::SeqCst);
        if self.read.queued.load(Ordering::SeqCst) || self.wakeups.queued.load(Ordering::SeqCst) {
            self.wakeups.task.wake();
        }
    }

    /// Polls the stream futures of `first` (unless it is [`READ`]: none) and of `keys`.
    fn poll_streams(&mut self, first: usize, keys: &[usize]) {
        if first != READ {
            self.poll_stream(first - 1);
        }
        for &key in keys {
            self.poll_stream(key - 1);
        }
    }

    /// Polls one stream future. A future that panics is dropped (its handles reset the
    /// stream) and the others go on, as a spawned task's panic leaves the other tasks
    /// running.
    fn poll_stream(&mut self, index: usize) {
        let Some(entry) = self.streams.get_mut(index) else { return };
        let Some(future) = entry.future.as_mut() else { return };
        entry.key_waker.queued.store(false, Ordering::SeqCst);
        after_write::set_alone(self.live <= 1);
        let mut cx = Context::from_waker(&entry.waker);
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx)));
        let done = match polled {
            Ok(Poll::Pending) => false,
            Ok(Poll::Ready(())) => true,
            Err(_) => {
                tracing::error!("a stream's handler panicked; its stream was reset");
                true
            }
        };
        if after_write::take_yielded() && !done {
            // Polled again after the write (a spurious poll if it is woken before: a
            // future's poll must allow those).
            self.after.push(index);
        }
        if done {
            entry.future = None;
            self.free.push(index);
            self.live -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys one take returns, the slot's first.
    fn taken(wakeups: &Wakeups) -> Vec<usize> {
        let mut keys = Vec::new();
        let first = wakeups.take(&mut keys);
        if first != READ {
            keys.insert(0, first);
        }
        keys
    }

    #[test]
    fn one_woken_stream_is_queued_in_the_slot_and_taken_once() {
        let wakeups = Wakeups::default();
        wakeups.push(3);
        assert!(wakeups.stream_queued());
        assert!(!wakeups.spilled.load(Ordering::SeqCst), "the first key took the slot, not the lock");
        assert_eq!(taken(&wakeups), [3]);
        assert!(!wakeups.stream_queued());
        assert_eq!(taken(&wakeups), [] as [usize; 0]);
    }

    #[test]
    fn later_streams_queue_behind_the_first_in_the_order_they_woke() {
        let wakeups = Wakeups::default();
        for key in [2, 5, 1, 4] {
            wakeups.push(key);
        }
        assert_eq!(taken(&wakeups), [2, 5, 1, 4]);
        // Both the slot and the queue are free again.
        wakeups.push(7);
        wakeups.push(6);
        assert_eq!(taken(&wakeups), [7, 6]);
        assert_eq!(taken(&wakeups), [] as [usize; 0]);
    }

    #[test]
    fn the_reading_is_never_queued() {
        let wakeups = Wakeups::default();
        wakeups.push(READ);
        assert!(!wakeups.stream_queued());
        assert_eq!(taken(&wakeups), [] as [usize; 0]);
    }

    #[test]
    fn keys_woken_on_other_threads_while_the_turn_takes_are_each_taken_once() {
        let wakeups = Arc::new(Wakeups::default());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let wakeups = wakeups.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        wakeups.push(1 + t * 1000 + i);
                    }
                })
            })
            .collect();
        let mut seen = Vec::new();
        while threads.iter().any(|t| !t.is_finished()) {
            seen.extend(taken(&wakeups));
        }
        for t in threads {
            t.join().unwrap();
        }
        seen.extend(taken(&wakeups));
        seen.sort_unstable();
        assert_eq!(seen, (1..=4000).collect::<Vec<_>>());
    }
}
