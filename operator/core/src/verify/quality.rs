//! Proof-of-Model-Training's checks of what a training or inference result reports (its
//! [`ResultQuality`]), the votes replays compare, and the task's loss and accuracy.
//! Pure.
//!
//! - **On receipt** ([`check`]): a model's result must carry its quality and any other
//!   kind's must not; a training result has one loss per local step plus the final one;
//!   every loss is finite and not negative (cross-entropy never is: `ln Σe^(z−m) ≥ 0`
//!   and `z_y − m ≤ 0`); no more samples are right than the fragment has; and the loss
//!   does not rise from step to step where gradient descent provably lowers it.
//! - **On replay** ([`vote`]): a replay agrees with a result when the gradient
//!   commitment *and* the quality are the same. Every device evaluates the model in one
//!   operation order with one `exp` and `ln` (`kernels/src/training.rs`, CPU and CUDA
//!   alike, pinned by the kernels' host tests), so honest devices agree bit for bit; a
//!   worker that reports an honest digest with a flattering loss is the minority.
//! - **In the status** ([`summary`]): the task's loss and accuracy are over the results
//!   that count (verified, or accepted without a proof), one per fragment, weighted by
//!   the fragment's samples; the accuracy is recomputed from the counts, never averaged
//!   from a claimed ratio.
//!
//! # Descent, and the noise allowed
//! Softmax regression's mean cross-entropy has a gradient that is `L`-Lipschitz with
//! `L ≤ ½·maxᵢ ‖(xᵢ, 1)‖²` (its Hessian is the mean of `(diag p − p pᵀ) ⊗ x̃ x̃ᵀ`, and
//! `diag p − p pᵀ ≼ ½ I`). Every feature is a class mean in `[−1, 1)` plus noise in
//! `[−2, 2)`, so `|x_f| < 3` and `L < (9F + 1)/2`. By the descent lemma a step of size
//! `η ≤ 2/L` never raises the loss, so with `learningRate ≤ 4/(9F + 1)`
//! ([`descent_rate`]) a rise can only come from rounding. Each mean loss is an f32
//! evaluation within about `(F + C + 8)·u` relative of exact (`u = 2⁻²⁴`: the logit sums,
//! `exp`, the softmax sum and `ln`), twice over (before and after), so the allowed rise
//! is `max(tolerance, 8·(F + C + 8)·u)·max(1, loss)` ([`allowed_rise`]) with the task's
//! `verification.tolerance`. Above that rate, and for the perceptron (not convex), a
//! rising loss is an honest possibility and is not held against the worker.

use crate::api::protocol::{FragmentResult, ResultQuality};
use crate::api::task::{Architecture, ComputeTaskSpec, TRAINING_LOCAL_STEPS, WorkloadType};
use crate::tasks::assignment::{Assignment, is_paid};
use std::collections::BTreeSet;

/// Why a reported quality fails its check. The message is the evidence.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QualityFailure {
    /// A training or inference result without its quality.
    #[error("expected the model's losses and correct count, received none")]
    Missing,
    /// Another kind's result with a quality.
    #[error("expected no model quality for this kind of work, received one")]
    Unexpected,
    /// The wrong number of losses.
    #[error(
        "expected {expected} losses (one per local step and the final one), received {received}"
    )]
    Losses {
        /// Losses a result of this kind carries.
        expected: usize,
        /// Losses received.
        received: usize,
    },
    /// A loss that is not a finite, non-negative number.
    #[error("expected loss {step} to be finite and not negative, received {value}")]
    BadLoss {
        /// Its step.
        step: usize,
        /// The value.
        value: f64,
    },
    /// More samples right than the fragment has.
    #[error("expected at most {samples} samples predicted right, received {correct}")]
    TooManyCorrect {
        /// Claimed.
        correct: u64,
        /// The fragment's samples.
        samples: u64,
    },
    /// The loss rose where gradient descent lowers it.
    #[error(
        "expected the loss not to rise above {before} + {allowed} at step {step} (learning rate {rate} ≤ {bound} lowers it), received {after}"
    )]
    LossRose {
        /// The step after which it rose.
        step: usize,
        /// Loss before.
        before: f64,
        /// Loss after.
        after: f64,
        /// The rise allowed.
        allowed: f64,
        /// The task's learning rate.
        rate: f64,
        /// [`descent_rate`].
        bound: f64,
    },
}

impl QualityFailure {
    /// The stable reason recorded with the rejection.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::LossRose { .. } => "LossRose",
            _ => "BadQuality",
        }
    }
}

