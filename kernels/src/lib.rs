//! Fragment kinds: the work a worker executes, with a CPU reference path and
//! a GPU path that commit to identical outputs.

pub mod fingerprint;
