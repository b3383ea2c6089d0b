//! Assignments: one device and a contiguous batch of a task's fragments, the unit the
//! operator persists, a worker pulls and reports on. This module owns the record and
//! its state machine; it guarantees a fragment is completed at most once, however often
//! a result is (re)submitted, and holds each result's verification ([`Check`]): a
//! rejected result stays on record as evidence but no longer counts, so its fragment is
//! executed again elsewhere. Pure; times are Unix milliseconds.

pub use crate::api::protocol::{ChallengedRow, Check, FragmentResult};
use crate::api::task_status::{DeviceContribution, FragmentCounts};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where an assignment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// Created; the worker has not started.
    Pending,
    /// The worker reported progress.
    Running,
    /// Every fragment has a result.
    Completed,
    /// The worker failed it, or its device was lost; unfinished fragments are reassigned.
    Lost,
}

/// A persisted assignment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignment {
    /// Namespace of the task.
    pub task_namespace: String,
    /// Name of the task.
    pub task: String,
    /// UID of the task, so a recreated task never inherits results.
    pub task_uid: String,
    /// The device it runs on.
    pub device: String,
    /// First fragment index (inclusive).
    pub start: u32,
    /// Last fragment index (exclusive).
    pub end: u32,
    /// How many times these fragments were assigned before (0 for the first).
    pub attempt: u32,
    /// Its state.
    pub state: State,
    /// Results so far, sorted by fragment.
    #[serde(default)]
    pub results: Vec<FragmentResult>,
    /// When it was created.
    pub created_ms: i64,
    /// The last progress report.
    #[serde(default)]
    pub updated_ms: i64,
    /// UID of the worker Pod created for it (cluster devices), once known: only that
    /// Pod's token may report on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// Results whose claimed work units differed from the slicer's cost.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub claim_mismatches: u32,
    /// A replay: one fragment executed again on another provider's device, to compare
    /// with the results already on record (`verify::replay`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Why a report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// The fragment is not in this assignment.
    #[error("fragment {0} is not part of this assignment")]
    OutOfRange(u32),
    /// The assignment was lost or completed; the report is late.
    #[error("the assignment is {0:?} and takes no more results")]
    Closed(State),
    /// A different result for a fragment already completed: a replayed or forged
    /// submission, which verification counts against the device.
    #[error("fragment {0} already has a different result")]
    Conflicting(u32),
    /// The digest is not 64 lowercase hex characters.
    #[error("digest of fragment {0} is malformed")]
    BadDigest(u32),
}

impl Assignment {
    /// Fragments in the assignment.
    pub fn len(&self) -> u32 {
        self.end.saturating_sub(self.start)
    }

    /// Whether it holds no fragments.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records a fragment's result. Resubmitting an identical result is accepted and
    /// changes nothing (workers retry on network errors); a different one is refused.
    /// Returns whether the result was new. The worker's own `check` is dropped: only
    /// the operator sets one.
    pub fn record(&mut self, mut r: FragmentResult, now_ms: i64) -> Result<bool, ReportError> {
        if !(self.start..self.end).contains(&r.fragment) {
            return Err(ReportError::OutOfRange(r.fragment));
        }
        if !super::validate::is_digest(&r.digest) {
            return Err(ReportError::BadDigest(r.fragment));
        }
        r.check = None;
        r.replay_wanted_ms = None;
        r.payable_ms = None;
        match self
            .results
            .binary_search_by_key(&r.fragment, |x| x.fragment)
        {
            Ok(i) if self.results[i].digest == r.digest => return Ok(false),
            Ok(_) => return Err(ReportError::Conflicting(r.fragment)),
            Err(_) if matches!(self.state, State::Lost | State::Completed) => {
                return Err(ReportError::Closed(self.state));
            }
            Err(i) => self.results.insert(i, r),
        }
        self.updated_ms = now_ms;
        self.state = if self.standing().count() as u32 == self.len() {
            State::Completed
        } else {
            State::Running
        };
        Ok(true)
    }

    /// The result of `fragment`, if one was reported.
    pub fn result(&self, fragment: u32) -> Option<&FragmentResult> {
        let i = self.position(fragment)?;
        self.results.get(i)
    }

    fn position(&self, fragment: u32) -> Option<usize> {
        self.results
            .binary_search_by_key(&fragment, |x| x.fragment)
            .ok()
    }

    fn result_mut(&mut self, fragment: u32) -> Option<&mut FragmentResult> {
        let i = self.position(fragment)?;
        self.results.get_mut(i)
    }

    /// Results that count: all but the rejected.
    pub fn standing(&self) -> impl Iterator<Item = &FragmentResult> {
        self.results.iter().filter(|r| !is_rejected(r))
    }

