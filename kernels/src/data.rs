//! The data-processing fragment kind: a seeded byte stream ([`seed::fill_bytes`] on
//! [`seed::STREAM_BYTES`]; byte `i` of the task is byte `i` of the stream) cut into
//! fixed-size chunks, each hashed with SHA-256 or tokenized, committed by a
//! [`MerkleTree`] over one leaf per chunk. This module owns the chunking, the leaves and
//! the tokenizer; it never holds more than one chunk of data.
//!
//! - Chunks start at the fragment's first byte and are `chunk_size` long, the last one
//!   shorter when the range does not divide evenly.
//! - A [`Operation::Sha256`] leaf is `SHA-256(0x00 ‖ chunk)`; a [`Operation::Tokenize`]
//!   leaf is `SHA-256(0x00 ‖ tokens as u64 LE)`. The `0x00` prefix keeps every leaf
//!   preimage apart from a Merkle parent's (`0x01 ‖ …`) whatever the chunk length.
//! - A token is a maximal run of bytes that are not ASCII whitespace (space, `\t`, `\n`,
//!   form feed `\x0c`, `\r`: [`u8::is_ascii_whitespace`]). Chunks are tokenized on their
//!   own, so a run across a chunk boundary counts once in each chunk.

use crate::merkle::{Hash, MerkleTree};
use crate::seed;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::ops::Range;

/// Prefix of a leaf preimage.
const LEAF_PREFIX: u8 = 0x00;
/// Bytes one Merkle leaf costs with its share of the inner levels (at most one parent
/// per leaf).
const BYTES_PER_LEAF: u64 = 64;

/// What to do with each chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// Commit to each chunk's SHA-256.
    Sha256,
    /// Commit to each chunk's whitespace token count.
    Tokenize,
}

/// Why a data-processing fragment cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// The byte range is empty or reversed.
    #[error("bytes {start}..{end} is empty")]
    EmptyRange {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// The chunk size is zero.
    #[error("chunkSize must be at least 1")]
    ZeroChunk,
    /// The chunk buffer or the Merkle tree would exceed [`crate::MAX_ALLOC_BYTES`].
    #[error(
        "{field} needs {bytes} bytes, more than the limit of {} bytes",
        crate::MAX_ALLOC_BYTES
    )]
    TooLarge {
        /// `chunkSize`, or `bytes` when there are too many chunks.
        field: &'static str,
        /// Bytes it would need.
        bytes: u128,
    },
}

impl DataError {
    /// The parameter at fault.
    pub fn field(&self) -> &'static str {
        match self {
            Self::EmptyRange { .. } => "bytes",
            Self::ZeroChunk => "chunkSize",
            Self::TooLarge { field, .. } => field,
        }
    }
}

/// What a fragment produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    /// The Merkle tree over the chunk leaves; its root is the commitment.
    pub tree: MerkleTree,
    /// Bytes processed.
    pub bytes: u64,
    /// Chunks.
    pub chunks: u64,
    /// Tokens over all chunks (each chunk counted on its own).
    pub tokens: u64,
}

/// Bytes `range` of the task with `seed`.
pub fn bytes(seed: u64, range: Range<u64>) -> Result<Vec<u8>, DataError> {
    let len = check_range(&range)?;
    if u128::from(len) > u128::from(crate::MAX_ALLOC_BYTES) {
        return Err(DataError::TooLarge {
            field: "bytes",
            bytes: u128::from(len),
        });
    }
    let mut buf = vec![0; len as usize];
    seed::fill_bytes(seed, seed::STREAM_BYTES, range.start, &mut buf);
    Ok(buf)
}

fn check_range(range: &Range<u64>) -> Result<u64, DataError> {
    if range.end <= range.start {
        return Err(DataError::EmptyRange {
            start: range.start,
            end: range.end,
        });
    }
    Ok(range.end - range.start)
}

/// Checks the sizes of a fragment before anything is allocated; returns the chunk count.
pub fn check(range: &Range<u64>, chunk_size: u64) -> Result<u64, DataError> {
    let len = check_range(range)?;
    if chunk_size == 0 {
        return Err(DataError::ZeroChunk);
    }
    let buffer = chunk_size.min(len);
    if buffer > crate::MAX_ALLOC_BYTES {
        return Err(DataError::TooLarge {
            field: "chunkSize",
            bytes: u128::from(buffer),
        });
    }
    let chunks = len.div_ceil(chunk_size);
    let tree = u128::from(chunks) * u128::from(BYTES_PER_LEAF);
    if tree > u128::from(crate::MAX_ALLOC_BYTES) {
        return Err(DataError::TooLarge {
            field: "bytes",
            bytes: tree,
        });
    }
    Ok(chunks)
}

/// Whitespace tokens in `chunk` (module docs).
pub fn count_tokens(chunk: &[u8]) -> u64 {
    let mut in_token = false;
    let mut tokens = 0;
    for b in chunk {
        let word = !b.is_ascii_whitespace();
        tokens += u64::from(word && !in_token);
        in_token = word;
    }
    tokens
}

/// The leaf of one chunk for `op`, and the chunk's token count.
pub fn leaf(op: Operation, chunk: &[u8]) -> (Hash, u64) {
    let tokens = count_tokens(chunk);
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    match op {
        Operation::Sha256 => h.update(chunk),
        Operation::Tokenize => h.update(tokens.to_le_bytes()),
    }
    (h.finalize().into(), tokens)
}

