//! Node benchmarks: runs `zop-worker benchmark` in a Pod on every onboarded Node when it
//! is first onboarded, on a schedule and after a driver change (`devices::benchmark`
//! decides which), and removes the Pods once they end. The Pod reports through the
//! gateway with its Pod-bound token; the gateway checks plausibility and writes the
//! benchmark, so this loop never sees a figure. A periodic pass over the shared Device
//! cache and a label-selected list of the few benchmark Pods: no watch of its own.

use super::{Error, recorder};
use crate::api::Device;
use crate::devices::benchmark::{self, BenchPod, Policy, Remove, Start};
use crate::tasks::worker_pod::{BENCHMARK_APP, BENCHMARK_OF, PodTemplate, benchmark_pod};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::HashMap;
use std::time::Duration;

/// How the benchmarks run.
#[derive(Debug, Clone)]
pub struct BenchmarkConfig {
    /// When and how many.
    pub policy: Policy,
    /// The worker Pod template the benchmark Pods share.
    pub pod: PodTemplate,
    /// The gateway's CA certificate, which the Pods trust.
    pub ca_pem: String,
}

/// Options of the node benchmarks.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeBenchmarkArgs {
    /// Seconds between two benchmarks of a Node; 0 turns node benchmarks off (a
    /// simulated Node benchmarks its host's CPU and is quarantined if it claims a GPU).
    #[arg(
        long,
        env = "ZOP_NODE_BENCHMARK_INTERVAL_SECONDS",
        default_value_t = 86_400
    )]
    pub node_benchmark_interval_seconds: i64,
    /// Seconds before a Node whose benchmark did not land is tried again.
    #[arg(long, default_value_t = 600)]
    pub node_benchmark_retry_seconds: i64,
    /// Seconds a benchmark Pod may run before it is removed.
    #[arg(long, default_value_t = 600)]
    pub node_benchmark_timeout_seconds: i64,
    /// Most benchmark Pods at once.
    #[arg(long, default_value_t = 8)]
    pub node_benchmark_parallelism: usize,
    /// Measure only these providers' Nodes (repeat or comma-separate); all when unset.
    #[arg(long, value_delimiter = ',')]
    pub node_benchmark_providers: Vec<String>,
}

impl NodeBenchmarkArgs {
    /// The configuration, or `None` when node benchmarks are off.
    pub fn config(&self, pod: PodTemplate, ca_pem: String) -> Option<BenchmarkConfig> {
        (self.node_benchmark_interval_seconds > 0).then(|| BenchmarkConfig {
            policy: Policy {
                interval: self.node_benchmark_interval_seconds,
                retry: self.node_benchmark_retry_seconds.max(1),
                timeout: self.node_benchmark_timeout_seconds.max(1),
                parallelism: self.node_benchmark_parallelism.max(1),
                providers: self.node_benchmark_providers.clone(),
            },
            pod,
            ca_pem,
        })
    }
}

/// The longest wait between two passes, so a newly onboarded Node waits at most this.
const MAX_PASS_INTERVAL: Duration = Duration::from_secs(10);

/// Runs passes until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: BenchmarkConfig,
    devices: Store<Device>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let recorder = recorder(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), &config.pod.namespace);
    let mut attempts = HashMap::new();
    // No `wait_until_ready` on the shared store: its readiness wakes only the last task
    // that polled it, which must stay the gateway's. A pass over a store still filling
    // starts nothing it would not start later.
    let passes = async {
        let mut access = false;
        loop {
            if !access {
                let (ns, ca) = (&config.pod.namespace, &config.ca_pem);
                match super::ensure_worker_access(&client, ns, ca).await {
                    Ok(()) => access = true,
                    Err(e) => {
                        tracing::warn!(error = %e, "creating the worker ServiceAccount and CA failed")
                    }
                }
            }
            let wait = match pass(&pods, &config, &devices, &mut attempts, &recorder).await {
                Ok(next_in) => Duration::from_secs(next_in.max(1) as u64).min(MAX_PASS_INTERVAL),
                Err(err) => {
                    tracing::warn!(error = %err, "node benchmark pass failed");
                    super::retry_after(&err)
                }
            };
            tokio::time::sleep(wait).await;
        }
    };
    tokio::select! {
        () = passes => {}
        () = shutdown => {}
    }
}

