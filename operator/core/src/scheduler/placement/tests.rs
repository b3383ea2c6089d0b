//! Tests of filters, scoring, tiers, load spreading and determinism.

use super::*;
use crate::api::{BaseUnits, Device};
use crate::scheduler::fixtures::{DeviceBuilder, fleet};
use crate::scheduler::snapshot::{SLOTS_PER_GPU, TierBounds};

fn snap(devices: &[Device]) -> Snapshot {
    Snapshot::from_devices(devices, &TierBounds::default())
}

fn view(b: DeviceBuilder) -> DeviceView {
    DeviceView::from_device(&b.build()).expect("available")
}

fn light(n: u32) -> Vec<Item> {
    (0..n).map(|i| Item::fragment(i, 10)).collect()
}

fn heavy(n: u32) -> Vec<Item> {
    (0..n)
        .map(|i| Item::fragment(i, HEAVY_WORK_UNITS))
        .collect()
}

fn run(req: &Requirements, items: &[Item], s: &Snapshot, seed: u64) -> Vec<Placement> {
    let mut load = LoadState::new(s);
    place(req, items, s, &mut load, &PlacementConfig::default(), seed)
        .expect("placed")
        .placements
}

/// Fragments per device name.
fn counts(s: &Snapshot, placements: &[Placement]) -> Vec<(String, usize)> {
    let mut c = vec![0usize; s.len()];
    for p in placements {
        c[p.device as usize] += 1;
    }
    s.devices.iter().map(|d| d.name.clone()).zip(c).collect()
}

fn count_of(s: &Snapshot, placements: &[Placement], name: &str) -> usize {
    counts(s, placements)
        .into_iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, c)| c)
}

#[test]
fn each_requirement_excludes_exactly_the_devices_that_fail_it() {
    let h100 = view(DeviceBuilder::h100("h100"));
    let a100 = view(DeviceBuilder::a100("a100"));
    let l4 = view(DeviceBuilder::l4("l4"));
    let cpu = view(DeviceBuilder::cpu("cpu"));
    let no_cuda = view(DeviceBuilder::l4("nocuda").no_cuda());
    let no_cc = view(DeviceBuilder::l4("nocc").capability(""));
    let low_rep = view(DeviceBuilder::h100("lowrep").reputation(100));
    let staked = view(DeviceBuilder::l4("staked").stake(5_000_000));
    let all = [&h100, &a100, &l4, &cpu, &no_cuda, &no_cc, &low_rep, &staked];
    let admitted = |req: Requirements| -> Vec<&str> {
        all.iter()
            .filter(|v| eligible(&req, v))
            .map(|v| v.name.as_str())
            .collect()
    };

    assert_eq!(admitted(Requirements::default()).len(), all.len());
    assert_eq!(
        admitted(Requirements {
            device_class: Some(DeviceClass::Cpu),
            ..Default::default()
        }),
        ["cpu"]
    );
    assert!(
        !admitted(Requirements {
            device_class: Some(DeviceClass::Gpu),
            ..Default::default()
        })
        .contains(&"cpu")
    );
    assert_eq!(
        admitted(Requirements {
            min_vram_mib: Some(40_000),
            ..Default::default()
        }),
        ["h100", "a100", "lowrep"]
    );
    assert_eq!(
        admitted(Requirements {
            gpu_models: Some(vec!["nvidia-l4".into(), "NVIDIA-A100-SXM4-40GB".into()]),
            ..Default::default()
        }),
        ["a100", "l4", "nocuda", "nocc", "staked"]
    );
    assert_eq!(
        admitted(Requirements {
            min_compute_capability: Some("8.9".into()),
            ..Default::default()
        }),
        ["h100", "l4", "nocuda", "lowrep", "staked"]
    );
    assert_eq!(
        admitted(Requirements {
            runtime: Some(Runtime::Cuda),
            ..Default::default()
        }),
        ["h100", "a100", "l4", "nocc", "lowrep", "staked"]
    );
    assert_eq!(
        admitted(Requirements {
            runtime: Some(Runtime::Cpu),
            ..Default::default()
        })
        .len(),
        all.len(),
        "every worker has the CPU path"
    );
    assert_eq!(
        admitted(Requirements {
            min_reputation: Some(400),
            ..Default::default()
        })
        .len(),
        all.len() - 1
    );
    for (min, expected) in [(5_000_000, vec!["staked"]), (5_000_001, vec![])] {
        let req = Requirements {
            min_stake: Some(BaseUnits(min)),
            ..Default::default()
        };
        assert_eq!(admitted(req), expected, "minStake {min}");
    }
}

