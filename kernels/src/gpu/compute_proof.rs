//! The compute-proof fragment on a GPU, committing to exactly what the CPU path commits
//! to: for each product of the fragment, the inputs are regenerated from the product's
//! seed on the device, `C = A·B` runs in cuBLAS (int8 in, int32 accumulation), the row
//! digests (every row piece at once, then the row trees) and the product's Merkle tree
//! are computed by the kernels of
//! `kernels/cuda/compute_proof.cu` and `sha256.cuh`, and the product roots become the
//! leaves of the fragment's tree. The fragment's root and each product's row digests
//! (`32·n` bytes a product) reach the host: the worker answers challenges from them.

use super::device::{Gpu, GpuTimings, secs, tree_nodes};
use super::{GpuError, guard, launch};
use crate::compute_proof::pieces_per_row;
use crate::merkle::Hash;
use crate::seed;
use cudarc::driver::CudaSlice;
use std::ops::Range;

/// A compute-proof fragment run on the GPU.
#[derive(Debug)]
pub struct ProofRun {
    /// The fragment's root.
    pub root: Hash,
    /// Each product's row digests, in order.
    pub rows: Vec<Vec<Hash>>,
    /// Where the time went.
    pub timings: GpuTimings,
}

/// The buffers of one fragment, reused for each of its products.
struct Buffers {
    a: CudaSlice<i8>,
    bt: CudaSlice<i8>,
    c: CudaSlice<i32>,
    /// Two levels of the row trees at a time: the pieces' digests, then each level
    /// above them, alternating; the last level goes straight into `tree`.
    rows: [CudaSlice<u8>; 2],
    /// The product's tree: `n` leaves and the levels above ([`tree_nodes`]).
    tree: CudaSlice<u8>,
    /// The fragment's tree over the product roots.
    roots: CudaSlice<u8>,
}

/// Bytes of GPU memory a fragment of `products` products of size `n` needs: `A` and
/// `Bᵀ` (int8), `C` (int32), each `n` rows of the leading dimension, two levels of the
/// row trees, and the two trees.
pub fn fragment_bytes(n: u32, products: u64) -> u64 {
    let elements = u64::from(n) * launch::leading_dimension(n);
    let [pieces, above] = row_level_nodes(n);
    6 * elements + 32 * (pieces + above + tree_nodes(u64::from(n)) + tree_nodes(products))
}

/// Nodes of the two alternating row-tree buffers: every row's pieces, and the level
/// above them (the largest that follows).
fn row_level_nodes(n: u32) -> [u64; 2] {
    let k = u64::from(pieces_per_row(n));
    [u64::from(n) * k, u64::from(n) * k.div_ceil(2)]
}

impl Gpu {
    fn proof_buffers(&self, n: u32, products: u32) -> Result<Buffers, GpuError> {
        self.ensure_memory(fragment_bytes(n, u64::from(products)))?;
        let len = (u64::from(n) * launch::leading_dimension(n)) as usize;
        let [pieces, above] = row_level_nodes(n);
        Ok(Buffers {
            a: self.stream.alloc_zeros(len)?,
            bt: self.stream.alloc_zeros(len)?,
            c: self.stream.alloc_zeros(len)?,
            rows: [
                self.stream.alloc_zeros(32 * pieces as usize)?,
                self.stream.alloc_zeros(32 * above as usize)?,
            ],
            tree: self
                .stream
                .alloc_zeros(32 * tree_nodes(u64::from(n)) as usize)?,
            roots: self
                .stream
                .alloc_zeros(32 * tree_nodes(u64::from(products)) as usize)?,
        })
    }

