//! Sharded serving ([`ServerConfig::shards`](crate::ServerConfig::shards)): N threads,
//! each running its own current-thread tokio runtime, and the accepted connections
//! handed to them in turn. Everything a connection starts (its visitor task, a
//! control connection's reader and writer) runs on its shard's thread, and a visitor's
//! request opens its stream on a connection of its tunnel that lives on the same shard
//! when there is one ([`crate::tunnel::Tunnel::open`]): such a request wakes no task
//! on another thread. Registry, counters and tunnels are shared (they are `Sync`).
//!
//! Why: with one multi-threaded runtime a task woken by another thread's I/O (the
//! visitor's read on one worker, the tunnel's write on another) costs a futex wake and
//! loses batching; `--threads 2` measured slower than one worker (docs/BENCHMARKS.md).
//! Shards keep each request on one thread and still use every core.

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

use localtunnels_driver::timers::{self, CurrentThread, Instant};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    /// The shard this thread runs, `None` on every other thread.
    static CURRENT: Cell<Option<u16>> = const { Cell::new(None) };
}

/// How long a shard, told to stop, waits for its tasks to end (a tunnel's close frame
/// on its way out) before its runtime drops what is left.
const DRAIN: Duration = Duration::from_secs(1);

/// The shard the calling thread runs, `None` outside sharded serving (then every
/// connection counts as local to every caller).
pub(crate) fn current() -> Option<u16> {
    CURRENT.with(Cell::get)
}

/// The running shards. Dropping them tells every shard to stop: each lets its tasks
/// end for up to [`DRAIN`], then drops its runtime and its thread ends.
#[derive(Debug)]
pub(crate) struct Shards {
    handles: Vec<Handle>,
    next: usize,
    _stop: Vec<oneshot::Sender<()>>,
}

impl Shards {
    /// Starts `n` shards (at least one, at most `u16::MAX`), each on its own thread;
    /// `lean`: their runtimes without tokio's time driver ([`CurrentThread`]), only when
    /// the configuration has nothing that brings its own tokio timers.
    pub(crate) fn start(n: usize, lean: bool) -> std::io::Result<Shards> {
        let n = n.clamp(1, usize::from(u16::MAX));
        let (mut handles, mut stops) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            let runtime = CurrentThread::new(lean)?;
            handles.push(runtime.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            let id = u16::try_from(i).unwrap_or(u16::MAX);
            std::thread::Builder::new().name(format!("shard-{i}")).spawn(move || {
                CURRENT.with(|c| c.set(Some(id)));
                runtime.block_on(async {
                    let _ = stopped.await;
                    drain(&Handle::current()).await;
                });
            })?;
        }
        Ok(Shards { handles, next: 0, _stop: stops })
    }

    /// Runs `task` on the next shard in turn: consecutive connections go to different
    /// shards (a client's second control connection, opened right after its first,
    /// lands on another shard than the first when nothing came in between).
    pub(crate) fn spawn<F>(&mut self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let shard = &self.handles[self.next % self.handles.len()];
        self.next = self.next.wrapping_add(1);
        shard.spawn(task);
    }
}

/// Waits until `shard` runs no task but this one, for up to [`DRAIN`].
async fn drain(shard: &Handle) {
    let deadline = Instant::now() + DRAIN;
    while shard.metrics().num_alive_tasks() > 0 && Instant::now() < deadline {
        timers::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn connections_go_to_each_shard_in_turn_and_know_their_shard() {
        let mut shards = Shards::start(2, true).unwrap();
        let (tx, rx) = mpsc::channel();
        for _ in 0..4 {
            let tx = tx.clone();
            shards.spawn(async move {
                let _ = tx.send(current());
            });
        }
        let seen: Vec<_> = (0..4).map(|_| rx.recv_timeout(Duration::from_secs(30)).unwrap()).collect();
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(sorted, [Some(0), Some(0), Some(1), Some(1)], "{seen:?}");
        assert_eq!(current(), None, "a thread that is no shard");
    }

    #[test]
    fn dropped_shards_end_their_threads() {
        let mut shards = Shards::start(1, true).unwrap();
        let (tx, rx) = mpsc::channel::<()>();
        // A task that never ends holds `tx` until its runtime is dropped.
        shards.spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        drop(shards);
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Err(mpsc::RecvTimeoutError::Disconnected));
    }
}
