//! What executes fragments in this process, shared by pod and agent modes: the device
//! executor (opened once: the GPU path needs a context and compiled kernels) and the
//! worker's metrics with their endpoint. Owns the `--device` and `--metrics-bind`
//! options.

use crate::metrics::WorkerMetrics;
use anyhow::Context;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use zop_kernels::fragment::executor::{DevicePreference, Executor};

/// Where fragments may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceArg {
    /// The GPU when one can be opened, else the CPU.
    Auto,
    /// The CPU only.
    Cpu,
    /// The GPU; the worker refuses to start without one.
    Gpu,
}

/// Execution options shared by `zop-worker pod` and `zop-worker agent`.
#[derive(Debug, Clone, clap::Args)]
pub struct EngineArgs {
    /// Where fragments run. Compute-proof fragments use the GPU path when there is one;
    /// the other kinds, and any fragment the GPU path fails, run on the CPU.
    #[arg(long, env = "ZOP_DEVICE", value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// Serve Prometheus metrics (`/metrics`) and `/healthz` on this address (port 0
    /// picks a free port); no endpoint when omitted.
    #[arg(long, env = "ZOP_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,
}

/// The executor and the metrics of this worker process.
#[derive(Debug)]
pub struct Engine {
    /// Runs fragments on the device.
    pub executor: Executor,
    /// What was executed.
    pub metrics: WorkerMetrics,
    registry: Arc<Registry>,
}

impl Engine {
    /// An engine over `executor`, with fresh metrics.
    pub fn new(executor: Executor) -> Self {
        let mut registry = zop_operator::metrics::registry();
        let metrics = WorkerMetrics::register(&mut registry);
        Self {
            executor,
            metrics,
            registry: Arc::new(registry),
        }
    }

    /// Opens the device `args` ask for (compiling the GPU kernels can take a second, so
    /// this runs off the async threads).
    pub async fn open(args: &EngineArgs) -> anyhow::Result<Arc<Self>> {
        let preference = match args.device {
            DeviceArg::Auto => DevicePreference::Auto,
            DeviceArg::Cpu => DevicePreference::Cpu,
            DeviceArg::Gpu => DevicePreference::Gpu,
        };
        let executor = tokio::task::spawn_blocking(move || Executor::open(preference))
            .await?
            .context("--device gpu: the GPU path cannot be opened")?;
        match (executor.gpu_name(), executor.gpu_absent()) {
            (Some(gpu), _) => tracing::info!(%gpu, "fragments run on the GPU where they can"),
            (None, why) => tracing::info!(why = why.unwrap_or(""), "fragments run on the CPU"),
        }
        Ok(Arc::new(Self::new(executor)))
    }

    /// Serves the metrics until `stop` turns true, when `--metrics-bind` asks for it.
    pub async fn serve_metrics(
        &self,
        args: &EngineArgs,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Option<JoinHandle<()>>> {
        match args.metrics_bind {
            Some(bind) => Ok(Some(
                zop_operator::metrics::serve(bind, self.registry.clone(), stop).await?,
            )),
            None => Ok(None),
        }
    }
}
