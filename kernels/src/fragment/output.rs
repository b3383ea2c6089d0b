//! What every device shares for a fragment: the checks made before anything is
//! allocated (nothing above [`crate::MAX_ALLOC_BYTES`]; each error names its field), and
//! each kind's output from what the device computed (digest, work units and metrics, with
//! the formulas of the parent module's docs). The runs themselves are in `cpu` and in
//! [`crate::gpu`].

use super::{FragmentError, FragmentKind, FragmentOutput, MAX_LOCAL_STEPS, Quality, hex};
use crate::compute_proof;
use crate::data::{self, Operation};
use crate::inference;
use crate::merkle::Hash;
use crate::training::{self, DataSet, Trained, TrainingParams, mlp};
use std::collections::BTreeMap;
use std::ops::Range;

/// Operations per byte of SHA-256 and of tokenizing (the operator's nominal costs).
const SHA256_OPS_PER_BYTE: u64 = 16;
const TOKENIZE_OPS_PER_BYTE: u64 = 4;
/// Bytes of one `n×n` compute-proof product in flight on the CPU: `A` and `B` (i8), their
/// i16 packed copies, and `C` (i32).
const GEMM_BYTES_PER_ENTRY: u64 = 2 + 4 + 4;
/// Bytes per product root with its share of the Merkle tree.
const BYTES_PER_ROOT: u64 = 64;

fn too_large(kind: &'static str, field: &'static str, bytes: u128) -> Result<(), FragmentError> {
    if bytes > u128::from(crate::MAX_ALLOC_BYTES) {
        return Err(FragmentError::TooLarge { kind, field, bytes });
    }
    Ok(())
}

fn metrics<const N: usize>(pairs: [(&str, String); N]) -> BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Parameters per model: `F·C + C`, or `F·H + H + H·C + C` with `hidden` units.
fn model_params(features: u32, classes: u32, hidden: Option<u32>) -> u64 {
    let (f, c) = (u64::from(features), u64::from(classes));
    match hidden.map(u64::from) {
        None => (f + 1) * c,
        Some(h) => (f + 1) * h + (h + 1) * c,
    }
}

/// Refuses parameters or a range no device may run. The limits are the CPU path's, on
/// every device, so a fragment one device accepts every device can replay.
pub(super) fn check(kind: &FragmentKind, items: &Range<u64>) -> Result<(), FragmentError> {
    let total = kind.items()?;
    if items.start >= items.end || items.end > total {
        return Err(FragmentError::Range {
            start: items.start,
            end: items.end,
            items: total,
        });
    }
    let len = items.end - items.start;
    let name = kind.name();
    let model_err = |error| FragmentError::Model { kind: name, error };
    match *kind {
        FragmentKind::ComputeProof { dimension, .. } => {
            if !(1..=compute_proof::MAX_N).contains(&(dimension as usize)) {
                return Err(FragmentError::params(
                    name,
                    "dimension",
                    "must be between 1 and 32768",
                ));
            }
            let entries = u128::from(dimension) * u128::from(dimension);
            too_large(
                name,
                "dimension",
                entries * u128::from(GEMM_BYTES_PER_ENTRY),
            )?;
            too_large(
                name,
                "fragments",
                u128::from(len) * u128::from(BYTES_PER_ROOT),
            )
        }
        FragmentKind::Training { params, .. } => check_training(&params, len),
        FragmentKind::Inference {
            features,
            classes,
            samples,
            seed,
            hidden,
        } => {
            DataSet::new(features as usize, classes as usize, samples, seed).map_err(model_err)?;
            if let Some(h) = hidden {
                mlp::check_hidden(h as usize).map_err(model_err)?;
            }
            let bytes = inference::forward_bytes(len, features as usize, classes as usize)
                + u128::from(model_params(features, classes, hidden)) * 4;
            too_large(name, "fragments", bytes)
        }
        FragmentKind::DataProcessing { chunk_size, .. } => {
            data::check(items, chunk_size)?;
            Ok(())
        }
    }
}

