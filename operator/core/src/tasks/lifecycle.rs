//! Task phase transitions. A task moves Pending → Running → Verifying → Completed, or
//! ends Failed (deadline, no eligible device, too many failed fragments) or Cancelled
//! (cancel flag, deletion). Terminal phases never change. Times are Unix seconds.

use crate::api::TaskPhase;
use crate::api::task_status::FragmentCounts;

/// Why a task is in its phase; the string is the condition and Event reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Waiting for devices.
    Queued,
    /// Fragments are executing.
    FragmentsRunning,
    /// All fragments ran; results are being checked.
    VerifyingResults,
    /// Every fragment verified.
    AllFragmentsVerified,
    /// `activeDeadlineSeconds` passed.
    DeadlineExceeded,
    /// No device met the requirements within the timeout.
    NoEligibleDevice,
    /// More fragments failed than the failure budget allows.
    TooManyFailures,
    /// The requester set `cancel`.
    CancelRequested,
    /// The task was deleted.
    Deleted,
}

impl Reason {
    /// PascalCase, for conditions and Events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "Queued",
            Self::FragmentsRunning => "FragmentsRunning",
            Self::VerifyingResults => "VerifyingResults",
            Self::AllFragmentsVerified => "AllFragmentsVerified",
            Self::DeadlineExceeded => "DeadlineExceeded",
            Self::NoEligibleDevice => "NoEligibleDevice",
            Self::TooManyFailures => "TooManyFailures",
            Self::CancelRequested => "CancelRequested",
            Self::Deleted => "Deleted",
        }
    }
}

/// Everything the phase depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The phase now.
    pub phase: TaskPhase,
    /// `spec.cancel`.
    pub cancel: bool,
    /// The task has a deletion timestamp.
    pub deleting: bool,
    /// Creation time.
    pub created: i64,
    /// `spec.activeDeadlineSeconds`.
    pub deadline_seconds: Option<u64>,
    /// Fragment counts.
    pub counts: FragmentCounts,
    /// Since when no device has been eligible, if none is now.
    pub ineligible_since: Option<i64>,
    /// Now.
    pub now: i64,
}

/// Limits that end a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Seconds a task may wait with no eligible device before it fails.
    pub no_device_timeout: i64,
    /// Per mille of fragments that may fail past their retries before the task fails.
    pub failure_budget_permille: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            no_device_timeout: 120,
            failure_budget_permille: 50,
        }
    }
}

/// The phase and its reason.
pub fn next_phase(f: &Facts, limits: &Limits) -> (TaskPhase, Reason) {
    if f.phase.is_terminal() {
        return (f.phase, terminal_reason(f));
    }
    if f.deleting {
        return (TaskPhase::Cancelled, Reason::Deleted);
    }
    if f.cancel {
        return (TaskPhase::Cancelled, Reason::CancelRequested);
    }
    let c = &f.counts;
    let budget = u64::from(c.total) * u64::from(limits.failure_budget_permille) / 1000;
    if u64::from(c.failed) > budget {
        return (TaskPhase::Failed, Reason::TooManyFailures);
    }
    if let Some(d) = f.deadline_seconds
        && f.now
            >= f.created
                .saturating_add(i64::try_from(d).unwrap_or(i64::MAX))
    {
        return (TaskPhase::Failed, Reason::DeadlineExceeded);
    }
    // Only work still waiting for a device can starve: a task whose fragments were all
    // placed runs on, whatever an older Scheduled condition says.
    if let Some(since) = f.ineligible_since
        && c.running == 0
        && c.pending > 0
        && f.now - since >= limits.no_device_timeout
    {
        return (TaskPhase::Failed, Reason::NoEligibleDevice);
    }
    if c.total > 0 && c.verified + c.unverified + c.failed >= c.total {
        return (TaskPhase::Completed, Reason::AllFragmentsVerified);
    }
    if c.total > 0 && c.completed + c.failed >= c.total {
        return (TaskPhase::Verifying, Reason::VerifyingResults);
    }
    if c.running > 0 || c.completed > 0 {
        return (TaskPhase::Running, Reason::FragmentsRunning);
    }
    (TaskPhase::Pending, Reason::Queued)
}

