//! Fragment kinds: the work a worker executes, with a CPU reference path and
//! a GPU path that commit to identical outputs.
//!
//! Unsafe code is denied crate-wide and allowed only in [`gpu`]'s `launch` module, the
//! one place that calls the CUDA driver directly.

pub mod compute_proof;
pub mod fingerprint;
pub mod gpu;
pub mod merkle;
pub mod seed;
