//! Label, annotation and finalizer keys the operator reads or writes, in one place.

/// A Node with this label set to `true` becomes a Device.
pub const ONBOARD: &str = "zoptoken.io/onboard";
/// The provider account a labelled Node's Device is credited to.
pub const PROVIDER: &str = "zoptoken.io/provider";
/// The device class a labelled Node declares (`gpu`, `cpu`, `edge`); inferred when absent.
pub const DEVICE_CLASS: &str = "zoptoken.io/device-class";
/// Set on every object the operator creates.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY`].
pub const MANAGER: &str = "zop-operator";
/// A Secret holding a Group Key (hashed) carries this label.
pub const GROUP_KEY: &str = "zoptoken.io/group-key";
/// Links a device-token Secret, an assignment or a worker Pod to its Device.
pub const DEVICE: &str = "zoptoken.io/device";
/// An agent Device's host name as its machine reported it: two machines whose names
/// sanitize to the same Device name are told apart by it.
pub const AGENT_HOSTNAME: &str = "zoptoken.io/agent-hostname";
/// Marks the ConfigMaps that persist assignments.
pub const ASSIGNMENT: &str = "zoptoken.io/assignment";
/// The UID of the ComputeTask an assignment or worker Pod belongs to.
pub const TASK_UID: &str = "zoptoken.io/task-uid";
/// The namespace of the ComputeTask a worker Pod belongs to.
pub const TASK_NAMESPACE: &str = "zoptoken.io/task-namespace";
/// The name of the ComputeTask a worker Pod belongs to.
pub const TASK: &str = "zoptoken.io/task";
/// The finalizer that cleans up a ComputeTask's pods and assignments.
pub const TASK_FINALIZER: &str = "zoptoken.io/task-cleanup";

/// NVIDIA GPU-feature-discovery labels on GPU Nodes.
pub mod gfd {
    /// GPU product name.
    pub const PRODUCT: &str = "nvidia.com/gpu.product";
    /// VRAM per GPU in MiB.
    pub const MEMORY: &str = "nvidia.com/gpu.memory";
    /// GPUs on the Node.
    pub const COUNT: &str = "nvidia.com/gpu.count";
    /// Compute capability, major.
    pub const COMPUTE_MAJOR: &str = "nvidia.com/gpu.compute.major";
    /// Compute capability, minor.
    pub const COMPUTE_MINOR: &str = "nvidia.com/gpu.compute.minor";
    /// Architecture family.
    pub const FAMILY: &str = "nvidia.com/gpu.family";
    /// Full driver version.
    pub const DRIVER: &str = "nvidia.com/cuda.driver-version.full";
    /// Full CUDA runtime version.
    pub const CUDA_RUNTIME: &str = "nvidia.com/cuda.runtime-version.full";
    /// Extended resource name of a GPU.
    pub const RESOURCE: &str = "nvidia.com/gpu";
}
