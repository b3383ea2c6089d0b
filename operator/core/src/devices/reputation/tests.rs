use super::*;
use proptest::prelude::*;

const DAY: i64 = 24 * 3600;

fn fresh() -> Reputation {
    Reputation::default()
}

#[test]
fn verified_work_builds_slowly_and_saturates() {
    let mut r = fresh();
    r = apply(&r, Outcome::Verified, 0);
    assert_eq!((r.score, r.succeeded), (510, 1));
    for _ in 0..10_000 {
        r = apply(&r, Outcome::Verified, 0);
    }
    assert_eq!(r.score, MAX);
    assert_eq!(standing(&r, 0), Standing::Good);
}

#[test]
fn one_failed_verification_quarantines_even_a_perfect_record() {
    let mut r = fresh();
    r.score = MAX;
    let r = apply(&r, Outcome::Rejected, 0);
    assert_eq!(r.score, FRAUD_CEILING);
    assert_eq!(r.verification_failures, 1);
    assert_eq!(standing(&r, 0), Standing::Quarantined);
}

#[test]
fn a_quarantine_lifts_by_decay_and_repeated_fraud_retires() {
    let r = apply(&fresh(), Outcome::Rejected, 0);
    let lifts = lifts_in(&r, 0).unwrap();
    assert!((DAY..4 * DAY).contains(&lifts), "{lifts} s");
    assert_eq!(standing(&r, lifts - 60), Standing::Quarantined);
    assert_eq!(standing(&r, lifts), Standing::Good);
    let r = apply(&r, Outcome::Rejected, lifts);
    let r = apply(&r, Outcome::Rejected, 2 * lifts);
    assert_eq!(standing(&r, 100 * DAY), Standing::Retired);
    assert_eq!(lifts_in(&r, 0), None);
}

#[test]
fn scores_decay_towards_neutral_from_both_sides() {
    let mut high = fresh();
    high.score = 900;
    high.updated_at = Timestamp::from_second(0).ok().map(Time);
    assert_eq!(score_at(&high, HALF_LIFE_S), 700);
    let mut low = high.clone();
    low.score = 100;
    assert_eq!(score_at(&low, HALF_LIFE_S), 300);
    assert_eq!(score_at(&low, 1000 * DAY), NEUTRAL);
    // A clock that runs backwards does not grow the distance.
    assert_eq!(score_at(&low, -DAY), 100);
}

#[test]
fn an_overstated_benchmark_quarantines_within_a_few_fragments() {
    let slow = Outcome::Timing(Timing::TooSlow {
        measured_ms: 60_000,
        expected_ms: 10,
    });
    let mut r = fresh();
    let mut fragments = 0;
    while standing(&r, 0) == Standing::Good {
        // Its fragments verify (it computes them, slowly) and are too slow.
        r = apply(&r, Outcome::Verified, 0);
        r = apply(&r, slow, 0);
        fragments += 1;
    }
    assert_eq!(fragments, 5);
    assert_eq!(r.abnormal_timings, 5);
    assert_eq!(r.verification_failures, 0);
}

#[test]
fn timeouts_cost_little() {
    let r = apply(&fresh(), Outcome::TimedOut, 0);
    assert_eq!((r.score, r.failed), (480, 1));
    assert_eq!(standing(&r, 0), Standing::Good);
}

proptest! {
    #[test]
    fn scores_stay_in_range_and_only_fraud_retires(
        start in 0u32..=2000,
        outcomes in prop::collection::vec(0u8..5, 0..200),
        step in 0i64..(30 * DAY),
    ) {
        let mut r = fresh();
        r.score = start;
        let mut frauds = 0;
        for (i, o) in outcomes.iter().enumerate() {
            let outcome = match o {
                0 => Outcome::Verified,
                1 => { frauds += 1; Outcome::Rejected }
                2 => Outcome::TimedOut,
                3 => Outcome::Timing(Timing::TooFast { measured_ms: 1, expected_ms: 1000 }),
                _ => Outcome::Timing(Timing::Plausible),
            };
            r = apply(&r, outcome, i as i64 * step);
            prop_assert!(r.score <= MAX);
        }
        let now = outcomes.len() as i64 * step;
        prop_assert_eq!(standing(&r, now) == Standing::Retired, frauds >= RETIRE_AFTER);
    }

    #[test]
    fn an_honest_device_is_never_quarantined(
        verified in 0usize..2000,
        timeouts in 0usize..5,
        step in 0i64..DAY,
    ) {
        // Honest: every result verifies; a few crashes leave challenges unanswered.
        let mut r = fresh();
        for i in 0..verified + timeouts {
            let o = if i < timeouts { Outcome::TimedOut } else { Outcome::Verified };
            r = apply(&r, o, i as i64 * step);
            prop_assert_eq!(standing(&r, i as i64 * step), Standing::Good);
        }
    }
}
