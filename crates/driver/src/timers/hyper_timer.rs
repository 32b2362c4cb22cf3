//! hyper's timer (`header_read_timeout`, HTTP/2 keep-alive) on this module's sleeps,
//! so hyper's connections run on a lean runtime too (hyper-util's `TokioTimer` uses
//! tokio's timers, which a lean runtime does not have).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::{sleep, sleep_until, Instant, Sleep};

/// A [`hyper::rt::Timer`] whose sleeps are [`Sleep`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct HyperTimer;

impl hyper::rt::Timer for HyperTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(sleep(duration)))
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(sleep_until(Instant::from_std(deadline))))
    }

    fn now(&self) -> std::time::Instant {
        // tokio's clock, so that a test's paused clock governs this timer too.
        Instant::now().into_std()
    }
}

struct HyperSleep(Sleep);

impl Future for HyperSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl hyper::rt::Sleep for HyperSleep {}
