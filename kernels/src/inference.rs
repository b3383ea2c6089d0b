//! The inference fragment kind: a batched forward pass of a model
//! ([`training::Network`]) over a shard of the seeded data set ([`training::DataSet`]):
//! logits, probabilities, argmax predictions, accuracy against the seeded labels, and a
//! Merkle commitment to the predictions and quantized probabilities. This module owns
//! that commitment; the models, the data and the operation order are training's.
//!
//! # Commitment
//! A [`MerkleTree`] over one leaf per sample, in shard order: the leaf is SHA-256 of
//! `0x00`, the prediction as u32 LE, then the probabilities quantized as
//! `round(p · 2²⁰)` i32 LE ([`training::quantize`]). The `0x00` prefix keeps a leaf
//! preimage apart from a parent's (`0x01 ‖ …`). A verifier recomputes any sample's leaf
//! from the seed alone and checks its Merkle proof against the root, so a fragment is
//! spot-checked at the cost of the samples drawn (`crate::spot`).
//!
//! # Error bound
//! Each logit is a sum over features in a fixed order, so a CPU replay, or a GPU port with
//! one thread per sample that keeps [`training::model`]'s order and `exp`, is
//! bit-identical. An evaluation that sums in another order differs per logit by at most
//! `F·u·Σ_f |W_cf·x_f|` (`u = 2⁻²⁴`); a probability then moves by about
//! `(C + 6)·u` relative plus the logit error, which can flip a quantized value at a
//! rounding boundary or an argmax between near-tied classes, so such evaluations are
//! compared by value, not by digest.

use crate::merkle::{Hash, MerkleTree};
use crate::training::{self, Network, Shard, TrainingError, model};
use sha2::{Digest, Sha256};

/// Prefix of a leaf preimage.
const LEAF_PREFIX: u8 = 0x00;

/// The forward pass of a model over a shard.
#[derive(Debug, Clone, PartialEq)]
pub struct Inference {
    /// Features per sample.
    pub features: usize,
    /// Classes.
    pub classes: usize,
    /// Logits, `samples × classes`, row-major.
    pub logits: Vec<f32>,
    /// Softmax probabilities, `samples × classes`, row-major.
    pub probabilities: Vec<f32>,
    /// The predicted class of each sample (the first of tied maxima).
    pub predictions: Vec<u32>,
    /// Samples whose prediction equals the seeded label.
    pub correct: u64,
}

impl Inference {
    /// `correct / samples`.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.predictions.len().max(1) as f64
    }

    /// The commitment (module docs).
    pub fn tree(&self) -> MerkleTree {
        tree(self.classes, &self.predictions, &self.probabilities)
    }
}

/// The leaf of one sample: its prediction and probabilities (module docs).
pub fn leaf(prediction: u32, probabilities: &[f32]) -> Hash {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(prediction.to_le_bytes());
    for p in probabilities {
        h.update(training::quantize(*p).to_le_bytes());
    }
    h.finalize().into()
}

/// The commitment to predictions and probabilities (`samples × classes`), on any device.
pub fn tree(classes: usize, predictions: &[u32], probabilities: &[f32]) -> MerkleTree {
    let leaves = predictions
        .iter()
        .zip(probabilities.chunks_exact(classes.max(1)))
        .map(|(pred, probs)| leaf(*pred, probs))
        .collect();
    MerkleTree::new(leaves)
}

/// Bytes [`forward`] allocates for `samples` samples of `classes` classes (logits and
/// probabilities, predictions, and the shard's own features and labels).
pub fn forward_bytes(samples: u64, features: usize, classes: usize) -> u128 {
    u128::from(samples) * (2 * classes as u128 + features as u128 + 2) * 4
}

