//! Every timer of the server and the client, whichever runtime runs it.
//!
//! Why: tokio's time driver costs ~0.5k instructions at every park of a runtime, timers
//! or not (a lock, a walk of the wheel's levels, two clock reads around the park):
//! ~1.0k per WebSocket echo and per 1 KiB request on each side, ~0.2k in each of the
//! four wake-ups on a request's critical path (docs/BENCHMARKS.md, "Sixteenth round
//! (session 17): timers without tokio's time driver"). So the runtimes that carry the
//! traffic ([`CurrentThread`], when it is lean) are built without it, and on them a
//! [`Sleep`] registers with one `timerfd` per runtime (Linux), which epoll wakes only
//! when a deadline falls due. Everywhere else (multi-threaded runtimes, `#[tokio::test]`
//! runtimes, runtimes built with [`CurrentThread::new`]`(false)`) a [`Sleep`] is tokio's,
//! decided when it is first polled, so code written against this module runs on both.
//!
//! The rule that keeps "timers are disabled" from ever panicking: on a lean runtime every
//! timer must come from here. `clippy.toml` refuses tokio's `sleep`, `sleep_until`,
//! `timeout`, `timeout_at` and `interval`; a component that brings its own tokio timers
//! (instant-acme, the redis client, hyper-util's connector) needs a runtime built with
//! tokio's time driver, which is what [`CurrentThread::new`]`(false)` gives (the binary
//! decides, where it builds its runtimes). hyper's timer is [`HyperTimer`].
//!
//! `Instant` is tokio's (`tokio::time::Instant`): the existing code and its tests use it,
//! and in tests a paused tokio clock governs the tokio-backed sleeps as before. Without a
//! paused clock it is `std::time::Instant` (CLOCK_MONOTONIC, the timerfd's clock).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

pub use tokio::time::Instant;

mod hyper_timer;
mod runtime;
#[cfg(target_os = "linux")]
mod wheel;

pub use hyper_timer::HyperTimer;
pub use runtime::CurrentThread;

/// A future that completes at a deadline; tokio's `Sleep` or a runtime's timerfd entry.
#[derive(Debug)]
pub struct Sleep {
    deadline: Instant,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Not polled yet: which timers it uses is decided by the thread that polls it.
    Idle,
    Tokio(Pin<Box<tokio::time::Sleep>>),
    #[cfg(target_os = "linux")]
    Wheel(Arc<wheel::Entry>, u64),
}

/// Completes at `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep { deadline, state: State::Idle }
}

/// Completes after `duration`.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(after(duration))
}

/// `duration` from now, or about thirty years for one too long to add (as tokio does).
fn after(duration: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(duration).unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30))
}

impl Sleep {
    /// The instant it completes at.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether it has fired (and not been reset since).
    pub fn is_elapsed(&self) -> bool {
        match &self.state {
            State::Idle => false,
            State::Tokio(s) => s.is_elapsed(),
            #[cfg(target_os = "linux")]
            State::Wheel(entry, _) => entry.is_fired(),
        }
    }

    /// Moves it to `deadline`; the task that last polled it is woken there (as tokio's).
    pub fn reset(&mut self, deadline: Instant) {
        let old = std::mem::replace(&mut self.deadline, deadline);
        match &mut self.state {
            State::Idle => {}
            State::Tokio(s) => s.as_mut().reset(deadline),
            #[cfg(target_os = "linux")]
            State::Wheel(entry, id) => {
                if let Some(new_id) = wheel::reinsert((old, *id), deadline, entry.clone()) {
                    *id = new_id;
                    return;
                }
                // Reset on a thread without the timers: registered again when polled.
                self.state = State::Idle;
            }
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        match &mut this.state {
            State::Tokio(s) => s.as_mut().poll(cx),
            #[cfg(target_os = "linux")]
            State::Wheel(entry, _) => entry.poll(cx),
            State::Idle => {
                #[cfg(target_os = "linux")]
                if let Some((entry, id)) = wheel::register(this.deadline, cx.waker()) {
                    this.state = State::Wheel(entry, id);
                    return Poll::Pending;
                }
                // The one use of tokio's timers: on a runtime that has them.
                #[allow(clippy::disallowed_methods)]
                let mut s = Box::pin(tokio::time::sleep_until(this.deadline));
                let polled = s.as_mut().poll(cx);
                this.state = State::Tokio(s);
                polled
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let State::Wheel(entry, id) = &self.state {
            if !entry.is_fired() {
                wheel::remove((self.deadline, *id));
            }
        }
    }
}

/// Whether the calling thread runs a lean runtime (no tokio timers: code that brings
/// its own would panic there, so it checks this first).
pub fn lean_here() -> bool {
    #[cfg(target_os = "linux")]
    return wheel::installed();
    #[cfg(not(target_os = "linux"))]
    return false;
}

/// The error of a [`timeout`] whose deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline has elapsed")]
pub struct Elapsed;

/// `fut`'s output, or [`Elapsed`] if `duration` (from now) passes first.
pub fn timeout<F: Future>(duration: Duration, fut: F) -> impl Future<Output = Result<F::Output, Elapsed>> {
    timeout_at(after(duration), fut)
}

/// `fut`'s output, or [`Elapsed`] if `deadline` passes first. The future is polled
/// first, so one ready at the deadline still counts.
pub async fn timeout_at<F: Future>(deadline: Instant, fut: F) -> Result<F::Output, Elapsed> {
    let mut fut = std::pin::pin!(fut);
    let mut sleep = sleep_until(deadline);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        Pin::new(&mut sleep).poll(cx).map(|()| Err(Elapsed))
    })
    .await
}

/// Ticks every `period`, the first at once; a late tick delays the ones after it
/// (tokio's `MissedTickBehavior::Delay`).
pub fn interval(period: Duration) -> Interval {
    Interval { next: None, period }
}

/// See [`interval`].
#[derive(Debug)]
pub struct Interval {
    next: Option<Sleep>,
    period: Duration,
}

impl Interval {
    /// Completes at the next tick.
    pub async fn tick(&mut self) {
        if let Some(sleep) = &mut self.next {
            sleep.await;
        }
        self.next = Some(sleep(self.period));
    }
}

#[cfg(test)]
mod tests;
