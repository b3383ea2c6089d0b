//! Tests of the cycle's steps, fairness across namespaces, and reassignment.

use super::*;
use crate::api::Device;
use crate::scheduler::fixtures::{DeviceBuilder, TaskBuilder};
use crate::scheduler::slicer::slice;
use crate::scheduler::snapshot::{SLOTS_PER_GPU, TierBounds};

const NOW: i64 = 1_700_000_000_000;

fn snap(devices: &[Device]) -> Snapshot {
    Snapshot::from_devices(devices, &TierBounds::default())
}

fn l4s(n: usize) -> Snapshot {
    snap(
        &(0..n)
            .map(|i| DeviceBuilder::l4(&format!("l4-{i:03}")).build())
            .collect::<Vec<_>>(),
    )
}

fn unit(fragments: Range<u32>) -> Unit {
    Unit {
        weight: u64::from(fragments.end - fragments.start),
        fragments,
        failures: 0,
        not_before_ms: 0,
    }
}

fn task(ns: &str, name: &str, priority: u32, units: Vec<Unit>) -> QueuedTask {
    QueuedTask {
        namespace: ns.into(),
        name: name.into(),
        priority,
        requirements: Requirements::default(),
        units,
        replays: Vec::new(),
    }
}

fn units(n: u32, size: u32) -> Vec<Unit> {
    (0..n).map(|k| unit(k * size..(k + 1) * size)).collect()
}

fn cycle(tasks: &[QueuedTask], s: &Snapshot, load: &mut LoadState) -> CycleOutcome {
    run_cycle(
        &CycleInput {
            now_ms: NOW,
            seed: 11,
            tasks,
        },
        s,
        load,
        &CycleConfig::default(),
    )
}

fn placed_fragments(out: &CycleOutcome, tasks: &[QueuedTask], t: usize) -> u64 {
    out.decisions
        .iter()
        .filter(|d| d.task == t)
        .map(|d| u64::from(tasks[t].units[d.unit].len()))
        .sum()
}

#[test]
fn due_units_are_placed_and_units_in_backoff_wait_with_a_wake_time() {
    let s = l4s(4);
    let mut waiting = unit(20..30);
    waiting.not_before_ms = NOW + 5_000;
    let tasks = [task(
        "a",
        "t",
        100,
        vec![unit(0..10), unit(10..20), waiting],
    )];
    let out = cycle(&tasks, &s, &mut LoadState::new(&s));
    assert_eq!(out.decisions.len(), 2);
    assert_eq!(
        out.requeued,
        [Requeued {
            task: 0,
            unit: 2,
            reason: RequeueReason::Backoff
        }]
    );
    assert_eq!(out.next_wake_ms, Some(NOW + 5_000));
}

#[test]
fn two_namespaces_submitting_together_both_make_progress() {
    let s = l4s(10);
    let tasks = [
        task("big", "huge", 100, units(10_000, 1)),
        task("small", "t", 100, units(100, 1)),
    ];
    let mut load = LoadState::new(&s);
    let out = cycle(&tasks, &s, &mut load);
    let capacity = u64::from(10 * SLOTS_PER_GPU);
    assert_eq!(out.capacity, capacity);
    assert_eq!(placed_fragments(&out, &tasks, 0), capacity / 2);
    assert_eq!(placed_fragments(&out, &tasks, 1), capacity / 2);
    assert!(
        out.requeued
            .iter()
            .all(|r| r.reason == RequeueReason::OverFairShare)
    );
}

#[test]
fn an_unschedulable_task_says_why_and_leaves_its_share_to_others() {
    let s = l4s(2);
    let mut impossible = task("a", "needs-h100", 500, units(10, 1));
    impossible.requirements.min_vram_mib = Some(80_000);
    let tasks = [impossible, task("b", "ok", 100, units(100, 1))];
    let out = cycle(&tasks, &s, &mut LoadState::new(&s));
    assert_eq!(out.unschedulable.len(), 1);
    let (t, err) = &out.unschedulable[0];
    assert_eq!(*t, 0);
    assert_eq!(err.category(), "NoEligibleDevice");
    assert!(err.to_string().contains("minVramMiB"), "{err}");
    assert_eq!(placed_fragments(&out, &tasks, 1), out.capacity);
    assert_eq!(
        out.requeued
            .iter()
            .filter(|r| r.reason == RequeueReason::Unschedulable)
            .count(),
        10
    );
}

#[test]
fn assumed_load_carries_into_the_next_cycle_and_forget_takes_it_back() {
    let s = l4s(2);
    let tasks = [task("a", "t", 100, units(100, 1))];
    let mut load = LoadState::new(&s);
    let first = cycle(&tasks, &s, &mut load);
    assert_eq!(first.decisions.len(), 2 * SLOTS_PER_GPU as usize);
    assert_eq!(load.free_slots(&s), 0);
    let second = cycle(&tasks, &s, &mut load);
    assert!(second.decisions.is_empty(), "no free slot, nothing placed");
    assert_eq!(second.capacity, 0);
    let d = first.decisions[0];
    load.forget(d.device as usize, tasks[d.task].units[d.unit].len());
    assert_eq!(load.free_slots(&s), 1);
}

#[test]
fn the_higher_priority_task_gets_the_first_pick() {
    let s = snap(&[
        DeviceBuilder::h100("h100").build(),
        DeviceBuilder::l4("l4").build(),
    ]);
    let heavy = |ns: &str, p: u32| {
        let mut u = unit(0..1);
        u.weight = 1_000_000;
        task(ns, "t", p, vec![u])
    };
    let tasks = [heavy("low", 10), heavy("high", 900)];
    let out = cycle(&tasks, &s, &mut LoadState::new(&s));
    assert_eq!(out.decisions[0].task, 1);
    assert_eq!(s.devices[out.decisions[0].device as usize].name, "h100");
}

