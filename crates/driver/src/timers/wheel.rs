//! The timers of a runtime built without tokio's time driver (Linux): one `timerfd`
//! per runtime thread, registered with tokio's I/O driver, armed for the earliest
//! deadline of a small ordered map. See the module above for why.
//!
//! The map lives in a thread-local of the thread that runs the runtime (a
//! current-thread runtime polls every task on that thread): a [`super::Sleep`] polled
//! there for the first time registers in it. [`Wheel::drive`] runs inside the
//! runtime's `block_on` future, so the timerfd's readiness wakes that future, which
//! fires what is due; nothing runs per park.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

/// One registered deadline: set when it fires; the waker of the task that waits.
#[derive(Debug, Default)]
pub(super) struct Entry {
    fired: AtomicBool,
    waker: AtomicWaker,
}

impl Entry {
    /// Ready once fired; otherwise the task of `cx` is the one woken when it fires.
    pub(super) fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.fired.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // Fired between the load and the registration (only another thread could).
        if self.fired.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    pub(super) fn is_fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }
}

/// Where an entry sits in the map: its deadline, then the order it registered in.
pub(super) type Key = (Instant, u64);

/// The deadlines of one thread's runtime and the timerfd armed for the earliest.
#[derive(Debug)]
struct Timers {
    fd: Arc<AsyncFd<OwnedFd>>,
    entries: BTreeMap<Key, Arc<Entry>>,
    next_id: u64,
    /// The instant the timerfd is armed for; a later registration leaves it alone
    /// (it fires early, finds nothing due and is armed again for the next one).
    armed: Option<Instant>,
}

thread_local! {
    static TIMERS: RefCell<Option<Timers>> = const { RefCell::new(None) };
}

impl Timers {
    fn arm(&mut self, at: Instant) {
        let wait = at.saturating_duration_since(Instant::now()).max(Duration::from_nanos(1));
        let spec = Itimerspec {
            it_interval: Timespec { tv_sec: 0, tv_nsec: 0 },
            // A zero value would disarm it: at least a nanosecond.
            it_value: Timespec {
                tv_sec: i64::try_from(wait.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(wait.subsec_nanos()),
            },
        };
        match rustix::time::timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &spec) {
            Ok(_) => self.armed = Some(at),
            // Not expected (the values are always valid); the next registration retries.
            Err(e) => tracing::warn!("cannot arm the runtime's timer: {e}"),
        }
    }

    /// Takes the entries that are due and arms the timerfd for the next one.
    fn take_due(&mut self, due: &mut Vec<Arc<Entry>>) {
        let now = Instant::now();
        while let Some(first) = self.entries.first_entry() {
            if first.key().0 > now {
                break;
            }
            due.push(first.remove());
        }
        self.armed = None;
        if let Some(&(at, _)) = self.entries.keys().next() {
            self.arm(at);
        }
    }
}

/// Whether this thread runs a lean runtime's timers.
pub(super) fn installed() -> bool {
    TIMERS.try_with(|t| t.try_borrow().map_or(true, |t| t.is_some())).unwrap_or(false)
}

/// Registers a deadline with this thread's timers, if this thread runs a runtime
/// without tokio's time driver (`None`: use tokio's timers).
pub(super) fn register(at: Instant, waker: &Waker) -> Option<(Arc<Entry>, u64)> {
    if !installed() {
        return None;
    }
    let entry = Arc::new(Entry::default());
    entry.waker.register(waker);
    insert(at, entry)
}

/// Puts `entry` in this thread's map at `at`, arming the timerfd if it is the earliest.
fn insert(at: Instant, entry: Arc<Entry>) -> Option<(Arc<Entry>, u64)> {
    TIMERS
        .try_with(|t| {
            let mut t = t.try_borrow_mut().ok()?;
            let t = t.as_mut()?;
            let id = t.next_id;
            t.next_id = t.next_id.wrapping_add(1);
            t.entries.insert((at, id), entry.clone());
            if t.armed.is_none_or(|armed| at < armed) {
                t.arm(at);
            }
            Some((entry, id))
        })
        .ok()
        .flatten()
}

