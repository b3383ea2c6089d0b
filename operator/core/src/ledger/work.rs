//! An epoch's contributions, from the operator's own assignment records (tenants and
//! workers cannot write them). Pure.
//!
//! - **Which epoch.** A result belongs to the epoch whose window holds the time it
//!   became payable (`payableMs`: verified, or accepted without a proof, on the
//!   operator's clock), so each result falls in exactly one epoch, and which one is fixed
//!   in the record when it becomes payable: it survives restarts.
//! - **As of the cutoff.** An epoch is settled at its cutoff (window end plus a grace
//!   for records being written), and each payable result counts unless it was rejected
//!   by then. A rejection after the cutoff (a replay vote) does not reach back into a
//!   settled epoch: the result was paid, and the penalty falls on the device's
//!   reputation. Every verdict carries its time, so settling an epoch again after a crash
//!   counts the same results. Results rejected in the window (by payable time, or by the
//!   time of rejection for those never payable) lower the provider's quality.
//! - **Whose.** A result is its device's provider's ([`DeviceFacts`]); a result of a
//!   device that no longer exists cannot be paid to anyone and is left out (counted).
//! - **Weights.** Work units at the slicer's cost (the record's, which the gateway
//!   writes); quality is the provider's counted share of its counted and rejected
//!   results in the window; reputation its devices' scores weighted by their work.

use super::rewards::Contribution;
use crate::api::protocol::{Check, FragmentResult};
use crate::tasks::assignment::Assignment;
use std::collections::BTreeMap;
use std::ops::Range;

/// What settlement needs of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFacts {
    /// Its provider account.
    pub provider: String,
    /// Its reputation score, 0 to 1000.
    pub reputation: u32,
}

/// How a result stood at `cutoff_ms`: `Ok(payable)` if it counts, `Err(at)` if it was
/// rejected (at `at`), `None` if it was neither payable nor rejected by then.
pub fn standing_at(r: &FragmentResult, cutoff_ms: i64) -> Option<Result<i64, i64>> {
    let rejected = match &r.check {
        Some(Check::Rejected { at_ms, .. }) if *at_ms <= cutoff_ms => Some(*at_ms),
        _ => None,
    };
    match (r.payable_ms, rejected) {
        (_, Some(at)) => Some(Err(at)),
        (Some(p), None) if p <= cutoff_ms => Some(Ok(p)),
        _ => None,
    }
}

/// Totals of one epoch's gathering.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gathered {
    /// One contribution per provider, sorted by provider.
    pub contributions: Vec<Contribution>,
    /// Results counted.
    pub results: u64,
    /// Results of devices that no longer exist, left out.
    pub orphaned: u64,
}

#[derive(Default)]
struct Row {
    work: u64,
    counted: u64,
    rejected: u64,
    /// Σ reputation · work, for the work-weighted mean.
    reputation_work: u128,
}

