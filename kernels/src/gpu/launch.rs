//! The one module that calls the CUDA driver directly, and later launches kernels.
#![allow(unsafe_code)]
//! Unsafe is allowed here because cudarc exposes these driver calls only as `unsafe fn`:
//! probing whether libcuda can be loaded, the driver's CUDA version, and per-device
//! queries that need no context. Querying without a context matters: it costs no VRAM
//! and works while another process holds the GPU in exclusive-process mode, which
//! `CudaContext::new` would not.
//!
//! Every function here returns errors instead of panicking, except where cudarc itself
//! panics on a missing driver symbol; the caller ([`super::try_detect`]) catches that.

use cudarc::driver::{DriverError, result, sys};

/// Whether the CUDA driver library (libcuda) can be loaded. cudarc panics on the first
/// driver call when it cannot, so this gates every other function in this module.
pub(super) fn driver_library_present() -> bool {
    // SAFETY: only attempts to dlopen the candidate library names and closes them again.
    unsafe { sys::is_culib_present() }
}

/// The CUDA version the driver supports, encoded as `1000 · major + 10 · minor`.
pub(super) fn driver_cuda_version() -> Result<i32, DriverError> {
    let mut version = 0;
    // SAFETY: writes one int through a pointer to a live local.
    unsafe { sys::cuDriverGetVersion(&mut version) }.result()?;
    Ok(version)
}

/// Initializes the driver and returns how many devices it sees.
pub(super) fn device_count() -> Result<i32, DriverError> {
    result::init()?;
    result::device::get_count()
}

/// What the driver reports about one device.
#[derive(Debug)]
pub(super) struct RawDevice {
    pub(super) name: String,
    pub(super) total_mem_bytes: usize,
    pub(super) cc_major: i32,
    pub(super) cc_minor: i32,
    pub(super) sm_count: i32,
}

/// Queries device `ordinal` (after [`device_count`] initialized the driver).
pub(super) fn device(ordinal: i32) -> Result<RawDevice, DriverError> {
    use sys::CUdevice_attribute as A;
    let dev = result::device::get(ordinal)?;
    // SAFETY (both closures): `dev` was just returned by cuDeviceGet.
    let attribute = |a| unsafe { result::device::get_attribute(dev, a) };
    Ok(RawDevice {
        name: result::device::get_name(dev)?,
        total_mem_bytes: unsafe { result::device::total_mem(dev) }?,
        cc_major: attribute(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
        cc_minor: attribute(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
        sm_count: attribute(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?,
    })
}
