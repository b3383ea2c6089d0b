use super::*;

static NONE: std::collections::BTreeSet<u32> = std::collections::BTreeSet::new();
use crate::tasks::assignment::FragmentResult;

const NOW: i64 = 1_700_000_000_000;
const RETRY: RetryPolicy = RetryPolicy {
    base: Duration::from_secs(5),
    max_delay: Duration::from_secs(300),
    limit: 3,
};
const LIMITS: Limits = Limits {
    no_device_timeout: 60,
    failure_budget_permille: 0,
};

fn record(start: u32, end: u32, device: &str) -> Assignment {
    Assignment {
        task_namespace: "ns".into(),
        task: "t".into(),
        task_uid: "uid".into(),
        device: device.into(),
        start,
        end,
        attempt: 0,
        state: State::Pending,
        results: Vec::new(),
        created_ms: NOW - 1_000,
        updated_ms: NOW - 1_000,
        pod_uid: None,
        claim_mismatches: 0,
        replay: false,
    }
}

fn finish(a: &mut Assignment, s: &Slicing) {
    for f in a.start..a.end {
        a.record(
            FragmentResult {
                fragment: f,
                digest: "ab".repeat(32),
                work_units: s.weight(f),
                elapsed_ms: 1,
                received_ms: 0,
                check: None,
                replay_wanted_ms: None,
                quality: None,
                payable_ms: None,
            },
            NOW,
        )
        .unwrap();
    }
}

fn never(_: &Assignment) -> Option<&'static str> {
    None
}

fn observe<'a>(
    status: &'a ComputeTaskStatus,
    slicing: &'a Slicing,
    records: &'a [Assignment],
    lost: LostBecause<'a>,
    scheduling: Option<&'a Scheduling>,
) -> Observed<'a> {
    Observed {
        status,
        cancel: false,
        generation: Some(1),
        created_s: NOW / 1000 - 10,
        deadline_seconds: None,
        slicing,
        records,
        lost_because: lost,
        scheduling,
        batch: 2,
        quorum: 2,
        unreplayable: &NONE,
        retry: &RETRY,
        limits: &LIMITS,
        now_ms: NOW,
    }
}

#[test]
fn a_fresh_task_queues_all_its_work_in_batches() {
    let s = Slicing::even(1_000, 5, 1);
    let status = ComputeTaskStatus::default();
    let d = decide(&observe(&status, &s, &[], &never, None));
    let ranges: Vec<_> = d.waiting.iter().map(|u| u.fragments.clone()).collect();
    assert_eq!(ranges, [0..2, 2..4, 4..5]);
    assert_eq!(d.status.fragments.pending, 5);
    assert!(d.lost.is_empty() && d.ended.is_none());
}

#[test]
fn an_unschedulable_task_fails_after_the_timeout_with_the_reason() {
    let s = Slicing::even(1_000, 2, 1);
    let why = Scheduling::Unschedulable("gpuModels excluded 24 devices".into());
    let mut status = ComputeTaskStatus::default();
    let d = decide(&observe(&status, &s, &[], &never, Some(&why)));
    let scheduled = d
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::SCHEDULED);
    assert_eq!(
        scheduled.map(|c| c.reason.as_str()),
        Some("NoEligibleDevice")
    );
    assert!(d.ended.is_none());
    // The condition's clock keeps running across reconciles; past the timeout it fails.
    status = d.status;
    for c in &mut status.conditions {
        c.last_transition_time = time(NOW - 61_000);
    }
    let d = decide(&observe(&status, &s, &[], &never, Some(&why)));
    let ended = d.ended.expect("failed");
    assert!(!ended.completed);
    assert!(ended.message.contains("gpuModels"), "{}", ended.message);
    assert!(d.waiting.is_empty());
}

#[test]
fn busy_devices_stop_the_ineligible_clock() {
    let s = Slicing::even(1_000, 2, 1);
    let mut status = ComputeTaskStatus::default();
    let why = Scheduling::Unschedulable("none".into());
    status = decide(&observe(&status, &s, &[], &never, Some(&why))).status;
    for c in &mut status.conditions {
        c.last_transition_time = time(NOW - 600_000);
    }
    let d = decide(&observe(
        &status,
        &s,
        &[],
        &never,
        Some(&Scheduling::Waiting),
    ));
    assert!(d.ended.is_none(), "a task waiting for busy devices failed");
    assert_eq!(d.waiting.len(), 1);
}