    /// Sets the verification of `fragment`'s result; `false` when there is no result
    /// or it already has a verdict (each result is judged once).
    pub fn judge(&mut self, fragment: u32, check: Check) -> bool {
        let Some(r) = self.result_mut(fragment) else {
            return false;
        };
        if matches!(
            r.check,
            Some(Check::Verified { .. } | Check::Rejected { .. })
        ) {
            return false;
        }
        let rejected_at = match &check {
            Check::Rejected { at_ms, .. } => Some(*at_ms),
            Check::Verified { at_ms } => {
                r.payable_ms = Some(*at_ms);
                None
            }
            Check::Challenged { .. } => None,
        };
        r.check = Some(check);
        if let Some(at_ms) = rejected_at {
            self.close_on_rejection(at_ms);
        }
        true
    }

    /// Accepts `fragment`'s result without a proof (a kind that has none, or a task
    /// without challenges): payable from `at_ms`.
    pub fn accept(&mut self, fragment: u32, at_ms: i64) {
        if let Some(r) = self.result_mut(fragment).filter(|r| r.check.is_none()) {
            r.payable_ms = Some(at_ms);
        }
    }

    /// Marks `fragment`'s result as drawn for replay (`verify::replay`).
    pub fn want_replay(&mut self, fragment: u32, at_ms: i64) {
        if let Some(r) = self.result_mut(fragment) {
            r.replay_wanted_ms = Some(at_ms);
        }
    }

    /// Rejects `fragment`'s accepted result after all: the replay vote went against it.
    /// `false` when there is no such result or it was rejected already.
    pub fn overrule(&mut self, fragment: u32, reason: &str, detail: String, at_ms: i64) -> bool {
        let Some(r) = self.result_mut(fragment) else {
            return false;
        };
        if is_rejected(r) {
            return false;
        }
        r.check = Some(Check::Rejected {
            reason: reason.into(),
            detail,
            at_ms,
        });
        self.close_on_rejection(at_ms);
        true
    }

    /// A device caught once gets no more of this assignment, completed or not: the rest
    /// of it is executed again elsewhere, with the rejected fragment.
    fn close_on_rejection(&mut self, at_ms: i64) {
        self.state = State::Lost;
        self.updated_ms = at_ms;
    }

    /// Marks the assignment lost (device gone, pod failed). Results already recorded
    /// stay; the rest is what must be reassigned.
    pub fn lose(&mut self, now_ms: i64) {
        if self.state != State::Completed {
            self.state = State::Lost;
            self.updated_ms = now_ms;
        }
    }

    /// Fragments without a standing result.
    pub fn unfinished(&self) -> Vec<u32> {
        let mut done = self.standing().map(|r| r.fragment).peekable();
        (self.start..self.end)
            .filter(|f| {
                while done.peek().is_some_and(|d| d < f) {
                    done.next();
                }
                done.peek() != Some(f)
            })
            .collect()
    }
}

/// Whether a result was rejected.
pub fn is_rejected(r: &FragmentResult) -> bool {
    matches!(r.check, Some(Check::Rejected { .. }))
}

/// Whether a result counts as verified work: it passed verification, or its kind has
/// no proof (`check` is `None`; counted apart as unverified).
pub fn is_paid(r: &FragmentResult) -> bool {
    matches!(r.check, None | Some(Check::Verified { .. }))
}

