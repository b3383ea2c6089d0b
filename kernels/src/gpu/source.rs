//! The CUDA sources in `kernels/cuda/`, embedded in the binary and compiled by NVRTC at
//! run time for whatever GPU the worker finds. Every source is compiled after
//! `prelude.cuh` (types, the function qualifier and SplitMix64), so the generator has
//! one CUDA definition, as it has one Rust definition in [`crate::seed`].

use super::{GpuError, guard, launch};
use cudarc::nvrtc::{CompileOptions, Ptx};

/// Types, qualifiers and SplitMix64.
pub const PRELUDE: &str = include_str!("../../cuda/prelude.cuh");
/// SHA-256, row digests and Merkle nodes.
pub const SHA256: &str = include_str!("../../cuda/sha256.cuh");
/// Input generation, row digests and Merkle levels of the compute-proof kind.
pub const COMPUTE_PROOF: &str = include_str!("../../cuda/compute_proof.cu");
/// Chunk leaves of the data-processing kind.
pub const DATA: &str = include_str!("../../cuda/data.cu");
/// Softmax regression: the training kind's gradient and the inference kind's forward
/// pass.
pub const TRAINING: &str = include_str!("../../cuda/training.cu");

/// A compilation unit: its name (for NVRTC's log) and its parts, in order.
#[derive(Debug, Clone, Copy)]
pub struct Unit {
    /// File name shown in compiler messages.
    pub name: &'static str,
    /// Source parts, concatenated.
    pub parts: &'static [&'static str],
}

/// The compute-proof unit.
pub const COMPUTE_PROOF_UNIT: Unit = Unit {
    name: "compute_proof.cu",
    parts: &[PRELUDE, SHA256, COMPUTE_PROOF],
};
/// The data-processing unit.
pub const DATA_UNIT: Unit = Unit {
    name: "data.cu",
    parts: &[PRELUDE, SHA256, DATA],
};
/// The training and inference unit.
pub const TRAINING_UNIT: Unit = Unit {
    name: "training.cu",
    parts: &[PRELUDE, TRAINING],
};
/// Every unit, for the compile check.
pub const UNITS: [Unit; 3] = [COMPUTE_PROOF_UNIT, DATA_UNIT, TRAINING_UNIT];

impl Unit {
    /// The full source text.
    pub fn text(&self) -> String {
        self.parts.concat()
    }
}

/// Whether the NVRTC library can be loaded (it ships with the CUDA toolkit and in the
/// `nvidia-cuda-nvrtc` wheel, and needs no GPU).
pub fn nvrtc_available() -> bool {
    launch::nvrtc_library_present()
}

/// Compiles `unit` to PTX for compute capability `arch` (for example `compute_90`), or
/// for NVRTC's default architecture.
pub fn compile(unit: Unit, arch: Option<&'static str>) -> Result<Ptx, GpuError> {
    if !nvrtc_available() {
        return Err(GpuError::Unavailable("no NVRTC library found"));
    }
    let opts = CompileOptions {
        arch,
        name: Some(unit.name.to_string()),
        // Integer and hash kernels only use exact arithmetic; the training kernels use
        // explicit round-to-nearest intrinsics, so contraction could not change them,
        // but it stays off as documented in training.cu.
        fmad: Some(false),
        ..CompileOptions::default()
    };
    guard(|| cudarc::nvrtc::compile_ptx_with_opts(unit.text(), opts))?
        .map_err(|e| GpuError::Compile(format!("{}: {e:?}", unit.name)))
}
