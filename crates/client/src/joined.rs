//! The tunnel's further control connections (`ClientConfig::connections`).
//!
//! The first connection claims the name and lives in `client.rs`. Each further one
//! runs on a thread of its own with a current-thread runtime and its own origin
//! connections, and joins the tunnel (`Hello::join`, proven by the first one's
//! reconnect token): the server then hands each new request to the connection with
//! the fewest in flight. A request is served start to end on the thread whose
//! connection carried it, so no request crosses threads: the work of a busy tunnel
//! spreads over several CPUs without a wake-up between threads per request (what a
//! multi-threaded runtime would cost, docs/BENCHMARKS.md).
//!
//! A joined connection follows the first: it joins while the first one's session is
//! up, and when that session ends (the server then closes the joined ones too) it
//! waits for the next and joins again.

use std::sync::Arc;
use std::time::Duration;

use localtunnels_core::RefuseReason;
use localtunnels_driver::timers::{self, CurrentThread};
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

use crate::client::{backoff, handshake_within, serve, ConnectError};
use crate::config::ServerAddr;
use crate::ctx::Ctx;

/// What a joining connection needs of the first one's session: the server it is on,
/// the tunnel's name and its reconnect token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FirstUp {
    pub(crate) server: ServerAddr,
    pub(crate) name: String,
    pub(crate) token: String,
}

/// The running joined connections.
#[derive(Debug)]
pub(crate) struct Joined {
    ctxs: Vec<Arc<Ctx>>,
    done: Vec<oneshot::Receiver<()>>,
    close: watch::Sender<bool>,
}

impl Joined {
    /// Starts `n` joined connections that follow `first` (`None` while the first
    /// connection's session is down; dropped when it gives up for good).
    pub(crate) fn start(ctx: &Ctx, n: usize, first: &watch::Receiver<Option<FirstUp>>) -> Joined {
        let (close, _) = watch::channel(false);
        let mut joined = Joined { ctxs: Vec::new(), done: Vec::new(), close };
        for index in 1..=n {
            let ctx = Arc::new(ctx.for_joined());
            let (done_tx, done_rx) = oneshot::channel();
            let (run_ctx, first, close) = (ctx.clone(), first.clone(), joined.close.subscribe());
            let spawned = std::thread::Builder::new().name(format!("localtunnels-conn-{index}")).spawn(move || {
                // Lean (no tokio time driver): nothing on a client's connection brings its own
                // tokio timers (localtunnels_driver::timers).
                match CurrentThread::new(true) {
                    Ok(rt) => rt.block_on(follow(run_ctx, index, first, close)),
                    Err(e) => warn!("connection {index}: cannot start its runtime: {e}"),
                }
                let _ = done_tx.send(());
            });
            match spawned {
                Ok(_) => {
                    joined.ctxs.push(ctx);
                    joined.done.push(done_rx);
                }
                Err(e) => warn!("connection {index}: cannot start its thread: {e}"),
            }
        }
        joined
    }

    /// Requests (and WebSockets) in flight through the joined connections.
    pub(crate) fn in_flight(&self) -> usize {
        self.ctxs.iter().map(|c| c.in_flight()).sum()
    }

    /// Closes the joined connections as the first one closes (no new requests, those
    /// in flight finish) and waits until their threads are done.
    pub(crate) async fn close(self) {
        let _ = self.close.send(true);
        for done in self.done {
            let _ = done.await;
        }
    }
}

/// Joins the tunnel whenever the first connection is up, serves until the joined
/// session ends, and again, until closed.
async fn follow(
    ctx: Arc<Ctx>,
    index: usize,
    mut first: watch::Receiver<Option<FirstUp>>,
    mut close: watch::Receiver<bool>,
) {
    let mut attempt = 0;
    loop {
        let up = loop {
            if *close.borrow() {
                return;
            }
            if let Some(up) = first.borrow_and_update().clone() {
                break up;
            }
            tokio::select! {
                changed = first.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = close.changed() => {}
            }
        };
        let attempt_joined = tokio::select! {
            r = handshake_within(&ctx, &up.server, up.name.clone(), up.token.clone(), true) => r,
            _ = close.changed() => return,
        };
        match attempt_joined {
            Ok((conn, mut events, _)) => {
                attempt = 0;
                info!("connection {index} joined the tunnel");
                let (reason, _) = serve(&ctx, &conn, &mut events, &mut close).await;
                if *close.borrow() {
                    return;
                }
                debug!("connection {index} down: {reason}");
            }
            // The server allows fewer connections than asked for: go on with those.
            Err(ConnectError::Refused { reason: RefuseReason::LimitReached, message }) => {
                warn!("connection {index} not joined: {message}");
                return;
            }
            Err(e) => {
                attempt += 1;
                debug!("connection {index} could not join (attempt {attempt}): {e}");
            }
        }
        // Before the next try: a backoff that grows with the failures in a row, or the
        // first connection's next session, whichever comes first.
        let wait = if attempt == 0 { Duration::ZERO } else { backoff(attempt, ctx.config.max_backoff) };
        tokio::select! {
            _ = timers::sleep(wait) => {}
            changed = first.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = close.changed() => return,
        }
    }
}
