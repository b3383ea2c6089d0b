//! What a Node tells about the device it is: identification from the NVIDIA
//! GPU-feature-discovery labels and the Node status, its class, and its readiness.

use super::quantity::parse_scaled;
use crate::api::DeviceClass;
use crate::api::device::{GpuInfo, Identification, RuntimeEnvironment};
use crate::labels::{self, gfd};
use k8s_openapi::api::core::v1::Node;
use std::collections::BTreeMap;

/// Most GPUs recorded per device, matching the API's limit.
pub const MAX_GPUS: usize = 16;

/// The facts about a Node that a Device records.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeFacts {
    /// Identification for the Device status.
    pub identification: Identification,
    /// Declared by label, else `gpu` when the Node has GPUs, else `cpu`.
    pub class: DeviceClass,
    /// The provider label, if any.
    pub provider: Option<String>,
    /// Whether the Node's Ready condition is True.
    pub ready: bool,
}

/// Whether the Node asks to be onboarded.
pub fn is_onboarded(node: &Node) -> bool {
    node.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::ONBOARD))
        .is_some_and(|v| v == "true")
}

/// Reads a Node. Malformed labels are treated as absent, never as errors: a Node is
/// identified as well as its labels allow.
pub fn node_facts(node: &Node) -> NodeFacts {
    let empty = BTreeMap::new();
    let l = node.metadata.labels.as_ref().unwrap_or(&empty);
    let status = node.status.clone().unwrap_or_default();
    let info = status.node_info.unwrap_or_default();
    let capacity = status.capacity.unwrap_or_default();
    let gpus = gpus_from_labels(l, &capacity);
    let class = match l.get(labels::DEVICE_CLASS).map(String::as_str) {
        Some("gpu") => DeviceClass::Gpu,
        Some("cpu") => DeviceClass::Cpu,
        Some("edge") => DeviceClass::Edge,
        _ if gpus.is_empty() => DeviceClass::Cpu,
        _ => DeviceClass::Gpu,
    };
    let ready = status
        .conditions
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let identification = Identification {
        device_type: if gpus.is_empty() {
            "server"
        } else {
            "gpu-server"
        }
        .into(),
        os: info.operating_system,
        os_version: info.os_image,
        kernel_version: info.kernel_version,
        architecture: info.architecture,
        cpu_cores: capacity
            .get("cpu")
            .and_then(|q| parse_scaled(&q.0, 1))
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(0),
        memory_mib: capacity
            .get("memory")
            .and_then(|q| parse_scaled(&q.0, 1 << 20))
            .unwrap_or(0),
        gpus,
        runtime: RuntimeEnvironment {
            container_runtime: Some(info.container_runtime_version).filter(|s| !s.is_empty()),
            kubelet_version: Some(info.kubelet_version).filter(|s| !s.is_empty()),
            worker_version: None,
            cuda_libraries: Vec::new(),
        },
    };
    NodeFacts {
        identification,
        class,
        provider: l.get(labels::PROVIDER).cloned(),
        ready,
    }
}

