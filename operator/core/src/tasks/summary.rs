//! The aggregated parts of a task's status: the contribution table (bounded, so the
//! status stays small at any fragment count), the progress string and the verification
//! message.

use crate::api::task::MAX_CONTRIBUTION_ROWS;
use crate::api::task_status::{DeviceContribution, FragmentCounts};

/// The device name of the row that sums every device past the limit.
pub const OTHERS: &str = "(others)";

/// Largest contributors first (ties by name), at most `MAX_CONTRIBUTION_ROWS` rows, the
/// rest folded into one `(others)` row.
pub fn contributions(mut rows: Vec<DeviceContribution>) -> Vec<DeviceContribution> {
    rows.sort_by(|a, b| {
        b.work_units
            .cmp(&a.work_units)
            .then_with(|| a.device.cmp(&b.device))
    });
    if rows.len() <= MAX_CONTRIBUTION_ROWS {
        return rows;
    }
    let rest = rows.split_off(MAX_CONTRIBUTION_ROWS);
    let others = rest.into_iter().fold(
        DeviceContribution {
            device: OTHERS.into(),
            ..Default::default()
        },
        |mut acc, r| {
            acc.fragments = acc.fragments.saturating_add(r.fragments);
            acc.work_units = acc.work_units.saturating_add(r.work_units);
            acc.rejected = acc.rejected.saturating_add(r.rejected);
            acc
        },
    );
    rows.push(others);
    rows
}

/// `accepted/total`: fragments verified, or accepted without a proof for their kind.
pub fn progress(c: &FragmentCounts) -> String {
    format!("{}/{}", c.verified.saturating_add(c.unverified), c.total)
}

/// The Ready condition's message: how many fragments verified, how many were accepted
/// without a proof, and how many results failed verification.
pub fn verification(c: &FragmentCounts) -> String {
    let mut m = format!("{} of {} fragments verified", c.verified, c.total);
    if c.unverified > 0 {
        m += &format!(
            ", {} accepted without verification (no proof; not drawn for replay)",
            c.unverified
        );
    }
    if c.rejected > 0 {
        m += &format!(
            ", {} results failed verification and were executed again",
            c.rejected
        );
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: u64) -> DeviceContribution {
        DeviceContribution {
            device: format!("d{i:05}"),
            fragments: 1,
            work_units: i,
            rejected: 0,
        }
    }

    #[test]
    fn small_tables_are_sorted_and_kept_whole() {
        let out = contributions(vec![row(1), row(3), row(2)]);
        assert_eq!(
            out.iter().map(|r| r.work_units).collect::<Vec<_>>(),
            [3, 2, 1]
        );
    }

    #[test]
    fn ten_thousand_devices_fold_into_a_bounded_table_that_keeps_the_totals() {
        let out = contributions((0..10_000).map(row).collect());
        assert_eq!(out.len(), MAX_CONTRIBUTION_ROWS + 1);
        assert_eq!(out.last().unwrap().device, OTHERS);
        assert_eq!(out.iter().map(|r| r.fragments).sum::<u64>(), 10_000);
        assert_eq!(
            out.iter().map(|r| r.work_units).sum::<u64>(),
            (0..10_000).sum::<u64>()
        );
        let bytes = serde_json::to_vec(&out).unwrap().len();
        assert!(bytes < 16 * 1024, "{bytes} bytes");
    }

    #[test]
    fn progress_is_verified_over_total() {
        let c = FragmentCounts {
            total: 1000,
            verified: 250,
            ..Default::default()
        };
        assert_eq!(progress(&c), "250/1000");
    }
}
