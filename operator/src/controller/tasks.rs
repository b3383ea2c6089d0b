//! The task controller: a thin shell over `tasks::*` and `scheduler::*`. Per task it
//! derives the plan from the persisted assignments, marks assignments lost when their
//! device, pod or worker is gone, places waiting fragments in a scheduling cycle over
//! every active task (fair shares across namespaces), writes assignments and worker
//! Pods, and applies the aggregated status. A finalizer removes pods and assignments.

use super::task_metrics::TaskMetrics;
use super::{Error, FIELD_MANAGER, STALE_RETRY, apply_status, recorder, spawn_store};
use crate::api::common::{conditions, set_condition};
use crate::api::task_status::{ComputeTaskStatus, TaskResult};
use crate::api::{ComputeTask, Device, DeviceClass, DevicePhase, TaskPhase};
use crate::labels;
use crate::scheduler::cycle::{CycleConfig, CycleInput, QueuedTask, RetryPolicy, run_cycle};
use crate::scheduler::placement::LoadState;
use crate::scheduler::slicer::{self, batch_size_for};
use crate::scheduler::snapshot::Snapshot;
use crate::tasks::assignment::{Assignment, State};
use crate::tasks::lifecycle::{Facts, Limits, next_phase};
use crate::tasks::plan::{TaskPlan, plan, result_digest};
use crate::tasks::validate::{Invalid, TaskRef, validate};
use crate::tasks::worker_pod::{self, PodTemplate};
use crate::tasks::{assignment, record, summary};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Settings of the task controller.
#[derive(Debug, Clone)]
pub struct TaskConfig {
    /// The operator's namespace, where assignments live.
    pub namespace: String,
    /// Worker Pods' shape.
    pub pod: PodTemplate,
    /// Most assignments (and so worker Pods) per task.
    pub max_assignments: u32,
    /// Reassignment backoff and retry limit.
    pub retry: RetryPolicy,
    /// When a task fails.
    pub limits: Limits,
    /// Seconds an agent assignment may go without progress before it is lost.
    pub agent_timeout_seconds: i64,
    /// The gateway's CA certificate (PEM), copied into task namespaces for worker Pods.
    pub ca_pem: String,
}

struct Ctx {
    client: Client,
    config: TaskConfig,
    devices: Store<Device>,
    pods: Store<Pod>,
    assignments: Store<ConfigMap>,
    tasks: Store<ComputeTask>,
    recorder: Recorder,
    metrics: TaskMetrics,
    /// Assignment names written but not yet seen in the store, per task UID: the
    /// ReplicaSet controller's "expectations", so a lagging cache never re-places them.
    expected: Mutex<HashMap<String, (Instant, BTreeSet<String>)>>,
    /// One scheduling cycle at a time, so decisions see each other's load.
    cycle: tokio::sync::Mutex<()>,
    /// Invalid records already reported (name and resource version), so each one gets
    /// one Event and one count, not one per reconcile.
    reported: Mutex<BTreeSet<(String, Option<String>)>>,
    /// The worker ServiceAccount and CA ConfigMap exist.
    worker_access: tokio::sync::OnceCell<()>,
}

/// An assignment record as read from the API server, not yet validated.
#[derive(Debug, Clone)]
struct Stored {
    /// Its object name (ConfigMap or Pod).
    name: String,
    a: Assignment,
    /// The ConfigMap's resource version; `None` while the record is its Pod's annotation.
    version: Option<String>,
}

