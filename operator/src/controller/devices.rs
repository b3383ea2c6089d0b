//! The device controller: computes every Device's phase, identification (for Node
//! devices) and online accounting from its Node (read fresh), the heartbeats the gateway
//! writes, and the HardwarePlausible condition; writes only the fields it owns, and
//! records an Event on every phase change.

use super::{Config, Error, STALE_RETRY, apply_status, recorder, retry_after};
use crate::api::DevicePhase;
use crate::api::common::conditions;
use crate::api::device::{Device, DeviceStatus};
use crate::devices::identify::{is_onboarded, node_facts};
use crate::devices::online::Accounting;
use crate::devices::phase::{Facts, Liveness, available, next_phase};
use crate::devices::reputation;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

struct Ctx {
    client: Client,
    config: Config,
    recorder: Recorder,
}

/// The Device controller, not yet running; its `store()` feeds the device metrics.
/// Node changes re-reconcile the Device of the same name.
pub fn controller(client: &Client) -> Controller<Device> {
    Controller::new(
        Api::<Device>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<Node>::all(client.clone()),
        watcher::Config::default(),
        |node| Some(ObjectRef::new(&node.name_any())),
    )
}

/// Runs `controller` until `shutdown` resolves.
pub async fn run(
    controller: Controller<Device>,
    client: Client,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ctx = Arc::new(Ctx {
        recorder: recorder(client.clone()),
        client,
        config,
    });
    controller
        .graceful_shutdown_on(shutdown)
        .run(
            reconcile,
            |_, err, _| Action::requeue(retry_after(err)),
            ctx,
        )
        .for_each(|res| async move {
            // Every Node change maps to a Device of its name; most Nodes have none.
            if let Err(kube::runtime::controller::Error::ObjectNotFound(_)) = res {
                return;
            }
            if let Err(err) = res {
                tracing::warn!(error = %err, "device reconcile failed");
            }
        })
        .await;
}

async fn reconcile(device: Arc<Device>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let now = Timestamp::now();
    // The Node is read from the API server, not from a second watch's cache: a reconcile
    // that a Node change triggered could otherwise read the Node from before the change,
    // decide nothing changed, and not look again until the accounting period.
    let node = match &device.spec.source.node {
        Some(n) => Some(
            Api::<Node>::all(ctx.client.clone())
                .get_opt(&n.name)
                .await?,
        ),
        None => None,
    };
    let plan = plan(&device, node.as_ref().map(Option::as_ref), now, &ctx.config);
    // A heartbeat the cache has not caught up with must not be judged missed.
    if plan.owned != owned_fields(device.status.as_ref(), node.is_some())
        && !apply_status(
            &Api::<Device>::all(ctx.client.clone()),
            &*device,
            plan.owned,
        )
        .await?
    {
        return Ok(Action::requeue(STALE_RETRY));
    }
    if let Some(event) = plan.event {
        let reference = device.object_ref(&());
        if let Err(err) = ctx.recorder.publish(&event.to_event(), &reference).await {
            tracing::warn!(error = %err, device = %device.name_any(), "publishing event failed");
        }
    }
    Ok(Action::requeue(Duration::from_secs(
        plan.recheck_after.max(1) as u64,
    )))
}

/// What one reconcile decides: the owned status fields, an Event, and when to look again.
#[derive(Debug)]
pub struct Plan {
    /// The status fields this controller owns, as they should be.
    pub owned: Value,
    /// The Event to record, on a phase change.
    pub event: Option<PhaseChange>,
    /// Seconds until time alone may change the outcome.
    pub recheck_after: i64,
}

