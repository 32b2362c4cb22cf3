//! A deadline that is moved far more often than it passes (a connection's idle timeout,
//! moved by every byte; a request deadline set again for every request; a session's
//! next heartbeat). A tokio timer costs a clock read, an insertion into the timer wheel
//! and a removal each time it is created or moved, and each poll costs about as much as
//! the rest of a wake-up's bookkeeping. A [`LazyDeadline`] keeps one tokio timer armed at
//! an earlier instant and only stores later ones; when the timer fires before the stored
//! instant it is moved there (hyper's keep-alive timer works the same way), and the task
//! that last registered it does not poll it again until it fires.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::timers::{Instant, Sleep};

/// A deadline whose moves later cost a store; see the module documentation.
#[derive(Debug)]
pub struct LazyDeadline {
    at: Instant,
    sleep: Sleep,
    /// The waker the armed timer holds: polled again by the same task, an unfired
    /// timer is not polled again (a tokio timer's poll is most of a wait's cost).
    registered: Option<Waker>,
}

impl LazyDeadline {
    /// A deadline at `at`.
    pub fn new(at: Instant) -> Self {
        LazyDeadline { at, sleep: crate::timers::sleep_until(at), registered: None }
    }

    /// Moves the deadline to `at`. Earlier than the armed timer moves the timer;
    /// later only stores the instant.
    pub fn set(&mut self, at: Instant) {
        if at < self.sleep.deadline() {
            self.sleep.reset(at);
            self.registered = None;
        }
        self.at = at;
    }

    /// Ready once the deadline has passed.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let same_task = self.registered.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
        if same_task && !self.sleep.is_elapsed() {
            return Poll::Pending;
        }
        loop {
            if Pin::new(&mut self.sleep).poll(cx).is_pending() {
                if !same_task {
                    self.registered = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
            if self.at <= Instant::now() {
                return Poll::Ready(());
            }
            // Fired at an instant the deadline has since moved past.
            self.sleep.reset(self.at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn expired(d: &mut LazyDeadline) {
        std::future::poll_fn(|cx| d.poll_expired(cx)).await;
    }

    /// On a virtual clock: moved later many times, the deadline passes at the last
    /// instant it was given, not at the one its timer was first armed for.
    #[tokio::test(start_paused = true)]
    async fn a_deadline_moved_later_passes_at_the_last_instant() {
        let start = Instant::now();
        let mut d = LazyDeadline::new(start + Duration::from_secs(1));
        for i in 1..=5 {
            tokio::time::advance(Duration::from_millis(500)).await;
            d.set(start + Duration::from_millis(500 * i) + Duration::from_secs(1));
        }
        expired(&mut d).await;
        assert_eq!(Instant::now() - start, Duration::from_millis(3500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_moved_earlier_passes_there() {
        let start = Instant::now();
        let mut d = LazyDeadline::new(start + Duration::from_secs(10));
        d.set(start + Duration::from_secs(2));
        expired(&mut d).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
    }

    /// Polled by one task, then awaited by another: the timer wakes the second.
    #[tokio::test(start_paused = true)]
    async fn a_deadline_handed_to_another_task_wakes_that_task() {
        let start = Instant::now();
        let mut d = LazyDeadline::new(start + Duration::from_secs(1));
        let waker = futures_util::task::noop_waker();
        assert!(d.poll_expired(&mut Context::from_waker(&waker)).is_pending());
        let other = tokio::spawn(async move { expired(&mut d).await });
        let done = crate::timers::timeout(Duration::from_secs(60), other).await;
        assert!(done.is_ok(), "the second task was never woken");
        assert_eq!(Instant::now() - start, Duration::from_secs(1));
    }
}
