//! One stream's state inside a session: its two halves, its credit and its queue.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::frame::{Frame, Header, ResetCode, StreamId, StreamKind};

/// Something queued on a stream, sent in order.
#[derive(Debug)]
pub(crate) enum Chunk {
    Data(Bytes),
    Ws {
        binary: bool,
        fin: bool,
        data: Bytes,
    },
    End,
    Trailers(Vec<Header>),
    WsClose {
        code: u16,
        reason: String,
    },
    /// A reset queued behind data already queued (see `Session::reset`).
    Reset {
        code: ResetCode,
        message: String,
    },
}

#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) kind: StreamKind,
    /// Opened by this end.
    pub(crate) local: bool,
    pub(crate) response_sent: bool,
    pub(crate) response_received: bool,
    /// A WebSocket whose upgrade was answered with 101.
    pub(crate) ws_accepted: bool,
    /// This end has queued its last frame.
    pub(crate) send_done: bool,
    /// The peer has sent its last frame.
    pub(crate) recv_done: bool,
    /// Bytes we may still queue (the peer's stream window for us).
    pub(crate) send_credit: u64,
    /// Total credit ever granted, for the invariant check.
    pub(crate) granted: u64,
    /// A send was cut short by the window; emit `Writable` when it reopens.
    pub(crate) blocked: bool,
    pub(crate) queue: VecDeque<Chunk>,
    /// Payload bytes in `queue` (what [`Stream::queued_bytes`] counts, kept up to date
    /// so that the send path never walks the queue).
    pub(crate) queued: u64,
    pub(crate) in_ring: bool,
    /// Bytes the peer may still send on this stream.
    pub(crate) recv_remaining: u64,
    /// Consumed but not yet granted back.
    pub(crate) recv_unacked: u64,
    /// This end reset the stream behind its queued data: input is dropped.
    pub(crate) discard: bool,
}

impl Stream {
    /// Both sides are done and nothing is left to send: the session drops it.
    pub(crate) fn is_finished(&self) -> bool {
        self.send_done && self.recv_done && self.queue.is_empty()
    }

    /// A new stream whose chunks go in `queue` (empty; a spare one may have room).
    pub(crate) fn new(
        kind: StreamKind,
        local: bool,
        send_window: u32,
        recv_window: u32,
        queue: VecDeque<Chunk>,
    ) -> Self {
        Stream {
            kind,
            local,
            response_sent: false,
            response_received: false,
            ws_accepted: false,
            send_done: false,
            recv_done: false,
            send_credit: u64::from(send_window),
            granted: u64::from(send_window),
            blocked: false,
            queue,
            queued: 0,
            in_ring: false,
            recv_remaining: u64::from(recv_window),
            recv_unacked: 0,
            discard: false,
        }
    }

    /// The WebSocket was accepted and messages may flow.
    pub(crate) fn ws_open(&self) -> bool {
        self.kind == StreamKind::WebSocket && self.ws_accepted
    }

    /// Takes up to `want` bytes of send credit; marks the stream blocked if short.
    pub(crate) fn take_send_credit(&mut self, want: usize) -> usize {
        let n = usize::try_from(self.send_credit).unwrap_or(usize::MAX).min(want);
        self.send_credit -= n as u64;
        if n < want {
            self.blocked = true;
        }
        n
    }

    /// Payload bytes queued and not yet sent.
    pub(crate) fn queued_bytes(&self) -> u64 {
        self.queue
            .iter()
            .map(|c| match c {
                Chunk::Data(d) | Chunk::Ws { data: d, .. } => d.len() as u64,
                _ => 0,
            })
            .sum()
    }

    /// Cuts the next frame off the queue: at most `payload_limit` payload bytes and no
    /// more than `session_credit`. Returns the frame and the payload bytes it spends,
    /// or `None` when the queue is empty or only payload is waiting on a shut session
    /// window.
    pub(crate) fn next_frame(
        &mut self,
        id: StreamId,
        payload_limit: usize,
        session_credit: usize,
    ) -> Option<(Frame, usize)> {
        let limit = payload_limit.min(session_credit);
        let chunk = self.queue.front_mut()?;
        let frame = match chunk {
            Chunk::Data(data) => {
                if limit == 0 && !data.is_empty() {
                    return None;
                }
                if data.len() > limit {
                    let part = data.split_to(limit);
                    return Some((Frame::Data { id, data: part, end: false }, limit));
                }
                let data = std::mem::take(data);
                self.queue.pop_front();
                // Fold a following end into this frame: one message instead of two.
                let end = matches!(self.queue.front(), Some(Chunk::End));
                if end {
                    self.queue.pop_front();
                }
                let n = data.len();
                return Some((Frame::Data { id, data, end }, n));
            }
            Chunk::Ws { binary, fin, data } => {
                if limit == 0 && !data.is_empty() {
                    return None;
                }
                let (binary, fin) = (*binary, *fin);
                if data.len() > limit {
                    let part = data.split_to(limit);
                    return Some((Frame::WsMessage { id, binary, fin: false, data: part }, limit));
                }
                let data = std::mem::take(data);
                self.queue.pop_front();
                let n = data.len();
                return Some((Frame::WsMessage { id, binary, fin, data }, n));
            }
            Chunk::End => Frame::Data { id, data: Bytes::new(), end: true },
            Chunk::Trailers(headers) => Frame::Trailers { id, headers: std::mem::take(headers) },
            Chunk::WsClose { code, reason } => Frame::WsClose { id, code: *code, reason: std::mem::take(reason) },
            Chunk::Reset { code, message } => Frame::Reset { id, code: *code, message: std::mem::take(message) },
        };
        self.queue.pop_front();
        Some((frame, 0))
    }
}
