//! In-process placement benchmark (a benchmark, not a timed test): 100,000 fragments onto
//! 1,000, 10,000 and 100,000 synthetic devices (a deterministic mix of H100, A100,
//! RTX 4090, L4 and CPU views), one fragment per placement, the load updated after each.
//!
//! Run with `cargo bench -p zop-core --bench placement`. Each line reports the median
//! of several runs of one `place` call, which includes nominating the devices (checking
//! the requirements once per device) and building the priority heaps:
//! - `placements/s`: fragments placed per second, each by its own choice;
//! - `scores/s`: every priority evaluated per second (initial heap keys, one per
//!   placement, and each stale entry re-scored), so batching cannot inflate it;
//! - `ms`: wall time of the call; `nominate_ms`: the share spent checking requirements.

use std::hint::black_box;
use std::time::{Duration, Instant};
use zop_core::api::task::{Requirements, Runtime};
use zop_core::scheduler::fixtures::fleet;
use zop_core::scheduler::placement::{Item, LoadState, PlacementConfig, nominate, place_nominated};
use zop_core::scheduler::slicer::HEAVY_WORK_UNITS;
use zop_core::scheduler::snapshot::{Snapshot, TierBounds};

const FRAGMENTS: u32 = 100_000;
const RUNS: usize = 7;

fn main() {
    let uniform: Vec<Item> = (0..FRAGMENTS).map(|i| Item::fragment(i, 2_148)).collect();
    // One heavy fragment in three: both heaps are live and share the load, so stale
    // entries are re-scored and counted.
    let mixed: Vec<Item> = (0..FRAGMENTS)
        .map(|i| {
            Item::fragment(
                i,
                if i % 3 == 0 {
                    2 * HEAVY_WORK_UNITS
                } else {
                    2_148
                },
            )
        })
        .collect();
    let cuda = Requirements {
        runtime: Some(Runtime::Cuda),
        ..Requirements::default()
    };
    let scenarios: [(&str, &Requirements, &[Item]); 3] = [
        ("uniform", &Requirements::default(), &uniform),
        ("mixed-heavy-light", &Requirements::default(), &mixed),
        ("uniform-cuda-only", &cuda, &uniform),
    ];
    let config = PlacementConfig::default();

    for devices in [1_000usize, 10_000, 100_000] {
        let snapshot = {
            let objects = fleet(devices);
            Snapshot::from_devices(&objects, &TierBounds::default())
        };
        for (name, req, items) in scenarios {
            let mut samples = Vec::with_capacity(RUNS);
            for _ in 0..RUNS {
                let mut load = LoadState::new(&snapshot);
                let start = Instant::now();
                let Ok(nomination) = nominate(req, &snapshot) else {
                    eprintln!("{name}: no eligible device");
                    return;
                };
                let nominated = start.elapsed();
                let out = place_nominated(&nomination, items, &snapshot, &mut load, &config, 7);
                let total = start.elapsed();
                let Ok(out) = out else {
                    eprintln!("{name}: placement failed");
                    return;
                };
                black_box(&out.placements);
                samples.push((total, nominated, out.stats));
            }
            samples.sort_by_key(|s| s.0);
            let (total, nominated, stats) = samples[RUNS / 2];
            let secs = total.as_secs_f64().max(f64::MIN_POSITIVE);
            println!(
                "scenario={name} devices={devices} eligible={} fragments={} placements/s={:.0} scores/s={:.0} ms={:.2} nominate_ms={:.2} min_ms={:.2}",
                stats.eligible_devices,
                stats.placements,
                stats.placements as f64 / secs,
                stats.score_evaluations as f64 / secs,
                ms(total),
                ms(nominated),
                ms(samples[0].0),
            );
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
