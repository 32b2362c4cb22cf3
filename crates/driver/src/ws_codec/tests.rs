//! Deterministic tests of the sans-IO codec: no socket, a fixed mask key.

use bytes::{Buf, BufMut, Bytes};

use super::*;

/// A fixed mask key: tests see the same bytes every run.
fn key() -> [u8; 4] {
    [0x37, 0xfa, 0x21, 0x3d]
}

fn encoder(role: Role) -> WsEncoder {
    WsEncoder::new(role, key)
}

/// Everything `w` queued, as one byte string.
fn drain(w: &mut WsEncoder) -> Vec<u8> {
    let mut t = w.transmit();
    let out = t.copy_to_bytes(t.remaining()).to_vec();
    assert!(w.is_empty());
    out
}

fn frames(role: Role, messages: &[&[u8]]) -> Vec<u8> {
    let mut w = encoder(role);
    for m in messages {
        w.binary(Bytes::copy_from_slice(m));
    }
    drain(&mut w)
}

#[test]
fn mask_matches_the_bytewise_definition() {
    // Every length around the 8-byte words, the tail's pieces (64, 32, 16, 8, 4 and
    // single bytes) and the 128-byte blocks, a few blocks long; keys with every byte
    // different, a key of zeroes and one of ones; each slice starting at 0-7 bytes into
    // its buffer (the pieces' loads unaligned), the bytes around it left alone.
    let keys = [[0x6d, 0xb6, 0xb2, 0x80], [0, 0, 0, 0], [0xff; 4], [1, 2, 3, 4]];
    for key in keys {
        for len in 0..600 {
            for at in 0..8 {
                let data: Vec<u8> = (0..len + at + 3).map(|i| (i * 7 % 251) as u8).collect();
                let mut fast = data.clone();
                apply_mask(&mut fast[at..at + len], key);
                let mut slow = data.clone();
                for (i, b) in slow[at..at + len].iter_mut().enumerate() {
                    *b ^= key[i % 4];
                }
                assert_eq!(fast, slow, "length {len} at {at}, key {key:?}");
            }
        }
    }
}

#[test]
fn client_frames_round_trip_through_a_server_reader() {
    let big = vec![7u8; 70_000];
    let mid = vec![3u8; 5_000];
    let bytes = frames(Role::Client, &[b"hi", &mid, &big, b""]);
    let mut r = WsDecoder::new(Role::Server, 100_000);
    // Fed one byte at a time: every partial header and payload is waited for.
    let mut got = Vec::new();
    for b in bytes {
        r.push(&[b]);
        while let Some(m) = r.poll_message().expect("valid frames") {
            got.push(m);
        }
    }
    let want: Vec<WsMessage> =
        [&b"hi"[..], &mid, &big, b""].iter().map(|m| WsMessage::Binary(Bytes::copy_from_slice(m))).collect();
    assert_eq!(got, want);
}

#[test]
fn server_frames_are_unmasked_and_large_payloads_go_uncopied() {
    let big = Bytes::from(vec![9u8; 10_000]);
    let mut w = encoder(Role::Server);
    w.binary(Bytes::from_static(b"small"));
    w.binary(big.clone());
    assert!(w.queued().iter().any(|b| b.as_ptr() == big.as_ptr()), "the big payload is sent as it is");
    let bytes = frames(Role::Server, &[b"small", &big]);
    let mut r = WsDecoder::new(Role::Client, 100_000);
    r.push(&bytes);
    assert_eq!(r.poll_message().unwrap(), Some(WsMessage::Binary(Bytes::from_static(b"small"))));
    assert_eq!(r.poll_message().unwrap(), Some(WsMessage::Binary(big)));
    assert_eq!(r.poll_message().unwrap(), None);
}

#[test]
fn a_client_masks_a_large_unshared_payload_in_place() {
    let mut w = encoder(Role::Client);
    let big = vec![5u8; 10_000];
    let owned = Bytes::from(big.clone());
    let ptr = owned.as_ptr();
    w.binary(owned);
    let shared = Bytes::from(vec![6u8; 10_000]);
    w.binary(shared.clone()); // still held here: masked into a copy
    let whole = Bytes::from(vec![4u8; 10_000]);
    let whole_ptr = whole.as_ptr();
    w.binary_parts(whole, Bytes::new()); // a whole message given as parts: as `binary`
    assert!(w.queued().iter().any(|b| b.as_ptr() == ptr), "the unshared payload is sent from where it was");
    assert!(w.queued().iter().any(|b| b.as_ptr() == whole_ptr), "so is a whole message given as parts");
    assert!(shared.iter().all(|&b| b == 6), "a shared payload is never changed");
    let bytes = drain(&mut w);
    let mut r = WsDecoder::new(Role::Server, 100_000);
    r.push(&bytes);
    assert_eq!(r.poll_message().unwrap(), Some(WsMessage::Binary(Bytes::from(big))));
    assert_eq!(r.poll_message().unwrap(), Some(WsMessage::Binary(shared)));
    assert_eq!(r.poll_message().unwrap(), Some(WsMessage::Binary(Bytes::from(vec![4u8; 10_000]))));
}

