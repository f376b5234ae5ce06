//! The tie-break hashes. The TypeScript twin implements the same two functions bit for bit
//! (ts/orc/placement/twin.ts); the test vectors below are repeated in its tests.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bits, over the UTF-8 bytes of `s`.
pub fn fnv1a64(s: &str) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in s.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The splitmix64 finaliser: spreads `seed ^ compute` so that every request orders ties anew.
pub fn mix64(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The tie key of a compute for a request: higher wins among equal scores.
#[inline]
pub fn tie_key(request_seed: u64, compute_hash: u64) -> u64 {
    mix64(request_seed ^ compute_hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_vectors_match_the_published_ones() {
        assert_eq!(fnv1a64(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn fnv_hashes_utf8_bytes() {
        // The twin walks UTF-16 code units and must encode the same bytes.
        assert_eq!(fnv1a64("zoné-€-😀"), 0x3eaa_91ea_bcfe_83c1);
    }

    #[test]
    fn mix_vectors() {
        assert_eq!(mix64(0), 0);
        assert_eq!(mix64(1), 0x5692_161d_100b_05e5);
        assert_eq!(
            tie_key(fnv1a64("wu-1"), fnv1a64("c-1")),
            mix64(fnv1a64("wu-1") ^ fnv1a64("c-1"))
        );
    }
}
