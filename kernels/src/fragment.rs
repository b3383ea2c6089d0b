//! The single entry point for running a fragment: a [`FragmentKind`] (the task's
//! parameters) and the fragment's work items go in, as the operator's slicer
//! (`operator/src/scheduler/slicer.rs`, the one place that cuts tasks) gave them; a
//! [`FragmentOutput`] comes out: a hex digest, work units and metrics.
//! [`execute_range`] is the CPU reference path; [`executor`] picks the device.
//!
//! This module owns parameter validation and sizing (nothing above
//! [`crate::MAX_ALLOC_BYTES`] is allocated: such parameters are errors naming the
//! field), the digest of each kind, and the work-unit count. The math is in the kind
//! modules.
//!
//! Work units are the fragment's nominal operation count, with the operator's formulas
//! (`operator/src/scheduler/slicer.rs`, `ops_per_item`) so claimed and expected work
//! agree: `2·n³` per matrix product, `6·(F·C + C)` per training item and local step,
//! `2·(F·C + C)` per inference sample, 16 per byte hashed and 4 per byte tokenized.
//! These are single operations: the operator's scheduling weight counts 10⁹ of them
//! (`OPS_PER_WORK_UNIT`) as one unit, rounded up.
//!
//! Digests: compute-proof, the Merkle root over the per-product roots of
//! [`crate::compute_proof::commit`] (with one product, that product's root);
//! training, the gradient commitment of every local step
//! ([`crate::training::GradientCommitment`]); inference,
//! [`crate::inference::Inference::digest`]; data processing, the Merkle root over the
//! chunk leaves ([`crate::data`]).

mod cpu;
pub mod executor;
mod output;

use crate::compute_proof::ShapeError;
use crate::data::{DataError, Operation};
use crate::merkle::Hash;
use crate::training::{TrainingError, TrainingParams};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Range;

/// Most passes over the training data (the task API's limit).
pub const MAX_EPOCHS: u32 = 100;
/// Most gradient-descent steps one training fragment takes on its shard.
pub const MAX_LOCAL_STEPS: u32 = 100;
/// Default data-processing chunk: 64 KiB.
pub const DEFAULT_CHUNK_SIZE: u64 = 64 * 1024;

/// A task's parameters for one kind of work. Every kind's inputs are regenerated from
/// `seed`; nothing else is transferred.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum FragmentKind {
    /// `products` int8 matrix products `C = A·B` (`dimension × dimension`); the work
    /// items are the products, and product `p`'s inputs come from word `p` of
    /// [`crate::seed::STREAM_PRODUCT`] under `seed`.
    ComputeProof {
        /// Side of the square matrices.
        dimension: u32,
        /// Products in the whole task.
        products: u64,
        /// Task seed.
        #[serde(default)]
        seed: u64,
    },
    /// Softmax regression, or the two-layer perceptron when `hidden` is set, on the
    /// seeded data set ([`crate::training`]); the work items
    /// are `samples × epochs` (item `k` is sample `k mod samples` with fresh noise per
    /// epoch). A fragment starts from the seeded initial weights and takes `localSteps`
    /// gradient-descent steps on its shard.
    Training {
        /// The model, the data set and the steps.
        #[serde(flatten)]
        params: TrainingParams,
        /// Passes over the data, 1 to 100.
        #[serde(default = "one")]
        epochs: u32,
    },
    /// Forward passes of the reference model ([`crate::training::Network::reference`])
    /// over the seeded data set ([`crate::inference`]); the work items are the samples.
    Inference {
        /// Features per sample, 1 to 4096.
        features: u32,
        /// Classes, 2 to 1024.
        classes: u32,
        /// Samples to classify.
        samples: u64,
        /// Task seed.
        #[serde(default)]
        seed: u64,
        /// Hidden units of the reference perceptron ([`crate::training::Mlp::reference`]);
        /// none for softmax regression.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hidden: Option<u32>,
    },
    /// Hashing or tokenizing a seeded byte stream in chunks ([`crate::data`]); the work
    /// items are the bytes.
    DataProcessing {
        /// What to do with each chunk.
        operation: Operation,
        /// Bytes in the whole task.
        bytes: u64,
        /// Bytes per chunk (the last chunk of a fragment may be shorter).
        #[serde(default = "default_chunk_size")]
        chunk_size: u64,
        /// Task seed.
        #[serde(default)]
        seed: u64,
    },
}

fn one() -> u32 {
    1
}

fn default_chunk_size() -> u64 {
    DEFAULT_CHUNK_SIZE
}

/// What a fragment keeps to answer the challenges drawn after its commitment.
#[derive(Debug, Clone, PartialEq)]
pub enum Committed {
    /// Compute-proof: every product's row digests ([`crate::compute_proof::challenge`]).
    Rows(crate::compute_proof::challenge::Commitment),
    /// Data processing and inference: the tree over the chunk or sample leaves
    /// ([`crate::spot`]).
    Leaves(crate::merkle::MerkleTree),
}

