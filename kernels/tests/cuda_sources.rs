//! Checks of the CUDA sources that need no GPU: they compile under NVRTC (when the
//! library is installed; `.ci/run` installs it), and their device functions, compiled
//! for the host by the system C++ compiler, commit to the same digests as the Rust
//! reference for every fragment kind. Each check prints why when it is skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use zop_kernels::data::Operation;
use zop_kernels::fragment::{FragmentKind, execute_range};
use zop_kernels::gpu::report_skipped;
use zop_kernels::gpu::source::{self, UNITS};
use zop_kernels::training::TrainingParams;

fn cuda_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cuda")
}

#[test]
fn every_cuda_source_compiles_under_nvrtc() {
    if !source::nvrtc_available() {
        return report_skipped(
            "NVRTC compilation of kernels/cuda",
            "no NVRTC library (libnvrtc.so) on the library path; e2e/scripts/tools.sh fetches one",
        );
    }
    for unit in UNITS {
        let ptx = source::compile(unit, source::Target::PtxDefault)
            .unwrap_or_else(|e| panic!("{} does not compile: {e}", unit.name))
            .to_src();
        let entries: Vec<&str> = ptx
            .lines()
            .filter_map(|l| l.split(".entry ").nth(1))
            .collect();
        assert!(!entries.is_empty(), "{} has no kernels", unit.name);
        eprintln!("{}: {entries:?}", unit.name);
    }
    let ptx = source::compile(source::COMPUTE_PROOF_UNIT, source::Target::Ptx(90))
        .expect("compute_proof.cu compiles for Hopper")
        .to_src();
    for kernel in ["fill_i8", "row_pieces", "row_levels", "merkle_level"] {
        assert!(
            ptx.contains(&format!(".entry {kernel}(")),
            "no kernel {kernel}"
        );
    }
}

#[test]
fn every_cuda_source_compiles_to_a_cubin_for_the_gpus_we_target() {
    if !source::nvrtc_available() {
        return report_skipped(
            "NVRTC cubin compilation of kernels/cuda",
            "no NVRTC library (libnvrtc.so) on the library path; e2e/scripts/tools.sh fetches one",
        );
    }
    let supported = source::supported_archs();
    assert!(supported.contains(&90), "NVRTC supports {supported:?}");
    // An H100 or H200 (9.0) and an A100 (8.0) get machine code first.
    for device in [(9, 0), (8, 0)] {
        let targets = source::targets(device, &supported);
        let source::Target::Cubin(sm) = targets[0] else {
            panic!("{device:?}: {targets:?}");
        };
        for unit in UNITS {
            let bytes = source::cubin(unit, sm)
                .unwrap_or_else(|e| panic!("{} for sm_{sm}: {e}", unit.name));
            assert_eq!(&bytes[..4], b"\x7fELF", "{} for sm_{sm}", unit.name);
        }
    }
    eprintln!("NVRTC supports sm_{supported:?}; every unit compiled to cubins for sm_90 and sm_80");
}

/// Builds the host harness, or says why it cannot.
fn host_harness() -> Result<PathBuf, String> {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cuda_host_harness");
    let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cuda_host/harness.cpp");
    let status = Command::new("c++")
        .args([
            "-std=c++17",
            "-O2",
            "-Wall",
            "-Werror",
            "-ffp-contract=off",
            "-I",
        ])
        .arg(cuda_dir())
        .arg(&harness)
        .arg("-o")
        .arg(&out)
        .status()
        .map_err(|e| format!("no C++ compiler (c++): {e}"))?;
    if !status.success() {
        panic!("the CUDA sources do not compile as host C++ ({status})");
    }
    Ok(out)
}