#[test]
fn a_stake_requirement_names_the_field_when_no_device_meets_it() {
    let s = snap(&[
        DeviceBuilder::l4("a").stake(1).build(),
        DeviceBuilder::l4("b").build(),
    ]);
    let req = Requirements {
        min_stake: Some(BaseUnits(2)),
        ..Default::default()
    };
    let err = nominate(&req, &s).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no device meets the requirements: of 2 available devices, 2 fail minStake"
    );
}

#[test]
fn an_unreadable_capability_requirement_admits_nothing_and_names_the_field() {
    let req = Requirements {
        min_compute_capability: Some("nine".into()),
        ..Default::default()
    };
    assert!(!eligible(&req, &view(DeviceBuilder::h100("a"))));
    let s = snap(&[DeviceBuilder::h100("a").build()]);
    let err = place(
        &req,
        &light(1),
        &s,
        &mut LoadState::new(&s),
        &PlacementConfig::default(),
        0,
    )
    .unwrap_err();
    assert_eq!(err.category(), "InvalidRequirement");
    assert!(err.to_string().contains("minComputeCapability"), "{err}");
}

#[test]
fn no_eligible_device_says_which_requirements_excluded_how_many() {
    let s = snap(&[
        DeviceBuilder::l4("a").build(),
        DeviceBuilder::l4("b").build(),
        DeviceBuilder::cpu("c").build(),
    ]);
    let req = Requirements {
        device_class: Some(DeviceClass::Gpu),
        min_vram_mib: Some(80_000),
        ..Default::default()
    };
    let err = place(
        &req,
        &light(1),
        &s,
        &mut LoadState::new(&s),
        &PlacementConfig::default(),
        0,
    )
    .unwrap_err();
    assert_eq!(
        err,
        PlaceError::NoEligibleDevice {
            available: 3,
            rejected_by: vec![("deviceClass", 1), ("minVramMiB", 2)],
        }
    );
    assert_eq!(
        err.to_string(),
        "no device meets the requirements: of 3 available devices, 1 fail deviceClass, 2 fail minVramMiB"
    );
    let empty = Snapshot::default();
    let err = nominate(&Requirements::default(), &empty).unwrap_err();
    assert!(err.to_string().contains("no device is available"), "{err}");
}

#[test]
fn heavy_work_prefers_the_bigger_benchmark_and_stays_off_cpus() {
    let s = snap(&[
        DeviceBuilder::h100("h100").build(),
        DeviceBuilder::l4("l4").build(),
        DeviceBuilder::cpu("cpu").build(),
    ]);
    let p = run(&Requirements::default(), &heavy(100), &s, 1);
    assert_eq!(s.devices[p[0].device as usize].name, "h100");
    let (h, l, c) = (
        count_of(&s, &p, "h100"),
        count_of(&s, &p, "l4"),
        count_of(&s, &p, "cpu"),
    );
    assert!(h > 2 * l, "h100 {h} vs l4 {l}");
    assert!(l > 0, "the smaller GPU still helps");
    assert_eq!(c, 0, "heavy work skips tier 0 while a GPU can take it");
}

#[test]
fn light_work_may_go_to_small_devices() {
    let s = snap(&[
        DeviceBuilder::h100("h100").build(),
        DeviceBuilder::cpu("cpu").build(),
    ]);
    let p = run(&Requirements::default(), &light(100), &s, 1);
    let (h, c) = (count_of(&s, &p, "h100"), count_of(&s, &p, "cpu"));
    assert!(c >= 25, "cpu {c} of 100");
    assert!(h >= 25, "h100 {h} of 100");
}

#[test]
fn heavy_work_falls_back_to_small_devices_when_nothing_else_is_eligible() {
    let s = snap(&[
        DeviceBuilder::cpu("c1").build(),
        DeviceBuilder::cpu("c2").build(),
    ]);
    let p = run(&Requirements::default(), &heavy(10), &s, 1);
    assert_eq!(p.len(), 10);
    assert_eq!(counts(&s, &p), [("c1".into(), 5), ("c2".into(), 5)]);
}

#[test]
fn stake_raises_priority_by_at_most_two_times() {
    let s = snap(&[
        DeviceBuilder::l4("plain").build(),
        DeviceBuilder::l4("staked")
            .stake(PlacementConfig::default().stake_full)
            .build(),
    ]);
    for seed in 0..8 {
        let p = run(&Requirements::default(), &light(100), &s, seed);
        assert_eq!(s.devices[p[0].device as usize].name, "staked");
        let (a, b) = (count_of(&s, &p, "plain"), count_of(&s, &p, "staked"));
        assert!(b > a, "staked {b} vs plain {a}");
    }
    let cfg = PlacementConfig::default();
    assert_eq!(stake_boost_permille(0, &cfg), 1000);
    assert_eq!(stake_boost_permille(cfg.stake_full / 2, &cfg), 1500);
    assert_eq!(stake_boost_permille(u64::MAX, &cfg), 2000);
    let silly = PlacementConfig {
        weights: Weights {
            stake: u32::MAX,
            ..Weights::default()
        },
        stake_full: 0,
        ..cfg
    };
    assert_eq!(stake_boost_permille(1, &silly), 2000);
}

