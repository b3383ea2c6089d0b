//! Hardware fingerprint measurement: timings whose RATIOS are characteristic of a
//! machine's core and memory, and stable across runs on it. This module measures; the
//! format and the comparison (`zop_kernels::fingerprint`) are shared with the
//! operator, which never measures.
//!
//! Components, in order, each a ratio of single-thread timings (dividing by the L1
//! latency cancels the clock frequency):
//! 1. L2 / L1 dependent-load latency, over random cycles through working sets that sit
//!    well inside each level on common hardware.
//! 2. DRAM / L1 latency at HALF resolution (the square root of the ratio is encoded,
//!    so one step is 41%): memory is shared with every other process and tenant, and
//!    contention moved this ratio by up to 40% between runs on the test machine.
//! 3. GEMM / copy: time per int8 op against time per byte of an L2-resident copy; both
//!    are core-bound, so this reflects SIMD width against load/store ports.
//! 4. Copy / L1: L2 copy time per byte against the L1 latency.
//!
//! There is deliberately no LLC component: the last-level cache is shared, and a
//! working set there timed anywhere from 1x to 4x its quiet latency under load.
//! Each timing is the fastest of many runs, the one least disturbed by other load.

use crate::timing::secs;
use std::time::{Duration, Instant};
use zop_kernels::{compute_proof, fingerprint, seed};

/// Working sets well inside one level on common hardware (a set near a capacity edge
/// times erratically): above 64 KiB L1s yet below 256 KiB L2s, and far above the
/// LLC a single core sees.
const L1_BYTES: usize = 16 << 10;
const L2_BYTES: usize = 128 << 10;
const DRAM_BYTES: usize = 128 << 20;
const CHASE_BYTES: [usize; 3] = [L1_BYTES, L2_BYTES, DRAM_BYTES];
/// One node per cache line, so every hop is a new line.
const LINE_WORDS: usize = 64 / 4;
/// Dependent loads per timed run. Short runs are more likely to fit in a quiet
/// moment between other processes' bursts; the fastest is kept.
const CHASE_STEPS: usize = 10_000;
/// GEMM size for the core-bound ratio: its operands fit in L2.
const GEMM_N: usize = 192;
/// L2-resident copy: source and destination together below 256 KiB.
const COPY_BYTES: usize = 96 << 10;
const COPY_REPEATS: usize = 32;

/// Raw single-thread timings behind a fingerprint.
#[derive(Debug, Clone, PartialEq)]
pub struct Timings {
    /// Nanoseconds per dependent load, by working set: L1, L2, DRAM.
    pub latency_ns: [f64; 3],
    /// Nanoseconds per int8 op (one of the `2n³` of a product).
    pub gemm_ns_per_op: f64,
    /// Nanoseconds per byte copied within L2.
    pub copy_ns_per_byte: f64,
}

impl Timings {
    /// The values encoded, in component order (see the module docs).
    pub fn ratios(&self) -> [f64; 4] {
        let [l1, l2, dram] = self.latency_ns;
        [
            l2 / l1,
            (dram / l1).sqrt(),
            self.gemm_ns_per_op / self.copy_ns_per_byte,
            self.copy_ns_per_byte / l1,
        ]
    }

    /// The fingerprint string, `v1:<q1>,<q2>,<q3>,<q4>`.
    pub fn fingerprint(&self) -> String {
        fingerprint::encode(&self.ratios())
    }
}

/// Rounds at least, however short the budget.
const MIN_ROUNDS: u32 = 3;

/// Measures for about `budget` (plus setup: building the DRAM-sized cycle).
///
/// Measurements are interleaved in rounds, each timing every probe once, and each
/// probe keeps its fastest run: a burst of load from elsewhere then spoils a few runs
/// of every probe rather than all runs of one.
pub fn measure(budget: Duration) -> Timings {
    let chases: Vec<Chase> = CHASE_BYTES
        .iter()
        .enumerate()
        .map(|(slot, bytes)| Chase::new(*bytes, slot as u64))
        .collect();
    let gemm_n = GEMM_N;
    let gemm_inputs = compute_proof::inputs(1, gemm_n).ok();
    let mut copy_buf = CopyBuffers::new();
    // Each chase continues where its last run stopped: restarting would replay the
    // same lines, which a DRAM-sized set would then serve from cache.
    let mut at = [0u32; 3];
    let mut best = [Duration::MAX; 5];
    let until = Instant::now() + budget;
    let mut round = 0;
    while round < MIN_ROUNDS || Instant::now() < until {
        round += 1;
        for (slot, chase) in chases.iter().enumerate() {
            if CHASE_BYTES[slot] < DRAM_BYTES {
                // Untimed pass over the whole set first: the previous round's probes
                // evicted it, and only the level it fits in should be timed.
                at[slot] = std::hint::black_box(chase.run(at[slot], chase.lines()));
            }
            let t = time(|| chase.run(at[slot], CHASE_STEPS));
            at[slot] = t.1;
            best[slot] = best[slot].min(t.0);
        }
        if let Some((a, b)) = &gemm_inputs {
            let t = time(|| compute_proof::cpu::matmul(a, b, gemm_n));
            best[3] = best[3].min(t.0);
        }
        copy_buf.copy(1);
        best[4] = best[4].min(time(|| copy_buf.copy(COPY_REPEATS)).0);
    }
    let ns_per = |d: Duration, units: f64| secs(d) * 1e9 / units;
    Timings {
        latency_ns: [0, 1, 2].map(|slot| ns_per(best[slot], CHASE_STEPS as f64)),
        gemm_ns_per_op: ns_per(best[3], 2.0 * (gemm_n as f64).powi(3)),
        copy_ns_per_byte: ns_per(best[4], (COPY_BYTES * COPY_REPEATS) as f64),
    }
}

