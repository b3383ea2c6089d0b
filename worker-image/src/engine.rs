//! What executes fragments in this process, shared by pod and agent modes: the device
//! executor (opened once: the GPU path needs a context and compiled kernels) and the
//! worker's metrics with their endpoint. Owns the `--device` and `--metrics-bind`
//! options.

use crate::metrics::WorkerMetrics;
use anyhow::Context;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
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
    /// Where fragments run: every kind uses the GPU path when there is one; without one,
    /// and for any fragment the GPU path fails, the CPU path runs.
    #[arg(long, env = "ZOP_DEVICE", value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// Serve Prometheus metrics (`/metrics`) and `/healthz` on this address (port 0
    /// picks a free port); no endpoint when omitted.
    #[arg(long, env = "ZOP_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,
}

/// The executor and the metrics of this worker process, with the metrics endpoint
/// when `--metrics-bind` asks for one.
#[derive(Debug)]
pub struct Engine {
    /// Runs fragments on the device.
    pub executor: Executor,
    /// What was executed.
    pub metrics: WorkerMetrics,
    registry: Arc<Registry>,
    /// The endpoint's stop signal and task, taken by [`Engine::shutdown`].
    server: Mutex<Option<(watch::Sender<bool>, JoinHandle<()>)>>,
}

impl Engine {
    /// An engine over `executor`, with fresh metrics and no endpoint.
    pub fn new(executor: Executor) -> Self {
        let mut registry = crate::metrics::registry();
        let metrics = WorkerMetrics::register(&mut registry);
        Self {
            executor,
            metrics,
            registry: Arc::new(registry),
            server: Mutex::new(None),
        }
    }

    /// Opens the device `args` ask for (compiling the GPU kernels can take a second, so
    /// this runs off the async threads) and starts the metrics endpoint, if any.
    pub async fn start(args: &EngineArgs) -> anyhow::Result<Arc<Self>> {
        let preference = match args.device {
            DeviceArg::Auto => DevicePreference::Auto,
            DeviceArg::Cpu => DevicePreference::Cpu,
            DeviceArg::Gpu => DevicePreference::Gpu,
        };
        let executor = tokio::task::spawn_blocking(move || Executor::open(preference))
            .await?
            .context("--device gpu: the GPU path cannot be opened")?;
        match (executor.gpu_name(), executor.gpu_absent()) {
            (Some(gpu), _) => tracing::info!(%gpu, "fragments run on the GPU"),
            (None, why) => tracing::info!(why = why.unwrap_or(""), "fragments run on the CPU"),
        }
        let engine = Self::new(executor);
        if let Some(bind) = args.metrics_bind {
            let (stop, stopped) = watch::channel(false);
            let task = crate::metrics::serve(bind, engine.registry.clone(), stopped).await?;
            *engine.server.lock().unwrap_or_else(PoisonError::into_inner) = Some((stop, task));
        }
        Ok(Arc::new(engine))
    }

    /// Stops the metrics endpoint and waits for it.
    pub async fn shutdown(&self) {
        let server = self
            .server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((stop, task)) = server {
            let _ = stop.send(true);
            let _ = task.await;
        }
    }
}