/// Runs the task controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: TaskConfig,
    devices: Store<Device>,
    metrics: TaskMetrics,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let worker_pods = watcher::Config::default().labels("app.kubernetes.io/name=zop-worker");
    let assignment_cms = watcher::Config::default().labels(&format!("{}=true", labels::ASSIGNMENT));
    // Worker Pods and assignment ConfigMaps live in the operator's namespace only: a
    // lookalike in any other namespace is never read.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &config.namespace);
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &config.namespace);
    let pods = spawn_store(pod_api.clone(), worker_pods.clone());
    let assignments = spawn_store(cms.clone(), assignment_cms.clone());
    let controller = Controller::new(
        Api::<ComputeTask>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(pod_api, worker_pods, |pod| {
        let a = record::from_pod(&pod)?;
        Some(ObjectRef::new(&a.task).within(&a.task_namespace))
    })
    .watches(cms, assignment_cms, |cm| {
        let a = record::from_config_map(&cm)?;
        Some(ObjectRef::new(&a.task).within(&a.task_namespace))
    })
    // A device going Offline loses its assignments; look at every task again.
    .reconcile_all_on(device_changes(client.clone()));
    let tasks = controller.store();
    for store in [
        pods.wait_until_ready().await.is_err(),
        assignments.wait_until_ready().await.is_err(),
    ] {
        if store {
            return;
        }
    }
    let ctx = Arc::new(Ctx {
        recorder: recorder(client.clone()),
        client,
        config,
        devices,
        pods,
        assignments,
        tasks,
        metrics,
        expected: Mutex::default(),
        cycle: tokio::sync::Mutex::new(()),
        reported: Mutex::default(),
        worker_access: tokio::sync::OnceCell::new(),
    });
    controller
        .graceful_shutdown_on(shutdown)
        .run(
            reconcile,
            |_, err, _| Action::requeue(super::retry_after(err)),
            ctx,
        )
        .for_each(|res| async move {
            if let Err(err) = res {
                tracing::warn!(error = %err, "task reconcile failed");
            }
        })
        .await;
}

/// Ticks whenever a Device's phase changes, coalesced to at most one tick every two
/// seconds (a change inside the gap is answered when it ends, never dropped).
fn device_changes(client: Client) -> impl futures::Stream<Item = ()> + Send + 'static {
    let mut phases: HashMap<String, Option<DevicePhase>> = HashMap::new();
    let changes = watcher(Api::<Device>::all(client), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .filter_map(move |d| {
            let changed = d.is_ok_and(|d| {
                let now = d.status.as_ref().map(|s| s.phase);
                phases.insert(d.name_any(), now) != Some(now)
            });
            futures::future::ready(changed.then_some(()))
        });
    super::coalesce::coalesce(changes, Duration::from_secs(2))
}

