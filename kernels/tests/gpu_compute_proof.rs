//! The compute-proof fragment on a real GPU against the CPU reference: the roots must be
//! bit-identical. Without a GPU the test says it was skipped; with one, every failure
//! (a library missing, a kernel not compiling) fails the test.

use zop_kernels::fragment::{FragmentKind, execute_range, hex};
use zop_kernels::gpu::{self, compute_proof::ComputeProofGpu};

#[test]
fn gpu_and_cpu_commit_to_identical_roots() {
    let gpus = match gpu::try_detect() {
        Ok(g) if !g.is_empty() => g,
        Ok(_) => return eprintln!("skipped: the CUDA driver reports no GPU"),
        Err(e) => return eprintln!("skipped: no GPU ({e})"),
    };
    let dev = ComputeProofGpu::new(0).expect("a detected GPU opens and compiles the kernels");
    eprintln!("GPU: {} ({:?})", dev.device_name(), gpus[0]);
    for (seed, n, products, first) in [
        (0u64, 1u32, 1u64, 0u64),
        (1, 3, 2, 0),
        (2, 64, 3, 1),
        (3, 127, 2, 0),
        (4, 256, 5, 2),
        (5, 1000, 1, 0),
        (6, 1024, 2, 0),
    ] {
        let kind = FragmentKind::ComputeProof {
            dimension: n,
            products: first + products,
            seed,
        };
        let cpu = execute_range(&kind, first..first + products)
            .unwrap()
            .digest;
        let (root, t) = dev.fragment(n, seed, first..first + products).unwrap();
        assert_eq!(hex(&root), cpu, "n {n} products {first}+{products}");
        assert!(t.busy_s() > 0.0);
    }
}
