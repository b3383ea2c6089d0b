//! Spot checks of the kinds whose commitment is a Merkle tree over items the verifier
//! can recompute alone: data-processing chunks ([`crate::data`]) and inference samples
//! ([`crate::inference`]). The verifier draws leaves after the commitment, the worker
//! sends each leaf's Merkle proof, and the verifier recomputes the leaf from the seed
//! and climbs to the committed root. A leaf costs the verifier what it cost the worker
//! (one chunk hashed, one sample's forward pass), so few are drawn (the operator's
//! policy, `zop_core::verify::challenge`); a worker that corrupts a fraction `f` of its
//! items escapes `k` draws with probability `(1 − f)^k`.

use crate::data::{self, Operation};
use crate::merkle::{self, Hash, MerkleTree};
use crate::seed;
use crate::training::{DataSet, Network, TrainingError, model};
use std::ops::Range;

/// A fragment whose leaves can be recomputed.
#[derive(Debug, Clone, PartialEq)]
pub enum Leaves {
    /// Data processing: bytes `range` in chunks of `chunk_size`.
    Chunks {
        /// What each chunk's leaf commits to.
        operation: Operation,
        /// Task seed.
        seed: u64,
        /// Bytes per chunk.
        chunk_size: u64,
        /// The fragment's bytes.
        range: Range<u64>,
    },
    /// Inference: samples `range` of the data set through the reference model.
    Samples {
        /// Features, classes, samples and seed of the data set.
        data: (u32, u32, u64, u64),
        /// Hidden units of the reference perceptron, if any.
        hidden: Option<u32>,
        /// The fragment's samples.
        range: Range<u64>,
    },
}

/// Why a spot check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpotFailure {
    /// The proof from the recomputed leaf does not lead to the committed root.
    #[error("leaf {0}'s recomputed value does not prove into the committed root")]
    NotCommitted(u64),
    /// A leaf outside the fragment.
    #[error("leaf {0} is not in the fragment")]
    OutOfRange(u64),
    /// The parameters cannot be recomputed.
    #[error("the fragment cannot be recomputed: {0}")]
    Params(String),
}

impl SpotFailure {
    /// A stable reason for records and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotCommitted(_) => "NotCommitted",
            Self::OutOfRange(_) => "WrongLeaf",
            Self::Params(_) => "BadShape",
        }
    }
}

impl Leaves {
    /// Leaves in the fragment.
    pub fn count(&self) -> u64 {
        match self {
            Self::Chunks {
                chunk_size, range, ..
            } => (range.end.saturating_sub(range.start)).div_ceil((*chunk_size).max(1)),
            Self::Samples { range, .. } => range.end.saturating_sub(range.start),
        }
    }
}

/// Recomputes leaves of one fragment, building what they share once.
enum Recompute {
    Chunks(Operation, u64, u64, Range<u64>),
    Samples(Network, DataSet, u64),
}

fn params(e: TrainingError) -> SpotFailure {
    SpotFailure::Params(e.to_string())
}

impl Recompute {
    fn new(l: &Leaves) -> Result<Self, SpotFailure> {
        Ok(match l {
            Leaves::Chunks {
                operation,
                seed,
                chunk_size,
                range,
            } => {
                data::check(range, *chunk_size).map_err(|e| SpotFailure::Params(e.to_string()))?;
                Self::Chunks(*operation, *seed, *chunk_size, range.clone())
            }
            Leaves::Samples {
                data: (f, c, samples, seed),
                hidden,
                range,
            } => {
                let data =
                    DataSet::new(*f as usize, *c as usize, *samples, *seed).map_err(params)?;
                let model = Network::reference(&data, *hidden).map_err(params)?;
                Self::Samples(model, data, range.start)
            }
        })
    }

    fn leaf(&self, i: u64) -> Result<Hash, SpotFailure> {
        match self {
            Self::Chunks(op, seed, size, range) => {
                let from = range.start.saturating_add(i.saturating_mul(*size));
                let to = from.saturating_add(*size).min(range.end);
                if from >= to {
                    return Err(SpotFailure::OutOfRange(i));
                }
                let mut chunk = vec![0u8; (to - from) as usize];
                seed::fill_bytes(*seed, seed::STREAM_BYTES, from, &mut chunk);
                Ok(data::leaf(*op, &chunk).0)
            }
            Self::Samples(model, data, first) => {
                let item = first.saturating_add(i);
                let shard = data.shard(item..item + 1).map_err(params)?;
                let (x, y) = shard.sample(0).ok_or(SpotFailure::OutOfRange(i))?;
                let c = model.classes();
                let (mut h, mut z, mut p) = (vec![0.0; model.hidden()], vec![0.0; c], vec![0.0; c]);
                model.logits_into(x, &mut h, &mut z);
                let (_, prediction) = model::softmax(&z, y, &mut p);
                Ok(crate::inference::leaf(prediction, &p))
            }
        }
    }
}

