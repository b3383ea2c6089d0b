//! The worker Pod for an assignment on a cluster Node: created in the operator's own
//! namespace (so no tenant can create, patch or impersonate one, and its annotation is a
//! record only the operator writes), bound to the Node by `nodeName`, restricted
//! (non-root, read-only root filesystem, no privilege escalation, no capabilities), with
//! no Kubernetes credentials but a projected service-account token whose audience is the
//! gateway's. The task controller's finalizer deletes it with its task. Pure.

use super::assignment::Assignment;
use crate::labels;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

/// Where the token and the gateway CA are mounted in the worker container.
pub const SECRETS_DIR: &str = "/var/run/secrets/zoptoken";
/// The ServiceAccount worker Pods run as, in the operator's namespace.
pub const SERVICE_ACCOUNT: &str = "zop-worker";
/// The ConfigMap with the gateway's CA certificate, in the operator's namespace.
pub const CA_CONFIG_MAP: &str = "zop-gateway-ca";
/// Its key.
pub const CA_KEY: &str = "ca.crt";
/// The worker's metrics port (`zop-worker --metrics-bind`), named `metrics` in the Pod.
pub const METRICS_PORT: u16 = 9464;

/// What every worker Pod shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodTemplate {
    /// The operator's namespace, where every worker Pod runs.
    pub namespace: String,
    /// The worker image.
    pub image: String,
    /// The gateway URL workers call.
    pub gateway_url: String,
    /// The audience of the projected token.
    pub audience: String,
    /// Token lifetime in seconds (the kubelet refreshes it at 80%).
    pub token_seconds: i64,
}

/// The Pod running assignment `a` (named [`super::record::name`]) on `node`;
/// `gpus` is how many `nvidia.com/gpu` it requests (0 for CPU work).
pub fn worker_pod(
    a: &Assignment,
    name: &str,
    node: &str,
    gpus: u32,
    t: &PodTemplate,
) -> Result<Pod, serde_json::Error> {
    let metadata = json!({
        "name": name,
        "namespace": t.namespace,
        "labels": {
            "app.kubernetes.io/name": "zop-worker",
            labels::MANAGED_BY: labels::MANAGER,
            labels::TASK: super::record::label_value(&a.task),
            labels::TASK_UID: a.task_uid,
            labels::TASK_NAMESPACE: a.task_namespace,
            labels::DEVICE: super::record::label_value(&a.device),
        },
        "annotations": {
            super::record::POD_ANNOTATION: serde_json::to_string(a)?,
            "prometheus.io/scrape": "true",
            "prometheus.io/port": METRICS_PORT.to_string(),
        },
    });
    let args = vec!["pod".to_string(), "--assignment".into(), name.into()];
    restricted_pod(metadata, node, gpus, args, t)
}

/// The name of benchmark Pods (`app.kubernetes.io/name`), apart from worker Pods so
/// that no task controller or scheduler index ever reads one as work.
pub const BENCHMARK_APP: &str = "zop-benchmark";
/// The annotation naming the Device a benchmark Pod measures; only the operator writes
/// Pods in its namespace, so the gateway trusts it.
pub const BENCHMARK_OF: &str = "zoptoken.io/benchmark-of";

/// The benchmark Pod of `device` on `node`: `zop-worker benchmark`, which probes,
/// measures and reports through the gateway with its Pod-bound token. It requests one
/// GPU when the node has any, so it measures a GPU the scheduler handed it.
pub fn benchmark_pod(
    name: &str,
    device: &str,
    node: &str,
    gpus: u32,
    t: &PodTemplate,
) -> Result<Pod, serde_json::Error> {
    let metadata = json!({
        "name": name,
        "namespace": t.namespace,
        "labels": {
            "app.kubernetes.io/name": BENCHMARK_APP,
            labels::MANAGED_BY: labels::MANAGER,
            labels::DEVICE: super::record::label_value(device),
        },
        "annotations": { BENCHMARK_OF: device },
    });
    restricted_pod(metadata, node, gpus.min(1), vec!["benchmark".into()], t)
}

