//! The task controller: observe → decide → write, per task. It observes the task's own
//! records (by name, from the scheduler loop's index and stores), validates them, and
//! observes their devices and Pods; [`decide`] says what follows; it writes lost records,
//! stops their Pods, hands the waiting work to the scheduler loop and applies the status.
//! It never schedules. A finalizer removes the task's Pods and records.

use super::scheduler::{self, Handle, LoopConfig, Queued};
use super::task_metrics::TaskMetrics;
use super::{Error, STALE_RETRY, apply_status, recorder};
use crate::api::common::conditions;
use crate::api::task_status::ComputeTaskStatus;
use crate::api::{ComputeTask, Device, DevicePhase, TaskPhase};
use crate::labels;
use crate::scheduler::cycle::{QueuedTask, RetryPolicy};
use crate::scheduler::slicer::{self, Slicing, batch_size_for};
use crate::tasks::assignment::{self, Assignment};
use crate::tasks::decide::{Observed, decide};
use crate::tasks::lifecycle::Limits;
use crate::tasks::record;
use crate::tasks::validate::{Invalid, TaskRef, validate};
use crate::tasks::worker_pod::PodTemplate;
use crate::verifier::{Evidence, Verifier};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Settings of the task controller.
#[derive(Debug, Clone)]
pub struct TaskConfig {
    /// The operator's namespace, where records and worker Pods live.
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
    /// The gateway's CA certificate (PEM), for worker Pods.
    pub ca_pem: String,
    /// How far settlement has paid: a deleted task's records stay until then.
    pub settled_until: crate::controller::settlement::SettledUntil,
}

struct Ctx {
    client: Client,
    config: TaskConfig,
    devices: Store<Device>,
    scheduler: Handle,
    recorder: Recorder,
    metrics: TaskMetrics,
    verifier: Arc<Verifier>,
    /// Invalid records already reported (name and resource version), so each one gets
    /// one Event and one count, not one per reconcile.
    reported: Mutex<BTreeSet<(String, Option<String>)>>,
}

/// An assignment record as read, not yet validated.
#[derive(Debug, Clone)]
struct Stored {
    /// Its object name (ConfigMap or Pod).
    name: String,
    a: Assignment,
    /// The ConfigMap's resource version; `None` while the record is its Pod's annotation.
    version: Option<String>,
}

/// Runs the task controller and the scheduler loop until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: TaskConfig,
    devices: Store<Device>,
    metrics: TaskMetrics,
    verifier: Arc<Verifier>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = futures::FutureExt::shared(shutdown);
    let recorder = recorder(client.clone());
    let (scheduler, cycles) = scheduler::start(
        client.clone(),
        LoopConfig {
            namespace: config.namespace.clone(),
            pod: config.pod.clone(),
            ca_pem: config.ca_pem.clone(),
        },
        devices.clone(),
        metrics.clone(),
        recorder.clone(),
        shutdown.clone(),
    );
    // Worker Pods and records live in the operator's namespace only: a lookalike in any
    // other namespace is never read. Their changes wake their task.
    let worker_pods = watcher::Config::default().labels("app.kubernetes.io/name=zop-worker");
    let assignment_cms = watcher::Config::default().labels(&format!("{}=true", labels::ASSIGNMENT));
    let task_of = |a: Assignment| Some(ObjectRef::new(&a.task).within(&a.task_namespace));
    let controller = Controller::new(
        Api::<ComputeTask>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<Pod>::namespaced(client.clone(), &config.namespace),
        worker_pods,
        move |pod| record::from_pod(&pod).and_then(task_of),
    )
    .watches(
        Api::<ConfigMap>::namespaced(client.clone(), &config.namespace),
        assignment_cms,
        move |cm| record::from_config_map(&cm).and_then(task_of),
    )
    // A device going Offline loses its assignments; look at every task again.
    .reconcile_all_on(device_changes(client.clone()));
    if !scheduler.ready().await {
        return;
    }
    let ctx = Arc::new(Ctx {
        client,
        config,
        devices,
        scheduler,
        recorder,
        metrics,
        verifier,
        reported: Mutex::default(),
    });
    // A burst of record and Pod events (a placement of thousands) becomes a few
    // reconciles of its task, not one per event competing with the placement's writes.
    let controller = controller
        .with_config(kube::runtime::Config::default().debounce(RECONCILE_DEBOUNCE))
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
        });
    tokio::join!(controller, cycles);
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
    let task = with_finalizer(&api, task).await?;
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

