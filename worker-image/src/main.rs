//! `zop-worker`: the process that executes fragments on a device. This file only parses
//! the command line and prints; the work lives in the `zop_worker` library.

use clap::{Parser, Subcommand};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use zop_worker::agent::{self, AgentArgs};
use zop_worker::bench::{self, BenchConfig};
use zop_worker::pod::{self, PodArgs};
use zop_worker::probe::{self, ProbeReport};

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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Agent(args) => {
            logging();
            tokio::runtime::Runtime::new()?.block_on(agent::run(args, stop_signal()))?;
        }
        Command::Pod(args) => {
            logging();
            tokio::runtime::Runtime::new()?.block_on(async {
                let stop = Arc::new(AtomicBool::new(false));
                let flag = stop.clone();
                tokio::spawn(async move {
                    stop_signal().await;
                    flag.store(true, Ordering::SeqCst);
                });
                pod::run(args, stop).await
            })?;
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

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
