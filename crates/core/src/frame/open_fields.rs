//! An OPEN frame written by its sender as it walks its request's fields, for a sender
//! that holds the fields in a form of its own (the server's parsed HTTP/1 head) and
//! would otherwise build a [`RequestHead`](super::RequestHead)'s list only to have it
//! walked three times more (sized, planned and checked when queued, written when sent)
//! and dropped after the send.
//!
//! The bytes are exactly those of `Frame::Open` encoded with the same fields in the
//! same order and the same [`FieldCoding`] (the test below and
//! `crates/server/src/visitor_h1/open.rs`'s differential test compare them), and the
//! tallies are those `Session::open` checks (`plan_checked`): the block's size as
//! text, the field count, each name's and value's length.

use bytes::{BufMut, BytesMut};

use super::codec::bytes16_len;
use super::headers::{lengths_invalid, valid_method, FieldCoding};
use super::table;
use super::types::{HeaderName, HeaderValue, StreamKind};
use crate::bytes_reader::WriteExt;
use crate::ids::{flags, kind};

/// Where the stream id goes in an OPEN (after its type byte).
const ID_AT: usize = 1;

/// Fields a block may hold (its count is a `u16`).
const MAX_FIELDS: usize = u16::MAX as usize;

/// The header block of an OPEN being written into its frame: one field at a time, in
/// order, written as the session's [`FieldCoding`] says.
#[derive(Debug)]
pub struct OpenFields<'a> {
    buf: &'a mut BytesMut,
    coding: FieldCoding,
    /// Where the frame starts in `buf`, and where its field count goes.
    start: usize,
    count_at: usize,
    count: usize,
    /// The block's size written as text (the size `Session::open` checks).
    text_len: usize,
    /// What is wrong with the method or the target, if anything.
    line: Option<&'static str>,
    /// The first field whose name or value is longer than a `u16` counts.
    field: Option<&'static str>,
}

/// The server's own forwarding fields, which it adds to every request it opens
/// ([`OpenFields::push_forwarded`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XForwarded {
    /// `X-Forwarded-For`.
    For,
    /// `X-Forwarded-Proto`.
    Proto,
    /// `X-Forwarded-Host`.
    Host,
}

/// What a written OPEN holds, for the session's checks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Written {
    /// The block's size as text, as `plan_checked` gives it.
    pub(crate) text_len: usize,
    /// What `plan_checked` and `check_request_line` refuse in it, if anything.
    pub(crate) invalid: Option<&'static str>,
}

impl<'a> OpenFields<'a> {
    /// Starts an OPEN at the end of `buf`: its type, a stream id to be set by
    /// [`OpenFields::set_id`], its flags, method and target, and the block's count.
    pub(crate) fn start(
        buf: &'a mut BytesMut,
        coding: FieldCoding,
        stream: StreamKind,
        method: &str,
        target: &[u8],
        end: bool,
    ) -> Self {
        let mut f = if end { flags::END } else { 0 };
        if stream == StreamKind::WebSocket {
            f |= flags::WEBSOCKET;
        }
        buf.reserve(16 + method.len() + target.len() + 128);
        let start = buf.len();
        buf.put_slice(&[kind::OPEN, 0, 0, 0, 0, f]);
        buf.put_bytes16(method.as_bytes());
        buf.put_bytes16(target);
        let count_at = buf.len();
        buf.put_u16(0);
        // `check_request_line`'s checks.
        let line = if !valid_method(method) || method.len() > MAX_FIELDS {
            Some("method")
        } else if target.len() > MAX_FIELDS {
            Some("target longer than 65535 bytes")
        } else if !target.is_ascii() && std::str::from_utf8(target).is_err() {
            // The target is text on the wire (a peer refuses an OPEN whose target is
            // not): the caller's bytes are checked here, the usual ASCII ones in a few
            // instructions (the HTTP/1 path hands them over as read, unconverted).
            Some("target not UTF-8")
        } else {
            None
        };
        OpenFields { buf, coding, start, count_at, count: 0, text_len: 2, line, field: None }
    }

