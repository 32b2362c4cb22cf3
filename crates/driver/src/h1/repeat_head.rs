//! An origin connection's last response head, remembered whole with what the walk
//! made of it ([`RepeatHead`]), so that the next head with the same bytes is not read
//! again.
//!
//! An origin answers a kept-alive connection's requests for the same kind of resource
//! with the same head: the same status line and the same fields with the same values,
//! `Date` changing once a second (the benchmark origin's `content-length` and `date`; a
//! framework's `content-type`; a file server's `ETag` and `Last-Modified`). Reading such
//! a head again (the walk over its bytes, the names lowercased and looked up in the
//! static table, the block written field by field, `Content-Length` read) cost ~0.6k
//! instructions per response on the client's critical path, where comparing its bytes
//! with the last head's and copying the block that head made cost ~0.1k
//! (docs/BENCHMARKS.md, twenty-fourth round, cliresp). The walk is a function of the
//! head's bytes, the field limit and the coding alone: a head with the same bytes, read
//! with the same limit and coding, gives the same answer, so the copy is that answer.
//!
//! Only heads the walk took whole into a block are remembered (not the list way's, not
//! httparse's), at most [`HEAD_BYTES`] of them, one per connection. A connection whose
//! heads keep changing (a request id, a length that differs) stops comparing: after
//! [`CHANGES`] changed heads in a row, one is remembered again only every
//! [`RETRY_EVERY`]th head, so such an origin pays the comparison and the copy only then.

use bytes::BytesMut;
use http::Version;
use localtunnels_core::{FieldCoding, HeaderBlock};

use super::origin::ResponseFramingError;
use super::origin_head::BlockResponse;

/// Longest head remembered (the memory an idle connection keeps: this and its block).
const HEAD_BYTES: usize = 1024;

/// Heads read in a row (none the remembered one) that are each remembered in turn.
const CHANGES: u8 = 2;

/// Past [`CHANGES`], one head in this many is remembered (the others are not compared).
const RETRY_EVERY: u8 = 32;

/// The last head a connection's walk took into a block, and what it made of it.
#[derive(Debug, Default)]
pub(crate) struct RepeatHead {
    /// The head's bytes, its status line to the empty line that ends it.
    head: Vec<u8>,
    /// What the walk made of `head`; `None` when nothing is remembered.
    made: Option<Made>,
    /// Heads read since the last repeat (wrapping: see [`RETRY_EVERY`]).
    changes: u8,
    /// The memory the repeats' blocks are copied into ([`HeaderBlock::copy_into`]): the
    /// last repeat's block until its frame is dropped, then the next one's. At most a
    /// remembered head's block, kept with the connection while it is idle.
    room: BytesMut,
}

/// A [`BlockResponse`] kept for its copies, and the field limit it was read with (its
/// block holds the coding).
#[derive(Debug)]
struct Made {
    status: u16,
    version: Version,
    block: HeaderBlock,
    length: Result<Option<u64>, ResponseFramingError>,
    max_fields: usize,
}

impl RepeatHead {
    /// The head at the front of `window` when its bytes are the remembered head's and
    /// it is read with the same field limit and coding: its length, and a copy of what
    /// the walk made of it (the block's bytes copied into the connection's `room`, which
    /// the RESPONSE frame takes and shares until it is dropped).
    #[inline]
    pub(crate) fn repeat(
        &mut self,
        window: &[u8],
        max_fields: usize,
        coding: FieldCoding,
    ) -> Option<(usize, BlockResponse)> {
        let made = self.made.as_ref()?;
        if made.max_fields != max_fields || made.block.coding() != coding || !window.starts_with(&self.head) {
            return None;
        }
        self.changes = 0;
        let (status, version, length) = (made.status, made.version, made.length);
        let block = made.block.copy_into(&mut self.room);
        Some((self.head.len(), BlockResponse { status, version, block, length }))
    }

    /// A head (`head`, its bytes) that was not the remembered one was walked into
    /// `made`: remembered in its place when it is short enough, unless the heads keep
    /// changing (see the module docs); then nothing is remembered until the next try,
    /// so nothing is compared either.
    pub(crate) fn walked(&mut self, head: &[u8], max_fields: usize, made: &BlockResponse) {
        self.changes = self.changes.wrapping_add(1);
        if head.len() > HEAD_BYTES || (self.changes > CHANGES && !self.changes.is_multiple_of(RETRY_EVERY)) {
            self.made = None;
            return;
        }
        self.head.clear();
        self.head.extend_from_slice(head);
        let BlockResponse { status, version, ref block, length } = *made;
        self.made = Some(Made { status, version, block: block.clone(), length, max_fields });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walked(repeat: &mut RepeatHead, head: &[u8]) {
        let made = BlockResponse {
            status: 200,
            version: Version::HTTP_11,
            block: HeaderBlock::new(FieldCoding::Indexed),
            length: Ok(None),
        };
        repeat.walked(head, 100, &made);
    }

    fn repeats(repeat: &mut RepeatHead, head: &[u8]) -> bool {
        repeat.repeat(head, 100, FieldCoding::Indexed).is_some()
    }

    #[test]
    fn heads_that_keep_changing_are_remembered_only_now_and_then() {
        let mut repeat = RepeatHead::default();
        for i in 0..CHANGES {
            let head = format!("HTTP/1.1 200 OK\r\nx-id: {i}\r\n\r\n");
            walked(&mut repeat, head.as_bytes());
            assert!(repeats(&mut repeat, head.as_bytes()), "{i}");
            // The repeat counts as a head that did not change: start again.
            repeat.changes = i + 1;
        }
        let mut remembered = 0;
        for i in 0..(u32::from(RETRY_EVERY) * 4) {
            let head = format!("HTTP/1.1 200 OK\r\nx-id: x{i}\r\n\r\n");
            assert!(!repeats(&mut repeat, head.as_bytes()));
            walked(&mut repeat, head.as_bytes());
            remembered += usize::from(repeat.made.is_some());
        }
        assert_eq!(remembered, 4);
        // A repeat resets the count: the next change is remembered.
        walked(&mut repeat, b"HTTP/1.1 200 OK\r\n\r\n");
        if repeats(&mut repeat, b"HTTP/1.1 200 OK\r\n\r\n") {
            walked(&mut repeat, b"HTTP/1.1 204 \r\n\r\n");
            assert!(repeats(&mut repeat, b"HTTP/1.1 204 \r\n\r\nmore"));
        }
    }

    #[test]
    fn a_head_longer_than_the_bound_is_not_remembered() {
        let mut repeat = RepeatHead::default();
        let long = [&b"HTTP/1.1 200 OK\r\nx: "[..], &b"v".repeat(HEAD_BYTES), b"\r\n\r\n"].concat();
        walked(&mut repeat, &long);
        assert!(repeat.made.is_none() && !repeats(&mut repeat, &long));
        walked(&mut repeat, &long[..HEAD_BYTES]);
        assert!(repeats(&mut repeat, &long[..HEAD_BYTES]));
        // A window shorter than the head, or another coding: not a repeat.
        assert!(!repeats(&mut repeat, &long[..HEAD_BYTES - 1]));
        assert!(repeat.repeat(&long[..HEAD_BYTES], 100, FieldCoding::Text).is_none());
        assert!(repeat.repeat(&long[..HEAD_BYTES], 99, FieldCoding::Indexed).is_none());
    }
}
