//! A task's whole execution state, derived from its persisted assignments alone: which
//! fragments are done, running, failed past their retries, or waiting (with their
//! backoff) for a device. Nothing else is stored, so an operator restart resumes a task
//! exactly where its assignments say it is, and no fragment is lost or counted twice.
//! Pure; times are Unix milliseconds.

use super::assignment::{Assignment, Check, State};
use crate::api::task_status::FragmentCounts;
use crate::scheduler::cycle::{RetryPolicy, Unit, next_retry};
use crate::scheduler::slicer::Slicing;

/// What a task's assignments imply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskPlan {
    /// Fragment counts: a fragment is verified when a verified result of it stands, and
    /// unverified when only results of a kind without a proof do; replay votes are the
    /// caller's (`decide`).
    pub counts: FragmentCounts,
    /// Units waiting for a device, in fragment order, at most `batch` fragments each.
    pub waiting: Vec<Unit>,
}

/// Derives the plan of a task with `slicing`, cutting waiting runs into units of at
/// most `batch` fragments. A fragment whose assignments were lost `policy.limit` times
/// has failed for good; otherwise it waits out the backoff after its last loss.
pub fn plan(
    slicing: &Slicing,
    assignments: &[Assignment],
    batch: u32,
    policy: &RetryPolicy,
) -> TaskPlan {
    let total = slicing.fragments();
    let n = total as usize;
    // Per fragment: a standing result exists, one is verified, one has no proof.
    let mut done = vec![false; n];
    let (mut verified, mut proofless) = (vec![false; n], vec![false; n]);
    let mut rejected = 0u32;
    let mut live = vec![false; n];
    let mut failures = vec![0u32; n];
    let mut lost_at = vec![i64::MIN; n];
    for a in assignments {
        // Records are validated before they get here; clamping keeps the planner total
        // (never a panic) on anything that slips through.
        let start = a.start.min(total) as usize;
        let range = start..(a.end.min(total) as usize).max(start);
        for r in &a.results {
            let f = r.fragment as usize;
            if f >= n {
                continue;
            }
            match r.check {
                Some(Check::Rejected { .. }) => {
                    rejected = rejected.saturating_add(1);
                    continue;
                }
                Some(Check::Verified { .. }) => verified[f] = true,
                None => proofless[f] = true,
                Some(Check::Challenged { .. }) => {}
            }
            done[f] = true;
        }
        // A replay re-executes a fragment that is done already: it neither runs the
        // fragment nor fails it.
        if a.replay {
            continue;
        }
        match a.state {
            State::Pending | State::Running => live[range].iter_mut().for_each(|l| *l = true),
            State::Lost => {
                for f in range {
                    failures[f] = failures[f].saturating_add(1);
                    lost_at[f] = lost_at[f].max(a.updated_ms);
                }
            }
            State::Completed => {}
        }
    }
    let mut counts = FragmentCounts {
        total,
        rejected,
        ..FragmentCounts::default()
    };
    let mut waiting: Vec<Unit> = Vec::new();
    for f in 0..n {
        if done[f] {
            counts.completed += 1;
            if verified[f] {
                counts.verified += 1;
            } else if proofless[f] {
                counts.unverified += 1;
            }
            continue;
        }
        if live[f] {
            counts.running += 1;
            continue;
        }
        let Some(delay) = next_retry(failures[f], policy) else {
            counts.failed += 1;
            continue;
        };
        counts.pending += 1;
        let not_before = if failures[f] == 0 {
            i64::MIN
        } else {
            lost_at[f].saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))
        };
        let index = f as u32;
        let extends = waiting.last().is_some_and(|u| {
            u.fragments.end == index
                && u.failures == failures[f]
                && u.not_before_ms == not_before
                && u.len() < batch.max(1)
        });
        if extends {
            if let Some(u) = waiting.last_mut() {
                u.fragments.end += 1;
            }
        } else {
            waiting.push(Unit {
                fragments: index..index + 1,
                weight: 0,
                failures: failures[f],
                not_before_ms: not_before,
            });
        }
    }
    for u in &mut waiting {
        u.weight = slicing.weight_of(u.fragments.clone());
    }
    TaskPlan { counts, waiting }
}

