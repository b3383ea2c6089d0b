//! The CPU path of each fragment kind: sizing checks before any allocation, the run,
//! the digest, the work units and the metrics (see the parent module's docs for the
//! digests and work-unit formulas).

use super::{FragmentError, FragmentOutput, MAX_LOCAL_STEPS, hex};
use crate::compute_proof;
use crate::data::{self, Operation};
use crate::inference;
use crate::merkle::{Hash, MerkleTree};
use crate::seed;
use crate::training::{self, DataSet, GradientCommitment, Model};
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::ops::Range;

/// Operations per byte of SHA-256 and of tokenizing (the operator's nominal costs).
const SHA256_OPS_PER_BYTE: u64 = 16;
const TOKENIZE_OPS_PER_BYTE: u64 = 4;
/// Bytes of one `n×n` compute-proof product in flight: `A` and `B` (i8), their i16
/// packed copies, and `C` (i32).
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

/// Parameters per model: `F·C + C`.
fn model_params(features: usize, classes: usize) -> u64 {
    (features as u64 + 1) * classes as u64
}

pub(super) fn compute_proof_cpu(
    dimension: u32,
    seed: u64,
    range: Range<u64>,
) -> Result<FragmentOutput, FragmentError> {
    const KIND: &str = "computeProof";
    let n = dimension as usize;
    if !(1..=compute_proof::MAX_N).contains(&n) {
        return Err(FragmentError::params(
            KIND,
            "dimension",
            "must be between 1 and 32768",
        ));
    }
    let entries = u128::from(dimension) * u128::from(dimension);
    too_large(
        KIND,
        "dimension",
        entries * u128::from(GEMM_BYTES_PER_ENTRY),
    )?;
    let products = range.end - range.start;
    too_large(
        KIND,
        "fragments",
        u128::from(products) * u128::from(BYTES_PER_ROOT),
    )?;
    let threads = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let key = seed::stream_key(seed, seed::STREAM_PRODUCT);
    let mut roots = Vec::with_capacity(products as usize);
    for p in range {
        let (a, b) = compute_proof::inputs(seed::word(key, p), n)?;
        let c = compute_proof::cpu::matmul_threads(&a, &b, n, threads)?;
        roots.push(compute_proof::commit(&c, n)?.root());
    }
    Ok(compute_proof_output(
        dimension,
        products,
        &MerkleTree::new(roots).root(),
    ))
}

/// A compute-proof fragment's output from its root, on whichever device computed it.
pub(super) fn compute_proof_output(dimension: u32, products: u64, root: &Hash) -> FragmentOutput {
    let ops = 2 * u64::from(dimension).pow(3);
    FragmentOutput {
        digest: hex(root),
        work_units: ops.saturating_mul(products),
        metrics: metrics([
            ("products", products.to_string()),
            ("dimension", dimension.to_string()),
        ]),
    }
}

/// A training fragment's parameters.
pub(super) struct TrainingRun {
    pub(super) features: usize,
    pub(super) classes: usize,
    pub(super) samples: u64,
    pub(super) learning_rate: f32,
    pub(super) local_steps: u32,
    pub(super) seed: u64,
}

pub(super) fn training_cpu(
    t: TrainingRun,
    range: Range<u64>,
) -> Result<FragmentOutput, FragmentError> {
    const KIND: &str = "training";
    let model_err = |error| FragmentError::Model { kind: KIND, error };
    if !(1..=MAX_LOCAL_STEPS).contains(&t.local_steps) {
        return Err(FragmentError::params(
            KIND,
            "localSteps",
            "must be between 1 and 100",
        ));
    }
    training::check_learning_rate(t.learning_rate).map_err(model_err)?;
    let data = DataSet::new(t.features, t.classes, t.samples, t.seed).map_err(model_err)?;
    let len = range.end - range.start;
    // Model, gradient and the scratch of one evaluation, besides the shard.
    let model_bytes = u128::from(model_params(t.features, t.classes)) * 4 * 3;
    too_large(KIND, "fragments", data.shard_bytes(len) + model_bytes)?;
    let shard = data.shard(range).map_err(model_err)?;
    let mut model = Model::initial(&data, t.seed);
    let mut commitment = GradientCommitment::new(t.features, t.classes);
    let mut initial_loss = None;
    for _ in 0..t.local_steps {
        let e = training::step(&mut model, &shard, t.learning_rate).map_err(model_err)?;
        initial_loss.get_or_insert(e.loss);
        commitment.push(&e.gradient);
    }
    let end = training::evaluate(&model, &shard).map_err(model_err)?;
    let ops = model_params(t.features, t.classes) * 6;
    Ok(FragmentOutput {
        digest: hex(&commitment.finish()),
        work_units: ops
            .saturating_mul(len)
            .saturating_mul(u64::from(t.local_steps)),
        metrics: metrics([
            (
                "initialLoss",
                format!("{:.6}", initial_loss.unwrap_or(end.loss)),
            ),
            ("loss", format!("{:.6}", end.loss)),
            ("accuracy", format!("{:.6}", end.accuracy())),
            ("samples", len.to_string()),
            ("localSteps", t.local_steps.to_string()),
        ]),
    })
}

pub(super) fn inference_cpu(
    features: usize,
    classes: usize,
    samples: u64,
    seed: u64,
    range: Range<u64>,
) -> Result<FragmentOutput, FragmentError> {
    const KIND: &str = "inference";
    let model_err = |error| FragmentError::Model { kind: KIND, error };
    let data = DataSet::new(features, classes, samples, seed).map_err(model_err)?;
    let len = range.end - range.start;
    too_large(
        KIND,
        "fragments",
        inference::forward_bytes(len, features, classes),
    )?;
    let shard = data.shard(range).map_err(model_err)?;
    let out = inference::forward(&Model::reference(&data), &shard).map_err(model_err)?;
    let ops = model_params(features, classes) * 2;
    Ok(FragmentOutput {
        digest: hex(&out.digest()),
        work_units: ops.saturating_mul(len),
        metrics: metrics([
            ("accuracy", format!("{:.6}", out.accuracy())),
            ("samples", len.to_string()),
        ]),
    })
}

pub(super) fn data_cpu(
    op: Operation,
    chunk_size: u64,
    seed: u64,
    range: Range<u64>,
) -> Result<FragmentOutput, FragmentError> {
    let p = data::process(op, seed, range, chunk_size)?;
    let per_byte = match op {
        Operation::Sha256 => SHA256_OPS_PER_BYTE,
        Operation::Tokenize => TOKENIZE_OPS_PER_BYTE,
    };
    Ok(FragmentOutput {
        digest: hex(&p.tree.root()),
        work_units: per_byte.saturating_mul(p.bytes),
        metrics: metrics([
            ("bytes", p.bytes.to_string()),
            ("chunks", p.chunks.to_string()),
            ("tokens", p.tokens.to_string()),
        ]),
    })
}
