//! The compute-proof fragment kind: `C = A·B` for `n×n` int8 matrices regenerated from
//! a seed ([`crate::seed`]), with int32 results committed row by row: each row's
//! little-endian i32 bytes are hashed with SHA-256 and the row digests are the leaves
//! of a [`MerkleTree`]. A challenge names rows; the device answers with the rows and
//! their Merkle proofs, and any honest device (CPU or GPU) reproduces them bit for bit.
//!
//! This module owns the shapes, inputs and commitments; [`cpu`] owns the CPU product.

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

/// SHA-256 of one row's little-endian i32 bytes.
pub fn row_digest(row: &[i32]) -> Hash {
    let mut h = Sha256::new();
    for v in row {
        h.update(v.to_le_bytes());
    }
    h.finalize().into()
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
    fn bad_shapes_are_errors_not_panics() {
        assert_eq!(inputs(1, 0), Err(ShapeError::Size(0)));
        assert_eq!(inputs(1, MAX_N + 1), Err(ShapeError::Size(MAX_N + 1)));
        assert!(matches!(
            row_digests(&[1, 2, 3], 2),
            Err(ShapeError::Length { operand: "c", .. })
        ));
    }
}
