//! The scheduler loop: the one owner of the scheduling caches (Kueue's cache, queue and
//! cycle). It keeps
//! - the assignment index, fed by its own watches of the operator namespace's
//!   assignment ConfigMaps and worker Pods (which also fill the stores task reconciles
//!   read their records from);
//! - the queue: each task with work waiting for a device, as its last reconcile decided;
//! - the assumptions of its own placements, until the index shows them or a write fails.
//!
//! When anything changed it runs one cycle over every queued task, writes the
//! placements (a worker Pod for a cluster Node, a ConfigMap for an agent), and leaves
//! each task its last word ([`Scheduling`]). Task reconciles only observe, decide and
//! write their status; they never schedule.

use super::Error;
use super::task_metrics::TaskMetrics;
use crate::api::{Device, DeviceClass};
use crate::labels;
use crate::scheduler::cycle::{CycleConfig, QueuedTask};
use crate::scheduler::index::{AssignmentIndex, Assumed, Assumptions, Live, Source};
use crate::scheduler::round::{Round, Waiting, round};
use crate::tasks::assignment::{Assignment, State};
use crate::tasks::decide::Scheduling;
use crate::tasks::record;
use crate::tasks::worker_pod::{self, PodTemplate};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};

/// Placement writes in flight at once.
const WRITE_CONCURRENCY: usize = 128;
/// How long a placement the watch never showed is assumed (then the cache is trusted).
const ASSUME_TTL_MS: i64 = 30_000;
/// The shortest gap between two cycles: changes arriving meanwhile join the next one.
const CYCLE_GAP: Duration = Duration::from_millis(20);
/// How often queued work is looked at without a change (backoffs run out).
const TICK: Duration = Duration::from_secs(1);

/// What the loop needs to write placements.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// The operator's namespace: records and worker Pods.
    pub namespace: String,
    /// Worker Pods' shape.
    pub pod: PodTemplate,
    /// The gateway's CA certificate (PEM), for worker Pods.
    pub ca_pem: String,
}

/// A task's waiting work, as its reconcile last decided it.
#[derive(Debug, Clone)]
pub struct Queued {
    /// The task, for Events.
    pub object: ObjectReference,
    /// Its UID.
    pub uid: String,
    /// What waits.
    pub task: QueuedTask,
}

enum Msg {
    Queue(Box<Queued>),
    Dequeue(String),
}

struct Shared {
    index: Mutex<AssignmentIndex>,
    reports: Mutex<HashMap<String, Scheduling>>,
    /// Fragments, by task UID, whose replay no device of another provider can take.
    unreplayable: Mutex<HashMap<String, BTreeSet<u32>>>,
    changed: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The task controller's handle on the loop.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::UnboundedSender<Msg>,
    shared: Arc<Shared>,
    /// Assignment ConfigMaps of the operator's namespace.
    pub configmaps: Store<ConfigMap>,
    /// Worker Pods of the operator's namespace.
    pub pods: Store<Pod>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

impl Handle {
    /// Queues (or replaces) a task's waiting work.
    pub fn queue(&self, q: Queued) {
        let _ = self.tx.send(Msg::Queue(Box::new(q)));
    }

    /// Takes a task out of the queue and forgets its last word.
    pub fn dequeue(&self, uid: &str) {
        lock(&self.shared.reports).remove(uid);
        let _ = self.tx.send(Msg::Dequeue(uid.to_string()));
    }

    /// The loop's last word on task `uid`.
    pub fn scheduling(&self, uid: &str) -> Option<Scheduling> {
        lock(&self.shared.reports).get(uid).cloned()
    }

    /// Forgets task `uid` entirely (it is deleted).
    pub fn forget(&self, uid: &str) {
        self.dequeue(uid);
        lock(&self.shared.unreplayable).remove(uid);
    }

    /// Fragments of task `uid` whose replay no eligible device of another provider can
    /// take: their vote settles on the results there are. Kept until the task is deleted,
    /// so a settled vote stays settled.
    pub fn unreplayable(&self, uid: &str) -> BTreeSet<u32> {
        lock(&self.shared.unreplayable)
            .get(uid)
            .cloned()
            .unwrap_or_default()
    }

    /// The names of task `uid`'s records.
    pub fn records_of(&self, uid: &str) -> Vec<String> {
        lock(&self.shared.index).records_of(uid)
    }

