//! The server's shutdown as an HTTP/1 connection watches it while it waits for a head.
//!
//! `watch::Receiver::changed` makes a future that enters the channel's `Notify` list
//! when first polled and leaves it when dropped, and every poll takes that list's lock:
//! made for each wait for a head, it cost ~0.25k instructions per request
//! (docs/BENCHMARKS.md). Here the connection makes one such future for its whole life
//! and polls it with a waker of its own, which marks it and wakes the task; a poll that
//! finds no mark returns at once, so a wake-up by the socket does not touch the channel.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;
use tokio::sync::watch;

/// A connection's view of the server's shutdown signal.
pub(super) struct Closing {
    /// The signal's current value (`true`: shutting down).
    signal: watch::Receiver<bool>,
    /// Waits for the signal to change (or its sender to go); `None` once it has.
    changed: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    mark: Arc<Mark>,
    waker: Waker,
    /// The task's waker `mark` holds (taken by a wake-up): polled again by the same
    /// task, it is not registered again (~0.03k instructions a poll).
    task: Option<Waker>,
}

/// Set by the channel's wake-up; wakes the connection's task.
struct Mark {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Mark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl Closing {
    /// Watches `signal` from now on: a change it has already seen does not count.
    pub(super) fn new(signal: watch::Receiver<bool>) -> Self {
        let mut waiting = signal.clone();
        let changed: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
            let _ = waiting.changed().await;
        });
        // Marked: the first poll enters the channel's list.
        let mark = Arc::new(Mark { woken: AtomicBool::new(true), task: AtomicWaker::new() });
        Closing { signal, changed: Some(changed), waker: Waker::from(mark.clone()), mark, task: None }
    }

    /// Whether the server is shutting down.
    pub(super) fn now(&self) -> bool {
        *self.signal.borrow()
    }

    /// Ready once the signal changed (as `watch::Receiver::changed` would be, and then
    /// for good).
    pub(super) fn poll_changed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(changed) = self.changed.as_mut() else { return Poll::Ready(()) };
        // A wake-up marks first, then takes the registered waker: unmarked, the waker
        // registered last is still there (or being taken to wake this task).
        let woken = self.mark.woken.swap(false, Ordering::AcqRel);
        if woken || !self.task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            // Before the poll: a wake-up that comes while it runs is not lost.
            self.mark.task.register(cx.waker());
            self.task = Some(cx.waker().clone());
        }
        if !woken {
            return Poll::Pending;
        }
        match changed.as_mut().poll(&mut Context::from_waker(&self.waker)) {
            Poll::Ready(()) => {
                self.changed = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The change is seen after polls that found nothing, and stays seen.
    #[tokio::test]
    async fn a_change_wakes_the_waiting_task() {
        let (tx, rx) = watch::channel(false);
        let mut closing = Closing::new(rx);
        assert!(!closing.now());
        let pending = std::future::poll_fn(|cx| Poll::Ready(closing.poll_changed(cx).is_pending())).await;
        assert!(pending);
        let waiter = tokio::spawn(async move {
            std::future::poll_fn(|cx| closing.poll_changed(cx)).await;
            assert!(closing.now());
            std::future::poll_fn(|cx| closing.poll_changed(cx)).await;
        });
        tokio::task::yield_now().await;
        tx.send(true).unwrap();
        waiter.await.unwrap();
    }

    /// A task woken by other things in between (its polls then register nothing
    /// again) is still woken by the change.
    #[tokio::test]
    async fn polls_by_the_same_task_without_a_change_keep_it_watched() {
        let (tx, rx) = watch::channel(false);
        let mut closing = Closing::new(rx);
        let (other, mut others) = tokio::sync::mpsc::unbounded_channel::<()>();
        let (ack, mut acks) = tokio::sync::mpsc::unbounded_channel::<()>();
        let waiter = tokio::spawn(async move {
            let mut woken_by_others = 0;
            loop {
                tokio::select! {
                    biased;
                    () = std::future::poll_fn(|cx| closing.poll_changed(cx)) => break,
                    Some(()) = others.recv() => {
                        woken_by_others += 1;
                        ack.send(()).unwrap();
                    }
                }
            }
            assert!(closing.now());
            woken_by_others
        });
        for _ in 0..5 {
            other.send(()).unwrap();
            acks.recv().await.unwrap();
        }
        tx.send(true).unwrap();
        assert_eq!(waiter.await.unwrap(), 5);
    }

    /// A sender that goes away counts as a change (as with `changed`).
    #[tokio::test]
    async fn a_dropped_sender_counts() {
        let (tx, rx) = watch::channel(false);
        let mut closing = Closing::new(rx);
        drop(tx);
        std::future::poll_fn(|cx| closing.poll_changed(cx)).await;
    }
}
