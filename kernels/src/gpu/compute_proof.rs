//! The compute-proof fragment on a GPU, committing to exactly what the CPU path
//! ([`crate::fragment`]) commits to: for each product of the fragment, the inputs are
//! regenerated from the product's seed on the device, `C = A·B` runs in cuBLAS (int8 in,
//! int32 accumulation), the row digests and the product's Merkle tree are computed by the
//! kernels of `kernels/cuda/compute_proof.cu`, and the product roots become the leaves of
//! the fragment's tree. Only the fragment's 32-byte root is copied to the host.
//!
//! This module owns the device state (context, stream, cuBLAS handle, compiled kernels),
//! the per-fragment buffers and the order of the launches; the launches themselves, the
//! only unsafe code, are in `launch`.

use super::source::{self, COMPUTE_PROOF_UNIT};
use super::{GpuError, guard, launch};
use crate::merkle::Hash;
use crate::seed;
use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaEvent, CudaFunction, CudaSlice, CudaStream, sys};
use std::ops::Range;
use std::sync::Arc;

/// Where a fragment's GPU time went, measured with CUDA events.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GpuTimings {
    /// Seconds regenerating the operands.
    pub generate_s: f64,
    /// Seconds in cuBLAS.
    pub gemm_s: f64,
    /// Seconds computing row digests and Merkle trees (the commitment).
    pub commit_s: f64,
}

impl GpuTimings {
    /// Seconds the GPU was busy with the fragment.
    pub fn busy_s(&self) -> f64 {
        self.generate_s + self.gemm_s + self.commit_s
    }
}

/// A GPU ready to run compute-proof fragments.
#[derive(Debug)]
pub struct ComputeProofGpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    fill: CudaFunction,
    rows: CudaFunction,
    level: CudaFunction,
    name: String,
}

/// The buffers of one fragment, reused for each of its products.
struct Buffers {
    a: CudaSlice<i8>,
    bt: CudaSlice<i8>,
    c: CudaSlice<i32>,
    /// The product's tree: `n` leaves and the levels above ([`tree_nodes`]).
    tree: CudaSlice<u8>,
    /// The fragment's tree over the product roots.
    roots: CudaSlice<u8>,
}

/// Nodes of a tree over `leaves` leaves, all levels: slightly more than `2·leaves` when
/// odd levels promote a node (5 leaves: 5 + 3 + 2 + 1 = 11).
pub fn tree_nodes(leaves: u64) -> u64 {
    let (mut total, mut level) = (leaves, leaves);
    while level > 1 {
        level = level.div_ceil(2);
        total += level;
    }
    total
}

/// Bytes of GPU memory a fragment of `products` products of size `n` needs: `A` and
/// `Bᵀ` (int8), `C` (int32), and the two trees.
pub fn fragment_bytes(n: u32, products: u64) -> u64 {
    let n = u64::from(n);
    6 * n * n + 32 * (tree_nodes(n) + tree_nodes(products))
}

/// NVRTC's name for a device's virtual architecture, where this build knows it.
fn arch(cc: (i32, i32)) -> Option<&'static str> {
    Some(match cc {
        (7, 0) => "compute_70",
        (7, 5) => "compute_75",
        (8, 0) => "compute_80",
        (8, 6) => "compute_86",
        (8, 9) => "compute_89",
        (9, 0) => "compute_90",
        _ => return None,
    })
}

impl ComputeProofGpu {
    /// Opens GPU `ordinal` and compiles the kernels for it.
    pub fn new(ordinal: usize) -> Result<Self, GpuError> {
        if !launch::driver_library_present() {
            return Err(GpuError::Unavailable("no CUDA driver library found"));
        }
        if !launch::cublas_library_present() {
            return Err(GpuError::Unavailable("no cuBLAS library found"));
        }
        guard(|| Self::open(ordinal))?
    }

    fn open(ordinal: usize) -> Result<Self, GpuError> {
        let ctx = CudaContext::new(ordinal)?;
        let name = ctx.name()?.trim().to_string();
        // A newer GPU than this NVRTC knows gets PTX for NVRTC's default architecture,
        // which the driver compiles forward.
        let ptx = match arch(ctx.compute_capability()?) {
            Some(a) => source::compile(COMPUTE_PROOF_UNIT, Some(a))
                .or_else(|_| source::compile(COMPUTE_PROOF_UNIT, None))?,
            None => source::compile(COMPUTE_PROOF_UNIT, None)?,
        };
        let module = ctx.load_module(ptx)?;
        let stream = ctx.default_stream();
        Ok(Self {
            blas: CudaBlas::new(stream.clone())?,
            fill: module.load_function("fill_i8")?,
            rows: module.load_function("row_digests")?,
            level: module.load_function("merkle_level")?,
            ctx,
            stream,
            name,
        })
    }

    /// The GPU's product name.
    pub fn device_name(&self) -> &str {
        &self.name
    }

    fn buffers(&self, n: u32, products: u32) -> Result<Buffers, GpuError> {
        let needed = fragment_bytes(n, u64::from(products));
        let (free, _) = self.ctx.mem_get_info()?;
        // Leave room for cuBLAS's workspace and other tenants' growth.
        if needed > free as u64 / 10 * 9 {
            return Err(GpuError::Memory {
                needed,
                free: free as u64,
            });
        }
        let len = (n as usize) * (n as usize);
        Ok(Buffers {
            a: self.stream.alloc_zeros(len)?,
            bt: self.stream.alloc_zeros(len)?,
            c: self.stream.alloc_zeros(len)?,
            tree: self
                .stream
                .alloc_zeros(32 * tree_nodes(u64::from(n)) as usize)?,
            roots: self
                .stream
                .alloc_zeros(32 * tree_nodes(u64::from(products)) as usize)?,
        })
    }