/// Runs the harness (or returns `None`, saying why) and returns its output lines.
fn run(harness: &Path, args: &[String]) -> Vec<String> {
    let out = Command::new(harness).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "harness {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The harness's arguments.
macro_rules! args {
    ($($a:expr),* $(,)?) => { [$($a.to_string()),*] };
}

#[test]
fn the_cuda_kernels_commit_like_the_cpu_reference_bit_for_bit() {
    let harness = match host_harness() {
        Ok(h) => h,
        Err(why) => return report_skipped("CUDA device functions on the host", &why),
    };
    // Compute-proof: sizes below, at and across SHA-256's block of 16 words (n + 3 words
    // with padding), odd and even leaf counts, product ranges not starting at 0, and rows
    // hashed in several pieces.
    for (seed, n, products, first) in [
        (0u64, 1u32, 1u64, 0u64),
        (7, 2, 3, 0),
        (11, 13, 1, 0),
        (11, 14, 2, 5),
        (3, 16, 1, 0),
        (5, 29, 4, 2),
        (9, 45, 2, 0),
        (u64::MAX, 64, 1, 1),
        // Rows of more than one 512-element piece: row trees of 2 and 3 pieces.
        (13, 513, 1, 0),
        (17, 1100, 1, 1),
    ] {
        let kind = FragmentKind::ComputeProof {
            dimension: n,
            products: first + products,
            seed,
        };
        let cpu = execute_range(&kind, first..first + products).unwrap();
        let gpu = run(&harness, &args!["compute-proof", seed, n, products, first,]);
        assert_eq!(
            gpu,
            [cpu.digest],
            "compute-proof seed {seed} n {n} {first}+{products}"
        );
    }
    // Data processing: chunks that are shorter than a SHA-256 block, span blocks, end
    // mid-word, and a short last chunk; both operations.
    for (op, name) in [
        (Operation::Sha256, "sha256"),
        (Operation::Tokenize, "tokenize"),
    ] {
        for (seed, start, end, chunk) in [
            (9u64, 0u64, 1u64, 1u64),
            (9, 3, 70, 55),
            (1, 8_192, 10_000, 1_000),
            (2, 5, 200_005, 65_536),
        ] {
            let kind = FragmentKind::DataProcessing {
                operation: op,
                bytes: end,
                chunk_size: chunk,
                seed,
            };
            let cpu = execute_range(&kind, start..end).unwrap();
            let gpu = run(&harness, &args!["data", name, seed, start, end, chunk]);
            assert_eq!(
                gpu,
                [cpu.digest, cpu.metrics["tokens"].clone()],
                "{name} {start}..{end} by {chunk}"
            );
        }
    }
    // Training: the digest of every step's quantized gradient, and the losses and
    // accuracy, over one and several local steps.
    for (f, c, samples, seed, range, lr, steps) in [
        (6u32, 3u32, 40u64, 17u64, 20u64..30u64, 0.5f32, 1u32),
        (16, 5, 300, 2, 0..300, 0.1, 4),
        (33, 10, 1_000, 8, 500..750, 1.0, 3),
    ] {
        let kind = FragmentKind::Training {
            params: TrainingParams {
                features: f,
                classes: c,
                samples,
                learning_rate: lr,
                local_steps: steps,
                seed,
                hidden: None,
            },
            epochs: 1,
        };
        let cpu = execute_range(&kind, range.clone()).unwrap();
        let gpu = run(
            &harness,
            &args![
                "training",
                f,
                c,
                samples,
                seed,
                range.start,
                range.end,
                lr,
                steps,
            ],
        );
        let m = &cpu.metrics;
        assert_eq!(
            gpu,
            [
                cpu.digest.clone(),
                m["initialLoss"].clone(),
                m["loss"].clone(),
                m["accuracy"].clone()
            ],
            "training F={f} C={c} {range:?}"
        );
    }
    // Inference: predictions and quantized probabilities.
    for (f, c, samples, seed, range) in [
        (8u32, 4u32, 101u64, 3u64, 51u64..101u64),
        (64, 20, 5_000, 4, 1_000..3_000),
    ] {
        let kind = FragmentKind::Inference {
            features: f,
            classes: c,
            samples,
            seed,
            hidden: None,
        };
        let cpu = execute_range(&kind, range.clone()).unwrap();
        let gpu = run(
            &harness,
            &args!["inference", f, c, samples, seed, range.start, range.end,],
        );
        assert_eq!(
            gpu,
            [cpu.digest.clone(), cpu.metrics["accuracy"].clone()],
            "inference F={f} C={c}"
        );
    }
    // The perceptron: training over one and several steps (hidden widths below, at and
    // above the classes), and the reference perceptron's inference (narrow and wide).
    for (f, c, h, samples, seed, range, lr, steps) in [
        (6u32, 3u32, 4u32, 40u64, 17u64, 20u64..30u64, 0.5f32, 1u32),
        (16, 5, 32, 300, 2, 0..300, 0.1, 3),
        (9, 10, 7, 1_000, 8, 500..650, 1.0, 2),
    ] {
        let kind = FragmentKind::Training {
            params: TrainingParams {
                features: f,
                classes: c,
                samples,
                learning_rate: lr,
                local_steps: steps,
                seed,
                hidden: Some(h),
            },
            epochs: 1,
        };
        let cpu = execute_range(&kind, range.clone()).unwrap();
        let gpu = run(
            &harness,
            &args![
                "mlp-training",
                f,
                c,
                samples,
                seed,
                range.start,
                range.end,
                lr,
                steps,
                h,
            ],
        );
        let m = &cpu.metrics;
        assert_eq!(
            gpu,
            [
                cpu.digest.clone(),
                m["initialLoss"].clone(),
                m["loss"].clone(),
                m["accuracy"].clone()
            ],
            "mlp training F={f} H={h} C={c} {range:?}"
        );
    }
    for (f, c, h, samples, seed, range) in [
        (8u32, 4u32, 9u32, 101u64, 3u64, 51u64..101u64),
        (12, 6, 4, 500, 5, 0..500),
    ] {
        let kind = FragmentKind::Inference {
            features: f,
            classes: c,
            samples,
            seed,
            hidden: Some(h),
        };
        let cpu = execute_range(&kind, range.clone()).unwrap();
        let gpu = run(
            &harness,
            &args![
                "mlp-inference",
                f,
                c,
                samples,
                seed,
                range.start,
                range.end,
                h,
            ],
        );
        assert_eq!(
            gpu,
            [cpu.digest.clone(), cpu.metrics["accuracy"].clone()],
            "mlp inference F={f} H={h} C={c}"
        );
    }
}
