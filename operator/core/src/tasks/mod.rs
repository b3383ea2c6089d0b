//! The pure core of the task lifecycle: which phase a ComputeTask is in and why, and
//! the aggregated status it shows. No I/O; the task controller calls these.

pub mod assignment;
pub mod decide;
pub mod lifecycle;
pub mod plan;
pub mod record;
pub mod summary;
pub mod validate;
pub mod worker_pod;
