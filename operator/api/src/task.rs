//! `ComputeTask`: work a requester submits in their namespace.

use super::common::BaseUnits;
use super::device::DeviceClass;
use super::task_status::ComputeTaskStatus;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Most fragments one task may be cut into.
pub const MAX_FRAGMENTS: u32 = 100_000;
/// Most devices listed in a task's contribution summary; the rest are folded into one row.
pub const MAX_CONTRIBUTION_ROWS: usize = 64;

/// Work submitted to the network. The scheduler cuts it into fragments, places them on
/// devices, verifies the results and records each device's contribution.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
// Client-side CEL evaluation (`validate()`) only where the operator needs it: the worker
// links no CEL interpreter.
#[cfg_attr(feature = "cel", kube(cel))]
#[kube(
    group = "zoptoken.io",
    version = "v1alpha1",
    kind = "ComputeTask",
    namespaced,
    status = "ComputeTaskStatus",
    shortname = "ct",
    category = "zoptoken",
    derive = "PartialEq",
    doc = "A unit of work (compute proof, training, inference or data processing) to run on the network.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Progress", type_ = "string", json_path = ".status.progress"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(
        name = "Priority",
        type_ = "integer",
        json_path = ".spec.priority",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("self.type == 'compute-proof' ? has(self.computeProof) : !has(self.computeProof)")
        .message("computeProof must be set when, and only when, type is compute-proof")
        .field_path(".computeProof"),
    validation = Rule::new("self.type == 'training' ? has(self.training) : !has(self.training)")
        .message("training must be set when, and only when, type is training")
        .field_path(".training"),
    validation = Rule::new("self.type == 'inference' ? has(self.inference) : !has(self.inference)")
        .message("inference must be set when, and only when, type is inference")
        .field_path(".inference"),
    validation = Rule::new("self.type == 'data-processing' ? has(self.dataProcessing) : !has(self.dataProcessing)")
        .message("dataProcessing must be set when, and only when, type is data-processing")
        .field_path(".dataProcessing"),
    validation = Rule::new("self.type != 'training' || !has(self.requirements.deviceClass) || self.requirements.deviceClass != 'edge'")
        .message("training cannot require deviceClass edge")
        .field_path(".requirements.deviceClass"),
)]
#[serde(rename_all = "camelCase")]
pub struct ComputeTaskSpec {
    /// The workload type; the parameter block of the same name must be set. Immutable.
    #[serde(rename = "type")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("type is immutable"))]
    pub workload: WorkloadType,

    /// Parameters for type compute-proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("computeProof is immutable"))]
    pub compute_proof: Option<ComputeProofParams>,
    /// Parameters for type training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("training is immutable"))]
    pub training: Option<TrainingParams>,
    /// Parameters for type inference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("inference is immutable"))]
    pub inference: Option<InferenceParams>,
    /// Parameters for type data-processing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("dataProcessing is immutable"))]
    pub data_processing: Option<DataProcessingParams>,

    /// How finely to cut the task: a fragment count or a fragment size. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("fragments is immutable"))]
    pub fragments: FragmentGranularity,

    /// What a device must offer to receive this task's fragments. Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("requirements is immutable"))]
    pub requirements: Requirements,

    /// How results are checked. Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("verification is immutable"))]
    pub verification: VerificationPolicy,

    /// Scheduling weight from 0 to 1000; higher gets a larger fair share. May change.
    #[serde(default = "default_priority")]
    #[x_kube(validation = Rule::new("self <= 1000").message("priority must be between 0 and 1000"))]
    pub priority: u32,

    /// Seconds after creation by which the task must complete, or it fails. May change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0").message("activeDeadlineSeconds must be positive"))]
    pub active_deadline_seconds: Option<u64>,

    /// Set to true to cancel the task. It cannot be set back to false.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self || !oldSelf").message("cancel may only change from false to true"))]
    pub cancel: bool,

    /// Where results go beyond the status. Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("result is immutable"))]
    pub result: ResultDestination,
}

fn default_priority() -> u32 {
    100
}

/// The kinds of work.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadType {
    /// Integer matrix products committed by a Merkle root (Proof-of-Compute).
    ComputeProof,
    /// Gradient computation for a model on data shards (Proof-of-Model-Training).
    Training,
    /// Batched forward passes of a model.
    Inference,
    /// Hashing or tokenizing data in chunks.
    DataProcessing,
}

