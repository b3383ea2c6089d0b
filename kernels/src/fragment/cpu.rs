//! The CPU reference path of each fragment kind, run after [`super::output::check`]
//! accepted the parameters; the outputs are built by [`super::output`].

use super::output;
use super::{Committed, FragmentError, FragmentKind, FragmentOutput};
use crate::compute_proof;
use crate::compute_proof::challenge::{Commitment, Fragment};
use crate::data;
use crate::inference;
use crate::training::{DataSet, Network, Trained, TrainingError, TrainingParams};
use std::num::NonZeroUsize;
use std::ops::Range;

/// Runs work items `range` of `kind` (already checked).
pub(super) fn run(kind: &FragmentKind, range: Range<u64>) -> Result<FragmentOutput, FragmentError> {
    Ok(run_committed(kind, range)?.0)
}

/// [`run`], keeping what a fragment needs to answer its challenges ([`Committed`]).
pub(super) fn run_committed(
    kind: &FragmentKind,
    range: Range<u64>,
) -> Result<(FragmentOutput, Option<Committed>), FragmentError> {
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
            let f = Fragment {
                seed,
                n: dimension,
                first: range.start,
                count: len as u32,
            };
            let mut trees = Vec::with_capacity(len as usize);
            for p in 0..f.count {
                let (a, b) = compute_proof::inputs(f.product_seed(p), n)?;
                let c = compute_proof::cpu::matmul_threads(&a, &b, n, threads)?;
                trees.push(compute_proof::commit(&c, n)?);
            }
            let c = Commitment::new(f, trees);
            (
                output::compute_proof(dimension, len, &c.root()),
                Some(Committed::Rows(c)),
            )
        }
        FragmentKind::Training { params, .. } => (
            output::training(&params, len, &train(&params, range).map_err(model_err)?),
            None,
        ),
        FragmentKind::Inference {
            features,
            classes,
            samples,
            seed,
            hidden,
        } => {
            let data = DataSet::new(features as usize, classes as usize, samples, seed)
                .map_err(model_err)?;
            let shard = data.shard(range).map_err(model_err)?;
            let model = Network::reference(&data, hidden).map_err(model_err)?;
            let out = inference::forward(&model, &shard).map_err(model_err)?;
            let tree = out.tree();
            (
                output::inference(kind, len, &tree.root(), out.correct),
                Some(Committed::Leaves(tree)),
            )
        }
        FragmentKind::DataProcessing {
            operation,
            chunk_size,
            seed,
            ..
        } => {
            let p = data::process(operation, seed, range, chunk_size)?;
            let root = p.tree.root();
            (
                output::data(operation, p.bytes, p.chunks, p.tokens, &root),
                Some(Committed::Leaves(p.tree)),
            )
        }
    })
}

/// `localSteps` gradient-descent steps from the seeded initial weights on the shard.
fn train(t: &TrainingParams, range: Range<u64>) -> Result<Trained, TrainingError> {
    let data = DataSet::new(t.features as usize, t.classes as usize, t.samples, t.seed)?;
    let shard = data.shard(range)?;
    let mut model = Network::initial(&data, t.hidden, t.seed)?;
    let mut commitment = model.commitment();
    let mut losses = Vec::with_capacity(t.local_steps as usize + 1);
    for _ in 0..t.local_steps {
        losses.push(model.step(&shard, t.learning_rate, &mut commitment)?);
    }
    let end = model.quality(&shard)?;
    losses.push(end.loss);
    Ok(Trained {
        digest: commitment.finish(),
        losses,
        correct: end.correct,
        samples: shard.len() as u64,
    })
}
