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
//! A provider is held when its credit exceeds either measurement by more than
//! [`RELATIVE`] of it plus [`SLACK`] units, or when the operator's count has no series for
//! it at all. A provider whose workers are not scraped is reconciled against the
//! operator's count alone.

use std::collections::BTreeMap;

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
                _ => None,
            };
            Finding {
                provider: provider.clone(),
                credited: *c,
                operator,
                workers,
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

    fn measured(operator: &[(&str, f64)], workers: &[(&str, f64)]) -> Measured {
        let m = |rows: &[(&str, f64)]| rows.iter().map(|(p, v)| (p.to_string(), *v)).collect();
        Measured {
            operator: m(operator),
            workers: m(workers),
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
}
