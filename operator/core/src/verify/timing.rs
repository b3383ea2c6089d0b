//! Report-back times against the device's benchmark. The operator times a fragment on
//! its own clock: from the previous result of the same assignment (or, for the first,
//! from the assignment's creation, which only makes the interval longer) to the arrival
//! of its commitment. The worker's `elapsedMs` is never used.
//!
//! - **Too fast**: a fragment done in less than a quarter of the time its benchmark says
//!   the device needs at full speed. Benchmarks measure the same int8 products at peak,
//!   so an honest device cannot beat its own by 4×; a result that arrives that early was
//!   not computed there (resubmitted, or copied).
//! - **Too slow**: more than 20× the benchmark's time, plus 10 s for start-up, network
//!   and queueing. A loaded machine is slower by small factors; 20× means the benchmark
//!   overstated the hardware (or the worker sleeps).
//!
//! Fragments whose benchmark time is under [`MIN_JUDGED_MS`] are not judged too fast:
//! at that scale the network, not the device, sets the time.

/// A device's speed no benchmark can beat by this factor.
pub const FAST_FACTOR: u64 = 4;
/// A benchmark overstated by this factor is not load.
pub const SLOW_FACTOR: u64 = 20;
/// Start-up, network and queueing allowed on top of [`SLOW_FACTOR`].
pub const SLOW_SLACK_MS: u64 = 10_000;
/// Fragments quicker than this at benchmark speed are not judged too fast.
pub const MIN_JUDGED_MS: u64 = 200;

/// A report-back time, judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// Nothing to say (or no benchmark to judge by).
    Plausible,
    /// Faster than the device can be.
    TooFast {
        /// Milliseconds measured.
        measured_ms: u64,
        /// Milliseconds the benchmark says the fragment takes at full speed.
        expected_ms: u64,
    },
    /// Far slower than the benchmark says.
    TooSlow {
        /// Milliseconds measured.
        measured_ms: u64,
        /// Milliseconds the benchmark says the fragment takes at full speed.
        expected_ms: u64,
    },
}

/// Milliseconds `ops` operations take at `score` GOP/s.
pub fn expected_ms(ops: u64, score: u64) -> Option<u64> {
    (score > 0).then(|| ops / score.saturating_mul(1_000_000))
}

/// Judges a fragment of `ops` operations measured at `measured_ms` on a device whose
/// benchmark is `score` GOP/s (0: no benchmark). `first` says the interval ran from the
/// assignment's creation, so it can only be judged too fast.
pub fn judge(ops: u64, score: u64, measured_ms: u64, first: bool) -> Timing {
    let Some(expected) = expected_ms(ops, score) else {
        return Timing::Plausible;
    };
    let (measured_ms, expected_ms) = (measured_ms, expected);
    if expected >= MIN_JUDGED_MS && measured_ms.saturating_mul(FAST_FACTOR) < expected {
        return Timing::TooFast {
            measured_ms,
            expected_ms,
        };
    }
    if !first
        && measured_ms
            > expected
                .saturating_mul(SLOW_FACTOR)
                .saturating_add(SLOW_SLACK_MS)
    {
        return Timing::TooSlow {
            measured_ms,
            expected_ms,
        };
    }
    Timing::Plausible
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 100 GOP/s and a fragment of 200 GOP: 2 s at full speed.
    const OPS: u64 = 200_000_000_000;
    const SCORE: u64 = 100;

    #[test]
    fn honest_times_are_plausible_even_when_loaded() {
        for ms in [600, 2_000, 5_000, 20_000, 40_000, 50_000] {
            assert_eq!(judge(OPS, SCORE, ms, false), Timing::Plausible, "{ms} ms");
        }
        // The first fragment also waited for its pod: never too slow.
        assert_eq!(judge(OPS, SCORE, 3_600_000, true), Timing::Plausible);
    }

    #[test]
    fn an_impossible_speed_is_too_fast() {
        assert_eq!(
            judge(OPS, SCORE, 100, true),
            Timing::TooFast {
                measured_ms: 100,
                expected_ms: 2_000
            }
        );
    }

    #[test]
    fn an_overstated_benchmark_is_too_slow() {
        assert!(matches!(
            judge(OPS, SCORE, 50_001, false),
            Timing::TooSlow {
                expected_ms: 2_000,
                ..
            }
        ));
    }

    #[test]
    fn tiny_fragments_and_missing_benchmarks_are_not_judged() {
        assert_eq!(judge(1_000, SCORE, 0, false), Timing::Plausible);
        assert_eq!(judge(OPS, 0, 0, false), Timing::Plausible);
        assert_eq!(judge(u64::MAX, u64::MAX, 5, false), Timing::Plausible);
    }
}