/// A message given as head and payload reads back as the two joined, for both
/// roles, whatever the head's length (the mask goes on across the join), small or
/// large, payload shared or not.
#[test]
fn messages_in_two_parts_read_back_joined() {
    for role in [Role::Client, Role::Server] {
        for head_len in [0, 1, 6, 7] {
            for payload_len in [0, 5, 5_000] {
                let head = Bytes::from((0..head_len).map(|i| i as u8 ^ 0x5a).collect::<Vec<_>>());
                let body: Vec<u8> = (0..payload_len).map(|i| (i % 251) as u8).collect();
                let shared = Bytes::from(body.clone());
                let mut w = encoder(role);
                w.binary_parts(head.clone(), shared.clone());
                w.binary_parts(head.clone(), Bytes::from(body.clone()));
                assert!(shared.iter().copied().eq(body.iter().copied()), "a shared payload is never changed");
                let bytes = drain(&mut w);
                let peer = if role == Role::Client { Role::Server } else { Role::Client };
                let joined = Bytes::from([&head[..], &body].concat());
                let got = parse_all(peer, 100_000, &bytes).unwrap();
                assert_eq!(
                    got,
                    [WsMessage::Binary(joined.clone()), WsMessage::Binary(joined)],
                    "{role:?} {head_len}+{payload_len}"
                );
            }
        }
    }
}

/// A message written straight into the encoder's buffer (as the control connection
/// encodes the session's frames), with or without a tail sent apart, shared or not,
/// reads back whole for both roles, between messages queued the other ways.
#[test]
fn messages_written_in_place_read_back() {
    for role in [Role::Client, Role::Server] {
        for head_len in [0, 1, 6, 7, 200] {
            for tail_len in [0, 5, 5_000] {
                let head: Vec<u8> = (0..head_len).map(|i| (i % 13) as u8 ^ 0x5a).collect();
                let body: Vec<u8> = (0..tail_len).map(|i| (i % 251) as u8).collect();
                let shared = Bytes::from(body.clone());
                let mut w = encoder(role);
                w.binary(Bytes::from_static(b"before"));
                w.binary_with(head.len() + body.len(), |out| {
                    out.put_slice(&head);
                    shared.clone()
                });
                w.binary_with(head.len() + body.len(), |out| {
                    out.put_slice(&head);
                    Bytes::from(body.clone())
                });
                w.binary(Bytes::from_static(b"after"));
                assert!(shared.iter().copied().eq(body.iter().copied()), "a shared tail is never changed");
                let bytes = drain(&mut w);
                let peer = if role == Role::Client { Role::Server } else { Role::Client };
                let joined = Bytes::from([&head[..], &body].concat());
                let got = parse_all(peer, 100_000, &bytes).unwrap();
                let want = [
                    WsMessage::Binary(Bytes::from_static(b"before")),
                    WsMessage::Binary(joined.clone()),
                    WsMessage::Binary(joined),
                    WsMessage::Binary(Bytes::from_static(b"after")),
                ];
                assert_eq!(got, want, "{role:?} {head_len}+{tail_len}");
            }
        }
    }
}

/// A message appended with its length unknown (`binary_built`) is framed as `binary`
/// frames it, byte for byte, at each of the three header lengths and their edges, for
/// both roles; a failed write queues nothing, and after a close nothing goes out.
#[test]
fn messages_built_in_place_are_framed_as_binary_frames_them() {
    for role in [Role::Client, Role::Server] {
        for len in [0, 1, 125, 126, 127, 1000, 0xFFFF, 0x1_0000, 70_000] {
            let message: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut built = encoder(role);
            built.binary(Bytes::from_static(b"before"));
            let r: Result<usize, ()> = built.binary_built(|out| {
                out.put_slice(&message);
                Ok(len)
            });
            assert_eq!(r, Ok(len));
            let failed: Result<(), &str> = built.binary_built(|out| {
                out.put_slice(b"half a frame");
                Err("refused")
            });
            assert_eq!(failed, Err("refused"));
            built.binary(Bytes::from_static(b"after"));
            assert_eq!(drain(&mut built), queued_between(role, &message), "{role:?} {len}");
        }
    }
    let mut closed = encoder(Role::Server);
    closed.close(1000);
    let before = drain(&mut closed);
    let r: Result<(), ()> = closed.binary_built(|out| {
        out.put_slice(b"late");
        Ok(())
    });
    assert_eq!((r, before.is_empty(), closed.is_empty()), (Ok(()), false, true));
}

