//! The GPU side of the kernels, through cudarc with every CUDA library loaded at run
//! time: detection (what GPUs this machine has, for identification), the CUDA sources
//! and their NVRTC compilation ([`source`]), the opened device ([`device::Gpu`]) and
//! the GPU path of each fragment kind ([`compute_proof`], [`data`], [`training`]).
//! Finding no driver, no library or no GPU is a normal outcome, never a panic; the
//! binary builds and runs without CUDA installed.

pub mod compute_proof;
pub mod data;
pub mod device;
mod launch;
pub mod libraries;
pub mod source;
pub mod training;

pub use device::{Gpu, GpuTimings};

use std::panic::{AssertUnwindSafe, catch_unwind};

/// Why the GPU path could not run. The caller falls back to the CPU path.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// A library or device is missing.
    #[error("GPU path unavailable: {0}")]
    Unavailable(&'static str),
    /// The CUDA driver refused a call.
    #[error("CUDA driver: {0:?}")]
    Driver(#[from] cudarc::driver::DriverError),
    /// cuBLAS refused a call.
    #[error("cuBLAS: {0:?}")]
    Blas(#[from] cudarc::cublas::result::CublasError),
    /// NVRTC could not compile a source.
    #[error("NVRTC: {0}")]
    Compile(String),
    /// A buffer does not have the size its kernel needs.
    #[error("{0}")]
    Shape(String),
    /// The fragment needs more device memory than is free.
    #[error("the fragment needs {needed} bytes of GPU memory; {free} are free")]
    Memory {
        /// Bytes needed.
        needed: u64,
        /// Bytes free.
        free: u64,
    },
    /// cudarc panicked (a library without a symbol it expects).
    #[error("a CUDA library call panicked")]
    Panicked,
}

/// Says on standard error that check `check` was skipped and why. It writes to the
/// stream itself, not through `eprintln!`, so the line shows even when a test harness
/// captures the output of passing tests.
pub fn report_skipped(check: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {check}: {why}");
}

/// Runs `f`, turning a cudarc panic (a CUDA library missing a symbol) into an error.
pub(crate) fn guard<T>(f: impl FnOnce() -> T) -> Result<T, GpuError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| GpuError::Panicked)
}

/// One GPU as the CUDA driver reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuProbe {
    /// CUDA device ordinal.
    pub ordinal: u32,
    /// Product name, for example `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// Total device memory in MiB.
    pub total_memory_mib: u64,
    /// Compute capability `(major, minor)`.
    pub compute_capability: (u32, u32),
    /// Streaming multiprocessors.
    pub sm_count: u32,
    /// NVIDIA kernel driver version, for example `550.54.15`; empty when unknown.
    pub driver_version: String,
    /// Highest CUDA version the driver supports, for example `12.8`.
    pub cuda_version: String,
}

/// Why detection found nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectError {
    /// libcuda cannot be loaded: no NVIDIA driver on this machine or in this container.
    #[error("no CUDA driver library found")]
    NoDriver,
    /// The driver loaded but refused a call (no device, driver/library mismatch, ...).
    #[error("CUDA driver error: {0}")]
    Driver(String),
    /// cudarc panicked (for example a driver too old to export a symbol it expects).
    #[error("CUDA driver probe panicked")]
    Panicked,
}

/// Where the NVIDIA kernel module reports its version.
const NVIDIA_VERSION_FILE: &str = "/proc/driver/nvidia/version";

/// The GPUs of this machine; empty when there is no driver or no GPU.
pub fn detect() -> Vec<GpuProbe> {
    try_detect().unwrap_or_default()
}

/// The GPUs of this machine, or why none could be listed.
pub fn try_detect() -> Result<Vec<GpuProbe>, DetectError> {
    if !launch::driver_library_present() {
        return Err(DetectError::NoDriver);
    }
    let driver_version = std::fs::read_to_string(NVIDIA_VERSION_FILE)
        .ok()
        .and_then(|s| parse_nvidia_driver_version(&s))
        .unwrap_or_default();
    catch_unwind(|| probe_devices(driver_version)).unwrap_or(Err(DetectError::Panicked))
}

fn probe_devices(driver_version: String) -> Result<Vec<GpuProbe>, DetectError> {
    let driver = |e: cudarc::driver::DriverError| DetectError::Driver(format!("{e:?}"));
    let count = launch::device_count().map_err(driver)?;
    let cuda_version = launch::driver_cuda_version()
        .map(format_cuda_version)
        .map_err(driver)?;
    (0..count.max(0))
        .map(|ordinal| {
            let d = launch::device(ordinal).map_err(driver)?;
            Ok(GpuProbe {
                ordinal: ordinal.unsigned_abs(),
                name: d.name.trim().to_string(),
                total_memory_mib: (d.total_mem_bytes / (1 << 20)) as u64,
                compute_capability: (d.cc_major.unsigned_abs(), d.cc_minor.unsigned_abs()),
                sm_count: d.sm_count.unsigned_abs(),
                driver_version: driver_version.clone(),
                cuda_version: cuda_version.clone(),
            })
        })
        .collect()
}

/// `12080` → `12.8`, the form `nvidia-smi` prints.
pub fn format_cuda_version(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// The version from `/proc/driver/nvidia/version`, e.g. `550.54.15` from
/// `NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 …`.
pub fn parse_nvidia_driver_version(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("NVRM version:"))?;
    line.split_whitespace()
        .find(|t| t.contains('.') && t.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_never_panics_and_agrees_with_try_detect() {
        let listed = detect();
        match try_detect() {
            Ok(gpus) => assert_eq!(gpus, listed),
            Err(e) => {
                assert!(listed.is_empty());
                report_skipped("GPU detection", &e.to_string());
            }
        }
    }

    #[test]
    fn without_a_driver_library_nothing_is_detected() {
        if !launch::driver_library_present() {
            assert!(detect().is_empty());
            assert_eq!(try_detect(), Err(DetectError::NoDriver));
        }
    }

    #[test]
    fn cuda_versions_format_like_nvidia_smi() {
        assert_eq!(format_cuda_version(12080), "12.8");
        assert_eq!(format_cuda_version(11040), "11.4");
        assert_eq!(format_cuda_version(13000), "13.0");
    }

    #[test]
    fn driver_versions_parse_from_the_proc_file() {
        let open = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release Build  (dvs-builder@U16-I3-B03-4-3)  Thu Jan 23 2025\nGCC version:  gcc version 12.3.0\n";
        assert_eq!(
            parse_nvidia_driver_version(open).as_deref(),
            Some("570.86.15")
        );
        let classic = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n";
        assert_eq!(
            parse_nvidia_driver_version(classic).as_deref(),
            Some("550.54.15")
        );
        assert_eq!(parse_nvidia_driver_version(""), None);
        assert_eq!(parse_nvidia_driver_version("NVRM version: junk"), None);
    }
}