/// Fragment counts of a task from its assignments. A fragment counts once: completed if
/// any assignment holds a standing result for it, else running if a live assignment
/// holds it, else pending. Of the completed, `verified` passed verification and
/// `unverified` have no proof; `rejected` counts rejected results. `failed` is supplied
/// by the caller (fragments past their retry limit).
pub fn counts(total: u32, assignments: &[Assignment], failed: u32) -> FragmentCounts {
    use std::collections::BTreeSet;
    let (mut completed, mut verified, mut unverified) =
        (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    let mut running = BTreeSet::new();
    let mut rejected = 0u32;
    for a in assignments {
        for r in &a.results {
            match r.check {
                Some(Check::Rejected { .. }) => rejected = rejected.saturating_add(1),
                Some(Check::Verified { .. }) => {
                    verified.insert(r.fragment);
                }
                None => {
                    unverified.insert(r.fragment);
                }
                Some(Check::Challenged { .. }) => {}
            }
        }
        completed.extend(a.standing().map(|r| r.fragment));
        if matches!(a.state, State::Pending | State::Running) && !a.replay {
            running.extend(a.start..a.end);
        }
    }
    let running = running.difference(&completed).count() as u32;
    let unverified = unverified.difference(&verified).count() as u32;
    let completed = completed.len() as u32;
    FragmentCounts {
        total,
        pending: total.saturating_sub(completed + running + failed),
        running,
        completed,
        verified: verified.len() as u32,
        rejected,
        unverified,
        failed,
    }
}

/// Per-device contribution rows from assignments (unbounded; see `summary`): verified
/// (or proof-less) results earn fragments and work units, rejected ones are counted.
pub fn contributions(assignments: &[Assignment]) -> Vec<DeviceContribution> {
    let mut by_device: BTreeMap<&str, DeviceContribution> = BTreeMap::new();
    for a in assignments {
        let row = by_device
            .entry(&a.device)
            .or_insert_with(|| DeviceContribution {
                device: a.device.clone(),
                ..Default::default()
            });
        for r in &a.results {
            if is_paid(r) {
                row.fragments = row.fragments.saturating_add(1);
                row.work_units = row.work_units.saturating_add(r.work_units);
            } else if is_rejected(r) {
                row.rejected = row.rejected.saturating_add(1);
            }
        }
    }
    by_device.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(start: u32, end: u32) -> Assignment {
        Assignment {
            task_namespace: "ns".into(),
            task: "t".into(),
            task_uid: "uid".into(),
            device: "d1".into(),
            start,
            end,
            attempt: 0,
            state: State::Pending,
            results: Vec::new(),
            created_ms: 0,
            updated_ms: 0,
            pod_uid: None,
            claim_mismatches: 0,
            replay: false,
        }
    }

    fn result(fragment: u32, digest_byte: char) -> FragmentResult {
        FragmentResult {
            fragment,
            digest: digest_byte.to_string().repeat(64),
            work_units: 10,
            elapsed_ms: 5,
            received_ms: 0,
            check: None,
            replay_wanted_ms: None,
            quality: None,
            payable_ms: None,
        }
    }

    #[test]
    fn results_complete_the_assignment_in_any_order() {
        let mut a = assignment(10, 13);
        assert_eq!(a.record(result(12, 'a'), 1), Ok(true));
        assert_eq!(a.state, State::Running);
        a.record(result(10, 'b'), 2).unwrap();
        a.record(result(11, 'c'), 3).unwrap();
        assert_eq!(a.state, State::Completed);
        assert_eq!(
            a.results.iter().map(|r| r.fragment).collect::<Vec<_>>(),
            [10, 11, 12]
        );
    }

    #[test]
    fn a_fragment_is_never_completed_twice() {
        let mut a = assignment(0, 2);
        a.record(result(0, 'a'), 1).unwrap();
        assert_eq!(
            a.record(result(0, 'a'), 2),
            Ok(false),
            "an identical retry is idempotent"
        );
        assert_eq!(
            a.record(result(0, 'b'), 3),
            Err(ReportError::Conflicting(0))
        );
        assert_eq!(a.results.len(), 1);
        assert_eq!(counts(2, &[a.clone(), a], 0).completed, 1);
    }

    #[test]
    fn a_result_becomes_payable_only_by_the_operators_verdict() {
        let mut a = assignment(0, 3);
        let mut forged = result(0, 'a');
        forged.payable_ms = Some(1);
        forged.check = Some(Check::Verified { at_ms: 1 });
        a.record(forged, 10).unwrap();
        a.record(result(1, 'b'), 10).unwrap();
        assert_eq!(
            a.results[0].payable_ms, None,
            "the worker's claim is dropped"
        );
        assert!(a.judge(0, Check::Verified { at_ms: 42 }));
        assert_eq!(a.results[0].payable_ms, Some(42));
        a.accept(1, 50);
        assert_eq!(a.results[1].payable_ms, Some(50));
        // A challenged result is not accepted without its answers.
        a.record(result(2, 'c'), 10).unwrap();
        a.judge(
            2,
            Check::Challenged {
                rows: vec![],
                at_ms: 60,
            },
        );
        a.accept(2, 70);
        assert_eq!(a.results[2].payable_ms, None);
    }

    #[test]
    fn out_of_range_malformed_and_late_reports_are_refused() {
        let mut a = assignment(0, 2);
        assert_eq!(a.record(result(2, 'a'), 1), Err(ReportError::OutOfRange(2)));
        let mut bad = result(0, 'a');
        bad.digest = "XYZ".into();
        assert_eq!(a.record(bad, 1), Err(ReportError::BadDigest(0)));
        a.lose(5);
        assert_eq!(
            a.record(result(1, 'a'), 6),
            Err(ReportError::Closed(State::Lost))
        );
    }

    #[test]
    fn a_lost_assignment_keeps_its_results_and_names_the_rest() {
        let mut a = assignment(5, 10);
        a.record(result(6, 'a'), 1).unwrap();
        a.record(result(8, 'a'), 1).unwrap();
        a.lose(2);
        assert_eq!(a.unfinished(), [5, 7, 9]);
    }

    #[test]
    fn counts_see_each_fragment_once_across_reassignments() {
        let mut lost = assignment(0, 4);
        lost.record(result(0, 'a'), 1).unwrap();
        lost.lose(2);
        let mut again = assignment(1, 4);
        again.attempt = 1;
        again.record(result(1, 'a'), 3).unwrap();
        let c = counts(10, &[lost, again], 1);
        assert_eq!((c.completed, c.running, c.failed, c.pending), (2, 2, 1, 5));
    }

    fn verified(at_ms: i64) -> Check {
        Check::Verified { at_ms }
    }

    fn rejected() -> Check {
        Check::Rejected {
            reason: "WrongRow".into(),
            detail: "expected 1, received 2".into(),
            at_ms: 9,
        }
    }

    #[test]
    fn a_rejected_result_loses_the_assignment_and_its_fragment_is_done_again() {
        let mut a = assignment(0, 3);
        a.record(result(0, 'a'), 1).unwrap();
        a.record(result(1, 'b'), 1).unwrap();
        a.record(result(2, 'c'), 1).unwrap();
        assert_eq!(a.state, State::Completed);
        assert!(a.judge(0, verified(2)));
        assert!(a.judge(1, rejected()));
        assert_eq!(a.state, State::Lost);
        assert_eq!(a.unfinished(), [1]);
        // Each result is judged once.
        assert!(!a.judge(1, verified(3)));
        assert!(!a.judge(0, rejected()));
        assert!(!a.judge(7, verified(3)));
        let c = counts(3, std::slice::from_ref(&a), 0);
        // Fragment 2 carries no check: a kind without a proof, counted as unverified.
        assert_eq!(
            (c.completed, c.verified, c.rejected, c.unverified),
            (2, 1, 1, 1)
        );
        let rows = contributions(&[a]);
        assert_eq!(
            (rows[0].fragments, rows[0].work_units, rows[0].rejected),
            (2, 20, 1)
        );
    }

    #[test]
    fn a_worker_cannot_send_its_own_verdict() {
        let mut a = assignment(0, 1);
        let mut forged = result(0, 'a');
        forged.check = Some(verified(1));
        a.record(forged, 1).unwrap();
        assert_eq!(a.results[0].check, None);
    }

    #[test]
    fn a_worker_cannot_draw_its_own_replay() {
        let mut a = assignment(0, 1);
        let mut forged = result(0, 'a');
        forged.replay_wanted_ms = Some(1);
        a.record(forged, 1).unwrap();
        assert_eq!(a.results[0].replay_wanted_ms, None);
    }

    #[test]
    fn challenged_results_are_neither_paid_nor_unverified() {
        let mut a = assignment(0, 1);
        a.record(result(0, 'a'), 1).unwrap();
        a.judge(
            0,
            Check::Challenged {
                rows: vec![ChallengedRow { product: 0, row: 1 }],
                at_ms: 1,
            },
        );
        let c = counts(1, std::slice::from_ref(&a), 0);
        assert_eq!((c.completed, c.verified, c.unverified), (1, 0, 0));
        assert_eq!(contributions(&[a])[0].fragments, 0);
    }

    #[test]
    fn contributions_sum_per_device() {
        let mut a = assignment(0, 2);
        a.record(result(0, 'a'), 1).unwrap();
        let mut b = assignment(2, 4);
        b.device = "d2".into();
        b.record(result(2, 'a'), 1).unwrap();
        b.record(result(3, 'a'), 1).unwrap();
        let rows = contributions(&[a, b]);
        assert_eq!(
            rows.iter()
                .map(|r| (r.device.as_str(), r.work_units))
                .collect::<Vec<_>>(),
            [("d1", 10), ("d2", 20)]
        );
    }

    #[test]
    fn contributions_saturate_at_the_limit_instead_of_overflowing() {
        let mut a = assignment(0, 2);
        a.results = vec![result(0, 'a'), result(1, 'a')];
        for r in &mut a.results {
            r.work_units = u64::MAX;
        }
        let rows = contributions(&[a.clone(), a]);
        assert_eq!(rows[0].work_units, u64::MAX);
        assert_eq!(rows[0].fragments, 4);
        // Folding many devices into "(others)" saturates too.
        let many: Vec<_> = (0..300)
            .map(|i| DeviceContribution {
                device: format!("d{i:03}"),
                fragments: u64::MAX,
                work_units: u64::MAX,
                rejected: u64::MAX,
            })
            .collect();
        let table = crate::tasks::summary::contributions(many);
        assert_eq!(table.last().map(|r| r.work_units), Some(u64::MAX));
    }
}
