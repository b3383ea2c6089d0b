//! A binary SHA-256 Merkle tree over 32-byte leaves (row digests), with inclusion
//! proofs for challenge-response verification. Pure; no I/O.
//!
//! Shape, which prover and verifier must agree on:
//! - Leaves are used as given (they are already digests); level 0 is the leaves.
//! - A parent is `SHA-256(0x01 ‖ left ‖ right)`. The prefix keeps a parent preimage
//!   (65 bytes) distinct from any row preimage (a multiple of 4 bytes).
//! - An odd node at the end of a level is promoted to the next level unchanged (no
//!   duplication, so no two leaf lists share a root the way Bitcoin's duplicate-last
//!   rule allows). Its proof has no sibling at that level, which is why verification
//!   takes the leaf count: it fixes the proof's exact length and shape.
//! - One leaf: the root is the leaf. No leaves: the root is `SHA-256("")`.
//! - The root does not commit to the leaf count; the verifier supplies it from the
//!   task (a fragment's row count), never from the prover.

use sha2::{Digest, Sha256};

/// A 32-byte digest.
pub type Hash = [u8; 32];

/// Prefix of a parent node's preimage.
const NODE_PREFIX: u8 = 0x01;

/// Hash of two children.
pub fn parent(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([NODE_PREFIX]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// All levels of a tree, leaves first, root last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleTree {
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// Builds the tree over `leaves`.
    pub fn new(leaves: Vec<Hash>) -> Self {
        let mut levels = vec![leaves];
        while let Some(last) = levels.last()
            && last.len() > 1
        {
            let next = last
                .chunks(2)
                .filter_map(|pair| match pair {
                    [l, r] => Some(parent(l, r)),
                    [odd] => Some(*odd),
                    _ => None,
                })
                .collect();
            levels.push(next);
        }
        Self { levels }
    }

    /// Number of leaves.
    pub fn leaf_count(&self) -> usize {
        self.levels.first().map_or(0, Vec::len)
    }

    /// The root (see the module docs for the empty and single-leaf cases).
    pub fn root(&self) -> Hash {
        match self.levels.last().and_then(|l| l.first()) {
            Some(r) => *r,
            None => Sha256::digest([]).into(),
        }
    }

    /// The siblings from leaf `index` up to the root, skipping levels where the path
    /// node is a promoted odd node; `None` when `index` is out of range.
    pub fn prove(&self, index: usize) -> Option<Vec<Hash>> {
        if index >= self.leaf_count() {
            return None;
        }
        let mut proof = Vec::new();
        let mut i = index;
        for level in &self.levels[..self.levels.len() - 1] {
            if let Some(sibling) = level.get(i ^ 1) {
                proof.push(*sibling);
            }
            i /= 2;
        }
        Some(proof)
    }
}

/// Whether `leaf` is leaf `index` of the `leaf_count`-leaf tree with root `root`.
/// The proof must have exactly the length the shape implies; never panics.
pub fn verify(root: &Hash, leaf_count: usize, index: usize, leaf: &Hash, proof: &[Hash]) -> bool {
    climb(leaf_count, index, leaf, proof).is_some_and(|r| r == *root)
}

/// The root `proof` leads to from `leaf` at `index` of a `leaf_count`-leaf tree; `None`
/// when the proof does not have exactly the shape the tree implies. For a proof whose
/// root is itself a leaf one level up (a row inside a product inside a fragment).
pub fn climb(leaf_count: usize, index: usize, leaf: &Hash, proof: &[Hash]) -> Option<Hash> {
    if index >= leaf_count {
        return None;
    }
    let mut siblings = proof.iter();
    let (mut node, mut i, mut width) = (*leaf, index, leaf_count);
    while width > 1 {
        if (i ^ 1) < width {
            let s = siblings.next()?;
            node = if i % 2 == 0 {
                parent(&node, s)
            } else {
                parent(s, &node)
            };
        }
        i /= 2;
        width = width.div_ceil(2);
    }
    siblings.next().is_none().then_some(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| Sha256::digest(i.to_le_bytes()).into())
            .collect()
    }

    #[test]
    fn every_leaf_proves_for_many_tree_sizes() {
        for n in 1..=33 {
            let tree = MerkleTree::new(leaves(n));
            for (i, leaf) in leaves(n).iter().enumerate() {
                let proof = tree.prove(i).unwrap();
                assert!(verify(&tree.root(), n, i, leaf, &proof), "n={n} i={i}");
            }
        }
    }

    #[test]
    fn a_tampered_leaf_or_sibling_fails() {
        let tree = MerkleTree::new(leaves(7));
        let mut leaf = leaves(7)[3];
        let proof = tree.prove(3).unwrap();
        let root = tree.root();
        leaf[0] ^= 1;
        assert!(!verify(&root, 7, 3, &leaf, &proof));
        let mut bad = proof.clone();
        bad[0][31] ^= 0x80;
        assert!(!verify(&root, 7, 3, &leaves(7)[3], &bad));
    }

    #[test]
    fn a_proof_for_another_index_or_shape_fails() {
        let tree = MerkleTree::new(leaves(6));
        let proof = tree.prove(2).unwrap();
        let leaf = leaves(6)[2];
        assert!(!verify(&tree.root(), 6, 3, &leaf, &proof));
        // 4 leaves imply a shorter path; the proof's extra sibling is rejected.
        assert!(!verify(&tree.root(), 4, 2, &leaf, &proof));
        assert!(!verify(&tree.root(), 6, 6, &leaf, &proof));
        let mut longer = proof.clone();
        longer.push([0; 32]);
        assert!(!verify(&tree.root(), 6, 2, &leaf, &longer));
        assert!(!verify(&tree.root(), 6, 2, &leaf, &proof[..1]));
    }

    #[test]
    fn odd_nodes_are_promoted_not_duplicated() {
        let l = leaves(3);
        let expected = parent(&parent(&l[0], &l[1]), &l[2]);
        assert_eq!(MerkleTree::new(l.clone()).root(), expected);
        let mut dup = l.clone();
        dup.push(l[2]);
        assert_ne!(MerkleTree::new(dup).root(), expected);
    }

    #[test]
    fn degenerate_trees_have_defined_roots() {
        let one = leaves(1);
        assert_eq!(MerkleTree::new(one.clone()).root(), one[0]);
        assert_eq!(MerkleTree::new(one.clone()).prove(0), Some(vec![]));
        let empty = MerkleTree::new(vec![]);
        assert_eq!(empty.root(), <Hash>::from(Sha256::digest([])));
        assert_eq!(empty.prove(0), None);
        assert!(!verify(&empty.root(), 0, 0, &[0; 32], &[]));
    }
}
