//! `Frame::decode` on arbitrary bytes: it returns a frame or an error, never panics,
//! and whatever it accepts re-encodes to bytes that decode to the same frame.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use localtunnels_core::{DecodeLimits, Frame};

const NO_LIMITS: DecodeLimits = DecodeLimits { max_frame: usize::MAX, max_header_bytes: usize::MAX };

fuzz_target!(|data: &[u8]| {
    let small = DecodeLimits { max_frame: 256, max_header_bytes: 64 };
    for limits in [NO_LIMITS, DecodeLimits::default(), small] {
        let Ok(frame) = Frame::decode(Bytes::copy_from_slice(data), &limits) else { continue };
        let encoded = frame.encode();
        // The size a driver writes the WebSocket header from, before encoding.
        if let Some(len) = frame.encoded_len() {
            assert_eq!(len, encoded.len(), "encoded_len differs from the encoding");
        }
        let again = Frame::decode(encoded.clone(), &NO_LIMITS).expect("a re-encoded frame decodes");
        assert_eq!(again, frame, "round trip changed the frame");
        // Canonical from then on: encoding is stable.
        assert_eq!(again.encode(), encoded);
    }
});
