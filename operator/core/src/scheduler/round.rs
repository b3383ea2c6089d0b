//! One round of the scheduler loop, short of its writes: the snapshot of the devices
//! with the load the index and the assumptions put on them, each queued task's units
//! less those already placed, and the cycle over them. The loop runs this, then writes
//! what it decided; the benchmark runs exactly this. Pure; times are Unix milliseconds.

use super::cycle::{CycleConfig, CycleInput, CycleOutcome, QueuedTask, run_cycle};
use super::index::{AssignmentIndex, Assumptions};
use super::placement::{LoadState, nominate};
use super::snapshot::Snapshot;
use crate::api::Device;
use crate::devices::reputation::GOOD_STANDING;
use std::collections::HashMap;

/// A queued task with its UID.
#[derive(Debug, Clone, Copy)]
pub struct Waiting<'a> {
    /// The task's UID.
    pub uid: &'a str,
    /// Its waiting units, as its reconcile decided them.
    pub task: &'a QueuedTask,
}

/// A replay placed: (index into [`Round::tasks`], index into its `replays`, index of the
/// device in [`Round::snapshot`]).
pub type ReplayPlacement = (usize, usize, u32);

/// What a round decided.
#[derive(Debug, Clone)]
pub struct Round {
    /// The devices the cycle saw.
    pub snapshot: Snapshot,
    /// The Node of each cluster device of the snapshot, by device name.
    pub nodes: HashMap<String, String>,
    /// The tasks the cycle saw (units already placed removed), in queue order.
    pub tasks: Vec<QueuedTask>,
    /// The cycle's decisions.
    pub outcome: CycleOutcome,
    /// Replays placed.
    pub replays: Vec<ReplayPlacement>,
    /// Replays no eligible device of another provider can take, busy or not.
    pub unreplayable: Vec<(usize, usize)>,
}

/// Runs one round over `devices` and the queue.
pub fn round<'a>(
    devices: impl Iterator<Item = &'a Device> + Clone,
    index: &AssignmentIndex,
    assumptions: &Assumptions,
    queue: &[Waiting<'_>],
    now_ms: i64,
    config: &CycleConfig,
) -> Round {
    let mut snapshot = Snapshot::from_devices(devices.clone(), &Default::default());
    let nodes: HashMap<String, String> = devices
        .clone()
        .filter_map(|d| {
            Some((
                d.metadata.name.clone()?,
                d.spec.source.node.as_ref()?.name.clone(),
            ))
        })
        .collect();
    let assumed = assumptions.load();
    for d in &mut snapshot.devices {
        let live = index.load(&d.name);
        let extra = assumed.get(d.name.as_str()).copied().unwrap_or_default();
        let pods = nodes.get(&d.name).map_or(0, |n| index.pods_on(n));
        d.running = d
            .running
            .max(live.fragments.saturating_add(extra.fragments));
        // A node's kubelet counts its unfinished Pods, the index its live assignments:
        // the larger is what the node holds.
        d.units = live.assignments.max(pods).saturating_add(extra.assignments);
    }
    // Units a placement in flight covers, or whose record exists already (the task's
    // reconcile has not seen it yet), are not placed again.
    let tasks: Vec<QueuedTask> = queue
        .iter()
        .map(|w| {
            let mut t = w.task.clone();
            t.units.retain(|u| {
                !assumptions.covers(w.uid, &u.fragments)
                    && !index.has_unit(w.uid, u.fragments.start, u.failures)
            });
            t
        })
        .collect();
    let mut load = LoadState::new(&snapshot);
    let outcome = run_cycle(
        &CycleInput {
            now_ms,
            seed: 0x5eed,
            tasks: &tasks,
        },
        &snapshot,
        &mut load,
        config,
    );
    let (replays, unreplayable) = place_replays(
        devices,
        index,
        assumptions,
        queue,
        &tasks,
        &snapshot,
        &mut load,
    );
    Round {
        snapshot,
        nodes,
        tasks,
        outcome,
        replays,
        unreplayable,
    }
}

