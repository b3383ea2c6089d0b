//! The short benchmark a device reports when it joins and when it re-measures: int8
//! matrix-product throughput (the score), memory bandwidth, and the hardware
//! fingerprint. Owns the score's units; the operator only checks plausibility.
//!
//! Score: normalized compute units, 1 unit = 1 GOP/s of int8 matrix products, where an
//! `n×n×n` product counts `2n³` ops (the compute-proof fragment kind's own work).

use crate::fingerprint::{self, Timings};
use crate::timing::{fastest, secs};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use zop_api::device::Benchmark;
use zop_kernels::compute_proof;

/// What to measure and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchConfig {
    /// Total time for the timed runs; setup (allocating, generating inputs) comes on top.
    pub duration: Duration,
    /// Threads for the throughput measurements; fingerprint timings use one.
    pub threads: usize,
    /// Bytes of the source buffer of the bandwidth copy; it should dwarf any cache.
    pub copy_bytes: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            duration: Duration::from_millis(600),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            copy_bytes: 64 << 20,
        }
    }
}

/// Everything a run measured, for logs; [`Measurements::benchmark`] is what is reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurements {
    /// int8 matrix-product throughput over all threads, GOP/s.
    pub gemm_gops: f64,
    /// The product size it was measured at.
    pub gemm_n: usize,
    /// Copy bandwidth over all threads, bytes read plus written per second, in MB/s.
    pub copy_mbps: f64,
    /// The single-thread timings behind the fingerprint.
    pub timings: Timings,
}

impl Measurements {
    /// The operator's `Benchmark`; `measured_at` is left to whoever sends it.
    pub fn benchmark(&self) -> Benchmark {
        Benchmark {
            score: gpu_score().unwrap_or_else(|| round_positive(self.gemm_gops)),
            memory_bandwidth_mbps: round_positive(self.copy_mbps),
            fingerprint: self.timings.fingerprint(),
            measured_at: None,
            driver_version: None,
        }
    }
}

/// Runs the benchmark and returns what the device reports.
pub fn run(cfg: &BenchConfig) -> Benchmark {
    measure(cfg).benchmark()
}

/// Runs the benchmark: 30% of the duration on the product, 20% on the copy, 50% on
/// the fingerprint, whose ratios need the most repetitions to settle.
pub fn measure(cfg: &BenchConfig) -> Measurements {
    let threads = cfg.threads.max(1);
    let (gemm_n, gemm_gops) = gemm_gops(threads, cfg.duration.mul_f64(0.3));
    Measurements {
        gemm_gops,
        gemm_n,
        copy_mbps: copy_mbps(threads, cfg.copy_bytes, cfg.duration.mul_f64(0.2)),
        timings: fingerprint::measure(cfg.duration.mul_f64(0.5)),
    }
}

/// Side of the int8 product timed on a GPU: large enough that a data-center GPU runs
/// near its peak (2·8192³ ops, about 1 ms on an H100), small enough (384 MiB) for any.
const GPU_GEMM_N: u32 = 8192;

/// The score of the first GPU: cuBLAS int8 products of [`GPU_GEMM_N`], the operation the
/// compute-proof fragments run. `None` (the CPU score is reported) when this machine has
/// no GPU or its CUDA libraries do not load; a GPU machine then reports a CPU-sized
/// score, which the operator's plausibility check flags for known GPU models.
fn gpu_score() -> Option<u64> {
    if zop_kernels::gpu::detect().is_empty() {
        return None;
    }
    let timed = zop_kernels::gpu::Gpu::open(0).and_then(|gpu| gpu.gemm_seconds(GPU_GEMM_N, 20));
    match timed {
        Ok(s) if s > 0.0 => Some(round_positive(
            2.0 * f64::from(GPU_GEMM_N).powi(3) / s / 1e9,
        )),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "the GPU benchmark failed; reporting the CPU score");
            None
        }
    }
}

fn gemm_gops(threads: usize, budget: Duration) -> (usize, f64) {
    // Enough rows that every thread gets a band worth splitting for.
    let n = if threads > 8 { 1024 } else { 512 };
    let Ok((a, b)) = compute_proof::inputs(0, n) else {
        return (n, 0.0);
    };
    let until = Instant::now() + budget;
    let best = fastest(2, 100, until, || {
        compute_proof::cpu::matmul_threads(&a, &b, n, threads)
    });
    (n, 2.0 * (n as f64).powi(3) / secs(best) / 1e9)
}

fn copy_mbps(threads: usize, bytes: usize, budget: Duration) -> f64 {
    let bytes = bytes.max(1 << 20);
    // Non-zero contents, so the pages are really backed before the timed runs.
    let src = vec![1u8; bytes];
    let mut dst = vec![2u8; bytes];
    let until = Instant::now() + budget;
    let chunk = bytes.div_ceil(threads);
    let best = fastest(2, 100, until, || {
        let pairs: Vec<(&[u8], &mut [u8])> = src.chunks(chunk).zip(dst.chunks_mut(chunk)).collect();
        for_each_parallel(pairs, threads, |(s, d)| d.copy_from_slice(s));
    });
    2.0 * bytes as f64 / secs(best) / 1e6
}

/// Runs `f` on every item over up to `threads` threads. A thread the OS refuses to
/// start costs only speed: the calling thread drains the same queue.
fn for_each_parallel<T: Send>(items: Vec<T>, threads: usize, f: impl Fn(T) + Sync) {
    let queue = Mutex::new(items);
    let work = || {
        loop {
            let next = queue.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let Some(item) = next else { break };
            f(item);
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            let _ = std::thread::Builder::new().spawn_scoped(s, work);
        }
        work();
    });
}

fn round_positive(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        (v.round() as u64).max(1)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_run_reports_positive_figures_and_a_fingerprint() {
        let cfg = BenchConfig {
            duration: Duration::from_millis(100),
            threads: 2,
            copy_bytes: 4 << 20,
        };
        let m = measure(&cfg);
        let b = m.benchmark();
        assert!(b.score >= 1 && b.memory_bandwidth_mbps >= 1, "{m:?}");
        assert!(zop_kernels::fingerprint::decode(&b.fingerprint).is_some());
        assert!(b.measured_at.is_none());
    }

    #[test]
    fn rounding_never_reports_zero_for_work_done_or_garbage_for_nan() {
        assert_eq!(round_positive(0.2), 1);
        assert_eq!(round_positive(41.6), 42);
        assert_eq!(round_positive(f64::NAN), 0);
        assert_eq!(round_positive(-3.0), 0);
    }
}
