//! The task controller's decision, as a pure function of what it observed: which live
//! assignments are lost now, what the task's status becomes, which units wait for the
//! scheduler loop, whether the task just ended, and when to look again. The controller
//! only observes (its records, their devices and Pods, the loop's last word on the task)
//! and writes what this returns.

use super::assignment::{self, Assignment, Check, State};
use super::lifecycle::{Facts, Limits, Reason, next_phase};
use super::plan::{plan, result_digest};
use super::summary;
use crate::api::TaskPhase;
use crate::api::common::{conditions, set_condition};
use crate::api::task_status::{ComputeTaskStatus, TaskResult};
use crate::devices::reputation::Outcome;
use crate::scheduler::cycle::{RetryPolicy, Unit};
use crate::scheduler::slicer::Slicing;
use crate::verify::{self, replay};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use std::time::Duration;

/// The scheduler loop's last word on a task's waiting work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheduling {
    /// It placed this many assignments of the task in its last cycle that placed any.
    Placed(u32),
    /// Devices could run the task, but none has room now.
    Waiting,
    /// No device can run the task, and why.
    Unschedulable(String),
}

/// Why a live assignment is lost, as observed.
pub type LostBecause<'a> = &'a dyn Fn(&Assignment) -> Option<&'static str>;

/// What the controller observed of one task.
#[derive(Clone, Copy)]
pub struct Observed<'a> {
    /// The status as read.
    pub status: &'a ComputeTaskStatus,
    /// `spec.cancel`.
    pub cancel: bool,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// Creation time, Unix seconds.
    pub created_s: i64,
    /// `spec.activeDeadlineSeconds`.
    pub deadline_seconds: Option<u64>,
    /// How the task is sliced.
    pub slicing: &'a Slicing,
    /// The task's validated assignment records.
    pub records: &'a [Assignment],
    /// Why a live record is lost now (device gone, Pod failed, agent silent), if it is.
    pub lost_because: LostBecause<'a>,
    /// The scheduler loop's last word on the task.
    pub scheduling: Option<&'a Scheduling>,
    /// Fragments per waiting unit.
    pub batch: u32,
    /// Devices whose accepted results must agree on a replayed fragment
    /// (`spec.verification.quorum`).
    pub quorum: u32,
    /// Fragments whose replay no eligible device of another provider can take.
    pub unreplayable: &'a std::collections::BTreeSet<u32>,
    /// Reassignment backoff and retry limit.
    pub retry: &'a RetryPolicy,
    /// When a task fails.
    pub limits: &'a Limits,
    /// Now, Unix milliseconds.
    pub now_ms: i64,
}

impl std::fmt::Debug for Observed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed")
            .field("status", &self.status.phase)
            .field("records", &self.records.len())
            .field("scheduling", &self.scheduling)
            .finish_non_exhaustive()
    }
}

/// How a task ended, for its Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// Completed (a Normal Event) or not (a Warning).
    pub completed: bool,
    /// The Event's reason.
    pub reason: &'static str,
    /// Its note.
    pub message: String,
}

/// A result rejected by this decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Penalty {
    /// Index of its record in [`Observed::records`].
    pub record: usize,
    /// The fragment.
    pub fragment: u32,
    /// What it means for the device.
    pub outcome: Outcome,
    /// Stable reason (`ChallengeTimeout`, `ReplayMismatch`).
    pub reason: &'static str,
    /// What was expected and what was received.
    pub detail: String,
}

/// What to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Records to write back lost (indices into [`Observed::records`]), why, and the
    /// record as it must be written (a challenge that timed out also rejects its result).
    pub lost: Vec<(usize, &'static str, Assignment)>,
    /// Results rejected now, for the devices' reputations and Events: challenges left
    /// unanswered, or the minority of a replay vote.
    pub penalties: Vec<Penalty>,
    /// Replays to place (`verify::replay`); empty once the task ended.
    pub replays: Vec<replay::Request>,
    /// The status to apply.
    pub status: ComputeTaskStatus,
    /// Units waiting for a device, for the scheduler loop; empty once nothing waits.
    pub waiting: Vec<Unit>,
    /// The task ended with this decision.
    pub ended: Option<Ended>,
    /// When to look again at the latest.
    pub requeue: Duration,
}

