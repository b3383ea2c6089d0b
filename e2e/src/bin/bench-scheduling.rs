//! `bench-scheduling`: end-to-end placement on the local control plane, side by side
//! with kube-scheduler and with the API server's raw Pod-create rate. On a cluster of
//! simulated GPU nodes labelled for onboarding, it times
//! 1. one ComputeTask of N single-fragment assignments, from creation until its N worker
//!    Pods exist bound to their nodes;
//! 2. N equivalent Pods (one `nvidia.com/gpu`, a GPU nodeSelector) created by a client
//!    with the operator's write concurrency, until kube-scheduler has bound them all;
//! 3. N of the operator's own worker Pods (the same builder) created already bound by a
//!    plain client at the same concurrency: the rate at which this API server takes those
//!    Pods at all, the ceiling for the operator here.
//!
//! Prints the three times, the ratios, and the operator's peak memory. A benchmark: it
//! prints figures, asserts none. kube-scheduler runs as the cluster was started: with its
//! default client limits, or raised (`e2e/cluster up --scheduler-config
//! e2e/scripts/kube-scheduler-raised-limits.yaml`); `--scheduler-label` names which.
//!
//!   e2e/cluster nodes 1000 --mix h100=4,a100=3,l4=2,rtx4090=1 --label zoptoken.io/onboard=true
//!   cargo build --release --workspace --bins
//!   ZOP_BIN_PROFILE=release ZOP_KUBECONFIG=$(e2e/cluster kubeconfig) target/release/bench-scheduling

use anyhow::Context;
use clap::Parser;
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use zop_e2e::operator::Operator;
use zop_e2e::{Env, delete_namespace};
use zop_operator::api::{ComputeTask, Device, DevicePhase};
use zop_operator::tasks::assignment::{Assignment, State};
use zop_operator::tasks::record;
use zop_operator::tasks::worker_pod::{self, PodTemplate};

#[derive(Debug, Parser)]
#[command(name = "bench-scheduling", about)]
struct Args {
    /// Kubeconfig of the cluster.
    #[arg(long, env = "ZOP_KUBECONFIG")]
    kubeconfig: PathBuf,
    /// Pods to place, each way.
    #[arg(long, default_value_t = 1000)]
    pods: u32,
    /// Concurrency of the clients creating kube-scheduler's and the raw pods (the
    /// operator's scheduler loop writes 128 placements at once).
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// How the cluster's kube-scheduler is configured, for the report.
    #[arg(long, default_value = "default client limits")]
    scheduler_label: String,
}

/// Waits until `n` Pods matching `selector` in `ns` are bound to a node, from a watch (a
/// poll that lists every Pod would load the API server it measures).
async fn until_bound(client: &Client, ns: &str, selector: &str, n: usize) -> anyhow::Result<()> {
    use kube::runtime::{WatchStreamExt, watcher};
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut bound = std::collections::HashSet::new();
    let events = watcher(api, watcher::Config::default().labels(selector)).applied_objects();
    let mut events = std::pin::pin!(events);
    let deadline = tokio::time::sleep(Duration::from_secs(600));
    let mut deadline = std::pin::pin!(deadline);
    while bound.len() < n {
        tokio::select! {
            () = &mut deadline => anyhow::bail!("not all pods bound in 600s"),
            event = events.next() => match event {
                Some(Ok(p)) => {
                    if p.spec.as_ref().is_some_and(|s| s.node_name.is_some()) {
                        bound.insert(p.metadata.name.unwrap_or_default());
                    }
                }
                Some(Err(e)) => eprintln!("watching pods: {e}"),
                None => anyhow::bail!("the pod watch ended"),
            },
        }
    }
    Ok(())
}

/// A Pod as kube-scheduler would get it: one GPU, a GPU nodeSelector, labelled `bench=KIND`.
fn pod(i: u32, kind: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": format!("gpu-{i:05}"), "labels": { "bench": kind } },
        "spec": {
            "nodeSelector": { "nvidia.com/gpu.present": "true" },
            "tolerations": [{ "key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule" }],
            "automountServiceAccountToken": false,
            "containers": [{
                "name": "worker", "image": "zoptoken/zop-worker:bench",
                "resources": {
                    "requests": { "cpu": "500m", "memory": "512Mi", "nvidia.com/gpu": "1" },
                    "limits": { "cpu": "2", "memory": "2Gi", "nvidia.com/gpu": "1" },
                },
            }],
        },
    }))
    .expect("a valid pod")
}

fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let env = Env::for_benchmark(&args.kubeconfig).await?;
    let client = env.client.clone();
    let op_ns = env.test_namespace("bench-op").await?;
    let ours_ns = env.test_namespace("bench-ours").await?;
    let kube_ns = env.test_namespace("bench-kube").await?;
    let mut operator = Operator::start(
        &env,
        "bench-scheduling",
        &op_ns,
        &[
            "--default-provider",
            "bench",
            "--max-assignments",
            &args.pods.to_string(),
        ],
    )
    .await?;
    let pid = operator
        .child
        .0
        .as_ref()
        .map(std::process::Child::id)
        .unwrap_or(0);
    let devices = Api::<Device>::all(client.clone());
    let labelled = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .list_metadata(&ListParams::default().labels("zoptoken.io/onboard=true"))
        .await?
        .items
        .len();
    let start = Instant::now();
    let online = loop {
        let online = devices
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|d| {
                d.status
                    .as_ref()
                    .is_some_and(|s| s.phase == DevicePhase::Online)
            })
            .filter(|d| d.spec.source.node.is_some())
            .count();
        if online >= labelled {
            break online;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(120),
            "too few Online node devices: {online}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!(
        "cluster: {online} Online GPU node devices; placing {} pods each way",
        args.pods
    );

    // Ours: one task, one single-fragment assignment (one bound Pod) per fragment.
    let task: ComputeTask = serde_json::from_value(serde_json::json!({
        "apiVersion": "zoptoken.io/v1alpha1", "kind": "ComputeTask",
        "metadata": { "name": "bench" },
        "spec": {
            "type": "compute-proof",
            "computeProof": { "dimension": 64, "products": args.pods, "seed": 1 },
            "fragments": { "count": args.pods },
            "requirements": { "deviceClass": "gpu" },
        },
    }))?;
    let t0 = Instant::now();
    let created = Api::<ComputeTask>::namespaced(client.clone(), &ours_ns)
        .create(&PostParams::default(), &task)
        .await?;
    let uid = created.uid().context("the task has no uid")?;
    // Worker Pods run in the operator's namespace.
    until_bound(
        &client,
        &op_ns,
        &format!("zoptoken.io/task-uid={uid}"),
        args.pods as usize,
    )
    .await?;
    let ours = t0.elapsed();

    // kube-scheduler: equivalent Pods, created by a client, bound by the scheduler.
    let pods: Vec<Pod> = (0..args.pods).map(|i| pod(i, "kube-scheduler")).collect();
    let api: Api<Pod> = Api::namespaced(client.clone(), &kube_ns);
    let t0 = Instant::now();
    stream::iter(pods)
        .map(|p| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &p).await }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    until_bound(
        &client,
        &kube_ns,
        "bench=kube-scheduler",
        args.pods as usize,
    )
    .await?;
    let kube = t0.elapsed();

    // The API server's raw rate: the operator's own worker Pods (the same builder, the same
    // ServiceAccount, annotations and volumes), created already bound, by a plain client.
    let raw_ns = env.test_namespace("bench-raw").await?;
    let sa: k8s_openapi::api::core::v1::ServiceAccount = serde_json::from_value(
        serde_json::json!({ "metadata": { "name": worker_pod::SERVICE_ACCOUNT } }),
    )?;
    Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), &raw_ns)
        .create(&PostParams::default(), &sa)
        .await?;
    let nodes: Vec<String> = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .list_metadata(&ListParams::default().labels("zoptoken.io/onboard=true"))
        .await?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    anyhow::ensure!(!nodes.is_empty(), "no onboarded node to bind raw pods to");
    let template = PodTemplate {
        namespace: raw_ns.clone(),
        image: "zoptoken/zop-worker:bench".into(),
        gateway_url: "https://zop-gateway.bench.svc:8443".into(),
        audience: "zoptoken-gateway".into(),
        token_seconds: 3600,
    };
    let raw_pods: Vec<Pod> = (0..args.pods)
        .map(|i| {
            let a = Assignment {
                task_namespace: ours_ns.clone(),
                task: "bench".into(),
                task_uid: "raw-0000-0000".into(),
                device: nodes[i as usize % nodes.len()].clone(),
                start: i,
                end: i + 1,
                attempt: 0,
                state: State::Pending,
                results: Vec::new(),
                created_ms: 0,
                updated_ms: 0,
                pod_uid: None,
                claim_mismatches: 0,
                replay: false,
            };
            let name = record::name(&a.task_uid, a.start, a.attempt);
            worker_pod::worker_pod(&a, &name, &a.device, 1, &template)
        })
        .collect::<Result<_, _>>()?;
    let api: Api<Pod> = Api::namespaced(client.clone(), &raw_ns);
    let t0 = Instant::now();
    // Timed as the others: until a watch has seen every Pod bound.
    let watched = until_bound(
        &client,
        &raw_ns,
        "zoptoken.io/task-uid=raw-0000-0000",
        args.pods as usize,
    );
    let created = stream::iter(raw_pods)
        .map(|p| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &p).await }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<Vec<_>>();
    let (watched, created) = tokio::join!(watched, created);
    watched?;
    created?;
    let raw = t0.elapsed();

    let rss = peak_rss_mib(pid);
    println!(
        "zoptoken scheduler: {} pods bound in {:.2}s ({:.0} pods/s)",
        args.pods,
        ours.as_secs_f64(),
        f64::from(args.pods) / ours.as_secs_f64()
    );
    println!(
        "kube-scheduler:     {} pods bound in {:.2}s ({:.0} pods/s)",
        args.pods,
        kube.as_secs_f64(),
        f64::from(args.pods) / kube.as_secs_f64()
    );
    println!(
        "raw worker Pod creates: {} pods created bound in {:.2}s ({:.0} pods/s, concurrency {})",
        args.pods,
        raw.as_secs_f64(),
        f64::from(args.pods) / raw.as_secs_f64(),
        args.concurrency
    );
    println!(
        "ratio (kube-scheduler [{}] time / ours): {:.2}x",
        args.scheduler_label,
        kube.as_secs_f64() / ours.as_secs_f64()
    );
    println!(
        "ours as a share of the raw create rate: {:.0}%",
        100.0 * raw.as_secs_f64() / ours.as_secs_f64()
    );
    match rss {
        Some(m) => println!("operator peak memory (VmHWM): {m:.0} MiB"),
        None => println!("operator peak memory: unreadable (no /proc)"),
    }

    let _ = Api::<ComputeTask>::namespaced(client.clone(), &ours_ns)
        .delete("bench", &DeleteParams::default())
        .await;
    // The finalizer needs the operator: wait for it before stopping the operator.
    let tasks = Api::<ComputeTask>::namespaced(client.clone(), &ours_ns);
    let cleanup = Instant::now();
    while tasks.get_opt("bench").await?.is_some() && cleanup.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    operator.child.terminate(Duration::from_secs(10));
    for ns in [&ours_ns, &kube_ns, &raw_ns, &op_ns] {
        delete_namespace(&client, ns).await;
    }
    Ok(())
}
