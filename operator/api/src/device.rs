//! `Device`: one machine that contributes compute, cluster-scoped.

use super::common::{BaseUnits, Conditions};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A machine joined to the ZopToken network: a labelled cluster Node or an agent that
/// registered with a Group Key. The operator fills in its status from identification,
/// benchmarks, heartbeats and verification outcomes.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
// Client-side CEL evaluation (`validate()`) only where the operator needs it: the worker
// links no CEL interpreter.
#[cfg_attr(feature = "cel", kube(cel))]
#[kube(
    group = "zoptoken.io",
    version = "v1alpha1",
    kind = "Device",
    status = "DeviceStatus",
    shortname = "dev",
    category = "zoptoken",
    derive = "PartialEq",
    doc = "A machine (GPU, CPU or edge) that contributes compute to the ZopToken network.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Class", type_ = "string", json_path = ".spec.class"),
    printcolumn(
        name = "GPU",
        type_ = "string",
        json_path = ".status.identification.gpus[0].model"
    ),
    printcolumn(
        name = "VRAM(MiB)",
        type_ = "integer",
        json_path = ".status.identification.gpus[0].vramMiB"
    ),
    printcolumn(
        name = "Reputation",
        type_ = "integer",
        json_path = ".status.reputation.score"
    ),
    printcolumn(name = "Load(%)", type_ = "integer", json_path = ".status.load"),
    printcolumn(
        name = "Provider",
        type_ = "string",
        json_path = ".spec.provider",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DeviceSpec {
    /// The provider account this device belongs to; its earnings are credited there.
    /// Immutable.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("provider is immutable"))]
    pub provider: String,

    /// Where the device comes from: a cluster Node or a Group-Key agent. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("source is immutable"))]
    pub source: DeviceSource,

    /// The declared device class. Placement only sends GPU work to `gpu` devices.
    pub class: DeviceClass,

    /// When true the device receives no new fragments (maintenance); running ones finish.
    #[serde(default)]
    pub cordoned: bool,
}

/// Exactly one of `node` or `agent`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cel", x_kube(cel))]
#[x_kube(
    validation = Rule::new("has(self.node) != has(self.agent)")
        .message("exactly one of source.node or source.agent must be set")
)]
#[serde(rename_all = "camelCase")]
pub struct DeviceSource {
    /// The cluster Node this device is, for data-center onboarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeSource>,
    /// The agent process this device is, for individual providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentSource>,
}

/// A cluster Node, by name.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeSource {
    /// The Node's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// An agent that registered through the gateway.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AgentSource {
    /// The name of the Group Key the agent registered with (never the key itself).
    #[schemars(length(min = 1, max = 253))]
    pub group_key: String,
    /// The host name the agent reported.
    #[schemars(length(min = 1, max = 253))]
    pub hostname: String,
}

/// The declared kind of hardware.
#[derive(
    schemars::JsonSchema,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum DeviceClass {
    /// A machine with one or more GPUs.
    Gpu,
    /// A CPU-only machine.
    Cpu,
    /// A small edge device.
    Edge,
}

/// Where a device stands.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash,
)]
pub enum DevicePhase {
    /// Known but not yet identified or seen online.
    #[default]
    Pending,
    /// Heartbeating and eligible for work.
    Online,
    /// Missed heartbeats past the grace period, or its Node is gone or NotReady.
    Offline,
    /// Failed a plausibility check (benchmark or fingerprint); receives no work.
    Quarantined,
    /// Left the network; kept because it carries earnings history.
    Retired,
}

/// What the operator observed about a device.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceStatus {
    /// Pending, Online, Offline, Quarantined or Retired.
    #[serde(default)]
    pub phase: DevicePhase,
    /// The hardware and software the device reported or the Node advertises.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identification: Option<Identification>,
    /// The latest measured benchmark and hardware fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub benchmark: Option<Benchmark>,
    /// When the device last came online.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online_since: Option<Time>,
    /// The last heartbeat received (agents) or Ready report seen (Nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<Time>,
    /// Share of the rolling window the device was online, in per mille (1000 = always).
    #[serde(default)]
    #[schemars(range(max = 1000))]
    pub online_ratio_permille: u32,
    /// Total seconds online since the device joined.
    #[serde(default)]
    pub online_seconds: u64,
    /// Per-hour online record behind `onlineRatioPermille`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online_window: Option<OnlineWindow>,
    /// Whether the device can take new fragments now.
    #[serde(default)]
    pub available: bool,
    /// Current load in percent of its capacity.
    #[serde(default)]
    #[schemars(range(max = 100))]
    pub load: u32,
    /// Fragments running on the device now.
    #[serde(default)]
    pub running_fragments: u32,
    /// Track record that weighs placement and rewards.
    #[serde(default)]
    pub reputation: Reputation,
    /// The stake its provider has bonded in the ledger, in base units (1 CXT =
    /// 1,000,000). Derived by the operator from the Settlement chain after every epoch:
    /// it raises placement priority and reward share, admits the device to tasks with a
    /// `minStake`, and puts it first for replays. Bonding never mints.
    #[serde(default)]
    pub stake: BaseUnits,
    /// Latest observations, merged by type (Ready, HardwarePlausible).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Conditions,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Online seconds per hour over the last 24 hours; see `devices::online`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OnlineWindow {
    /// Online seconds per hour bucket, indexed by (hour since the Unix epoch) mod 24.
    #[schemars(length(max = 24))]
    pub buckets: Vec<u32>,
    /// Unix seconds up to which time has been accounted.
    pub accounted_until: i64,
    /// Unix seconds when accounting started.
    pub since: i64,
}

