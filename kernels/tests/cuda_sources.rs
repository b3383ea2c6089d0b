//! Checks of the CUDA sources that need no GPU: they compile under NVRTC (when the
//! library is installed; `.ci/run` installs it), and their device functions, compiled
//! for the host by the system C++ compiler, commit to the same roots as the Rust
//! reference. Each check prints why when it is skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use zop_kernels::fragment::{FragmentKind, execute_range};
use zop_kernels::gpu::source::{self, UNITS};

fn cuda_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cuda")
}

#[test]
fn every_cuda_source_compiles_under_nvrtc() {
    if !source::nvrtc_available() {
        eprintln!(
            "skipped: no NVRTC library (libnvrtc.so) on the library path; .ci/run installs one"
        );
        return;
    }
    for unit in UNITS {
        let ptx = source::compile(unit, None)
            .unwrap_or_else(|e| panic!("{} does not compile: {e}", unit.name))
            .to_src();
        let entries: Vec<&str> = ptx
            .lines()
            .filter_map(|l| l.split(".entry ").nth(1))
            .collect();
        assert!(!entries.is_empty(), "{} has no kernels", unit.name);
        eprintln!("{}: {entries:?}", unit.name);
    }
    let ptx = source::compile(source::COMPUTE_PROOF_UNIT, Some("compute_90"))
        .expect("compute_proof.cu compiles for Hopper")
        .to_src();
    for kernel in ["fill_i8", "row_digests", "merkle_level"] {
        assert!(
            ptx.contains(&format!(".entry {kernel}(")),
            "no kernel {kernel}"
        );
    }
}

/// Builds the host harness, or says why it cannot.
fn host_harness() -> Result<PathBuf, String> {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cuda_host_compute_proof");
    let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cuda_host/compute_proof.cpp");
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

#[test]
fn the_cuda_commitment_matches_the_cpu_reference_bit_for_bit() {
    let harness = match host_harness() {
        Ok(h) => h,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    // Sizes below, at and across SHA-256's block of 16 words (n + 3 words with padding),
    // odd and even leaf counts, and a product range that does not start at 0.
    for (seed, n, products, first) in [
        (0u64, 1u32, 1u64, 0u64),
        (7, 2, 3, 0),
        (11, 13, 1, 0),
        (11, 14, 2, 5),
        (3, 16, 1, 0),
        (5, 29, 4, 2),
        (9, 45, 2, 0),
        (u64::MAX, 64, 1, 1),
    ] {
        let kind = FragmentKind::ComputeProof {
            dimension: n,
            products: first + products,
            seed,
        };
        let cpu = execute_range(&kind, first..first + products)
            .unwrap()
            .digest;
        let out = Command::new(&harness)
            .args([seed, u64::from(n), products, first].map(|v| v.to_string()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let host = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            host.trim(),
            cpu,
            "seed {seed} n {n} products {first}+{products}"
        );
    }
}