/// A message of known length that its writer may decline (`binary_if`): taken, it is
/// framed as `binary` frames it, for both roles and the three header lengths; declined,
/// nothing is queued (not even its header); after a close the writer is not called.
#[test]
fn a_message_its_writer_may_decline_is_framed_or_left_out_whole() {
    for role in [Role::Client, Role::Server] {
        for len in [0, 1, 125, 126, 1000, 0xFFFF, 0x1_0000] {
            let message: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut built = encoder(role);
            built.binary(Bytes::from_static(b"before"));
            assert!(!built.binary_if(len, |_| false));
            assert!(built.binary_if(len, |out| {
                out.put_slice(&message);
                true
            }));
            built.binary(Bytes::from_static(b"after"));
            assert_eq!(drain(&mut built), queued_between(role, &message), "{role:?} {len}");
        }
    }
    let mut closed = encoder(Role::Server);
    closed.close(1000);
    drain(&mut closed);
    assert!(!closed.binary_if(4, |_| unreachable!("not called after a close")));
    assert!(closed.is_empty());
}

/// What `binary` queues for the messages "before", `message` and "after", as written.
fn queued_between(role: Role, message: &[u8]) -> Vec<u8> {
    let mut queued = encoder(role);
    queued.binary(Bytes::from_static(b"before"));
    queued.binary(Bytes::copy_from_slice(message));
    queued.binary(Bytes::from_static(b"after"));
    drain(&mut queued)
}

fn parse_all(role: Role, max: usize, bytes: &[u8]) -> Result<Vec<WsMessage>, WsError> {
    parse_with(role, max, bytes, WsDecoder::poll_message)
}

/// Decodes `bytes` with `next` until it gives nothing more.
fn parse_with(
    role: Role,
    max: usize,
    bytes: &[u8],
    next: fn(&mut WsDecoder) -> Result<Option<WsMessage>, WsError>,
) -> Result<Vec<WsMessage>, WsError> {
    let mut r = WsDecoder::new(role, max);
    r.push(bytes);
    let mut out = Vec::new();
    while let Some(m) = next(&mut r)? {
        out.push(m);
    }
    Ok(out)
}

#[test]
fn fragments_are_joined_and_control_frames_pass_between_them() {
    // binary "ab" (not fin), ping "p", continuation "cd" (fin); all unmasked from a server.
    let bytes = [&[0x02, 2, b'a', b'b'][..], &[0x89, 1, b'p'], &[0x80, 2, b'c', b'd']].concat();
    let got = parse_all(Role::Client, 100, &bytes).unwrap();
    assert_eq!(got, vec![WsMessage::Ping(Bytes::from_static(b"p")), WsMessage::Binary(Bytes::from_static(b"abcd"))]);
}

#[test]
fn text_is_joined_across_fragments_and_must_be_utf8() {
    // "é€" cut inside both characters: c3 | a9 e2 82 | ac.
    let bytes = [&[0x01, 1, 0xC3][..], &[0x00, 3, 0xA9, 0xE2, 0x82], &[0x80, 1, 0xAC]].concat();
    let got = parse_all(Role::Client, 100, &bytes).unwrap();
    assert_eq!(got, vec![WsMessage::Text(Bytes::from("é€"))]);
    let r = parse_all(Role::Client, 100, &[0x81, 2, 0xC3, 0x28]);
    assert!(matches!(r, Err(WsError::Utf8("a text message"))), "{r:?}");
    // A message of the other kind may not start inside a fragmented one.
    let r = parse_all(Role::Client, 100, &[0x01, 1, b'a', 0x82, 0]);
    assert!(matches!(r, Err(WsError::Protocol(_))), "{r:?}");
}

