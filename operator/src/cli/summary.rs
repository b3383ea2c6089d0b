//! Plain-text summaries for `kubectl zop`, pure so they are tested without a cluster.

use crate::api::{ComputeTask, Device};
use kube::ResourceExt;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Devices counted by phase, then by GPU model (or `cpu`).
pub fn devices(devices: &[Device]) -> String {
    let mut by_phase: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_model: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for d in devices {
        let status = d.status.clone().unwrap_or_default();
        *by_phase.entry(format!("{:?}", status.phase)).or_default() += 1;
        let model = status
            .identification
            .as_ref()
            .and_then(|i| i.gpus.first())
            .map_or_else(
                || format!("{:?}", d.spec.class).to_lowercase(),
                |g| g.model.clone(),
            );
        let entry = by_model.entry(model).or_default();
        entry.0 += 1;
        if status.available {
            entry.1 += 1;
        }
    }
    let mut out = format!("{} devices\n", devices.len());
    for (phase, n) in by_phase {
        let _ = writeln!(out, "  {phase:<12} {n}");
    }
    let _ = writeln!(out, "{:<28} {:>7} {:>9}", "MODEL", "DEVICES", "AVAILABLE");
    for (model, (n, avail)) in by_model {
        let _ = writeln!(out, "{model:<28} {n:>7} {avail:>9}");
    }
    out
}

/// One line per task: namespace, name, phase, progress, type.
pub fn tasks(tasks: &[ComputeTask]) -> String {
    let mut out = format!(
        "{:<16} {:<24} {:<10} {:<14} TYPE\n",
        "NAMESPACE", "NAME", "PHASE", "PROGRESS"
    );
    for t in tasks {
        let status = t.status.clone().unwrap_or_default();
        let kind = serde_json::to_value(t.spec.workload).unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<16} {:<24} {:<10} {:<14} {}",
            t.namespace().unwrap_or_default(),
            t.name_any(),
            format!("{:?}", status.phase),
            status.progress,
            kind.as_str().unwrap_or_default(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::device::{
        DeviceSource, DeviceSpec, DeviceStatus, GpuInfo, Identification, NodeSource,
    };
    use crate::api::{DeviceClass, DevicePhase};

    fn device(model: Option<&str>, phase: DevicePhase) -> Device {
        let mut d = Device::new(
            "d",
            DeviceSpec {
                provider: "p".into(),
                source: DeviceSource {
                    node: Some(NodeSource { name: "n".into() }),
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
            .map(|m| {
                vec![GpuInfo {
                    model: m.into(),
                    ..Default::default()
                }]
            })
            .unwrap_or_default();
        d.status = Some(DeviceStatus {
            phase,
            available: phase == DevicePhase::Online,
            identification: Some(Identification {
                gpus,
                ..Default::default()
            }),
            ..Default::default()
        });
        d
    }

    #[test]
    fn the_device_summary_counts_phases_and_models() {
        let out = devices(&[
            device(Some("NVIDIA-L4"), DevicePhase::Online),
            device(Some("NVIDIA-L4"), DevicePhase::Offline),
            device(None, DevicePhase::Online),
        ]);
        assert!(out.starts_with("3 devices\n"), "{out}");
        assert!(out.contains("  Online       2"), "{out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with("NVIDIA-L4") && l.ends_with("2         1")),
            "{out}"
        );
        assert!(out.lines().any(|l| l.starts_with("cpu ")), "{out}");
    }
}
