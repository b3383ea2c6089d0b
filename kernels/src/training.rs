//! The training fragment kind (Proof-of-Model-Training): softmax regression on a shard of
//! the seeded synthetic data set ([`synthetic`]), with the mean cross-entropy loss, the
//! accuracy and the gradient with respect to weights and bias, and plain gradient-descent
//! steps. This module owns the gradient, its quantization and its commitment; the model
//! and forward pass are in [`model`], the data in [`synthetic`], `exp`/`ln` in [`math`].
//!
//! # Gradient
//! For a shard of `N` samples, `d_ic = p_ic − [c = y_i]` and
//! `∂L/∂W_cf = (1/N)·Σ_i d_ic·x_if`, `∂L/∂b_c = (1/N)·Σ_i d_ic`. The sums run over
//! samples in shard order into f32 accumulators starting at 0 (products and sums rounded
//! separately), and each total is then divided by `N` as f32. `cuda/training.cu` keeps
//! one thread per gradient entry summing in that same order, so a port that also uses
//! [`math`]'s `exp` is bit-identical; it is not launched yet.
//!
//! # Commitment
//! Each gradient entry is quantized to `q = round(g · 2²⁰)` as i32 (ties away from zero,
//! saturating; exact for `|g| < 2048`, and the scaling by a power of two is exact, so `q`
//! is a function of the f32 bits alone). The digest is SHA-256 of `"zop/training/v1"`,
//! the features and classes as u32 LE, then for each step the quantized `W` (row-major)
//! and `b` as i32 LE. Verifiers compare digests, or quantized values where a tolerance
//! applies.
//!
//! # Error bound
//! A CPU replay performs the same operations in the same order, so it is bit-identical
//! and the digests match exactly. Another correct f32 evaluation (a GPU summing in a
//! different order, or with a different `exp` within a few ulp) differs per entry by at
//! most `|Δg| ≤ 2·(N + C + 8)·u·(1/N)·Σ_i (p_ic + [c = y_i])·|x_if|` with
//! `u = 2⁻²⁴`: a sum of `N` terms in any order is within `(N − 1)·u·Σ|terms|` of exact,
//! each term carries about `(C + 6)·u` relative error from `exp`, the sum over classes
//! and the divisions, and two evaluations are each that far from exact. Because
//! `p + [c = y] ≤ 2`, [`tolerance`] bounds it by `4·(N + C + 8)·u·max(1, max|x|)` (the 1
//! covers the bias, whose "feature" is 1); in quantized units, multiply by 2²⁰ and add 1
//! for rounding. This holds for the first step; later steps start from weights that
//! already differ, so a cross-hardware check compares the first gradient.

pub mod math;
pub mod mlp;
pub mod model;
pub mod network;
pub mod synthetic;

pub use mlp::Mlp;
pub use model::Model;
pub use network::Network;
pub use synthetic::{DataSet, Shard};

use crate::merkle::Hash;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `2²⁰`: gradient entries are committed as `round(g · GRADIENT_SCALE)`.
pub const GRADIENT_SCALE: f32 = 1_048_576.0;
/// Largest learning rate accepted (the task API's bound).
pub const MAX_LEARNING_RATE: f32 = 10.0;
/// Domain tag of the gradient commitment.
const DIGEST_TAG: &[u8] = b"zop/training/v1";
/// Domain tag of a perceptron's gradient commitment.
const MLP_DIGEST_TAG: &[u8] = b"zop/training/mlp/v1";

/// Why a training or inference computation cannot run. Each names the parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrainingError {
    /// A parameter is outside its range.
    #[error("{field} = {value} is outside {range}")]
    OutOfRange {
        /// The parameter.
        field: &'static str,
        /// Its value, as text.
        value: String,
        /// The accepted range.
        range: &'static str,
    },
    /// A buffer has the wrong length.
    #[error("{field} has {len} elements, expected {expected}")]
    Length {
        /// The buffer.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The length the shape implies.
        expected: usize,
    },
    /// A model and a shard have different shapes.
    #[error(
        "the model is {model_features} features × {model_classes} classes but the shard is {shard_features} × {shard_classes}"
    )]
    ShapeMismatch {
        /// The model's features.
        model_features: usize,
        /// The model's classes.
        model_classes: usize,
        /// The shard's features.
        shard_features: usize,
        /// The shard's classes.
        shard_classes: usize,
    },
    /// The buffers would exceed [`crate::MAX_ALLOC_BYTES`].
    #[error(
        "{field} needs {bytes} bytes, more than the limit of {} bytes",
        crate::MAX_ALLOC_BYTES
    )]
    TooLarge {
        /// The parameter to reduce.
        field: &'static str,
        /// Bytes it would need.
        bytes: u128,
    },
}