fn terminal_reason(f: &Facts) -> Reason {
    match f.phase {
        TaskPhase::Cancelled if f.cancel => Reason::CancelRequested,
        TaskPhase::Cancelled => Reason::Deleted,
        TaskPhase::Completed => Reason::AllFragmentsVerified,
        _ => Reason::TooManyFailures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            phase: TaskPhase::Pending,
            cancel: false,
            deleting: false,
            created: 0,
            deadline_seconds: None,
            counts: FragmentCounts {
                total: 100,
                pending: 100,
                ..Default::default()
            },
            ineligible_since: None,
            now: 10,
        }
    }

    fn counts(running: u32, completed: u32, verified: u32, failed: u32) -> FragmentCounts {
        FragmentCounts {
            total: 100,
            pending: 100 - running - completed - failed,
            running,
            completed,
            verified,
            rejected: 0,
            unverified: 0,
            failed,
        }
    }

    #[test]
    fn a_new_task_is_pending_then_running_then_verifying_then_completed() {
        let l = Limits::default();
        let mut f = facts();
        assert_eq!(next_phase(&f, &l), (TaskPhase::Pending, Reason::Queued));
        f.counts = counts(10, 0, 0, 0);
        assert_eq!(next_phase(&f, &l).0, TaskPhase::Running);
        f.counts = counts(0, 100, 40, 0);
        assert_eq!(next_phase(&f, &l).0, TaskPhase::Verifying);
        f.counts = counts(0, 100, 100, 0);
        assert_eq!(
            next_phase(&f, &l),
            (TaskPhase::Completed, Reason::AllFragmentsVerified)
        );
    }

    #[test]
    fn cancel_and_deletion_cancel_a_live_task_but_not_a_finished_one() {
        let l = Limits::default();
        let mut f = facts();
        f.cancel = true;
        assert_eq!(
            next_phase(&f, &l),
            (TaskPhase::Cancelled, Reason::CancelRequested)
        );
        f.cancel = false;
        f.deleting = true;
        assert_eq!(next_phase(&f, &l), (TaskPhase::Cancelled, Reason::Deleted));
        f.phase = TaskPhase::Completed;
        assert_eq!(next_phase(&f, &l).0, TaskPhase::Completed);
    }

    #[test]
    fn the_deadline_fails_the_task() {
        let mut f = facts();
        f.deadline_seconds = Some(10);
        assert_eq!(
            next_phase(&f, &Limits::default()),
            (TaskPhase::Failed, Reason::DeadlineExceeded)
        );
        f.deadline_seconds = Some(11);
        assert_eq!(next_phase(&f, &Limits::default()).0, TaskPhase::Pending);
    }

    #[test]
    fn no_eligible_device_fails_after_the_timeout_only() {
        let l = Limits {
            no_device_timeout: 60,
            ..Limits::default()
        };
        let mut f = facts();
        f.ineligible_since = Some(0);
        f.now = 59;
        assert_eq!(next_phase(&f, &l).0, TaskPhase::Pending);
        f.now = 60;
        assert_eq!(
            next_phase(&f, &l),
            (TaskPhase::Failed, Reason::NoEligibleDevice)
        );
    }

    #[test]
    fn placed_work_does_not_starve_on_an_old_ineligible_condition() {
        let l = Limits {
            no_device_timeout: 5,
            ..Limits::default()
        };
        let mut f = facts();
        f.ineligible_since = Some(0);
        f.now = 60;
        f.counts = counts(0, 100, 100, 0);
        assert_eq!(
            next_phase(&f, &l),
            (TaskPhase::Completed, Reason::AllFragmentsVerified)
        );
        f.counts = counts(0, 100, 0, 0);
        assert_eq!(next_phase(&f, &l).0, TaskPhase::Verifying);
        f.counts = counts(0, 40, 40, 0);
        assert_eq!(
            next_phase(&f, &l),
            (TaskPhase::Failed, Reason::NoEligibleDevice)
        );
    }

    #[test]
    fn failures_past_the_budget_fail_the_task() {
        let l = Limits {
            failure_budget_permille: 50,
            ..Limits::default()
        };
        let mut f = facts();
        f.counts = counts(10, 0, 0, 5);
        assert_eq!(next_phase(&f, &l).0, TaskPhase::Running);
        f.counts = counts(10, 0, 0, 6);
        assert_eq!(
            next_phase(&f, &l),
            (TaskPhase::Failed, Reason::TooManyFailures)
        );
    }

    #[test]
    fn a_deadline_of_u64_max_never_overflows() {
        let mut f = facts();
        f.deadline_seconds = Some(u64::MAX);
        assert_eq!(next_phase(&f, &Limits::default()).0, TaskPhase::Pending);
    }
}
