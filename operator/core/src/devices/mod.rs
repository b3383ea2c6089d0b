//! The pure core of device management: identification from Node facts, phase
//! transitions, online accounting and hardware plausibility. No I/O here; the
//! controllers and the gateway call these functions and write the results.

pub mod benchmark;
pub mod identify;
pub mod online;
pub mod phase;
pub mod plausibility;
pub mod quantity;
pub mod reputation;
