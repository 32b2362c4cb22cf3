//! Relaying WebSocket messages: what an end checks before it writes a tunneled
//! message to a real WebSocket.
//!
//! A message crosses the tunnel as fragments (`WsMessage` frames, `fin` on the last),
//! cut wherever the stream window or the frame size fell, so a text message may be
//! split inside a UTF-8 character. An end that writes fragments to its WebSocket as
//! they arrive (never holding a whole message) checks each one with a
//! [`WsMessageCheck`]: the message size against the configured maximum (close code
//! 1009) and the text's UTF-8 across fragment boundaries (close code 1007), as RFC 6455
//! requires of a receiving endpoint.

/// The default largest WebSocket message relayed, in bytes: 16 MiB.
pub const DEFAULT_MAX_WS_MESSAGE: usize = 16 * 1024 * 1024;

/// RFC 6455 close codes the ends use themselves.
pub mod ws_close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The endpoint is going away (the other end vanished, the tunnel closed).
    pub const GOING_AWAY: u16 = 1001;
    /// A protocol error.
    pub const PROTOCOL: u16 = 1002;
    /// No status code was present (never sent in a close frame).
    pub const NO_STATUS: u16 = 1005;
    /// A text message was not valid UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// A message was larger than the maximum.
    pub const TOO_BIG: u16 = 1009;
    /// An unexpected condition.
    pub const INTERNAL: u16 = 1011;

    /// True for the codes an endpoint may put in a close frame (RFC 6455 §7.4 and the
    /// IANA registry): 1000-1003, 1007-1014 and 3000-4999. 1005, 1006 and 1015 only
    /// describe a closure locally.
    pub fn sendable(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// Why a relayed message must not be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WsViolation {
    /// The message grew past the maximum.
    #[error("message larger than {max} bytes")]
    TooBig {
        /// The maximum.
        max: usize,
    },
    /// A text message is not valid UTF-8.
    #[error("invalid UTF-8 in a text message")]
    InvalidUtf8,
}

impl WsViolation {
    /// The close code that reports it: 1009 or 1007.
    pub fn close_code(&self) -> u16 {
        match self {
            WsViolation::TooBig { .. } => ws_close::TOO_BIG,
            WsViolation::InvalidUtf8 => ws_close::INVALID_DATA,
        }
    }
}

/// Where a checked fragment belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsFragment {
    /// It starts a message (write it with the text or binary opcode; later fragments
    /// are continuations).
    pub first: bool,
    /// The message is binary (as its first fragment said).
    pub binary: bool,
}

/// Checks the fragments of relayed WebSocket messages, one message after another.
#[derive(Debug, Clone)]
pub struct WsMessageCheck {
    max: usize,
    /// Inside a message: its type; `None` between messages.
    current: Option<bool>,
    size: usize,
    /// The start of a UTF-8 character cut by a fragment boundary.
    carry: [u8; 4],
    carry_len: usize,
}