    /// Appends the field `name: value`.
    pub fn push(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.push_str(name.as_str(), value.as_bytes(), None);
    }

    /// Appends one of the server's own `X-Forwarded-*` fields (the same bytes as
    /// [`OpenFields::push`] of its name): its name's index is a constant, not looked up
    /// in the table on every request (~20 instructions a field).
    pub fn push_forwarded(&mut self, which: XForwarded, value: &HeaderValue) {
        let (name, index) = match which {
            XForwarded::For => ("x-forwarded-for", 9),
            XForwarded::Proto => ("x-forwarded-proto", 10),
            XForwarded::Host => ("x-forwarded-host", 11),
        };
        self.push_str(name, value.as_bytes(), Some(index));
    }

    /// [`OpenFields::push`] of a name's text (lowercase, as a `HeaderName` holds it)
    /// and a value's bytes, both valid as the types make them; `index`, the name's in
    /// the table when the caller knows it.
    fn push_str(&mut self, name: &str, value: &[u8], index: Option<u8>) {
        self.count += 1;
        if self.count > MAX_FIELDS {
            // Refused by `finish`: what `put_headers` would cut.
            return;
        }
        let text = bytes16_len(name.len()) + bytes16_len(value.len());
        self.text_len += text;
        if self.field.is_none() {
            self.field = lengths_invalid(name.len(), value.len());
        }
        let code = match self.coding {
            FieldCoding::Text => table::TEXT,
            FieldCoding::Indexed => match index {
                Some(index) => table::code_of_name(index, value),
                None => table::code(name.as_bytes(), value),
            },
        };
        let b = &mut *self.buf;
        if code == table::TEXT {
            b.put_bytes16(name.as_bytes());
            b.put_bytes16(value);
        } else if code & table::PAIR_BIT != 0 {
            b.put_slice(&[0, 0, code]);
        } else {
            let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
            let [hi, lo] = len.to_be_bytes();
            b.put_slice(&[0, 0, code, hi, lo]);
            b.put_slice(&value[..usize::from(len)]);
        }
    }

    /// Ends the block (its count written): what the session checks.
    pub(crate) fn finish(self) -> Written {
        let count = u16::try_from(self.count).unwrap_or(u16::MAX);
        self.buf[self.count_at..self.count_at + 2].copy_from_slice(&count.to_be_bytes());
        // `Session::open`'s order: the line's check, then the count, then the fields.
        let count = (self.count > MAX_FIELDS).then_some("more than 65535 headers");
        Written { text_len: self.text_len, invalid: self.line.or(count).or(self.field) }
    }

    /// Where the frame started in the buffer.
    pub(crate) fn start_of(&self) -> usize {
        self.start
    }
}

