//! [`WsDecoder::split_batches`]: a tunnel's `BATCH` cut by the read buffer's end comes
//! as two `BATCH`es carrying the same frames in the same order as the whole one.

use bytes::{Buf, BufMut, Bytes};

use super::*;

/// A fixed mask key of four different bytes: a key turned wrongly for the rest shows.
fn key() -> [u8; 4] {
    [0x37, 0xfa, 0x21, 0x3d]
}

/// Everything `w` queued, as one byte string.
fn drain(w: &mut WsEncoder) -> Vec<u8> {
    let mut t = w.transmit();
    let n = t.remaining();
    t.copy_to_bytes(n).to_vec()
}

/// A `BATCH` message of entries of `sizes` bytes, each entry's bytes telling it apart.
fn batch(sizes: &[usize], seed: usize) -> Vec<u8> {
    let mut b = vec![0x30, 0, 0, 0, 0];
    for (i, &n) in sizes.iter().enumerate() {
        b.put_u32(u32::try_from(n).unwrap());
        b.extend((0..n).map(|j| (j * 3 + i * 11 + seed) as u8));
    }
    b
}

/// What the session would read from `messages`: each `BATCH`'s entries in order (as
/// `BatchEntries` cuts them, its errors as markers), any other message as itself.
fn tunnel_frames(messages: &[WsMessage]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for m in messages {
        let WsMessage::Binary(b) = m else {
            out.push(format!("{m:?}").into_bytes());
            continue;
        };
        let Some(mut body) = b.strip_prefix(&[0x30, 0, 0, 0, 0][..]) else {
            out.push(b.to_vec());
            continue;
        };
        if body.is_empty() {
            out.push(b"empty batch".to_vec());
        }
        while !body.is_empty() {
            let Some((len, rest)) = body.split_first_chunk::<4>() else {
                out.push(b"cut entry length".to_vec());
                break;
            };
            let len = u32::from_be_bytes(*len) as usize;
            let Some(entry) = rest.get(..len) else {
                out.push(b"cut entry".to_vec());
                break;
            };
            out.push(entry.to_vec());
            body = &rest[len..];
        }
    }
    out
}

/// `wire` read through `r`'s read buffer in reads filling the room it has (a socket
/// holding more than a read), every message held to the end.
fn read_full(mut r: WsDecoder, wire: &[u8]) -> Vec<WsMessage> {
    let mut got = Vec::new();
    let mut at = 0;
    while at < wire.len() {
        let buf = r.read_buffer();
        let n = (buf.capacity() - buf.len()).min(wire.len() - at);
        assert!(n > 0);
        buf.put_slice(&wire[at..at + n]);
        at += n;
        while let Some(m) = r.poll_message().unwrap() {
            got.push(m);
        }
    }
    assert!(r.is_between_messages());
    got
}

/// The wire `messages` make from `role`'s peer (masked when this end is the server).
fn wire(role: Role, messages: &[Vec<u8>]) -> Vec<u8> {
    let peer = if role == Role::Server { Role::Client } else { Role::Server };
    let mut w = WsEncoder::new(peer, key);
    for m in messages {
        w.binary(Bytes::copy_from_slice(m));
    }
    drain(&mut w)
}

/// A filler message moves the first buffer's end across every byte of a batch (its
/// WebSocket header, its `BATCH` header, its entries' lengths and bytes, empty entries
/// among them), then a batch larger than a buffer straddles the next: read with
/// [`WsDecoder::split_batches`], the session would read the same frames as from the
/// whole messages, each `BATCH` non-empty and within the limit, with either role's
/// masking; and batches were cut (else the test would prove nothing).
#[test]
fn a_batch_cut_at_every_byte_position_carries_the_same_frames_split() {
    let small = batch(&[0, 1, 3, 200, 1_200, 37, 0, 900, 1_500, 4, 700, 2_000, 2_500], 1);
    let large = batch(&[3_000, 1_200, 5_000, 2, 6_000, 1_300, 2_500], 2);
    for role in [Role::Server, Role::Client] {
        let mut splits = 0;
        let start = 16 * 1024 - small.len() - 40;
        for filler in start..16 * 1024 {
            let messages = [vec![7; filler], small.clone(), large.clone(), batch(&[5], 3), vec![9; 10]];
            let wire = wire(role, &messages);
            let whole = read_full(WsDecoder::new(role, 100_000), &wire);
            assert_eq!(whole.len(), messages.len());
            let mut r = WsDecoder::new(role, 100_000);
            r.split_batches(100_000);
            let got = read_full(r, &wire);
            for m in &got {
                let WsMessage::Binary(b) = m else { panic!("not binary") };
                assert!(b.len() <= 100_000 && b[..] != [0x30, 0, 0, 0, 0], "filler {filler}");
            }
            splits += got.len() - whole.len();
            assert_eq!(tunnel_frames(&got), tunnel_frames(&whole), "{role:?}, filler {filler}");
        }
        assert!(splits > 4_000, "{role:?}: {splits} splits");
    }
}

