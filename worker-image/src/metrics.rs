//! The worker's Prometheus metrics and the endpoint that serves them on
//! `--metrics-bind`: fragments by kind, device and outcome, work units, seconds spent,
//! GPU-busy seconds (from CUDA events) and the last fragment's kernel throughput.
//! Labels are fixed small sets (kind, device, outcome), never task or device names.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tokio::sync::watch;
use zop_kernels::fragment::executor::Execution;

/// Labels of a fragment count.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FragmentLabels {
    /// The kind (`computeProof`, `training`, `inference`, `dataProcessing`).
    pub kind: String,
    /// `cpu` or `gpu`; `none` for a fragment that could not run.
    pub device: String,
    /// `completed` or `failed`.
    pub outcome: String,
}

/// Labels of the per-kind figures.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The kind.
    pub kind: String,
    /// `cpu` or `gpu`.
    pub device: String,
}

/// Every metric the worker exports.
#[derive(Debug, Clone, Default)]
pub struct WorkerMetrics {
    fragments: Family<FragmentLabels, Counter>,
    work_units: Family<KindLabels, Counter>,
    fragment_seconds: Family<KindLabels, Counter<f64, AtomicU64>>,
    gpu_busy_seconds: Counter<f64, AtomicU64>,
    ops_per_second: Family<KindLabels, Gauge<f64, AtomicU64>>,
}

impl WorkerMetrics {
    /// Registers every metric under `registry` (whose prefix is `zop`).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("worker");
        r.register(
            "fragments",
            "Fragments executed, by kind, device and outcome",
            m.fragments.clone(),
        );
        r.register(
            "work_units",
            "Work units (10^9 operations) of completed fragments",
            m.work_units.clone(),
        );
        r.register(
            "fragment_seconds",
            "Wall-clock seconds spent executing completed fragments",
            m.fragment_seconds.clone(),
        );
        r.register(
            "gpu_busy_seconds",
            "Seconds the GPU was busy with fragments, measured with CUDA events",
            m.gpu_busy_seconds.clone(),
        );
        r.register(
            "kernel_ops_per_second",
            "Operations per second of the last completed fragment",
            m.ops_per_second.clone(),
        );
        // Every kind's work and busy-time series exist from the start, at 0: a counter
        // Prometheus first sees above 0 loses that first increase, and settlement
        // reconciles both.
        for kind in ["computeProof", "training", "inference", "dataProcessing"] {
            for device in ["cpu", "gpu"] {
                let labels = KindLabels {
                    kind: kind.into(),
                    device: device.into(),
                };
                m.work_units.get_or_create(&labels).inc_by(0);
                m.fragment_seconds.get_or_create(&labels).inc_by(0.0);
            }
        }
        m
    }

    /// Records a completed fragment of `kind` worth `work_units` ledger units.
    pub fn completed(&self, kind: &str, e: &Execution, work_units: u64) {
        let labels = KindLabels {
            kind: kind.to_string(),
            device: e.device.as_str().to_string(),
        };
        self.fragments
            .get_or_create(&FragmentLabels {
                kind: kind.to_string(),
                device: labels.device.clone(),
                outcome: "completed".into(),
            })
            .inc();
        self.work_units.get_or_create(&labels).inc_by(work_units);
        self.fragment_seconds
            .get_or_create(&labels)
            .inc_by(e.seconds);
        self.gpu_busy_seconds.inc_by(e.gpu_busy_seconds);
        if e.seconds > 0.0 {
            self.ops_per_second
                .get_or_create(&labels)
                .set(e.output.work_units as f64 / e.seconds);
        }
    }

    /// Records a fragment of `kind` that could not run.
    pub fn failed(&self, kind: &str) {
        self.fragments
            .get_or_create(&FragmentLabels {
                kind: kind.to_string(),
                device: "none".into(),
                outcome: "failed".into(),
            })
            .inc();
    }
}

/// A registry whose metrics all start with `zop_`.
pub fn registry() -> Registry {
    Registry::with_prefix("zop")
}

/// The registry as OpenMetrics text.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// Serves `/metrics` on `bind` until `stop` turns true.
pub async fn serve(
    bind: SocketAddr,
    registry: Arc<Registry>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
                ([("content-type", kind)], render(&registry))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(bind).await.map_err(|e| {
        anyhow::anyhow!("binding the metrics endpoint to {bind}: {e}: is the port in use?")
    })?;
    // The bound address, not `bind`: with port 0 the system picks the port.
    let bound = listener.local_addr().unwrap_or(bind);
    tracing::info!(bind = %bound, "metrics endpoint listening");
    Ok(tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await;
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use zop_kernels::fragment::FragmentOutput;
    use zop_kernels::fragment::executor::Device;

    #[test]
    fn a_completed_and_a_failed_fragment_are_exported() {
        let mut registry = registry();
        let m = WorkerMetrics::register(&mut registry);
        let e = Execution {
            output: FragmentOutput {
                digest: "00".repeat(32),
                work_units: 4_000_000_000,
                metrics: Default::default(),
                quality: None,
            },
            device: Device::Gpu,
            seconds: 2.0,
            gpu_busy_seconds: 1.5,
            gpu_fallback: None,
            commitment: None,
        };
        m.completed("computeProof", &e, 4);
        m.failed("training");
        let text = render(&registry);
        for line in [
            r#"zop_worker_fragments_total{kind="computeProof",device="gpu",outcome="completed"} 1"#,
            r#"zop_worker_fragments_total{kind="training",device="none",outcome="failed"} 1"#,
            r#"zop_worker_work_units_total{kind="computeProof",device="gpu"} 4"#,
            r#"zop_worker_fragment_seconds_total{kind="computeProof",device="gpu"} 2.0"#,
            "zop_worker_gpu_busy_seconds_total 1.5",
            r#"zop_worker_kernel_ops_per_second{kind="computeProof",device="gpu"} 2000000000.0"#,
            // Kinds not run yet are there at 0, for reconciliation's `increase`.
            r#"zop_worker_work_units_total{kind="training",device="cpu"} 0"#,
            r#"zop_worker_fragment_seconds_total{kind="training",device="cpu"} 0.0"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
