//! Verification policy. This module owns the arithmetic: how many row challenges a
//! compute-proof fragment needs for a detection goal, the chance a cheating worker
//! escapes them (per fragment and across a task), the compute the verifier spends, and a
//! seeded simulation that checks the formula against sampling. [`challenge`] applies it
//! to a task's fragments and records; [`timing`] judges report-back times. Pure;
//! probabilities are `f64` (they price nothing: no amount of CXT is ever a float).
//!
//! A worker that corrupts a fraction `f` of a product's rows escapes one challenged row with
//! probability `1 − f`, and `k` independent challenges with probability `(1 − f)^k`. A task
//! of `n` fragments, each challenged `k` times, escapes with `(1 − f)^(k·n)`.

pub mod challenge;
pub mod quality;
pub mod replay;
pub mod timing;

use crate::scheduler::hash::mix;

/// Operations the verifier spends on one compute-proof fragment of `n×n` products whose
/// `k` challenged rows fall in `products` distinct products: per product, regenerating
/// `B` and computing `B·r` (`n²` each, counted as `2n²`); per row, regenerating its row
/// of `A`, `A[i,:]·(B·r)`, `C[i,:]·r` and hashing the row (`4n`, plus the proof's
/// `log₂` hashes, which are noise at these sizes).
pub fn verifier_ops(n: u64, k: u64, products: u64) -> u64 {
    let n2 = n.saturating_mul(n);
    products
        .min(k)
        .saturating_mul(2 * n2)
        .saturating_add(k.saturating_mul(4 * n))
}

/// Operations a worker spends answering `k` challenged rows: each row recomputed from
/// the seeds (`2n²`: `n²` multiply-adds).
pub fn answer_ops(n: u64, k: u64) -> u64 {
    k.saturating_mul(2 * n.saturating_mul(n))
}

/// Operations of the fragment itself: `2n³` per product.
pub fn fragment_ops(n: u64, products: u64) -> u64 {
    products.saturating_mul(2 * n.saturating_mul(n).saturating_mul(n))
}

/// Probability that `k` independent row challenges catch a worker corrupting a fraction
/// `f` of the rows (0 ≤ f ≤ 1): `1 − (1 − f)^k`.
pub fn detection(f: f64, k: u32) -> f64 {
    let f = f.clamp(0.0, 1.0);
    1.0 - (1.0 - f).powf(f64::from(k))
}

/// Probability that a task of `fragments` fragments, each challenged `k` times, catches a
/// worker corrupting a fraction `f` of the rows of every fragment: `1 − (1 − f)^(k·n)`.
pub fn task_detection(f: f64, k: u32, fragments: u32) -> f64 {
    let f = f.clamp(0.0, 1.0);
    1.0 - (1.0 - f).powf(f64::from(k) * f64::from(fragments))
}

/// The fewest challenges per fragment that catch a worker corrupting a fraction `f` of
/// its rows with probability at least `goal`: `⌈ln(1 − goal) / ln(1 − f)⌉`. `None` when no
/// number of challenges can (f = 0 and goal > 0), `Some(0)` for a goal of 0.
pub fn challenges_for(goal: f64, f: f64) -> Option<u32> {
    // NaN means nothing: no goal, or no cheat to find.
    let goal = if goal.is_nan() {
        0.0
    } else {
        goal.clamp(0.0, 1.0)
    };
    let f = if f.is_nan() { 0.0 } else { f.clamp(0.0, 1.0) };
    if goal <= 0.0 {
        return Some(0);
    }
    if f <= 0.0 {
        return None;
    }
    if f >= 1.0 || goal >= 1.0 {
        return (f >= 1.0).then_some(1);
    }
    let k = ((1.0 - goal).ln() / (1.0 - f).ln()).ceil();
    // A goal within a rounding error of an integer must not need one more challenge than
    // the formula gives.
    let k = if k >= 1.0 && detection(f, (k as u32).saturating_sub(1)) >= goal {
        k - 1.0
    } else {
        k
    };
    (k.is_finite() && k <= f64::from(u32::MAX)).then_some(k as u32)
}