async fn reconcile(task: Arc<ComputeTask>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = task.namespace().unwrap_or_default();
    let api: Api<ComputeTask> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, labels::TASK_FINALIZER, task, |event| async {
        match event {
            Finalizer::Apply(t) => apply(&t, &ctx).await,
            Finalizer::Cleanup(t) => cleanup(&t, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        kube::runtime::finalizer::Error::AddFinalizer(e)
        | kube::runtime::finalizer::Error::RemoveFinalizer(e) => Error::Kube(e),
        other => Error::Invalid(other.to_string()),
    })
}

fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

/// Records from their ConfigMaps, plus those that exist so far only as their worker
/// Pod's annotation; of task `uid`, or of every task. Unvalidated: see [`trusted`].
fn stored(ctx: &Ctx, uid: Option<&str>) -> Vec<Stored> {
    let of_task = |labels: &std::collections::BTreeMap<String, String>| {
        uid.is_none_or(|u| labels.get(labels::TASK_UID).map(String::as_str) == Some(u))
    };
    let mut by_name: HashMap<String, Stored> = ctx
        .assignments
        .state()
        .iter()
        .filter(|cm| of_task(cm.labels()))
        .filter_map(|cm| {
            let stored = Stored {
                name: cm.name_any(),
                a: record::from_config_map(cm)?,
                version: cm.resource_version(),
            };
            Some((stored.name.clone(), stored))
        })
        .collect();
    for pod in ctx.pods.state().iter().filter(|p| of_task(p.labels())) {
        if let Some(mut a) = record::from_pod(pod) {
            a.pod_uid = pod.uid();
            by_name.entry(pod.name_any()).or_insert(Stored {
                name: pod.name_any(),
                a,
                version: None,
            });
        }
    }
    by_name.into_values().collect()
}

/// The records of `task` that pass [`validate`], and those that do not.
fn trusted(
    ctx: &Ctx,
    task: &ComputeTask,
    slicing: &slicer::Slicing,
    records: Vec<Stored>,
) -> (Vec<Stored>, Vec<(Stored, Invalid)>) {
    let (ns, name, uid) = (
        task.namespace().unwrap_or_default(),
        task.name_any(),
        task.uid().unwrap_or_default(),
    );
    let of = TaskRef {
        namespace: &ns,
        name: &name,
        uid: &uid,
        slicing,
    };
    let known = |d: &str| ctx.devices.get(&ObjectRef::new(d)).is_some();
    let mut good = Vec::with_capacity(records.len());
    let mut bad = Vec::new();
    for r in records {
        match validate(&r.a, &r.name, &of, known) {
            Ok(()) => good.push(r),
            Err(e) => bad.push((r, e)),
        }
    }
    (good, bad)
}

/// One warning Event and one count per invalid record (and version).
async fn report_invalid(ctx: &Ctx, task: &ComputeTask, bad: Vec<(Stored, Invalid)>) {
    for (r, why) in bad {
        let fresh = ctx
            .reported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((r.name.clone(), r.version.clone()));
        if !fresh {
            continue;
        }
        tracing::warn!(record = %r.name, reason = why.reason(), error = %why, "ignoring an invalid assignment record");
        ctx.metrics.invalid_record(why.reason());
        let note = format!("assignment record {} ignored: {why}", r.name);
        event(ctx, task, EventType::Warning, "InvalidRecord", note).await;
    }
}

/// Whether every assignment written for `uid` is in the store yet.
fn caught_up(ctx: &Ctx, uid: &str, seen: &[Stored]) -> bool {
    let mut expected = ctx.expected.lock().unwrap_or_else(|e| e.into_inner());
    let Some((since, names)) = expected.get_mut(uid) else {
        return true;
    };
    for r in seen {
        names.remove(&r.name);
    }
    let done = names.is_empty() || since.elapsed() > EXPECTATION_TIMEOUT;
    if done {
        expected.remove(uid);
    }
    done
}

/// Why a live assignment is lost now, if it is.
fn lost_because(ctx: &Ctx, a: &Assignment, now: i64) -> Option<&'static str> {
    let device = ctx.devices.get(&ObjectRef::new(&a.device));
    let phase = device
        .as_ref()
        .and_then(|d| d.status.as_ref())
        .map(|s| s.phase);
    if phase != Some(DevicePhase::Online) {
        return Some("DeviceLost");
    }
    let is_node = device
        .as_ref()
        .is_some_and(|d| d.spec.source.node.is_some());
    if is_node {
        let name = record::name(&a.task_uid, a.start, a.attempt);
        match ctx
            .pods
            .get(&ObjectRef::new(&name).within(&ctx.config.namespace))
        {
            None if now - a.created_ms > 15_000 => return Some("PodGone"),
            None => {}
            Some(p) if p.metadata.deletion_timestamp.is_some() => return Some("PodDeleted"),
            Some(p) => match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
                Some("Failed") => return Some("PodFailed"),
                Some("Succeeded") => return Some("PodEndedEarly"),
                _ => {}
            },
        }
    } else if now - a.updated_ms.max(a.created_ms) > ctx.config.agent_timeout_seconds * 1000 {
        return Some("AgentTimedOut");
    }
    None
}

/// Records a lost assignment and stops its Pod; an Event says why unless the task ended.
async fn end_assignment(
    ctx: &Ctx,
    task: &ComputeTask,
    a: Assignment,
    version: Option<String>,
    why: String,
    ended: bool,
) -> Result<(), Error> {
    write_assignment(ctx, &a, version).await?;
    delete_pod(ctx, &record::name(&a.task_uid, a.start, a.attempt)).await;
    if !ended {
        let note = format!(
            "fragments {}..{} on {} lost ({why}); unfinished ones are reassigned",
            a.start, a.end, a.device
        );
        event(ctx, task, EventType::Warning, "Reassigned", note).await;
    }
    Ok(())
}

async fn write_assignment(ctx: &Ctx, a: &Assignment, version: Option<String>) -> Result<(), Error> {
    let mut cm = record::to_config_map(&ctx.config.namespace, a)
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.config.namespace);
    // An assignment known only from its Pod gets its ConfigMap now.
    match version {
        Some(v) => {
            cm.metadata.resource_version = Some(v);
            api.replace(&cm.name_any(), &PostParams::default(), &cm)
                .await?;
        }
        None => {
            api.create(&PostParams::default(), &cm).await?;
        }
    }
    Ok(())
}

