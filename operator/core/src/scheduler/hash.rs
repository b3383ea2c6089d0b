//! Stable, seedable hashing for tie-breaks. `std`'s hashers are not promised to stay the
//! same across Rust releases, and decisions must replay identically after an upgrade, so
//! the scheduler uses these two fixed functions instead.

/// FNV-1a over bytes: a stable hash of a device or task name.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// SplitMix64's finalizer: spreads `seed ^ h` so that a different seed reorders ties.
pub(crate) fn mix(seed: u64, h: u64) -> u64 {
    let mut z = (seed ^ h).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_pinned_so_decisions_replay_across_releases() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(mix(1, fnv1a(b"a")), mix(2, fnv1a(b"a")));
        assert_eq!(mix(0, 0), mix(0, 0));
    }
}
