//! A tampered node's benchmark, for the node-benchmark test only: the pod runner runs it
//! on a "tampered" node in place of `zop-worker benchmark`. It takes the same options,
//! and reports with the benchmark Pod's real token whatever `ZOP_LIES` says for its node
//! (`NODE_NAME`, from the Pod): `node=score[:model],…`. The gateway's verdict is printed.

use clap::Parser;
use zop_operator::api::device::{Benchmark, GpuInfo};
use zop_operator::api::protocol::BenchmarkReport;
use zop_worker::pod::PodAuth;

#[derive(Debug, Parser)]
struct Args {
    /// The worker's mode, as the Pod names it (`benchmark`).
    mode: String,
    #[command(flatten)]
    auth: PodAuth,
}

/// The lie for `node` in `lies`: the score, and the GPU model the run claims to have seen.
fn lie(lies: &str, node: &str) -> Option<(u64, Option<String>)> {
    let (_, what) = lies
        .split(',')
        .filter_map(|l| l.split_once('='))
        .find(|(n, _)| *n == node)?;
    let (score, model) = match what.split_once(':') {
        Some((s, m)) => (s, Some(m.to_string())),
        None => (what, None),
    };
    Some((score.parse().ok()?, model))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.mode == "benchmark",
        "only the benchmark mode lies here"
    );
    let node = std::env::var("NODE_NAME")?;
    let (score, model) = lie(&std::env::var("ZOP_LIES")?, &node)
        .ok_or_else(|| anyhow::anyhow!("ZOP_LIES names no lie for node {node}"))?;
    let report = BenchmarkReport {
        benchmark: Benchmark {
            score,
            memory_bandwidth_mbps: 300_000,
            fingerprint: "v1:0,8,16,-41".into(),
            measured_at: None,
            driver_version: None,
        },
        gpus: model
            .map(|model| GpuInfo {
                model,
                vram_mib: 23_034,
                ..Default::default()
            })
            .into_iter()
            .collect(),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let verdict = runtime.block_on(async {
        let (client, bearer) = args.auth.client()?;
        anyhow::Ok(client.benchmark(bearer, &report).await?)
    })?;
    println!("{}", serde_json::to_string(&verdict)?);
    Ok(())
}