/// Up to `k` distinct leaves of `count`, from `draw` (the caller's CSPRNG output), in
/// increasing order.
pub fn draw(draw: u64, count: u64, k: u32) -> Vec<u64> {
    let mut out: Vec<u64> = (0..u64::from(k))
        .filter(|_| count > 0)
        .map(|j| seed::word(draw, j) % count)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Checks the answers `(leaf, proof)` for the drawn `leaves` of fragment `l` against the
/// committed `root`: every drawn leaf answered once, each recomputed and proved.
pub fn check(
    l: &Leaves,
    root: &Hash,
    drawn: &[u64],
    answers: &[(u64, Vec<Hash>)],
) -> Result<(), SpotFailure> {
    let count = l.count();
    let r = Recompute::new(l)?;
    for i in drawn {
        if *i >= count {
            return Err(SpotFailure::OutOfRange(*i));
        }
        let proof = answers
            .iter()
            .find(|(j, _)| j == i)
            .map(|(_, p)| p.as_slice())
            .ok_or(SpotFailure::NotCommitted(*i))?;
        let leaf = r.leaf(*i)?;
        if !merkle::verify(root, count as usize, *i as usize, &leaf, proof) {
            return Err(SpotFailure::NotCommitted(*i));
        }
    }
    Ok(())
}

/// The worker's answers: each drawn leaf's proof in its own tree.
pub fn answer(tree: &MerkleTree, drawn: &[u64]) -> Option<Vec<(u64, Vec<Hash>)>> {
    drawn
        .iter()
        .map(|i| Some((*i, tree.prove(usize::try_from(*i).ok()?)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fragment::{FragmentKind, execute_range};
    use crate::inference;

    fn chunks() -> (Leaves, MerkleTree) {
        let p = data::process(Operation::Tokenize, 4, 1000..9000, 700).unwrap();
        let l = Leaves::Chunks {
            operation: Operation::Tokenize,
            seed: 4,
            chunk_size: 700,
            range: 1000..9000,
        };
        (l, p.tree)
    }

    fn samples(hidden: Option<u32>) -> (Leaves, MerkleTree) {
        let data = DataSet::new(6, 4, 300, 8).unwrap();
        let model = Network::reference(&data, hidden).unwrap();
        let shard = data.shard(120..220).unwrap();
        let tree = inference::forward(&model, &shard).unwrap().tree();
        let l = Leaves::Samples {
            data: (6, 4, 300, 8),
            hidden,
            range: 120..220,
        };
        (l, tree)
    }

    #[test]
    fn honest_answers_pass_for_chunks_and_samples() {
        for (l, tree) in [chunks(), samples(None), samples(Some(9))] {
            assert_eq!(l.count() as usize, tree.leaf_count());
            let drawn = draw(77, l.count(), 12);
            assert!(drawn.len() > 5 && drawn.iter().all(|i| *i < l.count()));
            let answers = answer(&tree, &drawn).unwrap();
            assert_eq!(check(&l, &tree.root(), &drawn, &answers), Ok(()));
        }
    }

    #[test]
    fn the_kernels_commitment_is_the_tree_the_verifier_climbs() {
        let kind = FragmentKind::Inference {
            features: 6,
            classes: 4,
            samples: 300,
            seed: 8,
            hidden: None,
        };
        let out = execute_range(&kind, 120..220).unwrap();
        assert_eq!(out.digest, crate::fragment::hex(&samples(None).1.root()));
    }

    #[test]
    fn a_corrupted_or_unanswered_leaf_is_caught() {
        for (l, tree) in [chunks(), samples(None)] {
            let n = l.count() as usize;
            // The worker corrupted leaf 3: its tree commits to something else there.
            let forged = MerkleTree::new((0..n).map(|i| [i as u8; 32]).collect());
            let drawn = vec![3];
            let answers = answer(&forged, &drawn).unwrap();
            assert_eq!(
                check(&l, &forged.root(), &drawn, &answers),
                Err(SpotFailure::NotCommitted(3))
            );
            // A missing answer, and a leaf outside the fragment.
            assert_eq!(
                check(&l, &tree.root(), &[1, 2], &answer(&tree, &[1]).unwrap()),
                Err(SpotFailure::NotCommitted(2))
            );
            assert_eq!(
                check(&l, &tree.root(), &[n as u64], &[]),
                Err(SpotFailure::OutOfRange(n as u64))
            );
        }
    }

    #[test]
    fn draws_are_distinct_sorted_and_in_range() {
        assert!(draw(1, 0, 10).is_empty());
        assert_eq!(draw(1, 1, 10), vec![0]);
        let d = draw(9, 1_000_000, 66);
        assert_eq!(d.len(), 66);
        assert!(d.windows(2).all(|w| w[0] < w[1]));
    }
}