    fn event(&self) -> Result<CudaEvent, GpuError> {
        Ok(self
            .stream
            .record_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))?)
    }

    /// Hashes the `count` leaves at the start of `tree` up to their root and returns the
    /// root's node index.
    fn reduce(&self, tree: &mut CudaSlice<u8>, count: u32) -> Result<usize, GpuError> {
        let (mut first, mut count) = (0u64, count);
        while count > 1 {
            launch::merkle_level(&self.stream, &self.level, tree, first, count)?;
            first += u64::from(count);
            count = count.div_ceil(2);
        }
        Ok(first as usize)
    }

    /// One product into leaf `slot` of the fragment's tree.
    fn product(
        &self,
        b: &mut Buffers,
        n: u32,
        product_seed: u64,
        slot: usize,
        t: &mut GpuTimings,
    ) -> Result<(), GpuError> {
        let start = self.event()?;
        let key_a = seed::stream_key(product_seed, seed::STREAM_A);
        let key_b = seed::stream_key(product_seed, seed::STREAM_B);
        launch::fill_i8(&self.stream, &self.fill, key_a, n, false, &mut b.a)?;
        launch::fill_i8(&self.stream, &self.fill, key_b, n, true, &mut b.bt)?;
        let generated = self.event()?;
        launch::gemm_i8(&self.blas, n, &b.a, &b.bt, &mut b.c)?;
        let multiplied = self.event()?;
        launch::row_digests(&self.stream, &self.rows, &b.c, n, &mut b.tree)?;
        let root = 32 * self.reduce(&mut b.tree, n)?;
        self.stream.memcpy_dtod(
            &b.tree.slice(root..root + 32),
            &mut b.roots.slice_mut(32 * slot..32 * slot + 32),
        )?;
        let committed = self.event()?;
        committed.synchronize()?;
        let secs = |from: &CudaEvent, to: &CudaEvent| -> Result<f64, GpuError> {
            Ok(f64::from(from.elapsed_ms(to)?) / 1e3)
        };
        t.generate_s += secs(&start, &generated)?;
        t.gemm_s += secs(&generated, &multiplied)?;
        t.commit_s += secs(&multiplied, &committed)?;
        Ok(())
    }

    /// The fragment of products `products` of the task with `seed` and matrix size `n`:
    /// its root (the CPU path's digest) and where the time went.
    pub fn fragment(
        &self,
        n: u32,
        seed: u64,
        products: Range<u64>,
    ) -> Result<(Hash, GpuTimings), GpuError> {
        guard(|| self.run(n, seed, products))?
    }

    fn run(&self, n: u32, seed: u64, products: Range<u64>) -> Result<(Hash, GpuTimings), GpuError> {
        let count = u32::try_from(products.end.saturating_sub(products.start))
            .ok()
            .filter(|c| *c > 0)
            .ok_or_else(|| GpuError::Shape(format!("{products:?} is not a fragment")))?;
        if n == 0 || n as usize > crate::compute_proof::MAX_N {
            return Err(GpuError::Shape(format!(
                "matrix size n = {n} is out of range"
            )));
        }
        let mut b = self.buffers(n, count)?;
        let key = seed::stream_key(seed, seed::STREAM_PRODUCT);
        let mut t = GpuTimings::default();
        for (slot, p) in products.enumerate() {
            self.product(&mut b, n, seed::word(key, p), slot, &mut t)?;
        }
        let start = self.event()?;
        let root = 32 * self.reduce(&mut b.roots, count)?;
        let bytes = self.stream.clone_dtoh(&b.roots.slice(root..root + 32))?;
        let end = self.event()?;
        end.synchronize()?;
        t.commit_s += f64::from(start.elapsed_ms(&end)?) / 1e3;
        let hash = Hash::try_from(bytes.as_slice())
            .map_err(|_| GpuError::Shape("the root is not 32 bytes".into()))?;
        Ok((hash, t))
    }

    /// Seconds per cuBLAS int8 product of size `n` alone (operands already on the
    /// device), averaged over `reps` after one warm-up: the baseline the fragment's
    /// throughput is compared with.
    pub fn gemm_seconds(&self, n: u32, reps: u32) -> Result<f64, GpuError> {
        guard(|| {
            let mut b = self.buffers(n, 1)?;
            launch::fill_i8(&self.stream, &self.fill, 1, n, false, &mut b.a)?;
            launch::fill_i8(&self.stream, &self.fill, 2, n, true, &mut b.bt)?;
            launch::gemm_i8(&self.blas, n, &b.a, &b.bt, &mut b.c)?;
            let start = self.event()?;
            for _ in 0..reps.max(1) {
                launch::gemm_i8(&self.blas, n, &b.a, &b.bt, &mut b.c)?;
            }
            let end = self.event()?;
            end.synchronize()?;
            Ok(f64::from(start.elapsed_ms(&end)?) / 1e3 / f64::from(reps.max(1)))
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_hold_every_level() {
        assert_eq!(tree_nodes(1), 1);
        assert_eq!(tree_nodes(2), 3);
        assert_eq!(tree_nodes(5), 11);
        assert_eq!(tree_nodes(8), 15);
        for leaves in 2..300u64 {
            assert_eq!(tree_nodes(leaves), leaves + tree_nodes(leaves.div_ceil(2)));
            // Never more than one promoted node per level beyond 2·leaves.
            assert!(tree_nodes(leaves) < 2 * leaves + u64::from(64 - leaves.leading_zeros()));
        }
    }
}
