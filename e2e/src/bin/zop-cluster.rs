//! `zop-cluster`: the Rust half of `e2e/cluster`: sets the simulated nodes and reports
//! the cluster's status. Starting and stopping processes is the bash half's job, except
//! `pod-runner`, which runs worker pods on the simulated nodes until it is stopped.

use anyhow::Context;
use clap::{Parser, Subcommand};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::ListParams;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use zop_e2e::nodes::{Mix, Model, NodeSummary, scale_nodes, wait_nodes_ready};
use zop_e2e::pod_runner::{PodRunner, RunnerOptions};

#[derive(Debug, Parser)]
#[command(name = "zop-cluster", about)]
struct Cli {
    /// Kubeconfig of the cluster.
    #[arg(long, env = "ZOP_KUBECONFIG")]
    kubeconfig: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Make the simulated nodes exactly the first N of the mix (grow or shrink), then
    /// wait until all are Ready.
    Nodes {
        /// How many simulated nodes the cluster has afterwards.
        count: usize,
        /// Weighted model mix: h100, a100, l4, rtx4090, cpu.
        #[arg(long, default_value = zop_e2e::nodes::DEFAULT_MIX)]
        mix: Mix,
        /// Extra label key=value on every simulated node (repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Seconds to wait for every node to be Ready.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Print the plan (nodes per model, first and last names) and touch nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Server version, nodes by GPU model, Ready count.
    Status,
    /// Stand in for the kubelet of the simulated nodes: run the first container of each
    /// matching pod as a local process, until SIGINT or SIGTERM stops them all.
    PodRunner {
        /// Label selector of the pods to run.
        #[arg(long, default_value = zop_e2e::pod_runner::DEFAULT_SELECTOR)]
        selector: String,
        /// Only pods in this namespace (default: all namespaces).
        #[arg(long)]
        namespace: Option<String>,
        /// Where each process logs, as <namespace>_<pod>.log (default:
        /// target/e2e-logs/pod-runner).
        #[arg(long)]
        log_dir: Option<PathBuf>,
    },
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("'{s}' is not key=value"))
}

fn print_plan(plan: &[(Model, u32)]) {
    for model in Model::ALL {
        let names: Vec<String> = plan
            .iter()
            .filter(|(m, _)| *m == model)
            .map(|(m, i)| m.node_name(*i))
            .collect();
        if let (Some(first), Some(last)) = (names.first(), names.last()) {
            println!("{model:<8} {:>6}  {first} .. {last}", names.len());
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Cmd::Nodes {
        count,
        mix,
        dry_run: true,
        ..
    } = &cli.command
    {
        print_plan(&mix.plan(*count));
        return Ok(());
    }
    let client = zop_e2e::client_for(&cli.kubeconfig).await?;
    match cli.command {
        Cmd::Nodes {
            count,
            mix,
            labels,
            concurrency,
            timeout,
            ..
        } => {
            let start = Instant::now();
            let extra: BTreeMap<String, String> = labels.into_iter().collect();
            let report = scale_nodes(&client, count, &mix, &extra, concurrency).await?;
            let applied = start.elapsed();
            wait_nodes_ready(&client, count, Duration::from_secs(timeout)).await?;
            println!(
                "nodes: {count} simulated nodes Ready in {:.1}s ({} created, {} updated, {} deleted; applied in {:.1}s)",
                start.elapsed().as_secs_f64(),
                report.created,
                report.updated,
                report.deleted,
                applied.as_secs_f64()
            );
        }
        Cmd::Status => {
            let version = client
                .apiserver_version()
                .await
                .context("the API server does not answer")?;
            let nodes = Api::<Node>::all(client.clone())
                .list(&ListParams::default())
                .await?
                .items;
            let summary = NodeSummary::of(&nodes);
            let (total, ready, gpus) = summary.totals();
            println!(
                "kubernetes {}: {total} nodes, {ready} Ready, {gpus} GPUs",
                version.git_version
            );
            println!("{summary}");
        }
        Cmd::PodRunner {
            selector,
            namespace,
            log_dir,
        } => {
            let defaults = RunnerOptions::default();
            let opts = RunnerOptions {
                selector,
                namespace,
                log_dir: log_dir.unwrap_or(defaults.log_dir.clone()),
                ..defaults
            };
            eprintln!(
                "pod-runner: running pods matching '{}' on simulated nodes; logs in {}",
                opts.selector,
                opts.log_dir.display()
            );
            let runner = PodRunner::start(client, opts);
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .context("installing the SIGTERM handler")?;
            tokio::select! {
                r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
                _ = term.recv() => {}
            }
            let stats = runner.shutdown().await;
            eprintln!(
                "pod-runner: stopped; {} processes started, {} finished, {} pods failed to start",
                stats.started, stats.finished, stats.failed_to_start
            );
        }
    }
    Ok(())
}