/// The largest learning rate at which a gradient step of softmax regression on `F`
/// features never raises the loss (module docs): `4/(9F + 1)`.
pub fn descent_rate(features: u32) -> f64 {
    4.0 / (9.0 * f64::from(features) + 1.0)
}

/// The rise of the mean loss from `before` that rounding may cause (module docs).
pub fn allowed_rise(features: u32, classes: u32, tolerance: f64, before: f64) -> f64 {
    let u = f64::from(f32::EPSILON) / 2.0;
    let rounding = 8.0 * (f64::from(features) + f64::from(classes) + 8.0) * u;
    let tolerance = if tolerance.is_finite() {
        tolerance.max(0.0)
    } else {
        0.0
    };
    tolerance.max(rounding) * before.abs().max(1.0)
}

/// Checks the quality `q` reported for a fragment of `samples` items of a task with
/// `spec` (module docs).
pub fn check(
    spec: &ComputeTaskSpec,
    samples: u64,
    q: Option<&ResultQuality>,
) -> Result<(), QualityFailure> {
    let model = match spec.workload {
        WorkloadType::Training => spec.training.as_ref().map(|t| &t.model),
        WorkloadType::Inference => spec.inference.as_ref().map(|i| &i.model),
        _ => None,
    };
    let (Some(model), Some(q)) = (model, q) else {
        return match (model, q) {
            (Some(_), None) => Err(QualityFailure::Missing),
            (None, Some(_)) => Err(QualityFailure::Unexpected),
            _ => Ok(()),
        };
    };
    if q.correct > samples {
        return Err(QualityFailure::TooManyCorrect {
            correct: q.correct,
            samples,
        });
    }
    let expected = match spec.workload {
        WorkloadType::Training => TRAINING_LOCAL_STEPS as usize + 1,
        _ => 0,
    };
    if q.losses.len() != expected {
        return Err(QualityFailure::Losses {
            expected,
            received: q.losses.len(),
        });
    }
    if let Some((step, value)) = q
        .losses
        .iter()
        .enumerate()
        .find(|(_, l)| !(l.is_finite() && **l >= 0.0))
    {
        return Err(QualityFailure::BadLoss {
            step,
            value: *value,
        });
    }
    let Some(t) = spec.training.as_ref() else {
        return Ok(());
    };
    let bound = descent_rate(model.features);
    if model.architecture != Architecture::SoftmaxRegression || t.learning_rate > bound {
        return Ok(());
    }
    for (step, w) in q.losses.windows(2).enumerate() {
        let (before, after) = (w[0], w[1]);
        let allowed = allowed_rise(
            model.features,
            model.classes,
            spec.verification.tolerance,
            before,
        );
        if after > before + allowed {
            return Err(QualityFailure::LossRose {
                step,
                before,
                after,
                allowed,
                rate: t.learning_rate,
                bound,
            });
        }
    }
    Ok(())
}

/// What a replay compares: the digest, and for a model's result its exact quality.
pub fn vote(r: &FragmentResult) -> String {
    match &r.quality {
        None => r.digest.clone(),
        Some(q) => {
            let losses: Vec<String> = q.losses.iter().map(|l| format!("{l:e}")).collect();
            format!(
                "{} (losses [{}], {} right)",
                r.digest,
                losses.join(", "),
                q.correct
            )
        }
    }
}

/// The task's mean loss (training) and accuracy (training and inference) over the
/// results that count, one per fragment, each weighted by its samples (`items` of a
/// fragment, from the slicer).
pub fn summary(records: &[Assignment], items: impl Fn(u32) -> u64) -> (Option<f64>, Option<f64>) {
    let mut seen = BTreeSet::new();
    let (mut samples, mut correct, mut loss, mut with_loss) = (0u64, 0u64, 0.0f64, 0u64);
    for r in records.iter().flat_map(|a| &a.results) {
        let Some(q) = r.quality.as_ref().filter(|_| is_paid(r)) else {
            continue;
        };
        if !seen.insert(r.fragment) {
            continue;
        }
        let n = items(r.fragment);
        samples = samples.saturating_add(n);
        correct = correct.saturating_add(q.correct.min(n));
        if let Some(l) = q.losses.last() {
            loss += l * n as f64;
            with_loss = with_loss.saturating_add(n);
        }
    }
    let accuracy = (samples > 0).then(|| correct as f64 / samples as f64);
    let loss = (with_loss > 0).then(|| loss / with_loss as f64);
    (loss, accuracy)
}

#[cfg(test)]
mod tests;