#[test]
fn the_same_cycle_inputs_give_the_same_decisions() {
    let s = l4s(30);
    let tasks = [
        task("a", "x", 100, units(500, 2)),
        task("b", "y", 300, units(50, 3)),
        task("b", "z", 0, units(70, 1)),
    ];
    let a = cycle(&tasks, &s, &mut LoadState::new(&s));
    let b = cycle(&tasks, &s, &mut LoadState::new(&s));
    assert_eq!(a, b);
    assert!(!a.decisions.is_empty());
}

#[test]
fn a_mismatched_load_is_replaced_and_empty_inputs_do_nothing() {
    let s = l4s(3);
    let mut load = LoadState::new(&Snapshot::default());
    let out = cycle(&[task("a", "t", 1, units(1, 1))], &s, &mut load);
    assert_eq!(out.decisions.len(), 1);
    assert_eq!(load.len(), 3);
    let out = cycle(&[], &s, &mut load);
    assert_eq!(out.decisions.len(), 0);
    let out = cycle(&[task("a", "t", 1, vec![unit(5..5)])], &s, &mut load);
    assert!(out.decisions.is_empty() && out.requeued.is_empty());
}

#[test]
fn retries_back_off_exponentially_up_to_a_cap_and_stop_at_the_limit() {
    let p = RetryPolicy {
        base: Duration::from_secs(5),
        max_delay: Duration::from_secs(60),
        limit: 6,
    };
    let delays: Vec<_> = (0..8).map(|a| next_retry(a, &p)).collect();
    let s = Duration::from_secs;
    assert_eq!(
        delays,
        [
            Some(s(0)),
            Some(s(5)),
            Some(s(10)),
            Some(s(20)),
            Some(s(40)),
            Some(s(60)),
            None,
            None
        ]
    );
    let huge = RetryPolicy {
        base: Duration::MAX,
        max_delay: Duration::MAX,
        limit: u32::MAX,
    };
    assert_eq!(next_retry(u32::MAX - 1, &huge), Some(Duration::MAX));
}

#[test]
fn a_lost_devices_unfinished_fragments_are_requeued_with_backoff_and_finished_ones_never() {
    let slicing = slice(&TaskBuilder::proof(1024, 100).count(100).spec()).unwrap();
    let lost = Unit::batches(&slicing, 0..10, 10).remove(0);
    let done = |f: u32| [0, 1, 5].contains(&f);
    let policy = RetryPolicy::default();
    let out = reassign(&lost, done, &slicing, NOW, &policy);
    let backoff = i64::try_from(policy.base.as_millis()).unwrap();
    assert_eq!(
        out,
        [
            Reassignment::Retry(Unit {
                fragments: 2..5,
                weight: slicing.weight_of(2..5),
                failures: 1,
                not_before_ms: NOW + backoff,
            }),
            Reassignment::Retry(Unit {
                fragments: 6..10,
                weight: slicing.weight_of(6..10),
                failures: 1,
                not_before_ms: NOW + backoff,
            }),
        ]
    );
    let mut worn = lost.clone();
    worn.failures = policy.limit - 1;
    assert_eq!(
        reassign(&worn, |_| false, &slicing, NOW, &policy),
        [Reassignment::Failed {
            fragments: 0..10,
            failures: policy.limit
        }]
    );
    assert!(reassign(&lost, |_| true, &slicing, NOW, &policy).is_empty());
}

#[test]
fn batches_cover_the_fragments_with_their_weights() {
    let slicing = slice(&TaskBuilder::proof(1024, 1000).count(1000).spec()).unwrap();
    let b = Unit::batches(&slicing, 0..1000, 300);
    let ranges: Vec<_> = b.iter().map(|u| u.fragments.clone()).collect();
    assert_eq!(ranges, [0..300, 300..600, 600..900, 900..1000]);
    assert_eq!(b[3].weight, slicing.weight_of(900..1000));
    assert!(Unit::batches(&slicing, 5..u32::MAX, 0).len() == 995);
}

#[test]
fn a_gpu_node_never_holds_more_assignments_than_gpus_and_the_rest_waits() {
    // Two nodes of 2 and 1 GPUs: three worker Pods at most, whatever the backlog.
    let s = snap(&[
        DeviceBuilder::h100("node-a").gpus(2).node().build(),
        DeviceBuilder::h100("node-b").node().build(),
    ]);
    let tasks = [task("ns", "big", 500, units(10, 1))];
    let mut load = LoadState::new(&s);
    let out = cycle(&tasks, &s, &mut load);
    let mut per_device = [0u32; 2];
    for d in &out.decisions {
        per_device[d.device as usize] += 1;
    }
    assert_eq!(per_device, [2, 1]);
    let full = out
        .requeued
        .iter()
        .filter(|r| r.reason == RequeueReason::DevicesFull)
        .count();
    assert_eq!(full, 7);
    // The next cycle, with those assignments live, places nothing more.
    let again = cycle(&tasks, &s, &mut load);
    assert!(again.decisions.is_empty());
    // An agent device has no such limit.
    let agents = snap(&[DeviceBuilder::h100("agent-a").gpus(2).build()]);
    let mut load = LoadState::new(&agents);
    assert_eq!(cycle(&tasks, &agents, &mut load).decisions.len(), 10);
}