fn time(ms: i64) -> Time {
    Time(Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Sets condition `type_` in `list` at `at` (its message cut to 1,024 characters); an
/// unchanged status keeps its transition time.
pub fn set(
    list: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    at: &Time,
) {
    set_condition(
        list,
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.chars().take(1024).collect(),
            last_transition_time: at.clone(),
            observed_generation: None,
        },
    );
}

/// Decides; see the module docs.
pub fn decide(o: &Observed<'_>) -> Decision {
    let now = o.now_ms;
    let at = time(now);
    let status = o.status;
    let cancelled = o.cancel || status.phase.is_terminal();
    let mut records = o.records.to_vec();
    let mut lost: Vec<(usize, &'static str, Assignment)> = Vec::new();
    let mut penalties = Vec::new();
    for (i, a) in records.iter_mut().enumerate() {
        // A task that ended wants no more answers: nobody is penalized for its challenges.
        let expired = if cancelled {
            Vec::new()
        } else {
            crate::verify::challenge::expired(a, now)
        };
        for (fragment, detail) in &expired {
            a.judge(
                *fragment,
                Check::Rejected {
                    reason: "ChallengeTimeout".into(),
                    detail: detail.clone(),
                    at_ms: now,
                },
            );
        }
        if !expired.is_empty() {
            lost.push((i, "ChallengeTimeout", a.clone()));
            penalties.extend(expired.into_iter().map(|(fragment, detail)| Penalty {
                record: i,
                fragment,
                outcome: Outcome::TimedOut,
                reason: "ChallengeTimeout",
                detail,
            }));
            continue;
        }
        if !matches!(a.state, State::Pending | State::Running) {
            continue;
        }
        let why = if cancelled {
            Some("TaskEnded")
        } else {
            (o.lost_because)(a)
        };
        if let Some(why) = why {
            a.lose(now);
            lost.push((i, why, a.clone()));
        }
    }
    // Replay votes: the minority's results are rejected (and their records written back).
    // An ended task still counts its votes, but rejects nothing more.
    let votes = replay::settle(&records, o.quorum, o.unreplayable);
    for l in votes.losers.iter().filter(|_| !cancelled) {
        if records[l.record].overrule(l.fragment, "ReplayMismatch", l.detail.clone(), now) {
            let a = records[l.record].clone();
            match lost.iter_mut().find(|(i, _, _)| *i == l.record) {
                Some(entry) => entry.2 = a,
                None => lost.push((l.record, "ReplayMismatch", a)),
            }
            penalties.push(Penalty {
                record: l.record,
                fragment: l.fragment,
                outcome: Outcome::Rejected,
                reason: "ReplayMismatch",
                detail: l.detail.clone(),
            });
        }
    }
    let plan = plan(o.slicing, &records, o.batch, o.retry);
    let mut conds = status.conditions.clone();
    if !cancelled && !plan.waiting.is_empty() {
        match o.scheduling {
            Some(Scheduling::Unschedulable(why)) => {
                set(
                    &mut conds,
                    conditions::SCHEDULED,
                    "False",
                    "NoEligibleDevice",
                    why,
                    &at,
                );
            }
            Some(Scheduling::Waiting) => {
                let message = "every eligible device is busy; waiting for room";
                set(
                    &mut conds,
                    conditions::SCHEDULED,
                    "False",
                    "DevicesBusy",
                    message,
                    &at,
                );
            }
            Some(Scheduling::Placed(n)) => {
                let message = format!("{n} assignments placed");
                set(
                    &mut conds,
                    conditions::SCHEDULED,
                    "True",
                    "Placed",
                    &message,
                    &at,
                );
            }
            None => {}
        }
    }
    let ineligible_since = conds
        .iter()
        .find(|c| {
            c.type_ == conditions::SCHEDULED
                && c.status == "False"
                && c.reason == "NoEligibleDevice"
        })
        .map(|c| c.last_transition_time.0.as_second());
    let mut counts = plan.counts.clone();
    replay_counts(&mut counts, &records, &votes, status.phase.is_terminal());
    let (phase, reason) = next_phase(
        &Facts {
            phase: status.phase,
            cancel: o.cancel,
            deleting: false,
            created: o.created_s,
            deadline_seconds: o.deadline_seconds,
            counts: counts.clone(),
            ineligible_since,
            now: now / 1000,
        },
        o.limits,
    );
    let mut next = ComputeTaskStatus {
        phase,
        progress: summary::progress(&counts),
        contributions: summary::contributions(assignment::contributions(&records)),
        fragments: counts.clone(),
        result: None,
        start_time: status.start_time.clone(),
        completion_time: status.completion_time.clone(),
        conditions: conds,
        observed_generation: o.generation,
    };
    if next.start_time.is_none() && (counts.running > 0 || counts.completed > 0) {
        next.start_time = Some(at.clone());
    }
    if phase == TaskPhase::Completed {
        let (loss, accuracy) = verify::quality::summary(&records, |f| {
            o.slicing.range(f).map_or(0, |r| r.end - r.start)
        });
        next.result = result_digest(counts.total, &records).map(|digest| TaskResult {
            digest,
            loss,
            accuracy,
        });
    }
    let mut ended = None;
    if status.phase.is_terminal() {
        next.phase = status.phase;
        next.completion_time = status.completion_time.clone();
    } else {
        let message = match reason {
            Reason::NoEligibleDevice => next
                .conditions
                .iter()
                .find(|c| c.type_ == conditions::SCHEDULED)
                .map_or_else(String::new, |c| c.message.clone()),
            _ => summary::verification(&counts),
        };
        let ready = if phase == TaskPhase::Completed {
            "True"
        } else {
            "False"
        };
        set(
            &mut next.conditions,
            conditions::READY,
            ready,
            reason.as_str(),
            &message,
            &at,
        );
        if phase.is_terminal() {
            next.completion_time = Some(at.clone());
            ended = Some(Ended {
                completed: phase == TaskPhase::Completed,
                reason: match phase {
                    TaskPhase::Completed => "Completed",
                    TaskPhase::Cancelled => "Cancelled",
                    _ => "Failed",
                },
                message,
            });
        }
    }
    let terminal = next.phase.is_terminal();
    let waiting = if terminal || o.cancel {
        Vec::new()
    } else {
        plan.waiting
    };
    let requeue = if terminal {
        Duration::from_secs(600)
    } else {
        waiting
            .iter()
            .map(|u| u.not_before_ms)
            .filter(|&t| t > now)
            .min()
            .map_or(Duration::from_secs(5), |t| {
                Duration::from_millis(u64::try_from(t - now).unwrap_or(0) + 50)
            })
            .min(Duration::from_secs(5))
    };
    let replays = if terminal || o.cancel {
        Vec::new()
    } else {
        votes.requests
    };
    Decision {
        lost,
        penalties,
        replays,
        status: next,
        waiting,
        ended,
        requeue,
    }
}

/// A fragment whose replay vote is open is not verified yet; one whose vote settled is
/// verified even when its kind has no proof (the devices agreed). An ended task places no
/// more replays, so a vote still open then (after an operator restart forgot that no
/// other provider could take it) counts as the results stand.
fn replay_counts(
    counts: &mut crate::api::task_status::FragmentCounts,
    records: &[Assignment],
    votes: &replay::Settlement,
    ended: bool,
) {
    // One pass over the results, for the fragments with a vote only: (a verified result
    // stands, a proof-less one stands).
    let mut kinds: std::collections::BTreeMap<u32, (bool, bool)> = votes
        .open
        .iter()
        .chain(&votes.settled)
        .map(|&f| (f, (false, false)))
        .collect();
    for r in records.iter().flat_map(|a| a.standing()) {
        if let Some((v, u)) = kinds.get_mut(&r.fragment) {
            *v |= matches!(r.check, Some(Check::Verified { .. }));
            *u |= r.check.is_none();
        }
    }
    let kinds = |f: u32| kinds.get(&f).copied().unwrap_or_default();
    for &f in votes.open.iter().filter(|_| !ended) {
        match kinds(f) {
            (true, _) => counts.verified = counts.verified.saturating_sub(1),
            (false, true) => counts.unverified = counts.unverified.saturating_sub(1),
            _ => {}
        }
    }
    for &f in &votes.settled {
        if kinds(f) == (false, true) {
            counts.unverified = counts.unverified.saturating_sub(1);
            counts.verified = counts.verified.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests;
