//! The CPU reference path of each fragment kind, run after [`super::output::check`]
//! accepted the parameters; the outputs are built by [`super::output`].

use super::output;
use super::{FragmentError, FragmentKind, FragmentOutput};
use crate::compute_proof;
use crate::data;
use crate::inference;
use crate::merkle::MerkleTree;
use crate::seed;
use crate::training::{
    self, DataSet, GradientCommitment, Model, Trained, TrainingError, TrainingParams,
};
use std::num::NonZeroUsize;
use std::ops::Range;

/// Runs work items `range` of `kind` (already checked).
pub(super) fn run(kind: &FragmentKind, range: Range<u64>) -> Result<FragmentOutput, FragmentError> {
    let len = range.end - range.start;
    let model_err = |error| FragmentError::Model {
        kind: kind.name(),
        error,
    };
    Ok(match *kind {
        FragmentKind::ComputeProof {
            dimension, seed, ..
        } => {
            let n = dimension as usize;
            let threads = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
            let key = seed::stream_key(seed, seed::STREAM_PRODUCT);
            let mut roots = Vec::with_capacity(len as usize);
            for p in range {
                let (a, b) = compute_proof::inputs(seed::word(key, p), n)?;
                let c = compute_proof::cpu::matmul_threads(&a, &b, n, threads)?;
                roots.push(compute_proof::commit(&c, n)?.root());
            }
            output::compute_proof(dimension, len, &MerkleTree::new(roots).root())
        }
        FragmentKind::Training { params, .. } => {
            output::training(&params, len, &train(&params, range).map_err(model_err)?)
        }
        FragmentKind::Inference {
            features,
            classes,
            samples,
            seed,
        } => {
            let data = DataSet::new(features as usize, classes as usize, samples, seed)
                .map_err(model_err)?;
            let shard = data.shard(range).map_err(model_err)?;
            let out = inference::forward(&Model::reference(&data), &shard).map_err(model_err)?;
            output::inference(features, classes, len, &out.digest(), out.accuracy())
        }
        FragmentKind::DataProcessing {
            operation,
            chunk_size,
            seed,
            ..
        } => {
            let p = data::process(operation, seed, range, chunk_size)?;
            output::data(operation, p.bytes, p.chunks, p.tokens, &p.tree.root())
        }
    })
}

/// `localSteps` gradient-descent steps from the seeded initial weights on the shard.
fn train(t: &TrainingParams, range: Range<u64>) -> Result<Trained, TrainingError> {
    let (f, c) = (t.features as usize, t.classes as usize);
    let data = DataSet::new(f, c, t.samples, t.seed)?;
    let shard = data.shard(range)?;
    let mut model = Model::initial(&data, t.seed);
    let mut commitment = GradientCommitment::new(f, c);
    let mut initial_loss = None;
    for _ in 0..t.local_steps {
        let e = training::step(&mut model, &shard, t.learning_rate)?;
        initial_loss.get_or_insert(e.loss);
        commitment.push(&e.gradient);
    }
    let end = training::evaluate(&model, &shard)?;
    Ok(Trained {
        digest: commitment.finish(),
        initial_loss: initial_loss.unwrap_or(end.loss),
        loss: end.loss,
        accuracy: end.accuracy(),
    })
}
