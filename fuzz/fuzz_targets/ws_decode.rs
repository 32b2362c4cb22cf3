//! The driver's sans-IO WebSocket codec on arbitrary bytes: `WsDecoder` returns
//! messages or an error, never panics, and gives the same answer however the bytes are
//! split into reads; whatever it accepts, an encoder of the other end re-frames into
//! bytes that decode to the same messages.
//!
//! The first byte picks the decoder's role (bit 0) and its message limit (bits 1-2),
//! the second where the rest is cut into two reads.

#![no_main]

use bytes::{Buf, Bytes};
use libfuzzer_sys::fuzz_target;
use localtunnels_driver::ws_codec::{Role, WsDecoder, WsEncoder, WsMessage};

const LIMITS: [usize; 4] = [0, 125, 1024, 70_000];

fn key() -> [u8; 4] {
    [0xa5, 0x01, 0x7e, 0xff]
}

/// Every message in `bytes`, fed in `parts`, until the first error.
fn decode(role: Role, max: usize, parts: &[&[u8]]) -> (Vec<WsMessage>, Option<String>) {
    let mut decoder = WsDecoder::new(role, max);
    let mut got = Vec::new();
    for part in parts {
        decoder.push(part);
        loop {
            match decoder.poll_message() {
                Ok(Some(m)) => got.push(m),
                Ok(None) => break,
                Err(e) => return (got, Some(e.to_string())),
            }
        }
    }
    (got, None)
}

fuzz_target!(|data: &[u8]| {
    let [setup, cut, rest @ ..] = data else { return };
    let role = if setup & 1 == 0 { Role::Client } else { Role::Server };
    let max = LIMITS[usize::from((setup >> 1) & 3)];
    let cut = usize::from(*cut).min(rest.len());
    let whole = decode(role, max, &[rest]);
    let split = decode(role, max, &[&rest[..cut], &rest[cut..]]);
    assert_eq!(whole, split, "the answer depends on how the bytes were read");

    let (messages, _) = whole;
    let peer = if role == Role::Client { Role::Server } else { Role::Client };
    let mut encoder = WsEncoder::new(peer, key);
    let mut want = Vec::new();
    for m in messages {
        match &m {
            WsMessage::Binary(data) => {
                assert!(data.len() <= max, "a message over the limit got through");
                encoder.binary(data.clone());
            }
            WsMessage::Text(data) => {
                assert!(data.len() <= max, "a message over the limit got through");
                assert!(std::str::from_utf8(data).is_ok(), "text that is not UTF-8 got through");
                encoder.fragment(true, false, true, data.clone());
            }
            WsMessage::Ping(payload) => {
                assert!(payload.len() <= 125, "an oversized ping got through");
                continue; // the encoder sends no pings, only answers them
            }
            WsMessage::Pong => encoder.pong(Bytes::new()),
            WsMessage::Close(frame) => match frame {
                Some((code, reason)) => encoder.close_with(Some(*code), reason),
                None => encoder.close_with(None, ""),
            },
        }
        let closed = matches!(m, WsMessage::Close(_));
        want.push(m);
        if closed {
            break; // nothing follows a close
        }
    }
    let mut transmit = encoder.transmit();
    let len = transmit.remaining();
    let bytes = transmit.copy_to_bytes(len);
    let (again, error) = decode(role, max, &[&bytes]);
    assert_eq!(error, None, "re-framed messages do not decode");
    assert_eq!(again, want, "re-framing changed the messages");
});
