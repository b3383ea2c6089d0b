//! One fragment, executed: the task's spec mapped onto the kernels' [`FragmentKind`], the
//! fragment's work items (as the operator's slicer cut them) run by the executor on its
//! device, and the committed result the gateway records. Owns that mapping and nothing
//! else.

use zop_api::OPS_PER_WORK_UNIT;
use zop_api::protocol::FragmentSpan;
use zop_api::protocol::{FragmentResult, ResultQuality};
use zop_api::task::{ComputeTaskSpec, DataOperation, TRAINING_LOCAL_STEPS, WorkloadType};
use zop_kernels::data::Operation;
use zop_kernels::fragment::executor::{Execution, Executor};
use zop_kernels::fragment::{self, FragmentError, FragmentKind};
use zop_kernels::training::TrainingParams;

/// Why a fragment could not run.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExecError {
    /// The spec lacks the parameter block of its workload type.
    #[error("the task has no parameters for its workload ({0})")]
    MissingParams(&'static str),
    /// The kernels refused the parameters or the range.
    #[error(transparent)]
    Kernel(#[from] FragmentError),
}

/// The kernels' description of a task.
pub fn kind(spec: &ComputeTaskSpec) -> Result<FragmentKind, ExecError> {
    Ok(match spec.workload {
        WorkloadType::ComputeProof => {
            let p = spec
                .compute_proof
                .as_ref()
                .ok_or(ExecError::MissingParams("computeProof"))?;
            FragmentKind::ComputeProof {
                dimension: p.dimension,
                products: p.products,
                seed: p.seed,
            }
        }
        WorkloadType::Training => {
            let p = spec
                .training
                .as_ref()
                .ok_or(ExecError::MissingParams("training"))?;
            FragmentKind::Training {
                params: TrainingParams {
                    features: p.model.features,
                    classes: p.model.classes,
                    samples: p.samples,
                    learning_rate: p.learning_rate as f32,
                    local_steps: TRAINING_LOCAL_STEPS,
                    seed: p.seed,
                    hidden: p.model.hidden,
                },
                epochs: p.epochs,
            }
        }
        WorkloadType::Inference => {
            let p = spec
                .inference
                .as_ref()
                .ok_or(ExecError::MissingParams("inference"))?;
            FragmentKind::Inference {
                features: p.model.features,
                classes: p.model.classes,
                samples: p.samples,
                seed: p.seed,
                hidden: p.model.hidden,
            }
        }
        WorkloadType::DataProcessing => {
            let p = spec
                .data_processing
                .as_ref()
                .ok_or(ExecError::MissingParams("dataProcessing"))?;
            FragmentKind::DataProcessing {
                operation: match p.operation {
                    DataOperation::Sha256 => Operation::Sha256,
                    DataOperation::Tokenize => Operation::Tokenize,
                },
                bytes: p.bytes,
                chunk_size: fragment::DEFAULT_CHUNK_SIZE,
                seed: p.seed,
            }
        }
    })
}

/// Executes one fragment of a task of `kind` and returns its committed result, with how
/// it ran.
pub fn fragment(
    executor: &Executor,
    kind: &FragmentKind,
    span: &FragmentSpan,
) -> Result<(FragmentResult, Execution), ExecError> {
    let run = executor.execute(kind, span.start..span.end)?;
    let result = FragmentResult {
        fragment: span.index,
        digest: run.output.digest.clone(),
        // The kernels count operations; the ledger counts units of 10⁹ (at least 1).
        work_units: run.output.work_units.div_ceil(OPS_PER_WORK_UNIT).max(1),
        elapsed_ms: (run.seconds * 1e3).round() as u64,
        received_ms: 0,
        check: None,
        replay_wanted_ms: None,
        quality: run.output.quality.as_ref().map(|q| ResultQuality {
            losses: q.losses.clone(),
            correct: q.correct,
        }),
        payable_ms: None,
    };
    Ok((result, run))
}
