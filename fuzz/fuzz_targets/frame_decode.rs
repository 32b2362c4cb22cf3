//! `Frame::decode` on arbitrary bytes: it returns a frame or an error, never panics,
//! and whatever it accepts re-encodes, as text and with the static table's indexes, to
//! bytes that decode to the same frame; an OPEN written field by field
//! (`Frame::encode_open_fields`, the server's HTTP/1 path) is its encoding byte for byte.
//! An OPEN taken raw (`RawRequestHead::decode_open`, the native client's path) is one
//! the typed decoder accepts, with the same fields, and decodes to the same head.
//! A RESPONSE kept as its block (`ResponseBlockFrame::decode`, the server's HTTP/1
//! visitors) is taken only where `Frame::decode` accepts it, with the same fields.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use localtunnels_core::{DecodeLimits, FieldCoding, Frame, RawRequestHead, ResponseBlockFrame, ResponseHead};

const NO_LIMITS: DecodeLimits = DecodeLimits { max_frame: usize::MAX, max_header_bytes: usize::MAX };

fuzz_target!(|data: &[u8]| {
    let small = DecodeLimits { max_frame: 256, max_header_bytes: 64 };
    for limits in [NO_LIMITS, DecodeLimits::default(), small] {
        let msg = Bytes::copy_from_slice(data);
        if let Some(block) = ResponseBlockFrame::decode(&msg, &limits) {
            let head = ResponseHead { status: block.status, headers: block.block.headers() };
            let typed = Frame::Response { id: block.id, head, end: block.end };
            assert_eq!(Frame::decode(msg.clone(), &limits), Ok(typed), "a block differs from the typed head");
        }
        let raw = RawRequestHead::decode_open(&msg, &limits);
        let Ok(frame) = Frame::decode(msg, &limits) else {
            assert!(raw.is_none(), "an OPEN taken raw that the typed decoder refuses");
            continue;
        };
        if let Some((raw_id, raw, raw_end)) = raw {
            let Frame::Open { id, head, end } = &frame else { panic!("a raw OPEN that is not an OPEN") };
            let fields: Vec<(&[u8], &[u8])> = raw.fields().collect();
            let typed: Vec<(&[u8], &[u8])> =
                head.headers.iter().map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())).collect();
            assert_eq!(fields, typed, "a raw OPEN's fields differ");
            assert_eq!((raw_id, raw_end, &raw.decode()), (*id, *end, head), "a raw OPEN decodes differently");
        }
        let encoded = frame.encode();
        // The size a driver writes the WebSocket header from, before encoding.
        if let Some(len) = frame.encoded_len() {
            assert_eq!(len, encoded.len(), "encoded_len differs from the encoding");
        }
        let again = Frame::decode(encoded.clone(), &NO_LIMITS).expect("a re-encoded frame decodes");
        assert_eq!(again, frame, "round trip changed the frame");
        // Canonical from then on: encoding is stable.
        assert_eq!(again.encode(), encoded);
        // Indexed: the same frame, its size known before, never larger than as text.
        let indexed = frame.encode_with(FieldCoding::Indexed);
        if let Some(len) = frame.encoded_len_with(FieldCoding::Indexed) {
            assert_eq!(len, indexed.len(), "encoded_len_with differs from the indexed encoding");
        }
        assert!(indexed.len() <= encoded.len(), "indexed larger than text");
        let again = Frame::decode(indexed.clone(), &NO_LIMITS).expect("an indexed frame decodes");
        assert_eq!(again, frame, "indexed round trip changed the frame");
        if let Frame::Open { id, head, end } = &frame {
            for (coding, listed) in [(FieldCoding::Text, &encoded), (FieldCoding::Indexed, &indexed)] {
                let written = Frame::encode_open_fields(*id, head.kind, &head.method, &head.target, *end, coding, |w| {
                    for (name, value) in &head.headers {
                        w.push(name, value);
                    }
                });
                assert_eq!(&written, listed, "an OPEN written field by field differs");
            }
        }
    }
});