/// Places each queued replay on an eligible device whose provider has not executed the
/// fragment yet, after the cycle took its share: staked devices of good standing first
/// (their verdicts carry more weight, as they have stake and a record to lose), then the
/// least loaded. Also says which replays no such device exists for.
fn place_replays<'a>(
    devices: impl Iterator<Item = &'a Device>,
    index: &AssignmentIndex,
    assumptions: &Assumptions,
    queue: &[Waiting<'_>],
    tasks: &[QueuedTask],
    snapshot: &Snapshot,
    load: &mut LoadState,
) -> (Vec<ReplayPlacement>, Vec<(usize, usize)>) {
    let (mut placed, mut impossible) = (Vec::new(), Vec::new());
    if tasks.iter().all(|t| t.replays.is_empty()) {
        return (placed, impossible);
    }
    let provider: HashMap<&str, &str> = devices
        .filter_map(|d| Some((d.metadata.name.as_deref()?, d.spec.provider.as_str())))
        .collect();
    for (t, (w, task)) in queue.iter().zip(tasks).enumerate() {
        if task.replays.is_empty() {
            continue;
        }
        let Ok(nomination) = nominate(&task.requirements, snapshot) else {
            impossible.extend((0..task.replays.len()).map(|k| (t, k)));
            continue;
        };
        for (k, req) in task.replays.iter().enumerate() {
            let f = req.fragment;
            if assumptions.covers(w.uid, &(f..f.saturating_add(1)))
                || index.has_unit(w.uid, f, req.attempt)
            {
                continue;
            }
            let excluded: Vec<&str> = req
                .exclude
                .iter()
                .filter_map(|d| provider.get(d.as_str()).copied())
                .collect();
            let other = |i: &usize| {
                let v = &snapshot.devices[*i];
                !excluded.contains(&v.provider.as_str()) && !req.exclude.contains(&v.name)
            };
            let mut candidates = nomination
                .eligible
                .iter()
                .map(|&i| i as usize)
                .filter(other);
            let Some(first) = candidates.next() else {
                impossible.push((t, k));
                continue;
            };
            let pick = std::iter::once(first)
                .chain(candidates)
                .filter(|&i| load.has_room(i))
                .min_by_key(|&i| {
                    let v = &snapshot.devices[i];
                    (
                        !(v.stake > 0 && v.reputation >= GOOD_STANDING),
                        u64::from(load.used(i)) * 1000 / u64::from(v.capacity.max(1)),
                        v.name_hash,
                    )
                });
            if let Some(i) = pick {
                load.assume(i, 1);
                placed.push((t, k, i as u32));
            }
        }
    }
    (placed, impossible)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::fixtures::DeviceBuilder;
    use crate::verify::replay::{ATTEMPT_BASE, Request};

    fn queued(replays: Vec<Request>) -> QueuedTask {
        QueuedTask {
            namespace: "ns".into(),
            name: "t".into(),
            priority: 100,
            requirements: Default::default(),
            units: Vec::new(),
            replays,
        }
    }

    fn replay(fragment: u32, exclude: &[&str]) -> Request {
        Request {
            fragment,
            attempt: ATTEMPT_BASE,
            exclude: exclude.iter().map(|d| d.to_string()).collect(),
        }
    }

    /// One round over `devices` with `task` waiting alone.
    fn one_round(devices: &[Device], task: &QueuedTask) -> Round {
        round(
            devices.iter(),
            &AssignmentIndex::default(),
            &Assumptions::default(),
            &[Waiting { uid: "u", task }],
            0,
            &CycleConfig::default(),
        )
    }

    #[test]
    fn a_replay_goes_to_another_provider_or_is_reported_impossible() {
        let devices = [
            DeviceBuilder::cpu("a-1").provider("alice").build(),
            DeviceBuilder::cpu("a-2").provider("alice").build(),
            DeviceBuilder::cpu("b-1").provider("bob").build(),
        ];
        let task = queued(vec![replay(3, &["a-1"]), replay(4, &["a-1", "b-1"])]);
        let r = one_round(&devices, &task);
        // Fragment 3 ran on alice's a-1: not a-2 (same provider), so bob's b-1.
        assert_eq!(r.replays.len(), 1);
        let (t, k, i) = r.replays[0];
        assert_eq!((t, k), (0, 0));
        assert_eq!(r.snapshot.devices[i as usize].name, "b-1");
        // Fragment 4 ran on both providers' devices: no third provider exists.
        assert_eq!(r.unreplayable, [(0, 1)]);
    }

    #[test]
    fn replays_go_to_staked_devices_of_good_standing_first() {
        let pick = |devices: &[Device]| {
            let r = one_round(devices, &queued(vec![replay(0, &["a-1"])]));
            let (_, _, i) = r.replays[0];
            r.snapshot.devices[i as usize].name.clone()
        };
        let device = |name: &str, provider: &str, stake: u64, reputation: u32, running: u32| {
            DeviceBuilder::cpu(name)
                .provider(provider)
                .stake(stake)
                .reputation(reputation)
                .running(running)
                .build()
        };
        let ran = device("a-1", "alice", 0, 500, 0);
        // Busier, but staked and of good standing: chosen over idle plain devices.
        let staked = device("s-1", "sam", 1, GOOD_STANDING, 3);
        let plain = device("p-1", "pat", 0, 1000, 0);
        assert_eq!(pick(&[ran.clone(), staked.clone(), plain.clone()]), "s-1");
        // Stake without standing earns no preference: the least loaded wins.
        let poor = device("s-1", "sam", 1, GOOD_STANDING - 1, 3);
        assert_eq!(pick(&[ran, poor, plain]), "p-1");
    }
}