/// The forward pass of `model` over `shard`.
pub fn forward(model: &Network, shard: &Shard) -> Result<Inference, TrainingError> {
    training::check_shard(model.features(), model.classes(), shard)?;
    let bytes = forward_bytes(shard.len() as u64, model.features(), model.classes());
    if bytes > u128::from(crate::MAX_ALLOC_BYTES) {
        return Err(TrainingError::TooLarge {
            field: "items",
            bytes,
        });
    }
    let c = model.classes();
    let mut logits = vec![0.0f32; shard.len() * c];
    let mut probabilities = vec![0.0f32; shard.len() * c];
    let mut predictions = Vec::with_capacity(shard.len());
    let mut hidden = vec![0.0f32; model.hidden()];
    let mut correct = 0;
    let rows = shard.x().chunks_exact(model.features()).zip(shard.labels());
    for (((x, y), z), p) in rows
        .zip(logits.chunks_exact_mut(c))
        .zip(probabilities.chunks_exact_mut(c))
    {
        model.logits_into(x, &mut hidden, z);
        let (_, pred) = model::softmax(z, *y, p);
        correct += u64::from(pred == *y);
        predictions.push(pred);
    }
    Ok(Inference {
        features: model.features(),
        classes: c,
        logits,
        probabilities,
        predictions,
        correct,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::training::{DataSet, Model};

    fn linear(m: Model) -> Network {
        Network::Linear(m)
    }

    fn setup() -> (DataSet, Shard) {
        let d = DataSet::new(8, 4, 300, 21).unwrap();
        let s = d.shard(100..220).unwrap();
        (d, s)
    }

    #[test]
    fn the_reference_model_classifies_the_seeded_data_well() {
        let (d, s) = setup();
        let out = forward(&linear(Model::reference(&d)), &s).unwrap();
        assert_eq!(out.predictions.len(), 120);
        assert!(out.accuracy() > 0.8, "accuracy {}", out.accuracy());
        // An untrained model is near chance.
        let zero = forward(&linear(Model::zeros(8, 4).unwrap()), &s).unwrap();
        assert!(zero.predictions.iter().all(|p| *p == 0));
        assert!(zero.probabilities.iter().all(|p| *p == 0.25));
    }

    #[test]
    fn predictions_are_the_argmax_and_probabilities_sum_to_one() {
        let (d, s) = setup();
        let out = forward(&linear(Model::reference(&d)), &s).unwrap();
        for ((z, p), pred) in out
            .logits
            .chunks_exact(4)
            .zip(out.probabilities.chunks_exact(4))
            .zip(&out.predictions)
        {
            let max = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(z[*pred as usize], max);
            assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
        }
    }

    #[test]
    fn logits_match_a_naive_matrix_product() {
        let (d, s) = setup();
        let m = Model::reference(&d);
        let out = forward(&linear(m.clone()), &s).unwrap();
        for i in 0..s.len() {
            let (x, _) = s.sample(i).unwrap();
            for c in 0..4 {
                let want: f64 = (0..8)
                    .map(|f| f64::from(m.weights()[c * 8 + f]) * f64::from(x[f]))
                    .sum::<f64>()
                    + f64::from(m.bias()[c]);
                assert!((f64::from(out.logits[i * 4 + c]) - want).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn the_digest_is_deterministic_and_commits_to_every_output() {
        let (d, s) = setup();
        let m = Model::reference(&d);
        let a = forward(&linear(m.clone()), &s).unwrap();
        assert_eq!(
            a.tree().root(),
            forward(&linear(m.clone()), &s).unwrap().tree().root()
        );
        let mut b = a.clone();
        b.predictions[7] ^= 1;
        assert_ne!(a.tree().root(), b.tree().root());
        let mut c = a.clone();
        c.probabilities[5] += 1e-5;
        assert_ne!(a.tree().root(), c.tree().root());
        let other = d.shard(101..221).unwrap();
        assert_ne!(
            a.tree().root(),
            forward(&linear(m.clone()), &other).unwrap().tree().root()
        );
    }

    #[test]
    fn mismatched_shapes_are_errors() {
        let (_, s) = setup();
        let m = Model::zeros(7, 4).unwrap();
        assert_eq!(
            forward(&linear(m.clone()), &s).unwrap_err().field(),
            "model"
        );
    }
}
