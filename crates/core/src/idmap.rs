//! Maps keyed by [`StreamId`]: every frame looks its stream up, so the hash is a
//! multiply instead of SipHash. The ids are the session's own, handed out in
//! sequence (a peer cannot choose keys that collide), and a multiply by a large odd
//! constant spreads consecutive ids over the hash's high bits, which hashbrown uses.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::ids::StreamId;

/// A `HashMap` from stream ids.
pub type IdMap<V> = HashMap<StreamId, V, BuildHasherDefault<IdHasher>>;

/// The [`IdMap`] hasher (Fibonacci hashing of the id).
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by `u32` keys; kept correct for any other.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.0 = u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_ids_spread_over_the_high_bits() {
        let top7 = |id: u32| {
            let mut h = IdHasher::default();
            h.write_u32(id);
            h.finish() >> 57
        };
        let distinct: std::collections::HashSet<u64> = (1..=255u32).step_by(2).map(top7).collect();
        assert!(distinct.len() > 64, "only {} distinct tag values", distinct.len());
        let mut m = IdMap::default();
        for id in (1..10_000u32).step_by(2) {
            m.insert(id, id);
        }
        assert!((1..10_000u32).step_by(2).all(|id| m.get(&id) == Some(&id)));
        assert_eq!(m.get(&2), None);
    }
}
