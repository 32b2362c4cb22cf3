//! Opening a stream from this side ([`Connection::open`], [`Connection::open_fields`]):
//! the session takes the stream and its OPEN, the connection registers the stream's
//! slot, and the OPEN is written as any command's frames are ([`Shared::after_command`]),
//! or, when it would be written at once and first anyway, straight into the write
//! half's buffer ([`Shared::outbox_for_open`]) and sent before the slot is made and
//! registered ([`Shared::write_open`]).

use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use localtunnels_core::{OpenError, RequestHead, StreamId, StreamKind};

use super::{timer_earlier, Connection, Shared, State};
use crate::conn_writer::Outbox;
use crate::stream::{StreamHandle, StreamSlot};

impl Shared {
    /// The write half for a command that writes its one frame straight into it (an
    /// OPEN: [`Connection::open_fields`]), when [`Self::after_command`] would write that
    /// frame at once anyway and nothing would go before it: outside the reader's turn,
    /// no stream in flight (the new one will be the only one), nothing queued (no
    /// frame, pong or dropped handle's leftovers: those go first, by the usual path)
    /// and the writer idle. `None` otherwise, or when another thread holds the socket.
    fn outbox_for_open(&self, state: &State) -> Option<MutexGuard<'_, Outbox>> {
        let session = &state.session;
        if self.turn.load(Ordering::SeqCst)
            || session.is_closed()
            || session.stream_count() != 0
            || self.has_output(state)
        {
            return None;
        }
        let mut out = self.out.try_lock().ok()?;
        (!out.busy() && !out.wire().is_closed()).then_some(out)
    }
}

impl Connection {
    /// Opens a stream towards the peer.
    pub fn open(&self, head: RequestHead, end: bool) -> Result<StreamHandle, OpenError> {
        let mut state = self.shared.lock();
        let kind = head.kind;
        let id = state.session.open(head, end)?;
        Ok(self.opened(state, id, kind))
    }

    /// The handle of the stream `id` the session just opened, its slot registered.
    #[inline]
    fn opened(&self, mut state: MutexGuard<'_, State>, id: StreamId, kind: StreamKind) -> StreamHandle {
        let (slot, handle) = StreamSlot::new(id, kind, self.shared.clone());
        state.slots.insert(id, slot);
        self.shared.after_command(state);
        handle
    }

    /// [`Connection::open`] of a request whose header fields `fields` writes straight
    /// into the OPEN ([`Session::open_fields`](localtunnels_core::Session::open_fields)),
    /// under the connection's lock.
    pub fn open_fields(
        &self,
        kind: StreamKind,
        method: &str,
        target: &[u8],
        end: bool,
        fields: impl FnOnce(&mut localtunnels_core::OpenFields<'_>),
    ) -> Result<StreamHandle, OpenError> {
        self.open_fields_within(usize::MAX, kind, method, target, end, fields).map_err(|e| match e {
            OpenWithinError::Open(e) => e,
            // Never: no session holds `usize::MAX` streams.
            OpenWithinError::Busy(n) => OpenError::TooManyStreams(u32::try_from(n).unwrap_or(u32::MAX)),
        })
    }

    /// [`Connection::open_fields`] unless the session has `max_streams` streams in
    /// flight or more ([`OpenWithinError::Busy`] with their count: nothing is written,
    /// `fields` is not called). The count is read under the lock the open takes anyway:
    /// a caller's limit checked by [`Connection::stream_count`] first took the lock
    /// twice (~0.04k instructions before the OPEN's send; docs/BENCHMARKS.md,
    /// twenty-sixth round).
    pub fn open_fields_within(
        &self,
        max_streams: usize,
        kind: StreamKind,
        method: &str,
        target: &[u8],
        end: bool,
        fields: impl FnOnce(&mut localtunnels_core::OpenFields<'_>),
    ) -> Result<StreamHandle, OpenWithinError> {
        let mut state = self.shared.lock();
        let in_flight = state.session.stream_count();
        if in_flight >= max_streams {
            return Err(OpenWithinError::Busy(in_flight));
        }
        let Some(mut out) = self.shared.outbox_for_open(&state) else {
            let id = state.session.open_fields(kind, method, target, end, fields)?;
            return Ok(self.opened(state, id, kind));
        };
        // The frame would be written at once, first: it is written straight into the
        // write half's buffer as its WebSocket message (no frame of its own, no queue,
        // no copy), then sent as `write_now` sends (docs/BENCHMARKS.md, nineteenth round).
        let session = &mut state.session;
        let id = out.wire().binary_built(|buf| session.open_fields_into(kind, method, target, end, fields, buf))?;
        let wake = timer_earlier(&state);
        let (handle, unfinished) = self.shared.write_open(state, out, id, kind);
        if unfinished || wake {
            self.shared.wake_writer.notify_one();
        }
        Ok(handle)
    }
}

/// Why [`Connection::open_fields_within`] opened no stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenWithinError {
    /// The session had this many streams in flight, the caller's limit or more.
    #[error("{0} streams in flight, at the limit")]
    Busy(usize),
    /// The session refused the open.
    #[error(transparent)]
    Open(#[from] OpenError),
}

impl Shared {
    /// [`Shared::write_filled`] for an OPEN written straight into `out`
    /// ([`Connection::open_fields`]), its stream's slot made and registered after the
    /// write: the frame goes out without waiting for the slot's allocation and the
    /// map's insert (~0.18k instructions on a request's critical path). The write is
    /// made under the state lock (which `write_filled` lets go first), so that no
    /// reader, on another thread, dispatches the stream's first event before its slot
    /// is there; the lock is held only here, with no other stream in flight (the
    /// outbox is handed out only then), so no other stream's command waits for it.
    /// The stream's handle, and true when the writer must finish the write.
    fn write_open(
        self: &Arc<Self>,
        mut state: MutexGuard<'_, State>,
        mut out: MutexGuard<'_, Outbox>,
        id: StreamId,
        kind: StreamKind,
    ) -> (StreamHandle, bool) {
        self.pump(&mut state);
        let more = state.session.has_transmit();
        let written = out.write_without_waiting();
        let (slot, handle) = StreamSlot::new(id, kind, self.clone());
        state.slots.insert(id, slot);
        if state.session.has_finished() {
            state.session.remove_finished();
        }
        drop(state);
        // The sent frame's fields are freed once it is on its way.
        out.drop_spent();
        (handle, !written || more)
    }
}
