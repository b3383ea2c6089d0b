//! The scheduler's pure core: it decides, it never does I/O.
//!
//! - [`slicer`] cuts a `ComputeTask` into fragments (work-item ranges, computed on demand)
//!   and groups fragments into assignments (one device, a contiguous batch).
//! - [`snapshot`] turns `Device` objects into compact [`snapshot::DeviceView`]s, the
//!   scheduler's cache for one cycle.
//! - [`placement`] filters devices by hard requirements, scores them, and places each
//!   fragment (or batch) on a device with the load updated after every choice.
//! - [`fairness`] splits a cycle's capacity across namespaces and tasks by priority.
//! - [`cycle`] runs one scheduling cycle in explicit steps (heads, snapshot, nominate,
//!   order, assume, decide, requeue) over plain inputs and an injected clock, and decides
//!   the backoff of fragments whose device was lost.
//!
//! Controllers own everything around this: reading reflector stores, writing decisions
//! with server-side apply, Pods, Events and metrics. Nothing here reads a clock, a random
//! source or a `HashMap`'s iteration order, so the same inputs always give the same
//! decisions and every decision can be replayed in a test.

pub mod cycle;
pub mod fairness;
pub(crate) mod hash;
pub mod index;
pub mod placement;
pub mod round;
pub mod slicer;
pub mod snapshot;

/// Chainable builders of devices and tasks for tests and benchmarks.
#[doc(hidden)]
pub mod fixtures;

pub use cycle::{CycleConfig, CycleInput, CycleOutcome, QueuedTask, RetryPolicy, Unit};
pub use fairness::{Demand, fair_shares};
pub use placement::{Item, LoadState, PlaceError, Placement, PlacementConfig, Weights, place};
pub use slicer::{SliceError, Slicing, slice, work_items};
pub use snapshot::{DeviceView, Snapshot};
