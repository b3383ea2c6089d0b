//! Gateway metrics (`zop_gateway_*`), with low-cardinality labels only.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of registrations.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistrationLabels {
    /// `accepted` or `rejected`.
    pub result: &'static str,
    /// The reason, or `Registered`.
    pub reason: &'static str,
}

/// Labels of node benchmark reports.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    /// `Plausible`, or the reason the benchmark contradicts the claimed hardware.
    pub reason: &'static str,
}

/// Labels of request durations.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route pattern, never the raw path.
    pub route: String,
}

/// The gateway's metrics.
#[derive(Debug, Clone)]
pub struct GatewayMetrics {
    /// Heartbeats accepted.
    pub heartbeats: Counter,
    /// Fragment results recorded.
    pub results: Counter,
    /// Registrations by result and reason.
    pub registrations: Family<RegistrationLabels, Counter>,
    /// Request durations by route.
    pub durations: Family<RouteLabels, Histogram>,
    /// Credential lookups made on the API server (TokenReviews, token Secret reads).
    pub auth_lookups: Counter,
    /// Results whose claimed work units differed from the slicer's cost.
    pub work_claim_mismatches: Counter,
    /// Node benchmark reports recorded, by verdict.
    pub node_benchmarks: Family<VerdictLabels, Counter>,
}

impl GatewayMetrics {
    /// Registers the metrics.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            heartbeats: Counter::default(),
            results: Counter::default(),
            registrations: Family::default(),
            durations: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 14))
            }),
            auth_lookups: Counter::default(),
            work_claim_mismatches: Counter::default(),
            node_benchmarks: Family::default(),
        };
        // Every verdict's series exists from the start: Prometheus loses a counter's
        // first increase, and the alert on implausible Nodes reads them.
        for reason in crate::devices::plausibility::REASONS {
            let _ = m.node_benchmarks.get_or_create(&VerdictLabels { reason });
        }
        registry.register(
            "gateway_node_benchmarks",
            "Node benchmark reports recorded, by verdict (Plausible or why not)",
            m.node_benchmarks.clone(),
        );
        registry.register(
            "gateway_auth_lookups",
            "Credential lookups made on the API server (TokenReviews, token Secret reads)",
            m.auth_lookups.clone(),
        );
        registry.register(
            "gateway_work_claim_mismatches",
            "Fragment results whose claimed work units differed from the slicer's cost",
            m.work_claim_mismatches.clone(),
        );
        registry.register(
            "gateway_heartbeats",
            "Heartbeats accepted",
            m.heartbeats.clone(),
        );
        registry.register(
            "gateway_results",
            "Fragment results recorded",
            m.results.clone(),
        );
        registry.register(
            "gateway_registrations",
            "Agent registrations by result and reason",
            m.registrations.clone(),
        );
        registry.register(
            "gateway_request_duration_seconds",
            "Gateway request durations",
            m.durations.clone(),
        );
        m
    }

    /// Counts a registration outcome.
    pub fn registration(&self, result: &'static str, reason: &'static str) {
        self.registrations
            .get_or_create(&RegistrationLabels { result, reason })
            .inc();
    }
}