async fn apply(task: &ComputeTask, ctx: &Ctx) -> Result<Action, Error> {
    let uid = task.uid().unwrap_or_default();
    let ns = task.namespace().unwrap_or_default();
    let status = task.status.clone().unwrap_or_default();
    let slicing = match slicer::slice(&task.spec) {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("{}: {e}", e.field());
            if !write_status(ctx, task, failed_status(&status, "InvalidSpec", &msg, task)).await? {
                return Ok(Action::requeue(STALE_RETRY));
            }
            return Ok(Action::await_change());
        }
    };
    let records = stored(ctx, Some(&uid));
    if !caught_up(ctx, &uid, &records) {
        return Ok(Action::requeue(Duration::from_millis(300)));
    }
    let (mut seen, invalid) = trusted(ctx, task, &slicing, records);
    report_invalid(ctx, task, invalid).await;
    let now = now_ms();
    let cancelled = task.spec.cancel || status.phase.is_terminal();
    let mut losses: Vec<(Stored, String)> = Vec::new();
    for r in &mut seen {
        if !matches!(r.a.state, State::Pending | State::Running) {
            continue;
        }
        let why = if cancelled {
            Some("TaskEnded")
        } else {
            lost_because(ctx, &r.a, now)
        };
        if let Some(why) = why {
            r.a.lose(now);
            losses.push((r.clone(), why.to_string()));
        }
    }
    // A cancel can end hundreds of assignments at once: record and stop them in parallel.
    let written: Vec<Result<(), Error>> = futures::stream::iter(losses)
        .map(|(r, why)| end_assignment(ctx, task, r.a, r.version, why, cancelled))
        .buffer_unordered(WRITE_CONCURRENCY)
        .collect()
        .await;
    written.into_iter().collect::<Result<Vec<()>, Error>>()?;
    let assignments: Vec<Assignment> = seen.into_iter().map(|r| r.a).collect();
    let batch = batch_size_for(slicing.fragments(), ctx.config.max_assignments);
    let plan = plan(&slicing, &assignments, batch, &ctx.config.retry);
    let mut conds = status.conditions.clone();
    let mut ineligible_since = conds
        .iter()
        .find(|c| {
            c.type_ == conditions::SCHEDULED
                && c.status == "False"
                && c.reason == "NoEligibleDevice"
        })
        .map(|c| c.last_transition_time.0.as_second());
    if !cancelled && !plan.waiting.is_empty() {
        match schedule(ctx, task, &plan, now).await? {
            (0, Some(why)) => {
                ineligible_since.get_or_insert(now / 1000);
                set(
                    &mut conds,
                    conditions::SCHEDULED,
                    "False",
                    "NoEligibleDevice",
                    &why,
                );
            }
            (0, None) => {}
            (placed, _) => {
                ineligible_since = None;
                set(
                    &mut conds,
                    conditions::SCHEDULED,
                    "True",
                    "Placed",
                    &format!("{placed} assignments placed"),
                );
            }
        }
    }
    let mut counts = plan.counts.clone();
    counts.verified = counts.completed;
    let (phase, reason) = next_phase(
        &Facts {
            phase: status.phase,
            cancel: task.spec.cancel,
            deleting: false,
            created: task
                .creation_timestamp()
                .map_or(now / 1000, |t| t.0.as_second()),
            deadline_seconds: task.spec.active_deadline_seconds,
            counts: counts.clone(),
            ineligible_since,
            now: now / 1000,
        },
        &ctx.config.limits,
    );
    let mut next = ComputeTaskStatus {
        phase,
        progress: summary::progress(&counts),
        contributions: summary::contributions(assignment::contributions(&assignments)),
        fragments: counts.clone(),
        result: None,
        start_time: status.start_time.clone(),
        completion_time: status.completion_time.clone(),
        conditions: conds,
        observed_generation: task.meta().generation,
    };
    if next.start_time.is_none() && (counts.running > 0 || counts.completed > 0) {
        next.start_time = Some(Time(Timestamp::now()));
    }
    if phase == TaskPhase::Completed {
        next.result = result_digest(counts.total, &assignments).map(|digest| TaskResult {
            digest,
            ..TaskResult::default()
        });
    }
    let mut ended = None;
    if !status.phase.is_terminal() {
        let message = match reason {
            crate::tasks::lifecycle::Reason::NoEligibleDevice => next
                .conditions
                .iter()
                .find(|c| c.type_ == conditions::SCHEDULED)
                .map_or_else(String::new, |c| c.message.clone()),
            _ => format!("{} of {} fragments verified", counts.verified, counts.total),
        };
        let ready = if phase == TaskPhase::Completed {
            "True"
        } else {
            "False"
        };
        set(
            &mut next.conditions,
            conditions::READY,
            ready,
            reason.as_str(),
            &message,
        );
        if phase.is_terminal() {
            next.completion_time = Some(Time(Timestamp::now()));
            let kind = if phase == TaskPhase::Completed {
                EventType::Normal
            } else {
                EventType::Warning
            };
            ended = Some((kind, message));
        }
    } else {
        next.phase = status.phase;
        next.completion_time = status.completion_time.clone();
    }
    ctx.metrics
        .observe_task(&ns, &uid, &next.fragments, next.phase.is_terminal());
    if next != status && !write_status(ctx, task, next.clone()).await? {
        return Ok(Action::requeue(STALE_RETRY));
    }
    if let Some((kind, message)) = ended {
        event(ctx, task, kind, phase_reason(next.phase), message).await;
    }
    if next.phase.is_terminal() {
        return Ok(Action::requeue(Duration::from_secs(600)));
    }
    let wake = plan
        .waiting
        .iter()
        .map(|u| u.not_before_ms)
        .filter(|&t| t > now)
        .min()
        .map_or(Duration::from_secs(5), |t| {
            Duration::from_millis((t - now) as u64 + 50)
        });
    Ok(Action::requeue(wake.min(Duration::from_secs(5))))
}