    /// Waits until both record stores have listed.
    pub async fn ready(&self) -> bool {
        self.configmaps.wait_until_ready().await.is_ok()
            && self.pods.wait_until_ready().await.is_ok()
    }
}

/// Starts the loop's watches and returns its handle and the loop itself, to run until
/// `shutdown` resolves.
pub fn start(
    client: Client,
    config: LoopConfig,
    devices: Store<Device>,
    metrics: TaskMetrics,
    recorder: Recorder,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (Handle, impl Future<Output = ()> + Send) {
    let shared = Arc::new(Shared {
        index: Mutex::default(),
        reports: Mutex::default(),
        unreplayable: Mutex::default(),
        changed: Notify::new(),
    });
    let (configmaps, cm_writer) = reflector::store();
    let (pods, pod_writer) = reflector::store();
    let cms = Api::<ConfigMap>::namespaced(client.clone(), &config.namespace);
    let pod_api = Api::<Pod>::namespaced(client.clone(), &config.namespace);
    let assignment_cms = watcher::Config::default().labels(&format!("{}=true", labels::ASSIGNMENT));
    let worker_pods = watcher::Config::default().labels("app.kubernetes.io/name=zop-worker");
    tokio::spawn(feed(
        cm_writer,
        cms,
        assignment_cms,
        shared.clone(),
        index_configmap,
    ));
    tokio::spawn(feed(
        pod_writer,
        pod_api,
        worker_pods,
        shared.clone(),
        index_pod,
    ));
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = Handle {
        tx,
        shared: shared.clone(),
        configmaps,
        pods,
    };
    let state = Loop {
        client,
        config,
        devices,
        metrics,
        recorder,
        shared,
        queue: BTreeMap::new(),
        assumptions: Assumptions::default(),
        worker_access: false,
    };
    let ready = handle.clone();
    let run = async move {
        if !ready.ready().await {
            return;
        }
        state.run(rx, shutdown).await;
    };
    (handle, run)
}

/// One watch feeding its store and the index; a relist replaces what it said before.
async fn feed<K>(
    writer: reflector::store::Writer<K>,
    api: Api<K>,
    cfg: watcher::Config,
    shared: Arc<Shared>,
    index: fn(&mut AssignmentIndex, &K, bool),
) where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let events = reflector::reflector(
        writer,
        watcher(api, cfg).modify(|o| o.meta_mut().managed_fields = None),
    )
    .default_backoff();
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        let Ok(event) = event else { continue };
        {
            let mut ix = lock(&shared.index);
            match &event {
                watcher::Event::Init => ix.reset(source_of::<K>()),
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => index(&mut ix, o, true),
                watcher::Event::Delete(o) => index(&mut ix, o, false),
                watcher::Event::InitDone => {}
            }
        }
        shared.changed.notify_one();
    }
}

fn source_of<K: Resource<DynamicType = ()>>() -> Source {
    if K::kind(&()) == "Pod" {
        Source::Pod
    } else {
        Source::ConfigMap
    }
}

/// What the index keeps of a record: its load while live, when it is well-formed (the
/// task's reconcile validates it fully before it counts for anything else).
fn live_of(name: &str, a: &Assignment) -> Option<Live> {
    let well_formed = a.start < a.end && name == record::name(&a.task_uid, a.start, a.attempt);
    (well_formed && matches!(a.state, State::Pending | State::Running)).then(|| Live {
        task_uid: a.task_uid.clone(),
        device: a.device.clone(),
        unfinished: a
            .len()
            .saturating_sub(u32::try_from(a.results.len()).unwrap_or(u32::MAX)),
    })
}

fn index_configmap(ix: &mut AssignmentIndex, cm: &ConfigMap, present: bool) {
    let name = cm.name_any();
    let uid = cm
        .labels()
        .get(labels::TASK_UID)
        .cloned()
        .unwrap_or_default();
    if !present {
        ix.remove_record(&name, &uid, Source::ConfigMap);
        return;
    }
    let live = record::from_config_map(cm).and_then(|a| live_of(&name, &a));
    ix.apply_record(&name, &uid, Source::ConfigMap, live);
}