/// Largest `computeProof.dimension` the API accepts; the kernels run it on every device
/// (a test in `zop-core` holds the two together).
pub const MAX_DIMENSION: u32 = 8192;

/// Integer matrix products: `products` products of two `dimension`×`dimension` int8
/// matrices generated from `seed` on the device.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ComputeProofParams {
    /// Side of the square matrices, 64 to 8192, a multiple of 64: the largest every
    /// device's kernels run (the CPU path's 1 GiB limit stops at 10,304).
    #[x_kube(validation = Rule::new("self >= 64 && self <= 8192 && self % 64 == 0")
        .message("dimension must be a multiple of 64 between 64 and 8192"))]
    pub dimension: u32,
    /// Number of matrix products in the whole task; these are the work items.
    #[x_kube(validation = Rule::new("self > 0").message("products must be positive"))]
    pub products: u64,
    /// Seed from which every input is generated.
    #[serde(default)]
    pub seed: u64,
}

/// A small real model.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("self.architecture == 'mlp' ? has(self.hidden) : !has(self.hidden)")
    .message("hidden must be set when, and only when, architecture is mlp")
    .field_path(".hidden"))]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    /// The architecture.
    pub architecture: Architecture,
    /// Input features per sample, 1 to 4096.
    #[x_kube(validation = Rule::new("self > 0 && self <= 4096").message("features must be between 1 and 4096"))]
    pub features: u32,
    /// Output classes, 2 to 1024.
    #[x_kube(validation = Rule::new("self >= 2 && self <= 1024").message("classes must be between 2 and 1024"))]
    pub classes: u32,
    /// Hidden units, for mlp only, 1 to 4096.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0 && self <= 4096").message("hidden must be between 1 and 4096"))]
    pub hidden: Option<u32>,
}

/// Model architectures the kernels implement.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    /// Multinomial logistic regression.
    SoftmaxRegression,
    /// A two-layer perceptron with ReLU.
    Mlp,
}

/// Gradient-descent steps each training fragment takes on its shard, from the seeded
/// initial weights (a worker reports the loss before each and after the last).
pub const TRAINING_LOCAL_STEPS: u32 = 1;

/// Gradient computation over a synthetic data set generated from `seed` on each device.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrainingParams {
    /// The model.
    pub model: ModelSpec,
    /// Training samples; these are the work items, sharded across fragments.
    #[x_kube(validation = Rule::new("self > 0").message("samples must be positive"))]
    pub samples: u64,
    /// Passes over the data, 1 to 100.
    #[serde(default = "one")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 100").message("epochs must be between 1 and 100"))]
    pub epochs: u32,
    /// Step size, greater than 0 and at most 10.
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 10.0").message("learningRate must be in (0, 10]"))]
    pub learning_rate: f64,
    /// Seed of the data set and the initial weights.
    #[serde(default)]
    pub seed: u64,
}

fn one() -> u32 {
    1
}

/// Batched forward passes over samples generated from `seed`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InferenceParams {
    /// The model.
    pub model: ModelSpec,
    /// Samples to classify; these are the work items.
    #[x_kube(validation = Rule::new("self > 0").message("samples must be positive"))]
    pub samples: u64,
    /// Seed of the inputs and the weights.
    #[serde(default)]
    pub seed: u64,
}

/// Hashing or tokenizing a byte stream generated from `seed`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DataProcessingParams {
    /// What to do with each chunk.
    pub operation: DataOperation,
    /// Total bytes; these are the work items.
    #[x_kube(validation = Rule::new("self > 0").message("bytes must be positive"))]
    pub bytes: u64,
    /// Seed of the data.
    #[serde(default)]
    pub seed: u64,
}

/// Data-processing operations.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DataOperation {
    /// SHA-256 of each chunk.
    Sha256,
    /// Whitespace tokenization with token counts per chunk.
    Tokenize,
}

/// Exactly one of `count` or `size`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("has(self.count) != has(self.size)")
    .message("exactly one of fragments.count or fragments.size must be set"))]
