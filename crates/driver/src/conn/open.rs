//! Opening a stream from this side ([`Connection::open`], [`Connection::open_fields`]):
//! the session takes the stream and its OPEN, the connection registers the stream's
//! slot, and the OPEN is written as any command's frames are ([`Shared::after_command`]),
//! or, when it would be written at once and first anyway, straight into the write
//! half's buffer ([`Shared::outbox_for_open`]).

use std::sync::atomic::Ordering;
use std::sync::MutexGuard;

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
        let mut state = self.shared.lock();
        let Some(mut out) = self.shared.outbox_for_open(&state) else {
            let id = state.session.open_fields(kind, method, target, end, fields)?;
            return Ok(self.opened(state, id, kind));
        };
        // The frame would be written at once, first: it is written straight into the
        // write half's buffer as its WebSocket message (no frame of its own, no queue,
        // no copy), then sent as `write_now` sends (docs/BENCHMARKS.md, nineteenth round).
        let session = &mut state.session;
        let id = out.wire().binary_built(|buf| session.open_fields_into(kind, method, target, end, fields, buf))?;
        let (slot, handle) = StreamSlot::new(id, kind, self.shared.clone());
        state.slots.insert(id, slot);
        let wake = timer_earlier(&state);
        if self.shared.write_filled(state, out) || wake {
            self.shared.wake_writer.notify_one();
        }
        Ok(handle)
    }
}
