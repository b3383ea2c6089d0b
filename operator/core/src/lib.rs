//! The ZopToken pure core: every decision the operator makes, as plain functions over
//! plain data. It has no tokio, no Kubernetes client and no clock of its own, so the
//! compiler keeps it pure; it is unit-tested and benchmarked alone.
//!
//! - [`scheduler`]: slicing, placement, fairness, the scheduling cycle, the assignment
//!   index and assumptions, one round of the scheduler loop;
//! - [`tasks`]: assignment records and their validation, the plan, the task lifecycle,
//!   the task controller's decision, the worker Pod;
//! - [`devices`]: identification from Node labels, phase, online time, plausibility;
//! - [`ledger`]: the settlement hash chain;
//! - [`verify`]: verification policy arithmetic (challenges, detection).

pub use zop_api as api;
pub use zop_api::labels;

pub mod devices;
pub mod ledger;
pub mod scheduler;
pub mod tasks;
pub mod verify;