/// The checks of a training fragment of `len` items.
fn check_training(t: &TrainingParams, len: u64) -> Result<(), FragmentError> {
    let name = "training";
    let model_err = |error| FragmentError::Model { kind: name, error };
    let TrainingParams {
        features,
        classes,
        samples,
        learning_rate,
        local_steps,
        seed,
        hidden,
    } = *t;
    if !(1..=MAX_LOCAL_STEPS).contains(&local_steps) {
        return Err(FragmentError::params(
            name,
            "localSteps",
            "must be between 1 and 100",
        ));
    }
    training::check_learning_rate(learning_rate).map_err(model_err)?;
    if let Some(h) = hidden {
        mlp::check_hidden(h as usize).map_err(model_err)?;
    }
    let data =
        DataSet::new(features as usize, classes as usize, samples, seed).map_err(model_err)?;
    // Model, gradient and the scratch of one evaluation, besides the shard.
    let model_bytes = u128::from(model_params(features, classes, hidden)) * 4 * 3;
    too_large(name, "fragments", data.shard_bytes(len) + model_bytes)
}

/// A compute-proof fragment's output from its root.
pub(super) fn compute_proof(dimension: u32, products: u64, root: &Hash) -> FragmentOutput {
    let ops = 2 * u64::from(dimension).pow(3);
    FragmentOutput {
        digest: hex(root),
        work_units: ops.saturating_mul(products),
        metrics: metrics([
            ("products", products.to_string()),
            ("dimension", dimension.to_string()),
        ]),
        quality: None,
    }
}

/// A training fragment's output.
pub(super) fn training(p: &TrainingParams, samples: u64, t: &Trained) -> FragmentOutput {
    let ops = model_params(p.features, p.classes, p.hidden) * 6;
    FragmentOutput {
        digest: hex(&t.digest),
        work_units: ops
            .saturating_mul(samples)
            .saturating_mul(u64::from(p.local_steps)),
        metrics: metrics([
            ("initialLoss", format!("{:.6}", t.initial_loss())),
            ("loss", format!("{:.6}", t.loss())),
            ("accuracy", format!("{:.6}", t.accuracy())),
            ("samples", samples.to_string()),
            ("localSteps", p.local_steps.to_string()),
        ]),
        quality: Some(Quality {
            losses: t.losses.clone(),
            correct: t.correct,
        }),
    }
}

/// An inference fragment's output from its digest and the samples predicted right.
pub(super) fn inference(
    kind: &FragmentKind,
    samples: u64,
    digest: &Hash,
    correct: u64,
) -> FragmentOutput {
    let (features, classes, hidden) = match *kind {
        FragmentKind::Inference {
            features,
            classes,
            hidden,
            ..
        } => (features, classes, hidden),
        _ => (0, 0, None),
    };
    let ops = model_params(features, classes, hidden) * 2;
    let accuracy = correct as f64 / samples.max(1) as f64;
    FragmentOutput {
        digest: hex(digest),
        work_units: ops.saturating_mul(samples),
        metrics: metrics([
            ("accuracy", format!("{accuracy:.6}")),
            ("samples", samples.to_string()),
        ]),
        quality: Some(Quality {
            losses: Vec::new(),
            correct,
        }),
    }
}

/// A data-processing fragment's output.
pub(super) fn data(
    op: Operation,
    bytes: u64,
    chunks: u64,
    tokens: u64,
    root: &Hash,
) -> FragmentOutput {
    let per_byte = match op {
        Operation::Sha256 => SHA256_OPS_PER_BYTE,
        Operation::Tokenize => TOKENIZE_OPS_PER_BYTE,
    };
    FragmentOutput {
        digest: hex(root),
        work_units: per_byte.saturating_mul(bytes),
        metrics: metrics([
            ("bytes", bytes.to_string()),
            ("chunks", chunks.to_string()),
            ("tokens", tokens.to_string()),
        ]),
        quality: None,
    }
}