/// Times one call, keeping its result from being optimized away.
fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let start = Instant::now();
    let out = std::hint::black_box(f());
    (start.elapsed(), out)
}

/// Source and destination of the L2 copy in one line-aligned allocation, 2 KiB off a
/// 4 KiB multiple apart: where the allocator happens to put two buffers otherwise
/// decides whether the copy suffers 4K aliasing, a several-fold slowdown.
struct CopyBuffers {
    buf: Vec<u8>,
    src: usize,
    dst: usize,
}

impl CopyBuffers {
    fn new() -> Self {
        let mut buf = vec![0u8; 2 * COPY_BYTES + 4096];
        // Only the address's value is read, to pick an offset; nothing is dereferenced.
        let src = (64 - buf.as_ptr() as usize % 64) % 64;
        let dst = src + COPY_BYTES + 2048;
        for (i, b) in buf.iter_mut().enumerate() {
            *b = i as u8;
        }
        Self { buf, src, dst }
    }

    fn copy(&mut self, times: usize) -> u8 {
        let (head, tail) = self.buf.split_at_mut(self.dst);
        let src = &head[self.src..self.src + COPY_BYTES];
        let dst = &mut tail[..COPY_BYTES];
        for _ in 0..times {
            dst.copy_from_slice(std::hint::black_box(src));
        }
        dst[COPY_BYTES / 2]
    }
}

/// A random cycle through every cache line of a working set. Random order defeats
/// prefetchers, so each hop costs the latency of the level the set lives in.
struct Chase {
    next: Vec<u32>,
}

impl Chase {
    fn new(bytes: usize, seed: u64) -> Self {
        let lines = (bytes / (LINE_WORDS * 4)).max(2);
        let mut order: Vec<usize> = (0..lines).collect();
        let key = seed::stream_key(seed, 0x0063_6861_7365); // "chase" in ASCII
        for i in (1..lines).rev() {
            let j = (seed::word(key, i as u64) % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let mut next = vec![0u32; lines * LINE_WORDS];
        for (w, line) in order.iter().enumerate() {
            let to = order[(w + 1) % lines];
            // Fits: the largest set has 2^21 lines, 2^25 words.
            next[line * LINE_WORDS] = (to * LINE_WORDS) as u32;
        }
        Self { next }
    }

    /// Cache lines in the cycle.
    fn lines(&self) -> usize {
        self.next.len() / LINE_WORDS
    }

    /// Follows `steps` hops from word `from`; returns where it stopped.
    fn run(&self, from: u32, steps: usize) -> u32 {
        let mut i = from;
        for _ in 0..steps {
            i = self.next.get(i as usize).copied().unwrap_or(0);
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chase_visits_every_line_once_per_cycle() {
        let chase = Chase::new(L1_BYTES, 0);
        let lines = L1_BYTES / 64;
        let mut seen = vec![false; lines];
        let mut i = 0usize;
        for _ in 0..lines {
            assert!(!seen[i / LINE_WORDS]);
            seen[i / LINE_WORDS] = true;
            i = chase.next[i] as usize;
        }
        assert_eq!(i, 0);
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn a_short_measurement_yields_a_well_formed_fingerprint() {
        let t = measure(Duration::from_millis(50));
        let fp = t.fingerprint();
        let parts = fingerprint::decode(&fp).unwrap();
        assert_eq!(parts.len(), 4, "{fp}");
        // Any cache hierarchy is slower away from the core.
        assert!(t.latency_ns[2] > t.latency_ns[0], "{t:?}");
    }
}
