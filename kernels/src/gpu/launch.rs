//! The one module with unsafe code: it calls the CUDA driver directly and launches the
//! kernels of `kernels/cuda/` and cuBLAS. cudarc exposes these only as `unsafe fn`:
//! probing whether a CUDA library can be loaded (and which file it is), the driver's CUDA version, per-device
//! queries that need no context, kernel launches (whose argument lists the compiler
//! cannot check against the CUDA signature) and `cublasGemmEx`.
//!
//! Querying devices without a context matters: it costs no VRAM and works while another
//! process holds the GPU in exclusive-process mode, which `CudaContext::new` would not.
//!
//! Every launch checks the buffer lengths its kernel will touch before launching, so no
//! caller can make a kernel read or write out of bounds. Errors are returned, never
//! panicked, except where cudarc itself panics on a missing library symbol; callers
//! wrap those calls in [`super::guard`].
#![allow(unsafe_code)]

use super::GpuError;
use crate::compute_proof::pieces_per_row;
use cudarc::cublas::{CudaBlas, result as blas, sys as blas_sys};
use cudarc::driver::{
    CudaFunction, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DriverError, LaunchConfig,
    PushKernelArg, result, sys,
};
use std::ffi::c_void;

/// Threads per block of every kernel here.
const BLOCK: u32 = 256;

/// Whether the CUDA driver library (libcuda) can be loaded. cudarc panics on the first
/// driver call when it cannot, so this gates every other function in this module.
pub(super) fn driver_library_present() -> bool {
    // SAFETY: only attempts to dlopen the candidate library names and closes them again.
    unsafe { sys::is_culib_present() }
}

/// Whether the NVRTC library can be loaded.
pub(super) fn nvrtc_library_present() -> bool {
    // SAFETY: only attempts to dlopen the candidate library names and closes them again.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Whether the cuBLAS library can be loaded.
pub(super) fn cublas_library_present() -> bool {
    // SAFETY: as above.
    unsafe { blas_sys::is_culib_present() }
}

/// The file `name` loads as (from the loader's map of this process), or `None` when it
/// does not load. `stem` picks the mapping out (`nvrtc` matches `libnvrtc.so*`, not
/// `libnvrtc-builtins`). The library is closed again.
pub(super) fn loaded_path(name: &str, stem: &str) -> Option<std::path::PathBuf> {
    // SAFETY: loading a CUDA library runs its initializers, which only set up its own
    // state; nothing of it is called here, and it is closed before returning.
    let lib = unsafe { libloading::Library::new(name) }.ok()?;
    let prefix = format!("lib{stem}.so");
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let path = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| {
            std::path::Path::new(p)
                .file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.starts_with(&prefix))
        })
        .map(std::path::PathBuf::from);
    drop(lib);
    path.or_else(|| name.contains('/').then(|| name.into()))
}

/// The real architectures (`sm_XY` as `XY`) this NVRTC compiles for.
pub(super) fn nvrtc_supported_archs() -> Vec<i32> {
    use cudarc::nvrtc::sys as nv;
    let mut n = 0;
    // SAFETY: writes one int through a pointer to a live local.
    if unsafe { nv::nvrtcGetNumSupportedArchs(&mut n) }
        .result()
        .is_err()
        || n <= 0
    {
        return Vec::new();
    }
    let mut archs = vec![0; n as usize];
    // SAFETY: `archs` holds exactly the count NVRTC just reported.
    match unsafe { nv::nvrtcGetSupportedArchs(archs.as_mut_ptr()) }.result() {
        Ok(()) => archs,
        Err(_) => Vec::new(),
    }
}