fn phase_reason(phase: TaskPhase) -> &'static str {
    match phase {
        TaskPhase::Completed => "Completed",
        TaskPhase::Cancelled => "Cancelled",
        _ => "Failed",
    }
}

fn set(list: &mut Vec<Condition>, type_: &str, status: &str, reason: &str, message: &str) {
    set_condition(
        list,
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.chars().take(1024).collect(),
            last_transition_time: Time(Timestamp::now()),
            observed_generation: None,
        },
    );
}

fn failed_status(
    old: &ComputeTaskStatus,
    reason: &str,
    msg: &str,
    task: &ComputeTask,
) -> ComputeTaskStatus {
    let mut s = old.clone();
    if !s.phase.is_terminal() {
        s.phase = TaskPhase::Failed;
        s.completion_time = Some(Time(Timestamp::now()));
    }
    set(&mut s.conditions, conditions::READY, "False", reason, msg);
    s.observed_generation = task.meta().generation;
    s
}

/// Applies `status` over the version of `task` this reconcile read ([`apply_status`]);
/// `false` when the task changed meanwhile.
async fn write_status(
    ctx: &Ctx,
    task: &ComputeTask,
    status: ComputeTaskStatus,
) -> Result<bool, Error> {
    let api: Api<ComputeTask> =
        Api::namespaced(ctx.client.clone(), &task.namespace().unwrap_or_default());
    let status = serde_json::to_value(status).map_err(|e| Error::Invalid(e.to_string()))?;
    apply_status(&api, task, status).await
}

async fn event(ctx: &Ctx, task: &ComputeTask, type_: EventType, reason: &str, note: String) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Schedule".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &task.object_ref(&())).await {
        tracing::warn!(error = %e, task = %task.name_any(), "publishing event failed");
    }
}

async fn delete_pod(ctx: &Ctx, name: &str) {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.config.namespace);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) | Err(kube::Error::Api(_)) => {}
        Err(e) => tracing::warn!(error = %e, pod = name, "deleting a worker pod failed"),
    }
}

