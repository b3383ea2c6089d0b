//! The observed state of a `ComputeTask`: aggregated, never one entry per fragment,
//! so it stays small at 100,000 fragments.

use super::common::Conditions;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Where a task stands.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash,
)]
pub enum TaskPhase {
    /// Waiting for placement.
    #[default]
    Pending,
    /// Fragments are executing.
    Running,
    /// All fragments ran; results are being checked.
    Verifying,
    /// Every fragment verified.
    Completed,
    /// Deadline passed, no eligible device, or too many fragments failed.
    Failed,
    /// Cancelled by the requester, or deleted.
    Cancelled,
}

impl TaskPhase {
    /// Completed, Failed and Cancelled never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// What the scheduler and verifier observed about a task.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ComputeTaskStatus {
    /// Pending, Running, Verifying, Completed, Failed or Cancelled.
    #[serde(default)]
    pub phase: TaskPhase,
    /// Fragment counts by state.
    #[serde(default)]
    pub fragments: FragmentCounts,
    /// Verified fragments over total, for example `250/1000`.
    #[serde(default)]
    pub progress: String,
    /// Contribution per device, largest first; at most 64 rows, the rest summed in a
    /// row whose device is `(others)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 65))]
    pub contributions: Vec<DeviceContribution>,
    /// The combined result, once verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<TaskResult>,
    /// When the first fragment started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the task reached Completed, Failed or Cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Latest observations, merged by type (Scheduled, Verified, Ready).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Conditions,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Fragment counts. `verified` and `rejected` are subsets of `completed`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FragmentCounts {
    /// All fragments.
    #[serde(default)]
    pub total: u32,
    /// Not yet running.
    #[serde(default)]
    pub pending: u32,
    /// Running on a device.
    #[serde(default)]
    pub running: u32,
    /// Ran and reported a result.
    #[serde(default)]
    pub completed: u32,
    /// Completed and passed verification.
    #[serde(default)]
    pub verified: u32,
    /// Results that failed verification (each rejected result once; its fragment is
    /// executed again elsewhere).
    #[serde(default)]
    pub rejected: u32,
    /// Completed without a proof (training, or a task with no challenges) and not
    /// settled by replay: accepted after the plausibility checks.
    #[serde(default)]
    pub unverified: u32,
    /// Failed past the retry limit.
    #[serde(default)]
    pub failed: u32,
}

/// One device's share of a task.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceContribution {
    /// The Device's name, or `(others)` for the folded remainder.
    pub device: String,
    /// Fragments it completed.
    pub fragments: u64,
    /// Verified work units it contributed.
    pub work_units: u64,
    /// Its fragments that failed verification.
    #[serde(default)]
    pub rejected: u64,
}

/// The combined result.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TaskResult {
    /// Hex Merkle root over every fragment's committed output digest.
    #[schemars(length(max = 128))]
    pub digest: String,
    /// Mean loss, for training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Accuracy from 0 to 1, for training and inference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
}
