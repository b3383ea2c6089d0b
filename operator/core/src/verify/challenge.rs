//! Challenges applied to a task: which fragments are challenged and at how many rows or
//! leaves, the kernels' description of a fragment to check (compute-proof rows, or the
//! chunks and samples of `zop_kernels::spot`), and which challenges went unanswered too
//! long. The draw's randomness and the check's secret come from the
//! caller (the gateway, from the operating system's CSPRNG), after the commitment.

use crate::api::protocol::{ChallengedRow, Check};
use crate::api::task::{ComputeTaskSpec, DataOperation, WorkloadType};
use crate::scheduler::slicer::Slicing;
use crate::tasks::assignment::Assignment;
use zop_kernels::compute_proof::challenge::{self, Fragment, RowRef};
use zop_kernels::data::Operation;
use zop_kernels::fragment::DEFAULT_CHUNK_SIZE;
use zop_kernels::spot::{self, Leaves};

/// How long a worker has to answer challenges after they were drawn; an honest worker
/// answers in seconds (recomputing 66 rows of `n = 8192` is 4.4·10⁹ multiply-adds).
pub const TIMEOUT_MS: i64 = 120_000;

/// Share of a data-processing or inference fragment's items spot-checked (at least one,
/// at most `challenges`): each costs the verifier what it cost the worker.
pub const SPOT_SHARE: f64 = 0.02;

/// What the challenges of a fragment check.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Compute-proof rows, by Freivalds' check.
    Rows(Fragment),
    /// Data-processing chunks or inference samples, recomputed by the verifier.
    Leaves(Leaves),
}

/// What the challenges of fragment `index` check, when the task's kind is challenged
/// (compute-proof, data processing or inference, with at least one challenge).
pub fn target(spec: &ComputeTaskSpec, slicing: &Slicing, index: u32) -> Option<Target> {
    if spec.verification.challenges == 0 {
        return None;
    }
    let range = slicing.range(index)?;
    Some(match spec.workload {
        WorkloadType::ComputeProof => {
            let p = spec.compute_proof.as_ref()?;
            Target::Rows(Fragment {
                seed: p.seed,
                n: p.dimension,
                first: range.start,
                count: u32::try_from(range.end - range.start).ok()?,
            })
        }
        WorkloadType::DataProcessing => {
            let p = spec.data_processing.as_ref()?;
            Target::Leaves(Leaves::Chunks {
                operation: match p.operation {
                    DataOperation::Sha256 => Operation::Sha256,
                    DataOperation::Tokenize => Operation::Tokenize,
                },
                seed: p.seed,
                chunk_size: DEFAULT_CHUNK_SIZE,
                range,
            })
        }
        WorkloadType::Inference => {
            let p = spec.inference.as_ref()?;
            let m = &p.model;
            Target::Leaves(Leaves::Samples {
                data: (m.features, m.classes, p.samples, p.seed),
                hidden: m.hidden,
                range,
            })
        }
        WorkloadType::Training => return None,
    })
}

/// The challenges of a fragment with target `t` of a task with `spec`, from `draw`: rows
/// of products, or leaves (`product` 0, `row` the chunk or sample).
pub fn rows(spec: &ComputeTaskSpec, t: &Target, draw: u64) -> Vec<ChallengedRow> {
    let k = spec
        .verification
        .challenges
        .min(crate::api::protocol::MAX_CHALLENGES);
    match t {
        Target::Rows(f) => challenge::draw_rows(draw, f, k)
            .into_iter()
            .map(|r| ChallengedRow {
                product: r.product,
                row: r.row,
            })
            .collect(),
        Target::Leaves(l) => {
            let share = (l.count() as f64 * SPOT_SHARE).ceil() as u64;
            let k = share.clamp(1, u64::from(k)) as u32;
            spot::draw(draw, l.count(), k)
                .into_iter()
                .filter_map(|i| {
                    Some(ChallengedRow {
                        product: 0,
                        row: u32::try_from(i).ok()?,
                    })
                })
                .collect()
        }
    }
}

/// The kernels' form of challenged rows.
pub fn refs(rows: &[ChallengedRow]) -> Vec<RowRef> {
    rows.iter()
        .map(|r| RowRef {
            product: r.product,
            row: r.row,
        })
        .collect()
}

