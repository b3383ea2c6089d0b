//! The settlement controller (leader only). On first start it seals the genesis record;
//! after that, a configured schedule that differs from the sealed one is refused
//! ([`check_schedule`], before any controller runs). Then it settles each epoch at its
//! cutoff: gathers the contributions from the assignment records
//! (`zop_core::ledger::work`), splits the emission and builds the sealed, chained records
//! (`zop_core::ledger::settle`), writes them in order as `Settlement` objects named
//! `epoch-N` (parts after the first `epoch-N-P`), and finalizes them.
//!
//! The ledger is the Settlement objects themselves: every pass lists them, verifies the
//! chain and replays it (`zop_core::ledger::accounts`), so a restart at any moment goes
//! on from what the objects say. An epoch's records are a function of the assignment
//! records as they stood at its cutoff, so settling it again after a crash writes the
//! same objects, and a create that finds its object already there moves on: no epoch is
//! paid twice or skipped. A chain that does not verify stops settlement (nothing is
//! written on top of it) and says why in the log and `zop_settlement_errors_total`.
//!
//! Epoch `e ≥ 1` covers `[G + (e − 1)·L, G + e·L)`, where `G` is the end of the genesis
//! record's window (the time the ledger was created) and `L` the epoch length.

use crate::api::settlement::{EmissionSchedule, EpochWindow, SettlementPhase, SettlementSpec};
use crate::api::{Device, Settlement};
use crate::ledger::accounts::Ledger;
use crate::ledger::reconcile::{self, Finding};
use crate::ledger::{chain, emission, settle, work};
use crate::tasks::record;
use crate::verifier::ProviderLabels;
use anyhow::Context;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

pub mod prometheus;
pub mod requests;
pub mod stake;

/// Settlement settings.
#[derive(Debug, Clone)]
pub struct SettlementConfig {
    /// The emission schedule (sealed into the genesis record).
    pub schedule: EmissionSchedule,
    /// Seconds after an epoch's end before it is settled, for verdicts being written.
    pub grace_seconds: i64,
    /// The operator's namespace (assignment records).
    pub namespace: String,
    /// Where reconciliation measures, if it is configured.
    pub prometheus: Option<prometheus::Prometheus>,
    /// The gateway's count of payable work per provider (`zop_payable_work_units_total`).
    pub payable: Family<ProviderLabels, Counter>,
}

/// The end of the last settled epoch's window, Unix milliseconds (0 before the first):
/// a deleted task keeps the records of results that became payable after it, until
/// they are paid.
#[derive(Debug, Clone, Default)]
pub struct SettledUntil(Arc<AtomicI64>);

impl SettledUntil {
    /// The time, Unix milliseconds.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, ms: i64) {
        self.0.fetch_max(ms, Ordering::Relaxed);
    }
}

/// Settlement metrics.
#[derive(Debug, Clone, Default)]
pub struct SettlementMetrics {
    epoch: Gauge,
    pool: Gauge,
    rewards: Gauge,
    held: Gauge,
    records: Counter,
    errors: Counter,
}

impl SettlementMetrics {
    /// Registers the metrics.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "settlement_epoch",
            "The last settled epoch",
            m.epoch.clone(),
        );
        registry.register(
            "settlement_pool_base_units",
            "What the pool holds after the last settled epoch, in base units",
            m.pool.clone(),
        );
        registry.register(
            "settlement_epoch_rewards_base_units",
            "Rewards the last settled epoch paid or held, in base units",
            m.rewards.clone(),
        );
        registry.register(
            "settlement_held_entries",
            "Entries of the last settled epoch held by reconciliation",
            m.held.clone(),
        );
        registry.register(
            "settlement_records",
            "Settlement objects written",
            m.records.clone(),
        );
        registry.register(
            "settlement_errors",
            "Settlement passes that stopped on an error (a chain that does not verify, an API failure)",
            m.errors.clone(),
        );
        m
    }
}

/// The object name of an epoch's part.
pub fn object_name(epoch: u64, part: u32) -> String {
    if part == 0 {
        format!("epoch-{epoch}")
    } else {
        format!("epoch-{epoch}-{part}")
    }
}

/// The ledger's objects, sorted by epoch and part.
async fn load(api: &Api<Settlement>) -> anyhow::Result<Vec<Settlement>> {
    let mut objects = api
        .list(&ListParams::default())
        .await
        .context("listing Settlements")?
        .items;
    objects.sort_by_key(|s| (s.spec.epoch, s.spec.part));
    Ok(objects)
}