#[test]
fn small_binary_frames_read_as_the_general_path_reads_them() {
    // Frames near the shortcut's edges: every first byte around 0x82 (reserved bits,
    // other opcodes, no FIN), masked or not, lengths up to the extended ones, limits
    // below and above the length, with a frame behind, whole or cut short.
    for role in [Role::Server, Role::Client] {
        for b0 in [0x82u8, 0x02, 0x81, 0x80, 0x88, 0xA2, 0xC2, 0x92] {
            for mask in [false, true] {
                for len in [0usize, 1, 7, 8, 9, 125, 126] {
                    let mut frame = vec![b0, if mask { 0x80 } else { 0 } | len.min(126) as u8];
                    if len >= 126 {
                        frame.extend_from_slice(&(len as u16).to_be_bytes());
                    }
                    if mask {
                        frame.extend_from_slice(&[9, 8, 7, 6]);
                    }
                    frame.extend((0..len).map(|i| i as u8));
                    frame.extend_from_slice(&[0x82, if mask { 0x80 } else { 0 }, 1, 2, 3, 4]);
                    for max in [0, 8, 1000] {
                        for cut in [frame.len(), frame.len() - 6, 3, 1] {
                            let bytes = &frame[..cut];
                            let fast = parse_all(role, max, bytes).map_err(|e| e.to_string());
                            let general =
                                parse_with(role, max, bytes, WsDecoder::decode_message).map_err(|e| e.to_string());
                            assert_eq!(fast, general, "{role:?} {b0:#x} mask {mask} len {len} max {max} cut {cut}");
                        }
                    }
                }
            }
        }
    }
}

/// Fragments and closes as the bridge writes them read back as what was meant, for
/// both roles; a close reason is cut to fit at a character boundary.
#[test]
fn fragments_and_closes_read_back() {
    for (writer, reader) in [(Role::Client, Role::Server), (Role::Server, Role::Client)] {
        let mut w = encoder(writer);
        w.fragment(true, false, false, Bytes::from_static(b"he"));
        w.pong(Bytes::from_static(b"p"));
        w.fragment(false, false, true, Bytes::from_static(b"llo"));
        w.fragment(true, true, true, Bytes::from(vec![1u8; 5_000]));
        w.close_with(Some(4000), &"é".repeat(100));
        let mut bytes = drain(&mut w);
        let mut w = encoder(writer);
        w.close_with(None, "ignored without a code");
        bytes.extend(drain(&mut w));
        let got = parse_all(reader, 10_000, &bytes).unwrap();
        let reason = "é".repeat(61); // 122 bytes: the 62nd would end past 123
        let want = [
            WsMessage::Pong,
            WsMessage::Text(Bytes::from_static(b"hello")),
            WsMessage::Binary(Bytes::from(vec![1u8; 5_000])),
            WsMessage::Close(Some((4000, reason))),
            WsMessage::Close(None),
        ];
        assert_eq!(got, want, "{writer:?}");
    }
}

#[test]
fn rule_breakers_are_refused() {
    let cases: &[(&str, Role, Vec<u8>)] = &[
        ("unmasked to a server", Role::Server, vec![0x82, 1, 0]),
        ("masked to a client", Role::Client, vec![0x82, 0x81, 1, 2, 3, 4, 0]),
        ("reserved bits", Role::Client, vec![0xC2, 0]),
        ("reserved opcode", Role::Client, vec![0x83, 0]),
        ("fragmented ping", Role::Client, vec![0x09, 0]),
        ("long ping", Role::Client, [vec![0x89, 126, 0, 126], vec![0; 126]].concat()),
        ("lone continuation", Role::Client, vec![0x80, 0]),
        ("message inside a message", Role::Client, vec![0x02, 0, 0x82, 0]),
        ("top length bit", Role::Client, vec![0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0]),
    ];
    for (what, role, bytes) in cases {
        let r = parse_all(*role, 1000, bytes);
        assert!(matches!(r, Err(WsError::Protocol(_))), "{what}: {r:?}");
    }
}

#[test]
fn oversized_messages_are_refused_from_their_header() {
    // A header announcing 2^40 bytes: refused before any of it is buffered.
    let r = parse_all(Role::Client, 1000, &[0x82, 127, 0, 0, 1, 0, 0, 0, 0, 0]);
    assert!(matches!(r, Err(WsError::TooLarge { .. })), "{r:?}");
    // Fragments that add up past the limit.
    let bytes = [&[0x02, 100][..], &[0; 100], &[0x80, 100], &[0; 100]].concat();
    let r = parse_all(Role::Client, 150, &bytes);
    assert!(matches!(r, Err(WsError::TooLarge { size: 200, .. })), "{r:?}");
}

#[test]
fn close_codes_are_read() {
    let close = |code, reason: &str| WsMessage::Close(Some((code, reason.to_string())));
    assert_eq!(parse_all(Role::Client, 10, &[0x88, 2, 0x03, 0xE8]).unwrap(), vec![close(1000, "")]);
    assert_eq!(parse_all(Role::Client, 10, &[0x88, 4, 0x0F, 0xA0, b'o', b'k']).unwrap(), vec![close(4000, "ok")]);
    assert_eq!(parse_all(Role::Client, 10, &[0x88, 0]).unwrap(), vec![WsMessage::Close(None)]);
    let r = parse_all(Role::Client, 10, &[0x88, 3, 0x03, 0xE8, 0xFF]);
    assert!(matches!(r, Err(WsError::Utf8(_))), "a close reason that is not UTF-8: {r:?}");
}

