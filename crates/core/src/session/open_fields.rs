//! Opening a stream whose OPEN its sender writes field by field
//! ([`Session::open_fields`]): the checks and the bookkeeping of [`Session::open`],
//! the frame queued already encoded, or written straight into the driver's own
//! buffer ([`Session::open_fields_into`]).

use bytes::BytesMut;

use crate::error::OpenError;
use crate::frame::{set_id, OpenFields, StreamId, StreamKind};

use super::transmit::Output;
use super::Session;

/// Bytes reserved in the buffer OPENs are written into when it has less than
/// [`OPEN_ROOM`] left (a usual request head's OPEN is ~0.1-0.6 KiB; a larger one
/// reserves what it needs as it is written).
const OPEN_CHUNK: usize = 4096;
const OPEN_ROOM: usize = 768;

impl Session {
    /// [`Session::open`] of a request whose header fields `fields` writes, in order,
    /// straight into the OPEN's header block (as the session's field coding says):
    /// the same frame, the same checks and errors, without a [`RequestHead`]'s list
    /// built, walked and dropped in between. `fields` is called only once the session
    /// takes a new stream. `target` is the request target's bytes: text on the wire, so
    /// bytes that are not UTF-8 are refused (`InvalidHead`) as a bad field is.
    ///
    /// [`RequestHead`]: crate::RequestHead
    pub fn open_fields(
        &mut self,
        kind: StreamKind,
        method: &str,
        target: &[u8],
        end: bool,
        fields: impl FnOnce(&mut OpenFields<'_>),
    ) -> Result<StreamId, OpenError> {
        // The buffer is the session's, reused: taken out for the write (its allocation
        // stays with it), put back after.
        let mut buf = std::mem::take(&mut self.open_buf);
        buf.clear();
        // Room for several OPENs in one allocation: each frame is split off the buffer
        // and shares it until it is sent, so a buffer sized for one OPEN (what `start`
        // reserves) was allocated anew, and made shared, for nearly every OPEN while
        // the last one waited to be sent: two allocations and two frees per request at
        // 32 connections (~0.2k instructions; docs/BENCHMARKS.md, twenty-fifth round,
        // alloc32). Once all its frames were sent the buffer is taken back whole; it is
        // let go when the session's last stream goes (`remove_stream`).
        if buf.capacity() < OPEN_ROOM {
            buf.reserve(OPEN_CHUNK);
        }
        let opened = self.write_open(&mut buf, kind, method, target, end, fields);
        if opened.is_ok() {
            let frame = buf.split().freeze();
            self.open_buf = buf;
            self.push_output(Output::Encoded(frame));
        } else {
            self.open_buf = buf;
        }
        opened
    }

    /// [`Session::open_fields`] with the OPEN appended to `out`, the driver's buffer of
    /// what it sends next (one binary message: the caller frames it), instead of
    /// queued: for a driver about to write, which so spares the frame's own buffer,
    /// its queueing and the copy into its buffer when it is sent (~0.3k instructions
    /// per request; docs/BENCHMARKS.md, nineteenth round). Only while nothing is
    /// queued ([`Session::has_transmit`] is false): a queued frame would be sent after
    /// this one. On an error `out` is left as it was.
    pub fn open_fields_into(
        &mut self,
        kind: StreamKind,
        method: &str,
        target: &[u8],
        end: bool,
        fields: impl FnOnce(&mut OpenFields<'_>),
        out: &mut BytesMut,
    ) -> Result<StreamId, OpenError> {
        debug_assert!(!self.has_transmit(), "a queued frame would be sent after the OPEN");
        let at = out.len();
        let opened = self.write_open(out, kind, method, target, end, fields);
        if opened.is_err() {
            out.truncate(at);
        }
        opened
    }

    /// Writes the OPEN of a new stream at the end of `buf`, checks it as
    /// [`Session::open`] checks a head, and takes the stream (its id set in the frame).
    /// On an error the frame is left unfinished in `buf`, for the caller to cut.
    fn write_open(
        &mut self,
        buf: &mut BytesMut,
        kind: StreamKind,
        method: &str,
        target: &[u8],
        end: bool,
        fields: impl FnOnce(&mut OpenFields<'_>),
    ) -> Result<StreamId, OpenError> {
        self.may_open()?;
        let coding = self.field_coding();
        let mut w = OpenFields::start(buf, coding, kind, method, target, end);
        let start = w.start_of();
        fields(&mut w);
        let written = w.finish();
        let size = written.text_len + method.len() + target.len() + 16;
        let limit = self.head_limit();
        if size > limit {
            return Err(OpenError::HeadTooLarge { size, limit });
        }
        if let Some(invalid) = written.invalid {
            return Err(OpenError::InvalidHead(invalid));
        }
        let Ok(id) = StreamId::try_from(self.next_local_id) else {
            // Ids are never reused: a session that used them all must be replaced.
            self.go_away(crate::frame::CloseCode::Normal, "stream ids exhausted: reconnect");
            return Err(OpenError::GoingAway);
        };
        self.next_local_id += 2;
        set_id(buf, start, id);
        let mut s = self.new_stream(kind, true);
        s.send_done = end;
        self.streams.insert(id, s);
        self.local_open += 1;
        Ok(id)
    }
}
