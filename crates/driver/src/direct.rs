//! A response written to its visitor's socket from the connection's reader turn.
//!
//! The usual small response comes in one read: its RESPONSE and its DATA(end) in the
//! same WebSocket message. Delivered as events, each wakes the stream's receiver (the
//! server's visitor task), which then writes the head and the body: a task hand-off
//! and a second poll of the visitor's exchange per request. A receiver that waits for
//! nothing but that response can instead lend the stream a [`DirectWrite`]
//! ([`crate::StreamReceiver::offer_direct`]); the reader's turn then hands such a pair
//! to it (`Shared::pump`), which writes both to the socket without waiting, and the
//! receiver gets one [`crate::StreamEvent::Written`] in their place, queued without a
//! wake-up: it reads it when it next runs (the visitor's next request, usually).
//!
//! The rules:
//! - Only a RESPONSE head with a body to come whose stream's DATA(end) follows in the
//!   same pump of the session's events is offered: the head is held ([`HeldHead`])
//!   until its body's end comes (a batch of responses has its heads before their
//!   bodies). Another event of its stream first, or the pump's end, lets the head go
//!   as an event, as without an offer. A head that ends the stream is delivered as
//!   before, and the offer stays until the receiver takes it back.
//! - The offer is taken by the first head with a body: it is used once.
//! - [`DirectWrite::write_whole`] never waits: a write the socket does not take whole
//!   at once gives the rest back ([`Direct::Partial`]) for the receiver to write; one
//!   that writes nothing declines ([`Direct::Declined`]), and the pair is then
//!   delivered as events, as without an offer.
//! - The body's bytes are granted back to the peer at once when written (the receiver
//!   never sees them), as the receiver would after its write.
//! - [`crate::StreamEvent::Written`] wakes the receiver only when it has work: it took
//!   its offer back (it waits for the event), or the write left a rest to write.
//! - A receiver may hand its handles to its [`DirectWrite`] while it sleeps past the
//!   response, and learn of the write from it instead of a `Written`
//!   ([`crate::StreamReceiver::offer_direct_waking`]): [`DirectWrite::retired`] then
//!   lets the handles go in the reader's turn.

use std::sync::Arc;

use bytes::Bytes;
use localtunnels_core::{Event, ReceivedBlock, StreamId};

use crate::conn::{Shared, State};
use crate::stream::{StreamEvent, StreamSlot};

/// What [`DirectWrite::write_whole`] did.
#[derive(Debug)]
pub enum Direct {
    /// Head and body were written whole.
    Written,
    /// Nothing was written (a head it does not take, a full socket, an error): the
    /// response goes to the receiver as events.
    Declined,
    /// Part was written; these bytes are the rest, for the receiver to write.
    Partial(Bytes),
}

/// A receiver's socket, written from the connection's reader turn (see the module
/// documentation for when).
pub trait DirectWrite: Send + Sync {
    /// Writes the response of `status`, its fields `block` and its whole body `body`,
    /// without waiting.
    fn write_whole(&self, status: u16, block: &ReceivedBlock, body: &Bytes) -> Direct;

    /// Called after a [`Direct::Written`] or [`Direct::Partial`], once the stream's
    /// slot is retired (its [`crate::StreamEvent::Written`] queued, for a receiver that wants one): the stream is over
    /// both ways, so a receiver's handles this holds may be dropped here, in the
    /// reader's turn, without taking the connection's lock.
    fn retired(&self) {}
}

/// A response head held in a pump of the session's events for its body's end, with
/// the receiver's socket it may be written to.
pub(crate) struct HeldHead {
    pub(crate) id: StreamId,
    pub(crate) status: u16,
    pub(crate) block: ReceivedBlock,
    pub(crate) direct: Arc<dyn DirectWrite>,
}

impl HeldHead {
    /// The head as the event it came as, to dispatch after all.
    pub(crate) fn event(self) -> Event {
        Event::ResponseBlock { id: self.id, status: self.status, block: self.block, end: false }
    }
}

/// The reader's pump of the session's events, for held heads ([`Shared::pump`] calls
/// these only while a head is held or one comes).
impl Shared {
    /// [`Shared::pump`]'s step for a response head with a body to come, or any event while
    /// heads are held for their bodies ([`crate::direct`]).
    pub(crate) fn pump_held(self: &Arc<Self>, state: &mut State, event: Event) {
        match event {
            Event::ResponseBlock { id, status, block, end: false } => self.response_block(state, id, status, block),
            Event::Data { id, data, end: true } => self.body_end(state, id, data),
            event => {
                self.let_go_held(state, event.stream_id());
                self.dispatch(state, event);
            }
        }
    }

    /// A response head with a body to come: held for its body's end in this pump when
    /// the receiver offered its socket ([`crate::direct`]), else dispatched.
    fn response_block(self: &Arc<Self>, state: &mut State, id: StreamId, status: u16, block: ReceivedBlock) {
        match state.slots.get(&id).and_then(StreamSlot::take_direct) {
            Some(direct) => state.held.push(HeldHead { id, status, block, direct }),
            None => self.dispatch(state, Event::ResponseBlock { id, status, block, end: false }),
        }
    }

    /// A body's end: with its held head, written to the receiver's socket at once if
    /// it takes it ([`crate::direct`]), else both dispatched.
    fn body_end(self: &Arc<Self>, state: &mut State, id: StreamId, data: Bytes) {
        let Some(i) = state.held.iter().position(|h| h.id == id) else {
            return self.dispatch(state, Event::Data { id, data, end: true });
        };
        let head = state.held.swap_remove(i);
        let rest = match head.direct.write_whole(head.status, &head.block, &data) {
            Direct::Written => Bytes::new(),
            Direct::Partial(rest) => rest,
            Direct::Declined => {
                self.dispatch(state, head.event());
                return self.dispatch(state, Event::Data { id, data, end: true });
            }
        };
        // The body is on its way to the visitor: its credit goes back now.
        state.session.release(id, data.len());
        if let Some(slot) = state.slots.remove(&id) {
            slot.retire_written(StreamEvent::Written { status: head.status, rest });
        }
        head.direct.retired();
    }

    /// Dispatches the held heads of stream `only` (all of them for `None`): another
    /// event of its stream comes, or the pump ends.
    pub(crate) fn let_go_held(self: &Arc<Self>, state: &mut State, only: Option<StreamId>) {
        let mut i = 0;
        while i < state.held.len() {
            if only.is_none_or(|id| state.held[i].id == id) {
                let head = state.held.swap_remove(i);
                self.dispatch(state, head.event());
            } else {
                i += 1;
            }
        }
    }
}
