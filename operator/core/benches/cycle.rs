//! In-process benchmark of one scheduler-loop round (a benchmark, not a timed test): the
//! snapshot of 10,000 devices with the load the assignment index and the assumptions put
//! on them, 100 queued tasks of 1,000 single-fragment units each (less those already
//! placed), and the cycle over them: exactly what the loop computes before it writes.
//!
//! The index also holds 100,000 finished records of 100 other tasks, which must cost the
//! round nothing, and 5,000 live ones.
//!
//! Run with `cargo bench -p zop-core --bench cycle`. Each line is the median of
//! several rounds: `ms` the whole round, `decisions` the assignments it placed.

use std::hint::black_box;
use std::time::Instant;
use zop_core::scheduler::cycle::{CycleConfig, QueuedTask, Unit};
use zop_core::scheduler::fixtures::{TaskBuilder, fleet};
use zop_core::scheduler::index::{AssignmentIndex, Assumed, Assumptions, Live, Source};
use zop_core::scheduler::round::{Waiting, round};
use zop_core::scheduler::slicer::slice;
use zop_core::scheduler::snapshot::{Snapshot, TierBounds};

const DEVICES: usize = 10_000;
const TASKS: usize = 100;
const FRAGMENTS: u32 = 1_000;
const RUNS: usize = 9;

fn main() {
    let devices = fleet(DEVICES);
    let spec = TaskBuilder::proof(1024, u64::from(FRAGMENTS))
        .count(FRAGMENTS)
        .spec();
    let Ok(slicing) = slice(&spec) else {
        eprintln!("the benchmark task does not slice");
        return;
    };
    let mut index = AssignmentIndex::default();
    // 100 finished tasks of 1,000 records each: history the round must not pay for.
    for t in 0..100 {
        let uid = format!("done-{t:03}");
        for f in 0..1_000u32 {
            index.apply_record(&format!("{uid}-{f}"), &uid, Source::ConfigMap, None);
        }
    }
    // 5,000 live assignments spread over the fleet.
    for i in 0..5_000usize {
        let device = format!("dev-{:06}", (i * 7) % DEVICES);
        let live = Live {
            task_uid: "running".into(),
            device,
            unfinished: 1,
        };
        index.apply_record(
            &format!("running-{i}"),
            "running",
            Source::ConfigMap,
            Some(live),
        );
    }
    let uids: Vec<String> = (0..TASKS).map(|t| format!("task-{t:03}")).collect();
    let queued: Vec<QueuedTask> = (0..TASKS)
        .map(|t| QueuedTask {
            namespace: format!("ns-{}", t % 10),
            name: format!("task-{t:03}"),
            priority: 500,
            requirements: Default::default(),
            units: Unit::batches(&slicing, 0..FRAGMENTS, 1),
            replays: Vec::new(),
        })
        .collect();
    // 1,000 placements in flight: the first 10 units of each task.
    let mut assumptions = Assumptions::default();
    for (t, uid) in uids.iter().enumerate() {
        for f in 0..10u32 {
            let device = format!("dev-{:06}", (t * 97 + f as usize * 13) % DEVICES);
            let a = Assumed {
                task_uid: uid.clone(),
                device,
                fragments: f..f + 1,
                at_ms: 0,
            };
            assumptions.assume(&format!("{uid}-{f}"), a);
        }
    }
    let waiting: Vec<Waiting<'_>> = uids
        .iter()
        .zip(&queued)
        .map(|(uid, task)| Waiting { uid, task })
        .collect();
    let config = CycleConfig::default();
    let mut samples = Vec::with_capacity(RUNS);
    let mut decisions = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        let r = round(devices.iter(), &index, &assumptions, &waiting, 1, &config);
        samples.push(start.elapsed());
        decisions = r.outcome.decisions.len();
        black_box(&r);
    }
    samples.sort();
    // The snapshot alone, to show what the round spends outside placement.
    let mut snapshots: Vec<_> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            black_box(Snapshot::from_devices(
                devices.iter(),
                &TierBounds::default(),
            ));
            start.elapsed()
        })
        .collect();
    snapshots.sort();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    println!(
        "snapshot devices={DEVICES} ms={:.1}",
        ms(snapshots[RUNS / 2])
    );
    println!(
        "round devices={DEVICES} tasks={TASKS} fragments_per_task={FRAGMENTS} live={} finished_records=100000 assumed={} decisions={decisions} ms={:.1} min_ms={:.1} max_ms={:.1}",
        index.live_count(),
        assumptions.len(),
        ms(samples[RUNS / 2]),
        ms(samples[0]),
        ms(samples[RUNS - 1]),
    );
}
