//! `POST /v1/benchmark`: a node benchmark Pod reports what it measured. Only a Pod the
//! operator created for that purpose may report (its Pod-bound token, its label and
//! annotation, its node), and only for the Device it was created for. The claim it is
//! checked against is the Node's own identification (its GPU-feature-discovery labels),
//! which the device controller wrote; the Pod can only add figures.

use super::auth::Principal;
use super::metrics::VerdictLabels;
use super::protocol::{self, ApiError, BenchmarkVerdict};
use super::routes::{FIELD_MANAGER, apply_status, benchmark_fields, body, caller, internal};
use super::{ClientAddr, GatewayState};
use crate::devices::plausibility::{self, Verdict};
use crate::tasks::worker_pod::{BENCHMARK_APP, BENCHMARK_OF};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::{Extension, Json};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;
use std::sync::Arc;

type Result<T> = std::result::Result<T, ApiError>;

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::forbidden("Forbidden", message)
}

/// The Device and Node a benchmark Pod measures, or why the Pod may not report: it must
/// be the Pod the token is bound to (same UID), a running benchmark Pod, and on the node
/// the token names, when it names one.
pub fn benchmark_target(
    pod: &Pod,
    uid: &str,
    token_node: Option<&str>,
) -> std::result::Result<(String, String), &'static str> {
    if pod.metadata.uid.as_deref() != Some(uid) {
        return Err("the pod was replaced since the token was issued");
    }
    if pod
        .labels()
        .get("app.kubernetes.io/name")
        .map(String::as_str)
        != Some(BENCHMARK_APP)
    {
        return Err("only node benchmark pods report benchmarks");
    }
    let device = pod
        .annotations()
        .get(BENCHMARK_OF)
        .ok_or("the benchmark pod names no device")?;
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .ok_or("the benchmark pod is not bound to a node")?;
    if token_node.is_some_and(|n| n != node) {
        return Err("the token was issued on another node");
    }
    if pod.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Running") {
        return Err("the benchmark pod is not running");
    }
    Ok((device.clone(), node))
}

/// `POST /v1/benchmark`.
pub async fn report(
    State(state): State<Arc<GatewayState>>,
    Extension(ClientAddr(addr)): Extension<ClientAddr>,
    headers: HeaderMap,
    raw: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<BenchmarkVerdict>> {
    let req = protocol::decode_benchmark_report(&body(raw)?)?;
    let Principal::WorkerPod { pod, uid, node } = caller(&state, &headers, addr).await? else {
        return Err(forbidden(
            "only node benchmark pods report here; an agent sends its benchmark with a heartbeat",
        ));
    };
    let pod = Api::<Pod>::namespaced(state.client.clone(), &state.config.namespace)
        .get_opt(&pod)
        .await
        .map_err(|e| internal("reading a benchmark pod", e))?
        .ok_or_else(|| forbidden("the pod is gone"))?;
    let (device, node) = benchmark_target(&pod, &uid, node.as_deref()).map_err(forbidden)?;
    let current = state
        .devices
        .get(&ObjectRef::new(&device))
        .ok_or_else(|| forbidden(format!("device {device} does not exist")))?;
    if current.spec.source.node.as_ref().map(|n| n.name.as_str()) != Some(node.as_str()) {
        return Err(forbidden(format!("device {device} is not node {node}'s")));
    }
    let previous = current.status.clone().unwrap_or_default();
    let claimed = previous.identification.clone().ok_or_else(|| ApiError {
        status: 409,
        reason: "NotIdentified",
        message: format!("device {device} is not identified from its node yet; retry"),
    })?;
    let verdict = match plausibility::check_seen(&claimed, &req.gpus, &req.benchmark) {
        Verdict::Plausible => {
            let reference = previous.benchmark.as_ref().map(|b| (&claimed, b));
            plausibility::check(reference, &claimed, &req.benchmark)
        }
        mismatch => mismatch,
    };
    let (reason, message) = match &verdict {
        Verdict::Plausible => (
            "Plausible",
            format!("measured {} GOP/s", req.benchmark.score),
        ),
        Verdict::Implausible { reason, message } => (*reason, message.clone()),
    };
    let mut status = json!({});
    let now = Timestamp::now();
    benchmark_fields(
        &mut status,
        verdict,
        &claimed,
        &req.benchmark,
        Some(&previous),
        now,
    );
    apply_status(&state, &device, FIELD_MANAGER, status).await?;
    state
        .metrics
        .node_benchmarks
        .get_or_create(&VerdictLabels { reason })
        .inc();
    tracing::info!(%device, %node, score = req.benchmark.score, %reason, "node benchmark recorded");
    Ok(Json(BenchmarkVerdict {
        device,
        reason: reason.to_string(),
        message,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(app: &str, device: Option<&str>, node: &str, phase: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": "zop-bench-n1", "uid": "u-1",
                "labels": { "app.kubernetes.io/name": app },
                "annotations": device.map(|d| json!({ BENCHMARK_OF: d })).unwrap_or(json!({})),
            },
            "spec": { "nodeName": node, "containers": [] },
            "status": { "phase": phase },
        }))
        .unwrap()
    }

    #[test]
    fn only_the_running_benchmark_pod_bound_to_the_token_reports_for_its_device() {
        let ok = pod(BENCHMARK_APP, Some("n1"), "n1", "Running");
        assert_eq!(
            benchmark_target(&ok, "u-1", Some("n1")),
            Ok(("n1".into(), "n1".into()))
        );
        assert_eq!(
            benchmark_target(&ok, "u-1", None).map(|t| t.0),
            Ok("n1".into())
        );
        // A task's worker pod, a recreated pod, another node's token, a finished pod.
        let worker = pod("zop-worker", Some("n1"), "n1", "Running");
        assert!(benchmark_target(&worker, "u-1", None).is_err());
        assert!(benchmark_target(&ok, "u-2", None).is_err());
        assert!(benchmark_target(&ok, "u-1", Some("n2")).is_err());
        let done = pod(BENCHMARK_APP, Some("n1"), "n1", "Succeeded");
        assert!(benchmark_target(&done, "u-1", None).is_err());
        let unnamed = pod(BENCHMARK_APP, None, "n1", "Running");
        assert!(benchmark_target(&unnamed, "u-1", None).is_err());
    }
}
