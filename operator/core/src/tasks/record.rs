//! How an assignment is persisted: one ConfigMap in the operator's namespace per
//! assignment, out of requesters' reach, labelled with its task and device. One object
//! per assignment keeps every write small and bounded (a batch of fragments' results),
//! and gives each assignment exactly one writer at a time: the gateway while its worker
//! reports, the task controller when it is lost. An assignment on a cluster Node starts
//! out as its worker Pod's annotation, so a placement costs one write; its ConfigMap is
//! created with the first result or the loss. Pure.

use super::assignment::Assignment;
use crate::labels;
use k8s_openapi::api::core::v1::ConfigMap;
use std::collections::BTreeMap;

/// Data key of the assignment's JSON.
pub const DATA_KEY: &str = "assignment.json";
/// Annotation of a worker Pod holding its assignment as created: the record until the
/// assignment's ConfigMap exists.
pub const POD_ANNOTATION: &str = "zoptoken.io/assignment";

/// The assignment's name, also its worker Pod's name: stable for one task, first
/// fragment and attempt, so a retried create never makes a second one.
pub fn name(task_uid: &str, start: u32, attempt: u32) -> String {
    let uid: String = task_uid
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect::<String>()
        .to_ascii_lowercase();
    format!("zop-{uid}-{start}-{attempt}")
}

/// Labels that find a task's assignments.
pub fn selector(task_uid: &str) -> String {
    format!("{}={task_uid}", labels::TASK_UID)
}

/// The ConfigMap holding `a` in `namespace`.
pub fn to_config_map(namespace: &str, a: &Assignment) -> Result<ConfigMap, serde_json::Error> {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name(&a.task_uid, a.start, a.attempt));
    cm.metadata.namespace = Some(namespace.to_string());
    cm.metadata.labels = Some(BTreeMap::from([
        (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
        (labels::ASSIGNMENT.to_string(), "true".to_string()),
        (labels::TASK_UID.to_string(), a.task_uid.clone()),
        (labels::DEVICE.to_string(), label_value(&a.device)),
    ]));
    cm.data = Some(BTreeMap::from([(
        DATA_KEY.to_string(),
        serde_json::to_string(a)?,
    )]));
    Ok(cm)
}

/// The assignment in a ConfigMap; `None` when it is not one or is malformed.
pub fn from_config_map(cm: &ConfigMap) -> Option<Assignment> {
    let text = cm.data.as_ref()?.get(DATA_KEY)?;
    serde_json::from_str(text).ok()
}

/// The assignment a worker Pod was created for; `None` when it carries none.
pub fn from_pod(pod: &k8s_openapi::api::core::v1::Pod) -> Option<Assignment> {
    let text = pod.metadata.annotations.as_ref()?.get(POD_ANNOTATION)?;
    serde_json::from_str(text).ok()
}

/// A label value for a name that may be longer than 63 characters.
pub fn label_value(s: &str) -> String {
    let mut v: String = s.chars().take(63).collect();
    while v.ends_with(['-', '.', '_']) {
        v.pop();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::assignment::State;

    #[test]
    fn round_trips_and_names_are_stable_dns_labels() {
        let a = Assignment {
            task_namespace: "team-a".into(),
            task: "proof".into(),
            task_uid: "6F1C2A4B-77aa-4f00-9d2e-0123456789ab".into(),
            device: "gpu-h100-0001".into(),
            start: 40,
            end: 50,
            attempt: 2,
            state: State::Pending,
            results: vec![],
            created_ms: 1,
            updated_ms: 1,
            pod_uid: None,
            claim_mismatches: 0,
            replay: false,
        };
        let cm = to_config_map("zoptoken-system", &a).unwrap();
        assert_eq!(cm.metadata.name.as_deref(), Some("zop-6f1c2a4b77aa-40-2"));
        assert_eq!(from_config_map(&cm), Some(a));
        assert_eq!(from_config_map(&ConfigMap::default()), None);
        assert_eq!(
            label_value(&format!("{}-x", "a".repeat(62))),
            "a".repeat(62)
        );
    }
}