/// The waiting units of `task`'s plan and of every other active task, in one cycle; only
/// `task`'s decisions are written (the others' are theirs to make when they reconcile),
/// but their demand shapes the fair shares. Returns the assignments placed, or why no
/// device can run the task.
async fn schedule(
    ctx: &Ctx,
    task: &ComputeTask,
    own: &TaskPlan,
    now: i64,
) -> Result<(u32, Option<String>), Error> {
    let _one_at_a_time = ctx.cycle.lock().await;
    let started = Instant::now();
    let uid = task.uid().unwrap_or_default();
    let devices = ctx.devices.state();
    let mut by_task: HashMap<String, Vec<Stored>> = HashMap::new();
    for r in stored(ctx, None) {
        by_task.entry(r.a.task_uid.clone()).or_default().push(r);
    }
    let mut queued = vec![queued_of(task, own.clone())];
    // Live assignments per device: fragments still to run, and worker Pods (one each).
    let mut running: HashMap<String, (u32, u32)> = HashMap::new();
    let mut count_live = |records: &[Stored]| {
        for r in records {
            if matches!(r.a.state, State::Pending | State::Running) {
                let e = running.entry(r.a.device.clone()).or_default();
                e.0 = e.0.saturating_add(r.a.unfinished().len() as u32);
                e.1 = e.1.saturating_add(1);
            }
        }
    };
    for other in ctx.tasks.state() {
        let other_uid = other.uid().unwrap_or_default();
        let Ok(slicing) = slicer::slice(&other.spec) else {
            continue;
        };
        // Other tasks' invalid records are theirs to report when they reconcile.
        let (theirs, _) = trusted(
            ctx,
            &other,
            &slicing,
            by_task.remove(&other_uid).unwrap_or_default(),
        );
        count_live(&theirs);
        let active =
            other.status.as_ref().is_none_or(|s| !s.phase.is_terminal()) && !other.spec.cancel;
        if other_uid == uid || !active {
            continue;
        }
        let theirs: Vec<Assignment> = theirs.into_iter().map(|r| r.a).collect();
        let batch = batch_size_for(slicing.fragments(), ctx.config.max_assignments);
        queued.push(queued_of(
            &other,
            plan(&slicing, &theirs, batch, &ctx.config.retry),
        ));
    }
    // A worker Pod holds its GPU until it ends, which may be after its assignment
    // completed: the node's kubelet counts the Pod, so the scheduler does too.
    let mut pods_on_node: HashMap<String, u32> = HashMap::new();
    for p in ctx.pods.state() {
        let ended = matches!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone())
            && !ended
        {
            *pods_on_node.entry(node).or_default() += 1;
        }
    }
    let node_of: HashMap<String, String> = devices
        .iter()
        .filter_map(|d| Some((d.name_any(), d.spec.source.node.as_ref()?.name.clone())))
        .collect();
    let mut snapshot =
        Snapshot::from_devices(devices.iter().map(AsRef::as_ref), &Default::default());
    for d in &mut snapshot.devices {
        let (fragments, assignments) = running.get(d.name.as_str()).copied().unwrap_or((0, 0));
        let pods = node_of
            .get(&d.name)
            .and_then(|n| pods_on_node.get(n))
            .copied()
            .unwrap_or(0);
        d.running = d.running.max(fragments);
        d.units = assignments.max(pods);
    }
    let mut load = LoadState::new(&snapshot);
    let outcome = run_cycle(
        &CycleInput {
            now_ms: now,
            seed: 0x5eed,
            tasks: &queued,
        },
        &snapshot,
        &mut load,
        &CycleConfig::default(),
    );
    ctx.metrics.cycle(started.elapsed());
    let why = outcome
        .unschedulable
        .iter()
        .find(|(t, _)| *t == 0)
        .map(|(_, e)| e.to_string());
    let mine: Vec<_> = outcome.decisions.iter().filter(|d| d.task == 0).collect();
    if mine.is_empty() {
        return Ok((0, why));
    }
    ctx.worker_access
        .get_or_try_init(|| ensure_worker_access(ctx))
        .await?;
    let mut writes = Vec::with_capacity(mine.len());
    for d in &mine {
        let unit = &queued[0].units[d.unit];
        let device = &snapshot.devices[d.device as usize];
        let a = Assignment {
            task_namespace: task.namespace().unwrap_or_default(),
            task: task.name_any(),
            task_uid: uid.clone(),
            device: device.name.clone(),
            start: unit.fragments.start,
            end: unit.fragments.end,
            attempt: unit.failures,
            state: State::Pending,
            results: Vec::new(),
            created_ms: now,
            updated_ms: now,
            pod_uid: None,
            claim_mismatches: 0,
        };
        let name = record::name(&uid, a.start, a.attempt);
        let cm = record::to_config_map(&ctx.config.namespace, &a)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let gpus = u32::from(device.class == DeviceClass::Gpu && device.gpu_count > 0);
        let pod = match node_of.get(&device.name) {
            Some(node) => Some(
                worker_pod::worker_pod(&a, &name, node, gpus, &ctx.config.pod)
                    .map_err(|e| Error::Invalid(e.to_string()))?,
            ),
            None => None,
        };
        writes.push((name, cm, pod));
    }
    // The writes of one cycle go out in parallel.
    let results: Vec<Result<String, Error>> = futures::stream::iter(writes)
        .map(|(name, cm, pod)| async move {
            match pod {
                // The Pod carries its assignment; the ConfigMap follows with the first
                // result (gateway) or a loss (controller): one write per placement.
                Some(pod) => {
                    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.config.namespace);
                    ignore_exists(pods.create(&PostParams::default(), &pod).await)?;
                }
                None => {
                    let cms: Api<ConfigMap> =
                        Api::namespaced(ctx.client.clone(), &ctx.config.namespace);
                    ignore_exists(cms.create(&PostParams::default(), &cm).await)?;
                }
            }
            Ok(name)
        })
        .buffer_unordered(WRITE_CONCURRENCY)
        .collect()
        .await;
    let mut names = BTreeSet::new();
    let mut failure = None;
    for r in results {
        match r {
            Ok(name) => {
                names.insert(name);
            }
            Err(e) => failure = Some(e),
        }
    }
    let written = names.len();
    ctx.expected
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(uid)
        .or_insert_with(|| (Instant::now(), BTreeSet::new()))
        .1
        .extend(names);
    if let Some(e) = failure {
        return Err(e);
    }
    let count = u32::try_from(written).unwrap_or(u32::MAX);
    event(
        ctx,
        task,
        EventType::Normal,
        "Scheduled",
        format!("{count} assignments placed"),
    )
    .await;
    Ok((count, None))
}

