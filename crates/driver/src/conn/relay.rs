//! A WebSocket message a bridge relays into the tunnel written straight into the
//! write half's buffer ([`Shared::relay_direct`]), when it would be written at once
//! and alone anyway: the session's `send_ws_into` instead of its queue.

use std::sync::{Arc, MutexGuard};

use bytes::Bytes;
use localtunnels_core::{StreamError, StreamId, DATA_OVERHEAD};

use super::{timer_earlier, Shared, State};
use crate::ws_codec::COPY_BELOW;

impl Shared {
    /// Sends the whole WebSocket message `data` on stream `id` as
    /// [`StreamSender::try_send_ws`](crate::StreamSender::try_send_ws) does, written
    /// straight into the write half's buffer as its one binary message, then written as
    /// `write_now` writes: the same frame, written when the queued path
    /// (`Shared::after_relay`) would write it at once, first and alone: the session
    /// open, its stream the only one in flight, nothing queued before it (no frame,
    /// pong or dropped handle's leftovers), the writer idle, and the whole message
    /// going in one frame now. Saves the chunk's queueing and taking back, the ring,
    /// the stream's second look-up and the output's moves (docs/BENCHMARKS.md,
    /// twenty-sixth round, srvmsg). A large message (`COPY_BELOW`) keeps the queued
    /// path, which writes its payload as it is instead of copying it. `Err(state)`
    /// when it was not written (nothing changed): queue it as before.
    pub(crate) fn relay_direct<'a>(
        self: &Arc<Self>,
        mut state: MutexGuard<'a, State>,
        id: StreamId,
        binary: bool,
        data: &Bytes,
    ) -> Result<Result<usize, StreamError>, MutexGuard<'a, State>> {
        let session = &state.session;
        if data.len() >= COPY_BELOW
            || session.is_closed()
            || session.stream_count() > 1
            || state.ws_pong.is_some()
            || self.has_dropped.load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(state);
        }
        let Ok(mut out) = self.out.try_lock() else { return Err(state) };
        if out.busy() {
            return Err(state);
        }
        let session = &mut state.session;
        let mut refused = None;
        let written =
            out.wire().binary_if(DATA_OVERHEAD + data.len(), |buf| match session.send_ws_into(id, binary, data, buf) {
                Ok(w) => w,
                Err(e) => {
                    refused = Some(e);
                    false
                }
            });
        if let Some(e) = refused {
            drop(out);
            // As the queued path: its command's end runs after an error too.
            self.after_relay(state);
            return Ok(Err(e));
        }
        if !written {
            return Err(state);
        }
        let wake = timer_earlier(&state) | self.write_filled(state, out);
        if wake {
            self.wake_writer.notify_one();
        }
        Ok(Ok(data.len()))
    }
}
