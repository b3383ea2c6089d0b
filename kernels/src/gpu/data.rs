//! The data-processing fragment on a GPU: one thread per chunk regenerates its bytes
//! from the seed and computes its leaf (`kernels/cuda/data.cu`), the Merkle levels run
//! on the device; the root, the leaves (for the worker's proofs) and the token count reach
//! the host. Commits to
//! exactly what [`crate::data::process`] commits to.

use super::device::{Gpu, GpuTimings, secs, tree_nodes};
use super::{GpuError, guard, launch};
use crate::data::{self, Operation};
use crate::merkle::Hash;
use crate::seed;
use std::ops::Range;

/// What a data-processing fragment computed on the GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRun {
    /// The Merkle root over the chunk leaves.
    pub root: Hash,
    /// The leaves, copied back so the worker can prove any of them.
    pub leaves: Vec<Hash>,
    /// Chunks.
    pub chunks: u64,
    /// Tokens over all chunks.
    pub tokens: u64,
}

impl Gpu {
    /// Bytes `range` of the task with `seed`, in chunks of `chunk_size`.
    pub fn data(
        &self,
        op: Operation,
        seed: u64,
        range: Range<u64>,
        chunk_size: u64,
    ) -> Result<(DataRun, GpuTimings), GpuError> {
        guard(|| {
            let chunks =
                data::check(&range, chunk_size).map_err(|e| GpuError::Shape(e.to_string()))?;
            let count =
                u32::try_from(chunks).map_err(|_| GpuError::Shape(format!("{chunks} chunks")))?;
            let nodes = tree_nodes(chunks);
            self.ensure_memory(32 * nodes + 8)?;
            let mut tree = self.stream.alloc_zeros::<u8>(32 * nodes as usize)?;
            let mut tokens = self.stream.alloc_zeros::<u64>(1)?;
            let start = self.event()?;
            let key = seed::stream_key(seed, seed::STREAM_BYTES);
            let tokenize = op == Operation::Tokenize;
            launch::data_leaves(
                &self.stream,
                &self.k.data_leaves,
                [key, range.start, range.end, chunk_size],
                tokenize,
                &mut tree,
                &mut tokens,
            )?;
            let hashed = self.event()?;
            let leaf_bytes = self
                .stream
                .clone_dtoh(&tree.slice(..32 * chunks as usize))?;
            let leaves = leaf_bytes
                .chunks_exact(32)
                .map(|c| {
                    let mut h = [0u8; 32];
                    h.copy_from_slice(c);
                    h
                })
                .collect();
            let root = self.root(&mut tree, count)?;
            let tokens = self
                .stream
                .clone_dtoh(&tokens)?
                .first()
                .copied()
                .unwrap_or(0);
            let end = self.event()?;
            end.synchronize()?;
            let t = GpuTimings {
                generate_s: 0.0,
                compute_s: secs(&start, &hashed)?,
                commit_s: secs(&hashed, &end)?,
            };
            Ok((
                DataRun {
                    root,
                    leaves,
                    chunks,
                    tokens,
                },
                t,
            ))
        })?
    }
}