    /// One product into leaf `slot` of the fragment's tree; returns its row digests.
    fn product(
        &self,
        b: &mut Buffers,
        n: u32,
        product_seed: u64,
        slot: usize,
        t: &mut GpuTimings,
    ) -> Result<Vec<Hash>, GpuError> {
        let start = self.event()?;
        let key_a = seed::stream_key(product_seed, seed::STREAM_A);
        let key_b = seed::stream_key(product_seed, seed::STREAM_B);
        launch::fill_i8(&self.stream, &self.k.fill_i8, key_a, n, false, &mut b.a)?;
        launch::fill_i8(&self.stream, &self.k.fill_i8, key_b, n, true, &mut b.bt)?;
        let generated = self.event()?;
        launch::gemm_i8(&self.blas, n, &b.a, &b.bt, &mut b.c)?;
        let multiplied = self.event()?;
        self.row_digests(b, n)?;
        let root = 32 * self.reduce(&mut b.tree, n)?;
        self.stream.memcpy_dtod(
            &b.tree.slice(root..root + 32),
            &mut b.roots.slice_mut(32 * slot..32 * slot + 32),
        )?;
        let committed = self.event()?;
        committed.synchronize()?;
        t.generate_s += secs(&start, &generated)?;
        t.compute_s += secs(&generated, &multiplied)?;
        t.commit_s += secs(&multiplied, &committed)?;
        // The leaves are the tree's first level.
        let leaves = self.stream.clone_dtoh(&b.tree.slice(0..32 * n as usize))?;
        Ok(leaves
            .chunks_exact(32)
            .filter_map(|h| Hash::try_from(h).ok())
            .collect())
    }

    /// The row digests of the product in `b.c` into the leaves of `b.tree`: every
    /// piece of every row at once, then the row trees level by level.
    fn row_digests(&self, b: &mut Buffers, n: u32) -> Result<(), GpuError> {
        let mut count = pieces_per_row(n);
        let [pieces, above] = &mut b.rows;
        let leaves = if count == 1 {
            &mut b.tree
        } else {
            &mut *pieces
        };
        launch::row_pieces(&self.stream, &self.k.row_pieces, &b.c, n, leaves)?;
        let mut from_pieces = true;
        while count > 1 {
            let (level, next) = if from_pieces {
                (&*pieces, &mut *above)
            } else {
                (&*above, &mut *pieces)
            };
            let half = count.div_ceil(2);
            let next = if half == 1 { &mut b.tree } else { next };
            launch::row_levels(&self.stream, &self.k.row_levels, level, n, count, next)?;
            from_pieces = !from_pieces;
            count = half;
        }
        Ok(())
    }

    /// The fragment of products `products` of the task with `seed` and matrix size `n`:
    /// its root (the CPU path's digest), each product's row digests, and where the time
    /// went.
    pub fn compute_proof(
        &self,
        n: u32,
        seed: u64,
        products: Range<u64>,
    ) -> Result<ProofRun, GpuError> {
        guard(|| self.run_proof(n, seed, products))?
    }

    fn run_proof(&self, n: u32, seed: u64, products: Range<u64>) -> Result<ProofRun, GpuError> {
        let count = u32::try_from(products.end.saturating_sub(products.start))
            .ok()
            .filter(|c| *c > 0)
            .ok_or_else(|| GpuError::Shape(format!("{products:?} is not a fragment")))?;
        if n == 0 || n as usize > crate::compute_proof::MAX_N {
            return Err(GpuError::Shape(format!(
                "matrix size n = {n} is out of range"
            )));
        }
        let mut b = self.proof_buffers(n, count)?;
        let key = seed::stream_key(seed, seed::STREAM_PRODUCT);
        let mut t = GpuTimings::default();
        let mut rows = Vec::with_capacity(count as usize);
        for (slot, p) in products.enumerate() {
            rows.push(self.product(&mut b, n, seed::word(key, p), slot, &mut t)?);
        }
        let start = self.event()?;
        let root = self.root(&mut b.roots, count)?;
        let end = self.event()?;
        end.synchronize()?;
        t.commit_s += secs(&start, &end)?;
        Ok(ProofRun {
            root,
            rows,
            timings: t,
        })
    }

    /// Seconds per cuBLAS int8 product of size `n` alone (operands already on the
    /// device), averaged over `reps` after one warm-up: the baseline the fragment's
    /// throughput is compared with.
    pub fn gemm_seconds(&self, n: u32, reps: u32) -> Result<f64, GpuError> {
        guard(|| {
            let mut b = self.proof_buffers(n, 1)?;
            launch::fill_i8(&self.stream, &self.k.fill_i8, 1, n, false, &mut b.a)?;
            launch::fill_i8(&self.stream, &self.k.fill_i8, 2, n, true, &mut b.bt)?;
            launch::gemm_i8(&self.blas, n, &b.a, &b.bt, &mut b.c)?;
            let start = self.event()?;
            for _ in 0..reps.max(1) {
                launch::gemm_i8(&self.blas, n, &b.a, &b.bt, &mut b.c)?;
            }
            let end = self.event()?;
            end.synchronize()?;
            Ok(secs(&start, &end)? / f64::from(reps.max(1)))
        })?
    }
}
