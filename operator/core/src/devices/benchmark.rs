//! When a Node device is measured: its first benchmark after onboarding, again on a
//! schedule, and again when its Node names another GPU driver. One pass over the
//! Devices and the benchmark Pods decides which Pods to start and which to remove; the
//! controller only carries it out. Pure; times are Unix seconds.

use crate::api::DevicePhase;
use crate::api::device::{Device, DeviceStatus};
use std::collections::{BTreeMap, HashMap};

/// Why a device is measured now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// It has never been measured.
    Onboarded,
    /// Its last measurement is older than the interval.
    Scheduled,
    /// Its Node names another driver than the one it was measured under.
    DriverChanged,
}

impl Reason {
    /// A word for Events and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Onboarded => "Onboarded",
            Self::Scheduled => "Scheduled",
            Self::DriverChanged => "DriverChanged",
        }
    }
}

/// How often, how long, how many, and whose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Seconds between two measurements of a device.
    pub interval: i64,
    /// Seconds before a device whose benchmark did not land is tried again.
    pub retry: i64,
    /// Seconds a benchmark Pod may live before it is removed.
    pub timeout: i64,
    /// Most benchmark Pods at once, so onboarding a rack does not flood the cluster.
    pub parallelism: usize,
    /// Only these providers' Nodes are measured; every provider's when empty.
    pub providers: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            interval: 86_400,
            retry: 600,
            timeout: 600,
            parallelism: 8,
            providers: Vec::new(),
        }
    }
}

/// The driver a Node device's labels name now, if any.
fn current_driver(status: &DeviceStatus) -> Option<&str> {
    let gpu = status.identification.as_ref()?.gpus.first()?;
    Some(gpu.driver_version.as_str()).filter(|d| !d.is_empty())
}

/// Whether a device is due for a measurement, and why.
pub fn due(status: Option<&DeviceStatus>, now: i64, interval: i64) -> Option<Reason> {
    let Some(status) = status else {
        return Some(Reason::Onboarded);
    };
    let Some(b) = &status.benchmark else {
        return Some(Reason::Onboarded);
    };
    let Some(at) = b.measured_at.as_ref().map(|t| t.0.as_second()) else {
        return Some(Reason::Onboarded);
    };
    if let Some(driver) = current_driver(status)
        && b.driver_version.as_deref() != Some(driver)
    {
        return Some(Reason::DriverChanged);
    }
    (now - at >= interval).then_some(Reason::Scheduled)
}

/// A benchmark Pod as the pass sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchPod {
    /// Its name.
    pub name: String,
    /// The Device it measures.
    pub device: String,
    /// Its phase, when the kubelet wrote one.
    pub phase: Option<String>,
    /// When it was created.
    pub created: i64,
    /// Why it failed, when it did.
    pub failure: Option<String>,
}

/// A benchmark Pod to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// The Device.
    pub device: String,
    /// Its Node.
    pub node: String,
    /// GPUs the Node has (the Pod requests one when there are any).
    pub gpus: u32,
    /// Why now.
    pub reason: Reason,
}

/// A benchmark Pod to remove, and what to say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remove {
    /// The Pod.
    pub pod: String,
    /// Its Device.
    pub device: String,
    /// Why the measurement did not land, when it did not.
    pub failure: Option<String>,
}

/// What one pass decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    /// Pods to start.
    pub start: Vec<Start>,
    /// Pods to remove.
    pub remove: Vec<Remove>,
    /// Seconds until time alone may change the outcome.
    pub next_in: i64,
}

/// Decides one pass. `attempts` holds when each device's last Pod started, so a
/// benchmark that keeps failing is retried after [`Policy::retry`], not in a loop.
pub fn plan<'a>(
    devices: impl IntoIterator<Item = &'a Device>,
    pods: &[BenchPod],
    attempts: &HashMap<String, i64>,
    now: i64,
    policy: &Policy,
) -> Pass {
    let mut pass = Pass {
        next_in: policy.retry.min(policy.interval).max(1),
        ..Pass::default()
    };
    let mut live: BTreeMap<&str, &BenchPod> = BTreeMap::new();
    for p in pods {
        let finished = matches!(p.phase.as_deref(), Some("Succeeded" | "Failed"));
        let overdue = now - p.created >= policy.timeout;
        if finished || overdue {
            let failure = match p.phase.as_deref() {
                Some("Succeeded") => None,
                Some("Failed") => {
                    Some(p.failure.clone().unwrap_or_else(|| "the pod failed".into()))
                }
                _ => Some(format!("no result within {} s", policy.timeout)),
            };
            pass.remove.push(Remove {
                pod: p.name.clone(),
                device: p.device.clone(),
                failure,
            });
        } else {
            live.insert(&p.device, p);
        }
    }
    let mut room = policy.parallelism.saturating_sub(live.len());
    for d in devices {
        let Some(node) = &d.spec.source.node else {
            continue;
        };
        if !policy.providers.is_empty() && !policy.providers.contains(&d.spec.provider) {
            continue;
        }
        let name = d.metadata.name.as_deref().unwrap_or_default();
        let status = d.status.as_ref();
        let measurable = status
            .is_some_and(|s| matches!(s.phase, DevicePhase::Online | DevicePhase::Quarantined));
        if !measurable || live.contains_key(name) {
            continue;
        }
        if let Some(at) = attempts.get(name)
            && now - at < policy.retry
        {
            pass.next_in = pass.next_in.min(policy.retry - (now - at)).max(1);
            continue;
        }
        let Some(reason) = due(status, now, policy.interval) else {
            continue;
        };
        if room == 0 {
            break;
        }
        room -= 1;
        let gpus = status
            .and_then(|s| s.identification.as_ref())
            .map_or(0, |i| u32::try_from(i.gpus.len()).unwrap_or(u32::MAX));
        pass.start.push(Start {
            device: name.to_string(),
            node: node.name.clone(),
            gpus,
            reason,
        });
    }
    pass
}

/// The benchmark Pod name of a device: `zop-bench-<device>`, shortened with a hash of
/// the full name when it would pass the 253 characters a Pod name may have.
pub fn pod_name(device: &str) -> String {
    let name = format!("zop-bench-{device}");
    if name.len() <= 253 {
        return name;
    }
    let digest = crate::scheduler::hash::fnv1a(device.as_bytes());
    let head: String = device.chars().take(200).collect();
    format!(
        "zop-bench-{}-{digest:016x}",
        head.trim_end_matches(['-', '.'])
    )
}

#[cfg(test)]
#[path = "benchmark_tests.rs"]
mod tests;
