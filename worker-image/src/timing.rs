//! Repeat-and-take-the-fastest timing. The minimum is the run least disturbed by other
//! processes, interrupts and frequency changes, so it is the most repeatable statistic
//! on a shared machine.

use std::time::{Duration, Instant};

/// Runs `f` at least `min_reps` times and then until `until` or `max_reps`, and returns
/// the fastest run; `f` returns a value the optimizer must not see through.
pub(crate) fn fastest<T>(
    min_reps: u32,
    max_reps: u32,
    until: Instant,
    mut f: impl FnMut() -> T,
) -> Duration {
    let mut best = Duration::MAX;
    for rep in 0..max_reps.max(min_reps).max(1) {
        if rep >= min_reps && Instant::now() >= until {
            break;
        }
        let start = Instant::now();
        std::hint::black_box(f());
        best = best.min(start.elapsed());
    }
    best
}

/// Seconds as f64, never zero (a ratio's denominator on a coarse clock).
pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64().max(1e-9)
}
