//! The ZopToken API, group `zoptoken.io`, version `v1alpha1`: the only place the
//! schemas of `Device`, `ComputeTask` and `Settlement` live. CRD YAML, `kubectl
//! explain` text and CEL validation rules are all generated from these types. Also the
//! labels and annotations the operator reads and writes, and the gateway's wire types,
//! shared by the gateway and `zop-worker`. Types only: serde and schemars, no client,
//! no server.

// kube's `printcolumn(...)` attributes repeat `type_ = ...` by design.
#![allow(clippy::duplicated_attributes)]

pub mod common;
pub mod crds;
pub mod device;
pub mod labels;
pub mod protocol;
pub mod settlement;
pub mod task;
pub mod task_status;
#[doc(hidden)]
pub mod testdata;

pub use common::{
    BASE_UNITS_PER_CXT, BaseUnits, GROUP, OPS_PER_WORK_UNIT, PERMILLE, POOL_BASE_UNITS, VERSION,
};
pub use device::{Device, DeviceClass, DevicePhase, DeviceSpec, DeviceStatus};
pub use settlement::{Settlement, SettlementPhase, SettlementSpec, SettlementStatus};
pub use task::{ComputeTask, ComputeTaskSpec, WorkloadType};
pub use task_status::{ComputeTaskStatus, TaskPhase};