/// The task's result digest: a Merkle root over every fragment's digest in fragment
/// order (the first standing result of each), or `None` while a fragment lacks one.
pub fn result_digest(total: u32, assignments: &[Assignment]) -> Option<String> {
    let mut leaves: Vec<Option<[u8; 32]>> = vec![None; total as usize];
    for a in assignments {
        for r in a.standing() {
            let slot = leaves.get_mut(r.fragment as usize)?;
            if slot.is_none() {
                let mut h = [0u8; 32];
                hex::decode_to_slice(&r.digest, &mut h).ok()?;
                *slot = Some(h);
            }
        }
    }
    let leaves: Option<Vec<[u8; 32]>> = leaves.into_iter().collect();
    Some(hex::encode(
        zop_kernels::merkle::MerkleTree::new(leaves?).root(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::assignment::FragmentResult;

    fn assignment(start: u32, end: u32, attempt: u32, state: State) -> Assignment {
        Assignment {
            task_namespace: "ns".into(),
            task: "t".into(),
            task_uid: "uid".into(),
            device: "d".into(),
            start,
            end,
            attempt,
            state,
            results: Vec::new(),
            created_ms: 0,
            updated_ms: 1_000,
            pod_uid: None,
            claim_mismatches: 0,
            replay: false,
        }
    }

    fn done(a: &mut Assignment, f: u32) {
        a.record(
            FragmentResult {
                fragment: f,
                digest: "a".repeat(64),
                work_units: 1,
                elapsed_ms: 1,
                received_ms: 0,
                check: None,
                replay_wanted_ms: None,
                quality: None,
                payable_ms: None,
            },
            2_000,
        )
        .unwrap();
    }

    const POLICY: RetryPolicy = RetryPolicy {
        base: std::time::Duration::from_secs(5),
        max_delay: std::time::Duration::from_secs(300),
        limit: 3,
    };

    #[test]
    fn a_fresh_task_waits_whole_in_batches() {
        let s = Slicing::even(100, 10, 1);
        let p = plan(&s, &[], 4, &POLICY);
        assert_eq!(p.counts.pending, 10);
        let ranges: Vec<_> = p.waiting.iter().map(|u| u.fragments.clone()).collect();
        assert_eq!(ranges, [0..4, 4..8, 8..10]);
        assert!(
            p.waiting
                .iter()
                .all(|u| u.not_before_ms == i64::MIN && u.weight > 0)
        );
    }

    #[test]
    fn live_and_done_fragments_do_not_wait_and_lost_ones_back_off() {
        let s = Slicing::even(10, 10, 1);
        let mut running = assignment(0, 4, 0, State::Pending);
        done(&mut running, 1);
        let mut lost = assignment(4, 8, 0, State::Running);
        done(&mut lost, 5);
        lost.lose(10_000);
        let p = plan(&s, &[running, lost], 100, &POLICY);
        assert_eq!(
            (p.counts.completed, p.counts.running, p.counts.pending),
            (2, 3, 5)
        );
        let w: Vec<_> = p
            .waiting
            .iter()
            .map(|u| (u.fragments.clone(), u.failures, u.not_before_ms))
            .collect();
        assert_eq!(
            w,
            [(4..5, 1, 15_000), (6..8, 1, 15_000), (8..10, 0, i64::MIN)]
        );
    }

    #[test]
    fn fragments_fail_for_good_after_the_retry_limit() {
        let s = Slicing::even(4, 4, 1);
        let lost: Vec<_> = (0..3)
            .map(|k| {
                let mut a = assignment(0, 2, k, State::Running);
                a.lose(1_000 * i64::from(k));
                a
            })
            .collect();
        let p = plan(&s, &lost, 100, &POLICY);
        assert_eq!((p.counts.failed, p.counts.pending), (2, 2));
        assert_eq!(p.waiting.len(), 1);
        assert_eq!(p.waiting[0].fragments, 2..4);
    }

    #[test]
    fn a_fragment_done_in_a_lost_assignment_stays_done_and_counts_once() {
        let s = Slicing::even(2, 2, 1);
        let mut a = assignment(0, 2, 0, State::Running);
        done(&mut a, 0);
        a.lose(5);
        let mut b = assignment(0, 2, 1, State::Running);
        done(&mut b, 0);
        done(&mut b, 1);
        let p = plan(&s, &[a, b], 10, &POLICY);
        assert_eq!(
            (p.counts.completed, p.counts.failed, p.waiting.len()),
            (2, 0, 0)
        );
    }

    #[test]
    fn the_result_digest_needs_every_fragment_and_ignores_order() {
        let mut a = assignment(0, 2, 0, State::Pending);
        done(&mut a, 1);
        assert_eq!(result_digest(2, std::slice::from_ref(&a)), None);
        done(&mut a, 0);
        let d = result_digest(2, std::slice::from_ref(&a)).unwrap();
        assert_eq!(d.len(), 64);
        let mut b = assignment(0, 2, 0, State::Pending);
        done(&mut b, 0);
        done(&mut b, 1);
        assert_eq!(result_digest(2, &[b]), Some(d));
    }

    #[test]
    fn out_of_range_assignments_never_panic() {
        let s = Slicing::even(3, 3, 1);
        let a = assignment(2, 900, 0, State::Lost);
        let p = plan(&s, &[a], 0, &POLICY);
        assert_eq!(p.counts.total, 3);
    }
}
