//! Challenges applied to a task: which fragments are challenged and at how many rows,
//! the kernels' description of a fragment to check, and which challenges went
//! unanswered too long. The draw's randomness and the check's secret come from the
//! caller (the gateway, from the operating system's CSPRNG), after the commitment.

use crate::api::protocol::{ChallengedRow, Check};
use crate::api::task::{ComputeTaskSpec, WorkloadType};
use crate::scheduler::slicer::Slicing;
use crate::tasks::assignment::Assignment;
use zop_kernels::compute_proof::challenge::{self, Fragment, RowRef};

/// How long a worker has to answer challenges after they were drawn; an honest worker
/// answers in seconds (recomputing 66 rows of `n = 8192` is 4.4·10⁹ multiply-adds).
pub const TIMEOUT_MS: i64 = 120_000;

/// The kernels' description of fragment `index`, when the task's kind is challenged
/// (compute-proof, with at least one challenge).
pub fn fragment(spec: &ComputeTaskSpec, slicing: &Slicing, index: u32) -> Option<Fragment> {
    let p = spec.compute_proof.as_ref()?;
    if spec.workload != WorkloadType::ComputeProof || spec.verification.challenges == 0 {
        return None;
    }
    let range = slicing.range(index)?;
    Some(Fragment {
        seed: p.seed,
        n: p.dimension,
        first: range.start,
        count: u32::try_from(range.end - range.start).ok()?,
    })
}

/// The rows to challenge in fragment `f` of a task with `spec`, from `draw`.
pub fn rows(spec: &ComputeTaskSpec, f: &Fragment, draw: u64) -> Vec<ChallengedRow> {
    let k = spec
        .verification
        .challenges
        .min(crate::api::protocol::MAX_CHALLENGES);
    challenge::draw_rows(draw, f, k)
        .into_iter()
        .map(|r| ChallengedRow {
            product: r.product,
            row: r.row,
        })
        .collect()
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
    fn only_challenged_compute_proof_fragments_have_a_fragment() {
        let spec = TaskBuilder::proof(256, 10).count(5).spec();
        let s = slice(&spec).unwrap();
        let f = fragment(&spec, &s, 1).unwrap();
        assert_eq!((f.first, f.count, f.n), (2, 2, 256));
        assert!(fragment(&spec, &s, 5).is_none());
        let mut none = spec.clone();
        none.verification.challenges = 0;
        assert!(fragment(&none, &s, 1).is_none());
        let bytes = TaskBuilder::bytes(1000).count(2).spec();
        assert!(fragment(&bytes, &slice(&bytes).unwrap(), 0).is_none());
    }

    #[test]
    fn rows_follow_the_policy_and_stay_in_the_fragment() {
        let spec = TaskBuilder::proof(256, 10).count(5).spec();
        let f = fragment(&spec, &slice(&spec).unwrap(), 0).unwrap();
        let r = rows(&spec, &f, 7);
        assert!(r.len() > 60 && r.len() <= 66, "66 draws, repeats merged");
        assert!(r.iter().all(|r| r.product < 2 && r.row < 256));
        assert!(r.windows(2).all(|w| w[0] < w[1]));
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