/// What a model's fragment measured, for the operator to check and aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quality {
    /// Training: the mean loss before each local step, then after the last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub losses: Vec<f64>,
    /// Samples predicted right (after the last step, for training).
    pub correct: u64,
}

/// What a fragment produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FragmentOutput {
    /// The commitment: 64 lowercase hex characters (a SHA-256 digest or Merkle root).
    pub digest: String,
    /// Nominal operations performed (module docs).
    pub work_units: u64,
    /// Measurements as decimal strings, for example `loss` and `accuracy`.
    pub metrics: BTreeMap<String, String>,
    /// Training and inference: what the model measured, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
}

/// Why a fragment cannot run. Every variant names what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    /// A parameter is invalid.
    #[error("{kind}.{field} {reason}")]
    Params {
        /// The kind (`computeProof`, `training`, `inference`, `dataProcessing`).
        kind: &'static str,
        /// The parameter, as named in JSON.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Explicit work items that are empty or run past the task's last item.
    #[error("work items {start}..{end} are not a non-empty part of the task's {items} items")]
    Range {
        /// First item asked for.
        start: u64,
        /// One past the last item asked for.
        end: u64,
        /// Items in the task.
        items: u64,
    },
    /// The fragment would allocate more than [`crate::MAX_ALLOC_BYTES`].
    #[error(
        "{kind}.{field}: the fragment needs {bytes} bytes, more than the limit of {} bytes",
        crate::MAX_ALLOC_BYTES
    )]
    TooLarge {
        /// The kind.
        kind: &'static str,
        /// The parameter to reduce (`fragments` for a fragment with too many items).
        field: &'static str,
        /// Bytes it would need.
        bytes: u128,
    },
    /// The compute-proof kernel refused a shape.
    #[error("computeProof: {0}")]
    ComputeProof(#[from] ShapeError),
    /// Training or inference refused a parameter.
    #[error("{kind}: {error}")]
    Model {
        /// `training` or `inference`.
        kind: &'static str,
        /// The refusal.
        #[source]
        error: TrainingError,
    },
    /// Data processing refused a parameter.
    #[error("dataProcessing: {0}")]
    Data(#[from] DataError),
}

impl FragmentError {
    pub(crate) fn params(
        kind: &'static str,
        field: &'static str,
        reason: impl Into<String>,
    ) -> Self {
        Self::Params {
            kind,
            field,
            reason: reason.into(),
        }
    }

    /// The parameter at fault, as named in JSON within its kind.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Params { field, .. } | Self::TooLarge { field, .. } => field,
            Self::Range { .. } => "items",
            Self::ComputeProof(_) => "dimension",
            Self::Model { error, .. } => error.field(),
            Self::Data(e) => e.field(),
        }
    }

    /// A short fixed category for logs, Events and metric labels.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Params { .. } | Self::ComputeProof(_) | Self::Model { .. } | Self::Data(_) => {
                "InvalidParams"
            }
            Self::Range { .. } => "FragmentOutOfRange",
            Self::TooLarge { .. } => "FragmentTooLarge",
        }
    }
}

impl FragmentKind {
    /// The kind's name as in JSON.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ComputeProof { .. } => "computeProof",
            Self::Training { .. } => "training",
            Self::Inference { .. } => "inference",
            Self::DataProcessing { .. } => "dataProcessing",
        }
    }

    /// Work items in the whole task.
    pub fn items(&self) -> Result<u64, FragmentError> {
        let kind = self.name();
        let (items, field) = match self {
            Self::ComputeProof { products, .. } => (Some(*products), "products"),
            Self::Training { params, epochs } => {
                if !(1..=MAX_EPOCHS).contains(epochs) {
                    return Err(FragmentError::params(
                        kind,
                        "epochs",
                        "must be between 1 and 100",
                    ));
                }
                (params.samples.checked_mul(u64::from(*epochs)), "samples")
            }
            Self::Inference { samples, .. } => (Some(*samples), "samples"),
            Self::DataProcessing { bytes, .. } => (Some(*bytes), "bytes"),
        };
        match items {
            Some(0) => Err(FragmentError::params(kind, field, "must be positive")),
            Some(n) => Ok(n),
            None => Err(FragmentError::params(
                kind,
                field,
                "times epochs overflows 64 bits",
            )),
        }
    }
}

/// Runs work items `items` of `kind` on the CPU reference path. The range must be
/// non-empty and within the task.
pub fn execute_range(
    kind: &FragmentKind,
    items: Range<u64>,
) -> Result<FragmentOutput, FragmentError> {
    output::check(kind, &items)?;
    cpu::run(kind, items)
}

/// Lowercase hex of a digest.
pub fn hex(h: &Hash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