impl TrainingError {
    pub(crate) fn out_of_range(
        field: &'static str,
        value: impl ToString,
        range: &'static str,
    ) -> Self {
        Self::OutOfRange {
            field,
            value: value.to_string(),
            range,
        }
    }

    /// The parameter at fault.
    pub fn field(&self) -> &'static str {
        match self {
            Self::OutOfRange { field, .. }
            | Self::Length { field, .. }
            | Self::TooLarge { field, .. } => field,
            Self::ShapeMismatch { .. } => "model",
        }
    }
}

/// Checks that `model` and `shard` have one shape.
pub(crate) fn check_pair(model: &Model, shard: &Shard) -> Result<(), TrainingError> {
    check_shard(model.features(), model.classes(), shard)
}

/// Checks that a model of `features` inputs and `classes` outputs fits `shard`.
pub(crate) fn check_shard(
    features: usize,
    classes: usize,
    shard: &Shard,
) -> Result<(), TrainingError> {
    if features != shard.features() || classes != shard.classes() {
        return Err(TrainingError::ShapeMismatch {
            model_features: features,
            model_classes: classes,
            shard_features: shard.features(),
            shard_classes: shard.classes(),
        });
    }
    if shard.is_empty() {
        return Err(TrainingError::out_of_range("items", 0, "1.."));
    }
    Ok(())
}

/// Checks a learning rate: finite, above 0, at most [`MAX_LEARNING_RATE`].
pub fn check_learning_rate(learning_rate: f32) -> Result<(), TrainingError> {
    if learning_rate.is_finite() && learning_rate > 0.0 && learning_rate <= MAX_LEARNING_RATE {
        Ok(())
    } else {
        Err(TrainingError::out_of_range(
            "learningRate",
            learning_rate,
            "(0, 10]",
        ))
    }
}

/// The gradient of the mean loss, shaped like the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Gradient {
    /// `∂L/∂W`, `classes × features`, row-major.
    pub weights: Vec<f32>,
    /// `∂L/∂b`, one per class.
    pub bias: Vec<f32>,
}

impl Gradient {
    /// Every entry quantized (see the module docs): `W` row-major, then `b`.
    pub fn quantized(&self) -> Vec<i32> {
        self.weights
            .iter()
            .chain(&self.bias)
            .map(|g| quantize(*g))
            .collect()
    }

    /// The commitment to this gradient alone (a one-step [`GradientCommitment`]).
    pub fn digest(&self, features: usize, classes: usize) -> Hash {
        let mut c = GradientCommitment::new(features, classes);
        c.push(self);
        c.finish()
    }
}

/// `round(g · 2²⁰)` as i32, saturating; NaN quantizes to 0.
pub fn quantize(g: f32) -> i32 {
    // `as` saturates and maps NaN to 0, so no input panics.
    (g * GRADIENT_SCALE).round() as i32
}

/// The incremental digest of the gradients of successive steps (module docs).
#[derive(Debug, Clone)]
pub struct GradientCommitment {
    hasher: Sha256,
}

impl GradientCommitment {
    /// Starts the digest for a model shape.
    pub fn new(features: usize, classes: usize) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(DIGEST_TAG);
        for v in [features, classes] {
            hasher.update((v as u32).to_le_bytes());
        }
        Self { hasher }
    }

    /// Starts the digest for a perceptron ([`mlp`]): its own tag, then the features,
    /// hidden units and classes.
    pub fn new_mlp(features: usize, hidden: usize, classes: usize) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(MLP_DIGEST_TAG);
        for v in [features, hidden, classes] {
            hasher.update((v as u32).to_le_bytes());
        }
        Self { hasher }
    }

    /// Appends one step's gradient.
    pub fn push(&mut self, g: &Gradient) {
        for q in g.quantized() {
            self.hasher.update(q.to_le_bytes());
        }
    }

    /// Appends one step's gradient of a perceptron: the hidden layer's, then the
    /// output's.
    pub fn push_mlp(&mut self, g: &mlp::MlpGradient) {
        self.push(&g.hidden);
        self.push(&g.output);
    }

    /// The digest.
    pub fn finish(self) -> Hash {
        self.hasher.finalize().into()
    }
}

/// What a training fragment runs: the model's shape, the data set and the steps (a
/// training [`crate::fragment::FragmentKind`] without its epochs, which only size the
/// task).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainingParams {
    /// Features per sample, 1 to 4096.
    pub features: u32,
    /// Classes, 2 to 1024.
    pub classes: u32,
    /// Distinct samples in the data set.
    pub samples: u64,
    /// Step size, in (0, 10].
    pub learning_rate: f32,
    /// Gradient-descent steps per fragment, 1 to 100.
    #[serde(default = "one_step")]
    pub local_steps: u32,
    /// Task seed (data and initial weights).
    #[serde(default)]
    pub seed: u64,
    /// Hidden units of a two-layer perceptron ([`mlp`]); none for softmax regression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<u32>,
}