/// What every Pod the operator runs on a node shares: bound by `nodeName`, restricted,
/// no API credentials, the gateway's token and CA projected; `args` lead the worker's
/// command line, the gateway options follow.
fn restricted_pod(
    metadata: serde_json::Value,
    node: &str,
    gpus: u32,
    mut args: Vec<String>,
    t: &PodTemplate,
) -> Result<Pod, serde_json::Error> {
    let resources = if gpus > 0 {
        json!({
            "requests": { "cpu": "500m", "memory": "512Mi", labels::gfd::RESOURCE: gpus.to_string() },
            "limits": { "cpu": "2", "memory": "2Gi", labels::gfd::RESOURCE: gpus.to_string() },
        })
    } else {
        json!({
            "requests": { "cpu": "500m", "memory": "256Mi" },
            "limits": { "cpu": "2", "memory": "1Gi" },
        })
    };
    args.extend([
        "--gateway".to_string(),
        t.gateway_url.clone(),
        "--token-file".into(),
        format!("{SECRETS_DIR}/token"),
        "--ca-cert".into(),
        format!("{SECRETS_DIR}/{CA_KEY}"),
    ]);
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "serviceAccountName": SERVICE_ACCOUNT,
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "terminationGracePeriodSeconds": 30,
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": 65532,
                "runAsGroup": 65532,
                "seccompProfile": { "type": "RuntimeDefault" },
            },
            "tolerations": [{ "key": labels::gfd::RESOURCE, "operator": "Exists", "effect": "NoSchedule" }],
            "containers": [{
                "name": "worker",
                "image": t.image,
                "command": ["zop-worker"],
                "args": args,
                "env": [
                    { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
                    { "name": "NODE_NAME", "valueFrom": { "fieldRef": { "fieldPath": "spec.nodeName" } } },
                    { "name": "ZOP_METRICS_BIND", "value": format!("0.0.0.0:{METRICS_PORT}") },
                ],
                "ports": [{ "name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP" }],
                "resources": resources,
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "privileged": false,
                    "capabilities": { "drop": ["ALL"] },
                },
                "volumeMounts": [{ "name": "zoptoken", "mountPath": SECRETS_DIR, "readOnly": true }],
            }],
            "volumes": [{
                "name": "zoptoken",
                "projected": { "sources": [
                    { "serviceAccountToken": { "audience": t.audience, "expirationSeconds": t.token_seconds, "path": "token" } },
                    { "configMap": { "name": CA_CONFIG_MAP, "items": [{ "key": CA_KEY, "path": CA_KEY }] } },
                ] },
            }],
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::assignment::State;

    #[test]
    fn worker_pods_run_in_the_operator_namespace_bound_restricted_and_credential_free() {
        let a = Assignment {
            task_namespace: "team-a".into(),
            task: "proof".into(),
            task_uid: "u-1".into(),
            device: "gpu-h100-0001".into(),
            start: 0,
            end: 1,
            attempt: 0,
            state: State::Pending,
            results: vec![],
            created_ms: 0,
            updated_ms: 0,
            pod_uid: None,
            claim_mismatches: 0,
            replay: false,
        };
        let t = PodTemplate {
            namespace: "zoptoken-system".into(),
            image: "zoptoken/zop-worker:test".into(),
            gateway_url: "https://zop-gateway.zoptoken-system.svc:8443".into(),
            audience: "zoptoken-gateway".into(),
            token_seconds: 3600,
        };
        let pod = worker_pod(&a, "zop-u1-0-0", "gpu-h100-0001", 1, &t).unwrap();
        let pod_again = pod.clone();
        let spec = pod.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("gpu-h100-0001"));
        assert_eq!(spec.automount_service_account_token, Some(false));
        // Out of the tenant's namespace: only the operator writes there.
        assert_eq!(pod.metadata.namespace.as_deref(), Some("zoptoken-system"));
        assert_eq!(
            pod.metadata.labels.as_ref().unwrap()["zoptoken.io/task-namespace"],
            "team-a"
        );
        let c = &spec.containers[0];
        let sc = c.security_context.clone().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.capabilities.unwrap().drop.unwrap(), ["ALL"]);
        assert_eq!(spec.security_context.unwrap().run_as_non_root, Some(true));
        let limits = c.resources.clone().unwrap().limits.unwrap();
        assert_eq!(limits["nvidia.com/gpu"].0, "1");
        // The worker serves its metrics on the named port the annotations advertise.
        let port = &c.ports.clone().unwrap()[0];
        assert_eq!(
            (port.name.as_deref(), port.container_port),
            (Some("metrics"), 9464)
        );
        let bind = c
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "ZOP_METRICS_BIND");
        assert_eq!(bind.and_then(|e| e.value.as_deref()), Some("0.0.0.0:9464"));
        let notes = pod_again.metadata.annotations.clone().unwrap();
        assert_eq!(notes["prometheus.io/port"], "9464");
        let projected = spec.volumes.unwrap()[0].projected.clone().unwrap();
        let sat = projected.sources.unwrap()[0]
            .service_account_token
            .clone()
            .unwrap();
        assert_eq!(sat.audience.as_deref(), Some("zoptoken-gateway"));
        assert_eq!(crate::tasks::record::from_pod(&pod_again), Some(a));
    }

    #[test]
    fn benchmark_pods_are_not_worker_pods_and_name_their_device() {
        let t = PodTemplate {
            namespace: "zoptoken-system".into(),
            image: "zoptoken/zop-worker:test".into(),
            gateway_url: "https://gw:8443".into(),
            audience: "zoptoken-gateway".into(),
            token_seconds: 600,
        };
        let pod = benchmark_pod("zop-bench-n1", "n1", "n1", 8, &t).unwrap();
        let meta = &pod.metadata;
        assert_eq!(
            meta.labels.as_ref().unwrap()["app.kubernetes.io/name"],
            BENCHMARK_APP
        );
        assert_eq!(meta.annotations.as_ref().unwrap()[BENCHMARK_OF], "n1");
        assert_eq!(crate::tasks::record::from_pod(&pod), None);
        let spec = pod.spec.unwrap();
        let c = &spec.containers[0];
        // One GPU, whatever the node has: the benchmark measures one.
        assert_eq!(
            c.resources.clone().unwrap().limits.unwrap()["nvidia.com/gpu"].0,
            "1"
        );
        let args = c.args.clone().unwrap();
        assert_eq!(args[0], "benchmark");
        assert!(
            args.windows(2)
                .any(|w| w == ["--gateway", "https://gw:8443"])
        );
        assert_eq!(spec.service_account_name.as_deref(), Some(SERVICE_ACCOUNT));
        let cpu = benchmark_pod("zop-bench-c", "c", "c", 0, &t).unwrap();
        let limits = cpu.spec.unwrap().containers[0]
            .resources
            .clone()
            .unwrap()
            .limits
            .unwrap();
        assert!(!limits.contains_key("nvidia.com/gpu"));
    }
}
