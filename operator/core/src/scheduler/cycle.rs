//! One scheduling cycle, in the explicit steps Kueue uses, over plain inputs and an
//! injected clock; and the reassignment of fragments whose device was lost.
//!
//! 1. **Heads**: each queued task's units (contiguous fragment batches) that are due
//!    (`not_before_ms <= now_ms`); the others wait out their backoff.
//! 2. **Snapshot**: the caller's [`Snapshot`] and [`LoadState`] from the cache.
//! 3. **Nominate**: each task's requirements against the snapshot; a task no device can
//!    run is reported as unschedulable, with the reason, and takes no capacity.
//! 4. **Order**: fair shares of the free slots across namespaces and tasks
//!    ([`fair_shares`]); tasks are then served by priority, then by namespace and name.
//! 5. **Assume**: each task places whole units while under its share; placement updates
//!    the shared load, so later tasks see earlier ones' decisions.
//! 6. **Decide**: [`Decision`]s for an asynchronous writer. A failed write is taken back
//!    with [`LoadState::forget`].
//! 7. **Requeue**: every unit not placed, with why, and when to look again.
//!
//! This module owns the order of those steps and the retry policy. It reads no clock,
//! writes nothing, and decides nothing about Kubernetes objects.

use super::fairness::{Demand, fair_shares};
use super::hash::{fnv1a, mix};
use super::placement::{
    Item, LoadState, Nomination, PlaceError, PlaceStats, PlacementConfig, nominate, place_nominated,
};
use super::slicer::Slicing;
use super::snapshot::Snapshot;
use crate::api::task::Requirements;
use std::ops::Range;
use std::time::Duration;

/// A contiguous batch of one task's fragments waiting for a device: one assignment once
/// placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// The fragments.
    pub fragments: Range<u32>,
    /// Their work units together.
    pub weight: u64,
    /// Times these fragments were lost or failed so far.
    pub failures: u32,
    /// Not to be placed before this instant (Unix milliseconds): the retry backoff.
    pub not_before_ms: i64,
}

impl Unit {
    /// Fragments in the unit.
    pub fn len(&self) -> u32 {
        self.fragments.end.saturating_sub(self.fragments.start)
    }

    /// Whether the unit holds no fragment.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fresh units for fragments `frags` of `slicing`, `batch_size` at a time.
    pub fn batches(slicing: &Slicing, frags: Range<u32>, batch_size: u32) -> Vec<Self> {
        let b = batch_size.max(1);
        let end = frags.end.min(slicing.fragments());
        let mut out = Vec::new();
        let mut start = frags.start;
        while start < end {
            let stop = start.saturating_add(b).min(end);
            out.push(Self {
                fragments: start..stop,
                weight: slicing.weight_of(start..stop),
                failures: 0,
                not_before_ms: i64::MIN,
            });
            start = stop;
        }
        out
    }
}

/// A task with units waiting for placement.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedTask {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its priority, 0 to 1000.
    pub priority: u32,
    /// Its hard requirements.
    pub requirements: Requirements,
    /// Its units waiting for a device, in the order they should run.
    pub units: Vec<Unit>,
    /// Replays waiting for a device of another provider (placed after the cycle, by
    /// `round`).
    pub replays: Vec<crate::verify::replay::Request>,
}

/// What one cycle looks at.
#[derive(Debug, Clone, Copy)]
pub struct CycleInput<'a> {
    /// Now, Unix milliseconds, from the injected clock.
    pub now_ms: i64,
    /// The cycle's seed; each task's placement seed derives from it and the task's name.
    pub seed: u64,
    /// The queued tasks.
    pub tasks: &'a [QueuedTask],
}

/// How a cycle is tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CycleConfig {
    /// Placement tuning.
    pub placement: PlacementConfig,
    /// Most fragments placed in one cycle, on top of the free-slot limit, so one cycle
    /// stays short and its writes bounded.
    pub max_fragments_per_cycle: u64,
}

impl Default for CycleConfig {
    fn default() -> Self {
        Self {
            placement: PlacementConfig::default(),
            max_fragments_per_cycle: 200_000,
        }
    }
}

/// Unit `unit` of task `task` goes to device `device` of the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Index into [`CycleInput::tasks`].
    pub task: usize,
    /// Index into that task's units.
    pub unit: usize,
    /// Index into the snapshot's devices.
    pub device: u32,
}

/// Why a unit waits for a later cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequeueReason {
    /// Its retry backoff has not run out.
    Backoff,
    /// Its task used its fair share of this cycle.
    OverFairShare,
    /// No device can run its task now.
    Unschedulable,
    /// Every device that could run it holds as many assignments as it may.
    DevicesFull,
}