impl super::Frame {
    /// The OPEN of stream `id` whose fields `fields` writes, encoded with `coding`:
    /// the frame [`Session::open_fields`](crate::Session::open_fields) queues for the
    /// same request (which also checks it). For tests that compare it with
    /// `Frame::Open`'s encoding, and tools that write frames.
    pub fn encode_open_fields(
        id: u32,
        stream: StreamKind,
        method: &str,
        target: &[u8],
        end: bool,
        coding: FieldCoding,
        fields: impl FnOnce(&mut OpenFields<'_>),
    ) -> bytes::Bytes {
        let mut buf = BytesMut::new();
        let mut w = OpenFields::start(&mut buf, coding, stream, method, target, end);
        let start = w.start_of();
        fields(&mut w);
        w.finish();
        set_id(&mut buf, start, id);
        buf.freeze()
    }
}

/// Sets the stream id of the OPEN written at `start` of `buf`.
pub(crate) fn set_id(buf: &mut BytesMut, start: usize, id: u32) {
    buf[start + ID_AT..start + ID_AT + 4].copy_from_slice(&id.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::types::{Frame, Header, RequestHead};

    /// The OPEN `fields` writes, with id 7, against `Frame::Open`'s encoding.
    fn both(method: &str, target: &str, headers: &[Header], coding: FieldCoding, end: bool) -> (Vec<u8>, Vec<u8>) {
        let written = Frame::encode_open_fields(7, StreamKind::Http, method, target.as_bytes(), end, coding, |w| {
            for (n, v) in headers {
                w.push(n, v);
            }
        });
        let head = RequestHead {
            kind: StreamKind::Http,
            method: method.to_owned().into(),
            target: target.to_owned(),
            headers: headers.to_vec(),
        };
        let frame = Frame::Open { id: 7, head, end };
        (written.to_vec(), frame.encode_with(coding).to_vec())
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn the_written_open_is_the_encoded_one_in_both_codings() {
        let field =
            |n: &str, v: &str| (HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        let lists: Vec<Vec<Header>> = vec![
            vec![],
            vec![field("host", "a.localhost:80"), field("x-forwarded-proto", "http"), field("x-custom", "1")],
            vec![field("accept", "*/*"), field("accept", "text/html"), field("te", "trailers"), field("x-a", "")],
            (0..40).map(|i| field(if i % 3 == 0 { "sec-fetch-mode" } else { "x-other" }, "navigate")).collect(),
        ];
        for headers in &lists {
            for coding in [FieldCoding::Text, FieldCoding::Indexed] {
                for end in [false, true] {
                    let (written, encoded) = both("GET", "/a?b=c", headers, coding, end);
                    assert_eq!(written, encoded, "{headers:?} {coding:?}");
                }
            }
        }
    }

    /// A forwarding field pushed by its constant index is the field pushed by name,
    /// in both codings, with the values that make a whole field (`http`) and those that
    /// do not.
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn forwarded_fields_by_index_are_the_fields_by_name() {
        use crate::frame::headers::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO};
        let cases = [
            (XForwarded::For, X_FORWARDED_FOR, "10.1.2.3"),
            (XForwarded::Proto, X_FORWARDED_PROTO, "http"),
            (XForwarded::Proto, X_FORWARDED_PROTO, "https"),
            (XForwarded::Proto, X_FORWARDED_PROTO, "ftp"),
            (XForwarded::Host, X_FORWARDED_HOST, "a.localhost:8080"),
        ];
        for (which, name, value) in cases {
            let value = HeaderValue::from_static(value);
            for coding in [FieldCoding::Text, FieldCoding::Indexed] {
                let by_index = Frame::encode_open_fields(7, StreamKind::Http, "GET", b"/", false, coding, |w| {
                    w.push_forwarded(which, &value)
                });
                let by_name = Frame::encode_open_fields(7, StreamKind::Http, "GET", b"/", false, coding, |w| {
                    w.push(&name, &value)
                });
                assert_eq!(by_index, by_name, "{which:?} {value:?} {coding:?}");
            }
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn the_tallies_are_those_the_session_checks() {
        let long = HeaderValue::from_bytes(&vec![b'a'; MAX_FIELDS + 1]).unwrap();
        let mut buf = BytesMut::new();
        let mut w = OpenFields::start(&mut buf, FieldCoding::Indexed, StreamKind::Http, "GET", b"/", false);
        w.push(&http::header::HOST, &HeaderValue::from_static("a"));
        w.push(&http::header::DATE, &long);
        let written = w.finish();
        let list = vec![(http::header::HOST, HeaderValue::from_static("a")), (http::header::DATE, long)];
        let checked = super::super::headers::plan_checked(&list, FieldCoding::Indexed);
        assert_eq!((written.text_len, written.invalid), (checked.text_len, checked.invalid));
        for (method, target, what) in
            [("G T", &b"/"[..], "method"), ("", b"/", "method"), ("GET", b"/caf\xe9", "target not UTF-8")]
        {
            let mut buf = BytesMut::new();
            let w = OpenFields::start(&mut buf, FieldCoding::Text, StreamKind::Http, method, target, false);
            assert_eq!(w.finish().invalid, Some(what));
        }
        let target = "/".repeat(MAX_FIELDS + 1);
        let mut buf = BytesMut::new();
        let w = OpenFields::start(&mut buf, FieldCoding::Text, StreamKind::Http, "GET", target.as_bytes(), false);
        assert_eq!(w.finish().invalid, Some("target longer than 65535 bytes"));
    }
}
