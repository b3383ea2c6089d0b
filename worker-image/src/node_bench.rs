//! Benchmark mode: the worker runs in a benchmark Pod the operator created on a Node,
//! probes the machine, runs the benchmark on the GPU it was given (the CPU when it has
//! none) and reports both through the gateway with its Pod-bound token. The gateway,
//! not this process, decides what the figures mean.

use crate::bench::{self, BenchConfig};
use crate::client::GatewayError;
use crate::pod::PodAuth;
use crate::probe;
use crate::shutdown::Shutdown;
use backon::Retryable;
use std::time::Duration;
use zop_api::protocol::{BenchmarkReport, BenchmarkVerdict};

/// Options of `zop-worker benchmark`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchmarkArgs {
    /// The gateway and the Pod's credentials.
    #[command(flatten)]
    pub auth: PodAuth,
    /// Benchmark duration in milliseconds.
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub bench_ms: u64,
}

/// Measures and reports; the verdict the gateway wrote is returned.
pub async fn run(args: BenchmarkArgs, stop: Shutdown) -> anyhow::Result<BenchmarkVerdict> {
    let (client, bearer) = args.auth.client()?;
    let cfg = BenchConfig {
        duration: Duration::from_millis(args.bench_ms),
        ..BenchConfig::default()
    };
    let measured = tokio::task::spawn_blocking(move || (probe::identify(), bench::run(&cfg)));
    let (identification, benchmark) = stop
        .race(measured)
        .await
        .ok_or_else(|| anyhow::anyhow!("stopped before the benchmark finished"))??;
    let report = BenchmarkReport {
        benchmark,
        gpus: identification.gpus,
    };
    // A Device just onboarded may not be identified from its Node yet (409).
    let sent = (|| client.benchmark(bearer, &report))
        .retry(crate::work::retry())
        .when(|e| e.is_transient() || matches!(e, GatewayError::Refused { status: 409, .. }))
        .notify(|e, after| tracing::warn!(error = %e, ?after, "benchmark report failed; retrying"));
    let verdict = stop
        .race(sent)
        .await
        .ok_or_else(|| anyhow::anyhow!("stopped before the benchmark was reported"))??;
    tracing::info!(
        device = %verdict.device,
        score = report.benchmark.score,
        reason = %verdict.reason,
        "benchmark reported"
    );
    Ok(verdict)
}