/// What the split must leave whole: a batch over the limit (the session refuses it
/// whole, before any of its frames), a batch with less than `SPLIT_FROM` read whole, a
/// malformed batch header, a text message, a fragmented message, and any message when
/// splitting is off (a bridged WebSocket's). A batch whose cut entry runs past the
/// message's end is split, the session reading the same frames and the same error.
#[test]
fn what_is_not_a_whole_batch_within_the_limit_is_left_whole() {
    let cut = 16 * 1024 - 8_000;
    let big = batch(&[5_000, 6_000], 4);
    let mut bad_header = big.clone();
    bad_header[3] = 1;
    let mut overrun = big.clone();
    let last = overrun.len() - 6_000 - 4;
    overrun[last..last + 4].copy_from_slice(&7_000u32.to_be_bytes());
    for role in [Role::Server, Role::Client] {
        for (message, limit, splits) in [
            (&big, big.len() - 1, false),
            (&big, 0, false),
            (&big, big.len(), true),
            (&batch(&[9_000, 10], 5), 100_000, false),
            (&batch(&[3_000, 10, 6_000], 5), 100_000, false),
            (&bad_header, 100_000, false),
            (&overrun, 100_000, true),
        ] {
            let messages = [vec![7; cut], message.clone()];
            let wire = wire(role, &messages);
            let whole = read_full(WsDecoder::new(role, 100_000), &wire);
            let mut r = WsDecoder::new(role, 100_000);
            r.split_batches(limit);
            let got = read_full(r, &wire);
            assert_eq!(got.len(), whole.len() + usize::from(splits), "{role:?}, limit {limit}");
            assert_eq!(tunnel_frames(&got), tunnel_frames(&whole), "{role:?}, limit {limit}");
        }
    }
    // Text, and fragments (a first fragment holding a whole entry), from a client.
    let mut w = WsEncoder::new(Role::Client, key);
    w.binary(Bytes::from(vec![7; cut]));
    // A text `BATCH` of UTF-8: lengths 0x1300 and 0x1770, ASCII entries.
    let mut text = vec![0x30, 0, 0, 0, 0];
    for (len, fill) in [(0x1300, b'a'), (0x1770, b'b')] {
        text.put_u32(len);
        text.extend(std::iter::repeat_n(fill, len as usize));
    }
    w.fragment(true, false, true, Bytes::from(text));
    let payload = Bytes::from(batch(&[5_000, 20_000], 7));
    w.fragment(true, true, false, payload.slice(..payload.len() / 2));
    w.fragment(false, true, true, payload.slice(payload.len() / 2..));
    let wire = drain(&mut w);
    let whole = read_full(WsDecoder::new(Role::Server, 100_000), &wire);
    let mut r = WsDecoder::new(Role::Server, 100_000);
    r.split_batches(100_000);
    assert_eq!(read_full(r, &wire), whole);
    assert_eq!(whole.len(), 3);
}

/// A RESPONSE without `END` (its body follows in a DATA) is not left last in the
/// batch's first part: the cut goes before it, with the frames before it, or no
/// split when those come to less than `SPLIT_FROM`; one with `END` may end it.
#[test]
fn a_response_head_whose_body_follows_is_not_left_last_before_the_cut() {
    let mut response = vec![0x11, 0, 0, 0, 3, 0, 0, 200];
    response.resize(300, 0);
    let mut ended = response.clone();
    ended[5] = 0x01;
    let filler_entry = vec![0x12; 5_000];
    for (head, parts) in [(&response, vec![filler_entry.len()]), (&ended, vec![filler_entry.len(), 300])] {
        let mut message = vec![0x30, 0, 0, 0, 0];
        for entry in [&filler_entry, head, &vec![0x12; 6_000]] {
            message.put_u32(u32::try_from(entry.len()).unwrap());
            message.extend(entry);
        }
        let wire = wire(Role::Server, &[vec![7; 16 * 1024 - 8_000], message]);
        let mut r = WsDecoder::new(Role::Server, 100_000);
        r.split_batches(100_000);
        let got = read_full(r, &wire);
        assert_eq!(got.len(), 3);
        let first = tunnel_frames(&got[1..2]);
        assert_eq!(first.iter().map(Vec::len).collect::<Vec<_>>(), parts);
    }
}