/// The contributions of the results received in `window` (Unix milliseconds), as of
/// `cutoff_ms`, over `records`.
pub fn contributions<'a>(
    records: impl IntoIterator<Item = &'a Assignment>,
    window: Range<i64>,
    cutoff_ms: i64,
    devices: &BTreeMap<String, DeviceFacts>,
) -> Gathered {
    let mut rows: BTreeMap<&str, Row> = BTreeMap::new();
    let mut out = Gathered::default();
    for a in records {
        let device = devices.get(&a.device);
        for r in &a.results {
            let standing = standing_at(r, cutoff_ms);
            // A rejection counts against the window of its payable time, or of the
            // rejection itself if it was never payable.
            let at = match standing {
                Some(Ok(p)) => p,
                Some(Err(at)) => r.payable_ms.unwrap_or(at),
                None => continue,
            };
            if !window.contains(&at) {
                continue;
            }
            let Some(device) = device else {
                out.orphaned += u64::from(matches!(standing, Some(Ok(_))));
                continue;
            };
            let row = rows.entry(device.provider.as_str()).or_default();
            if let Some(Ok(_)) = standing {
                row.work = row.work.saturating_add(r.work_units);
                row.counted += 1;
                row.reputation_work +=
                    u128::from(device.reputation.min(1000)) * u128::from(r.work_units);
                out.results += 1;
            } else {
                row.rejected += 1;
            }
        }
    }
    out.contributions = rows
        .into_iter()
        .filter(|(_, r)| r.counted > 0)
        .map(|(provider, r)| Contribution {
            provider: provider.to_string(),
            work_units: r.work,
            quality: (1000 * r.counted / (r.counted + r.rejected)) as u32,
            reputation: if r.work == 0 {
                0
            } else {
                (r.reputation_work / u128::from(r.work)) as u32
            },
            stake: 0,
        })
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::assignment::State;

    fn result(fragment: u32, payable_ms: Option<i64>, check: Option<Check>) -> FragmentResult {
        FragmentResult {
            fragment,
            digest: "a".repeat(64),
            work_units: 10,
            elapsed_ms: 1,
            received_ms: payable_ms.unwrap_or(0),
            check,
            replay_wanted_ms: None,
            quality: None,
            payable_ms,
        }
    }

    fn record(device: &str, results: Vec<FragmentResult>) -> Assignment {
        Assignment {
            task_namespace: "ns".into(),
            task: "t".into(),
            task_uid: "u".into(),
            device: device.into(),
            start: 0,
            end: 100,
            attempt: 0,
            state: State::Running,
            results,
            created_ms: 0,
            updated_ms: 0,
            pod_uid: None,
            claim_mismatches: 0,
            replay: false,
        }
    }

    fn facts() -> BTreeMap<String, DeviceFacts> {
        [
            ("d1", "acme", 1000),
            ("d2", "acme", 500),
            ("d3", "bob", 800),
        ]
        .into_iter()
        .map(|(d, p, r)| {
            (
                d.to_string(),
                DeviceFacts {
                    provider: p.into(),
                    reputation: r,
                },
            )
        })
        .collect()
    }

    fn rejected(at_ms: i64) -> Option<Check> {
        Some(Check::Rejected {
            reason: "WrongRow".into(),
            detail: String::new(),
            at_ms,
        })
    }

    #[test]
    fn results_count_in_the_window_they_became_payable_as_their_verdict_stood_at_the_cutoff() {
        let verified = |at_ms| Some(Check::Verified { at_ms });
        let records = [
            record(
                "d1",
                vec![
                    result(0, Some(150), verified(150)),
                    result(1, Some(999), verified(999)),
                    result(2, Some(1_000), verified(1_000)), // the next window
                    result(3, Some(500), None),              // accepted, no proof
                    result(4, Some(600), rejected(700)),     // overruled in time
                    result(5, Some(700), rejected(5_000)),   // overruled after the cutoff
                    result(
                        6,
                        None,
                        Some(Check::Challenged {
                            rows: vec![],
                            at_ms: 800,
                        }),
                    ),
                    result(7, None, rejected(900)), // failed its challenge
                ],
            ),
            record("d2", vec![result(0, Some(10), verified(10))]),
            record("d3", vec![result(0, Some(10), verified(10))]),
            record("gone", vec![result(0, Some(10), verified(10))]),
        ];
        let g = contributions(&records, 0..1_000, 2_000, &facts());
        assert_eq!((g.results, g.orphaned), (6, 1));
        let acme = &g.contributions[0];
        assert_eq!(acme.provider, "acme");
        // d1: fragments 0, 1, 3 and 5 count, 4 and 7 were rejected; d2: one.
        assert_eq!(acme.work_units, 50);
        assert_eq!(acme.quality, 1000 * 5 / 7);
        assert_eq!(acme.reputation, (4 * 1000 + 500) / 5);
        assert_eq!(g.contributions[1].provider, "bob");
        // The same records settle the same way whenever the settlement runs after the
        // cutoff; fragment 2 is the next epoch's.
        assert_eq!(contributions(&records, 0..1_000, 2_000, &facts()), g);
        let next = contributions(&records, 1_000..2_000, 3_000, &facts());
        assert_eq!(next.results, 1);
    }

    #[test]
    fn a_provider_with_only_rejected_results_earns_nothing() {
        let records = [record("d3", vec![result(0, None, rejected(20))])];
        let g = contributions(&records, 0..1_000, 2_000, &facts());
        assert!(g.contributions.is_empty());
    }
}
