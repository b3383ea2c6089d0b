//! The verifier's writes: each verification outcome moves the device's reputation
//! (`devices::reputation` has the rules; this module only reads, applies and writes) and
//! leaves an Event on the Device carrying the evidence: task, fragment, what was expected
//! and what was received. Refused results are counted by reason. The gateway (verdicts
//! on answers, timing) and the task controller (challenges left unanswered) share one
//! [`Verifier`].
//!
//! A verdict is written into its assignment record first, and only a verdict that was
//! written moves the reputation, so a retried request never punishes one failure twice.
//! Writes to one device's reputation are serialized (a read-modify-write under a lock
//! striped by device name); a crash between the two writes can lose one change, never
//! double it.

use crate::api::device::Device;
use crate::devices::reputation::{self, Outcome};
use crate::verify::timing::Timing;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde_json::json;
use std::hash::{Hash, Hasher};

/// The field manager of `status.reputation`.
pub const REPUTATION_MANAGER: &str = "zop-verifier";
const STRIPES: usize = 64;

/// What a verdict is about, for its Event.
#[derive(Debug, Clone)]
pub struct Evidence {
    /// `namespace/name` of the task.
    pub task: String,
    /// The fragment.
    pub fragment: u32,
    /// Stable reason, for example `WrongRow`.
    pub reason: String,
    /// What was expected and what was received.
    pub detail: String,
}

/// Labels of verification counts.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `Verified`, or the reason a result was rejected or refused.
    pub result: String,
}

/// The label of a per-provider metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    /// The provider account.
    pub provider: String,
}

/// The verifier's metrics.
#[derive(Debug, Clone)]
pub struct VerifierMetrics {
    /// Verdicts on results, by outcome.
    pub verdicts: Family<ResultLabels, Counter>,
    /// Results refused before any verdict (another fragment, late, foreign), by reason.
    pub refusals: Family<ResultLabels, Counter>,
    /// Abnormal report-back times, by kind (`TooFast`, `TooSlow`).
    pub timings: Family<ResultLabels, Counter>,
    /// Seconds the operator's CPU spent checking one fragment's answers.
    pub check_seconds: Histogram,
    /// Work units of results that became payable, by provider: what settlement
    /// reconciles its entries against.
    pub payable_work: Family<ProviderLabels, Counter>,
}

impl VerifierMetrics {
    /// Registers the metrics.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            verdicts: Family::default(),
            refusals: Family::default(),
            timings: Family::default(),
            check_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            payable_work: Family::default(),
        };
        registry.register(
            "verifications",
            "Verdicts on fragment results, by result (Verified or the rejection reason)",
            m.verdicts.clone(),
        );
        registry.register(
            "result_refusals",
            "Fragment results refused before any verdict, by reason",
            m.refusals.clone(),
        );
        registry.register(
            "abnormal_timings",
            "Results that arrived implausibly fast or slow for the device's benchmark",
            m.timings.clone(),
        );
        registry.register(
            "verifier_check_seconds",
            "CPU seconds the operator spent checking one fragment's challenge answers",
            m.check_seconds.clone(),
        );
        registry.register(
            "payable_work_units",
            "Work units of results that became payable (verified, or accepted without a proof), by provider",
            m.payable_work.clone(),
        );
        m
    }
}

/// See the module docs.
pub struct Verifier {
    client: Client,
    recorder: Recorder,
    locks: Vec<tokio::sync::Mutex<()>>,
    /// Metrics.
    pub metrics: VerifierMetrics,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier writing through `client`.
    pub fn new(client: Client, registry: &mut Registry) -> Self {
        Self {
            recorder: crate::controller::recorder(client.clone()),
            client,
            locks: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            metrics: VerifierMetrics::new(registry),
        }
    }

    /// Counts `work_units` of a result that became payable, for `provider`.
    pub fn payable(&self, provider: &str, work_units: u64) {
        self.metrics
            .payable_work
            .get_or_create(&ProviderLabels {
                provider: provider.into(),
            })
            .inc_by(work_units);
    }

    /// Counts a result refused before any verdict.
    pub fn refused(&self, reason: &str) {
        self.metrics
            .refusals
            .get_or_create(&ResultLabels {
                result: reason.into(),
            })
            .inc();
    }

    /// Applies `outcome` to `device`'s reputation and records the evidence.
    pub async fn outcome(&self, device: &str, outcome: Outcome, evidence: &Evidence) {
        match outcome {
            Outcome::Verified | Outcome::Rejected => {
                let result = match outcome {
                    Outcome::Verified => "Verified".to_string(),
                    _ => evidence.reason.clone(),
                };
                self.metrics
                    .verdicts
                    .get_or_create(&ResultLabels { result })
                    .inc();
            }
            Outcome::Timing(t) if t != Timing::Plausible => {
                self.metrics
                    .timings
                    .get_or_create(&ResultLabels {
                        result: evidence.reason.clone(),
                    })
                    .inc();
            }
            Outcome::Timing(_) => return,
            Outcome::TimedOut => {}
        }
        let score = self.apply(device, outcome).await;
        let (type_, reason, note) = match outcome {
            // Passes aggregate into one Event series per task.
            Outcome::Verified => (
                EventType::Normal,
                "Verified".to_string(),
                format!("results of task {} verified", evidence.task),
            ),
            _ => (
                EventType::Warning,
                evidence.reason.clone(),
                format!(
                    "task {}, fragment {}: {}; reputation now {}",
                    evidence.task,
                    evidence.fragment,
                    evidence.detail,
                    score.map_or_else(|| "unchanged (write failed)".into(), |s| s.to_string())
                ),
            ),
        };
        let ev = Event {
            type_,
            reason,
            note: Some(note.chars().take(1024).collect()),
            action: "Verify".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &reference(device)).await {
            tracing::warn!(error = %e, device, "publishing a verification event failed");
        }
    }

    /// Read, apply, write under the device's lock; the new score, or `None` if the
    /// device is gone or the write failed.
    async fn apply(&self, device: &str, outcome: Outcome) -> Option<u32> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        device.hash(&mut h);
        let _held = self.locks[(h.finish() as usize) % STRIPES].lock().await;
        let api: Api<Device> = Api::all(self.client.clone());
        for _ in 0..3 {
            let current = match api.get_opt(device).await {
                Ok(Some(d)) => d.status.unwrap_or_default().reputation,
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!(error = %e, device, "reading a reputation failed");
                    continue;
                }
            };
            let next = reputation::apply(&current, outcome, Timestamp::now().as_second());
            let patch = json!({
                "apiVersion": "zoptoken.io/v1alpha1",
                "kind": "Device",
                "status": { "reputation": next },
            });
            match api
                .patch_status(
                    device,
                    &PatchParams::apply(REPUTATION_MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await
            {
                Ok(_) => return Some(next.score),
                Err(e) => tracing::warn!(error = %e, device, "writing a reputation failed"),
            }
        }
        None
    }
}

fn reference(device: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some(Device::api_version(&()).into_owned()),
        kind: Some(Device::kind(&()).into_owned()),
        name: Some(device.into()),
        ..Default::default()
    }
}