/// Removes an entry (a dropped or reset sleep). On another thread than the one it
/// registered on (never on a current-thread runtime) it stays until it fires.
pub(super) fn remove(key: Key) {
    let _ = TIMERS.try_with(|t| {
        if let Ok(mut t) = t.try_borrow_mut() {
            if let Some(t) = t.as_mut() {
                t.entries.remove(&key);
            }
        }
    });
}

/// Moves an entry to `at` (a reset sleep keeps its waker, as tokio's does).
pub(super) fn reinsert(old: Key, at: Instant, entry: Arc<Entry>) -> Option<u64> {
    remove(old);
    entry.fired.store(false, Ordering::Release);
    insert(at, entry).map(|(_, id)| id)
}

/// A runtime's timerfd, made when the runtime is built.
#[derive(Debug, Clone)]
pub(super) struct Wheel {
    fd: Arc<AsyncFd<OwnedFd>>,
}

impl Wheel {
    /// A timerfd registered with the I/O driver of the runtime entered.
    pub(super) fn new() -> std::io::Result<Wheel> {
        let flags = TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC;
        let fd = rustix::time::timerfd_create(TimerfdClockId::Monotonic, flags)?;
        // tokio 1.54 deprecates the safe constructors for types whose `as_raw_fd` could
        // change under the reactor (its `register` is `unsafe`, which this crate
        // forbids); an `OwnedFd` that only this `AsyncFd` holds always returns the same
        // open descriptor, which is that condition.
        #[allow(deprecated)]
        let fd = AsyncFd::with_interest(fd, tokio::io::Interest::READABLE)?;
        Ok(Wheel { fd: Arc::new(fd) })
    }

    /// Runs `fut` with this thread's timers installed, firing them as they fall due.
    pub(super) async fn drive<F: Future>(&self, fut: F) -> F::Output {
        let _installed = Installed::new(self.fd.clone());
        let mut fut = std::pin::pin!(fut);
        let mut due = Vec::new();
        std::future::poll_fn(|cx| {
            // Each expiration: read its count (8 bytes), fire what is due; until a read
            // finds nothing, which clears the readiness and registers this task's waker.
            while let Poll::Ready(Ok(mut ready)) = self.fd.poll_read_ready(cx) {
                let mut count = [0u8; 8];
                match rustix::io::read(self.fd.get_ref(), &mut count) {
                    Err(rustix::io::Errno::AGAIN) => {
                        ready.clear_ready();
                        continue;
                    }
                    Ok(_) => {}
                    // Not expected from a timerfd: fire what is due, wait for the next.
                    Err(_) => ready.clear_ready(),
                }
                TIMERS.with(|t| {
                    if let Some(t) = t.borrow_mut().as_mut() {
                        t.take_due(&mut due);
                    }
                });
                // Woken outside the borrow: a wake-up may drop a sleep, which removes it.
                for entry in due.drain(..) {
                    entry.fired.store(true, Ordering::Release);
                    entry.waker.wake();
                }
            }
            fut.as_mut().poll(cx)
        })
        .await
    }
}

/// This thread's timers while a [`Wheel::drive`] runs; removed when it ends.
struct Installed;

impl Installed {
    fn new(fd: Arc<AsyncFd<OwnedFd>>) -> Installed {
        TIMERS.with(|t| {
            *t.borrow_mut() = Some(Timers { fd, entries: BTreeMap::new(), next_id: 0, armed: None });
        });
        Installed
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = TIMERS.try_with(|t| t.try_borrow_mut().map(|mut t| t.take()));
    }
}

/// How many deadlines this thread's timers hold (tests: nothing is left behind).
#[cfg(test)]
pub(super) fn registered() -> usize {
    TIMERS.with(|t| t.borrow().as_ref().map_or(0, |t| t.entries.len()))
}