/// A unit left for a later cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requeued {
    /// Index into [`CycleInput::tasks`].
    pub task: usize,
    /// Index into that task's units.
    pub unit: usize,
    /// Why.
    pub reason: RequeueReason,
}

/// Everything one cycle decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CycleOutcome {
    /// Placements to write, in the order they were made.
    pub decisions: Vec<Decision>,
    /// Units left for later.
    pub requeued: Vec<Requeued>,
    /// Tasks no device can run now, and why.
    pub unschedulable: Vec<(usize, PlaceError)>,
    /// Each task's fair share of this cycle, in fragments.
    pub shares: Vec<u64>,
    /// Fragments the cycle could place at most.
    pub capacity: u64,
    /// The earliest backoff expiry among waiting units: when to run again at the latest.
    pub next_wake_ms: Option<i64>,
    /// Placement counters summed over tasks.
    pub stats: PlaceStats,
}

/// Runs one scheduling cycle; see the module docs for its steps. `load` is the cache's
/// load for `snapshot` and comes back with every decision assumed; a load state of a
/// different length is replaced by the snapshot's reported load first.
pub fn run_cycle(
    input: &CycleInput<'_>,
    snapshot: &Snapshot,
    load: &mut LoadState,
    config: &CycleConfig,
) -> CycleOutcome {
    let tasks = input.tasks;
    let mut out = CycleOutcome {
        shares: vec![0; tasks.len()],
        ..CycleOutcome::default()
    };

    // 1. Heads: the due units of each task.
    let mut due: Vec<Vec<usize>> = Vec::with_capacity(tasks.len());
    for (t, task) in tasks.iter().enumerate() {
        let mut heads = Vec::new();
        for (u, unit) in task.units.iter().enumerate() {
            if unit.is_empty() {
                continue;
            }
            if unit.not_before_ms <= input.now_ms {
                heads.push(u);
            } else {
                out.next_wake_ms = Some(
                    out.next_wake_ms
                        .map_or(unit.not_before_ms, |w| w.min(unit.not_before_ms)),
                );
                out.requeued.push(Requeued {
                    task: t,
                    unit: u,
                    reason: RequeueReason::Backoff,
                });
            }
        }
        due.push(heads);
    }

    // 2. Snapshot: the caller's, with a load that matches it.
    if load.len() != snapshot.len() {
        *load = LoadState::new(snapshot);
    }

    // 3. Nominate: tasks with due work and at least one eligible device. Tasks with the
    // same requirements share one nomination (many tasks ask for the same devices).
    let mut nominated: Vec<(&Requirements, Result<Nomination, PlaceError>)> = Vec::new();
    let mut nominations: Vec<Option<usize>> = Vec::with_capacity(tasks.len());
    for (t, task) in tasks.iter().enumerate() {
        if due[t].is_empty() {
            nominations.push(None);
            continue;
        }
        let k = match nominated.iter().position(|(r, _)| **r == task.requirements) {
            Some(k) => k,
            None => {
                nominated.push((&task.requirements, nominate(&task.requirements, snapshot)));
                nominated.len() - 1
            }
        };
        match &nominated[k].1 {
            Ok(_) => nominations.push(Some(k)),
            Err(e) => {
                out.unschedulable.push((t, e.clone()));
                requeue_all(&mut out, t, &due[t], RequeueReason::Unschedulable);
                nominations.push(None);
            }
        }
    }

    // 4. Order: fair shares of the free slots, then serve by priority.
    out.capacity = load
        .free_slots(snapshot)
        .min(config.max_fragments_per_cycle);
    let demands: Vec<Demand<'_>> = tasks
        .iter()
        .enumerate()
        .map(|(t, task)| Demand {
            namespace: &task.namespace,
            task: &task.name,
            priority: task.priority,
            pending: if nominations[t].is_some() {
                due[t].iter().map(|&u| u64::from(task.units[u].len())).sum()
            } else {
                0
            },
        })
        .collect();
    out.shares = fair_shares(&demands, out.capacity);
    let mut order: Vec<usize> = (0..tasks.len())
        .filter(|&t| nominations[t].is_some())
        .collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&tasks[a], &tasks[b]);
        y.priority
            .cmp(&x.priority)
            .then_with(|| x.namespace.cmp(&y.namespace))
            .then_with(|| x.name.cmp(&y.name))
            .then(a.cmp(&b))
    });

    // 5. Assume, and 6. decide.
    for t in order {
        let (task, share) = (&tasks[t], out.shares[t]);
        let Some(Ok(nomination)) = nominations[t].map(|k| &nominated[k].1) else {
            continue;
        };
        let mut taken = 0u64;
        let mut take = Vec::new();
        for &u in &due[t] {
            if taken >= share {
                out.requeued.push(Requeued {
                    task: t,
                    unit: u,
                    reason: RequeueReason::OverFairShare,
                });
                continue;
            }
            taken += u64::from(task.units[u].len());
            take.push(u);
        }
        let items: Vec<Item> = take
            .iter()
            .map(|&u| Item {
                id: u32::try_from(u).unwrap_or(u32::MAX),
                weight: task.units[u].weight,
                slots: task.units[u].len(),
            })
            .collect();
        let key = fnv1a(format!("{}/{}", task.namespace, task.name).as_bytes());
        match place_nominated(
            nomination,
            &items,
            snapshot,
            load,
            &config.placement,
            mix(input.seed, key),
        ) {
            Ok(placed) => {
                let mut unplaced: std::collections::BTreeSet<usize> =
                    take.iter().copied().collect();
                for p in &placed.placements {
                    unplaced.remove(&(p.item as usize));
                }
                requeue_all(
                    &mut out,
                    t,
                    &unplaced.into_iter().collect::<Vec<_>>(),
                    RequeueReason::DevicesFull,
                );
                out.stats.placements += placed.stats.placements;
                out.stats.score_evaluations += placed.stats.score_evaluations;
                out.stats.eligible_devices += placed.stats.eligible_devices;
                out.decisions
                    .extend(placed.placements.iter().map(|p| Decision {
                        task: t,
                        unit: p.item as usize,
                        device: p.device,
                    }));
            }
            Err(e) => {
                out.unschedulable.push((t, e));
                requeue_all(&mut out, t, &take, RequeueReason::Unschedulable);
            }
        }
    }

    // 7. Requeue: everything not decided is already listed, by task then unit.
    out.requeued.sort_by_key(|r| (r.task, r.unit));
    out.unschedulable.sort_by_key(|(t, _)| *t);
    out
}