#[test]
fn loaded_devices_lose_to_idle_ones() {
    let s = snap(&[
        DeviceBuilder::l4("busy").running(SLOTS_PER_GPU).build(),
        DeviceBuilder::l4("idle").build(),
    ]);
    let p = run(&Requirements::default(), &light(1), &s, 3);
    assert_eq!(s.devices[p[0].device as usize].name, "idle");
    // The idle one catches up with the busy one's head start, then they take turns.
    let p = run(
        &Requirements::default(),
        &light(2 * SLOTS_PER_GPU + 2),
        &s,
        3,
    );
    let s_ = SLOTS_PER_GPU as usize;
    assert_eq!(count_of(&s, &p, "idle"), s_ + (s_ + 2) / 2);
    assert!(priority(1000, 1, 8, 1000) < priority(1000, 0, 8, 1000));
    assert_eq!(priority(1000, 100, 8, 0), priority(1000, 0, 8, 0));
}

#[test]
fn tiers_order_heavy_work_up_and_light_work_down() {
    let cfg = PlacementConfig::default();
    let big = view(DeviceBuilder::h100("big"));
    let small = view(DeviceBuilder::cpu("small").score(big.score));
    // Same benchmark, different tier only through the view: isolate the tier term.
    let small = DeviceView { tier: 0, ..small };
    let big = DeviceView { tier: 3, ..big };
    let best = big.score;
    assert!(base_priority(&big, best, true, &cfg) > base_priority(&small, best, true, &cfg));
    assert!(base_priority(&big, best, false, &cfg) < base_priority(&small, best, false, &cfg));
}

#[test]
fn two_hundred_equal_devices_take_exactly_ten_of_two_thousand() {
    let devices: Vec<_> = (0..200)
        .map(|i| DeviceBuilder::l4(&format!("l4-{i:03}")).build())
        .collect();
    let s = snap(&devices);
    let p = run(&Requirements::default(), &light(2000), &s, 9);
    assert!(counts(&s, &p).iter().all(|(_, c)| *c == 10));
}

#[test]
fn a_mixed_fleet_gives_every_device_work_and_bounds_the_load_spread_by_priority() {
    let s = snap(&fleet(200));
    let mut load = LoadState::new(&s);
    let cfg = PlacementConfig::default();
    let p = place(
        &Requirements::default(),
        &light(2000),
        &s,
        &mut load,
        &cfg,
        5,
    )
    .unwrap();
    let c = counts(&s, &p.placements);
    assert!(
        c.iter().all(|(_, n)| *n >= 1),
        "every device gets work: {c:?}"
    );
    // Stride invariant: the most loaded device (per slot) took its last fragment while
    // its priority was still at least the least loaded one's, so their per-slot loads
    // differ by no more than their base priorities do.
    let best = s.devices.iter().map(|d| d.score).max().unwrap_or(0);
    let base: Vec<u64> = s
        .devices
        .iter()
        .map(|d| base_priority(d, best, false, &cfg))
        .collect();
    let per_slot = |i: usize| u64::from(load.used(i)) * 1000 / u64::from(s.devices[i].capacity);
    let hi = (0..s.len()).max_by_key(|&i| per_slot(i)).unwrap_or(0);
    let lo = (0..s.len()).min_by_key(|&i| per_slot(i)).unwrap_or(0);
    let before_last = per_slot(hi) - 1000 / u64::from(s.devices[hi].capacity);
    assert!(
        (1000 + 4 * before_last) * base[lo] <= (1000 + 4 * per_slot(lo)) * base[hi],
        "per-slot load {}‰ vs {}‰",
        per_slot(hi),
        per_slot(lo)
    );
}

/// The engine must pick, at every step, a device of maximal priority: this replays a
/// placement with an O(n) scan and checks each choice against it.
fn assert_matches_brute_force(s: &Snapshot, items: &[Item], placements: &[Placement]) {
    let cfg = PlacementConfig::default();
    let best = s.devices.iter().map(|d| d.score).max().unwrap_or(0);
    let mut used: Vec<u32> = s.devices.iter().map(|d| d.running).collect();
    for (item, p) in items.iter().zip(placements) {
        let heavy = item.is_heavy(cfg.heavy_work_units);
        let high = s.devices.iter().any(|d| d.tier >= cfg.heavy_min_tier);
        let pool: Vec<usize> = (0..s.len())
            .filter(|&i| !(heavy && high && s.devices[i].tier < cfg.heavy_min_tier))
            .collect();
        let prio = |i: usize| {
            let d = &s.devices[i];
            priority(
                base_priority(d, best, heavy, &cfg),
                used[i],
                d.capacity,
                cfg.weights.load,
            )
        };
        let max = pool.iter().map(|&i| prio(i)).max().unwrap_or(0);
        let chosen = p.device as usize;
        assert!(pool.contains(&chosen));
        assert_eq!(
            prio(chosen),
            max,
            "item {} took a non-maximal device",
            item.id
        );
        used[chosen] += item.slots;
    }
}

