//! The gateway's wire format, shared by the gateway and the `zop-worker` client: routes,
//! request and response bodies, and the error body with its stable `reason`. Types only;
//! the gateway validates every body it decodes.

use crate::device::{Benchmark, Identification};
use serde::{Deserialize, Serialize};

/// Route of registration.
pub const REGISTER: &str = "/v1/register";
/// Route of heartbeats.
pub const HEARTBEAT: &str = "/v1/heartbeat";
/// Route where workers pull their assignment.
pub const WORK: &str = "/v1/work";
/// Route where workers report fragment results.
pub const RESULTS: &str = "/v1/results";

/// Query of [`WORK`]: a worker pod names its assignment; an agent may leave it out to
/// get the next one for its device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkQuery {
    /// The assignment's name.
    #[serde(default)]
    pub assignment: Option<String>,
}

/// One fragment to execute: its index and its work items `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FragmentSpan {
    /// Fragment index within the task.
    pub index: u32,
    /// First work item.
    pub start: u64,
    /// One past the last work item.
    pub end: u64,
}

/// An assignment as a worker sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Work {
    /// The assignment's name, quoted back with results.
    pub assignment: String,
    /// The task's namespace.
    pub task_namespace: String,
    /// The task's name.
    pub task: String,
    /// The task's spec: the workload and its parameters.
    pub spec: crate::task::ComputeTaskSpec,
    /// Fragments still to execute.
    pub fragments: Vec<FragmentSpan>,
}

/// Results of one or more fragments of an assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultsRequest {
    /// The assignment's name.
    pub assignment: String,
    /// The results.
    pub results: Vec<FragmentResult>,
}

/// What the gateway made of reported results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultsResponse {
    /// Results that were new.
    pub accepted: u32,
    /// Whether the assignment is now complete.
    pub completed: bool,
}

/// Most results in one report.
pub const MAX_RESULTS: usize = 10_000;

/// An agent asks to join with a Group Key (sent as the bearer token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    /// The agent's host name; with the provider it names the Device.
    pub hostname: String,
    /// What the agent detected.
    pub identification: Identification,
    /// Its benchmark and fingerprint.
    #[serde(default)]
    pub benchmark: Option<Benchmark>,
}

/// The device's identity and its token, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterResponse {
    /// The Device's name.
    pub device: String,
    /// The device token (`zdt_…`); the gateway keeps only its hash.
    pub token: String,
    /// Seconds between heartbeats.
    pub heartbeat_seconds: u32,
}

/// A device reports it is alive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatRequest {
    /// Load in percent.
    #[serde(default)]
    pub load: u32,
    /// Fragments running now.
    #[serde(default)]
    pub running_fragments: u32,
    /// A fresh benchmark, when the agent re-measured.
    #[serde(default)]
    pub benchmark: Option<Benchmark>,
}

/// Acknowledges a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatResponse {
    /// The Device's name.
    pub device: String,
    /// Seconds until the next heartbeat.
    pub heartbeat_seconds: u32,
}

/// Every error the gateway returns: a stable machine-readable reason and a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable reason, e.g. `InvalidGroupKey`.
    pub reason: String,
    /// What went wrong; for bad input, it names the field.
    pub message: String,
}

/// One fragment's committed result, as a worker reports it and as a record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FragmentResult {
    /// The fragment index within the task.
    pub fragment: u32,
    /// Hex digest committing to the fragment's output (a Merkle root for compute-proof).
    pub digest: String,
    /// Work units the fragment is worth: on the wire, what the worker claims; in a
    /// record, the slicer's cost (the gateway replaces the claim before recording).
    pub work_units: u64,
    /// Milliseconds the worker spent on it.
    pub elapsed_ms: u64,
}
