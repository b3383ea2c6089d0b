//! The ZopToken operator: the controllers, the scheduler loop, the gateway, metrics,
//! `zop-operator run` and `kubectl-zop`. The API types are `zop_api` and every decision
//! is `zop_core`; both are re-exported here under their usual paths.

pub use zop_api as api;
pub use zop_api::labels;
pub use zop_core::{devices, ledger, scheduler, tasks, verify};

pub mod cli;
pub mod controller;
pub mod gateway;
pub mod metrics;
pub mod run;
pub mod verifier;
