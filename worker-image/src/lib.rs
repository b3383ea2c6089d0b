//! The ZopToken worker as a library: identification ([`probe`]), the benchmark
//! ([`bench`]) and the hardware fingerprint it carries ([`fingerprint`]), shared by the
//! `zop-worker` binary's `probe` command and its agent mode ([`agent`], talking to the
//! gateway through [`client`]).

pub mod agent;
pub mod bench;
pub mod client;
pub mod execute;
pub mod fingerprint;
pub mod pod;
pub mod probe;
mod timing;
pub mod work;