fn requeue_all(out: &mut CycleOutcome, task: usize, units: &[usize], reason: RequeueReason) {
    out.requeued
        .extend(units.iter().map(|&unit| Requeued { task, unit, reason }));
}

/// When and how often lost or failed fragments are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay after the first failure; it doubles with each further failure.
    pub base: Duration,
    /// The longest delay.
    pub max_delay: Duration,
    /// Failures after which a fragment fails for good.
    pub limit: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(5),
            max_delay: Duration::from_secs(300),
            limit: 5,
        }
    }
}

/// The backoff before the next attempt after `failures` failures: zero before any
/// failure, `base · 2^(failures-1)` capped at `max_delay`, and `None` once `failures`
/// reaches the limit (the fragment fails).
pub fn next_retry(failures: u32, policy: &RetryPolicy) -> Option<Duration> {
    if failures >= policy.limit {
        return None;
    }
    if failures == 0 {
        return Some(Duration::ZERO);
    }
    let factor = 1u32.checked_shl(failures - 1).unwrap_or(u32::MAX);
    Some(
        policy
            .base
            .checked_mul(factor)
            .unwrap_or(Duration::MAX)
            .min(policy.max_delay),
    )
}

/// What becomes of a run of unfinished fragments whose device was lost or failed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reassignment {
    /// Back in the queue, after its backoff, for any other device.
    Retry(Unit),
    /// Out of retries: these fragments fail.
    Failed {
        /// The fragments.
        fragments: Range<u32>,
        /// Failures they had.
        failures: u32,
    },
}

/// Reassigns the unfinished fragments of `lost` (those `done` says are not finished)
/// as contiguous runs, each retried after its backoff or failed past the retry limit.
/// Finished fragments are never requeued, so none is completed twice.
pub fn reassign(
    lost: &Unit,
    done: impl Fn(u32) -> bool,
    slicing: &Slicing,
    now_ms: i64,
    policy: &RetryPolicy,
) -> Vec<Reassignment> {
    let failures = lost.failures.saturating_add(1);
    let backoff = next_retry(failures, policy);
    let mut out = Vec::new();
    let mut run_start = None;
    let end = lost.fragments.end.min(slicing.fragments());
    for f in lost.fragments.start..=end {
        let unfinished = f < end && !done(f);
        match (unfinished, run_start) {
            (true, None) => run_start = Some(f),
            (false, Some(s)) => {
                run_start = None;
                out.push(match backoff {
                    Some(delay) => Reassignment::Retry(Unit {
                        fragments: s..f,
                        weight: slicing.weight_of(s..f),
                        failures,
                        not_before_ms: now_ms
                            .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
                    }),
                    None => Reassignment::Failed {
                        fragments: s..f,
                        failures,
                    },
                });
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
