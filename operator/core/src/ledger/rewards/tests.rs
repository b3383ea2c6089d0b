use super::*;
use proptest::prelude::*;

fn c(provider: &str, work_units: u64, quality: u32, reputation: u32, stake: u64) -> Contribution {
    Contribution {
        provider: provider.into(),
        work_units,
        quality,
        reputation,
        stake,
    }
}

#[test]
fn rewards_follow_work_quality_reputation_and_stake() {
    let s = split(
        1_000_000,
        &[
            c("b", 100, 1000, 1000, 0),
            c("a", 300, 1000, 1000, 0),
            c("c", 100, 500, 1000, 0),
            c("d", 100, 1000, 500, FULL_STAKE),
        ],
    );
    let r: Vec<(&str, u64)> = s
        .entries
        .iter()
        .map(|e| (e.provider.as_str(), e.reward.0))
        .collect();
    // Weights 300, 100, 50, 100 (half reputation, double stake): 550 in all.
    assert_eq!(
        r,
        vec![
            ("a", 545_455),
            ("b", 181_818),
            ("c", 90_909),
            ("d", 181_818)
        ]
    );
    assert_eq!(r.iter().map(|x| x.1).sum::<u64>(), 1_000_000);
    assert_eq!(s.returned, 0);
    assert_eq!(s.entries[3].stake_boost, 2000);
}

#[test]
fn the_residue_goes_to_the_largest_remainders_then_by_name() {
    // Three equal weights share 10 units: 3 each and 1 left, to the first name.
    let s = split(
        10,
        &[
            c("z", 1, 1000, 1000, 0),
            c("m", 1, 1000, 1000, 0),
            c("a", 1, 1000, 1000, 0),
        ],
    );
    let r: Vec<u64> = s.entries.iter().map(|e| e.reward.0).collect();
    assert_eq!(r, vec![4, 3, 3]);
    assert_eq!(s.entries[0].provider, "a");
}

#[test]
fn an_epoch_without_weighted_work_returns_its_emission() {
    let s = split(5_000, &[c("a", 0, 1000, 1000, 0), c("b", 10, 0, 1000, 0)]);
    assert_eq!(s.returned, 5_000);
    assert!(s.entries.iter().all(|e| e.reward.0 == 0));
    assert_eq!(split(7, &[]).returned, 7);
}

#[test]
fn the_stake_boost_is_capped_at_double() {
    assert_eq!(stake_boost(0), 1000);
    assert_eq!(stake_boost(FULL_STAKE / 4), 1250);
    assert_eq!(stake_boost(FULL_STAKE), 2000);
    assert_eq!(stake_boost(u64::MAX), 2000);
}

#[test]
fn huge_weights_divide_exactly() {
    // Weights near 2^95 with an emission near the whole supply: no overflow, exact sum.
    let s = split(
        crate::api::POOL_BASE_UNITS,
        &[
            c("a", u64::MAX, 1000, 1000, FULL_STAKE),
            c("b", u64::MAX / 3, 999, 997, 0),
        ],
    );
    assert_eq!(
        s.entries.iter().map(|e| e.reward.0).sum::<u64>(),
        crate::api::POOL_BASE_UNITS
    );
    let (q, r) = mul_div(u128::from(u64::MAX), u128::MAX / 3, u128::MAX / 2);
    // u64::MAX · (2/3) rounded down, within one of the naive f64 figure.
    assert!(q > 0 && r < u128::MAX / 2);
    assert_eq!(mul_div(10, 3, 4), (7, 2));
}

proptest! {
    /// Each epoch with weighted work pays exactly its emission, every provider within one
    /// unit of its exact share; without weighted work, the emission returns whole.
    #[test]
    fn each_epoch_pays_exactly_its_emission(
        emission in 0u64..=crate::api::POOL_BASE_UNITS,
        rows in proptest::collection::vec((0u64..1_000_000_000, 0u32..=1000, 0u32..=1000, 0u64..=2 * FULL_STAKE), 0..40),
    ) {
        let contributions: Vec<Contribution> = rows
            .iter()
            .enumerate()
            .map(|(i, (w, q, r, s))| c(&format!("p{i:03}"), *w, *q, *r, *s))
            .collect();
        let out = split(emission, &contributions);
        let paid: u64 = out.entries.iter().map(|e| e.reward.0).sum();
        prop_assert_eq!(paid + out.returned, emission);
        let weights: Vec<f64> = out
            .entries
            .iter()
            .map(|e| e.work_units as f64 * f64::from(e.quality) * f64::from(e.reputation) * f64::from(e.stake_boost))
            .collect();
        let total: f64 = weights.iter().sum();
        if total > 0.0 {
            prop_assert_eq!(out.returned, 0);
            for (e, w) in out.entries.iter().zip(&weights) {
                let exact = emission as f64 * w / total;
                prop_assert!((e.reward.0 as f64 - exact).abs() <= 1.0 + exact * 1e-9);
            }
        } else {
            prop_assert_eq!(out.returned, emission);
        }
    }
}
