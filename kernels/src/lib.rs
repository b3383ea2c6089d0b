//! Fragment kinds: the work a worker executes, with a CPU reference path and
//! a GPU path that commit to identical outputs.
//!
//! [`fragment`] is the single entry point: a [`fragment::FragmentKind`] (the task's
//! parameters) and the fragment's work items, as the operator cut them, go in; a digest,
//! work units and metrics come out, from the CPU path or, through
//! [`fragment::executor`], the GPU path ([`gpu`]). The kinds themselves live in
//! [`compute_proof`], [`training`], [`inference`] and [`data`]; their CUDA sources in
//! `kernels/cuda/`.
//!
//! Unsafe code is denied crate-wide and allowed only in [`gpu`]'s `launch` module, the
//! one place that calls the CUDA driver and launches kernels.

pub mod compute_proof;
pub mod data;
pub mod fingerprint;
pub mod fragment;
pub mod gpu;
pub mod inference;
pub mod merkle;
pub mod seed;
pub mod spot;
pub mod training;

/// Most bytes one fragment's CPU path may allocate. Parameters that would need more are
/// refused with an error naming the field, never attempted (an allocation failure
/// aborts the process rather than returning an error).
pub const MAX_ALLOC_BYTES: u64 = 1 << 30;
