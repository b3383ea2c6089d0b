//! The operator's Prometheus registry and the metrics computed at scrape time from
//! reflector stores. Every metric starts with `zop_`; labels stay low-cardinality
//! (phases, classes, reasons), never object names.

use crate::api::Device;
use anyhow::Context;
use axum::Router;
use axum::routing::get;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;

/// A registry with the `zop` prefix.
pub fn registry() -> Registry {
    Registry::with_prefix("zop")
}

/// `zop_devices{phase,class,model}`: Devices counted from the store on every scrape, so the
/// figure can never drift from what the API server holds.
#[derive(Debug)]
pub struct DeviceCollector {
    store: Store<Device>,
}

impl DeviceCollector {
    /// Registers the collector.
    pub fn register(registry: &mut Registry, store: Store<Device>) {
        registry.register_collector(Box::new(Self { store }));
    }
}

/// Devices by (phase, class, model): the model is the first GPU's product name, `none`
/// for devices without a GPU (few distinct values: one per product a fleet holds).
pub fn count_devices<'a>(
    devices: impl Iterator<Item = &'a Device>,
) -> BTreeMap<(String, String, String), i64> {
    let mut counts = BTreeMap::new();
    for d in devices {
        let status = d.status.as_ref();
        let phase = status.map(|s| s.phase).unwrap_or_default();
        let model = status
            .and_then(|s| s.identification.as_ref()?.gpus.first())
            .map_or_else(
                || "none".to_string(),
                |g| g.model.chars().take(64).collect(),
            );
        let key = (
            format!("{phase:?}"),
            format!("{:?}", d.spec.class).to_lowercase(),
            model,
        );
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

impl Collector for DeviceCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let devices = self.store.state();
        let counts = count_devices(devices.iter().map(AsRef::as_ref));
        let mut family = encoder.encode_descriptor(
            "devices",
            "Devices by phase, class and GPU model",
            None,
            MetricType::Gauge,
        )?;
        for ((phase, class, model), n) in counts {
            let labels = [("phase", phase), ("class", class), ("model", model)];
            ConstGauge::new(n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Renders the registry in the OpenMetrics text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// Whether this replica serves: it holds the leader Lease and its gateway is listening.
/// A standby is live (`/healthz`) but not ready (`/readyz`), so the gateway Service sends
/// nothing to it.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<std::sync::atomic::AtomicBool>);

impl Readiness {
    /// Marks the replica ready.
    pub fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether it is.
    pub fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Serves `/metrics` (the registry, OpenMetrics text), `/healthz` (live) and `/readyz`
/// (`ready`) on `bind` until `stop` turns true.
pub async fn serve(
    bind: SocketAddr,
    registry: Arc<prometheus_client::registry::Registry>,
    ready: Readiness,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    (
                        [(
                            "content-type",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        render(&registry),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.get();
                async move {
                    if ready {
                        (axum::http::StatusCode::OK, "ok")
                    } else {
                        (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "standby: another replica leads, or the gateway is not listening yet",
                        )
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding the metrics endpoint to {bind}: is the port in use?"))?;
    // The bound address, not `bind`: with port 0 the system picks the port.
    let bound = listener.local_addr().unwrap_or(bind);
    tracing::info!(bind = %bound, "metrics and health endpoints listening");
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(crate::run::stopped(stop))
            .await;
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::device::{DeviceSource, DeviceSpec, DeviceStatus, NodeSource};
    use crate::api::{DeviceClass, DevicePhase};

    fn device(class: DeviceClass, phase: DevicePhase) -> Device {
        let mut d = Device::new(
            "d",
            DeviceSpec {
                provider: "p".into(),
                source: DeviceSource {
                    node: Some(NodeSource { name: "n".into() }),
                    agent: None,
                },
                class,
                cordoned: false,
            },
        );
        d.status = Some(DeviceStatus {
            phase,
            ..Default::default()
        });
        d
    }

    #[test]
    fn devices_are_counted_by_phase_class_and_model() {
        let ds = [
            device(DeviceClass::Gpu, DevicePhase::Online),
            device(DeviceClass::Gpu, DevicePhase::Online),
            device(DeviceClass::Cpu, DevicePhase::Offline),
        ];
        let counts = count_devices(ds.iter());
        assert_eq!(counts[&("Online".into(), "gpu".into(), "none".into())], 2);
        assert_eq!(counts[&("Offline".into(), "cpu".into(), "none".into())], 1);
        assert_eq!(counts.len(), 2);
        let mut h100 = device(DeviceClass::Gpu, DevicePhase::Online);
        h100.status.as_mut().unwrap().identification = Some(crate::api::device::Identification {
            gpus: vec![crate::api::device::GpuInfo {
                model: "NVIDIA-H100-80GB-HBM3".into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        let counts = count_devices([h100].iter());
        assert_eq!(
            counts[&(
                "Online".into(),
                "gpu".into(),
                "NVIDIA-H100-80GB-HBM3".into()
            )],
            1
        );
    }

    /// The metric name of an exposition line: the text before its labels or value.
    fn sample_name(line: &str) -> &str {
        line.split(['{', ' ']).next().unwrap_or(line)
    }

    #[test]
    fn every_operator_metric_is_prefixed_once() {
        use crate::api::task_status::FragmentCounts;
        use crate::controller::task_metrics::TaskMetrics;
        use crate::gateway::metrics::GatewayMetrics;
        use kube::runtime::watcher;
        use std::collections::BTreeSet;

        // Registered as `run` registers them, with one sample of each.
        let mut registry = registry();
        let (store, mut writer) = kube::runtime::reflector::store();
        writer.apply_watcher_event(&watcher::Event::Apply(device(
            DeviceClass::Gpu,
            DevicePhase::Online,
        )));
        DeviceCollector::register(&mut registry, store);
        let gateway = GatewayMetrics::new(&mut registry);
        let tasks = TaskMetrics::new(&mut registry);
        crate::controller::settlement::SettlementMetrics::new(&mut registry);
        crate::verifier::VerifierMetrics::new(&mut registry);
        crate::controller::settlement::prometheus::Prometheus::new(
            "http://127.0.0.1:9",
            &mut registry,
        )
        .unwrap();
        gateway.heartbeats.inc();
        gateway.results.inc();
        gateway.registration("accepted", "Registered");
        gateway
            .durations
            .get_or_create(&crate::gateway::metrics::RouteLabels {
                route: "/v1/register".into(),
            })
            .observe(0.01);
        tasks.cycle(std::time::Duration::from_millis(3));
        let counts = FragmentCounts {
            total: 2,
            pending: 1,
            running: 1,
            ..Default::default()
        };
        tasks.observe_task("team-a", "uid-1", &counts, false);

        let text = render(&registry);
        let mut families = BTreeSet::new();
        let mut samples = BTreeSet::new();
        for line in text.lines() {
            let name = match line.strip_prefix("# TYPE ") {
                Some(rest) => {
                    families.insert(sample_name(rest));
                    sample_name(rest)
                }
                None if line.starts_with('#') => continue,
                None => {
                    samples.insert(sample_name(line));
                    sample_name(line)
                }
            };
            assert!(
                name.starts_with("zop_") && !name.starts_with("zop_zop_"),
                "{name} is not prefixed exactly once:\n{text}"
            );
        }
        for family in [
            "zop_settlement_epoch",
            "zop_settlement_held_entries",
            "zop_settlement_epoch_rewards_base_units",
            "zop_reconciliation_queries",
            "zop_devices",
            "zop_fragments",
            "zop_gateway_heartbeats",
            "zop_gateway_registrations",
            "zop_gateway_request_duration_seconds",
            "zop_gateway_results",
            "zop_queue_depth",
            "zop_scheduling_cycle_duration_seconds",
        ] {
            assert!(families.contains(family), "no {family} family:\n{text}");
        }
        for name in [
            "zop_devices",
            "zop_fragments",
            "zop_gateway_heartbeats_total",
            "zop_gateway_registrations_total",
            "zop_gateway_request_duration_seconds_bucket",
            "zop_gateway_request_duration_seconds_count",
            "zop_gateway_results_total",
            "zop_queue_depth",
            "zop_scheduling_cycle_duration_seconds_bucket",
            "zop_scheduling_cycle_duration_seconds_count",
            "zop_scheduling_cycle_duration_seconds_sum",
        ] {
            assert!(samples.contains(name), "no {name} sample:\n{text}");
        }
    }
}