impl WsMessageCheck {
    /// A checker for messages of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        WsMessageCheck { max, current: None, size: 0, carry: [0; 4], carry_len: 0 }
    }

    /// Checks the next fragment. `binary` counts only on a message's first fragment.
    /// After an error the checker is in an unspecified state: close the WebSocket.
    /// Inlined into the bridge's loop (a hint: fat LTO kept it out of line): the call
    /// and its `Result` through memory cost ~0.02k instructions an echo, client and
    /// server (docs/BENCHMARKS.md, twenty-first round, echo3). The UTF-8 check of a
    /// text message stays a call of its own.
    #[inline]
    pub fn push(&mut self, binary: bool, fin: bool, data: &[u8]) -> Result<WsFragment, WsViolation> {
        let first = self.current.is_none();
        let binary = *self.current.get_or_insert(binary);
        self.size = self.size.saturating_add(data.len());
        if self.size > self.max {
            return Err(WsViolation::TooBig { max: self.max });
        }
        if !binary {
            self.check_utf8(data, fin)?;
        }
        if fin {
            self.current = None;
            self.size = 0;
        }
        Ok(WsFragment { first, binary })
    }

    fn check_utf8(&mut self, mut data: &[u8], fin: bool) -> Result<(), WsViolation> {
        if self.carry_len > 0 {
            // Complete the character the previous fragment cut.
            let width = utf8_width(self.carry[0]);
            let take = (width - self.carry_len).min(data.len());
            self.carry[self.carry_len..self.carry_len + take].copy_from_slice(&data[..take]);
            self.carry_len += take;
            data = &data[take..];
            match std::str::from_utf8(&self.carry[..self.carry_len]) {
                Ok(_) => self.carry_len = 0,
                Err(e) if e.error_len().is_none() && !fin => return Ok(()),
                Err(_) => return Err(WsViolation::InvalidUtf8),
            }
        }
        match std::str::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() && !fin => {
                let rest = &data[e.valid_up_to()..];
                self.carry[..rest.len()].copy_from_slice(rest);
                self.carry_len = rest.len();
                Ok(())
            }
            Err(_) => Err(WsViolation::InvalidUtf8),
        }
    }
}

/// The length of the UTF-8 sequence a lead byte starts (a valid prefix was checked).
fn utf8_width(lead: u8) -> usize {
    match lead {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(check: &mut WsMessageCheck, parts: &[(&[u8], bool)]) -> Result<(), WsViolation> {
        for (data, fin) in parts {
            check.push(false, *fin, data)?;
        }
        Ok(())
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn text_cut_inside_characters_at_every_position_is_valid() {
        let text = "aé€😀z".as_bytes();
        for i in 0..=text.len() {
            for j in i..=text.len() {
                let mut check = WsMessageCheck::new(100);
                let parts = [(&text[..i], false), (&text[i..j], false), (&text[j..], true)];
                assert_eq!(feed(&mut check, &parts), Ok(()), "cut at {i} and {j}");
            }
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn invalid_text_is_caught_wherever_it_is_cut() {
        let bad: [&[u8]; 4] = [b"ab\xffcd", "é".as_bytes().split_at(1).0, b"\xe2\x82x", b"\xf0\x9f\x98"];
        for text in bad {
            for i in 0..=text.len() {
                let mut check = WsMessageCheck::new(100);
                let parts = [(&text[..i], false), (&text[i..], true)];
                assert_eq!(feed(&mut check, &parts), Err(WsViolation::InvalidUtf8), "{text:?} cut at {i}");
            }
        }
        // Binary messages are not text.
        assert!(WsMessageCheck::new(10).push(true, true, b"\xff").is_ok());
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn size_is_counted_per_message_and_fragments_know_their_place() {
        let mut check = WsMessageCheck::new(4);
        assert_eq!(check.push(true, false, b"ab"), Ok(WsFragment { first: true, binary: true }));
        // Continuations keep the first fragment's type.
        assert_eq!(check.push(false, true, b"cd"), Ok(WsFragment { first: false, binary: true }));
        assert_eq!(check.push(false, true, b"efgh"), Ok(WsFragment { first: true, binary: false }));
        assert_eq!(check.push(false, true, b""), Ok(WsFragment { first: true, binary: false }));
        check.push(true, false, b"abc").unwrap();
        assert_eq!(check.push(true, true, b"de"), Err(WsViolation::TooBig { max: 4 }));
        assert_eq!(WsViolation::TooBig { max: 4 }.close_code(), 1009);
        assert_eq!(WsViolation::InvalidUtf8.close_code(), 1007);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn only_real_codes_may_be_sent() {
        for code in [1000, 1001, 1002, 1003, 1007, 1009, 1011, 1014, 3000, 4999] {
            assert!(ws_close::sendable(code), "{code}");
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 2999, 5000, u16::MAX] {
            assert!(!ws_close::sendable(code), "{code}");
        }
    }
}
