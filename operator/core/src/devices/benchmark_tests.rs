use super::*;
use crate::api::Device;
use crate::scheduler::fixtures::DeviceBuilder;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

const NOW: i64 = 1_800_000_000;

fn measured(mut d: Device, at: i64, driver: Option<&str>) -> Device {
    let b = d.status.as_mut().unwrap().benchmark.as_mut().unwrap();
    b.measured_at = Some(Time(Timestamp::from_second(at).unwrap()));
    b.driver_version = driver.map(str::to_owned);
    d
}

fn node(name: &str) -> Device {
    DeviceBuilder::h100(name).node().build()
}

fn pod(device: &str, phase: Option<&str>, created: i64) -> BenchPod {
    BenchPod {
        name: pod_name(device),
        device: device.into(),
        phase: phase.map(str::to_owned),
        created,
        failure: None,
    }
}

#[test]
fn due_on_onboarding_on_schedule_and_on_a_driver_change() {
    let policy = Policy::default();
    let fresh = node("a");
    // The fixture's benchmark carries no time: never measured by the operator.
    assert_eq!(
        due(fresh.status.as_ref(), NOW, policy.interval),
        Some(Reason::Onboarded)
    );
    assert_eq!(due(None, NOW, policy.interval), Some(Reason::Onboarded));
    let recent = measured(node("a"), NOW - 60, Some("570.86"));
    assert_eq!(due(recent.status.as_ref(), NOW, policy.interval), None);
    let old = measured(node("a"), NOW - policy.interval, Some("570.86"));
    assert_eq!(
        due(old.status.as_ref(), NOW, policy.interval),
        Some(Reason::Scheduled)
    );
    let upgraded = measured(node("a"), NOW - 60, Some("550.54"));
    assert_eq!(
        due(upgraded.status.as_ref(), NOW, policy.interval),
        Some(Reason::DriverChanged)
    );
    // A CPU node names no driver: only time makes it due.
    let cpu = measured(DeviceBuilder::cpu("c").node().build(), NOW - 60, None);
    assert_eq!(due(cpu.status.as_ref(), NOW, policy.interval), None);
}

#[test]
fn a_pass_starts_pods_for_due_node_devices_only_within_parallelism() {
    let policy = Policy {
        parallelism: 2,
        ..Policy::default()
    };
    let devices = vec![
        node("a"),
        node("b"),
        node("c"),
        DeviceBuilder::h100("agent").build(),
        DeviceBuilder::h100("off")
            .node()
            .phase(DevicePhase::Offline)
            .build(),
        measured(node("done"), NOW - 5, Some("570.86")),
    ];
    let pass = plan(&devices, &[], &HashMap::new(), NOW, &policy);
    let started: Vec<_> = pass.start.iter().map(|s| s.device.as_str()).collect();
    assert_eq!(started, ["a", "b"]);
    // Limited to providers: the fixtures' provider is `acme`.
    let others = Policy {
        providers: vec!["other".into()],
        ..policy.clone()
    };
    assert!(
        plan(&devices, &[], &HashMap::new(), NOW, &others)
            .start
            .is_empty()
    );
    assert_eq!(pass.start[0].gpus, 1);
    assert_eq!(pass.start[0].reason, Reason::Onboarded);
    // With a's Pod running, one slot is left, and a is not started twice.
    let pass = plan(
        &devices,
        &[pod("a", Some("Running"), NOW - 5)],
        &HashMap::new(),
        NOW,
        &policy,
    );
    let started: Vec<_> = pass.start.iter().map(|s| s.device.as_str()).collect();
    assert_eq!(started, ["b"]);
    assert!(pass.remove.is_empty());
}

#[test]
fn finished_and_overdue_pods_are_removed_and_failures_wait_for_the_retry() {
    let policy = Policy::default();
    let pods = [
        pod("a", Some("Succeeded"), NOW - 30),
        pod("b", Some("Failed"), NOW - 30),
        pod("c", Some("Running"), NOW - policy.timeout),
        pod("d", None, NOW - 10),
    ];
    let devices = vec![node("a"), node("b"), node("c"), node("d")];
    let attempts: HashMap<String, i64> = ["a", "b", "c", "d"]
        .iter()
        .map(|d| (d.to_string(), NOW - 30))
        .collect();
    let pass = plan(&devices, &pods, &attempts, NOW, &policy);
    let removed: Vec<_> = pass
        .remove
        .iter()
        .map(|r| (r.device.as_str(), r.failure.is_some()))
        .collect();
    assert_eq!(removed, [("a", false), ("b", true), ("c", true)]);
    // Nothing restarts before the retry period, and the pass says when to look again.
    assert!(pass.start.is_empty());
    assert_eq!(pass.next_in, policy.retry - 30);
    let later = plan(&devices, &[], &attempts, NOW + policy.retry, &policy);
    assert_eq!(later.start.len(), 4);
}

#[test]
fn pod_names_fit_the_api_limit() {
    assert_eq!(pod_name("gpu-01"), "zop-bench-gpu-01");
    let long = "n".repeat(253);
    let name = pod_name(&long);
    assert!(name.len() <= 253, "{}", name.len());
    assert_ne!(pod_name(&long), pod_name(&"n".repeat(252)));
}