/// A seeded simulation: `trials` fragments of `rows` rows, of which `⌈f·rows⌉` (at least
/// one when f > 0) are corrupted at random, each challenged at `k` rows drawn uniformly
/// with replacement; returns the share of trials in which a challenge hit a corrupted row.
pub fn simulate(seed: u64, trials: u32, rows: u32, f: f64, k: u32) -> f64 {
    simulate_tasks(seed, trials, 1, rows, f, k)
}

/// The same for tasks of `fragments` such fragments: the share of `trials` tasks in which
/// some challenge of some fragment hit a corrupted row.
pub fn simulate_tasks(seed: u64, trials: u32, fragments: u32, rows: u32, f: f64, k: u32) -> f64 {
    let rows = rows.max(1);
    let bad = ((f.clamp(0.0, 1.0) * f64::from(rows)).ceil() as u32).min(rows);
    if trials == 0 || bad == 0 {
        return 0.0;
    }
    // Which rows are corrupted does not matter for uniform challenges, only how many;
    // the first `bad` rows of a random relabelling are, so a challenge hits with
    // probability bad / rows. Draw `i` is the hash of `i` under one spread key: a single
    // reproducible stream, so no two challenges share a draw.
    let key = mix(seed, 0x5eed_cafe);
    let mut draw = 0u64;
    let mut caught = 0u32;
    for _ in 0..trials {
        let hit = (0..u64::from(fragments) * u64::from(k)).fold(false, |hit, _| {
            draw += 1;
            hit | (mix(key, draw) % u64::from(rows) < u64::from(bad))
        });
        caught += u32::from(hit);
    }
    f64::from(caught) / f64::from(trials)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixty_six_challenges_catch_a_ten_percent_cheat_at_three_nines() {
        assert_eq!(challenges_for(0.999, 0.10), Some(66));
        assert!(detection(0.10, 66) >= 0.999);
        assert!(detection(0.10, 65) < 0.999);
    }

    #[test]
    fn a_hundred_fragments_catch_a_one_percent_cheat_with_seven_challenges_each() {
        // (1 − 0.01)^(7·100) ≈ 0.00088.
        assert!(task_detection(0.01, 7, 100) >= 0.999);
        assert!(task_detection(0.01, 6, 100) < 0.999);
    }

    #[test]
    fn edge_goals_and_fractions_never_panic_or_divide_by_zero() {
        assert_eq!(challenges_for(0.0, 0.5), Some(0));
        assert_eq!(challenges_for(0.5, 0.0), None);
        assert_eq!(challenges_for(0.999, 1.0), Some(1));
        assert_eq!(challenges_for(1.0, 0.5), None);
        assert_eq!(challenges_for(f64::NAN, 0.5), Some(0));
        assert_eq!(challenges_for(0.9, f64::NAN), None);
        assert_eq!(detection(2.0, 3), 1.0);
        assert_eq!(detection(-1.0, 3), 0.0);
        assert_eq!(simulate(1, 0, 10, 0.5, 3), 0.0);
    }

    #[test]
    fn the_seeded_simulation_agrees_with_the_formula() {
        for (f, k) in [(0.10, 66), (0.10, 10), (0.01, 50), (0.5, 2)] {
            let sim = simulate(7, 200_000, 1024, f, k);
            // ⌈f·1024⌉ rows are bad: the exact per-challenge rate is that over 1024.
            let exact = detection((f * 1024.0).ceil() / 1024.0, k);
            assert!((sim - exact).abs() < 0.005, "f={f} k={k}: {sim} vs {exact}");
        }
        assert_eq!(
            simulate(3, 1_000, 64, 0.2, 5),
            simulate(3, 1_000, 64, 0.2, 5)
        );
    }

    #[test]
    fn the_task_simulation_agrees_with_the_formula() {
        // f = 1% of 2048 rows is 21 bad rows: the exact rate is 21/2048 per challenge.
        for k in [3, 7] {
            let sim = simulate_tasks(5, 20_000, 100, 2048, 0.01, k);
            let exact = task_detection(21.0 / 2048.0, k, 100);
            assert!((sim - exact).abs() < 0.01, "k={k}: {sim} vs {exact}");
        }
    }
}
