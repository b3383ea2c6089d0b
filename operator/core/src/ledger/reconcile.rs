//! Reconciling what settlement is about to credit against what was measured, before the
//! epoch is written. Pure; the controller queries Prometheus for the figures.
//!
//! Two measurements, both cumulative over the same span (the ledger's last
//! [`MAX_SPAN_SECONDS`] at most), so a fragment executed near an epoch boundary or an
//! operator restart (a counter reset, which Prometheus's `increase` absorbs) moves no
//! figure by more than a few units:
//! - **the operator's own count** of work that became payable, per provider
//!   (`zop_payable_work_units_total`), incremented by the gateway as it records verdicts.
//!   The ledger's credit comes from the assignment records; a provider credited with work
//!   the live operator never counted points at records that were not the gateway's.
//! - **the workers' count** of work they executed (`zop_worker_work_units_total`), for
//!   providers whose workers are scraped (labelled `zop_provider`). A provider credited
//!   with more than its machines measured doing is paid for work it did not do there.
//!
//! - **the workers' busy seconds** (`zop_worker_fragment_seconds_total`: time spent
//!   executing fragments, which on a GPU is GPU-busy time). Work takes time: no device
//!   executes more than [`FASTEST_UNITS_PER_SECOND`] work units a second (the fastest
//!   known GPU's peak, `devices::plausibility`), so credit beyond the busy seconds at
//!   that rate was not done on the machines measured.
//!
//! A provider is held when its credit exceeds either count, or what its busy seconds
//! allow, by more than [`RELATIVE`] of it plus [`SLACK`] units, or when the operator's
//! count has no series for it at all. A provider whose workers are not scraped is
//! reconciled against the operator's count alone.

use std::collections::BTreeMap;

/// The most work units (GOP) any device executes in one busy second.
pub const FASTEST_UNITS_PER_SECOND: u64 = crate::devices::plausibility::FASTEST_PEAK;

/// The longest span compared, in seconds (a week).
pub const MAX_SPAN_SECONDS: u64 = 7 * 86_400;
/// Share of the credit a measurement may fall short by.
pub const RELATIVE: f64 = 0.25;
/// Work units a measurement may fall short by besides (Prometheus extrapolates `increase`
/// at the edges of the span).
pub const SLACK: f64 = 2.0;

/// What was measured over the span, per provider.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    /// The operator's count of payable work.
    pub operator: BTreeMap<String, f64>,
    /// The workers' count of executed work, for providers whose workers are scraped.
    pub workers: BTreeMap<String, f64>,
    /// The workers' busy seconds, for providers whose workers are scraped.
    pub seconds: BTreeMap<String, f64>,
}

/// One provider's reconciliation.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The provider.
    pub provider: String,
    /// Work units credited over the span, this epoch included.
    pub credited: u64,
    /// The operator's count, if it has a series.
    pub operator: Option<f64>,
    /// The workers' count, if they are scraped.
    pub workers: Option<f64>,
    /// The workers' busy seconds, if they are scraped.
    pub seconds: Option<f64>,
    /// Why it is held, if it is.
    pub held: Option<String>,
}

fn short(credited: u64, measured: f64) -> bool {
    let c = credited as f64;
    c > measured + RELATIVE * c + SLACK
}

/// Reconciles each provider's `credited` work over the span with `measured`.
pub fn reconcile(credited: &BTreeMap<String, u64>, measured: &Measured) -> Vec<Finding> {
    credited
        .iter()
        .map(|(provider, c)| {
            let operator = measured.operator.get(provider).copied();
            let workers = measured.workers.get(provider).copied();
            let seconds = measured.seconds.get(provider).copied();
            let possible = seconds.map(|s| s * FASTEST_UNITS_PER_SECOND as f64);
            let held = match (operator, workers) {
                (None, _) if *c > 0 => Some(format!(
                    "credited {c} work units, the operator counted none for {provider}"
                )),
                (Some(o), _) if short(*c, o) => Some(format!(
                    "credited {c} work units, the operator counted {o:.1}"
                )),
                (_, Some(w)) if short(*c, w) => Some(format!(
                    "credited {c} work units, {provider}'s workers measured {w:.1}"
                )),
                _ => match (seconds, possible) {
                    (Some(s), Some(p)) if short(*c, p) => Some(format!(
                        "credited {c} work units, more than {provider}'s workers can execute in the {s:.3} busy seconds they measured ({FASTEST_UNITS_PER_SECOND} units a second at most)"
                    )),
                    _ => None,
                },
            };
            Finding {
                provider: provider.clone(),
                credited: *c,
                operator,
                workers,
                seconds,
                held,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credited(rows: &[(&str, u64)]) -> BTreeMap<String, u64> {
        rows.iter().map(|(p, c)| (p.to_string(), *c)).collect()
    }

    fn m(rows: &[(&str, f64)]) -> BTreeMap<String, f64> {
        rows.iter().map(|(p, v)| (p.to_string(), *v)).collect()
    }

    fn measured(operator: &[(&str, f64)], workers: &[(&str, f64)]) -> Measured {
        Measured {
            operator: m(operator),
            workers: m(workers),
            seconds: BTreeMap::new(),
        }
    }

    #[test]
    fn agreeing_figures_pass_within_the_tolerance() {
        let f = reconcile(
            &credited(&[("a", 100), ("b", 4)]),
            &measured(&[("a", 80.0), ("b", 2.5)], &[("a", 99.0)]),
        );
        assert!(f.iter().all(|f| f.held.is_none()), "{f:?}");
    }

    #[test]
    fn credit_beyond_either_measurement_is_held_with_the_figures() {
        let f = reconcile(
            &credited(&[("a", 100), ("b", 100), ("c", 10)]),
            &measured(&[("a", 60.0), ("b", 100.0)], &[("b", 12.0)]),
        );
        assert_eq!(
            f[0].held.as_deref(),
            Some("credited 100 work units, the operator counted 60.0")
        );
        assert_eq!(
            f[1].held.as_deref(),
            Some("credited 100 work units, b's workers measured 12.0")
        );
        assert_eq!(
            f[2].held.as_deref(),
            Some("credited 10 work units, the operator counted none for c")
        );
    }

    #[test]
    fn measuring_more_than_credited_is_no_reason_to_hold() {
        // Rejected results were counted by the workers (they executed them) and by the
        // operator before a replay overruled them.
        let f = reconcile(
            &credited(&[("a", 10)]),
            &measured(&[("a", 30.0)], &[("a", 50.0)]),
        );
        assert_eq!(f[0].held, None);
    }

    #[test]
    fn credit_beyond_what_the_busy_seconds_allow_is_held() {
        let c = 2 * FASTEST_UNITS_PER_SECOND;
        let mut m = measured(
            &[("a", c as f64), ("b", c as f64)],
            &[("a", c as f64), ("b", c as f64)],
        );
        // a's workers were busy long enough; b's claim the work in a tenth of the time the
        // fastest GPU needs.
        m.seconds = super::tests::m(&[("a", 2.0), ("b", 0.2)]);
        let f = reconcile(&credited(&[("a", c), ("b", c)]), &m);
        assert_eq!(f[0].held, None);
        assert_eq!(f[1].seconds, Some(0.2));
        let why = f[1].held.as_deref().unwrap();
        assert!(why.contains("0.200 busy seconds"), "{why}");
        // Idle metrics: any credit beyond the slack is held.
        m.seconds = super::tests::m(&[("a", 0.0)]);
        let f = reconcile(&credited(&[("a", 10)]), &m);
        assert!(f[0].held.is_some());
    }
}
