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
use super::headers::{lengths_invalid, valid_method, FieldCoding, FORWARDED_FOR, FORWARDED_HOST, FORWARDED_PROTO};
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
        // `GET`, the usual method, is written with the frame's first bytes as one constant
        // and known valid without `valid_method`'s loop over its bytes (its copy and its
        // check ~45 instructions per request: docs/BENCHMARKS.md, twenty-fourth round).
        let get = method == "GET";
        if get {
            buf.put_slice(&[kind::OPEN, 0, 0, 0, 0, f, 0, 3, b'G', b'E', b'T']);
        } else {
            buf.put_slice(&[kind::OPEN, 0, 0, 0, 0, f]);
            buf.put_bytes16(method.as_bytes());
        }
        buf.put_bytes16(target);
        let count_at = buf.len();
        buf.put_u16(0);
        // `check_request_line`'s checks.
        let line = if !(get || valid_method(method)) || method.len() > MAX_FIELDS {
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
    #[inline(always)]
    pub fn push(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.push_str(name.as_str(), value.as_bytes(), None);
    }

    /// Appends one of the server's own `X-Forwarded-*` fields (the same bytes as
    /// [`OpenFields::push`] of its name): its name's index is a constant, not looked up
    /// in the table on every request (~20 instructions a field).
    pub fn push_forwarded(&mut self, which: XForwarded, value: &HeaderValue) {
        let (name, index) = match which {
            XForwarded::For => (FORWARDED_FOR, table::X_FORWARDED_FOR),
            XForwarded::Proto => (FORWARDED_PROTO, table::X_FORWARDED_PROTO),
            XForwarded::Host => (FORWARDED_HOST, table::X_FORWARDED_HOST),
        };
        self.push_str(name, value.as_bytes(), Some(index));
    }

    /// The server's own `X-Forwarded-For`, `X-Forwarded-Proto` and, when there is one,
    /// `X-Forwarded-Host`, in that order: the bytes and tallies of the three
    /// [`OpenFields::push_forwarded`]s (the reference, which this falls back to).
    ///
    /// Our own for speed: towards a peer that reads indexes, the three fields are written
    /// after one reservation, each as its name's constant index and its value, the
    /// `X-Forwarded-Proto` of `http` or `https` as its whole field's index, with no
    /// table lookup, no per-field length check and no call a field (the three
    /// `push_forwarded`s with their calls cost ~0.34k instructions per request, this ~0.13k:
    /// docs/BENCHMARKS.md, twenty-fourth round, srvopen3). It takes only what needs
    /// none of [`OpenFields::push_str`]'s checks: the indexed coding in a build with the
    /// table (without it `code_of_name` writes text whatever the coding), room for the
    /// fields under the block's count limit, and values no longer than a `u16` counts
    /// (so none is cut and none is refused); anything else goes the reference way.
    pub fn push_forwarding(&mut self, forwarded_for: &HeaderValue, proto: &HeaderValue, host: Option<&HeaderValue>) {
        let (f, p) = (forwarded_for.as_bytes(), proto.as_bytes());
        let h = host.map_or(&b""[..], HeaderValue::as_bytes);
        let fields = 2 + usize::from(host.is_some());
        let short = (f.len() | p.len() | h.len()) <= usize::from(u16::MAX);
        let indexed = cfg!(feature = "indexed-headers") && self.coding == FieldCoding::Indexed;
        if !indexed || self.count + fields > MAX_FIELDS || !short {
            self.push_forwarded(XForwarded::For, forwarded_for);
            self.push_forwarded(XForwarded::Proto, proto);
            if let Some(host) = host {
                self.push_forwarded(XForwarded::Host, host);
            }
            return;
        }
        self.count += fields;
        // As `push_str` tallies each: `bytes16_len` of the name and of the value.
        let names =
            FORWARDED_FOR.len() + FORWARDED_PROTO.len() + if host.is_some() { FORWARDED_HOST.len() + 4 } else { 0 };
        self.text_len += names + 8 + f.len() + p.len() + h.len();
        let proto_field = table::forwarded_proto_field(p);
        let b = &mut *self.buf;
        b.reserve(15 + f.len() + p.len() + h.len());
        b.put_slice(&field_head(table::X_FORWARDED_FOR, f.len()));
        b.put_slice(f);
        match proto_field {
            // The usual end: the scheme's whole field and the host's head as one write.
            Some(code) if host.is_some() => {
                let [_, _, index, hi, lo] = field_head(table::X_FORWARDED_HOST, h.len());
                b.put_slice(&[0, 0, code, 0, 0, index, hi, lo]);
                b.put_slice(h);
            }
            Some(code) => b.put_slice(&[0, 0, code]),
            None => {
                b.put_slice(&field_head(table::X_FORWARDED_PROTO, p.len()));
                b.put_slice(p);
                if host.is_some() {
                    b.put_slice(&field_head(table::X_FORWARDED_HOST, h.len()));
                    b.put_slice(h);
                }
            }
        }
    }

    /// [`OpenFields::push`] of a name's text (lowercase, as a `HeaderName` holds it)
    /// and a value's bytes, both valid as the types make them; `index`, the name's in
    /// the table when the caller knows it. Inlined into `push`, and `push` into its
    /// caller, whose one on the path is the server's loop over a visitor's fields (the
    /// call, its six saved registers and its arguments ~20 instructions a field).
    #[inline(always)]
    fn push_str(&mut self, name: &str, value: &[u8], index: Option<u8>) {
        self.count += 1;
        if self.count > MAX_FIELDS {
            // Refused by `finish`: what `put_headers` would cut.
            return;
        }
        if (name.len() | value.len()) <= usize::from(u16::MAX) {
            // The usual field: both lengths fit their counts, so `bytes16_len` cuts
            // neither and `lengths_invalid` finds nothing (one compare, not their six).
            self.text_len += 4 + name.len() + value.len();
        } else {
            self.text_len += bytes16_len(name.len()) + bytes16_len(value.len());
            if self.field.is_none() {
                self.field = lengths_invalid(name.len(), value.len());
            }
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

/// The first bytes of a field written as its name's index `index` and a value of `len`
/// bytes (at most a `u16` count), the value to follow: two zero bytes (the empty name
/// that says an index follows), the index, the value's length.
#[inline]
fn field_head(index: u8, len: usize) -> [u8; 5] {
    let [hi, lo] = u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes();
    [0, 0, index, hi, lo]
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
        // `GET` is written as one constant, every other method by its bytes.
        let methods = ["GET", "POST", "get", "GETS", "GE", "HEAD", "OPTIONS", "PURGE"];
        for headers in &lists {
            for coding in [FieldCoding::Text, FieldCoding::Indexed] {
                for end in [false, true] {
                    for method in methods {
                        let (written, encoded) = both(method, "/a?b=c", headers, coding, end);
                        assert_eq!(written, encoded, "{method} {headers:?} {coding:?}");
                    }
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

    /// The forwarding fields written together are the three written one by one, the
    /// reference: the same bytes and the same tallies, in both codings, for the values
    /// that make a whole field and those that do not, values of every length class (empty,
    /// 65,535 bytes, one more), with and without a host, and blocks whose count the three
    /// reach, pass or are past the limit of.
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn the_forwarding_fields_written_together_are_the_three_pushed_alone() {
        let long = |n: usize| HeaderValue::from_bytes(&vec![b'a'; n]).unwrap();
        let values = [
            HeaderValue::from_static(""),
            HeaderValue::from_static("10.1.2.3"),
            HeaderValue::from_static("2001:db8::ff00:42:8329"),
            HeaderValue::from_static("http"),
            HeaderValue::from_static("https"),
            HeaderValue::from_static("HTTP"),
            HeaderValue::from_static("ftp"),
            HeaderValue::from_static("a.localhost:8080"),
            long(MAX_FIELDS),
            long(MAX_FIELDS + 1),
        ];
        let other = (http::header::DATE, HeaderValue::from_static("d"));
        // Fields before the three: none, one, and so many that the three reach the limit
        // exactly, pass it by one, or come after it.
        let before = [0, 1, MAX_FIELDS - 3, MAX_FIELDS - 2, MAX_FIELDS];
        let write = |coding, n: usize, f: &HeaderValue, p: &HeaderValue, h: Option<&HeaderValue>, together: bool| {
            let mut buf = BytesMut::new();
            let mut w = OpenFields::start(&mut buf, coding, StreamKind::Http, "GET", b"/", false);
            for _ in 0..n {
                w.push(&other.0, &other.1);
            }
            if together {
                w.push_forwarding(f, p, h);
            } else {
                w.push_forwarded(XForwarded::For, f);
                w.push_forwarded(XForwarded::Proto, p);
                if let Some(h) = h {
                    w.push_forwarded(XForwarded::Host, h);
                }
            }
            let written = w.finish();
            (buf, written.text_len, written.invalid)
        };
        let mut cases = Vec::new();
        for f in &values {
            for p in &values {
                for h in [None, Some(&values[7]), Some(&values[3])] {
                    cases.push((f, p, h, 1));
                }
            }
        }
        for h in &values {
            cases.push((&values[1], &values[3], Some(h), 1));
        }
        for n in before {
            cases.push((&values[1], &values[3], Some(&values[7]), n));
            cases.push((&values[1], &values[4], None, n));
        }
        for (f, p, h, n) in cases {
            for coding in [FieldCoding::Text, FieldCoding::Indexed] {
                let together = write(coding, n, f, p, h, true);
                let alone = write(coding, n, f, p, h, false);
                assert!(
                    together == alone,
                    "{coding:?} {n} fields before, lengths {} {} {:?}",
                    f.len(),
                    p.len(),
                    h.map(|h| h.len())
                );
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
        for (method, target, what) in [
            ("G T", &b"/"[..], "method"),
            ("", b"/", "method"),
            ("GET ", b"/", "method"),
            ("GET\t", b"/", "method"),
            ("GET", b"/caf\xe9", "target not UTF-8"),
        ] {
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