#[serde(rename_all = "camelCase")]
pub struct FragmentGranularity {
    /// Number of fragments, 1 to 100000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 100000").message("count must be between 1 and 100000"))]
    pub count: Option<u32>,
    /// Work items per fragment (products, samples or bytes, by type); at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("size must be positive"))]
    pub size: Option<u64>,
}

/// Hard requirements on devices. Every field is optional.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[x_kube(
    validation = Rule::new("!has(self.deviceClass) || self.deviceClass == 'gpu' || (!has(self.minVramMiB) && !has(self.gpuModels) && !has(self.minComputeCapability))")
        .message("minVramMiB, gpuModels and minComputeCapability need deviceClass gpu")
        .field_path(".deviceClass"),
    validation = Rule::new("!has(self.runtime) || self.runtime != 'cuda' || !has(self.deviceClass) || self.deviceClass == 'gpu'")
        .message("runtime cuda needs deviceClass gpu")
        .field_path(".runtime"),
)]
#[serde(rename_all = "camelCase")]
pub struct Requirements {
    /// Only devices of this class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_class: Option<DeviceClass>,
    /// Least VRAM per GPU, in MiB.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "minVramMiB"
    )]
    #[x_kube(validation = Rule::new("self > 0").message("minVramMiB must be positive"))]
    pub min_vram_mib: Option<u64>,
    /// Only these GPU products (as in the nvidia.com/gpu.product label); any of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16), inner(length(min = 1, max = 128)))]
    pub gpu_models: Option<Vec<String>>,
    /// Least CUDA compute capability, as `major.minor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]{1,2}\\\\.[0-9]$')").message("minComputeCapability must look like 8.0"))]
    pub min_compute_capability: Option<String>,
    /// Least reputation score, 0 to 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self <= 1000").message("minReputation must be between 0 and 1000"))]
    pub min_reputation: Option<u32>,
    /// Least stake of the devices' provider, bonded in the ledger, in base units (1 CXT =
    /// 1,000,000): advanced work for providers with something to lose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_stake: Option<BaseUnits>,
    /// The execution runtime the fragments need.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,
}

/// Execution runtimes.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// CUDA on an NVIDIA GPU.
    Cuda,
    /// The CPU path.
    Cpu,
}

/// How results are checked.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VerificationPolicy {
    /// Share of fragments replayed on a second device, 0 to 1.
    #[serde(default = "default_replay_rate")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1.0").message("replayRate must be between 0 and 1"))]
    pub replay_rate: f64,
    /// Rows of a compute-proof fragment challenged after its commitment, each answered
    /// with the row and its Merkle proofs, 0 to 256. The default, 66, catches a worker
    /// that corrupts 10% of its rows with probability 99.9% (`docs/verification.md`).
    #[serde(default = "default_challenges")]
    #[x_kube(validation = Rule::new("self <= 256").message("challenges must be between 0 and 256"))]
    pub challenges: u32,
    /// Relative tolerance for floating-point results, 0 to 1. Integer workloads are exact.
    #[serde(default = "default_tolerance")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1.0").message("tolerance must be between 0 and 1"))]
    pub tolerance: f64,
    /// Devices whose results must agree on a replayed fragment, 1 to 5.
    #[serde(default = "default_quorum")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 5").message("quorum must be between 1 and 5"))]
    pub quorum: u32,
}

fn default_replay_rate() -> f64 {
    0.05
}
fn default_challenges() -> u32 {
    66
}
fn default_tolerance() -> f64 {
    1e-4
}
fn default_quorum() -> u32 {
    2
}

impl Default for VerificationPolicy {
    fn default() -> Self {
        Self {
            replay_rate: default_replay_rate(),
            challenges: default_challenges(),
            tolerance: default_tolerance(),
            quorum: default_quorum(),
        }
    }
}

/// Where results go. Digests, proofs and quality metrics always go to the status.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[x_kube(validation = Rule::new("!self.includeOutputs || has(self.configMap)")
    .message("includeOutputs needs configMap")
    .field_path(".includeOutputs"))]
#[serde(rename_all = "camelCase")]
pub struct ResultDestination {
    /// A ConfigMap in the task's namespace that receives the result summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub config_map: Option<String>,
    /// Also upload full outputs (never training data) to the destination.
    #[serde(default)]
    pub include_outputs: bool,
}
