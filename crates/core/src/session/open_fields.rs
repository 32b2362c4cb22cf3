//! Opening a stream whose OPEN its sender writes field by field
//! ([`Session::open_fields`]): the checks and the bookkeeping of [`Session::open`],
//! the frame queued already encoded.

use crate::error::OpenError;
use crate::frame::{set_id, OpenFields, StreamId, StreamKind};

use super::transmit::Output;
use super::Session;

impl Session {
    /// [`Session::open`] of a request whose header fields `fields` writes, in order,
    /// straight into the OPEN's header block (as the session's field coding says):
    /// the same frame, the same checks and errors, without a [`RequestHead`]'s list
    /// built, walked and dropped in between. `fields` is called only once the session
    /// takes a new stream.
    ///
    /// [`RequestHead`]: crate::RequestHead
    pub fn open_fields(
        &mut self,
        kind: StreamKind,
        method: &str,
        target: &str,
        end: bool,
        fields: impl FnOnce(&mut OpenFields<'_>),
    ) -> Result<StreamId, OpenError> {
        self.may_open()?;
        let coding = self.field_coding();
        let buf = &mut self.open_buf;
        buf.clear();
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
        set_id(&mut self.open_buf, start, id);
        let frame = self.open_buf.split().freeze();
        let mut s = self.new_stream(kind, true);
        s.send_done = end;
        self.streams.insert(id, s);
        self.local_open += 1;
        self.push_output(Output::Encoded(frame));
        Ok(id)
    }
}
