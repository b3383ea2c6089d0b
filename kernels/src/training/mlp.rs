//! The two-layer perceptron (`architecture: mlp`): a hidden layer of `H` rectified
//! linear units, then softmax regression on the hidden activations. This module owns its
//! weights, its forward pass, its gradient by backpropagation and its error bound; the
//! output layer is a [`Model`] on `H` "features", so the softmax, the loss and the
//! operation order are [`super::model`]'s.
//!
//! # Forward pass of one sample `x`
//! 1. `a_j = (…((0 + V_j0·x_0) + V_j1·x_1) + …) + c_j` (the order of
//!    [`Model`]'s logits), `h_j = a_j` if `a_j > 0`, else `0` (NaN gives 0).
//! 2. The output layer's logits, softmax and loss on `h` ([`super::model`]).
//!
//! # Gradient
//! With residuals `d_k = p_k − [k = y]` and, for each hidden unit,
//! `e_j = (…(0 + W_0j·d_0) + W_1j·d_1 + …)` if `h_j > 0`, else 0:
//! `∂L/∂W_kj = (1/N)·Σ_i d_ik·h_ij`, `∂L/∂b_k = (1/N)·Σ_i d_ik`,
//! `∂L/∂V_jf = (1/N)·Σ_i e_ij·x_if`, `∂L/∂c_j = (1/N)·Σ_i e_ij`, each summed over samples
//! in shard order into f32 from 0, then divided by `N`. Both layers' gradients are thus
//! softmax regression's gradient formula with other inputs (`h` for `x`, `e` for `d`),
//! which is how `cuda/training.cu` computes them: one thread per entry, in this order,
//! bit-identical. At `a_j = 0` the derivative of the rectifier is taken as 0.
//!
//! # Error bound
//! Another correct f32 evaluation (other summation orders, `exp` a few ulp off) differs
//! per gradient entry by at most `2·(N + F + H + 2C + 12)·u·S` with `u = 2⁻²⁴`, where
//! `S` is the mean over samples of the entry's absolute terms computed with absolute
//! values throughout. It is the bound of [`super::tolerance`] carried through one more
//! layer: the pre-activations add `F·u` relative per term, the logits `H·u`, the
//! backpropagated `e` another `C·u`, and the sum over samples `N·u`. A pre-activation
//! within that distance of 0 can switch a unit on or off between two evaluations; that
//! sample's contribution then differs by its whole size, so cross-hardware comparisons
//! use the first step and a tolerance, and same-order replays compare digests.
//! [`tolerance`] gives the bound in the form of the softmax one, with
//! `max(1, max|x|)·max(1, max|V|·F·max|x|)` for `S` (every `h` is at most
//! `Σ_f |V_jf·x_f| + |c_j|`).
//!
//! # Checked against finite differences
//! The tests compare every entry of the gradient with the central difference
//! `(L(θ + ε) − L(θ − ε)) / 2ε` of the loss, skipping entries whose perturbation moves a
//! pre-activation across 0 (where the loss has a kink).

use super::model::{self, Model};
use super::synthetic::{DataSet, Shard, check_shape};
use super::{Gradient, TrainingError, check_shard};
use crate::seed;

/// Most hidden units (the task API's bound).
pub const MAX_HIDDEN: usize = 4096;

/// A two-layer perceptron: `V` (`hidden × features`) and `c`, then the output [`Model`].
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    features: usize,
    hidden_weights: Vec<f32>,
    hidden_bias: Vec<f32>,
    output: Model,
}

/// Checks a hidden width.
pub fn check_hidden(hidden: usize) -> Result<(), TrainingError> {
    if (1..=MAX_HIDDEN).contains(&hidden) {
        Ok(())
    } else {
        Err(TrainingError::out_of_range("hidden", hidden, "1..=4096"))
    }
}

impl Mlp {
    /// A perceptron from its parts: `hidden_weights` is `hidden × features` and
    /// `output` classifies `hidden` activations.
    pub fn from_parts(
        features: usize,
        hidden_weights: Vec<f32>,
        hidden_bias: Vec<f32>,
        output: Model,
    ) -> Result<Self, TrainingError> {
        let hidden = output.features();
        check_hidden(hidden)?;
        check_shape(features, output.classes())?;
        if hidden_weights.len() != hidden * features {
            return Err(TrainingError::Length {
                field: "hiddenWeights",
                len: hidden_weights.len(),
                expected: hidden * features,
            });
        }
        if hidden_bias.len() != hidden {
            return Err(TrainingError::Length {
                field: "hiddenBias",
                len: hidden_bias.len(),
                expected: hidden,
            });
        }
        Ok(Self {
            features,
            hidden_weights,
            hidden_bias,
            output,
        })
    }

