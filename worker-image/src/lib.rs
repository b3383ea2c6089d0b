//! The ZopToken worker as a library: identification ([`probe`]), the benchmark
//! ([`bench`]) and the hardware fingerprint it carries ([`fingerprint`]); the two ways
//! to get work, agent mode ([`agent`], joining with a Group Key) and pod mode ([`pod`]),
//! with node benchmark Pods' mode beside it ([`node_bench`]),
//! both talking to the gateway through [`client`] (as does [`account`], a provider's
//! ledger requests) and executing assignments with
//! [`work`] and [`execute`] on the process's [`engine`] (device executor and
//! [`metrics`]), and stopping promptly on a signal ([`shutdown`]).

pub mod account;
pub mod agent;
pub mod bench;
pub mod client;
pub mod cuda;
pub mod engine;
pub mod execute;
pub mod fingerprint;
pub mod metrics;
pub mod node_bench;
pub mod pod;
pub mod probe;
pub mod prove;
pub mod shutdown;
mod timing;
pub mod work;
