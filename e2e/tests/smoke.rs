//! The local control plane is real: the pinned kube-apiserver answers, kwok keeps the
//! simulated GPU nodes Ready with their GFD labels and `nvidia.com/gpu` capacity, the real
//! kube-scheduler places GPU pods by product and GPU count, and the real
//! kube-controller-manager finishes namespace deletion.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use std::collections::BTreeMap;
use std::time::Duration;
use zop_e2e::nodes::{MODEL_LABEL, Model, is_ready, node_manifest};
use zop_e2e::{Env, wait_for};

const GPU: &str = "nvidia.com/gpu";
const PRODUCT: &str = "nvidia.com/gpu.product";

async fn simulated_nodes(env: &Env) -> Vec<Node> {
    Api::<Node>::all(env.client.clone())
        .list(&ListParams::default().labels(MODEL_LABEL))
        .await
        .expect("list nodes")
        .items
}

fn labels(node: &Node) -> BTreeMap<String, String> {
    node.metadata.labels.clone().unwrap_or_default()
}

fn gpu_pod(name: &str, product: &str, gpus: u32) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "spec": {
            "automountServiceAccountToken": false,
            "nodeSelector": { PRODUCT: product },
            "containers": [{
                "name": "work",
                "image": "registry.k8s.io/pause:3.10",
                "resources": { "limits": { GPU: gpus.to_string(), "cpu": "100m", "memory": "64Mi" } }
            }]
        }
    }))
    .expect("pod manifest")
}

#[tokio::test]
async fn api_server_reports_the_pinned_kubernetes_version() {
    let Some(env) = Env::from_env("api_server_reports_the_pinned_kubernetes_version").await else {
        return;
    };
    let info = env.client.apiserver_version().await.expect("/version");
    assert_eq!(info.git_version, env.k8s_version());
}

#[tokio::test]
async fn simulated_nodes_are_ready_with_gfd_labels_and_gpu_capacity() {
    let Some(env) =
        Env::from_env("simulated_nodes_are_ready_with_gfd_labels_and_gpu_capacity").await
    else {
        return;
    };
    let nodes = simulated_nodes(&env).await;
    assert!(!nodes.is_empty(), "the cluster has no simulated nodes");
    let mut gpu_nodes = 0;
    for node in &nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        assert!(is_ready(node), "{name} is not Ready");
        let actual = labels(node);
        let model: Model = actual[MODEL_LABEL].parse().expect("model label");
        let index: u32 = name
            .rsplit('-')
            .next()
            .and_then(|i| i.parse().ok())
            .expect("index");
        let expected = node_manifest(model, index);
        for (k, v) in labels(&expected) {
            assert_eq!(actual.get(&k), Some(&v), "{name}: label {k}");
        }
        let status = node.status.clone().unwrap_or_default();
        let (capacity, allocatable) = (
            status.capacity.unwrap_or_default(),
            status.allocatable.unwrap_or_default(),
        );
        match model.gpu() {
            Some(gpu) => {
                gpu_nodes += 1;
                assert_eq!(actual[PRODUCT], gpu.product);
                assert_eq!(actual["nvidia.com/gpu.count"], gpu.count.to_string());
                assert_eq!(
                    capacity.get(GPU).map(|q| q.0.clone()),
                    Some(gpu.count.to_string()),
                    "{name}: capacity"
                );
                assert_eq!(
                    allocatable.get(GPU).map(|q| q.0.clone()),
                    Some(gpu.count.to_string()),
                    "{name}: allocatable"
                );
            }
            None => {
                assert!(
                    actual.keys().all(|k| !k.starts_with("nvidia.com/")),
                    "{name}: {actual:?}"
                );
                assert!(
                    !capacity.contains_key(GPU),
                    "{name}: GPU capacity on a CPU node"
                );
            }
        }
        for r in ["cpu", "memory", "pods"] {
            assert!(allocatable.contains_key(r), "{name}: no allocatable {r}");
        }
    }
    assert!(
        gpu_nodes > 0,
        "no GPU nodes among {} simulated nodes",
        nodes.len()
    );
}

#[tokio::test]
async fn scheduler_binds_a_gpu_pod_to_a_node_with_the_requested_product() {
    let Some(env) =
        Env::from_env("scheduler_binds_a_gpu_pod_to_a_node_with_the_requested_product").await
    else {
        return;
    };
    // The rarest product in the cluster, so that a placement ignoring the selector fails.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for node in simulated_nodes(&env).await {
        if let Some(p) = labels(&node).get(PRODUCT) {
            *counts.entry(p.clone()).or_default() += 1;
        }
    }
    let product = counts
        .iter()
        .min_by_key(|(_, n)| **n)
        .map(|(p, _)| p.clone())
        .expect("a GPU node");
    let ns = env.test_namespace("smoke-sched").await.expect("namespace");
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    pods.create(&PostParams::default(), &gpu_pod("one-gpu", &product, 1))
        .await
        .expect("create pod");
    pods.create(&PostParams::default(), &gpu_pod("nine-gpus", &product, 9))
        .await
        .expect("create pod");

    let node_name = wait_for(
        "one-gpu bound",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async { pods.get("one-gpu").await.ok()?.spec?.node_name },
    )
    .await;
    let node = Api::<Node>::all(env.client.clone())
        .get(&node_name)
        .await
        .expect("node");
    assert_eq!(
        labels(&node).get(PRODUCT),
        Some(&product),
        "bound to {node_name}"
    );
    // kwok runs the pod on the simulated node.
    wait_for(
        "one-gpu Running",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async { (pods.get("one-gpu").await.ok()?.status?.phase? == "Running").then_some(()) },
    )
    .await;
    // No node has 9 GPUs: the scheduler must leave that pod Unschedulable.
    let reason = wait_for(
        "nine-gpus Unschedulable",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async {
            let pod = pods.get("nine-gpus").await.ok()?;
            let cond = pod
                .status?
                .conditions?
                .into_iter()
                .find(|c| c.type_ == "PodScheduled")?;
            (cond.status == "False").then_some(cond.reason.unwrap_or_default())
        },
    )
    .await;
    assert_eq!(reason, "Unschedulable");
    let pod = pods.get("nine-gpus").await.expect("pod");
    assert_eq!(pod.spec.and_then(|s| s.node_name), None);
    zop_e2e::delete_namespace(&env.client, &ns).await;
}

#[tokio::test]
async fn controller_manager_completes_namespace_deletion() {
    let Some(env) = Env::from_env("controller_manager_completes_namespace_deletion").await else {
        return;
    };
    let ns = env.test_namespace("smoke-nsdel").await.expect("namespace");
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "data" }, "data": { "k": "v" }
    }))
    .expect("configmap");
    Api::<ConfigMap>::namespaced(env.client.clone(), &ns)
        .create(&PostParams::default(), &cm)
        .await
        .expect("create configmap");
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
    // The API server only marks it Terminating; the namespace controller empties and removes it.
    wait_for(
        &format!("namespace {ns} gone"),
        Duration::from_secs(90),
        Duration::from_millis(500),
        || async {
            match namespaces.get_opt(&ns).await {
                Ok(None) => Some(()),
                _ => None,
            }
        },
    )
    .await;
}
