//! Tests of the pure `plan` step of the device controller.

use super::*;
use crate::api::DeviceClass;
use crate::api::device::{AgentSource, DeviceSource, DeviceSpec, NodeSource};
use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

fn spec(source: DeviceSource) -> DeviceSpec {
    DeviceSpec {
        provider: "acme".into(),
        source,
        class: DeviceClass::Gpu,
        cordoned: false,
    }
}

fn node_device() -> Device {
    let mut d = Device::new(
        "gpu-1",
        spec(DeviceSource {
            node: Some(NodeSource {
                name: "gpu-1".into(),
            }),
            agent: None,
        }),
    );
    d.metadata.generation = Some(1);
    d
}

fn agent_device(last_heartbeat: Option<i64>) -> Device {
    let mut d = Device::new(
        "agent-acme-h",
        spec(DeviceSource {
            node: None,
            agent: Some(AgentSource {
                group_key: "k".into(),
                hostname: "h".into(),
            }),
        }),
    );
    d.metadata.generation = Some(1);
    d.status = Some(DeviceStatus {
        last_heartbeat: last_heartbeat.map(|s| Time(at(s))),
        ..Default::default()
    });
    d
}

fn node(ready: bool, onboarded: bool) -> Node {
    let mut n = Node::default();
    n.metadata.name = Some("gpu-1".into());
    let mut labels = std::collections::BTreeMap::new();
    if onboarded {
        labels.insert("zoptoken.io/onboard".to_string(), "true".to_string());
    }
    labels.insert(
        "nvidia.com/gpu.product".to_string(),
        "NVIDIA-L4".to_string(),
    );
    n.metadata.labels = Some(labels);
    n.status = Some(NodeStatus {
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    n
}

/// Applies a plan's owned fields to the device, as the API server would.
fn apply(device: &mut Device, plan: &Plan) {
    let mut status = serde_json::to_value(device.status.clone().unwrap_or_default()).unwrap();
    for (k, v) in plan.owned.as_object().unwrap() {
        status[k] = v.clone();
    }
    device.status = Some(serde_json::from_value(status).unwrap());
}

#[test]
fn a_ready_labelled_node_makes_an_online_identified_device_with_an_event() {
    let cfg = Config::default();
    let n = node(true, true);
    let p = plan(&node_device(), Some(Some(&n)), at(1000), &cfg);
    assert_eq!(p.owned["phase"], "Online");
    assert_eq!(p.owned["identification"]["gpus"][0]["model"], "NVIDIA-L4");
    assert_eq!(p.owned["available"], true);
    assert_eq!(p.event.unwrap().to, DevicePhase::Online);
}

#[test]
fn planning_again_after_applying_changes_nothing() {
    let cfg = Config::default();
    let n = node(true, true);
    let mut d = node_device();
    let first = plan(&d, Some(Some(&n)), at(1000), &cfg);
    apply(&mut d, &first);
    let second = plan(&d, Some(Some(&n)), at(1010), &cfg);
    assert_eq!(second.owned, owned_fields(d.status.as_ref(), true));
    assert!(second.event.is_none());
}

#[test]
fn a_deleted_node_turns_its_device_offline_and_unlabelling_retires_it() {
    let cfg = Config::default();
    let mut d = node_device();
    let online = plan(&d, Some(Some(&node(true, true))), at(1000), &cfg);
    apply(&mut d, &online);
    let gone = plan(&d, Some(None), at(2000), &cfg);
    assert_eq!(gone.owned["phase"], "Offline");
    assert_eq!(
        gone.event.as_ref().unwrap().to_event().type_,
        EventType::Warning
    );
    let unlabelled = plan(&d, Some(Some(&node(true, false))), at(2000), &cfg);
    assert_eq!(unlabelled.owned["phase"], "Retired");
}

#[test]
fn an_agent_goes_offline_when_grace_runs_out_and_is_rechecked_in_time() {
    let cfg = Config {
        heartbeat_grace: 30,
        ..Config::default()
    };
    let fresh = plan(&agent_device(Some(1000)), None, at(1010), &cfg);
    assert_eq!(fresh.owned["phase"], "Online");
    assert_eq!(fresh.recheck_after, 20);
    assert!(
        fresh.owned.get("identification").is_none(),
        "agent identification is the gateway's"
    );
    let stale = plan(&agent_device(Some(1000)), None, at(1031), &cfg);
    assert_eq!(stale.owned["phase"], "Offline");
}

#[test]
fn implausible_hardware_quarantines_with_the_reason_in_the_event() {
    let cfg = Config::default();
    let mut d = agent_device(Some(1000));
    d.status.as_mut().unwrap().conditions.push(Condition {
        type_: conditions::PLAUSIBLE.into(),
        status: "False".into(),
        reason: "BenchmarkTooLow".into(),
        message: "score 12 is far below NVIDIA-H100 (expected at least 100000)".into(),
        observed_generation: None,
        last_transition_time: Time(at(1000)),
    });
    let p = plan(&d, None, at(1001), &cfg);
    assert_eq!(p.owned["phase"], "Quarantined");
    let note = p.event.unwrap().to_event().note.unwrap();
    assert!(note.contains("far below"), "{note}");
}

#[test]
fn online_time_is_accounted_once_per_period() {
    let cfg = Config {
        accounting_period: 300,
        ..Config::default()
    };
    let n = node(true, true);
    let mut d = node_device();
    let first = plan(&d, Some(Some(&n)), at(0), &cfg);
    apply(&mut d, &first);
    let early = plan(&d, Some(Some(&n)), at(100), &cfg);
    assert_eq!(early.owned["onlineSeconds"], 0);
    assert_eq!(early.recheck_after, 200);
    let due = plan(&d, Some(Some(&n)), at(300), &cfg);
    assert_eq!(due.owned["onlineSeconds"], 300);
    assert_eq!(due.owned["onlineRatioPermille"], 1000);
}
