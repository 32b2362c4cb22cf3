//! [`select`]: two futures run in one task (a WebSocket bridge's two halves), each
//! polled only when a waker it was given fired.
//!
//! `futures_util::future::select` hands both futures the task's own waker, so every
//! wake-up polls both: a bridge woken by a message from the tunnel also polled its
//! socket (a read that finds nothing) and the other way round. Here each half gets a
//! waker of its own, made once per bridge, that marks the half and wakes the task;
//! a poll skips the half that was not marked (docs/BENCHMARKS.md).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::future::Either;

/// What the task last polled the pair with, woken by either half.
#[derive(Default)]
struct Task(Mutex<Option<Waker>>);

impl Task {
    /// Keeps `waker` (cloned only when it is another task's or another waker).
    fn register(&self, waker: &Waker) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some(kept) if kept.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    fn wake(&self) {
        let slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(waker) = slot.as_ref() {
            waker.wake_by_ref();
        }
    }
}

/// One half's waker: marks the half, then wakes the task.
struct Half {
    woken: AtomicBool,
    task: Arc<Task>,
}

impl Wake for Half {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// A half: its future (until it completes), its mark and its waker.
struct Side<F> {
    future: Option<F>,
    half: Arc<Half>,
    waker: Waker,
}

impl<F: Future + Unpin> Side<F> {
    fn new(future: F, task: &Arc<Task>) -> Self {
        // Marked: the first poll polls both.
        let half = Arc::new(Half { woken: AtomicBool::new(true), task: task.clone() });
        Side { future: Some(future), waker: Waker::from(half.clone()), half }
    }

    /// Polls the future if its waker fired since its last poll.
    fn poll(&mut self) -> Poll<F::Output> {
        if !self.half.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let Some(future) = self.future.as_mut() else { return Poll::Pending };
        Pin::new(future).poll(&mut Context::from_waker(&self.waker))
    }
}

/// Waits for the first of `a` and `b`, as `futures_util::future::select` does (the
/// same output: the first result and the other future, not finished), polling each
/// only when it was woken.
pub fn select<A, B>(a: A, b: B) -> Select<A, B>
where
    A: Future + Unpin,
    B: Future + Unpin,
{
    let task = Arc::new(Task::default());
    Select { a: Side::new(a, &task), b: Side::new(b, &task), task }
}

/// The future of [`select`].
pub struct Select<A, B> {
    a: Side<A>,
    b: Side<B>,
    task: Arc<Task>,
}

impl<A, B> Future for Select<A, B>
where
    A: Future + Unpin,
    B: Future + Unpin,
{
    type Output = Either<(A::Output, B), (B::Output, A)>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        // Before either half runs: a half that wakes itself while polled is seen.
        this.task.register(cx.waker());
        if let Poll::Ready(out) = this.a.poll() {
            if let Some(b) = this.b.future.take() {
                return Poll::Ready(Either::Left((out, b)));
            }
        }
        if let Poll::Ready(out) = this.b.poll() {
            if let Some(a) = this.a.future.take() {
                return Poll::Ready(Either::Right((out, a)));
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its polls; ready once `ready` is set, woken through the waker it kept.
    struct Probe {
        polls: Arc<AtomicUsize>,
        ready: Arc<AtomicBool>,
        waker: Arc<Mutex<Option<Waker>>>,
    }

    impl Future for Probe {
        type Output = usize;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            let polls = self.polls.fetch_add(1, Ordering::SeqCst) + 1;
            if self.ready.load(Ordering::SeqCst) {
                return Poll::Ready(polls);
            }
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    fn probe() -> Probe {
        Probe { polls: Arc::default(), ready: Arc::default(), waker: Arc::default() }
    }

    #[tokio::test]
    async fn only_the_woken_half_is_polled_and_the_first_ready_wins() {
        let (a, b) = (probe(), probe());
        let (a_polls, a_ready, a_waker) = (a.polls.clone(), a.ready.clone(), a.waker.clone());
        let b_polls = b.polls.clone();
        let mut both = select(a, b);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut both).poll(&mut cx).is_pending());
        assert_eq!((a_polls.load(Ordering::SeqCst), b_polls.load(Ordering::SeqCst)), (1, 1));
        // Polled again without a wake: neither half runs.
        assert!(Pin::new(&mut both).poll(&mut cx).is_pending());
        assert_eq!((a_polls.load(Ordering::SeqCst), b_polls.load(Ordering::SeqCst)), (1, 1));
        a_ready.store(true, Ordering::SeqCst);
        a_waker.lock().unwrap().take().unwrap().wake();
        match Pin::new(&mut both).poll(&mut cx) {
            Poll::Ready(Either::Left((polls, _b))) => assert_eq!(polls, 2),
            _ => panic!("a was ready"),
        }
        assert_eq!(b_polls.load(Ordering::SeqCst), 1, "b was not woken");
    }

    #[tokio::test]
    async fn a_wake_reaches_the_task() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u8>(1);
        let never = std::future::pending::<u8>();
        let recv = Box::pin(async move { rx.recv().await });
        let send = tokio::spawn(async move { tx.send(7).await });
        let mut never = std::pin::pin!(never);
        match select(recv, never.as_mut()).await {
            Either::Left((got, _)) => assert_eq!(got, Some(7)),
            Either::Right(_) => panic!("pending never ends"),
        }
        send.await.unwrap().unwrap();
    }
}