fn index_pod(ix: &mut AssignmentIndex, pod: &Pod, present: bool) {
    let name = pod.name_any();
    let uid = pod
        .labels()
        .get(labels::TASK_UID)
        .cloned()
        .unwrap_or_default();
    let ended = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
    ix.apply_pod(&name, node.filter(|_| present && !ended));
    if !present {
        ix.remove_record(&name, &uid, Source::Pod);
        return;
    }
    let live = record::from_pod(pod).and_then(|a| live_of(&name, &a));
    ix.apply_record(&name, &uid, Source::Pod, live);
}

struct Loop {
    client: Client,
    config: LoopConfig,
    devices: Store<Device>,
    metrics: TaskMetrics,
    recorder: Recorder,
    shared: Arc<Shared>,
    queue: BTreeMap<String, Queued>,
    assumptions: Assumptions,
    worker_access: bool,
}

impl Loop {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Msg>,
        shutdown: impl Future<Output = ()>,
    ) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                msg = rx.recv() => match msg {
                    Some(m) => self.take(m),
                    None => return,
                },
                () = self.shared.changed.notified() => {}
                _ = tick.tick() => {}
            }
            // Everything that arrived meanwhile joins this cycle.
            tokio::time::sleep(CYCLE_GAP).await;
            while let Ok(m) = rx.try_recv() {
                self.take(m);
            }
            if !self.queue.is_empty() {
                self.cycle().await;
            }
        }
    }

    fn take(&mut self, m: Msg) {
        match m {
            Msg::Queue(q) if q.task.units.is_empty() && q.task.replays.is_empty() => {
                self.queue.remove(&q.uid);
            }
            Msg::Queue(q) => {
                self.queue.insert(q.uid.clone(), *q);
            }
            Msg::Dequeue(uid) => {
                self.queue.remove(&uid);
            }
        }
    }

    /// One cycle: snapshot, place, assume, write.
    async fn cycle(&mut self) {
        let started = Instant::now();
        let now = Timestamp::now().as_millisecond();
        let devices = self.devices.state();
        let queued: Vec<&Queued> = self.queue.values().collect();
        let waiting: Vec<Waiting<'_>> = queued
            .iter()
            .map(|q| Waiting {
                uid: &q.uid,
                task: &q.task,
            })
            .collect();
        let Round {
            snapshot,
            nodes,
            tasks,
            outcome,
            replays,
            unreplayable,
        } = {
            let ix = lock(&self.shared.index);
            self.assumptions.settle(&ix, now, ASSUME_TTL_MS);
            round(
                devices.iter().map(AsRef::as_ref),
                &ix,
                &self.assumptions,
                &waiting,
                now,
                &CycleConfig::default(),
            )
        };
        drop(devices);
        self.metrics.cycle(started.elapsed());
        let round_ms = started.elapsed().as_millis() as u64;
        let mut placed = vec![0u32; tasks.len()];
        for d in &outcome.decisions {
            placed[d.task] += 1;
        }
        {
            let mut reports = lock(&self.shared.reports);
            for (t, q) in queued.iter().enumerate() {
                let report =
                    if let Some((_, e)) = outcome.unschedulable.iter().find(|(i, _)| *i == t) {
                        Scheduling::Unschedulable(e.to_string())
                    } else if placed[t] > 0 {
                        Scheduling::Placed(placed[t])
                    } else if tasks[t].units.iter().any(|u| u.not_before_ms <= now) {
                        Scheduling::Waiting
                    } else {
                        continue;
                    };
                reports.insert(q.uid.clone(), report);
            }
        }
        if !unreplayable.is_empty() {
            let mut map = lock(&self.shared.unreplayable);
            for &(t, k) in &unreplayable {
                map.entry(queued[t].uid.clone())
                    .or_default()
                    .insert(tasks[t].replays[k].fragment);
            }
        }
        // A new record of `fragments` on device `i` of the snapshot, with the Node and GPU
        // its worker Pod needs.
        let place = |t: usize, i: u32, fragments: std::ops::Range<u32>, attempt: u32, replay| {
            let q = queued[t];
            let device = &snapshot.devices[i as usize];
            let a = Assignment {
                task_namespace: q.task.namespace.clone(),
                task: q.task.name.clone(),
                task_uid: q.uid.clone(),
                device: device.name.clone(),
                start: fragments.start,
                end: fragments.end,
                attempt,
                state: State::Pending,
                results: Vec::new(),
                created_ms: now,
                updated_ms: now,
                pod_uid: None,
                claim_mismatches: 0,
                replay,
            };
            let gpus = u32::from(device.class == DeviceClass::Gpu && device.gpu_count > 0);
            (t, a, nodes.get(&device.name).cloned(), gpus)
        };
        let mut writes = Vec::with_capacity(outcome.decisions.len() + replays.len());
        for d in &outcome.decisions {
            let unit = &tasks[d.task].units[d.unit];
            writes.push(place(
                d.task,
                d.device,
                unit.fragments.clone(),
                unit.failures,
                false,
            ));
        }
        for &(t, k, i) in &replays {
            let req = &tasks[t].replays[k];
            let fragments = req.fragment..req.fragment.saturating_add(1);
            writes.push(place(t, i, fragments, req.attempt, true));
        }
        if writes.is_empty() {
            return;
        }
        for (_, a, _, _) in &writes {
            self.assumptions.assume(
                &record::name(&a.task_uid, a.start, a.attempt),
                Assumed {
                    task_uid: a.task_uid.clone(),
                    device: a.device.clone(),
                    fragments: a.start..a.end,
                    at_ms: now,
                },
            );
        }
        if writes.iter().any(|(_, _, node, _)| node.is_some()) && !self.worker_access {
            match super::ensure_worker_access(
                &self.client,
                &self.config.namespace,
                &self.config.ca_pem,
            )
            .await
            {
                Ok(()) => self.worker_access = true,
                Err(e) => {
                    tracing::warn!(error = %e, "creating the worker ServiceAccount and CA failed")
                }
            }
        }
        let writing = Instant::now();
        let count = writes.len();
        // Completion order is not submission order: each result carries its placement.
        let (client, config) = (&self.client, &self.config);
        let results: Vec<(usize, String, Result<(), Error>)> = futures::stream::iter(writes)
            .map(|(t, a, node, gpus)| async move {
                let name = record::name(&a.task_uid, a.start, a.attempt);
                let r = write_placement(client, config, a, node, gpus).await;
                (t, name, r)
            })
            .buffer_unordered(WRITE_CONCURRENCY)
            .collect()
            .await;
        let mut written = vec![0u32; queued.len()];
        for (t, name, r) in results {
            match r {
                Ok(()) => written[t] += 1,
                Err(e) => {
                    tracing::warn!(error = %e, assignment = %name, "writing a placement failed");
                    self.assumptions.drop_one(&name);
                }
            }
        }
        tracing::info!(
            placements = count,
            round_ms = round_ms,
            write_ms = writing.elapsed().as_millis() as u64,
            "scheduler round written"
        );
        for (t, q) in queued.iter().enumerate() {
            if written[t] > 0 {
                let note = format!("{} assignments placed", written[t]);
                publish(
                    &self.recorder,
                    &q.object,
                    EventType::Normal,
                    "Scheduled",
                    note,
                )
                .await;
            }
        }
    }
}