/// Compiles `src` with `options` to a cubin (the options name an `sm_XY` architecture):
/// machine code the driver loads without JIT-compiling PTX, so a driver older than the
/// NVRTC still loads it.
pub(super) fn nvrtc_cubin(src: &str, name: &str, options: &[String]) -> Result<Vec<u8>, String> {
    use cudarc::nvrtc::{result as nvr, sys as nv};
    let src = std::ffi::CString::new(src).map_err(|e| e.to_string())?;
    let name = std::ffi::CString::new(name).map_err(|e| e.to_string())?;
    let prog = nvr::create_program(&src, Some(&name)).map_err(|e| format!("{e:?}"))?;
    // SAFETY: `prog` was just created and is destroyed once, below; `src` and `name`
    // outlive it; the cubin buffer holds the size NVRTC reported for it.
    let out = unsafe {
        let compiled = nvr::compile_program(prog, options).map_err(|e| {
            let log = nvr::get_program_log(prog)
                .map(|l| {
                    std::ffi::CStr::from_ptr(l.as_ptr())
                        .to_string_lossy()
                        .into_owned()
                })
                .unwrap_or_default();
            format!("{e:?}: {log}")
        });
        compiled.and_then(|()| {
            let mut size = 0usize;
            nv::nvrtcGetCUBINSize(prog, &mut size)
                .result()
                .map_err(|e| format!("{e:?}"))?;
            let mut cubin = vec![0u8; size];
            nv::nvrtcGetCUBIN(prog, cubin.as_mut_ptr().cast())
                .result()
                .map_err(|e| format!("{e:?}"))?;
            Ok(cubin)
        })
    };
    // SAFETY: as above; destroyed exactly once.
    let _ = unsafe { nvr::destroy_program(prog) };
    out
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

/// Enough blocks of [`BLOCK`] threads for `threads` threads, capped at the grid limit
/// (the kernels loop with a grid stride where one thread may get several items).
fn grid(threads: u64) -> LaunchConfig {
    let blocks = threads
        .div_ceil(u64::from(BLOCK))
        .clamp(1, u64::from(i32::MAX as u32));
    LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn need(what: &str, len: usize, at_least: u64) -> Result<(), GpuError> {
    if (len as u64) < at_least {
        return Err(GpuError::Shape(format!(
            "{what} holds {len} elements, the kernel needs {at_least}"
        )));
    }
    Ok(())
}

/// The leading dimension of an `n×n` compute-proof operand: `n` rounded up to a
/// multiple of 4, as cuBLAS's int8 path requires.
pub(super) fn leading_dimension(n: u32) -> u64 {
    u64::from(n).div_ceil(4) * 4
}

/// `fill_i8(key, n, ld, transpose, out)`: the `n²` int8 elements of the stream `key`,
/// rows [`leading_dimension`] apart.
pub(super) fn fill_i8(
    stream: &CudaStream,
    f: &CudaFunction,
    key: u64,
    n: u32,
    transpose: bool,
    out: &mut CudaSlice<i8>,
) -> Result<(), GpuError> {
    let ld = leading_dimension(n);
    need("the operand", out.len(), u64::from(n) * ld)?;
    let ld = ld as u32;
    let transpose = u32::from(transpose);
    let mut b = stream.launch_builder(f);
    b.arg(&key).arg(&n).arg(&ld).arg(&transpose).arg(out);
    // SAFETY: the arguments match `fill_i8(u64, u32, u32, u32, signed char*)` in
    // compute_proof.cu, and `out` holds the n·ld elements it may write (checked above).
    let words = (u64::from(n) * u64::from(n)).div_ceil(8);
    unsafe { b.launch(grid(words.min(1 << 22))) }?;
    Ok(())
}

/// `row_pieces(c, n, ld, leaves)`: the SHA-256 of every piece of every row of the `n×n`
/// product `c` (rows [`leading_dimension`] apart), row by row into `leaves`.
pub(super) fn row_pieces(
    stream: &CudaStream,
    f: &CudaFunction,
    c: &CudaSlice<i32>,
    n: u32,
    leaves: &mut CudaSlice<u8>,
) -> Result<(), GpuError> {
    let ld = leading_dimension(n);
    let pieces = u64::from(n) * u64::from(pieces_per_row(n));
    need("the product", c.len(), u64::from(n) * ld)?;
    need("the row leaves", leaves.len(), 32 * pieces)?;
    let ld = ld as u32;
    let mut b = stream.launch_builder(f);
    b.arg(c).arg(&n).arg(&ld).arg(leaves);
    // SAFETY: the arguments match `row_pieces(const int*, u32, u32, u8*)`; it reads n
    // rows of ld ints of `c` and writes 32 bytes a piece to `leaves`, both checked above.
    unsafe { b.launch(grid(pieces)) }?;
    Ok(())
}

/// `row_levels(level, rows, count, next)`: one level of `rows` row trees at once, each
/// row's `count` nodes of `level` into its `ceil(count / 2)` nodes of `next`.
pub(super) fn row_levels(
    stream: &CudaStream,
    f: &CudaFunction,
    level: &CudaSlice<u8>,
    rows: u32,
    count: u32,
    next: &mut CudaSlice<u8>,
) -> Result<(), GpuError> {
    let parents = u64::from(rows) * u64::from(count).div_ceil(2);
    need(
        "the level",
        level.len(),
        32 * u64::from(rows) * u64::from(count),
    )?;
    need("the next level", next.len(), 32 * parents)?;
    let mut b = stream.launch_builder(f);
    b.arg(level).arg(&rows).arg(&count).arg(next);
    // SAFETY: the arguments match `row_levels(const u8*, u32, u32, u8*)`; it reads
    // rows·count nodes of `level` and writes `parents` nodes of `next`, checked above.
    unsafe { b.launch(grid(parents)) }?;
    Ok(())
}

/// `merkle_level(tree, first, count)`: hashes nodes `first..first + count` of `tree`
/// into the `ceil(count / 2)` nodes after them.
pub(super) fn merkle_level(
    stream: &CudaStream,
    f: &CudaFunction,
    tree: &mut CudaSlice<u8>,
    first: u64,
    count: u32,
) -> Result<(), GpuError> {
    let parents = u64::from(count).div_ceil(2);
    need(
        "the tree",
        tree.len(),
        32 * (first + u64::from(count) + parents),
    )?;
    let mut b = stream.launch_builder(f);
    b.arg(tree).arg(&first).arg(&count);
    // SAFETY: the arguments match `merkle_level(u8*, u64, u32)`; it touches nodes
    // `first..first + count + parents`, within `tree` (checked above).
    unsafe { b.launch(grid(parents)) }?;
    Ok(())
}

/// `C = A·B` for `n×n` int8 operands with int32 accumulation, row-major, from `A` and
/// the buffer `bt` holding `Bᵀ` row-major. cuBLAS is column-major, and a row-major `X`
/// is its column-major `Xᵀ`: it computes `Cᵀ = Bᵀ·Aᵀ` in its "TN" form, reading `bt`
/// transposed and `a` as is, and the column-major `Cᵀ` it writes is `C` row-major. All
/// three have rows [`leading_dimension`] apart.
pub(super) fn gemm_i8(
    blas: &CudaBlas,
    n: u32,
    a: &CudaSlice<i8>,
    bt: &CudaSlice<i8>,
    c: &mut CudaSlice<i32>,
) -> Result<(), GpuError> {
    let len = u64::from(n) * leading_dimension(n);
    need("A", a.len(), len)?;
    need("Bt", bt.len(), len)?;
    need("C", c.len(), len)?;
    let too_big = |_| GpuError::Shape(format!("n = {n} exceeds cuBLAS's int"));
    let m = i32::try_from(n).map_err(too_big)?;
    let ld = i32::try_from(leading_dimension(n)).map_err(too_big)?;
    let stream = c.stream().clone();
    let (a_ptr, _a_sync) = a.device_ptr(&stream);
    let (bt_ptr, _bt_sync) = bt.device_ptr(&stream);
    let (c_ptr, _c_sync) = c.device_ptr_mut(&stream);
    let (alpha, beta) = (1i32, 0i32);
    // SAFETY: all three buffers hold n·ld elements (checked above) and live until the
    // sync guards drop after the call is queued; alpha and beta are i32, as
    // CUBLAS_COMPUTE_32I requires, and outlive the call (host pointer mode: cuBLAS reads
    // them before returning).
    unsafe {
        blas::gemm_ex(
            *blas.handle(),
            blas_sys::cublasOperation_t::CUBLAS_OP_T,
            blas_sys::cublasOperation_t::CUBLAS_OP_N,
            m,
            m,
            m,
            (&raw const alpha).cast::<c_void>(),
            bt_ptr as *const c_void,
            blas_sys::cudaDataType_t::CUDA_R_8I,
            ld,
            a_ptr as *const c_void,
            blas_sys::cudaDataType_t::CUDA_R_8I,
            ld,
            (&raw const beta).cast::<c_void>(),
            c_ptr as *mut c_void,
            blas_sys::cudaDataType_t::CUDA_R_32I,
            ld,
            blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32I,
            blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    }?;
    Ok(())
}

/// `data_leaves(key, start, end, chunk, tokenize, tree, tokens)`: one leaf per chunk of
/// bytes `start..end`, token counts summed into `tokens[0]`.
pub(super) fn data_leaves(
    stream: &CudaStream,
    f: &CudaFunction,
    [key, start, end, chunk]: [u64; 4],
    tokenize: bool,
    tree: &mut CudaSlice<u8>,
    tokens: &mut CudaSlice<u64>,
) -> Result<(), GpuError> {
    if chunk == 0 || end <= start {
        return Err(GpuError::Shape(format!(
            "chunks of {chunk} over {start}..{end}"
        )));
    }
    let chunks = (end - start).div_ceil(chunk);
    need("the tree", tree.len(), 32 * chunks)?;
    need("the token counter", tokens.len(), 1)?;
    let tokenize = u32::from(tokenize);
    let mut b = stream.launch_builder(f);
    b.arg(&key)
        .arg(&start)
        .arg(&end)
        .arg(&chunk)
        .arg(&tokenize)
        .arg(tree)
        .arg(tokens);
    // SAFETY: the arguments match `data_leaves(u64, u64, u64, u64, u32, u8*,
    // unsigned long long*)` in data.cu; it writes 32 bytes per chunk of `tree` and the
    // first element of `tokens` (both checked above), and `chunk > 0`.
    unsafe { b.launch(grid(chunks)) }?;
    Ok(())
}

/// `class_means(seed, features, classes, means)`.
pub(super) fn class_means(
    stream: &CudaStream,
    f: &CudaFunction,
    seed: u64,
    features: u32,
    classes: u32,
    means: &mut CudaSlice<f32>,
) -> Result<(), GpuError> {
    let len = u64::from(features) * u64::from(classes);
    need("the means", means.len(), len)?;
    let mut b = stream.launch_builder(f);
    b.arg(&seed).arg(&features).arg(&classes).arg(means);
    // SAFETY: the arguments match `class_means(u64, u32, u32, float*)` in training.cu,
    // which writes the F·C means (checked above).
    unsafe { b.launch(grid(len)) }?;
    Ok(())
}

/// `generate_shard(seed, features, classes, samples, start, len, means, x, y)`.
pub(super) fn generate_shard(
    stream: &CudaStream,
    f: &CudaFunction,
    [seed, samples, start, len]: [u64; 4],
    (features, classes): (u32, u32),
    means: &CudaSlice<f32>,
    x: &mut CudaSlice<f32>,
    y: &mut CudaSlice<u32>,
) -> Result<(), GpuError> {
    if samples == 0 || classes == 0 {
        return Err(GpuError::Shape("no samples or no classes".into()));
    }
    let (fu, cu) = (u64::from(features), u64::from(classes));
    need("the means", means.len(), fu * cu)?;
    need("x", x.len(), len * fu)?;
    need("y", y.len(), len)?;
    let mut b = stream.launch_builder(f);
    b.arg(&seed)
        .arg(&features)
        .arg(&classes)
        .arg(&samples)
        .arg(&start)
        .arg(&len)
        .arg(means)
        .arg(x)
        .arg(y);
    // SAFETY: the arguments match `generate_shard(u64, u32, u32, u64, u64, u64, const
    // float*, float*, u32*)`; it reads F·C means (labels are below `classes`) and writes
    // len·F features and len labels, all checked above; `samples` and `classes` are
    // non-zero divisors.
    unsafe { b.launch(grid(len)) }?;
    Ok(())
}

/// `softmax_residuals` or `softmax_forward` (same signature): inputs `(w, b, x, y)`,
/// shape `(n, features, classes)`, outputs `(z, p, loss, out)`.
pub(super) fn softmax(
    stream: &CudaStream,
    f: &CudaFunction,
    (w, bias, x, y): (
        &CudaSlice<f32>,
        &CudaSlice<f32>,
        &CudaSlice<f32>,
        &CudaSlice<u32>,
    ),
    (n, features, classes): (u64, u32, u32),
    (z, p, loss, out): (
        &mut CudaSlice<f32>,
        &mut CudaSlice<f32>,
        &mut CudaSlice<f32>,
        &mut CudaSlice<u32>,
    ),
) -> Result<(), GpuError> {
    let (fu, cu) = (u64::from(features), u64::from(classes));
    need("w", w.len(), fu * cu)?;
    need("b", bias.len(), cu)?;
    need("x", x.len(), n * fu)?;
    need("y", y.len(), n)?;
    need("z", z.len(), n * cu)?;
    need("p", p.len(), n * cu)?;
    need("loss", loss.len(), n)?;
    need("out", out.len(), n)?;
    let mut b = stream.launch_builder(f);
    b.arg(w)
        .arg(bias)
        .arg(x)
        .arg(y)
        .arg(&n)
        .arg(&features)
        .arg(&classes)
        .arg(z)
        .arg(p)
        .arg(loss)
        .arg(out);
    // SAFETY: the arguments match `(const float*, const float*, const float*, const u32*,
    // u64, u32, u32, float*, float*, float*, u32*)`, both kernels' signature; every
    // buffer holds what n samples of F features and C classes touch (checked above), and
    // a label at or above C is never used as an index.
    unsafe { b.launch(grid(n)) }?;
    Ok(())
}

/// `gradient(d, x, n, features, classes, gw, gb)`.
pub(super) fn gradient(
    stream: &CudaStream,
    f: &CudaFunction,
    (d, x): (&CudaSlice<f32>, &CudaSlice<f32>),
    (n, features, classes): (u64, u32, u32),
    (gw, gb): (&mut CudaSlice<f32>, &mut CudaSlice<f32>),
) -> Result<(), GpuError> {
    let (fu, cu) = (u64::from(features), u64::from(classes));
    need("d", d.len(), n * cu)?;
    need("x", x.len(), n * fu)?;
    need("gw", gw.len(), fu * cu)?;
    need("gb", gb.len(), cu)?;
    let mut b = stream.launch_builder(f);
    b.arg(d)
        .arg(x)
        .arg(&n)
        .arg(&features)
        .arg(&classes)
        .arg(gw)
        .arg(gb);
    // SAFETY: the arguments match `gradient(const float*, const float*, u64, u32, u32,
    // float*, float*)`; it reads n·C residuals and n·F features and writes F·C + C
    // entries, all checked above.
    unsafe { b.launch(grid((fu + 1) * cu)) }?;
    Ok(())
}

/// The inputs of `mlp_residuals` and `mlp_forward`: the hidden layer `(v, cb)`, the
/// output layer `(w, b)`, the shard `(x, y)` and the shape `(n, features, hidden,
/// classes)`.
pub(super) struct MlpArgs<'a> {
    pub v: &'a CudaSlice<f32>,
    pub cb: &'a CudaSlice<f32>,
    pub w: &'a CudaSlice<f32>,
    pub b: &'a CudaSlice<f32>,
    pub x: &'a CudaSlice<f32>,
    pub y: &'a CudaSlice<u32>,
    pub shape: (u64, u32, u32, u32),
}

/// `mlp_residuals` (with `residuals`: writes `h, z, d, e, loss, correct`) or
/// `mlp_forward` (writes `h, z, p, loss, pred`; `e` is not passed).
pub(super) fn mlp(
    stream: &CudaStream,
    f: &CudaFunction,
    a: MlpArgs<'_>,
    (h, z, p, e): (
        &mut CudaSlice<f32>,
        &mut CudaSlice<f32>,
        &mut CudaSlice<f32>,
        &mut CudaSlice<f32>,
    ),
    (loss, out): (&mut CudaSlice<f32>, &mut CudaSlice<u32>),
    residuals: bool,
) -> Result<(), GpuError> {
    let (n, features, hidden, classes) = a.shape;
    let (fu, hu, cu) = (u64::from(features), u64::from(hidden), u64::from(classes));
    need("v", a.v.len(), hu * fu)?;
    need("cb", a.cb.len(), hu)?;
    need("w", a.w.len(), cu * hu)?;
    need("b", a.b.len(), cu)?;
    need("x", a.x.len(), n * fu)?;
    need("y", a.y.len(), n)?;
    need("h", h.len(), n * hu)?;
    need("z", z.len(), n * cu)?;
    need("p", p.len(), n * cu)?;
    need("e", e.len(), n * hu)?;
    need("loss", loss.len(), n)?;
    need("out", out.len(), n)?;
    let mut b = stream.launch_builder(f);
    b.arg(a.v)
        .arg(a.cb)
        .arg(a.w)
        .arg(a.b)
        .arg(a.x)
        .arg(a.y)
        .arg(&n)
        .arg(&features)
        .arg(&hidden)
        .arg(&classes)
        .arg(h)
        .arg(z)
        .arg(p);
    if residuals {
        b.arg(e);
    }
    b.arg(loss).arg(out);
    // SAFETY: the arguments match `mlp_residuals(const float* ×5, const u32*, u64, u32,
    // u32, u32, float* ×5, u32*)`, or without `e` `mlp_forward`'s; every buffer holds
    // what n samples of F features, H hidden units and C classes touch (checked above),
    // and a label at or above C is never used as an index.
    unsafe { b.launch(grid(n)) }?;
    Ok(())
}
