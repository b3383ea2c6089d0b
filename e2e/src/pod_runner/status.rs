//! The pod status the runner writes, as a kubelet would: Running with the process, and
//! Terminated (or never started) with the exit code and reason.

use super::*;

/// How a process ended, as a container status says it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Termination {
    /// The exit code; 128 + the signal for a process killed by one.
    pub(super) exit_code: i32,
    /// The signal that killed it.
    pub(super) signal: Option<i32>,
    /// `Completed` for exit code 0, else `Error`.
    pub(super) reason: String,
    /// `pod-runner://<pid>`.
    pub(super) container_id: String,
    /// When the process started.
    pub(super) started_at: Time,
    /// When it was reaped.
    pub(super) finished_at: Time,
}

impl Termination {
    pub(super) fn of(status: ExitStatus, pid: u32, started_at: Time, finished_at: Time) -> Self {
        let signal = status.signal();
        let exit_code = status
            .code()
            .or_else(|| signal.map(|s| 128 + s))
            .unwrap_or(1);
        Self {
            exit_code,
            signal,
            reason: if exit_code == 0 { "Completed" } else { "Error" }.to_string(),
            container_id: container_id(pid),
            started_at,
            finished_at,
        }
    }
}

pub(super) fn container_id(pid: u32) -> String {
    format!("pod-runner://{pid}")
}

/// Statuses of every container but the first, as they are (only the first is run).
pub(super) fn other_statuses(pod: &Pod) -> Vec<serde_json::Value> {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter(|s| {
            pod.spec
                .as_ref()
                .and_then(|spec| spec.containers.first())
                .is_none_or(|c| c.name != s.name)
        })
        .filter_map(|s| serde_json::to_value(s).ok())
        .collect()
}

pub(super) fn first_container(pod: &Pod) -> (String, String) {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
        .unwrap_or_default()
}

/// A strategic-merge patch of the pod status: the first container running.
pub(super) fn running_status(pod: &Pod, pid: u32, started_at: &Time) -> serde_json::Value {
    let (name, image) = first_container(pod);
    let mut statuses = vec![serde_json::json!({
        "name": name, "image": image, "imageID": "", "containerID": container_id(pid),
        "ready": true, "started": true, "restartCount": 0,
        "state": { "running": { "startedAt": started_at } },
    })];
    statuses.extend(other_statuses(pod));
    serde_json::json!({ "status": { "containerStatuses": statuses } })
}

/// A strategic-merge patch of the pod status: terminal phase, the first container
/// terminated, Ready and ContainersReady False.
pub(super) fn terminated_status(pod: &Pod, t: &Termination) -> serde_json::Value {
    let (name, image) = first_container(pod);
    let phase = if t.exit_code == 0 {
        "Succeeded"
    } else {
        "Failed"
    };
    let mut terminated = serde_json::json!({
        "exitCode": t.exit_code, "reason": t.reason, "containerID": t.container_id,
        "startedAt": t.started_at, "finishedAt": t.finished_at,
    });
    if let Some(signal) = t.signal {
        terminated["signal"] = signal.into();
    }
    let mut statuses = vec![serde_json::json!({
        "name": name, "image": image, "imageID": "", "containerID": t.container_id,
        "ready": false, "started": false, "restartCount": 0,
        "state": { "terminated": terminated },
    })];
    statuses.extend(other_statuses(pod));
    serde_json::json!({ "status": {
        "phase": phase,
        "conditions": not_ready_conditions(&t.finished_at, "PodCompleted", None),
        "containerStatuses": statuses,
    }})
}

/// A strategic-merge patch of the pod status: Failed before the process could start.
pub(super) fn not_started_status(pod: &Pod, error: &RunError, at: &Time) -> serde_json::Value {
    let (name, image) = first_container(pod);
    let mut statuses = vec![serde_json::json!({
        "name": name, "image": image, "imageID": "",
        "ready": false, "started": false, "restartCount": 0,
        "state": { "terminated": {
            "exitCode": NOT_STARTED_EXIT_CODE, "reason": error.reason(), "message": error.message(),
            "startedAt": at, "finishedAt": at,
        }},
    })];
    statuses.extend(other_statuses(pod));
    serde_json::json!({ "status": {
        "phase": "Failed",
        "reason": error.reason(),
        "message": error.message(),
        "conditions": not_ready_conditions(at, error.reason(), Some(error.message())),
        "containerStatuses": statuses,
    }})
}

pub(super) fn not_ready_conditions(
    at: &Time,
    reason: &str,
    message: Option<&str>,
) -> serde_json::Value {
    let condition = |type_: &str| {
        let mut c = serde_json::json!({
            "type": type_, "status": "False", "reason": reason, "lastTransitionTime": at,
        });
        if let Some(m) = message {
            c["message"] = m.into();
        }
        c
    };
    serde_json::json!([condition("Ready"), condition("ContainersReady")])
}

/// Writes a status patch, retrying transient errors; a pod already gone is fine.
pub(super) async fn patch_status(pods: &Api<Pod>, pod_ref: &PodRef, patch: &serde_json::Value) {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    for attempt in 1..=5 {
        match pods
            .patch_status(&pod_ref.name, &params, &Patch::Strategic(patch))
            .await
        {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.code == 404 => return,
            Err(kube::Error::Api(s)) if s.code == 422 || s.code == 400 => {
                eprintln!("pod-runner: {pod_ref}: status rejected: {}", s.message);
                return;
            }
            Err(e) => {
                eprintln!("pod-runner: {pod_ref}: writing status (attempt {attempt}): {e}");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
        }
    }
}
