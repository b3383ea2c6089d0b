//! The softmax-regression (multinomial logistic regression) model shared by training and
//! inference: weights `W` (`classes × features`, row-major) and bias `b`, and its
//! per-sample forward pass in a fixed operation order.
//!
//! Forward pass of one sample `x`, in this order (a port must match it to replay bits):
//! 1. `z_c = (…((0 + W_c0·x_0) + W_c1·x_1) + …) + b_c`, features in index order, each
//!    product and sum rounded separately (no fused multiply-add).
//! 2. `m = max_c z_c`; `e_c = exp(z_c − m)` with [`super::math::exp`];
//!    `s = (…(0 + e_0) + e_1) + …`; `p_c = e_c / s`.
//! 3. Loss `ln(s) − (z_y − m)` with [`super::math::ln`]; prediction: the first `c` with
//!    `z_c = m`.

use super::TrainingError;
use super::math;
use super::synthetic::{DataSet, check_shape};
use crate::seed;

/// Half-width of the uniform range of the initial training weights.
const INITIAL_WEIGHT_RANGE: f32 = 0.01;

/// A softmax-regression model.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    features: usize,
    classes: usize,
    weights: Vec<f32>,
    bias: Vec<f32>,
}

impl Model {
    /// A model from its parts; `weights` is `classes × features`, row-major.
    pub fn from_parts(
        features: usize,
        classes: usize,
        weights: Vec<f32>,
        bias: Vec<f32>,
    ) -> Result<Self, TrainingError> {
        check_shape(features, classes)?;
        if weights.len() != features * classes {
            return Err(TrainingError::Length {
                field: "weights",
                len: weights.len(),
                expected: features * classes,
            });
        }
        if bias.len() != classes {
            return Err(TrainingError::Length {
                field: "bias",
                len: bias.len(),
                expected: classes,
            });
        }
        Ok(Self {
            features,
            classes,
            weights,
            bias,
        })
    }

    /// All-zero weights and bias.
    pub fn zeros(features: usize, classes: usize) -> Result<Self, TrainingError> {
        check_shape(features, classes)?;
        Self::from_parts(
            features,
            classes,
            vec![0.0; features * classes],
            vec![0.0; classes],
        )
    }

    /// The starting point of training on `data`: weights uniform in ±0.01 from
    /// [`seed::STREAM_WEIGHTS`] (word `c·F + f` is `W_cf`), zero bias.
    pub fn initial(data: &DataSet, seed: u64) -> Self {
        let key = seed::stream_key(seed, seed::STREAM_WEIGHTS);
        let n = data.features() * data.classes();
        let weights = (0..n)
            .map(|i| {
                let u = seed::unit_f32(seed::word(key, i as u64));
                (2.0 * u - 1.0) * INITIAL_WEIGHT_RANGE
            })
            .collect();
        Self {
            features: data.features(),
            classes: data.classes(),
            weights,
            bias: vec![0.0; data.classes()],
        }
    }

    /// The model inference tasks run: the linear discriminant of `data`'s classes
    /// (equal priors, shared isotropic noise), `W_c = μ_c / σ²` and
    /// `b_c = −|μ_c|² / (2σ²)`. It is what training converges towards, so predictions
    /// are mostly right and the accuracy metric means something.
    pub fn reference(data: &DataSet) -> Self {
        let inv_var = 1.0 / super::synthetic::NOISE_VARIANCE;
        let f = data.features();
        let weights = data.means().iter().map(|m| m * inv_var).collect();
        let bias = data
            .means()
            .chunks_exact(f)
            .map(|mu| -0.5 * inv_var * mu.iter().fold(0.0, |a, m| a + m * m))
            .collect();
        Self {
            features: f,
            classes: data.classes(),
            weights,
            bias,
        }
    }

    /// Features per sample.
    pub fn features(&self) -> usize {
        self.features
    }

    /// Classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Weights, `classes × features`, row-major.
    pub fn weights(&self) -> &[f32] {
        &self.weights
    }

    /// Bias, one per class.
    pub fn bias(&self) -> &[f32] {
        &self.bias
    }

    pub(crate) fn parts_mut(&mut self) -> (&mut [f32], &mut [f32]) {
        (&mut self.weights, &mut self.bias)
    }

    /// Step 1 of the forward pass: the logits of `x` into `z` (`classes` long).
    pub(crate) fn logits_into(&self, x: &[f32], z: &mut [f32]) {
        for ((zc, w), b) in z
            .iter_mut()
            .zip(self.weights.chunks_exact(self.features))
            .zip(&self.bias)
        {
            *zc = w.iter().zip(x).fold(0.0, |a, (w, x)| a + w * x) + b;
        }
    }
}

/// Steps 2 and 3 of the forward pass: writes `p` from logits `z` and returns
/// `(loss, prediction)` for label `y`.
pub(crate) fn softmax(z: &[f32], y: u32, p: &mut [f32]) -> (f32, u32) {
    let (mut arg, mut m) = (0, f32::NEG_INFINITY);
    for (c, v) in z.iter().enumerate() {
        if *v > m || c == 0 {
            (arg, m) = (c, *v);
        }
    }
    let mut s = 0.0;
    for (pc, v) in p.iter_mut().zip(z) {
        *pc = math::exp(v - m);
        s += *pc;
    }
    for pc in p.iter_mut() {
        *pc /= s;
    }
    let zy = z.get(y as usize).copied().unwrap_or(f32::NAN);
    (math::ln(s) - (zy - m), arg as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_matches_the_textbook_formula() {
        let z = [1.0f32, -2.0, 0.5, 3.0];
        let mut p = [0.0; 4];
        let (loss, pred) = softmax(&z, 2, &mut p);
        let e: Vec<f64> = z.iter().map(|v| f64::from(*v).exp()).collect();
        let s: f64 = e.iter().sum();
        for (pc, ec) in p.iter().zip(&e) {
            assert!((f64::from(*pc) - ec / s).abs() < 1e-6);
        }
        assert!((f64::from(loss) - (s.ln() - 0.5)).abs() < 1e-5);
        assert_eq!(pred, 3);
    }

    #[test]
    fn ties_predict_the_first_class_and_large_logits_do_not_overflow() {
        let mut p = [0.0; 3];
        let (loss, pred) = softmax(&[1e30, 1e30, -1e30], 1, &mut p);
        assert_eq!(pred, 0);
        assert_eq!(p, [0.5, 0.5, 0.0]);
        assert!((loss - std::f32::consts::LN_2).abs() < 1e-6);
    }

    #[test]
    fn logits_are_w_times_x_plus_b() {
        let m = Model::from_parts(2, 2, vec![1.0, 2.0, -1.0, 0.5], vec![0.25, -0.5]).unwrap();
        let mut z = [0.0; 2];
        m.logits_into(&[3.0, 4.0], &mut z);
        assert_eq!(z, [11.25, -1.5]);
    }

    #[test]
    fn mismatched_parts_are_errors_naming_the_field() {
        let e = Model::from_parts(2, 2, vec![0.0; 3], vec![0.0; 2]).unwrap_err();
        assert_eq!(e.field(), "weights");
        let e = Model::from_parts(2, 2, vec![0.0; 4], vec![0.0; 3]).unwrap_err();
        assert_eq!(e.field(), "bias");
        assert_eq!(Model::zeros(2, 1).unwrap_err().field(), "classes");
    }
}
