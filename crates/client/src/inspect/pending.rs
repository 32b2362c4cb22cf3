//! Captures filed after the write of what they record, and the wait that keeps them
//! invisible as such: an API request that comes after a response sees its capture.
//!
//! A small exchange's response is filed after its frames are written
//! (`localtunnels_driver::after_write`: the capture then overlaps the server's and the
//! visitor's work instead of delaying them). A visitor who got the response, and then
//! asks the inspector, must still find it filed, even when the capture's thread was
//! preempted right after the write (the API is served on another thread of a
//! multi-threaded runtime). So each deferred capture holds the inspector from before
//! the write until it is filed, and a reader waits for the captures held when it came:
//! two counters, as read-copy-update's grace periods work. New holds count in the
//! current one; a reader makes the other one current and waits for the first to drain.
//! A hold is two atomic operations; nothing waits on the capture's side.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use localtunnels_core::inspect::EntryId;
use localtunnels_core::SentBlock;
use tokio::sync::Notify;

use super::Inspector;

/// Longest a reader waits for held captures: each is filed within the turn that wrote
/// its response, so this only bounds the wait if one were lost to a bug.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// The counters of held captures, shared by the inspector's clones.
#[derive(Debug, Default)]
pub(super) struct Holds {
    /// Which of `held` new holds count in (its low bit).
    current: AtomicUsize,
    held: [AtomicUsize; 2],
    /// A reader waits for a count to drain: the hold that drains it notifies.
    waiting: AtomicBool,
    drained: Notify,
    /// One reader waits at a time (a second one comes after the first's wait).
    readers: tokio::sync::Mutex<()>,
}

impl Holds {
    /// Holds readers back until [`Self::release`] (given what this returns).
    pub(super) fn hold(&self) -> usize {
        let which = self.current.load(Ordering::SeqCst) & 1;
        self.held[which].fetch_add(1, Ordering::SeqCst);
        which
    }

    pub(super) fn release(&self, which: usize) {
        if self.held[which].fetch_sub(1, Ordering::SeqCst) == 1 && self.waiting.load(Ordering::SeqCst) {
            self.drained.notify_waiters();
        }
    }

    /// Waits until every capture held when it was called is filed (at most [`MAX_WAIT`]).
    pub(super) async fn settled(&self) {
        let _one = self.readers.lock().await;
        let old = self.current.fetch_add(1, Ordering::SeqCst) & 1;
        let drain = async {
            loop {
                let notified = self.drained.notified();
                let mut notified = std::pin::pin!(notified);
                notified.as_mut().enable();
                self.waiting.store(true, Ordering::SeqCst);
                if self.held[old].load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        if localtunnels_driver::timers::timeout(MAX_WAIT, drain).await.is_err() {
            tracing::warn!("the inspector answered before a capture was filed");
        }
        self.waiting.store(false, Ordering::SeqCst);
    }
}

/// A response that came back whole (see [`Inspector::respond_whole`]): its status, its
/// head's fields (once the exchange gives them, [`Self::head`]), its body and end, filed
/// in one lock when this is dropped, which releases the hold.
#[derive(Debug)]
pub(crate) struct Filing<'a> {
    inspector: &'a Inspector,
    id: EntryId,
    body: &'a [u8],
    /// The hold's counter (0 or 1): a byte, as `status` is two, so that the two share
    /// the padding after `fields` (the stream's future keeps this across the write:
    /// see `http::tests`' size guard).
    which: u8,
    /// The RESPONSE frame's fields, shared with the frame (a reference count): read
    /// after the write, so the head's copy into the store is not on the critical path.
    /// Empty (no field) until given: an exchange that never got to send its head
    /// would file its status alone.
    fields: SentBlock,
    status: u16,
}

impl<'a> Filing<'a> {
    pub(super) fn new(inspector: &'a Inspector, id: EntryId, status: u16, body: &'a [u8], which: usize) -> Self {
        Filing { inspector, id, body, which: u8::from(which == 1), fields: SentBlock::default(), status }
    }

    /// Where the head's fields go, as the RESPONSE frame carried them
    /// (`StreamSender::respond_block_kept` writes them there).
    pub(crate) fn fields(&mut self) -> &mut SentBlock {
        &mut self.fields
    }
}

impl Drop for Filing<'_> {
    fn drop(&mut self) {
        let (id, status, body) = (self.id, self.status, self.body);
        let fields = &self.fields;
        self.inspector.update(id, |s, now| s.respond_whole(id, now, status, fields, body));
        self.inspector.shared.holds.release(usize::from(self.which));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reader_waits_for_the_holds_before_it_and_not_for_later_ones() {
        let holds = std::sync::Arc::new(Holds::default());
        // Nothing held: no wait.
        holds.settled().await;
        let first = holds.hold();
        let reader = tokio::spawn({
            let holds = holds.clone();
            async move { holds.settled().await }
        });
        // The reader made the other counter current: this hold does not keep it.
        while holds.current.load(Ordering::SeqCst) & 1 == first {
            tokio::task::yield_now().await;
        }
        let later = holds.hold();
        assert_ne!(later, first);
        tokio::task::yield_now().await;
        assert!(!reader.is_finished());
        holds.release(first);
        reader.await.unwrap();
        holds.release(later);
        holds.settled().await;
    }
}