/// Processes bytes `range` of the task with `seed` in chunks of `chunk_size`.
pub fn process(
    op: Operation,
    seed: u64,
    range: Range<u64>,
    chunk_size: u64,
) -> Result<Processed, DataError> {
    let chunks = check(&range, chunk_size)?;
    let mut buf = vec![0u8; chunk_size.min(range.end - range.start) as usize];
    let mut leaves = Vec::with_capacity(chunks as usize);
    let mut tokens = 0;
    let mut at = range.start;
    while at < range.end {
        let len = chunk_size.min(range.end - at) as usize;
        let chunk = &mut buf[..len];
        seed::fill_bytes(seed, seed::STREAM_BYTES, at, chunk);
        let (l, t) = leaf(op, chunk);
        leaves.push(l);
        tokens += t;
        at += len as u64;
    }
    Ok(Processed {
        tree: MerkleTree::new(leaves),
        bytes: range.end - range.start,
        chunks,
        tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::verify;

    /// The whole range in memory, chunked with `chunks`, tokenized with `split`.
    fn naive(op: Operation, seed: u64, range: Range<u64>, chunk: usize) -> (Hash, u64) {
        let data = bytes(seed, range).unwrap();
        let mut tokens = 0;
        let leaves = data
            .chunks(chunk)
            .map(|c| {
                let t = c
                    .split(u8::is_ascii_whitespace)
                    .filter(|w| !w.is_empty())
                    .count() as u64;
                tokens += t;
                let mut pre = vec![0u8];
                match op {
                    Operation::Sha256 => pre.extend_from_slice(c),
                    Operation::Tokenize => pre.extend(t.to_le_bytes()),
                }
                Sha256::digest(&pre).into()
            })
            .collect();
        (MerkleTree::new(leaves).root(), tokens)
    }

    #[test]
    fn streaming_chunks_match_the_naive_reference() {
        for op in [Operation::Sha256, Operation::Tokenize] {
            for (range, chunk) in [(0..1000, 64), (13..1013, 100), (5..6, 4096), (7..300, 1)] {
                let got = process(op, 77, range.clone(), chunk).unwrap();
                let want = naive(op, 77, range.clone(), chunk as usize);
                assert_eq!(
                    (got.tree.root(), got.tokens),
                    want,
                    "{op:?} {range:?} {chunk}"
                );
                assert_eq!(got.chunks, (range.end - range.start).div_ceil(chunk));
            }
        }
    }

    #[test]
    fn tokens_are_runs_of_non_whitespace() {
        assert_eq!(count_tokens(b""), 0);
        assert_eq!(count_tokens(b"   "), 0);
        assert_eq!(count_tokens(b"a"), 1);
        assert_eq!(count_tokens(b" hello  world\t\n\x0cfoo\r"), 3);
        assert_eq!(
            count_tokens(b"\x0bvt\x00"),
            1,
            "vertical tab is not whitespace"
        );
        let random = bytes(1, 0..10_000).unwrap();
        let tokens = count_tokens(&random);
        // About 5 bytes in 256 are whitespace: runs of roughly 50 bytes.
        assert!((100..400).contains(&tokens), "{tokens}");
    }

    #[test]
    fn a_challenged_chunk_proves_against_the_root() {
        let p = process(Operation::Sha256, 3, 100..1100, 128).unwrap();
        let chunk = bytes(3, 100 + 3 * 128..100 + 4 * 128).unwrap();
        let (l, _) = leaf(Operation::Sha256, &chunk);
        let proof = p.tree.prove(3).unwrap();
        assert!(verify(&p.tree.root(), p.chunks as usize, 3, &l, &proof));
    }

    #[test]
    fn the_data_depends_on_seed_and_offset_only() {
        let a = process(Operation::Sha256, 4, 0..512, 64)
            .unwrap()
            .tree
            .root();
        assert_eq!(
            a,
            process(Operation::Sha256, 4, 0..512, 64)
                .unwrap()
                .tree
                .root()
        );
        assert_ne!(
            a,
            process(Operation::Sha256, 5, 0..512, 64)
                .unwrap()
                .tree
                .root()
        );
        assert_ne!(
            a,
            process(Operation::Sha256, 4, 1..513, 64)
                .unwrap()
                .tree
                .root()
        );
        assert_ne!(
            a,
            process(Operation::Tokenize, 4, 0..512, 64)
                .unwrap()
                .tree
                .root()
        );
    }

    #[test]
    fn bad_sizes_are_errors_naming_the_field() {
        let field = |r: Result<Processed, DataError>| r.unwrap_err().field();
        assert_eq!(field(process(Operation::Sha256, 0, 5..5, 1)), "bytes");
        assert_eq!(field(process(Operation::Sha256, 0, 0..10, 0)), "chunkSize");
        assert_eq!(
            field(process(Operation::Sha256, 0, 0..u64::MAX, 1 << 40)),
            "chunkSize"
        );
        assert_eq!(
            field(process(Operation::Sha256, 0, 0..u64::MAX, 1 << 20)),
            "bytes"
        );
        assert_eq!(bytes(0, 0..u64::MAX).unwrap_err().field(), "bytes");
    }
}