/// Assignment and Pod creates in flight at once.
const WRITE_CONCURRENCY: usize = 128;

/// How long written assignments may stay unseen before the cache is trusted again.
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(30);

fn ignore_exists<T>(r: Result<T, kube::Error>) -> Result<(), Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn queued_of(task: &ComputeTask, plan: TaskPlan) -> QueuedTask {
    QueuedTask {
        namespace: task.namespace().unwrap_or_default(),
        name: task.name_any(),
        priority: task.spec.priority,
        requirements: task.spec.requirements.clone(),
        units: plan.waiting,
    }
}

/// The ServiceAccount and CA ConfigMap worker Pods need, in the operator's namespace;
/// idempotent.
async fn ensure_worker_access(ctx: &Ctx) -> Result<(), Error> {
    let ns = ctx.config.namespace.as_str();
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let sa = json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": { "name": worker_pod::SERVICE_ACCOUNT, "labels": { labels::MANAGED_BY: labels::MANAGER } },
        "automountServiceAccountToken": false,
    });
    Api::<ServiceAccount>::namespaced(ctx.client.clone(), ns)
        .patch(worker_pod::SERVICE_ACCOUNT, &pp, &Patch::Apply(&sa))
        .await?;
    let ca = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": worker_pod::CA_CONFIG_MAP, "labels": { labels::MANAGED_BY: labels::MANAGER } },
        "data": { worker_pod::CA_KEY: ctx.config.ca_pem },
    });
    Api::<ConfigMap>::namespaced(ctx.client.clone(), ns)
        .patch(worker_pod::CA_CONFIG_MAP, &pp, &Patch::Apply(&ca))
        .await?;
    Ok(())
}

/// On deletion: the task is Cancelled (Deleted), its pods and assignments go.
async fn cleanup(task: &ComputeTask, ctx: &Ctx) -> Result<Action, Error> {
    let uid = task.uid().unwrap_or_default();
    let lp = ListParams::default().labels(&record::selector(&uid));
    Api::<Pod>::namespaced(ctx.client.clone(), &ctx.config.namespace)
        .delete_collection(&DeleteParams::default(), &lp)
        .await?;
    Api::<ConfigMap>::namespaced(ctx.client.clone(), &ctx.config.namespace)
        .delete_collection(&DeleteParams::default(), &lp)
        .await?;
    ctx.metrics.forget_task(&uid);
    if !task.status.as_ref().is_some_and(|s| s.phase.is_terminal()) {
        event(
            ctx,
            task,
            EventType::Normal,
            "Cancelled",
            "the task was deleted".into(),
        )
        .await;
    }
    Ok(Action::await_change())
}