/// Hardware and software identification.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Identification {
    /// The kind of machine, for example `gpu-server`, `workstation` or `edge`.
    pub device_type: String,
    /// Operating system, for example `linux`.
    pub os: String,
    /// OS image or system version, for example `Ubuntu 24.04.1 LTS`.
    #[serde(default)]
    pub os_version: String,
    /// Kernel version.
    #[serde(default)]
    pub kernel_version: String,
    /// CPU architecture, for example `amd64`.
    #[serde(default)]
    pub architecture: String,
    /// Logical CPU cores.
    #[serde(default)]
    pub cpu_cores: u32,
    /// Memory in MiB.
    #[serde(default, rename = "memoryMiB")]
    pub memory_mib: u64,
    /// GPUs, empty on CPU-only machines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub gpus: Vec<GpuInfo>,
    /// The runtime environment the worker runs in.
    #[serde(default)]
    pub runtime: RuntimeEnvironment,
}

/// One GPU.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GpuInfo {
    /// Product name, for example `NVIDIA-H100-80GB-HBM3`.
    pub model: String,
    /// Video memory in MiB.
    #[serde(rename = "vramMiB")]
    pub vram_mib: u64,
    /// CUDA compute capability as `major.minor`, for example `9.0`.
    #[serde(default)]
    pub compute_capability: String,
    /// Streaming multiprocessors, when measured through CUDA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_count: Option<u32>,
    /// NVIDIA driver version.
    #[serde(default)]
    pub driver_version: String,
    /// CUDA runtime version the driver supports, for example `12.8`.
    #[serde(default)]
    pub cuda_version: String,
}

/// The software the device runs work in.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeEnvironment {
    /// Container runtime of a cluster Node, for example `containerd://2.0.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_runtime: Option<String>,
    /// Kubelet version of a cluster Node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet_version: Option<String>,
    /// Version of the zop-worker that reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_version: Option<String>,
    /// The CUDA libraries the worker loads, with their files, for example
    /// `nvrtc (/usr/local/cuda/lib64/libnvrtc.so.13)`; empty without CUDA.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4), inner(length(max = 253)))]
    pub cuda_libraries: Vec<String>,
}

/// A measured benchmark.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Benchmark {
    /// Measured compute power in normalized compute units (1 unit = 1 GOP/s of int8
    /// matrix products).
    pub score: u64,
    /// Measured memory bandwidth in MB/s.
    #[serde(default, rename = "memoryBandwidthMBps")]
    pub memory_bandwidth_mbps: u64,
    /// Hex digest of measured timing ratios characteristic of the hardware.
    #[schemars(length(max = 128))]
    pub fingerprint: String,
    /// When it was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_at: Option<Time>,
    /// The GPU driver version the device's identification named at its last benchmark
    /// run (also when that run's figures were refused and these kept), so that a driver
    /// change is measured again, once. Written by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub driver_version: Option<String>,
}

/// A device's track record, written by the operator's verifier alone
/// (`zop_core::devices::reputation` has the rules).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Reputation {
    /// Score from 0 to 1000; new devices start at 500, and every score decays towards
    /// 500 with a half-life of 7 days.
    #[schemars(range(max = 1000))]
    pub score: u32,
    /// Fragments that completed and verified.
    #[serde(default)]
    pub succeeded: u64,
    /// Fragments that failed to run, or whose challenges went unanswered.
    #[serde(default)]
    pub failed: u64,
    /// Fragments whose results failed verification.
    #[serde(default)]
    pub verification_failures: u64,
    /// Penalties applied (quarantine, replayed submissions).
    #[serde(default)]
    pub penalties: u64,
    /// Results that arrived implausibly fast or slow for the device's benchmark.
    #[serde(default)]
    pub abnormal_timings: u64,
    /// When the score last changed; decay runs from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Time>,
}

impl Default for Reputation {
    fn default() -> Self {
        Self {
            score: 500,
            succeeded: 0,
            failed: 0,
            verification_failures: 0,
            penalties: 0,
            abnormal_timings: 0,
            updated_at: None,
        }
    }
}
