//! Deadlines that are moved far more often than they pass: the idle timeout of a
//! connection (moved by every byte), the request-head deadline of an HTTP/1
//! connection and the wait for a tunnel's response (both set again for every request).
//!
//! A tokio timer costs a clock read, an insertion into the timer wheel and a removal
//! each time it is created or moved: a few percent of the server's instructions per
//! proxied request when done for every request. A [`LazyDeadline`] keeps one tokio
//! timer armed at an earlier instant and only stores later ones; when the timer fires
//! before the stored instant it is moved there (hyper's keep-alive timer works the same
//! way). [`DeadlineSlot`] lends one to each request of a connection in turn, and
//! [`HeadTimer`] gives hyper its request-head deadline from one.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// A deadline whose moves later cost a store; see the module documentation.
#[derive(Debug)]
pub struct LazyDeadline {
    at: Instant,
    sleep: Pin<Box<Sleep>>,
    /// The waker the armed timer holds: polled again by the same task, an unfired
    /// timer is not polled again (a tokio timer's poll is most of a wait's cost).
    registered: Option<Waker>,
}

impl LazyDeadline {
    /// A deadline at `at`.
    pub fn new(at: Instant) -> Self {
        LazyDeadline { at, sleep: Box::pin(tokio::time::sleep_until(at)), registered: None }
    }

    /// Moves the deadline to `at`. Earlier than the armed timer moves the timer;
    /// later only stores the instant.
    pub fn set(&mut self, at: Instant) {
        if at < self.sleep.deadline() {
            self.sleep.as_mut().reset(at);
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
            if self.sleep.as_mut().poll(cx).is_pending() {
                if !same_task {
                    self.registered = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
            if self.at <= Instant::now() {
                return Poll::Ready(());
            }
            // Fired at an instant the deadline has since moved past.
            self.sleep.as_mut().reset(self.at);
        }
    }
}

/// One [`LazyDeadline`] per connection, lent to one waiter at a time: the requests of
/// an HTTP/1 connection come one after another, so each reuses the timer of the one
/// before. A waiter that finds it lent out (HTTP/2 streams overlap) gets its own.
#[derive(Debug, Clone, Default)]
pub struct DeadlineSlot(Arc<Mutex<Option<LazyDeadline>>>);

impl DeadlineSlot {
    /// The slot's deadline set to `at`, or a new one; it returns to the slot when the
    /// [`Lent`] is dropped.
    pub fn lend(&self, at: Instant) -> Lent {
        let kept = self.0.lock().ok().and_then(|mut slot| slot.take());
        let deadline = match kept {
            Some(mut d) => {
                d.set(at);
                d
            }
            None => LazyDeadline::new(at),
        };
        Lent { deadline: Some(deadline), slot: self.clone() }
    }
}

/// A deadline lent by a [`DeadlineSlot`]; a future that completes when it passes.
#[derive(Debug)]
pub struct Lent {
    deadline: Option<LazyDeadline>,
    slot: DeadlineSlot,
}

impl Future for Lent {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.get_mut().deadline {
            Some(d) => d.poll_expired(cx),
            None => Poll::Pending,
        }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let (Some(d), Ok(mut slot)) = (self.deadline.take(), self.slot.0.lock()) {
            *slot = Some(d);
        }
    }
}

/// hyper's timer for one HTTP/1 connection, whose one use of it is the deadline for
/// each request head (`header_read_timeout`): hyper asks for a new sleep per request,
/// and each is lent the connection's one [`LazyDeadline`].
#[derive(Debug, Clone, Default)]
pub struct HeadTimer(DeadlineSlot);

impl hyper::rt::Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HeadSleep(self.0.lend(Instant::now() + duration)))
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HeadSleep(self.0.lend(Instant::from_std(deadline))))
    }

    fn now(&self) -> std::time::Instant {
        // tokio's clock, so that a test's paused clock governs this timer too.
        Instant::now().into_std()
    }
}

struct HeadSleep(Lent);

impl Future for HeadSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl hyper::rt::Sleep for HeadSleep {}

#[cfg(test)]
mod tests {
    use super::*;

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
        let done = tokio::time::timeout(Duration::from_secs(60), other).await;
        assert!(done.is_ok(), "the second task was never woken");
        assert_eq!(Instant::now() - start, Duration::from_secs(1));
    }

    /// The slot's deadline goes back to it when a waiter is done, and a second waiter
    /// meanwhile gets one of its own that passes independently.
    #[tokio::test(start_paused = true)]
    async fn a_slot_lends_its_deadline_to_one_waiter_at_a_time() {
        let slot = DeadlineSlot::default();
        let start = Instant::now();
        let first = slot.lend(start + Duration::from_secs(5));
        let second = slot.lend(start + Duration::from_secs(1));
        second.await;
        assert_eq!(Instant::now() - start, Duration::from_secs(1));
        drop(first);
        assert!(slot.0.lock().unwrap().is_some(), "returned on drop");
        // Lent again, for a later instant: it passes there.
        slot.lend(start + Duration::from_secs(3)).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
    }
}