async fn pass(
    pods: &Api<Pod>,
    config: &BenchmarkConfig,
    devices: &Store<Device>,
    attempts: &mut HashMap<String, i64>,
    recorder: &Recorder,
) -> Result<i64, Error> {
    let now = Timestamp::now().as_second();
    let listed = pods
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/name={BENCHMARK_APP}")))
        .await?;
    let seen: Vec<BenchPod> = listed.items.iter().filter_map(bench_pod).collect();
    let state = devices.state();
    // Forget attempts of devices that are gone, so the map stays as small as the fleet.
    attempts.retain(|d, _| devices.get(&ObjectRef::new(d)).is_some());
    let plan = benchmark::plan(
        state.iter().map(|d| &**d),
        &seen,
        attempts,
        now,
        &config.policy,
    );
    for Remove {
        pod,
        device,
        failure,
    } in plan.remove
    {
        match pods.delete(&pod, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(why) = failure {
            let event = (EventType::Warning, "BenchmarkFailed", "Benchmark");
            publish(recorder, devices, &device, event, why).await;
        }
    }
    for Start {
        device,
        node,
        gpus,
        reason,
    } in plan.start
    {
        let name = benchmark::pod_name(&device);
        let pod = benchmark_pod(&name, &device, &node, gpus, &config.pod)
            .map_err(|e| Error::Invalid(format!("benchmark pod for {device}: {e}")))?;
        match pods.create(&PostParams::default(), &pod).await {
            Ok(_) => {}
            // A Pod left from a pass that was interrupted: the next pass reads it.
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            // Not counted as an attempt: the worker ServiceAccount may not exist yet.
            Err(e) => return Err(e.into()),
        }
        attempts.insert(device.clone(), now);
        tracing::info!(%device, %node, reason = reason.as_str(), "node benchmark started");
        let note = format!(
            "benchmark Pod {name} started on node {node} ({})",
            reason.as_str()
        );
        let event = (EventType::Normal, "BenchmarkStarted", reason.as_str());
        publish(recorder, devices, &device, event, note).await;
    }
    Ok(plan.next_in)
}

/// A listed Pod as the pass sees it; one without the device annotation is not ours.
fn bench_pod(p: &Pod) -> Option<BenchPod> {
    let status = p.status.as_ref();
    let failure = status.and_then(|s| {
        let terminated = s
            .container_statuses
            .iter()
            .flatten()
            .find_map(|c| c.state.as_ref()?.terminated.as_ref());
        let message = terminated
            .map(|t| {
                format!(
                    "the benchmark exited with code {}{}",
                    t.exit_code,
                    t.message
                        .as_ref()
                        .map_or_else(String::new, |m| format!(": {m}"))
                )
            })
            .or_else(|| s.message.clone());
        (s.phase.as_deref() == Some("Failed")).then(|| message.unwrap_or_default())
    });
    Some(BenchPod {
        name: p.name_any(),
        device: p.annotations().get(BENCHMARK_OF)?.clone(),
        phase: status.and_then(|s| s.phase.clone()),
        created: p
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second()),
        failure: failure.filter(|f| !f.is_empty()),
    })
}

/// Publishes an Event on a Device. The recorder folds Events of one type, reason and
/// action into a series, so the action names the trigger: each kind stays visible.
async fn publish(
    recorder: &Recorder,
    devices: &Store<Device>,
    device: &str,
    (type_, reason, action): (EventType, &str, &str),
    note: String,
) {
    let Some(d) = devices.get(&ObjectRef::new(device)) else {
        return;
    };
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(err) = recorder.publish(&event, &d.object_ref(&())).await {
        tracing::warn!(error = %err, %device, "publishing event failed");
    }
}
