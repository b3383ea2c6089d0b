//! Fragment throughput, printed as figures for `docs/benchmarks.md`:
//!
//! - the CPU path of every kind on this machine (operations per second, as the work-unit
//!   formulas count them), and for compute-proof the share of fragment time spent on
//!   the commitment (row digests and Merkle tree) next to the product alone;
//! - on a GPU, compute-proof fragments (input generation, cuBLAS int8 GEMM and the
//!   commitment, all on the device) side by side with cuBLAS int8 GEMM alone on the
//!   same shapes, the commitment's share of GPU time, and the fraction of the GPU's peak
//!   dense int8 rate. Without a GPU it says so and why.
//!
//! `cargo run --release -p zop-kernels --example fragment-throughput [-- --quick]`

use std::time::Instant;
use zop_kernels::compute_proof::{self, cpu};
use zop_kernels::data::Operation;
use zop_kernels::fragment::executor::{Device, DevicePreference, Executor};
use zop_kernels::fragment::{FragmentKind, execute_range};
use zop_kernels::gpu::{self, Gpu, GpuTimings};
use zop_kernels::training::TrainingParams;

/// Peak dense int8 tensor rate in operations per second, from NVIDIA's datasheets.
fn peak_int8_ops(name: &str) -> Option<f64> {
    let tops = [
        ("H200", 1979.0),
        ("H100 SXM", 1979.0),
        ("H100 80GB HBM3", 1979.0),
        ("H100 NVL", 1671.0),
        ("H100 PCIe", 1513.0),
        ("H100", 1513.0),
        ("A100", 624.0),
        ("L40S", 733.0),
        ("L4", 242.0),
    ];
    tops.iter()
        .find(|(model, _)| name.contains(model))
        .map(|(_, t)| t * 1e12)
}