/// The fragments of `a` whose challenges are older than [`TIMEOUT_MS`] at `now_ms`, with
/// the evidence for each.
pub fn expired(a: &Assignment, now_ms: i64) -> Vec<(u32, String)> {
    a.results
        .iter()
        .filter_map(|r| match &r.check {
            Some(Check::Challenged { rows, at_ms }) if now_ms - at_ms > TIMEOUT_MS => Some((
                r.fragment,
                format!(
                    "expected answers to {} rows challenged at {} ms within {} s, received none",
                    rows.len(),
                    at_ms,
                    TIMEOUT_MS / 1000
                ),
            )),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::fixtures::TaskBuilder;
    use crate::scheduler::slicer::slice;
    use crate::tasks::assignment::{FragmentResult, State};

    #[test]
    fn only_challenged_kinds_have_a_target() {
        let spec = TaskBuilder::proof(256, 10).count(5).spec();
        let s = slice(&spec).unwrap();
        let Some(Target::Rows(f)) = target(&spec, &s, 1) else {
            panic!("compute-proof is challenged by rows");
        };
        assert_eq!((f.first, f.count, f.n), (2, 2, 256));
        assert!(target(&spec, &s, 5).is_none());
        let mut none = spec.clone();
        none.verification.challenges = 0;
        assert!(target(&none, &s, 1).is_none());
        let bytes = TaskBuilder::bytes(1 << 20).count(2).spec();
        let Some(Target::Leaves(l)) = target(&bytes, &slice(&bytes).unwrap(), 1) else {
            panic!("data processing is spot-checked");
        };
        assert_eq!(l.count(), (1 << 19) / DEFAULT_CHUNK_SIZE);
        let inference = TaskBuilder::inference(1_000).count(4).spec();
        let t = target(&inference, &slice(&inference).unwrap(), 3);
        assert!(
            matches!(t, Some(Target::Leaves(Leaves::Samples { range, .. })) if range == (750..1000))
        );
        let training = TaskBuilder::training(1_000, 1).count(4).spec();
        assert!(target(&training, &slice(&training).unwrap(), 0).is_none());
    }

    #[test]
    fn rows_follow_the_policy_and_stay_in_the_fragment() {
        let spec = TaskBuilder::proof(256, 10).count(5).spec();
        let t = target(&spec, &slice(&spec).unwrap(), 0).unwrap();
        let r = rows(&spec, &t, 7);
        assert!(r.len() > 60 && r.len() <= 66, "66 draws, repeats merged");
        assert!(r.iter().all(|r| r.product < 2 && r.row < 256));
        assert!(r.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn leaves_are_a_small_share_of_the_fragment() {
        let spec = TaskBuilder::inference(100_000).count(10).spec();
        let t = target(&spec, &slice(&spec).unwrap(), 2).unwrap();
        let r = rows(&spec, &t, 11);
        // 2% of 10,000 samples is 200, capped at the 66 challenges.
        assert!(r.len() > 60 && r.len() <= 66, "{}", r.len());
        assert!(r.iter().all(|c| c.product == 0 && c.row < 10_000));
        let small = TaskBuilder::inference(1_000).count(10).spec();
        let t = target(&small, &slice(&small).unwrap(), 0).unwrap();
        assert_eq!(rows(&small, &t, 11).len(), 2, "2% of 100 samples");
        let one = TaskBuilder::bytes(1_000).count(1).spec();
        let t = target(&one, &slice(&one).unwrap(), 0).unwrap();
        assert_eq!(
            rows(&one, &t, 11),
            vec![ChallengedRow { product: 0, row: 0 }]
        );
    }

    #[test]
    fn challenges_expire_after_the_timeout_only() {
        let mut a = Assignment {
            task_namespace: "ns".into(),
            task: "t".into(),
            task_uid: "u".into(),
            device: "d".into(),
            start: 0,
            end: 2,
            attempt: 0,
            state: State::Running,
            results: vec![FragmentResult {
                fragment: 0,
                digest: "a".repeat(64),
                work_units: 1,
                elapsed_ms: 1,
                received_ms: 0,
                check: Some(Check::Challenged {
                    rows: vec![ChallengedRow { product: 0, row: 1 }],
                    at_ms: 1_000,
                }),
                replay_wanted_ms: None,
                quality: None,
                payable_ms: None,
            }],
            created_ms: 0,
            updated_ms: 0,
            pod_uid: None,
            claim_mismatches: 0,
            replay: false,
        };
        assert!(expired(&a, 1_000 + TIMEOUT_MS).is_empty());
        assert_eq!(expired(&a, 1_001 + TIMEOUT_MS).len(), 1);
        a.results[0].check = Some(Check::Verified { at_ms: 2_000 });
        assert!(expired(&a, 10 * TIMEOUT_MS).is_empty());
    }
}