proptest::proptest! {
    /// Whatever a peer sends, the reader answers with messages or an error, never
    /// a panic, and the answer does not depend on how the bytes were split into reads.
    #[test]
    fn any_bytes_in_any_reads_give_the_same_answer(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        cut in 0usize..400,
        server in proptest::prelude::any::<bool>(),
    ) {
        let role = if server { Role::Server } else { Role::Client };
        let whole = parse_all(role, 300, &bytes).map_err(|e| e.to_string());
        let mut r = WsDecoder::new(role, 300);
        let cut = cut.min(bytes.len());
        let mut got = Vec::new();
        let mut failed = None;
        for part in [&bytes[..cut], &bytes[cut..]] {
            r.push(part);
            loop {
                match r.poll_message() {
                    Ok(Some(m)) => got.push(m),
                    Ok(None) => break,
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
            if failed.is_some() {
                break;
            }
        }
        match (whole, failed) {
            (Err(a), Some(b)) => proptest::prop_assert_eq!(a, b),
            (Ok(a), None) => proptest::prop_assert_eq!(a, got),
            (a, b) => proptest::prop_assert!(false, "whole: {:?}, in two reads: {:?} / {:?}", a, got, b),
        }
    }

    /// Frames a writer makes read back as the messages it was given, for both roles.
    #[test]
    fn written_messages_read_back(
        messages in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..9000), 0..5),
        server in proptest::prelude::any::<bool>(),
    ) {
        let (writer, reader) = if server { (Role::Server, Role::Client) } else { (Role::Client, Role::Server) };
        let slices: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let bytes = frames(writer, &slices);
        let got = parse_all(reader, 10_000, &bytes).map_err(|e| e.to_string());
        let want: Vec<WsMessage> = messages.iter().map(|m| WsMessage::Binary(Bytes::copy_from_slice(m))).collect();
        proptest::prop_assert_eq!(got, Ok(want));
    }
}