/// Writes one placement: the worker Pod that carries its assignment (its ConfigMap
/// follows with the first result or a loss: one write per placement), or the agent's
/// ConfigMap. An existing object of the same name is the same placement.
async fn write_placement(
    client: &Client,
    config: &LoopConfig,
    a: Assignment,
    node: Option<String>,
    gpus: u32,
) -> Result<(), Error> {
    let name = record::name(&a.task_uid, a.start, a.attempt);
    let created = match node {
        Some(node) => {
            let pod = worker_pod::worker_pod(&a, &name, &node, gpus, &config.pod)
                .map_err(|e| Error::Invalid(e.to_string()))?;
            Api::<Pod>::namespaced(client.clone(), &config.namespace)
                .create(&PostParams::default(), &pod)
                .await
                .map(drop)
        }
        None => {
            let cm = record::to_config_map(&config.namespace, &a)
                .map_err(|e| Error::Invalid(e.to_string()))?;
            Api::<ConfigMap>::namespaced(client.clone(), &config.namespace)
                .create(&PostParams::default(), &cm)
                .await
                .map(drop)
        }
    };
    match created {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Publishes an Event on a task.
pub async fn publish(
    recorder: &Recorder,
    task: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Schedule".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, task).await {
        tracing::warn!(error = %e, task = ?task.name, "publishing event failed");
    }
}