/// The task with the cleanup finalizer: a new task gets it here, conditional on the version
/// read, and goes on to its first decision in the same reconcile (rather than one
/// reconcile later, when the finalizer's own update comes back through the watch).
async fn with_finalizer(
    api: &Api<ComputeTask>,
    task: Arc<ComputeTask>,
) -> Result<Arc<ComputeTask>, Error> {
    let has = task
        .finalizers()
        .iter()
        .any(|f| f == labels::TASK_FINALIZER);
    if has || task.meta().deletion_timestamp.is_some() {
        return Ok(task);
    }
    let mut finalizers = task.finalizers().to_vec();
    finalizers.push(labels::TASK_FINALIZER.to_string());
    let patch = serde_json::json!({
        "metadata": { "resourceVersion": task.resource_version(), "finalizers": finalizers },
    });
    match api
        .patch(
            &task.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(patched) => Ok(Arc::new(patched)),
        // Changed meanwhile: kube's finalizer helper adds it on the newer version.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(task),
        Err(e) => Err(e.into()),
    }
}

/// The task's records, by name from the loop's index: from their ConfigMaps, or from
/// their worker Pod's annotation while no ConfigMap exists yet.
fn stored(ctx: &Ctx, uid: &str) -> Vec<Stored> {
    let ns = &ctx.config.namespace;
    ctx.scheduler
        .records_of(uid)
        .into_iter()
        .filter_map(|name| {
            if let Some(cm) = ctx
                .scheduler
                .configmaps
                .get(&ObjectRef::new(&name).within(ns))
            {
                let a = record::from_config_map(&cm)?;
                return Some(Stored {
                    version: cm.resource_version(),
                    name,
                    a,
                });
            }
            let pod = ctx.scheduler.pods.get(&ObjectRef::new(&name).within(ns))?;
            let mut a = record::from_pod(&pod)?;
            a.pod_uid = pod.uid();
            Some(Stored {
                name,
                a,
                version: None,
            })
        })
        .collect()
}

/// The records of `task` that pass [`validate`], and those that do not.
fn trusted(
    ctx: &Ctx,
    task: &ComputeTask,
    slicing: &Slicing,
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

/// Why a live assignment is lost now, if it is: its device is not Online, its worker Pod
/// is gone, deleted or ended, or its agent went silent.
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
            .scheduler
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
    r: Stored,
    why: String,
    ended: bool,
) -> Result<(), Error> {
    let mut cm = record::to_config_map(&ctx.config.namespace, &r.a)
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.config.namespace);
    // An assignment known only from its Pod gets its ConfigMap now.
    match r.version {
        Some(v) => {
            cm.metadata.resource_version = Some(v);
            api.replace(&r.name, &PostParams::default(), &cm).await?;
        }
        None => {
            api.create(&PostParams::default(), &cm).await?;
        }
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.config.namespace);
    match pods.delete(&r.name, &DeleteParams::default()).await {
        Ok(_) | Err(kube::Error::Api(_)) => {}
        Err(e) => tracing::warn!(error = %e, pod = %r.name, "deleting a worker pod failed"),
    }
    if !ended {
        let a = &r.a;
        let note = format!(
            "fragments {}..{} on {} lost ({why}); unfinished ones are reassigned",
            a.start, a.end, a.device
        );
        event(ctx, task, EventType::Warning, "Reassigned", note).await;
    }
    Ok(())
}

/// How long a task's reconcile requests gather before one runs.
const RECONCILE_DEBOUNCE: Duration = Duration::from_millis(100);

