//! `bench-scheduling`: end-to-end placement on the local control plane, side by side
//! with kube-scheduler and with the API server's raw Pod-create rate. On a cluster of
//! simulated GPU nodes labelled for onboarding, it times
//! 1. one ComputeTask of N single-fragment assignments, from creation until its N worker
//!    Pods exist bound to their nodes;
//! 2. N equivalent Pods (one `nvidia.com/gpu`, a GPU nodeSelector) created by a client
//!    with the operator's write concurrency, until kube-scheduler has bound them all;
//! 3. N such Pods created already bound (`nodeName`) at the same concurrency: the rate
//!    at which this API server takes Pods at all, the ceiling for any scheduler here.
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
use zop_e2e::{Env, client_for, delete_namespace, install_crds};
use zop_operator::api::{ComputeTask, Device, DevicePhase};

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

async fn bound(client: &Client, ns: &str, selector: &str) -> anyhow::Result<usize> {
    Ok(Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(selector))
        .await?
        .items
        .iter()
        .filter(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some()))
        .count())
}

async fn until_bound(client: &Client, ns: &str, selector: &str, n: usize) -> anyhow::Result<()> {
    let start = Instant::now();
    while bound(client, ns, selector).await? < n {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(600),
            "not all pods bound in 600s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
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
    let client = client_for(&args.kubeconfig).await?;
    let env = Env {
        client: client.clone(),
        kubeconfig: args.kubeconfig.clone(),
    };
    install_crds(&client).await?;
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

    // The API server's raw rate: the same Pods, created already bound.
    let raw_ns = env.test_namespace("bench-raw").await?;
    let nodes: Vec<String> = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .list_metadata(&ListParams::default().labels("zoptoken.io/onboard=true"))
        .await?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    anyhow::ensure!(!nodes.is_empty(), "no onboarded node to bind raw pods to");
    let raw_pods: Vec<Pod> = (0..args.pods)
        .map(|i| {
            let mut p = pod(i, "raw");
            if let Some(spec) = p.spec.as_mut() {
                spec.node_name = Some(nodes[i as usize % nodes.len()].clone());
                spec.node_selector = None;
            }
            p
        })
        .collect();
    let api: Api<Pod> = Api::namespaced(client.clone(), &raw_ns);
    let t0 = Instant::now();
    stream::iter(raw_pods)
        .map(|p| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &p).await }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<Vec<_>>()
        .await?;
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
        "raw Pod creates:    {} pods created bound in {:.2}s ({:.0} pods/s, concurrency {})",
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
