//! Benchmark of settling one epoch in process (a benchmark, not a timed test): 10,000
//! devices of 2,500 providers, 1,000,000 verified fragments in 100,000 assignment
//! records. Times gathering the contributions from the records, splitting the emission
//! and building the sealed, chained records, and replaying the result into the ledger.
//!
//! Run with `cargo bench -p zop-core --bench settle`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeMap;
use std::time::Instant;
use zop_core::api::protocol::{Check, FragmentResult};
use zop_core::api::settlement::EpochWindow;
use zop_core::ledger::accounts::Ledger;
use zop_core::ledger::emission::default_schedule;
use zop_core::ledger::settle::{genesis, settle};
use zop_core::ledger::work::{DeviceFacts, contributions};
use zop_core::tasks::assignment::{Assignment, State};

const DEVICES: usize = 10_000;
const PROVIDERS: usize = 2_500;
const RECORDS: usize = 100_000;
const PER_RECORD: u32 = 10;

fn main() {
    let devices: BTreeMap<String, DeviceFacts> = (0..DEVICES)
        .map(|d| {
            (
                format!("device-{d:05}"),
                DeviceFacts {
                    provider: format!("provider-{:04}", d % PROVIDERS),
                    reputation: 400 + (d % 600) as u32,
                },
            )
        })
        .collect();
    let records: Vec<Assignment> = (0..RECORDS)
        .map(|i| Assignment {
            task_namespace: "team".into(),
            task: format!("task-{}", i / 1000),
            task_uid: format!("uid-{}", i / 1000),
            device: format!("device-{:05}", i % DEVICES),
            start: 0,
            end: PER_RECORD,
            attempt: 0,
            state: State::Completed,
            results: (0..PER_RECORD)
                .map(|f| FragmentResult {
                    fragment: f,
                    digest: "ab".repeat(32),
                    work_units: 1 + u64::from(f),
                    elapsed_ms: 1_000,
                    received_ms: 1_000 + (i as i64 % 3_000_000),
                    check: Some(Check::Verified {
                        at_ms: 2_000 + (i as i64 % 3_000_000),
                    }),
                    replay_wanted_ms: None,
                    quality: None,
                    payable_ms: Some(2_000 + (i as i64 % 3_000_000)),
                })
                .collect(),
            created_ms: 0,
            updated_ms: 0,
            pod_uid: None,
            claim_mismatches: 0,
            replay: false,
        })
        .collect();
    let t = |s: i64| Time(Timestamp::from_second(s).unwrap());
    let mut chain = vec![genesis(
        &default_schedule(),
        EpochWindow {
            start: t(0),
            end: t(3_600),
        },
    )];
    let ledger = Ledger::replay(&chain).expect("genesis");
    println!(
        "settling one epoch: {DEVICES} devices, {PROVIDERS} providers, {} verified fragments in {RECORDS} records",
        RECORDS * PER_RECORD as usize
    );
    let mut best = [f64::INFINITY; 3];
    let mut parts = 0;
    for _ in 0..3 {
        let started = Instant::now();
        let g = contributions(&records, 0..3_600_000, 3_700_000, &devices);
        let gathered = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let window = EpochWindow {
            start: t(3_600),
            end: t(7_200),
        };
        let s = settle(
            &ledger,
            &chain[0].hash,
            window,
            &g.contributions,
            &Default::default(),
            &[],
        );
        let settled = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut l = ledger.clone();
        for r in &s.records {
            l.apply(r).expect("the records replay");
        }
        let replayed = started.elapsed().as_secs_f64();
        assert_eq!(g.results, (RECORDS * PER_RECORD as usize) as u64);
        assert_eq!(l.paid + l.pool, zop_core::api::POOL_BASE_UNITS);
        parts = s.records.len();
        for (b, x) in best.iter_mut().zip([gathered, settled, replayed]) {
            *b = b.min(x);
        }
        if chain.len() == 1 {
            chain.extend(s.records);
        }
    }
    println!(
        "  gather {:.1} ms, split and seal {:.1} ms ({parts} parts), replay {:.1} ms: {:.1} ms in all (best of 3)",
        best[0] * 1e3,
        best[1] * 1e3,
        best[2] * 1e3,
        best.iter().sum::<f64>() * 1e3
    );
}
