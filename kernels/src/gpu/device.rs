//! One GPU opened for fragments: its context and stream, the cuBLAS handle, and the
//! kernels of every CUDA unit compiled by NVRTC for it. Also the helpers every kind's
//! module uses: CUDA-event timing, the free-memory check, and the Merkle reduction of a
//! tree buffer down to its root (the one transfer back to the host).

use super::source::{self, COMPUTE_PROOF_UNIT, DATA_UNIT, TRAINING_UNIT, Unit};
use super::{GpuError, guard, launch};
use crate::merkle::Hash;
use cudarc::cublas::CudaBlas;
use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaModule, CudaSlice, CudaStream, sys,
};
use std::sync::Arc;

/// Where a fragment's GPU time went, measured with CUDA events.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GpuTimings {
    /// Seconds regenerating inputs from the seed.
    pub generate_s: f64,
    /// Seconds computing (cuBLAS, the forward pass and gradient, hashing chunks).
    pub compute_s: f64,
    /// Seconds committing (row digests and Merkle trees).
    pub commit_s: f64,
}

impl GpuTimings {
    /// Seconds the GPU was busy with the fragment.
    pub fn busy_s(&self) -> f64 {
        self.generate_s + self.compute_s + self.commit_s
    }
}

/// The compiled kernels.
#[derive(Debug)]
pub(super) struct Kernels {
    pub(super) fill_i8: CudaFunction,
    pub(super) row_pieces: CudaFunction,
    pub(super) row_levels: CudaFunction,
    pub(super) merkle_level: CudaFunction,
    pub(super) data_leaves: CudaFunction,
    pub(super) class_means: CudaFunction,
    pub(super) generate_shard: CudaFunction,
    pub(super) softmax_residuals: CudaFunction,
    pub(super) softmax_forward: CudaFunction,
    pub(super) gradient: CudaFunction,
    pub(super) mlp_residuals: CudaFunction,
    pub(super) mlp_forward: CudaFunction,
}

/// A GPU ready to run fragments of every kind.
#[derive(Debug)]
pub struct Gpu {
    ctx: Arc<CudaContext>,
    pub(super) stream: Arc<CudaStream>,
    pub(super) blas: CudaBlas,
    pub(super) k: Kernels,
    name: String,
}

/// Compiles `unit` for the device and loads it: a cubin for its architecture first, then
/// PTX ([`source::targets`]); each target that fails to compile or load gives way to the
/// next.
fn load(ctx: &Arc<CudaContext>, unit: Unit) -> Result<Arc<CudaModule>, GpuError> {
    let mut last = GpuError::Unavailable("no NVRTC target to try");
    for target in source::targets(ctx.compute_capability()?, &source::supported_archs()) {
        match source::compile(unit, target).and_then(|m| Ok(ctx.load_module(m)?)) {
            Ok(module) => return Ok(module),
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl Gpu {
    /// Opens GPU `ordinal` and compiles every kernel for it.
    pub fn open(ordinal: usize) -> Result<Self, GpuError> {
        if !launch::driver_library_present() {
            return Err(GpuError::Unavailable("no CUDA driver library found"));
        }
        if !launch::cublas_library_present() {
            return Err(GpuError::Unavailable("no cuBLAS library found"));
        }
        guard(|| Self::init(ordinal))?
    }

    fn init(ordinal: usize) -> Result<Self, GpuError> {
        let ctx = CudaContext::new(ordinal)?;
        let name = ctx.name()?.trim().to_string();
        let proof = load(&ctx, COMPUTE_PROOF_UNIT)?;
        let data = load(&ctx, DATA_UNIT)?;
        let training = load(&ctx, TRAINING_UNIT)?;
        let stream = ctx.default_stream();
        Ok(Self {
            blas: CudaBlas::new(stream.clone())?,
            k: Kernels {
                fill_i8: proof.load_function("fill_i8")?,
                row_pieces: proof.load_function("row_pieces")?,
                row_levels: proof.load_function("row_levels")?,
                merkle_level: proof.load_function("merkle_level")?,
                data_leaves: data.load_function("data_leaves")?,
                class_means: training.load_function("class_means")?,
                generate_shard: training.load_function("generate_shard")?,
                softmax_residuals: training.load_function("softmax_residuals")?,
                softmax_forward: training.load_function("softmax_forward")?,
                gradient: training.load_function("gradient")?,
                mlp_residuals: training.load_function("mlp_residuals")?,
                mlp_forward: training.load_function("mlp_forward")?,
            },
            ctx,
            stream,
            name,
        })
    }

    /// The GPU's product name.
    pub fn device_name(&self) -> &str {
        &self.name
    }

    /// Refuses a fragment needing more than 90% of the free device memory (the rest is
    /// cuBLAS's workspace and other tenants' growth).
    pub(super) fn ensure_memory(&self, needed: u64) -> Result<(), GpuError> {
        let (free, _) = self.ctx.mem_get_info()?;
        if needed > free as u64 / 10 * 9 {
            return Err(GpuError::Memory {
                needed,
                free: free as u64,
            });
        }
        Ok(())
    }

    /// A timing event recorded on the stream now.
    pub(super) fn event(&self) -> Result<CudaEvent, GpuError> {
        Ok(self
            .stream
            .record_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))?)
    }

    /// Hashes the `count` leaves at the start of `tree` up to their root and returns the
    /// root's node index.
    pub(super) fn reduce(&self, tree: &mut CudaSlice<u8>, count: u32) -> Result<usize, GpuError> {
        let (mut first, mut count) = (0u64, count);
        while count > 1 {
            launch::merkle_level(&self.stream, &self.k.merkle_level, tree, first, count)?;
            first += u64::from(count);
            count = count.div_ceil(2);
        }
        Ok(first as usize)
    }

    /// The root of the tree over the `count` leaves at the start of `tree`.
    pub(super) fn root(&self, tree: &mut CudaSlice<u8>, count: u32) -> Result<Hash, GpuError> {
        let at = 32 * self.reduce(tree, count)?;
        let bytes = self.stream.clone_dtoh(&tree.slice(at..at + 32))?;
        Hash::try_from(bytes.as_slice())
            .map_err(|_| GpuError::Shape("a root is not 32 bytes".into()))
    }
}

/// Seconds between two completed events.
pub(super) fn secs(from: &CudaEvent, to: &CudaEvent) -> Result<f64, GpuError> {
    Ok(f64::from(from.elapsed_ms(to)?) / 1e3)
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
