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

/// What NVRTC is asked to produce for a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Machine code for real architecture `sm_XY` (`XY`): it runs on devices of the same
    /// major version and at least this minor one, and needs no JIT, so a driver older
    /// than the NVRTC loads it.
    Cubin(i32),
    /// PTX for virtual architecture `compute_XY`, which the driver compiles; it needs a
    /// driver at least as new as the NVRTC.
    Ptx(i32),
    /// PTX for NVRTC's default architecture.
    PtxDefault,
}

/// What to try, in order, for a device of compute capability `device` when NVRTC
/// supports the real architectures `supported`: the newest cubin the device runs (same
/// major version, minor at most its own), then PTX for the newest architecture at most
/// the device's, then NVRTC's default PTX.
pub fn targets(device: (i32, i32), supported: &[i32]) -> Vec<Target> {
    let arch = device.0 * 10 + device.1;
    let mut out = Vec::new();
    if let Some(sm) = supported
        .iter()
        .copied()
        .filter(|s| s / 10 == device.0 && *s <= arch)
        .max()
    {
        out.push(Target::Cubin(sm));
    }
    if let Some(p) = supported.iter().copied().filter(|s| *s <= arch).max() {
        out.push(Target::Ptx(p));
    }
    out.push(Target::PtxDefault);
    out
}

/// The real architectures this NVRTC supports (empty without NVRTC).
pub fn supported_archs() -> Vec<i32> {
    if !nvrtc_available() {
        return Vec::new();
    }
    guard(launch::nvrtc_supported_archs).unwrap_or_default()
}

fn options(target: Target) -> Vec<String> {
    // Integer and hash kernels only use exact arithmetic; the training kernels use
    // explicit round-to-nearest intrinsics, so contraction could not change them, but it
    // stays off as documented in training.cu.
    let mut o = vec!["--fmad=false".to_string()];
    match target {
        Target::Cubin(sm) => o.push(format!("--gpu-architecture=sm_{sm}")),
        Target::Ptx(c) => o.push(format!("--gpu-architecture=compute_{c}")),
        Target::PtxDefault => {}
    }
    o
}

/// Compiles `unit` to a cubin (an ELF image) for `sm_XY` (`sm` = `XY`).
pub fn cubin(unit: Unit, sm: i32) -> Result<Vec<u8>, GpuError> {
    if !nvrtc_available() {
        return Err(GpuError::Unavailable("no NVRTC library found"));
    }
    let target = Target::Cubin(sm);
    guard(|| launch::nvrtc_cubin(&unit.text(), unit.name, &options(target)))?
        .map_err(|e| GpuError::Compile(format!("{} ({target:?}): {e}", unit.name)))
}

/// Compiles `unit` for `target`: a cubin or PTX, either loaded by `load_module`.
pub fn compile(unit: Unit, target: Target) -> Result<Ptx, GpuError> {
    if !nvrtc_available() {
        return Err(GpuError::Unavailable("no NVRTC library found"));
    }
    if let Target::Cubin(sm) = target {
        return cubin(unit, sm).map(Ptx::from_binary);
    }
    let failed = |e: String| GpuError::Compile(format!("{} ({target:?}): {e}", unit.name));
    let opts = CompileOptions {
        name: Some(unit.name.to_string()),
        options: options(target),
        ..CompileOptions::default()
    };
    guard(|| cudarc::nvrtc::compile_ptx_with_opts(unit.text(), opts))?
        .map_err(|e| failed(format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_gets_its_newest_cubin_then_ptx_then_the_default() {
        let nvrtc_12_9 = [
            50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90, 100, 120,
        ];
        use Target::*;
        // Hopper: machine code for itself.
        assert_eq!(
            targets((9, 0), &nvrtc_12_9),
            [Cubin(90), Ptx(90), PtxDefault]
        );
        // Ada (8.9) exactly; an 8.8 part runs 8.7's code (same major, lower minor).
        assert_eq!(
            targets((8, 9), &nvrtc_12_9),
            [Cubin(89), Ptx(89), PtxDefault]
        );
        assert_eq!(
            targets((8, 8), &nvrtc_12_9),
            [Cubin(87), Ptx(87), PtxDefault]
        );
        // A GPU newer than the NVRTC: no machine code of its major version, so PTX the
        // driver compiles forward.
        assert_eq!(targets((13, 0), &nvrtc_12_9), [Ptx(120), PtxDefault]);
        // An NVRTC that reports nothing: its default.
        assert_eq!(targets((9, 0), &[]), [PtxDefault]);
    }
}