/// Record losses written at once (a cancel can end hundreds).
const WRITE_CONCURRENCY: usize = 64;

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
    // Observe.
    let (records, invalid) = trusted(ctx, task, &slicing, stored(ctx, &uid));
    report_invalid(ctx, task, invalid).await;
    let now = Timestamp::now().as_millisecond();
    let plain: Vec<Assignment> = records.iter().map(|r| r.a.clone()).collect();
    let scheduling = ctx.scheduler.scheduling(&uid);
    let unreplayable = ctx.scheduler.unreplayable(&uid);
    let lost_because = |a: &Assignment| lost_because(ctx, a, now);
    // Decide.
    let d = decide(&Observed {
        status: &status,
        cancel: task.spec.cancel,
        generation: task.meta().generation,
        created_s: task
            .creation_timestamp()
            .map_or(now / 1000, |t| t.0.as_second()),
        deadline_seconds: task.spec.active_deadline_seconds,
        slicing: &slicing,
        records: &plain,
        lost_because: &lost_because,
        scheduling: scheduling.as_ref(),
        batch: batch_size_for(slicing.fragments(), ctx.config.max_assignments),
        quorum: task.spec.verification.quorum,
        unreplayable: &unreplayable,
        retry: &ctx.config.retry,
        limits: &ctx.config.limits,
        now_ms: now,
    });
    // Write.
    let cancelled = task.spec.cancel || status.phase.is_terminal();
    let losses: Vec<(Stored, String)> = d
        .lost
        .iter()
        .map(|(i, why, a)| {
            let mut r = records[*i].clone();
            r.a = a.clone();
            (r, why.to_string())
        })
        .collect();
    let written: Vec<Result<(), Error>> = futures::stream::iter(losses)
        .map(|(r, why)| end_assignment(ctx, task, r, why, cancelled))
        .buffer_unordered(WRITE_CONCURRENCY)
        .collect()
        .await;
    written.into_iter().collect::<Result<Vec<()>, Error>>()?;
    // Only a rejection that was written moves the reputation.
    for p in &d.penalties {
        let evidence = Evidence {
            task: format!("{ns}/{}", task.name_any()),
            fragment: p.fragment,
            reason: p.reason.into(),
            detail: p.detail.clone(),
        };
        ctx.verifier
            .outcome(&records[p.record].a.device, p.outcome, &evidence)
            .await;
    }
    if d.waiting.is_empty() && d.replays.is_empty() {
        ctx.scheduler.dequeue(&uid);
    } else {
        ctx.scheduler.queue(Queued {
            object: task.object_ref(&()),
            uid: uid.clone(),
            task: QueuedTask {
                namespace: ns.clone(),
                name: task.name_any(),
                priority: task.spec.priority,
                requirements: task.spec.requirements.clone(),
                units: d.waiting.clone(),
                replays: d.replays.clone(),
            },
        });
    }
    ctx.metrics
        .observe_task(&ns, &uid, &d.status.fragments, d.status.phase.is_terminal());
    if d.status != status && !write_status(ctx, task, d.status.clone()).await? {
        return Ok(Action::requeue(STALE_RETRY));
    }
    if let Some(ended) = d.ended {
        let kind = if ended.completed {
            EventType::Normal
        } else {
            EventType::Warning
        };
        event(ctx, task, kind, ended.reason, ended.message).await;
    }
    Ok(Action::requeue(d.requeue))
}

fn failed_status(
    old: &ComputeTaskStatus,
    reason: &str,
    msg: &str,
    task: &ComputeTask,
) -> ComputeTaskStatus {
    let mut s = old.clone();
    let now = Time(Timestamp::now());
    if !s.phase.is_terminal() {
        s.phase = TaskPhase::Failed;
        s.completion_time = Some(now.clone());
    }
    crate::tasks::decide::set(
        &mut s.conditions,
        conditions::READY,
        "False",
        reason,
        msg,
        &now,
    );
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
    scheduler::publish(&ctx.recorder, &task.object_ref(&()), type_, reason, note).await;
}

/// On deletion: the task is Cancelled (Deleted), its Pods and records go.
async fn cleanup(task: &ComputeTask, ctx: &Ctx) -> Result<Action, Error> {
    let uid = task.uid().unwrap_or_default();
    ctx.scheduler.forget(&uid);
    let lp = ListParams::default().labels(&record::selector(&uid));
    Api::<Pod>::namespaced(ctx.client.clone(), &ctx.config.namespace)
        .delete_collection(&DeleteParams::default(), &lp)
        .await?;
    // Records of results not paid yet stay until their epoch is settled: they are what
    // settlement pays from.
    let records = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ctx.config.namespace);
    let settled = ctx.config.settled_until.get();
    let unpaid = records
        .list(&lp)
        .await?
        .items
        .iter()
        .filter_map(record::from_config_map)
        .any(|a| {
            a.results
                .iter()
                .any(|r| r.payable_ms.is_some_and(|p| p >= settled) && !assignment::is_rejected(r))
        });
    if unpaid {
        return Ok(Action::requeue(std::time::Duration::from_secs(5)));
    }
    records
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