#[test]
fn a_lost_device_loses_its_live_records_and_their_work_waits_again() {
    let s = Slicing::even(1_000, 4, 1);
    let mut done = record(0, 2, "gpu-1");
    finish(&mut done, &s);
    let records = [done, record(2, 4, "gpu-2")];
    let gone = |a: &Assignment| (a.device == "gpu-2").then_some("DeviceLost");
    let status = ComputeTaskStatus::default();
    let d = decide(&observe(&status, &s, &records, &gone, None));
    assert_eq!(lost(&d), [(1, "DeviceLost")]);
    assert_eq!(d.status.fragments.completed, 2);
    assert_eq!(d.waiting.len(), 1);
    assert_eq!(d.waiting[0].fragments, 2..4);
    assert!(d.waiting[0].not_before_ms > NOW, "reassignment backs off");
    assert!(d.requeue <= Duration::from_secs(5));
}

#[test]
fn a_task_with_every_result_completes_with_its_digest_once() {
    let s = Slicing::even(1_000, 2, 1);
    let mut a = record(0, 2, "gpu-1");
    finish(&mut a, &s);
    let records = [a];
    let status = ComputeTaskStatus::default();
    let d = decide(&observe(&status, &s, &records, &never, None));
    assert_eq!(d.status.phase, TaskPhase::Completed);
    assert_eq!(d.status.result.as_ref().map(|r| r.digest.len()), Some(64));
    assert!(d.ended.as_ref().is_some_and(|e| e.completed));
    // Reconciled again: no second ending.
    let again = decide(&observe(&d.status, &s, &records, &never, None));
    assert!(again.ended.is_none());
    assert_eq!(again.status.phase, TaskPhase::Completed);
}

#[test]
fn a_cancel_ends_every_live_record_and_queues_nothing() {
    let s = Slicing::even(1_000, 4, 1);
    let records = [record(0, 2, "gpu-1"), record(2, 4, "gpu-2")];
    let status = ComputeTaskStatus::default();
    let mut o = observe(&status, &s, &records, &never, None);
    o.cancel = true;
    let d = decide(&o);
    assert_eq!(lost(&d), [(0, "TaskEnded"), (1, "TaskEnded")]);
    assert!(d.waiting.is_empty());
    assert_eq!(d.status.phase, TaskPhase::Cancelled);
}

fn lost(d: &Decision) -> Vec<(usize, &'static str)> {
    d.lost
        .iter()
        .map(|(i, why, a)| {
            assert_eq!(a.state, State::Lost);
            (*i, *why)
        })
        .collect()
}

#[test]
fn a_replayed_fragment_verifies_by_agreement_and_a_liar_loses_the_vote() {
    let s = Slicing::even(1_000, 1, 1);
    let with_digest = |device: &str, replay: bool, attempt: u32, digest: char| {
        let mut a = record(0, 1, device);
        a.replay = replay;
        a.attempt = attempt;
        finish(&mut a, &s);
        a.results[0].digest = digest.to_string().repeat(64);
        a
    };
    // A liar's result, drawn for replay: the task waits in Verifying for the vote.
    let mut original = with_digest("mallory-1", false, 0, 'x');
    original.want_replay(0, NOW - 10);
    let status = ComputeTaskStatus::default();
    let d = decide(&observe(
        &status,
        &s,
        std::slice::from_ref(&original),
        &never,
        None,
    ));
    assert_eq!(d.status.phase, TaskPhase::Verifying);
    assert_eq!(d.replays.len(), 1);
    assert_eq!(d.replays[0].exclude, ["mallory-1"]);
    // Two other providers agree against it: it is rejected, the fragment verified.
    let records = [
        original,
        with_digest("bob-1", true, replay::ATTEMPT_BASE, 'a'),
        with_digest("carol-1", true, replay::ATTEMPT_BASE + 1, 'a'),
    ];
    let d = decide(&observe(&status, &s, &records, &never, None));
    assert_eq!(d.penalties.len(), 1);
    assert_eq!(
        (d.penalties[0].record, d.penalties[0].reason),
        (0, "ReplayMismatch")
    );
    assert_eq!(d.lost.len(), 1);
    assert_eq!(d.lost[0].2.state, State::Lost);
    // Once written, the vote stays settled, and counts verified even after the end.
    let mut written = records.clone();
    written[0] = d.lost[0].2.clone();
    let d = decide(&observe(&d.status, &s, &written, &never, None));
    assert!(d.penalties.is_empty() && d.replays.is_empty());
    assert_eq!(d.status.phase, TaskPhase::Completed);
    let f = &d.status.fragments;
    assert_eq!((f.verified, f.unverified, f.rejected), (1, 0, 1));
    let again = decide(&observe(&d.status, &s, &written, &never, None));
    assert_eq!(again.status.fragments.verified, 1);
}