fn gpus_from_labels(
    l: &BTreeMap<String, String>,
    capacity: &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) -> Vec<GpuInfo> {
    let Some(model) = l.get(gfd::PRODUCT).filter(|m| !m.is_empty()) else {
        return Vec::new();
    };
    let count = l
        .get(gfd::COUNT)
        .and_then(|c| c.parse::<usize>().ok())
        .or_else(|| {
            capacity
                .get(gfd::RESOURCE)
                .and_then(|q| parse_scaled(&q.0, 1))
                .and_then(|c| usize::try_from(c).ok())
        })
        .unwrap_or(1)
        .min(MAX_GPUS);
    let cc = match (l.get(gfd::COMPUTE_MAJOR), l.get(gfd::COMPUTE_MINOR)) {
        (Some(major), Some(minor)) => format!("{major}.{minor}"),
        _ => String::new(),
    };
    let cuda = l.get(gfd::CUDA_RUNTIME).cloned().unwrap_or_default();
    let gpu = GpuInfo {
        model: model.clone(),
        vram_mib: l.get(gfd::MEMORY).and_then(|m| m.parse().ok()).unwrap_or(0),
        compute_capability: cc,
        sm_count: None,
        driver_version: l.get(gfd::DRIVER).cloned().unwrap_or_default(),
        cuda_version: cuda,
    };
    vec![gpu; count]
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus, NodeSystemInfo};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn node(labels: &[(&str, &str)], ready: &str) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some("gpu-h100-0001".into());
        n.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        n.status = Some(NodeStatus {
            capacity: Some(BTreeMap::from([
                ("cpu".into(), Quantity("32".into())),
                ("memory".into(), Quantity("256Gi".into())),
                ("nvidia.com/gpu".into(), Quantity("8".into())),
            ])),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: ready.into(),
                ..Default::default()
            }]),
            node_info: Some(NodeSystemInfo {
                operating_system: "linux".into(),
                os_image: "Ubuntu 24.04.1 LTS".into(),
                kernel_version: "6.8.0".into(),
                architecture: "amd64".into(),
                container_runtime_version: "containerd://2.0.0".into(),
                kubelet_version: "v1.36.3".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        n
    }

    const H100: &[(&str, &str)] = &[
        ("zoptoken.io/onboard", "true"),
        ("zoptoken.io/provider", "acme"),
        ("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3"),
        ("nvidia.com/gpu.memory", "81559"),
        ("nvidia.com/gpu.count", "8"),
        ("nvidia.com/gpu.compute.major", "9"),
        ("nvidia.com/gpu.compute.minor", "0"),
        ("nvidia.com/cuda.driver-version.full", "570.124.06"),
    ];

    #[test]
    fn a_gfd_labelled_node_is_a_gpu_device_with_every_gpu_identified() {
        let f = node_facts(&node(H100, "True"));
        assert!(f.ready);
        assert_eq!(f.class, DeviceClass::Gpu);
        assert_eq!(f.provider.as_deref(), Some("acme"));
        let id = &f.identification;
        assert_eq!((id.cpu_cores, id.memory_mib), (32, 256 * 1024));
        assert_eq!(id.os_version, "Ubuntu 24.04.1 LTS");
        assert_eq!(id.gpus.len(), 8);
        assert_eq!(id.gpus[0].model, "NVIDIA-H100-80GB-HBM3");
        assert_eq!(id.gpus[0].vram_mib, 81559);
        assert_eq!(id.gpus[0].compute_capability, "9.0");
        assert_eq!(id.gpus[0].driver_version, "570.124.06");
        assert_eq!(
            id.runtime.container_runtime.as_deref(),
            Some("containerd://2.0.0")
        );
    }

    #[test]
    fn a_node_without_gpu_labels_is_a_cpu_device() {
        let f = node_facts(&node(&[("zoptoken.io/onboard", "true")], "False"));
        assert!(!f.ready);
        assert_eq!(f.class, DeviceClass::Cpu);
        assert!(f.identification.gpus.is_empty());
    }

    #[test]
    fn malformed_gpu_labels_are_treated_as_absent() {
        let f = node_facts(&node(
            &[
                ("nvidia.com/gpu.product", "X"),
                ("nvidia.com/gpu.memory", "lots"),
                ("nvidia.com/gpu.count", "999"),
            ],
            "True",
        ));
        assert_eq!(f.identification.gpus.len(), MAX_GPUS);
        assert_eq!(f.identification.gpus[0].vram_mib, 0);
    }

    #[test]
    fn only_the_true_label_onboards() {
        assert!(is_onboarded(&node(
            &[("zoptoken.io/onboard", "true")],
            "True"
        )));
        assert!(!is_onboarded(&node(
            &[("zoptoken.io/onboard", "yes")],
            "True"
        )));
        assert!(!is_onboarded(&Node::default()));
    }
}