    /// The starting point of training: word `j·F + f` of [`seed::STREAM_WEIGHTS`] gives
    /// `V_jf` uniform in `±1/√F`, word `H·F + k·H + j` gives `W_kj` uniform in `±1/√H`;
    /// zero biases. (Scaled so that activations neither vanish nor blow up with width.)
    pub fn initial(data: &DataSet, hidden: usize, seed: u64) -> Result<Self, TrainingError> {
        check_hidden(hidden)?;
        let (f, c) = (data.features(), data.classes());
        let key = seed::stream_key(seed, seed::STREAM_WEIGHTS);
        let uniform = |first: usize, len: usize, fan_in: usize| -> Vec<f32> {
            let range = 1.0 / (fan_in as f32).sqrt();
            (first..first + len)
                .map(|i| (2.0 * seed::unit_f32(seed::word(key, i as u64)) - 1.0) * range)
                .collect()
        };
        let output = Model::from_parts(hidden, c, uniform(hidden * f, c * hidden, hidden), {
            vec![0.0; c]
        })?;
        Self::from_parts(f, uniform(0, hidden * f, f), vec![0.0; hidden], output)
    }

    /// The perceptron inference tasks run: it computes [`Model::reference`]'s logits
    /// exactly for the first `⌊H/2⌋` classes (units `2k` and `2k + 1` hold `+z_k` and
    /// `−z_k`, and the output adds the one that is not 0 with weight ±1), and a logit of
    /// `−10⁴` for any class it has no units for.
    pub fn reference(data: &DataSet, hidden: usize) -> Result<Self, TrainingError> {
        check_hidden(hidden)?;
        let linear = Model::reference(data);
        let (f, c) = (data.features(), data.classes());
        let mut v = vec![0.0f32; hidden * f];
        let mut cb = vec![0.0f32; hidden];
        let mut w = vec![0.0f32; c * hidden];
        let mut b = vec![-1.0e4f32; c];
        let rows = linear.weights().chunks_exact(f).zip(linear.bias());
        for (k, (row, bias)) in rows.enumerate().take(hidden / 2) {
            for (sign, j) in [(1.0f32, 2 * k), (-1.0, 2 * k + 1)] {
                for (dst, src) in v[j * f..(j + 1) * f].iter_mut().zip(row) {
                    *dst = sign * src;
                }
                cb[j] = sign * bias;
                w[k * hidden + j] = sign;
            }
            b[k] = 0.0;
        }
        Self::from_parts(f, v, cb, Model::from_parts(hidden, c, w, b)?)
    }

    /// Features per sample.
    pub fn features(&self) -> usize {
        self.features
    }

    /// Hidden units.
    pub fn hidden(&self) -> usize {
        self.output.features()
    }

    /// Classes.
    pub fn classes(&self) -> usize {
        self.output.classes()
    }

    /// `V`, `hidden × features`, row-major.
    pub fn hidden_weights(&self) -> &[f32] {
        &self.hidden_weights
    }

    /// `c`, one per hidden unit.
    pub fn hidden_bias(&self) -> &[f32] {
        &self.hidden_bias
    }

    /// The output layer.
    pub fn output(&self) -> &Model {
        &self.output
    }

    /// Step 1 of the forward pass: the activations of `x` into `h` (`hidden` long).
    fn activations_into(&self, x: &[f32], h: &mut [f32]) {
        for ((hj, v), c) in h
            .iter_mut()
            .zip(self.hidden_weights.chunks_exact(self.features))
            .zip(&self.hidden_bias)
        {
            let a = v.iter().zip(x).fold(0.0, |a, (v, x)| a + v * x) + c;
            *hj = if a > 0.0 { a } else { 0.0 };
        }
    }

    /// The forward pass of `x`: activations into `h`, logits into `z`.
    pub(crate) fn logits_into(&self, x: &[f32], h: &mut [f32], z: &mut [f32]) {
        self.activations_into(x, h);
        self.output.logits_into(h, z);
    }