/// Seconds of the fastest of `reps` runs of `f`.
fn best<T>(reps: u32, mut f: impl FnMut() -> T) -> f64 {
    (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// The other kinds, with parameters that take about 0.1 s on the CPU path here.
fn other_kinds() -> Vec<(&'static str, &'static str, FragmentKind, u64)> {
    vec![
        (
            "training",
            "F=256 C=10, 1 step",
            FragmentKind::Training {
                params: TrainingParams {
                    features: 256,
                    classes: 10,
                    samples: 20_000,
                    learning_rate: 0.1,
                    local_steps: 1,
                    seed: 1,
                    hidden: None,
                },
                epochs: 1,
            },
            20_000u64,
        ),
        (
            "inference",
            "F=256 C=10",
            FragmentKind::Inference {
                features: 256,
                classes: 10,
                samples: 50_000,
                seed: 1,
                hidden: None,
            },
            50_000,
        ),
        (
            "dataProcessing",
            "sha256, 64 KiB chunks",
            FragmentKind::DataProcessing {
                operation: Operation::Sha256,
                bytes: 64 << 20,
                chunk_size: 64 << 10,
                seed: 1,
            },
            64 << 20,
        ),
        (
            "dataProcessing",
            "tokenize, 64 KiB chunks",
            FragmentKind::DataProcessing {
                operation: Operation::Tokenize,
                bytes: 64 << 20,
                chunk_size: 64 << 10,
                seed: 1,
            },
            64 << 20,
        ),
    ]
}

fn cpu_kinds(quick: bool) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("## CPU path ({threads} threads)");
    let reps = if quick { 1 } else { 3 };
    println!(
        "| compute-proof n | products | fragment s | Gop/s | product alone s | commitment share |"
    );
    println!("|---|---|---|---|---|---|");
    for (n, products) in [(256usize, 8u64), (512, 4), (1024, 2)] {
        if quick && n > 512 {
            continue;
        }
        let kind = FragmentKind::ComputeProof {
            dimension: n as u32,
            products,
            seed: 1,
        };
        let mut ops = 0;
        let frag = best(reps, || {
            ops = execute_range(&kind, 0..products).unwrap().work_units;
        });
        let (a, b) = compute_proof::inputs(7, n).unwrap();
        let product = best(reps, || cpu::matmul_threads(&a, &b, n, threads).unwrap());
        let c = cpu::matmul_threads(&a, &b, n, threads).unwrap();
        let commit = best(reps, || compute_proof::commit(&c, n).unwrap().root());
        let per_product = frag / products as f64;
        println!(
            "| {n} | {products} | {frag:.3} | {:.2} | {product:.4} | {:.1}% |",
            ops as f64 / frag / 1e9,
            100.0 * commit / per_product
        );
    }
    println!();
    println!("| kind | parameters | items | fragment s | Gop/s |");
    println!("|---|---|---|---|---|");
    for (name, params, kind, items) in other_kinds() {
        let mut ops = 0;
        let s = best(reps, || {
            ops = execute_range(&kind, 0..items).unwrap().work_units;
        });
        println!(
            "| {name} | {params} | {items} | {s:.3} | {:.2} |",
            ops as f64 / s / 1e9
        );
    }
    println!();
}

fn gpu_compute_proof(quick: bool) {
    println!("## GPU path");
    let dev = match gpu::try_detect() {
        Ok(g) if !g.is_empty() => match Gpu::open(0) {
            Ok(d) => d,
            Err(e) => return println!("GPU present but the GPU path failed to open: {e}"),
        },
        Ok(_) => return println!("skipped: the CUDA driver reports no GPU"),
        Err(e) => return println!("skipped: no GPU on this machine ({e})"),
    };
    let name = dev.device_name().to_string();
    let peak = peak_int8_ops(&name);
    println!("GPU: {name}; peak dense int8: {peak:?} op/s");
    println!(
        "| n | products | fragment s | fragment Top/s | cuBLAS alone Top/s | fragment / cuBLAS | commitment share | generation share | fragment / peak |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let sizes: &[u32] = if quick { &[4096] } else { &[4096, 8192, 16384] };
    for &n in sizes {
        let products = 8u64;
        let ops = 2.0 * f64::from(n).powi(3) * products as f64;
        // One warm-up fragment, then the fastest of three.
        let _ = dev.compute_proof(n, 1, 0..1).unwrap();
        let mut timings = Default::default();
        let frag = best(3, || {
            timings = dev.compute_proof(n, 1, 0..products).unwrap().timings;
        });
        let gemm = dev.gemm_seconds(n, 10).unwrap() * products as f64;
        let t: GpuTimings = timings;
        println!(
            "| {n} | {products} | {frag:.4} | {:.1} | {:.1} | {:.1}% | {:.1}% | {:.1}% | {} |",
            ops / frag / 1e12,
            ops / gemm / 1e12,
            100.0 * gemm / frag,
            100.0 * t.commit_s / t.busy_s(),
            100.0 * t.generate_s / t.busy_s(),
            peak.map_or("unknown".into(), |p| format!(
                "{:.1}%",
                100.0 * ops / frag / p
            )),
        );
    }
}

fn gpu_other_kinds() {
    let Ok(ex) = Executor::open(DevicePreference::Gpu) else {
        return;
    };
    println!();
    println!(
        "| kind | parameters | items | GPU fragment s | GPU Gop/s | CPU fragment s | GPU / CPU |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, params, kind, items) in other_kinds() {
        let _ = ex.execute(&kind, 0..items).unwrap();
        let mut ops = 0;
        let gpu = best(3, || {
            let run = ex.execute(&kind, 0..items).unwrap();
            assert_eq!(run.device, Device::Gpu, "{:?}", run.gpu_fallback);
            ops = run.output.work_units;
        });
        let cpu = best(1, || execute_range(&kind, 0..items).unwrap());
        println!(
            "| {name} | {params} | {items} | {gpu:.4} | {:.2} | {cpu:.3} | {:.1}× |",
            ops as f64 / gpu / 1e9,
            cpu / gpu
        );
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    cpu_kinds(quick);
    gpu_compute_proof(quick);
    gpu_other_kinds();
}
