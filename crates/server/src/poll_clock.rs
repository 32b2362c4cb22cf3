//! One clock reading per poll of an HTTP/1 visitor connection's task.
//!
//! A request's two turns on its visitor connection each read the clock several times
//! within microseconds: the request's turn for the visitor socket's idle deadline (the
//! read), the tunnel socket's (the OPEN's write) and the request's start; the response's
//! turn for the idle deadline again (the write), the request's duration and the next
//! head's deadline. Each reading is a clock read and an `Instant`'s arithmetic (~0.03-0.04k
//! instructions; docs/BENCHMARKS.md, eighteenth round). Inside [`polled`] the first
//! [`now`] of a poll reads the clock and the others in that poll take its reading: a
//! deadline counted from it is at most the poll's length early (microseconds; the
//! timeouts are seconds). Outside one (hyper's connections, the tunnel's reader task)
//! [`now`] reads the clock each time. The clock is tokio's, so that a test's paused
//! clock governs it. The state is thread-local, as the driver's `turn_clock`: a poll
//! runs on one thread and polls nothing of another task.

use std::cell::Cell;
use std::future::Future;

use tokio::time::Instant;

thread_local! {
    /// `None` outside a [`polled`] poll; inside one, its reading once taken.
    static NOW: Cell<Option<Option<Instant>>> = const { Cell::new(None) };
}

/// The clock now: inside a [`polled`] poll, the poll's one reading.
pub(crate) fn now() -> Instant {
    match NOW.get() {
        Some(Some(at)) => at,
        Some(None) => {
            let at = Instant::now();
            NOW.set(Some(Some(at)));
            at
        }
        None => Instant::now(),
    }
}

/// `fut`, each poll of it one reading of the clock for [`now`].
pub(crate) fn polled<F: Future>(fut: F) -> Polled<F> {
    Polled { fut }
}

pin_project_lite::pin_project! {
    /// [`polled`]'s future: a struct, not an `async fn`, because an `async fn` keeps its
    /// argument beside the future it pins (rust-lang/rust#62958): a visitor connection's
    /// whole `serve` future twice in the task, +8 KiB per idle tunnel (whose control
    /// session runs inside it; docs/BENCHMARKS.md, eighteenth round's merged code).
    pub(crate) struct Polled<F> {
        #[pin]
        fut: F,
    }
}

impl<F: Future> Future for Polled<F> {
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        let _scope = Scope::enter();
        self.project().fut.poll(cx)
    }
}

struct Scope(Option<Option<Instant>>);

impl Scope {
    fn enter() -> Scope {
        Scope(NOW.replace(Some(None)))
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        NOW.set(self.0);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Inside a poll, one reading; each poll its own; outside, the clock itself.
    #[tokio::test(start_paused = true)]
    async fn a_poll_reads_the_clock_once() {
        let start = now();
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(now() - start, Duration::from_secs(1), "outside a poll: the clock");
        let (first, second) = polled(async {
            let first = now();
            // The paused clock advanced inside the same poll (`advance` polled once,
            // its yield left pending): the poll keeps its reading.
            let mut advance = std::pin::pin!(tokio::time::advance(Duration::from_secs(2)));
            std::future::poll_fn(|cx| {
                let _ = advance.as_mut().poll(cx);
                std::task::Poll::Ready(())
            })
            .await;
            let same = now();
            assert_eq!(same, first, "one reading per poll");
            tokio::task::yield_now().await;
            (first, now())
        })
        .await;
        assert_eq!(first - start, Duration::from_secs(1));
        assert_eq!(second - first, Duration::from_secs(2), "the next poll reads the clock again");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(now() - start, Duration::from_secs(4), "forgotten after the poll");
    }

    /// A panic inside a poll leaves no reading behind.
    #[test]
    fn a_panicking_poll_forgets_its_reading() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build();
        let rt = rt.expect("a runtime");
        rt.block_on(async {
            let panicked = tokio::spawn(polled(async {
                now();
                panic!("a request's handler panicked");
            }));
            assert!(panicked.await.is_err());
            assert_eq!(NOW.get(), None);
        });
    }
}