fn one_step() -> u32 {
    1
}

/// What a training fragment computed, on any device.
#[derive(Debug, Clone, PartialEq)]
pub struct Trained {
    /// The gradient commitment over every local step.
    pub digest: Hash,
    /// Mean loss before each step, then after the last: `localSteps + 1` values.
    pub losses: Vec<f64>,
    /// Samples predicted right after the last step.
    pub correct: u64,
    /// Samples in the shard.
    pub samples: u64,
}

impl Trained {
    /// Mean loss before the first step.
    pub fn initial_loss(&self) -> f64 {
        self.losses.first().copied().unwrap_or(f64::NAN)
    }

    /// Mean loss after the last step.
    pub fn loss(&self) -> f64 {
        self.losses.last().copied().unwrap_or(f64::NAN)
    }

    /// Accuracy after the last step.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.samples.max(1) as f64
    }
}

/// Loss, accuracy and gradient of a model on a shard.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy loss (per-sample losses in f32, summed in f64 in shard order).
    pub loss: f64,
    /// Samples whose prediction equals the label.
    pub correct: u64,
    /// Samples in the shard.
    pub samples: u64,
    /// The gradient of the mean loss.
    pub gradient: Gradient,
}

impl Evaluation {
    /// `correct / samples`.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.samples.max(1) as f64
    }
}

/// Loss, accuracy and gradient of `model` on `shard`.
pub fn evaluate(model: &Model, shard: &Shard) -> Result<Evaluation, TrainingError> {
    check_pair(model, shard)?;
    let (f, c) = (model.features(), model.classes());
    let mut gw = vec![0.0f32; f * c];
    let mut gb = vec![0.0f32; c];
    let (mut z, mut p) = (vec![0.0f32; c], vec![0.0f32; c]);
    let (mut loss, mut correct) = (0.0f64, 0u64);
    for (x, y) in shard.x.chunks_exact(f).zip(&shard.y) {
        model.logits_into(x, &mut z);
        let (l, pred) = model::softmax(&z, *y, &mut p);
        loss += f64::from(l);
        correct += u64::from(pred == *y);
        for (k, ((pc, gb), gw)) in p
            .iter()
            .zip(&mut gb)
            .zip(gw.chunks_exact_mut(f))
            .enumerate()
        {
            let d = if k == *y as usize { pc - 1.0 } else { *pc };
            *gb += d;
            for (g, xv) in gw.iter_mut().zip(x) {
                *g += d * xv;
            }
        }
    }
    let n = shard.len();
    let nf = n as f32;
    for g in gw.iter_mut().chain(&mut gb) {
        *g /= nf;
    }
    Ok(Evaluation {
        loss: loss / n as f64,
        correct,
        samples: n as u64,
        gradient: Gradient {
            weights: gw,
            bias: gb,
        },
    })
}

/// One gradient-descent step on the whole shard: evaluates `model` (the returned
/// evaluation is at the weights before the step), then `θ ← θ − learning_rate · g`.
pub fn step(
    model: &mut Model,
    shard: &Shard,
    learning_rate: f32,
) -> Result<Evaluation, TrainingError> {
    check_learning_rate(learning_rate)?;
    let e = evaluate(model, shard)?;
    descend(model, &e.gradient, learning_rate);
    Ok(e)
}

/// `θ ← θ − learning_rate · g`, entry by entry (each product rounded, then the
/// difference): the update of [`step`], also applied on the host after a GPU evaluation.
pub fn descend(model: &mut Model, g: &Gradient, learning_rate: f32) {
    let (w, b) = model.parts_mut();
    let params = w.iter_mut().chain(b.iter_mut());
    let grads = g.weights.iter().chain(&g.bias);
    for (theta, g) in params.zip(grads) {
        *theta -= learning_rate * g;
    }
}

/// The largest per-entry difference between this gradient and another correct f32
/// evaluation on any hardware, for the first step (module docs):
/// `4·(N + C + 8)·2⁻²⁴·max(1, max|x|)`.
pub fn tolerance(samples: usize, classes: usize, max_abs_feature: f32) -> f64 {
    let u = f64::from(f32::EPSILON) / 2.0;
    let scale = f64::from(max_abs_feature).max(1.0);
    4.0 * (samples as f64 + classes as f64 + 8.0) * u * scale
}

#[cfg(test)]
mod tests;