/// The chain as the Settlement objects hold it, sorted, its hashes verified and every
/// sum replayed: emissions by the sealed schedule, rewards, the pool, operations against
/// balances, and the supply.
pub async fn read_ledger(client: &Client) -> anyhow::Result<(Vec<SettlementSpec>, Ledger)> {
    let specs: Vec<_> = load(&Api::all(client.clone()))
        .await?
        .into_iter()
        .map(|s| s.spec)
        .collect();
    chain::verify(&specs).map_err(|e| anyhow::anyhow!("ledger broken: {e}"))?;
    let ledger = Ledger::replay(&specs).map_err(|e| anyhow::anyhow!("ledger broken: {e}"))?;
    Ok((specs, ledger))
}

/// Refuses a configured schedule that is invalid, or differs from the one the ledger's
/// genesis record sealed.
pub async fn check_schedule(client: &Client, schedule: &EmissionSchedule) -> anyhow::Result<()> {
    emission::check(schedule).context("the emission schedule")?;
    let objects = load(&Api::all(client.clone())).await?;
    if let Some(sealed) = objects.first().and_then(|g| g.spec.schedule.as_ref()) {
        emission::check_sealed(schedule, sealed).context("the emission schedule")?;
    }
    Ok(())
}

fn time(ms: i64) -> Time {
    Time(Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn ms(t: &Time) -> i64 {
    t.0.as_millisecond()
}

/// Runs until `stop` resolves.
pub async fn run(
    client: Client,
    config: SettlementConfig,
    devices: Store<Device>,
    settled: SettledUntil,
    metrics: SettlementMetrics,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let wait = match pass(&client, &config, &devices, &settled, &metrics).await {
            Ok(wait) => wait,
            Err(e) => {
                metrics.errors.inc();
                tracing::error!(error = %format!("{e:#}"), "settlement stopped; retrying");
                Duration::from_secs(10)
            }
        };
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One pass: writes what is due, and says how long to wait for the next.
async fn pass(
    client: &Client,
    config: &SettlementConfig,
    devices: &Store<Device>,
    settled: &SettledUntil,
    metrics: &SettlementMetrics,
) -> anyhow::Result<Duration> {
    // Every known provider's payable-work series exists, at 0, before its first result:
    // Prometheus loses the first increase of a counter it first sees above 0.
    for d in devices.state() {
        config
            .payable
            .get_or_create(&ProviderLabels {
                provider: d.spec.provider.clone(),
            })
            .inc_by(0);
    }
    let api: Api<Settlement> = Api::all(client.clone());
    let objects = load(&api).await?;
    let specs: Vec<SettlementSpec> = objects.iter().map(|s| s.spec.clone()).collect();
    let len_ms = i64::try_from(config.schedule.epoch_seconds)
        .unwrap_or(i64::MAX / 2_000)
        .saturating_mul(1000);
    let Some(genesis) = specs.first() else {
        let now = Timestamp::now().as_millisecond() / 1000 * 1000;
        let window = EpochWindow {
            start: time(now - len_ms),
            end: time(now),
        };
        create(&api, settle::genesis(&config.schedule, window)).await?;
        metrics.records.inc();
        tracing::info!("sealed the genesis record");
        return Ok(Duration::ZERO);
    };
    chain::verify(&specs).context("the settlement chain")?;
    finalize_open(&api, &objects, config.prometheus.is_some()).await?;
    let ledger = Ledger::replay(&specs).context("the settlement ledger")?;
    let state = devices.state();
    stake::write(
        client,
        &stake::changes(state.iter().map(|d| d.as_ref()), &ledger),
    )
    .await;
    let origin = ms(&genesis.window.end);
    let (epoch, part) = ledger.next();
    let last = specs
        .last()
        .map(|s| (s.epoch, s.hash.clone()))
        .unwrap_or_default();
    if epoch > 0 && part == 0 {
        // The last epoch is complete.
        let done_end = origin + (last.0 as i64) * len_ms;
        settled.set(done_end);
        metrics.epoch.set(last.0 as i64);
        metrics.pool.set(ledger.pool as i64);
        let entries = specs
            .iter()
            .filter(|s| s.epoch == last.0)
            .flat_map(|s| &s.entries);
        let (mut rewards, mut held) = (0u64, 0i64);
        for e in entries {
            rewards = rewards.saturating_add(e.reward.0);
            held += i64::from(e.held);
        }
        metrics
            .rewards
            .set(i64::try_from(rewards).unwrap_or(i64::MAX));
        metrics.held.set(held);
    }
    let window = (origin + (epoch as i64 - 1) * len_ms)..(origin + epoch as i64 * len_ms);
    let cutoff = window.end + config.grace_seconds.max(0) * 1000;
    let now = Timestamp::now().as_millisecond();
    if now < cutoff {
        return Ok(Duration::from_millis((cutoff - now).clamp(0, 30_000) as u64));
    }
    let facts: BTreeMap<String, work::DeviceFacts> = devices
        .state()
        .iter()
        .map(|d| {
            let reputation = d.status.as_ref().map_or(500, |s| {
                crate::devices::reputation::score_at(&s.reputation, cutoff / 1000)
            });
            (
                d.name_any(),
                work::DeviceFacts {
                    provider: d.spec.provider.clone(),
                    reputation,
                },
            )
        })
        .collect();
    let records = Api::<ConfigMap>::namespaced(client.clone(), &config.namespace)
        .list(&ListParams::default().labels(crate::labels::TASK_UID))
        .await
        .context("listing assignment records")?;
    let assignments: Vec<_> = records
        .items
        .iter()
        .filter_map(record::from_config_map)
        .collect();
    let gathered = work::contributions(&assignments, window.clone(), cutoff, &facts);
    // An epoch cut short by a crash resumes after the parts already written.
    let previous = if part == 0 {
        last.1.clone()
    } else {
        specs
            .iter()
            .rev()
            .find(|s| s.epoch == epoch && s.part == 0)
            .map(|s| s.previous_hash.clone())
            .unwrap_or_default()
    };
    // The ledger before this epoch: the one replayed, or its prefix when parts of this
    // epoch are already written.
    let before;
    let base = if part == 0 {
        &ledger
    } else {
        let start = specs
            .iter()
            .position(|s| s.epoch == epoch)
            .unwrap_or(specs.len());
        before = Ledger::replay(&specs[..start])?;
        &before
    };
    let epoch_window = EpochWindow {
        start: time(window.start),
        end: time(window.end),
    };
    let (held, findings) = match &config.prometheus {
        Some(p) => {
            reconcile_epoch(
                p,
                &specs,
                &gathered.contributions,
                origin,
                window.end,
                cutoff,
            )
            .await?
        }
        None => Default::default(),
    };
    // Requests the chain already holds (recorded before a restart) are only cleaned up.
    let requested = requests::pending(client, &config.namespace).await?;
    let fresh: Vec<_> = requested
        .iter()
        .filter(|o| !ledger.recorded.contains(&o.id))
        .cloned()
        .collect();
    let out = settle::settle(
        base,
        &previous,
        epoch_window,
        &gathered.contributions,
        &held,
        &fresh,
    );
    for r in out.records.iter().skip(part as usize) {
        create(&api, r.clone()).await?;
        metrics.records.inc();
    }
    let mut recorded = ledger.recorded.clone();
    recorded.extend(
        out.records
            .iter()
            .flat_map(|r| r.operations.iter().map(|o| o.id.clone())),
    );
    let refused: Vec<_> = out
        .refused
        .iter()
        .map(|(op, e)| (op.clone(), e.to_string()))
        .collect();
    requests::resolve(client, &config.namespace, &recorded, &refused, &requested).await;
    for f in findings.iter().filter(|f| held.contains(&f.provider)) {
        let note = format!(
            "epoch {epoch}: the reward of {} is held: {}",
            f.provider,
            f.held.as_deref().unwrap_or_default()
        );
        tracing::warn!(provider = %f.provider, "{note}");
        held_event(client, &object_name(epoch, 0), &note).await;
    }
    tracing::info!(
        epoch,
        held = held.len(),
        parts = out.records.len(),
        providers = gathered.contributions.len(),
        results = gathered.results,
        orphaned = gathered.orphaned,
        emission = out.records.first().map_or(0, |r| r.emission.0),
        "settled an epoch"
    );
    Ok(Duration::ZERO)
}

/// Reconciles an epoch's credit with the measurements over the ledger's recent span
/// (`zop_core::ledger::reconcile`): the providers to hold, and every finding.
async fn reconcile_epoch(
    prom: &prometheus::Prometheus,
    specs: &[SettlementSpec],
    contributions: &[crate::ledger::rewards::Contribution],
    origin: i64,
    end: i64,
    cutoff: i64,
) -> anyhow::Result<(BTreeSet<String>, Vec<Finding>)> {
    let from = (cutoff - reconcile::MAX_SPAN_SECONDS as i64 * 1000).max(origin);
    let mut credited: BTreeMap<String, u64> = BTreeMap::new();
    let earlier = specs
        .iter()
        .filter(|s| s.epoch > 0 && ms(&s.window.start) >= from && ms(&s.window.end) <= end);
    for e in earlier.flat_map(|s| &s.entries) {
        *credited.entry(e.provider.clone()).or_default() += e.work_units;
    }
    for c in contributions {
        *credited.entry(c.provider.clone()).or_default() += c.work_units;
    }
    let measured = prom
        .measure(((cutoff - from) / 1000) as u64, cutoff)
        .await?;
    let findings = reconcile::reconcile(&credited, &measured);
    let now: BTreeSet<&str> = contributions.iter().map(|c| c.provider.as_str()).collect();
    let held = findings
        .iter()
        .filter(|f| f.held.is_some() && now.contains(f.provider.as_str()))
        .map(|f| f.provider.clone())
        .collect();
    Ok((held, findings))
}

/// A Warning Event on a Settlement that holds an entry, with the figures.
async fn held_event(client: &Client, name: &str, note: &str) {
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(<Settlement as kube::Resource>::api_version(&()).into_owned()),
        kind: Some(<Settlement as kube::Resource>::kind(&()).into_owned()),
        name: Some(name.into()),
        ..Default::default()
    };
    let ev = kube::runtime::events::Event {
        type_: kube::runtime::events::EventType::Warning,
        reason: "Held".into(),
        note: Some(note.chars().take(1024).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = super::recorder(client.clone())
        .publish(&ev, &reference)
        .await
    {
        tracing::warn!(error = %e, "publishing a settlement event failed");
    }
}

/// Finalizes the records still Open, with a `Reconciled` condition: whether measured
/// metrics agreed (the entries held say where they did not), or that reconciliation is
/// not configured.
async fn finalize_open(
    api: &Api<Settlement>,
    objects: &[Settlement],
    reconciled: bool,
) -> anyhow::Result<()> {
    let open = objects.iter().filter(|s| {
        s.status
            .as_ref()
            .is_none_or(|st| st.phase == SettlementPhase::Open)
    });
    for s in open {
        let at = Time(Timestamp::now());
        let held: Vec<&str> = s
            .spec
            .entries
            .iter()
            .filter(|e| e.held)
            .map(|e| e.provider.as_str())
            .collect();
        let (state, reason, message) = match (reconciled, held.is_empty()) {
            (false, _) => (
                "Unknown",
                "NotConfigured",
                "no metrics source is configured to reconcile against; finalized as computed from the operator's records".to_string(),
            ),
            (true, true) => (
                "True",
                "Matched",
                "the operator's and the workers' measured work agree with every entry".to_string(),
            ),
            (true, false) => (
                "False",
                "Held",
                format!(
                    "measured work contradicts the credit of {}: their rewards are held until released or forfeited (kubectl zop ledger release|forfeit); the Events say by how much",
                    held.join(", ")
                ),
            ),
        };
        let status = serde_json::json!({
            "phase": SettlementPhase::Finalized,
            "conditions": [{
                "type": "Reconciled",
                "status": state,
                "reason": reason,
                "message": message,
                "lastTransitionTime": at,
                "observedGeneration": s.metadata.generation,
            }],
            "observedGeneration": s.metadata.generation,
        });
        super::apply_status(api, s, status)
            .await
            .with_context(|| format!("finalizing Settlement {}", s.name_any()))?;
    }
    Ok(())
}

/// Creates a record; one already there with the same hash is this one written before
/// a restart, one with another hash is refused (the stored chain stands).
async fn create(api: &Api<Settlement>, spec: SettlementSpec) -> anyhow::Result<()> {
    let name = object_name(spec.epoch, spec.part);
    let obj = Settlement {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        spec,
        status: None,
    };
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let stored = api
                .get(&name)
                .await
                .context("reading an existing Settlement")?;
            anyhow::ensure!(
                stored.spec.hash == obj.spec.hash,
                "Settlement {name} exists with hash {}, this settlement computes {}",
                stored.spec.hash,
                obj.spec.hash
            );
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("creating Settlement {name}")),
    }
}