fn mixed_items(n: u32) -> Vec<Item> {
    (0..n)
        .map(|i| {
            let w = if i % 3 == 0 { HEAVY_WORK_UNITS * 2 } else { 5 };
            Item {
                id: i,
                weight: w * u64::from(1 + i % 2),
                slots: 1 + i % 2,
            }
        })
        .collect()
}

#[test]
fn every_choice_is_a_maximal_priority_device_and_seeds_only_reorder_ties() {
    let s = snap(&fleet(60));
    let items = mixed_items(1500);
    let a = run(&Requirements::default(), &items, &s, 1);
    let b = run(&Requirements::default(), &items, &s, 2);
    assert_matches_brute_force(&s, &items, &a);
    assert_matches_brute_force(&s, &items, &b);
}

#[test]
fn the_same_inputs_and_seed_give_the_same_decisions_whatever_the_device_order() {
    let devices = fleet(300);
    let mut reversed = devices.clone();
    reversed.reverse();
    let items = mixed_items(3000);
    let a = run(&Requirements::default(), &items, &snap(&devices), 42);
    let b = run(&Requirements::default(), &items, &snap(&reversed), 42);
    let c = run(&Requirements::default(), &items, &snap(&devices), 42);
    assert_eq!(a, b);
    assert_eq!(a, c);
}

#[test]
fn a_different_seed_breaks_ties_differently_but_spreads_the_same() {
    let devices: Vec<_> = (0..50)
        .map(|i| DeviceBuilder::l4(&format!("l4-{i:02}")).build())
        .collect();
    let s = snap(&devices);
    let a = run(&Requirements::default(), &light(500), &s, 1);
    let b = run(&Requirements::default(), &light(500), &s, 2);
    assert_ne!(a, b, "equal devices: the seed decides the order");
    assert_eq!(counts(&s, &a), counts(&s, &b));
}

#[test]
fn extreme_inputs_never_panic() {
    let mut v = view(DeviceBuilder::h100("x"));
    v.capacity = 0;
    v.running = u32::MAX;
    v.score = u64::MAX;
    v.stake = u64::MAX;
    v.online_seconds = u64::MAX;
    v.tier = u8::MAX;
    let s = Snapshot::from_views([v], &TierBounds::default());
    let cfg = PlacementConfig {
        weights: Weights {
            compute: u32::MAX,
            online: u32::MAX,
            reputation: u32::MAX,
            stake: u32::MAX,
            load: u32::MAX,
            tier: u32::MAX,
        },
        heavy_work_units: 0,
        stake_full: 0,
        online_full_seconds: 0,
        heavy_min_tier: u8::MAX,
    };
    let items = [
        Item {
            id: u32::MAX,
            weight: u64::MAX,
            slots: u32::MAX,
        },
        Item {
            id: 0,
            weight: 0,
            slots: 0,
        },
    ];
    let mut load = LoadState::new(&s);
    let out = place(
        &Requirements::default(),
        &items,
        &s,
        &mut load,
        &cfg,
        u64::MAX,
    )
    .unwrap();
    assert_eq!(out.placements.len(), 2);
    assert_eq!(load.used(0), u32::MAX);
    // A load state of another snapshot is refused, not indexed out of bounds.
    let err = place(
        &Requirements::default(),
        &items,
        &s,
        &mut LoadState::new(&Snapshot::default()),
        &cfg,
        0,
    )
    .unwrap_err();
    assert_eq!(err.category(), "LoadMismatch");
    // Stale nominations are skipped.
    let stale = Nomination {
        eligible: vec![7, 0],
    };
    let out = place_nominated(&stale, &items, &s, &mut load, &cfg, 0).unwrap();
    assert_eq!(out.placements.len(), 2);
}

#[test]
fn nothing_to_place_is_not_an_error_and_counts_are_honest() {
    let s = snap(&fleet(10));
    let mut load = LoadState::new(&s);
    let cfg = PlacementConfig::default();
    let out = place(&Requirements::default(), &[], &s, &mut load, &cfg, 0).unwrap();
    assert_eq!(out, PlaceOutcome::default());
    let out = place(
        &Requirements::default(),
        &light(100),
        &s,
        &mut load,
        &cfg,
        0,
    )
    .unwrap();
    assert_eq!(out.stats.placements, 100);
    assert_eq!(out.stats.eligible_devices, 10);
    // One initial evaluation per device, then at least one per placement.
    assert!(out.stats.score_evaluations >= 110);
}
