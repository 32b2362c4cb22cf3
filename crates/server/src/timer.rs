//! Per-request deadlines of a visitor connection: the request-head deadline of an
//! HTTP/1 connection and the wait for a tunnel's response, both set again for every
//! request. Rather than a tokio timer per request (a timer-wheel insert and removal
//! each, docs/BENCHMARKS.md), a connection keeps one [`LazyDeadline`], which a
//! [`DeadlineSlot`] lends to each request in turn and [`HeadTimer`] gives to hyper.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use localtunnels_driver::lazy_deadline::LazyDeadline;
use tokio::time::Instant;

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
