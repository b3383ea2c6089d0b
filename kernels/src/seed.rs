//! Deterministic inputs from a `u64` seed, so every device (CPU or GPU, any thread
//! layout) regenerates bit-identical fragment inputs without shipping them.
//!
//! The generator is counter-based SplitMix64: word `j` of stream `s` under seed `x` is
//! `mix(key + (j + 1) · GAMMA)` with `key = mix(x ^ mix(s))`. Any element can be
//! computed on its own, which is what a GPU kernel needs; byte `b` (little-endian) of
//! word `j` is int8 element `8j + b`. A CUDA port must reproduce exactly this.

/// The SplitMix64 increment (2^64 / golden ratio, odd).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Stream of the left operand `A` in a compute-proof fragment.
pub const STREAM_A: u64 = 0;
/// Stream of the right operand `B` in a compute-proof fragment.
pub const STREAM_B: u64 = 1;
/// Stream of per-product seeds: product `p` of a compute-proof task uses word `p`.
pub const STREAM_PRODUCT: u64 = 2;
/// Stream of the class means of the synthetic classification data set.
pub const STREAM_CLASS_MEANS: u64 = 3;
/// Stream of the labels of the synthetic data set (word `s` labels sample `s`).
pub const STREAM_LABELS: u64 = 4;
/// Stream of the feature noise of the synthetic data set.
pub const STREAM_NOISE: u64 = 5;
/// Stream of the initial weights of a training model.
pub const STREAM_WEIGHTS: u64 = 6;
/// Stream of the bytes a data-processing task hashes.
pub const STREAM_BYTES: u64 = 7;

/// `2⁻²⁴`: the spacing of [`unit_f32`] values.
const UNIT_F32_STEP: f32 = 1.0 / 16_777_216.0;

/// The SplitMix64 finalizer: a bijective avalanche of 64 bits.
pub const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The key of one stream under one seed; distinct streams give unrelated sequences.
pub const fn stream_key(seed: u64, stream: u64) -> u64 {
    mix(seed ^ mix(stream))
}

/// Word `index` of the stream with key `key`.
pub const fn word(key: u64, index: u64) -> u64 {
    mix(key.wrapping_add(index.wrapping_add(1).wrapping_mul(GAMMA)))
}

/// Fills `out` with the int8 elements of `(seed, stream)`, starting at element 0.
pub fn fill_i8(seed: u64, stream: u64, out: &mut [i8]) {
    let key = stream_key(seed, stream);
    for (j, chunk) in out.chunks_mut(8).enumerate() {
        let bytes = word(key, j as u64).to_le_bytes();
        for (o, b) in chunk.iter_mut().zip(bytes) {
            *o = b as i8;
        }
    }
}

/// Fills `out` with bytes `offset..offset + out.len()` of `(seed, stream)`: byte `i` is
/// byte `i mod 8` (little-endian) of word `i / 8`, the same layout as [`fill_i8`], so any
/// range regenerates on its own.
pub fn fill_bytes(seed: u64, stream: u64, offset: u64, out: &mut [u8]) {
    let key = stream_key(seed, stream);
    let mut i = offset;
    let mut rest = out;
    while !rest.is_empty() {
        let bytes = word(key, i / 8).to_le_bytes();
        let from = (i % 8) as usize;
        let take = (8 - from).min(rest.len());
        let (head, tail) = rest.split_at_mut(take);
        head.copy_from_slice(&bytes[from..from + take]);
        rest = tail;
        i = i.wrapping_add(take as u64);
    }
}

/// A uniform `f32` in `[0, 1)` from the top 24 bits of `w`. Both steps are exact in
/// f32 (a 24-bit integer, times a power of two), so every device gets the same value.
pub fn unit_f32(w: u64) -> f32 {
    (w >> 40) as f32 * UNIT_F32_STEP
}

/// `len` int8 elements of `(seed, stream)`.
pub fn i8_vec(seed: u64, stream: u64, len: usize) -> Vec<i8> {
    let mut v = vec![0; len];
    fill_i8(seed, stream, &mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_and_stream_regenerate_identical_bytes() {
        assert_eq!(i8_vec(42, STREAM_A, 1000), i8_vec(42, STREAM_A, 1000));
    }

    #[test]
    fn different_seeds_or_streams_give_different_bytes() {
        let base = i8_vec(42, STREAM_A, 256);
        assert_ne!(base, i8_vec(43, STREAM_A, 256));
        assert_ne!(base, i8_vec(42, STREAM_B, 256));
    }

    #[test]
    fn a_prefix_is_independent_of_the_length_asked_for() {
        let long = i8_vec(7, STREAM_B, 100);
        assert_eq!(&long[..13], i8_vec(7, STREAM_B, 13).as_slice());
    }

    #[test]
    fn the_stream_is_pinned_so_gpu_ports_can_check_against_it() {
        // First SplitMix64 outputs from state 0 are published test vectors; word(0, j)
        // is that sequence, which anchors the formula in the module docs.
        assert_eq!(word(0, 0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(word(0, 1), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn bytes_at_any_offset_match_the_int8_layout() {
        let all: Vec<u8> = i8_vec(3, STREAM_BYTES, 64)
            .into_iter()
            .map(|v| v as u8)
            .collect();
        for (start, end) in [(0, 64), (5, 6), (3, 29), (8, 16), (63, 64)] {
            let mut part = vec![0; end - start];
            fill_bytes(3, STREAM_BYTES, start as u64, &mut part);
            assert_eq!(part, &all[start..end], "{start}..{end}");
        }
    }

    #[test]
    fn unit_floats_are_exact_24_bit_fractions_in_range() {
        assert_eq!(unit_f32(0), 0.0);
        assert_eq!(unit_f32(u64::MAX), 1.0 - UNIT_F32_STEP);
        assert_eq!(unit_f32(1 << 63), 0.5);
    }

    #[test]
    fn values_cover_the_whole_int8_range() {
        let v = i8_vec(1, STREAM_A, 1 << 16);
        assert!(v.contains(&i8::MIN) && v.contains(&i8::MAX));
    }
}
