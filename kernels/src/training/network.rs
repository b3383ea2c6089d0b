//! The model a training or inference task names: softmax regression ([`Model`]) or the
//! two-layer perceptron ([`Mlp`], when `hidden` is set). This module owns the choice and
//! the steps common to both, so the CPU path and the GPU driver run either the same way.

use super::mlp::{self, Mlp, MlpGradient};
use super::synthetic::{DataSet, Shard};
use super::{Gradient, GradientCommitment, Model, TrainingError};

/// A model of either architecture.
#[derive(Debug, Clone, PartialEq)]
pub enum Network {
    /// Softmax regression.
    Linear(Model),
    /// A two-layer perceptron.
    Mlp(Mlp),
}

/// The gradient of either architecture.
#[derive(Debug, Clone, PartialEq)]
pub enum NetworkGradient {
    /// Softmax regression's.
    Linear(Gradient),
    /// The perceptron's.
    Mlp(MlpGradient),
}

/// Loss and accuracy of a model on a shard.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quality {
    /// Mean cross-entropy loss.
    pub loss: f64,
    /// Samples predicted right.
    pub correct: u64,
}

impl Network {
    /// The starting point of training on `data`: [`Model::initial`], or
    /// [`Mlp::initial`] with `hidden` units.
    pub fn initial(data: &DataSet, hidden: Option<u32>, seed: u64) -> Result<Self, TrainingError> {
        Ok(match hidden {
            None => Self::Linear(Model::initial(data, seed)),
            Some(h) => Self::Mlp(Mlp::initial(data, h as usize, seed)?),
        })
    }

    /// The model inference runs: [`Model::reference`], or [`Mlp::reference`].
    pub fn reference(data: &DataSet, hidden: Option<u32>) -> Result<Self, TrainingError> {
        Ok(match hidden {
            None => Self::Linear(Model::reference(data)),
            Some(h) => Self::Mlp(Mlp::reference(data, h as usize)?),
        })
    }

    /// Features per sample.
    pub fn features(&self) -> usize {
        match self {
            Self::Linear(m) => m.features(),
            Self::Mlp(m) => m.features(),
        }
    }

    /// Classes.
    pub fn classes(&self) -> usize {
        match self {
            Self::Linear(m) => m.classes(),
            Self::Mlp(m) => m.classes(),
        }
    }

    /// Hidden units (0 for softmax regression): the scratch [`Self::logits_into`] needs.
    pub fn hidden(&self) -> usize {
        match self {
            Self::Linear(_) => 0,
            Self::Mlp(m) => m.hidden(),
        }
    }

    /// The logits of `x` into `z`, with `h` (`hidden` long) as scratch.
    pub(crate) fn logits_into(&self, x: &[f32], h: &mut [f32], z: &mut [f32]) {
        match self {
            Self::Linear(m) => m.logits_into(x, z),
            Self::Mlp(m) => m.logits_into(x, h, z),
        }
    }

    /// An empty gradient commitment for this model's shape.
    pub fn commitment(&self) -> GradientCommitment {
        match self {
            Self::Linear(m) => GradientCommitment::new(m.features(), m.classes()),
            Self::Mlp(m) => GradientCommitment::new_mlp(m.features(), m.hidden(), m.classes()),
        }
    }

    /// One gradient-descent step on the whole shard; commits the gradient and returns
    /// the loss before the step.
    pub fn step(
        &mut self,
        shard: &Shard,
        learning_rate: f32,
        commitment: &mut GradientCommitment,
    ) -> Result<f64, TrainingError> {
        let (loss, g) = match self {
            Self::Linear(m) => {
                let e = super::evaluate(m, shard)?;
                (e.loss, NetworkGradient::Linear(e.gradient))
            }
            Self::Mlp(m) => {
                let e = mlp::evaluate(m, shard)?;
                (e.loss, NetworkGradient::Mlp(e.gradient))
            }
        };
        self.apply(&g, learning_rate, commitment)?;
        Ok(loss)
    }

    /// Commits gradient `g` (of this model, from any device) and descends along it.
    pub fn apply(
        &mut self,
        g: &NetworkGradient,
        learning_rate: f32,
        commitment: &mut GradientCommitment,
    ) -> Result<(), TrainingError> {
        super::check_learning_rate(learning_rate)?;
        match (self, g) {
            (Self::Linear(m), NetworkGradient::Linear(g)) => {
                commitment.push(g);
                super::descend(m, g, learning_rate);
            }
            (Self::Mlp(m), NetworkGradient::Mlp(g)) => {
                commitment.push_mlp(g);
                m.descend(g, learning_rate);
            }
            (m, _) => {
                return Err(TrainingError::out_of_range(
                    "gradient",
                    "another architecture's",
                    if m.hidden() == 0 {
                        "softmax regression"
                    } else {
                        "mlp"
                    },
                ));
            }
        }
        Ok(())
    }

    /// Loss and accuracy on `shard`.
    pub fn quality(&self, shard: &Shard) -> Result<Quality, TrainingError> {
        let (loss, correct) = match self {
            Self::Linear(m) => {
                let e = super::evaluate(m, shard)?;
                (e.loss, e.correct)
            }
            Self::Mlp(m) => {
                let e = mlp::evaluate(m, shard)?;
                (e.loss, e.correct)
            }
        };
        Ok(Quality { loss, correct })
    }
}
