//! The kubelet's admission of extended resources, for the one worker pods request: a pod
//! whose `nvidia.com/gpu` request does not fit in what the pods already admitted on its
//! node leave of the node's allocatable is refused, as a kubelet refuses it (phase Failed,
//! reason `OutOfnvidia.com/gpu`). Without this, a simulated node would run any number of
//! GPU pods and no test could see an operator overcommit a node.

use super::{RunError, Shared};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The extended resource of a GPU.
pub const GPU: &str = "nvidia.com/gpu";

/// GPUs admitted per node, by pod UID.
#[derive(Debug, Default)]
pub(super) struct GpuLedger {
    by_node: Mutex<HashMap<String, HashMap<String, u64>>>,
}

/// A pod's GPUs, held until it is dropped (when the pod's process has ended).
pub(super) struct GpuHold {
    shared: Arc<Shared>,
    node: String,
    uid: String,
}

impl std::fmt::Debug for GpuHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuHold")
            .field("node", &self.node)
            .field("uid", &self.uid)
            .finish()
    }
}

impl Drop for GpuHold {
    fn drop(&mut self) {
        let mut by_node = self
            .shared
            .gpus
            .by_node
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(pods) = by_node.get_mut(&self.node) {
            pods.remove(&self.uid);
        }
    }
}

/// The GPUs the pod's containers request (limits, where a request is absent).
pub fn requested_gpus(pod: &Pod) -> u64 {
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice());
    containers
        .unwrap_or_default()
        .iter()
        .filter_map(|c| {
            let r = c.resources.as_ref()?;
            let q = r
                .requests
                .as_ref()
                .and_then(|m| m.get(GPU))
                .or_else(|| r.limits.as_ref()?.get(GPU))?;
            q.0.parse::<u64>().ok()
        })
        .sum()
}

/// Admits `pod` on `node`: `Ok(None)` when it requests no GPU, a hold while it runs when
/// its GPUs fit, the kubelet's refusal when they do not.
pub(super) async fn admit(
    shared: &Arc<Shared>,
    pod: &Pod,
    node: &str,
    uid: &str,
) -> Result<Option<GpuHold>, RunError> {
    let wanted = requested_gpus(pod);
    if wanted == 0 {
        return Ok(None);
    }
    let capacity = Api::<Node>::all(shared.client.clone())
        .get(node)
        .await
        .map_err(|e| RunError::Config(format!("reading node {node}: {e}")))?
        .status
        .and_then(|s| s.allocatable)
        .and_then(|a| a.get(GPU).and_then(|q| q.0.parse::<u64>().ok()))
        .unwrap_or(0);
    let mut by_node = shared
        .gpus
        .by_node
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let pods = by_node.entry(node.to_string()).or_default();
    let used: u64 = pods.values().sum();
    if used + wanted > capacity {
        return Err(RunError::OutOfGpu(format!(
            "Pod was rejected: Node didn't have enough resource: {GPU}, requested: {wanted}, used: {used}, capacity: {capacity}"
        )));
    }
    pods.insert(uid.to_string(), wanted);
    Ok(Some(GpuHold {
        shared: shared.clone(),
        node: node.to_string(),
        uid: uid.to_string(),
    }))
}
