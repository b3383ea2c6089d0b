//! Snapshots of every table (`src/cli/snapshots/`): a change to a table shows in review.

use super::*;
use crate::api::device::{
    Benchmark, DeviceSource, DeviceSpec, DeviceStatus, GpuInfo, Identification, NodeSource,
};
use crate::api::task_status::{ComputeTaskStatus, DeviceContribution, FragmentCounts, TaskResult};
use crate::api::{DeviceClass, DevicePhase, TaskPhase};

fn device(name: &str, provider: &str, model: Option<(&str, u64)>, phase: DevicePhase) -> Device {
    let mut d = Device::new(
        name,
        DeviceSpec {
            provider: provider.into(),
            source: DeviceSource {
                node: Some(NodeSource { name: name.into() }),
                agent: None,
            },
            class: if model.is_some() {
                DeviceClass::Gpu
            } else {
                DeviceClass::Cpu
            },
            cordoned: false,
        },
    );
    let gpus = model
        .map(|(m, vram)| {
            vec![GpuInfo {
                model: m.into(),
                vram_mib: vram,
                ..Default::default()
            }]
        })
        .unwrap_or_default();
    let mut status = DeviceStatus {
        phase,
        load: 40,
        identification: Some(Identification {
            gpus,
            ..Default::default()
        }),
        ..Default::default()
    };
    status.reputation.score = 612;
    status.stake = BaseUnits(2_500_000_000);
    // Measured for the GPU, not yet for the agent.
    status.benchmark =
        (!status.identification.as_ref().unwrap().gpus.is_empty()).then(|| Benchmark {
            score: 1_184_302,
            ..Default::default()
        });
    d.status = Some(status);
    d
}

fn task(ns: &str, name: &str, done: u32, total: u32, phase: TaskPhase) -> ComputeTask {
    let mut t: ComputeTask = serde_json::from_value(serde_json::json!({
        "apiVersion": "zoptoken.io/v1alpha1", "kind": "ComputeTask",
        "metadata": { "name": name, "namespace": ns },
        "spec": {
            "type": "compute-proof",
            "computeProof": { "dimension": 64, "products": 8, "seed": 3 },
            "fragments": { "count": total },
            "requirements": { "deviceClass": "gpu" },
        },
    }))
    .unwrap();
    t.status = Some(ComputeTaskStatus {
        phase,
        fragments: FragmentCounts {
            total,
            completed: done,
            verified: done,
            pending: total - done,
            ..Default::default()
        },
        ..Default::default()
    });
    t
}

#[test]
fn the_devices_table() {
    let devices = [
        device(
            "gpu-h100-0001",
            "acme-dc",
            Some(("NVIDIA-H100-80GB-HBM3", 81559)),
            DevicePhase::Online,
        ),
        device("agent-bob-box", "bob", None, DevicePhase::Offline),
    ];
    let rewards = BTreeMap::from([("acme-dc".to_string(), 12_345_678_901)]);
    let rows = device_rows(&devices, Some(&rewards));
    assert_eq!(rows[0].name, "agent-bob-box");
    assert_eq!(rows[1].provider_rewards, Some(12_345_678_901));
    insta::assert_snapshot!("devices", devices_table(&rows));
    let unknown = device_rows(&devices, None);
    assert!(
        devices_table(&unknown)
            .lines()
            .nth(1)
            .unwrap()
            .ends_with(" -")
    );
}

#[test]
fn the_tasks_table_with_progress_bars() {
    let rows = task_rows(&[
        task("team-b", "proof", 4, 4, TaskPhase::Completed),
        task("team-a", "half", 5, 10, TaskPhase::Running),
        task("team-a", "queued", 0, 0, TaskPhase::Pending),
    ]);
    assert_eq!(rows[0].name, "half");
    insta::assert_snapshot!("tasks", tasks_table(&rows));
}

#[test]
fn progress_bars_fill_in_twentieths_and_never_overflow() {
    assert_eq!(progress_bar(0, 0), "[....................]   0%");
    assert_eq!(progress_bar(1, 3), "[######..............]  33%");
    assert_eq!(progress_bar(3, 3), "[####################] 100%");
    assert_eq!(progress_bar(9, 3), "[####################] 100%");
    assert_eq!(
        progress_bar(u32::MAX, u32::MAX),
        "[####################] 100%"
    );
}

#[test]
fn the_task_description() {
    let mut t = task("team-a", "proof", 3, 4, TaskPhase::Running);
    let s = t.status.as_mut().unwrap();
    s.result = Some(TaskResult {
        digest: "ab".repeat(32),
        loss: Some(1.0789),
        accuracy: Some(0.4025),
    });
    s.contributions = vec![DeviceContribution {
        device: "gpu-h100-0001".into(),
        fragments: 3,
        work_units: 12,
        rejected: 0,
    }];
    insta::assert_snapshot!("describe_task", describe_task(&t));
}
