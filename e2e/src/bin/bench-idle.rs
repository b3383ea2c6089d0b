//! `bench-idle`: what idle tasks cost the operator. It starts `zop-operator run` on the
//! local control plane, submits N tasks that can never be placed (they ask for a GPU
//! model no device has, and the no-device timeout is an hour, so they stay queued and are
//! reconciled and cycled over all along), waits until every one has been seen, then
//! measures the operator's CPU time (user + system, from `/proc/PID/stat`) over a window.
//! A benchmark: it prints figures, asserts none.
//!
//!   cargo build --release --workspace --bins
//!   ZOP_BIN_PROFILE=release ZOP_KUBECONFIG=$(e2e/cluster kubeconfig) target/release/bench-idle

use clap::Parser;
use futures::{StreamExt, TryStreamExt, stream};
use kube::Api;
use kube::api::{ListParams, PostParams};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use zop_e2e::operator::Operator;
use zop_e2e::{Env, delete_namespace};
use zop_operator::api::ComputeTask;

#[derive(Debug, Parser)]
#[command(name = "bench-idle", about)]
struct Args {
    /// Kubeconfig of the cluster.
    #[arg(long, env = "ZOP_KUBECONFIG")]
    kubeconfig: PathBuf,
    /// Idle tasks.
    #[arg(long, default_value_t = 100)]
    tasks: u32,
    /// Seconds of measurement.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
}

/// User plus system CPU seconds of process `pid` so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which may hold spaces) start after ") ".
    let rest = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Clock ticks per second: 100 on every Linux this runs on (sysconf(_SC_CLK_TCK)).
    Some((utime + stime) / 100.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let env = Env::for_benchmark(&args.kubeconfig).await?;
    let client = env.client.clone();
    let op_ns = env.test_namespace("idle-op").await?;
    let ns = env.test_namespace("idle-tasks").await?;
    let mut operator = Operator::start(
        &env,
        "bench-idle",
        &op_ns,
        &[
            "--default-provider",
            "bench",
            "--no-device-timeout-seconds",
            "3600",
        ],
    )
    .await?;
    let pid = operator
        .child
        .0
        .as_ref()
        .map(std::process::Child::id)
        .unwrap_or(0);
    let api: Api<ComputeTask> = Api::namespaced(client.clone(), &ns);
    stream::iter(0..args.tasks)
        .map(|i| {
            let api = api.clone();
            async move {
                let t: ComputeTask = serde_json::from_value(serde_json::json!({
                    "apiVersion": "zoptoken.io/v1alpha1", "kind": "ComputeTask",
                    "metadata": { "name": format!("idle-{i:04}") },
                    "spec": {
                        "type": "compute-proof",
                        "computeProof": { "dimension": 64, "products": 1000, "seed": 1 },
                        "fragments": { "count": 1000 },
                        "requirements": { "gpuModels": ["NVIDIA-B200-NOWHERE"] },
                    },
                }))?;
                api.create(&PostParams::default(), &t).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    let seen = Instant::now();
    loop {
        let with_status = api
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|t| t.status.as_ref().is_some_and(|s| !s.conditions.is_empty()))
            .count();
        if with_status >= args.tasks as usize || seen.elapsed() > Duration::from_secs(120) {
            println!(
                "{with_status} of {} tasks reconciled and queued",
                args.tasks
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Let the submissions' own work settle before measuring.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let before = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let after = cpu_seconds(pid);
    match (before, after) {
        (Some(b), Some(a)) => println!(
            "operator CPU with {} idle tasks: {:.2} s over {} s = {:.2} CPU s per minute",
            args.tasks,
            a - b,
            args.seconds,
            (a - b) * 60.0 / args.seconds as f64
        ),
        _ => println!("operator CPU: unreadable (no /proc)"),
    }
    // The finalizers need the operator: delete the tasks before stopping it.
    api.delete_collection(&Default::default(), &ListParams::default())
        .await?;
    let cleanup = Instant::now();
    while !api.list(&ListParams::default()).await?.items.is_empty()
        && cleanup.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    operator.child.terminate(Duration::from_secs(10));
    for ns in [&ns, &op_ns] {
        delete_namespace(&client, ns).await;
    }
    Ok(())
}
