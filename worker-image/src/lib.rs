//! The ZopToken worker as a library: identification ([`probe`]), the benchmark
//! ([`bench`]) and the hardware fingerprint it carries ([`fingerprint`]), shared by the
//! `zop-worker` binary's `probe` command and its agent mode.

pub mod bench;
pub mod fingerprint;
pub mod probe;
mod timing;