/// Pure: decides a Device's owned status from its current state and its Node (`None`
/// for agent devices, `Some(None)` when the Node is gone).
pub fn plan(device: &Device, node: Option<Option<&Node>>, now: Timestamp, config: &Config) -> Plan {
    let status = device.status.clone().unwrap_or_default();
    let now_s = now.as_second();
    let liveness = match node {
        Some(node) => Liveness::Node {
            present: node.is_some(),
            ready: node.is_some_and(|n| node_facts(n).ready),
            onboarded: node.is_none_or(is_onboarded),
        },
        None => Liveness::Agent {
            last_heartbeat: status.last_heartbeat.as_ref().map(|t| t.0.as_second()),
            retired: false,
        },
    };
    let plausibility = status
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::PLAUSIBLE);
    let facts = Facts {
        liveness,
        plausible: plausibility.map(|c| c.status != "False"),
        standing: reputation::standing(&status.reputation, now_s),
        now: now_s,
        grace: config.heartbeat_grace,
    };
    let (phase, time_recheck) = next_phase(&facts);
    // A quarantine by reputation lifts by decay alone: look again then.
    let time_recheck = match (
        time_recheck,
        reputation::lifts_in(&status.reputation, now_s),
    ) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let old_phase = status.phase;
    let changed = phase != old_phase || status.observed_generation.is_none();

    // Online accounting: written on a phase change or once per accounting period, so a
    // steady device costs one write per period, not one per event.
    let mut window = status
        .online_window
        .clone()
        .unwrap_or_else(|| crate::devices::online::OnlineWindow::start(now_s));
    let due = now_s - window.accounted_until >= config.accounting_period;
    let mut online_seconds = status.online_seconds;
    if changed || due {
        let before = window.accounted_until;
        window.advance(now_s, old_phase == DevicePhase::Online);
        if old_phase == DevicePhase::Online {
            online_seconds += u64::try_from(now_s - before).unwrap_or(0);
        }
    }
    let online_since = match (phase, old_phase) {
        (DevicePhase::Online, DevicePhase::Online) => status.online_since.clone(),
        (DevicePhase::Online, _) => Some(Time(now)),
        _ => None,
    };
    let identification = match node {
        Some(Some(n)) => Some(node_facts(n).identification),
        _ => status.identification.clone(),
    };
    let ready = ready_condition(
        &status,
        phase,
        plausibility,
        now,
        device.metadata.generation,
    );
    let mut owned = json!({
        "phase": phase,
        "onlineSince": online_since,
        "onlineRatioPermille": window.ratio_permille(),
        "onlineSeconds": online_seconds,
        "onlineWindow": window,
        "available": available(phase, device.spec.cordoned),
        "conditions": [ready],
        "observedGeneration": device.metadata.generation,
    });
    if node.is_some() {
        owned["identification"] = json!(identification);
    }
    let event = (phase != old_phase).then(|| PhaseChange {
        from: old_phase,
        to: phase,
        why: match phase {
            DevicePhase::Quarantined | DevicePhase::Retired
                if facts.standing != reputation::Standing::Good =>
            {
                Some(reputation_note(&status.reputation, now_s))
            }
            DevicePhase::Quarantined => plausibility.map(|c| c.message.clone()),
            _ => None,
        },
    });
    let until_accounting = window.accounted_until + config.accounting_period - now_s;
    Plan {
        owned: strip_nulls(owned),
        event,
        recheck_after: time_recheck.map_or(until_accounting, |t| t.min(until_accounting)),
    }
}

/// Why reputation took a device out of work, for its phase Event.
fn reputation_note(r: &crate::api::device::Reputation, now: i64) -> String {
    format!(
        "reputation {} (quarantine below {}): {} failed verifications (retired at {}), {} abnormal timings, {} unanswered challenges, {} verified",
        reputation::score_at(r, now),
        reputation::QUARANTINE_BELOW,
        r.verification_failures,
        reputation::RETIRE_AFTER,
        r.abnormal_timings,
        r.failed,
        r.succeeded
    )
}

/// The owned fields as they stand now, for comparison with a plan.
fn owned_fields(status: Option<&DeviceStatus>, node_device: bool) -> Value {
    let Some(s) = status else { return Value::Null };
    let ready: Vec<&Condition> = s
        .conditions
        .iter()
        .filter(|c| c.type_ == conditions::READY)
        .collect();
    let mut v = json!({
        "phase": s.phase,
        "onlineSince": s.online_since,
        "onlineRatioPermille": s.online_ratio_permille,
        "onlineSeconds": s.online_seconds,
        "onlineWindow": s.online_window,
        "available": s.available,
        "conditions": ready,
        "observedGeneration": s.observed_generation,
    });
    if node_device && s.identification.is_some() {
        v["identification"] = json!(s.identification);
    }
    strip_nulls(v)
}

fn strip_nulls(mut v: Value) -> Value {
    if let Value::Object(map) = &mut v {
        map.retain(|_, x| !x.is_null());
    }
    v
}

fn ready_condition(
    status: &DeviceStatus,
    phase: DevicePhase,
    plausibility: Option<&Condition>,
    now: Timestamp,
    generation: Option<i64>,
) -> Condition {
    let ready = phase == DevicePhase::Online;
    let old = status
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::READY);
    let status_str = if ready { "True" } else { "False" };
    let message = match phase {
        DevicePhase::Online => "the device is online and eligible for work".to_string(),
        DevicePhase::Pending => "waiting for the first heartbeat".to_string(),
        DevicePhase::Offline => {
            "no heartbeat within the grace period, or the Node is gone or NotReady".to_string()
        }
        DevicePhase::Quarantined => plausibility.map_or_else(String::new, |c| c.message.clone()),
        DevicePhase::Retired => "the device left the network; its history is kept".to_string(),
    };
    Condition {
        type_: conditions::READY.into(),
        status: status_str.into(),
        reason: format!("{phase:?}"),
        message,
        observed_generation: generation,
        last_transition_time: old
            .filter(|c| c.status == status_str)
            .map_or(Time(now), |c| c.last_transition_time.clone()),
    }
}

/// A phase change, recorded as an Event on the Device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseChange {
    /// The phase before.
    pub from: DevicePhase,
    /// The phase after.
    pub to: DevicePhase,
    /// Why, when the phase alone does not say (quarantine).
    pub why: Option<String>,
}

impl PhaseChange {
    /// The Event: reason is the new phase; Offline and Quarantined are warnings.
    pub fn to_event(&self) -> Event {
        let warning = matches!(self.to, DevicePhase::Offline | DevicePhase::Quarantined);
        let why = self
            .why
            .as_ref()
            .map_or_else(String::new, |w| format!(": {w}"));
        Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: format!("{:?}", self.to),
            note: Some(format!(
                "phase changed from {:?} to {:?}{why}",
                self.from, self.to
            )),
            action: "PhaseChange".into(),
            secondary: None,
        }
    }
}

#[cfg(test)]
#[path = "devices_tests.rs"]
mod tests;
