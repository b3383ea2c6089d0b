//! The gateway's wire format, shared by the gateway and the `zop-worker` client: routes,
//! request and response bodies, and the error body with its stable `reason`. Types only;
//! the gateway validates every body it decodes.

use crate::device::{Benchmark, GpuInfo, Identification};
use serde::{Deserialize, Serialize};

/// Route of registration.
pub const REGISTER: &str = "/v1/register";
/// Route of heartbeats.
pub const HEARTBEAT: &str = "/v1/heartbeat";
/// Route where workers pull their assignment.
pub const WORK: &str = "/v1/work";
/// Route where workers report fragment results.
pub const RESULTS: &str = "/v1/results";
/// Route where workers answer the challenges of a committed result.
pub const PROOFS: &str = "/v1/proofs";
/// Route where a provider, with a Group Key, reads its account (`GET`) and requests a
/// withdrawal, a bond or an unbond (`POST`).
pub const LEDGER: &str = "/v1/ledger";
/// Route where a node benchmark Pod reports what it measured.
pub const BENCHMARK: &str = "/v1/benchmark";

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Rows to prove, per committed result, drawn after its commitment arrived; answer
    /// them at [`PROOFS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub challenges: Vec<FragmentChallenge>,
}

/// One row of one product of a compute-proof fragment; `product` counts from the
/// fragment's first product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChallengedRow {
    /// Product within the fragment, from 0.
    pub product: u32,
    /// Row of that product, from 0.
    pub row: u32,
}

/// The rows a committed result must prove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FragmentChallenge {
    /// The fragment index within the task.
    pub fragment: u32,
    /// The rows, sorted, each once.
    pub rows: Vec<ChallengedRow>,
}

/// Answers to a fragment's challenges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProofsRequest {
    /// The assignment's name.
    pub assignment: String,
    /// The fragment index within the task.
    pub fragment: u32,
    /// One answer per challenged row.
    pub answers: Vec<RowProof>,
}

/// A challenged row with its Merkle proofs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RowProof {
    /// Product within the fragment.
    pub product: u32,
    /// Row of that product.
    pub row: u32,
    /// The row's `n` int32 values, little-endian, base64 (standard alphabet, padded).
    pub values: String,
    /// Hex siblings from the row's digest up to its product's root.
    pub row_proof: Vec<String>,
    /// Hex siblings from the product's root up to the fragment's root.
    pub product_proof: Vec<String>,
}

/// The verdict on a fragment's answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProofsResponse {
    /// The fragment.
    pub fragment: u32,
    /// Whether the result verified.
    pub verified: bool,
    /// Why not, when it did not: a stable reason and the evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection: Option<ErrorBody>,
}

/// A row's values as [`RowProof::values`] carries them.
pub fn encode_row(values: &[i32]) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The values of [`RowProof::values`], if it is valid base64 of a multiple of 4 bytes.
pub fn decode_row(s: &str) -> Option<Vec<i32>> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    if bytes.len() % 4 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// Most rows one fragment is challenged at (the task API's limit).
pub const MAX_CHALLENGES: u32 = 256;

/// The operator's verdict on a recorded result. Workers never send one: the gateway
/// sets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "state",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Check {
    /// Rows were challenged; the answers are awaited.
    Challenged {
        /// The rows.
        rows: Vec<ChallengedRow>,
        /// When they were drawn (Unix milliseconds).
        at_ms: i64,
    },
    /// The answers proved the result.
    Verified {
        /// When (Unix milliseconds).
        at_ms: i64,
    },
    /// The result failed verification, or was refused; it earns nothing.
    Rejected {
        /// Stable reason, for example `WrongRow` or `ChallengeTimeout`.
        reason: String,
        /// The evidence: what was expected and what was received.
        detail: String,
        /// When (Unix milliseconds).
        at_ms: i64,
    },
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

/// A node benchmark Pod reports its run: the benchmark and the GPUs the run saw. The
/// Device is the one the Pod was created for, never named by the body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BenchmarkReport {
    /// What the run measured.
    pub benchmark: Benchmark,
    /// The GPUs the run detected, as the probe identifies them.
    #[serde(default)]
    pub gpus: Vec<GpuInfo>,
}

/// Acknowledges a benchmark report with the verdict the gateway wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BenchmarkVerdict {
    /// The Device measured.
    pub device: String,
    /// `Plausible`, or the reason the benchmark contradicts the claimed hardware.
    pub reason: String,
    /// The figures behind the verdict.
    pub message: String,
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

/// What a training or inference fragment measured. The operator checks it
/// (`zop_core::verify::quality`) and replays compare it; it is never taken on trust.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultQuality {
    /// Training: the mean loss before each local step, then after the last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub losses: Vec<f64>,
    /// Samples predicted right (after the last step, for training).
    pub correct: u64,
}

/// One fragment's committed result, as a worker reports it and as a record keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// When the gateway received it, Unix milliseconds (records only: the operator's own
    /// clock times the work, never the worker's claim).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub received_ms: i64,
    /// The operator's verdict (records only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
    /// When the operator drew this result for replay (Unix milliseconds; records only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_wanted_ms: Option<i64>,
    /// Training and inference: what the model measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<ResultQuality>,
    /// When the result became payable, Unix milliseconds (records only): verified, or
    /// accepted without a proof. It fixes the epoch that pays it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payable_ms: Option<i64>,
}

/// A provider's request of the ledger (`POST` [`LEDGER`]); the provider is the Group
/// Key's, never a field of the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LedgerRequest {
    /// The provider's own id of the request, 1 to 40 of `a-z`, `0-9` and `-`: a retry
    /// with the same id is the same request, recorded (and paid) at most once.
    pub id: String,
    /// `Withdraw`, `Bond` or `Unbond` (releasing or forfeiting held rewards is an
    /// admin's decision).
    pub kind: crate::settlement::OperationKind,
    /// Base units, more than 0.
    pub amount: crate::common::BaseUnits,
    /// Withdrawals only: where the payout goes, outside the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
}

/// Where a provider's request stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerRequestState {
    /// The id the ledger records it under: `<provider>.<id>`.
    pub id: String,
    /// What it asks.
    pub kind: crate::settlement::OperationKind,
    /// Base units.
    pub amount: crate::common::BaseUnits,
    /// `Pending` (recorded when the next epoch is settled), `Refused` (with `reason`)
    /// or `Recorded` (the chain holds it).
    pub state: String,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A provider's account as the ledger has it (`GET` [`LEDGER`]), base units throughout.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerAccount {
    /// The provider.
    pub provider: String,
    /// What may be bonded or withdrawn.
    pub balance: u64,
    /// Rewards ever credited.
    pub rewards: u64,
    /// Paid out.
    pub withdrawn: u64,
    /// Bonded stake.
    pub staked: u64,
    /// Unbonded stake still cooling down.
    pub unbonding: u64,
    /// Rewards held by reconciliation.
    pub held: u64,
    /// The last settled epoch.
    pub epoch: u64,
    /// Requests not yet recorded, and refused ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<LedgerRequestState>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}