    /// `θ ← θ − learning_rate · g`, entry by entry, as [`super::descend`].
    pub fn descend(&mut self, g: &MlpGradient, learning_rate: f32) {
        let params = self.hidden_weights.iter_mut().chain(&mut self.hidden_bias);
        let grads = g.hidden.weights.iter().chain(&g.hidden.bias);
        for (theta, g) in params.zip(grads) {
            *theta -= learning_rate * g;
        }
        super::descend(&mut self.output, &g.output, learning_rate);
    }
}

/// The gradient of the mean loss: the hidden layer's (`V`, `c`) and the output's.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpGradient {
    /// `∂L/∂V` (`hidden × features`) and `∂L/∂c`.
    pub hidden: Gradient,
    /// `∂L/∂W` (`classes × hidden`) and `∂L/∂b`.
    pub output: Gradient,
}

/// Loss, accuracy and gradient of a perceptron on a shard.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpEvaluation {
    /// Mean cross-entropy loss (per-sample losses in f32, summed in f64 in shard order).
    pub loss: f64,
    /// Samples whose prediction equals the label.
    pub correct: u64,
    /// Samples in the shard.
    pub samples: u64,
    /// The gradient of the mean loss.
    pub gradient: MlpGradient,
}

/// Adds `scale · input` to `weights` row by row and `scale` to `bias`, for each entry of
/// `scales`: one sample's contribution to a layer's gradient sums.
fn accumulate(g: &mut Gradient, scales: &[f32], input: &[f32]) {
    for ((gb, gw), d) in g
        .bias
        .iter_mut()
        .zip(g.weights.chunks_exact_mut(input.len().max(1)))
        .zip(scales)
    {
        *gb += d;
        for (g, x) in gw.iter_mut().zip(input) {
            *g += d * x;
        }
    }
}

fn zero_gradient(rows: usize, cols: usize) -> Gradient {
    Gradient {
        weights: vec![0.0; rows * cols],
        bias: vec![0.0; rows],
    }
}

/// Loss, accuracy and gradient of `m` on `shard` (module docs).
pub fn evaluate(m: &Mlp, shard: &Shard) -> Result<MlpEvaluation, TrainingError> {
    check_shard(m.features, m.classes(), shard)?;
    let (f, hn, c) = (m.features, m.hidden(), m.classes());
    let mut gh = zero_gradient(hn, f);
    let mut go = zero_gradient(c, hn);
    let (mut h, mut e) = (vec![0.0f32; hn], vec![0.0f32; hn]);
    let (mut z, mut p) = (vec![0.0f32; c], vec![0.0f32; c]);
    let (mut loss, mut correct) = (0.0f64, 0u64);
    for (x, y) in shard.x.chunks_exact(f).zip(&shard.y) {
        m.logits_into(x, &mut h, &mut z);
        let (l, pred) = model::softmax(&z, *y, &mut p);
        loss += f64::from(l);
        correct += u64::from(pred == *y);
        if let Some(py) = p.get_mut(*y as usize) {
            *py -= 1.0;
        }
        for (j, ej) in e.iter_mut().enumerate() {
            *ej = if h[j] > 0.0 {
                let col = m.output.weights().iter().skip(j).step_by(hn);
                col.zip(&p).fold(0.0, |a, (w, d)| a + w * d)
            } else {
                0.0
            };
        }
        accumulate(&mut go, &p, &h);
        accumulate(&mut gh, &e, x);
    }
    let n = shard.len();
    let nf = n as f32;
    for g in [&mut gh, &mut go] {
        for v in g.weights.iter_mut().chain(&mut g.bias) {
            *v /= nf;
        }
    }
    Ok(MlpEvaluation {
        loss: loss / n as f64,
        correct,
        samples: n as u64,
        gradient: MlpGradient {
            hidden: gh,
            output: go,
        },
    })
}

/// The largest per-entry difference between this gradient and another correct f32
/// evaluation, for the first step (module docs).
pub fn tolerance(
    samples: usize,
    features: usize,
    hidden: usize,
    classes: usize,
    max_abs_feature: f32,
    max_abs_hidden_weight: f32,
) -> f64 {
    let u = f64::from(f32::EPSILON) / 2.0;
    let x = f64::from(max_abs_feature).max(1.0);
    let activation = (f64::from(max_abs_hidden_weight) * features as f64 * x).max(1.0);
    let terms = (samples + features + hidden + 2 * classes + 12) as f64;
    4.0 * terms * u * x * activation
}

#[cfg(test)]
mod tests;
