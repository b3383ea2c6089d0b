//! Every fragment kind on a real GPU against the CPU reference: the outputs (digests,
//! work units and metrics) must be identical. Without a GPU the test says it was
//! skipped; with one, every failure (a library missing, a kernel not compiling, a
//! fallback to the CPU) fails the test.

use zop_kernels::data::Operation;
use zop_kernels::fragment::executor::{Device, DevicePreference, Executor};
use zop_kernels::fragment::{FragmentKind, execute_range};
use zop_kernels::gpu;
use zop_kernels::training::TrainingParams;

const CHECK: &str = "GPU versus CPU bit identity";

#[test]
fn gpu_and_cpu_commit_identically_for_every_kind() {
    let gpus = match gpu::try_detect() {
        Ok(g) if !g.is_empty() => g,
        Ok(_) => return gpu::report_skipped(CHECK, "the CUDA driver reports no GPU"),
        Err(e) => return gpu::report_skipped(CHECK, &format!("no GPU ({e})")),
    };
    let ex = Executor::open(DevicePreference::Gpu).expect("a detected GPU opens");
    eprintln!("GPU: {:?} ({:?})", ex.gpu_name(), gpus[0]);
    let proof = |n: u32, products: u64, seed: u64| FragmentKind::ComputeProof {
        dimension: n,
        products,
        seed,
    };
    let training = |f: u32, c: u32, samples: u64, steps: u32| FragmentKind::Training {
        params: TrainingParams {
            features: f,
            classes: c,
            samples,
            learning_rate: 0.3,
            local_steps: steps,
            seed: 11,
            hidden: None,
        },
        epochs: 1,
    };
    let cases = [
        (proof(1, 1, 0), 0..1),
        (proof(3, 2, 1), 0..2),
        (proof(64, 4, 2), 1..4),
        (proof(127, 2, 3), 0..2),
        (proof(256, 6, 4), 2..6),
        (proof(1000, 1, 5), 0..1),
        (proof(1024, 2, 6), 0..2),
        // Rows of 5 and 9 pieces: row trees of 3 and 4 levels, through both buffers.
        (proof(2049, 1, 7), 0..1),
        (proof(4500, 1, 8), 0..1),
        (training(6, 3, 40, 1), 20..30),
        (training(64, 10, 5_000, 5), 1_000..4_000),
        (
            FragmentKind::Inference {
                features: 32,
                classes: 8,
                samples: 10_000,
                seed: 3,
                hidden: None,
            },
            2_500..10_000,
        ),
        (
            FragmentKind::DataProcessing {
                operation: Operation::Sha256,
                bytes: 1 << 22,
                chunk_size: 65_536,
                seed: 9,
            },
            5..(1 << 22),
        ),
        (
            FragmentKind::DataProcessing {
                operation: Operation::Tokenize,
                bytes: 1 << 20,
                chunk_size: 1_000,
                seed: 9,
            },
            0..(1 << 20),
        ),
    ];
    for (kind, range) in cases {
        let cpu = execute_range(&kind, range.clone()).unwrap();
        let run = ex.execute(&kind, range.clone()).unwrap();
        assert_eq!(run.gpu_fallback, None, "{kind:?} {range:?}");
        assert_eq!(run.device, Device::Gpu);
        assert_eq!(run.output, cpu, "{kind:?} {range:?}");
        assert!(run.gpu_busy_seconds > 0.0);
    }
}
