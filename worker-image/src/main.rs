//! `zop-worker`: the process that executes fragments on a device. This file only parses
//! the command line and prints; the work lives in the `zop_worker` library.

use clap::{Parser, Subcommand};
use std::time::Duration;
use zop_worker::account::{self, AccountArgs};
use zop_worker::agent::{self, AgentArgs};
use zop_worker::bench::{self, BenchConfig};
use zop_worker::node_bench::{self, BenchmarkArgs};
use zop_worker::pod::{self, PodArgs};
use zop_worker::probe::{self, ProbeReport};
use zop_worker::shutdown::Shutdown;

/// The ZopToken worker.
#[derive(Debug, Parser)]
#[command(name = "zop-worker", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Identify this machine, run the short benchmark and print both as JSON
    /// (`{"identification": …, "benchmark": …}`).
    Probe {
        /// One compact JSON line instead of pretty-printed JSON.
        #[arg(long)]
        json: bool,
        /// Benchmark duration in milliseconds; 0 skips the benchmark.
        #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(0..=60_000))]
        bench_ms: u64,
        /// Also print the raw measurements to stderr.
        #[arg(long)]
        verbose: bool,
    },
    /// Join the network with a Group Key and heartbeat until SIGINT or SIGTERM.
    Agent(AgentArgs),
    /// Run one assignment inside a worker Pod, authenticated by its projected token.
    Pod(PodArgs),
    /// Inside a node benchmark Pod: probe, benchmark, and report through the gateway
    /// with the Pod's projected token; prints the gateway's verdict as JSON.
    Benchmark(BenchmarkArgs),
    /// Read your provider account, or ask for a withdrawal, a bond or an unbond, with
    /// your Group Key.
    Account(AccountArgs),
}

fn main() -> anyhow::Result<()> {
    // First, while nothing has loaded a CUDA library: CUDA 13's or an override's
    // libraries are linked where cudarc looks, by running again if need be.
    zop_worker::cuda::relink();
    match Cli::parse().command {
        Command::Agent(args) => {
            logging();
            until_done(|stop| agent::run(args, stop))?;
        }
        Command::Account(args) => {
            if let Err(e) = until_done(|_| account::run(args)) {
                eprintln!("error: {e:#}");
                std::process::exit(1);
            }
        }
        Command::Pod(args) => {
            logging();
            until_done(|stop| pod::run(args, stop))?;
        }
        Command::Benchmark(args) => {
            logging();
            let verdict = until_done(|stop| node_bench::run(args, stop))?;
            println!("{}", serde_json::to_string(&verdict)?);
        }
        Command::Probe {
            json,
            bench_ms,
            verbose,
        } => {
            let identification = probe::identify();
            let benchmark = (bench_ms > 0).then(|| {
                let cfg = BenchConfig {
                    duration: Duration::from_millis(bench_ms),
                    ..BenchConfig::default()
                };
                let m = bench::measure(&cfg);
                if verbose {
                    eprintln!("{m:#?}\nratios: {:?}", m.timings.ratios());
                }
                m.benchmark()
            });
            let report = ProbeReport {
                identification,
                benchmark,
            };
            let out = if json {
                serde_json::to_string(&report)?
            } else {
                serde_json::to_string_pretty(&report)?
            };
            println!("{out}");
        }
    }
    Ok(())
}

fn logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Runs a mode with SIGINT and SIGTERM as its stop request. Blocking work the mode
/// abandoned on a stop (a benchmark under way) is not waited for.
fn until_done<T, F>(mode: impl FnOnce(Shutdown) -> F) -> anyhow::Result<T>
where
    F: Future<Output = anyhow::Result<T>>,
{
    let runtime = tokio::runtime::Runtime::new()?;
    let out = runtime.block_on(async { mode(Shutdown::on_signals()?).await });
    runtime.shutdown_timeout(Duration::from_millis(500));
    out
}