/// A client's frame is masked with the key it is given, exactly as RFC 6455's example
/// lays it out (§5.7: a masked "Hello").
#[test]
fn a_client_frame_has_the_rfc_layout() {
    fn rfc_key() -> [u8; 4] {
        [0x37, 0xfa, 0x21, 0x3d]
    }
    let mut w = WsEncoder::new(Role::Client, rfc_key);
    w.fragment(true, false, true, Bytes::from_static(b"Hello"));
    assert_eq!(drain(&mut w), [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    let mut w = encoder(Role::Server);
    w.fragment(true, false, true, Bytes::from_static(b"Hello"));
    assert_eq!(drain(&mut w), [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
}

/// A fragment copied from a borrowed payload (`fragment_copied`, the bridge's path when
/// it keeps the message for its tap) is the same bytes as one handed over, for both
/// roles, first frames and continuations, binary and text, after a close nothing.
#[test]
fn a_copied_fragment_is_the_fragment_handed_over() {
    for role in [Role::Client, Role::Server] {
        for (first, binary, fin, payload) in [
            (true, true, true, &b"32 bytes of an echoed message.."[..]),
            (true, false, false, b"he"),
            (false, false, true, b"llo"),
            (true, true, true, b""),
            (true, true, true, &[7u8; 300][..]),
        ] {
            let (mut given, mut copied) = (encoder(role), encoder(role));
            given.fragment(first, binary, fin, Bytes::copy_from_slice(payload));
            copied.fragment_copied(first, binary, fin, payload);
            assert_eq!(drain(&mut copied), drain(&mut given), "{role:?} {first} {binary} {fin} {}", payload.len());
        }
        let mut w = encoder(role);
        w.close(1000);
        let close = drain(&mut w);
        w.fragment_copied(true, true, true, b"late");
        assert!(w.is_empty(), "{role:?}: nothing after a close ({} bytes of it)", close.len());
    }
}

/// Nothing follows a close frame (RFC 6455 §5.5.1): later commands queue nothing.
#[test]
fn nothing_is_queued_after_a_close() {
    let mut w = encoder(Role::Server);
    assert!(!w.is_closed());
    w.binary(Bytes::from_static(b"a"));
    w.close(1001);
    assert!(w.is_closed());
    w.binary(Bytes::from_static(b"b"));
    w.pong(Bytes::new());
    w.close(1000);
    let got = parse_all(Role::Client, 100, &drain(&mut w)).unwrap();
    assert_eq!(got, [WsMessage::Binary(Bytes::from_static(b"a")), WsMessage::Close(Some((1001, String::new())))]);
}

/// The decoder tells a clean end (between messages) from one that cuts a frame or a
/// fragmented message short.
#[test]
fn ends_between_messages_are_told_from_cut_ones() {
    let mut r = WsDecoder::new(Role::Client, 100);
    assert!(r.is_between_messages());
    r.push(&[0x82, 2, b'a']);
    assert_eq!(r.poll_message().unwrap(), None);
    assert!(!r.is_between_messages(), "inside a frame");
    r.push(&[b'b', 0x02, 1, b'c']);
    assert_eq!(r.poll_message().unwrap(), Some(WsMessage::Binary(Bytes::from_static(b"ab"))));
    assert_eq!(r.poll_message().unwrap(), None);
    assert!(!r.is_between_messages(), "inside a fragmented message");
    r.push(&[0x80, 0]);
    assert_eq!(r.poll_message().unwrap(), Some(WsMessage::Binary(Bytes::from_static(b"c"))));
    assert!(r.is_between_messages());
}

/// A read buffer always has room for a read, and what is read into it is decoded.
#[test]
fn the_read_buffer_has_room_and_feeds_the_decoder() {
    let mut r = WsDecoder::new(Role::Client, 100);
    let buf = r.read_buffer();
    assert!(buf.capacity() - buf.len() >= 4096);
    buf.put_slice(&[0x89, 1, b'p', 0x8A, 0]);
    assert_eq!(r.poll_message().unwrap(), Some(WsMessage::Ping(Bytes::from_static(b"p"))));
    assert_eq!(r.poll_message().unwrap(), Some(WsMessage::Pong));
    assert_eq!(r.poll_message().unwrap(), None);
}

/// Messages larger than a read (a batch of responses at 32 connections), read through
/// the read buffer in reads as large as a socket's may be, come back whole and in order,
/// whether the messages before are still held (the buffer's allocation shared with
/// them) or dropped at once (its allocation free to reuse); and the buffer has room for
/// every read.
#[test]
fn messages_larger_than_a_read_come_whole_through_the_read_buffer() {
    let sizes = [100, 20_000, 5, 40_000, 16_000, 70_000, 3, 16_380, 33_000];
    let messages: Vec<Vec<u8>> =
        sizes.iter().enumerate().map(|(i, &n)| (0..n).map(|b| (b * 7 + i) as u8).collect()).collect();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let wire = frames(Role::Client, &refs);
    for (hold, reads) in [(false, [1_000, 30_000, 65_536]), (true, [1_000, 30_000, 65_536]), (true, [4_096, 17, 9_000])]
    {
        let mut r = WsDecoder::new(Role::Server, 100_000);
        let mut got = Vec::new();
        let mut at = 0;
        let mut turn = 0;
        while at < wire.len() {
            let buf = r.read_buffer();
            let room = buf.capacity() - buf.len();
            assert!(room >= 4096, "room {room}");
            let n = room.min(wire.len() - at).min(reads[turn % reads.len()]);
            buf.put_slice(&wire[at..at + n]);
            at += n;
            turn += 1;
            while let Some(m) = r.poll_message().unwrap() {
                let WsMessage::Binary(b) = m else { panic!("not binary") };
                // Dropped at once, or held to the end (their bytes must stay intact).
                got.push(if hold { b } else { Bytes::copy_from_slice(&b) });
            }
        }
        assert!(r.is_between_messages());
        let got: Vec<&[u8]> = got.iter().map(|b| &b[..]).collect();
        assert_eq!(got, refs, "hold {hold}, reads {reads:?}");
    }
}

/// In a run of full-size frames (a large body's 64 KiB messages) read with
/// [`WsDecoder::set_frame_sized`] on, every frame after the first is decoded where the
/// reads put it, never copied into a new buffer: whether a read takes all the room
/// there is (the next frame's start would follow the frame read) or reads stop short
/// of a frame's end with less than the usual minimum room left for its rest. With it
/// off, the same reads copy frames' starts (the usual 16 KiB reads), as before.
#[test]
fn a_run_of_large_frames_is_decoded_where_it_was_read_when_frame_sized() {
    let payload: Vec<u8> = (0..65_536).map(|i| (i % 251) as u8).collect();
    let wire = frames(Role::Server, &[&payload[..]; 6]);
    let (frame, header) = (wire.len() / 6, wire.len() / 6 - payload.len());
    for sized in [true, false] {
        for read in [usize::MAX, 65_000, 32_000, 30_000] {
            let mut r = WsDecoder::new(Role::Client, 100_000);
            r.set_frame_sized(sized);
            // Each read: where in memory its bytes went, where on the wire they were, how many.
            let mut reads: Vec<(usize, usize, usize)> = Vec::new();
            let mut got = Vec::new();
            let mut at = 0;
            while at < wire.len() {
                let buf = r.read_buffer();
                let room = buf.capacity() - buf.len();
                // Less only for the rest of a frame whose start the buffer holds.
                assert!(room >= 4096 || (sized && room > 0 && !buf.is_empty()), "room {room}");
                let n = room.min(wire.len() - at).min(read);
                reads.push((buf.as_ptr() as usize + buf.len(), at, n));
                buf.put_slice(&wire[at..at + n]);
                at += n;
                while let Some(m) = r.poll_message().unwrap() {
                    let WsMessage::Binary(b) = m else { panic!("not binary") };
                    got.push(b);
                }
            }
            assert_eq!(got.len(), 6);
            let mut copied = 0;
            for (i, b) in got.iter().enumerate() {
                assert_eq!(&b[..], &payload[..], "frame {i}, reads of {read}");
                let on_wire = i * frame + header;
                let &(addr, from, _) = reads.iter().find(|&&(_, from, n)| (from..from + n).contains(&on_wire)).unwrap();
                if b.as_ptr() as usize != addr + on_wire - from {
                    copied += 1;
                }
            }
            // The first frame's start was read into a buffer made before its size was known.
            if sized {
                assert!(copied <= 1, "{copied} frames copied, reads of {read}");
            } else {
                assert!(copied >= 5, "only {copied} frames copied with 16 KiB reads, reads of {read}");
            }
        }
    }
}

/// Any mix of frame sizes, read in any pattern of read sizes, decodes to the same
/// messages whether buffers are sized for the frames or not, and the switch may flip
/// between any two reads (the tunnel's reader flips it by the bytes its streams hold).
#[test]
fn frame_sized_buffers_give_the_same_messages_as_the_usual_reads() {
    let mut seed = 0x9e37_79b9_u32;
    let mut next = move |n: u32| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed % n
    };
    for round in 0..40 {
        let messages: Vec<Vec<u8>> = (0..30)
            .map(|i| {
                let n = match next(4) {
                    0 => next(126),
                    1 => next(20_000),
                    2 => 65_536,
                    _ => 60_000 + next(5_600),
                } as usize;
                (0..n).map(|b| (b * 13 + i + round) as u8).collect()
            })
            .collect();
        let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let role = if round % 2 == 0 { Role::Client } else { Role::Server };
        let wire = frames(role, &refs);
        let peer = if role == Role::Client { Role::Server } else { Role::Client };
        let mut r = WsDecoder::new(peer, 100_000);
        let mut got = Vec::new();
        let mut at = 0;
        while at < wire.len() {
            r.set_frame_sized(next(3) != 0);
            let buf = r.read_buffer();
            let room = buf.capacity() - buf.len();
            assert!(room > 0, "no room for a read");
            let want = [usize::MAX, 1 + next(70_000) as usize, 1 + next(100) as usize][next(3) as usize];
            let n = room.min(wire.len() - at).min(want);
            buf.put_slice(&wire[at..at + n]);
            at += n;
            while let Some(m) = r.poll_message().unwrap() {
                let WsMessage::Binary(b) = m else { panic!("not binary") };
                // Held to the end: every buffer's bytes must stay intact.
                got.push(b);
            }
        }
        assert!(r.is_between_messages());
        let got: Vec<&[u8]> = got.iter().map(|b| &b[..]).collect();
        assert_eq!(got, refs, "round {round}");
    }
}

/// Writes `n` bytes of what `w` queued, as a socket that takes only part of a write
/// would, appending them to `out`.
fn write_some(w: &mut WsEncoder, n: usize, out: &mut Vec<u8>) {
    let mut t = w.transmit();
    let n = n.min(t.chunk().len());
    out.extend_from_slice(&t.chunk()[..n]);
    t.advance(n);
}

#[test]
fn frames_queued_between_partial_writes_go_out_in_order() {
    let big = Bytes::from(vec![8u8; 5_000]);
    let mut w = encoder(Role::Server);
    let mut out = Vec::new();
    w.binary(Bytes::from_static(b"first"));
    assert!(w.transmit().is_one_slice(), "small frames are written from one buffer");
    write_some(&mut w, 3, &mut out);
    w.binary(big.clone()); // its head joins the rest of "first"; the payload goes as it is
    assert!(!w.transmit().is_one_slice());
    write_some(&mut w, 4, &mut out);
    w.binary(Bytes::from_static(b"last"));
    {
        // A vectored write sees every queued byte, in order.
        let t = w.transmit();
        let mut slices = [std::io::IoSlice::new(&[]); 8];
        let n = t.chunks_vectored(&mut slices);
        let seen: usize = slices[..n].iter().map(|s| s.len()).sum();
        assert_eq!(seen, t.remaining());
    }
    while !w.is_empty() {
        write_some(&mut w, 1_000, &mut out);
    }
    let mut r = WsDecoder::new(Role::Client, 100_000);
    r.push(&out);
    assert_eq!(r.poll_message().unwrap(), Some(WsMessage::Binary(Bytes::from_static(b"first"))));
    assert_eq!(r.poll_message().unwrap(), Some(WsMessage::Binary(big)));
    assert_eq!(r.poll_message().unwrap(), Some(WsMessage::Binary(Bytes::from_static(b"last"))));
    assert_eq!(r.poll_message().unwrap(), None);
}

/// A wire of frames (one- and two-byte lengths, batches larger than the room left),
/// read through the read buffer with a read ending at every byte position (the reads
/// otherwise as large as the room lets them), decodes to the same messages as when
/// pushed whole. Frames over 64 KiB: the test above.
#[test]
fn frames_split_at_every_byte_position_come_whole_through_the_read_buffer() {
    let sizes = [3, 125, 126, 200, 0, 1_500, 4_000, 5_000, 7_000, 1_000];
    let messages: Vec<Vec<u8>> =
        sizes.iter().enumerate().map(|(i, &n)| (0..n).map(|b| (b * 5 + i) as u8).collect()).collect();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let wire = frames(Role::Client, &refs);
    let mut reference = WsDecoder::new(Role::Server, 100_000);
    reference.push(&wire);
    let mut want = Vec::new();
    while let Some(m) = reference.poll_message().unwrap() {
        want.push(m);
    }
    assert_eq!(want.len(), sizes.len());
    for split in 1..wire.len() {
        let mut r = WsDecoder::new(Role::Server, 100_000);
        let mut got = Vec::new();
        let mut at = 0;
        while at < wire.len() {
            let buf = r.read_buffer();
            let room = buf.capacity() - buf.len();
            let mut n = room.min(wire.len() - at);
            if at < split {
                n = n.min(split - at);
            }
            buf.put_slice(&wire[at..at + n]);
            at += n;
            while let Some(m) = r.poll_message().unwrap() {
                got.push(m);
            }
        }
        assert!(r.is_between_messages());
        assert!(got == want, "split at {split}");
    }
}

/// A frame as RFC 6455 §5.2 lays it out, byte by byte: the reference the encoder's
/// headers (one append for a short frame) are checked against.
fn reference_frame(first: u8, payload: &[u8], key: Option<[u8; 4]>) -> Vec<u8> {
    let mask_bit = if key.is_some() { 0x80 } else { 0 };
    let mut out = vec![first];
    match payload.len() {
        n @ 0..=125 => out.push(mask_bit | n as u8),
        n @ 126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if let Some(key) = key {
        out.extend_from_slice(&key);
    }
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key.map_or(0, |k| k[i % 4])));
    out
}

#[test]
fn frames_of_every_short_length_are_laid_out_as_the_rfc_says() {
    // Each length up to past the short header's 125, and the longer headers' edges; as
    // a copied fragment and as a handed-over one, first or continuation, last or not.
    let lengths = (0..=140).chain([0xFFFF, 0x1_0000]);
    for len in lengths {
        let payload: Vec<u8> = (0..len).map(|i| (i * 13 % 256) as u8).collect();
        for role in [Role::Client, Role::Server] {
            let k = (role == Role::Client).then(key);
            for (first, fin) in [(true, true), (true, false), (false, true), (false, false)] {
                let opcode = if first { OP_BINARY } else { OP_CONTINUATION };
                let want = reference_frame(if fin { 0x80 } else { 0 } | opcode, &payload, k);
                let mut w = encoder(role);
                w.fragment_copied(first, true, fin, &payload);
                assert_eq!(drain(&mut w), want, "copied, length {len}, {role:?}, first {first}, fin {fin}");
                let mut w = encoder(role);
                w.fragment(first, true, fin, Bytes::copy_from_slice(&payload));
                assert_eq!(drain(&mut w), want, "handed over, length {len}, {role:?}, first {first}, fin {fin}");
            }
        }
    }
}
