//! The compute-proof fragment kind: `C = A·B` for `n×n` int8 matrices regenerated from
//! a seed ([`crate::seed`]), with int32 results committed row by row: a row's digest
//! is the Merkle root over SHA-256 digests of its [`ROW_CHUNK`]-element pieces
//! (little-endian i32 bytes), and the row digests are the leaves of the product's
//! [`MerkleTree`]. A challenge names rows; the device answers with the rows and their
//! Merkle proofs, and any honest device (CPU or GPU) reproduces them bit for bit.
//!
//! Why pieces: one SHA-256 stream per row is sequential, so a GPU could hash a product
//! with only `n` threads, far too few to keep up with its int8 GEMM; with pieces it
//! runs `n · ⌈n / ROW_CHUNK⌉` at once. A row of at most [`ROW_CHUNK`] elements is one
//! piece, and its digest is that piece's SHA-256.
//!
//! This module owns the shapes, inputs and commitments; [`cpu`] owns the CPU product.

pub mod challenge;
pub mod cpu;

use crate::merkle::{Hash, MerkleTree};
use crate::seed;
use sha2::{Digest, Sha256};

/// Largest supported `n`. int32 accumulation cannot overflow below 131,072
/// (`n · 128² < 2³¹`); this lower bound also keeps a single matrix under 1 GiB.
pub const MAX_N: usize = 32_768;

/// A matrix that does not have the shape asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// `n` is zero or above [`MAX_N`].
    #[error("matrix size n = {0} is outside 1..={MAX_N}")]
    Size(usize),
    /// An operand's length is not `n²`.
    #[error("{operand} has {len} elements, expected {expected}")]
    Length {
        /// Which operand (`a`, `b` or `c`).
        operand: &'static str,
        /// Its length.
        len: usize,
        /// `n²`.
        expected: usize,
    },
}

/// Checks `n` and returns `n²`.
pub(crate) fn square(n: usize) -> Result<usize, ShapeError> {
    if n == 0 || n > MAX_N {
        return Err(ShapeError::Size(n));
    }
    Ok(n * n)
}

/// Checks that `m` is an `n×n` matrix.
pub(crate) fn check(operand: &'static str, m: &[impl Sized], n: usize) -> Result<(), ShapeError> {
    let expected = square(n)?;
    if m.len() != expected {
        return Err(ShapeError::Length {
            operand,
            len: m.len(),
            expected,
        });
    }
    Ok(())
}

/// The operands `(A, B)` of the fragment with `seed`, row-major.
pub fn inputs(seed: u64, n: usize) -> Result<(Vec<i8>, Vec<i8>), ShapeError> {
    let len = square(n)?;
    Ok((
        seed::i8_vec(seed, seed::STREAM_A, len),
        seed::i8_vec(seed, seed::STREAM_B, len),
    ))
}

/// Elements of a row hashed as one leaf of the row's tree (2 KiB). Larger pieces cost
/// the GPU parallelism; smaller ones cost both devices more parent hashes (about one
/// SHA-256 block per 16 hashed now).
pub const ROW_CHUNK: usize = 512;

/// Pieces a row of `n` elements is hashed in.
pub fn pieces_per_row(n: u32) -> u32 {
    n.div_ceil(ROW_CHUNK as u32)
}

/// The digest of one row: the Merkle root over the SHA-256 of each [`ROW_CHUNK`]
/// elements' little-endian bytes.
pub fn row_digest(row: &[i32]) -> Hash {
    let pieces = row
        .chunks(ROW_CHUNK)
        .map(|piece| {
            let mut h = Sha256::new();
            for v in piece {
                h.update(v.to_le_bytes());
            }
            h.finalize().into()
        })
        .collect();
    MerkleTree::new(pieces).root()
}

/// The digest of every row of the `n×n` result `c`.
pub fn row_digests(c: &[i32], n: usize) -> Result<Vec<Hash>, ShapeError> {
    check("c", c, n)?;
    Ok(c.chunks_exact(n).map(row_digest).collect())
}

/// The Merkle tree over the row digests of `c`; its root is the fragment's commitment.
pub fn commit(c: &[i32], n: usize) -> Result<MerkleTree, ShapeError> {
    Ok(MerkleTree::new(row_digests(c, n)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::verify;

    #[test]
    fn a_fragment_commits_and_a_challenged_row_proves() {
        let n = 37;
        let (a, b) = inputs(9, n).unwrap();
        let c = cpu::matmul(&a, &b, n).unwrap();
        let tree = commit(&c, n).unwrap();
        let row = &c[5 * n..6 * n];
        let proof = tree.prove(5).unwrap();
        assert!(verify(&tree.root(), n, 5, &row_digest(row), &proof));
        let mut forged = row.to_vec();
        forged[0] += 1;
        assert!(!verify(&tree.root(), n, 5, &row_digest(&forged), &proof));
    }

    #[test]
    fn row_digests_hash_little_endian_bytes() {
        let expected: Hash = Sha256::digest([1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]).into();
        assert_eq!(row_digest(&[1, -1]), expected);
    }

    #[test]
    fn a_long_row_is_the_merkle_root_of_its_pieces() {
        let row: Vec<i32> = (0..2 * ROW_CHUNK as i32 + 1).map(|v| v * 7 - 3).collect();
        let piece = |p: &[i32]| -> Hash {
            Sha256::digest(p.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).into()
        };
        let (p0, rest) = row.split_at(ROW_CHUNK);
        let (p1, p2) = rest.split_at(ROW_CHUNK);
        let expected =
            crate::merkle::parent(&crate::merkle::parent(&piece(p0), &piece(p1)), &piece(p2));
        assert_eq!(row_digest(&row), expected);
        assert_eq!(row_digest(p0), piece(p0));
        let mut changed = row.clone();
        changed[2 * ROW_CHUNK] += 1;
        assert_ne!(row_digest(&changed), expected);
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        assert_eq!(inputs(1, 0), Err(ShapeError::Size(0)));
        assert_eq!(inputs(1, MAX_N + 1), Err(ShapeError::Size(MAX_N + 1)));
        assert!(matches!(
            row_digests(&[1, 2, 3], 2),
            Err(ShapeError::Length { operand: "c", .. })
        ));
    }
}
