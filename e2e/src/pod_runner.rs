//! A stand-in for the kubelet of the simulated nodes, for our worker pods only.
//!
//! kwok marks every pod on a simulated node Running but runs nothing. The [`PodRunner`]
//! watches the pods matching a label selector (by default the worker's), and for each one
//! bound to a node annotated `kwok.x-k8s.io/node=fake` it starts the pod's first container
//! as a local process once kwok has marked the pod Running: the container's command and
//! args, its environment (literals, downward-API fields, ConfigMap and Secret keys) and its
//! volumes materialized into private directories (projected service-account tokens from
//! the TokenRequest API, ConfigMap and Secret files, emptyDirs), with every argument or
//! environment value under a mount path pointed at the local directory instead. When the
//! process exits, the pod's status says how, as a kubelet would write it; when the pod is
//! deleted, the process gets SIGTERM, then SIGKILL after the pod's grace period.
//!
//! It owns those processes and nothing else: it never creates, binds or deletes pods, and
//! it leaves every other pod to kwok. Each process leads its own process group, and no
//! process group outlives the runner ([`PodRunner::shutdown`] or drop; a runner killed
//! by SIGKILL cannot stop them). A pod is run at most once per runner; a new runner
//! runs again a pod still Running, as a kubelet restarts a container.

use futures::StreamExt;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, Node, Pod, Secret, ServiceAccount,
    ServiceAccountTokenProjection, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_pods};
use kube::{Api, Client};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The pods run by default: the worker's.
pub const DEFAULT_SELECTOR: &str = "app.kubernetes.io/name=zop-worker";
/// The field manager of every status the runner writes.
pub const FIELD_MANAGER: &str = "zop-pod-runner";
/// The annotation (with value `fake`) of the nodes kwok simulates.
pub const FAKE_NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";
/// Workspace binaries run from the cargo target directory, whatever path the pod names.
pub const WORKSPACE_BINARIES: [&str; 2] = ["zop-worker", "zop-operator"];

/// The longest a deleted pod's process gets between SIGTERM and SIGKILL.
const MAX_GRACE: Duration = Duration::from_secs(30);
/// Tokens are never requested for less than this (the TokenRequest API's minimum).
const MIN_TOKEN_SECONDS: i64 = 600;
/// How often a running process is checked for exit.
const POLL: Duration = Duration::from_millis(100);
/// Exit code written when the process could not be started (as containerd does).
const NOT_STARTED_EXIT_CODE: i32 = 128;

/// How a [`PodRunner`] chooses and runs pods.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Label selector of the pods to run.
    pub selector: String,
    /// Only pods in this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// Each process's stdout and stderr go to `<log_dir>/<namespace>_<pod>.log`.
    pub log_dir: PathBuf,
    /// Where the runner makes its private directory of volumes (the system temp dir when
    /// `None`); the directory is removed when the runner stops.
    pub work_dir: Option<PathBuf>,
    /// Host environment variables passed through to every process; nothing else is.
    pub pass_env: Vec<String>,
    /// Set last, over the container's own values. Every process shares this host's
    /// network, so an address a pod binds inside its own network namespace (the
    /// worker's metrics port) must be replaced by one that cannot collide.
    pub override_env: BTreeMap<String, String>,
    /// How long processes get between SIGTERM and SIGKILL when the runner stops.
    pub shutdown_grace: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            selector: DEFAULT_SELECTOR.to_string(),
            namespace: None,
            log_dir: default_log_dir(),
            work_dir: None,
            pass_env: vec!["PATH".to_string(), "HOME".to_string()],
            override_env: BTreeMap::from([(
                "ZOP_METRICS_BIND".to_string(),
                "127.0.0.1:0".to_string(),
            )]),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// `target/e2e-logs/pod-runner` of this workspace.
pub fn default_log_dir() -> PathBuf {
    target_dir().join("e2e-logs").join("pod-runner")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    )
}

/// What a runner has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunnerStats {
    /// Processes started.
    pub started: u64,
    /// Processes that exited (by themselves or stopped) and were reaped.
    pub finished: u64,
    /// Pods marked Failed because their process could not be started.
    pub failed_to_start: u64,
}

/// A process the runner is running now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningProcess {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's UID.
    pub uid: String,
    /// The process id (also its process group id).
    pub pid: u32,
}

/// Why a pod's process could not be started; the category is the pod's status reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// The environment or a volume could not be made (a missing ConfigMap, Secret or
    /// service account, an unsupported volume or field).
    Config(String),
    /// The process could not be spawned (no such command, no log file).
    Start(String),
}

impl RunError {
    /// The reason written to the pod's status.
    pub fn reason(&self) -> &'static str {
        match self {
            RunError::Config(_) => "CreateContainerConfigError",
            RunError::Start(_) => "StartError",
        }
    }

    fn message(&self) -> &str {
        match self {
            RunError::Config(m) | RunError::Start(m) => m,
        }
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason(), self.message())
    }
}

impl std::error::Error for RunError {}

/// Runs the first container of matching pods on simulated nodes as local processes; see
/// the module documentation. Dropping it (or [`PodRunner::shutdown`]) stops them all.
pub struct PodRunner {
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for PodRunner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PodRunner")
            .field("options", &self.shared.opts)
            .field("work_dir", &self.shared.work_dir)
            .field("stats", &self.stats())
            .finish()
    }
}

impl PodRunner {
    /// Starts watching pods with `client`. Must be called within a tokio runtime.
    pub fn start(client: Client, opts: RunnerOptions) -> Self {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let base = opts.work_dir.clone().unwrap_or_else(std::env::temp_dir);
        let work_dir = base.join(format!(
            "zop-pod-runner-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        // Made once: a pod task that outlives a stop cannot make it again (its pod
        // directory must have this parent), so nothing is left behind.
        if let Err(e) = make_private_dir(&work_dir, true) {
            eprintln!("pod-runner: {e}; no pod can start");
        }
        let shared = Arc::new(Shared {
            client,
            opts,
            work_dir,
            procs: Mutex::new(Procs::default()),
            counters: Counters::default(),
            fake_nodes: Mutex::new(HashMap::new()),
        });
        let task = tokio::spawn(watch_and_run(shared.clone()));
        Self {
            shared,
            task: Some(task),
        }
    }

    /// Counters for tests and reports.
    pub fn stats(&self) -> RunnerStats {
        let c = &self.shared.counters;
        RunnerStats {
            started: c.started.load(Ordering::Relaxed),
            finished: c.finished.load(Ordering::Relaxed),
            failed_to_start: c.failed_to_start.load(Ordering::Relaxed),
        }
    }

    /// Processes started so far.
    pub fn started(&self) -> u64 {
        self.stats().started
    }

    /// Processes that have exited and been reaped so far.
    pub fn finished(&self) -> u64 {
        self.stats().finished
    }

    /// The processes running now.
    pub fn running(&self) -> Vec<RunningProcess> {
        let procs = self.shared.procs();
        let mut out: Vec<RunningProcess> = procs
            .by_uid
            .iter()
            .map(|(uid, p)| RunningProcess {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                uid: uid.clone(),
                pid: p.child.id(),
            })
            .collect();
        out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        out
    }

    /// The private directory volumes are materialized in.
    pub fn work_dir(&self) -> &Path {
        &self.shared.work_dir
    }

    /// Stops watching, then SIGTERMs every process group, SIGKILLs what is left after
    /// the shutdown grace, reaps them all and removes the work directory. Returns the
    /// final counters. Dropping the runner does the same, blocking the dropping thread
    /// for up to the shutdown grace.
    pub async fn shutdown(mut self) -> RunnerStats {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || shared.stop_all()).await;
        // Drop finds nothing left, or does it again if the blocking task failed.
        self.stats()
    }
}

impl Drop for PodRunner {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.shared.stop_all();
    }
}

#[derive(Debug, Default)]
struct Counters {
    started: AtomicU64,
    finished: AtomicU64,
    failed_to_start: AtomicU64,
}

#[derive(Debug)]
struct Proc {
    namespace: String,
    name: String,
    child: Child,
}

/// Every process the runner started and has not reaped. Spawning happens under this
/// lock, so once `closed` is set no process can start.
#[derive(Debug, Default)]
struct Procs {
    closed: bool,
    by_uid: HashMap<String, Proc>,
}

struct Shared {
    client: Client,
    opts: RunnerOptions,
    work_dir: PathBuf,
    procs: Mutex<Procs>,
    counters: Counters,
    /// Node name -> whether kwok simulates it (only known nodes are cached).
    fake_nodes: Mutex<HashMap<String, bool>>,
}

/// What a pod task learns from `poll_exit`.
enum Exit {
    Running,
    Exited(ExitStatus),
    /// The runner is stopping and took the process.
    Taken,
}

impl Shared {
    fn procs(&self) -> MutexGuard<'_, Procs> {
        self.procs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Spawns and registers the process; `Ok(None)` once the runner is stopping.
    fn spawn(&self, pod: &PodRef, cmd: &mut Command) -> Result<Option<u32>, RunError> {
        let mut procs = self.procs();
        if procs.closed {
            return Ok(None);
        }
        let child = cmd
            .spawn()
            .map_err(|e| RunError::Start(format!("starting {:?}: {e}", cmd.get_program())))?;
        let pid = child.id();
        procs.by_uid.insert(
            pod.uid.clone(),
            Proc {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                child,
            },
        );
        Ok(Some(pid))
    }

    fn poll_exit(&self, uid: &str) -> Exit {
        let mut procs = self.procs();
        let Some(p) = procs.by_uid.get_mut(uid) else {
            return Exit::Taken;
        };
        let status = match p.child.try_wait() {
            Ok(None) => return Exit::Running,
            Ok(Some(status)) => status,
            // Only possible if someone else reaped it; report it as failed.
            Err(_) => ExitStatus::from_raw(1 << 8),
        };
        let pid = p.child.id();
        procs.by_uid.remove(uid);
        drop(procs);
        // Like a container's end: nothing the process left behind in its group survives.
        signal_group(pid, "KILL");
        self.counters.finished.fetch_add(1, Ordering::Relaxed);
        Exit::Exited(status)
    }

    /// Closes the registry and stops every process in it; blocks up to the shutdown grace.
    fn stop_all(&self) {
        let mut taken: Vec<Proc> = {
            let mut procs = self.procs();
            procs.closed = true;
            procs.by_uid.drain().map(|(_, p)| p).collect()
        };
        for p in &taken {
            signal_group(p.child.id(), "TERM");
        }
        let deadline = Instant::now() + self.opts.shutdown_grace;
        while !taken.is_empty() {
            taken.retain_mut(|p| match p.child.try_wait() {
                Ok(None) => true,
                _ => {
                    signal_group(p.child.id(), "KILL");
                    self.counters.finished.fetch_add(1, Ordering::Relaxed);
                    false
                }
            });
            if taken.is_empty() || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for mut p in taken {
            signal_group(p.child.id(), "KILL");
            let _ = p.child.kill();
            let _ = p.child.wait();
            self.counters.finished.fetch_add(1, Ordering::Relaxed);
        }
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }

    async fn is_fake_node(&self, node: &str) -> kube::Result<bool> {
        if let Some(known) = self
            .fake_nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(node)
        {
            return Ok(*known);
        }
        let Some(meta) = Api::<Node>::all(self.client.clone())
            .get_metadata_opt(node)
            .await?
        else {
            return Ok(false);
        };
        let fake = meta
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(FAKE_NODE_ANNOTATION))
            .is_some_and(|v| v == "fake");
        self.fake_nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(node.to_string(), fake);
        Ok(fake)
    }
}

/// Sends `signal` to the process group `pgid` (each process leads its own group).
fn signal_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A pod's identity.
#[derive(Debug, Clone)]
struct PodRef {
    namespace: String,
    name: String,
    uid: String,
}

impl PodRef {
    fn of(pod: &Pod) -> Option<Self> {
        Some(Self {
            namespace: pod.metadata.namespace.clone()?,
            name: pod.metadata.name.clone()?,
            uid: pod.metadata.uid.clone()?,
        })
    }
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The latest view of a pod, `None` once it is gone.
type PodView = Option<Arc<Pod>>;

enum Slot {
    Active(watch::Sender<PodView>),
    Done,
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), Some("Succeeded" | "Failed"))
}

/// The watch loop: one task per pod (keyed by UID), fed every update of its pod.
async fn watch_and_run(shared: Arc<Shared>) {
    let api: Api<Pod> = match &shared.opts.namespace {
        Some(ns) => Api::namespaced(shared.client.clone(), ns),
        None => Api::all(shared.client.clone()),
    };
    let config = watcher::Config::default().labels(&shared.opts.selector);
    let mut events = watch_pods(api, config).default_backoff().boxed();
    let mut slots: HashMap<String, Slot> = HashMap::new();
    let mut tasks: JoinSet<String> = JoinSet::new();
    let mut listed: Option<HashSet<String>> = None;
    loop {
        tokio::select! {
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                match done {
                    Ok(uid) => {
                        if let Some(slot) = slots.get_mut(&uid) {
                            *slot = Slot::Done;
                        }
                    }
                    Err(e) => eprintln!("pod-runner: a pod task failed: {e}"),
                }
            }
            event = events.next() => match event {
                None => break,
                Some(Err(e)) => eprintln!("pod-runner: watching pods: {e}"),
                Some(Ok(Event::Init)) => listed = Some(HashSet::new()),
                Some(Ok(Event::InitApply(pod))) => {
                    if let (Some(seen), Some(uid)) = (listed.as_mut(), pod.metadata.uid.clone()) {
                        seen.insert(uid);
                    }
                    apply(&shared, &mut slots, &mut tasks, pod);
                }
                Some(Ok(Event::InitDone)) => {
                    if let Some(seen) = listed.take() {
                        let gone: Vec<String> =
                            slots.keys().filter(|u| !seen.contains(*u)).cloned().collect();
                        for uid in gone {
                            forget(&mut slots, &uid);
                        }
                    }
                }
                Some(Ok(Event::Apply(pod))) => apply(&shared, &mut slots, &mut tasks, pod),
                Some(Ok(Event::Delete(pod))) => {
                    if let Some(uid) = pod.metadata.uid.as_deref() {
                        forget(&mut slots, uid);
                    }
                }
            }
        }
    }
}

fn forget(slots: &mut HashMap<String, Slot>, uid: &str) {
    if let Some(Slot::Active(tx)) = slots.remove(uid) {
        tx.send_replace(None);
    }
}

fn apply(
    shared: &Arc<Shared>,
    slots: &mut HashMap<String, Slot>,
    tasks: &mut JoinSet<String>,
    pod: Pod,
) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    match slots.get(&uid) {
        Some(Slot::Active(tx)) => {
            tx.send_replace(Some(Arc::new(pod)));
        }
        Some(Slot::Done) => {}
        None => {
            let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_ref());
            if bound.is_none() {
                return; // the scheduler has not placed it yet: wait for the update
            }
            if pod.metadata.deletion_timestamp.is_some() || is_terminal(&pod) {
                slots.insert(uid, Slot::Done);
                return;
            }
            let (tx, rx) = watch::channel(Some(Arc::new(pod)));
            slots.insert(uid.clone(), Slot::Active(tx));
            tasks.spawn(run_pod(shared.clone(), uid, rx));
        }
    }
}

/// One pod, from binding to its process's end. Returns the pod's UID.
async fn run_pod(shared: Arc<Shared>, uid: String, mut rx: watch::Receiver<PodView>) -> String {
    let Some(pod) = wait_until_running(&shared, &mut rx).await else {
        return uid;
    };
    let Some(pod_ref) = PodRef::of(&pod) else {
        return uid;
    };
    let pods: Api<Pod> = Api::namespaced(shared.client.clone(), &pod_ref.namespace);
    let pod_dir = shared.work_dir.join(format!(
        "{}_{}_{}",
        pod_ref.namespace,
        pod_ref.name,
        short(&uid)
    ));
    let started_at = Time(Timestamp::now());
    let prepared = match prepare(&shared, &pod, &pod_dir).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pod-runner: {pod_ref}: {e}");
            shared
                .counters
                .failed_to_start
                .fetch_add(1, Ordering::Relaxed);
            let _ = std::fs::remove_dir_all(&pod_dir);
            let patch = not_started_status(&pod, &e, &started_at);
            patch_status(&pods, &pod_ref, &patch).await;
            return uid;
        }
    };
    let pid = match spawn(&shared, &pod_ref, &prepared) {
        Ok(Some(pid)) => pid,
        Ok(None) => return uid, // the runner is stopping
        Err(e) => {
            eprintln!("pod-runner: {pod_ref}: {e}");
            shared
                .counters
                .failed_to_start
                .fetch_add(1, Ordering::Relaxed);
            let _ = std::fs::remove_dir_all(&pod_dir);
            let patch = not_started_status(&pod, &e, &started_at);
            patch_status(&pods, &pod_ref, &patch).await;
            return uid;
        }
    };
    shared.counters.started.fetch_add(1, Ordering::Relaxed);
    let started_at = Time(Timestamp::now());
    eprintln!(
        "pod-runner: {pod_ref}: started {} (pid {pid})",
        prepared.program.display()
    );
    patch_status(&pods, &pod_ref, &running_status(&pod, pid, &started_at)).await;

    let outcome = supervise(&shared, &pod_ref, pid, pod, prepared, &mut rx).await;
    let _ = std::fs::remove_dir_all(&pod_dir);
    let Some((status, last)) = outcome else {
        return uid; // the runner is stopping
    };
    let termination = Termination::of(status, pid, started_at, Time(Timestamp::now()));
    eprintln!(
        "pod-runner: {pod_ref}: exited with code {} ({})",
        termination.exit_code, termination.reason
    );
    if rx.borrow().is_some() {
        patch_status(&pods, &pod_ref, &terminated_status(&last, &termination)).await;
    }
    uid
}

/// The pod once kwok has marked it Running with an IP (kwok's pod-ready stage would
/// overwrite a status written earlier); `None` if it is not ours to run or goes away.
async fn wait_until_running(
    shared: &Shared,
    rx: &mut watch::Receiver<PodView>,
) -> Option<Arc<Pod>> {
    let node = rx.borrow().as_ref()?.spec.as_ref()?.node_name.clone()?;
    loop {
        match shared.is_fake_node(&node).await {
            Ok(true) => break,
            Ok(false) => return None,
            Err(e) => {
                eprintln!("pod-runner: reading node {node}: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                rx.borrow().as_ref()?;
            }
        }
    }
    loop {
        let pod = rx.borrow_and_update().clone()?;
        if pod.metadata.deletion_timestamp.is_some() || is_terminal(&pod) {
            return None;
        }
        let status = pod.status.as_ref();
        let has_ip = status
            .and_then(|s| s.pod_ip.as_deref())
            .is_some_and(|ip| !ip.is_empty());
        if phase(&pod) == Some("Running") && has_ip {
            return Some(pod);
        }
        rx.changed().await.ok()?;
    }
}

/// Waits for the process to exit, stopping it when the pod is deleted and refreshing its
/// tokens meanwhile. `None` when the runner took the process to stop it.
async fn supervise(
    shared: &Shared,
    pod_ref: &PodRef,
    pid: u32,
    pod: Arc<Pod>,
    mut prepared: Prepared,
    rx: &mut watch::Receiver<PodView>,
) -> Option<(ExitStatus, Arc<Pod>)> {
    let mut last = pod;
    let mut sender_gone = false;
    let mut kill_at: Option<Instant> = None;
    let mut killed = false;
    loop {
        match shared.poll_exit(&pod_ref.uid) {
            Exit::Running => {}
            Exit::Exited(status) => return Some((status, last)),
            Exit::Taken => return None,
        }
        let view = rx.borrow().clone();
        if let Some(p) = &view {
            last = p.clone();
        }
        let deleting = view
            .as_ref()
            .is_none_or(|p| p.metadata.deletion_timestamp.is_some());
        match kill_at {
            None if deleting => {
                let grace = grace_period(&last);
                eprintln!(
                    "pod-runner: {pod_ref}: deleted; SIGTERM to pid {pid}, SIGKILL in {grace:?}"
                );
                signal_group(pid, "TERM");
                kill_at = Some(Instant::now() + grace);
            }
            None => refresh_tokens(shared, &last, &mut prepared.tokens).await,
            Some(at) if !killed && Instant::now() >= at => {
                signal_group(pid, "KILL");
                killed = true;
            }
            Some(_) => {}
        }
        if sender_gone {
            tokio::time::sleep(POLL).await;
        } else {
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                changed = rx.changed() => sender_gone = changed.is_err(),
            }
        }
    }
}

/// The pod's terminationGracePeriodSeconds, at most [`MAX_GRACE`].
fn grace_period(pod: &Pod) -> Duration {
    let secs = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    Duration::from_secs(u64::try_from(secs).unwrap_or(0)).min(MAX_GRACE)
}

fn short(uid: &str) -> &str {
    uid.get(..8).unwrap_or(uid)
}

/// Everything needed to start a pod's process.
#[derive(Debug)]
struct Prepared {
    program: PathBuf,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: PathBuf,
    log: PathBuf,
    tokens: Vec<TokenFile>,
}

/// A projected service-account token file, refreshed at 80% of its lifetime.
#[derive(Debug)]
struct TokenFile {
    path: PathBuf,
    source: ServiceAccountTokenProjection,
    mode: u32,
    refresh_at: Instant,
}

fn spawn(shared: &Shared, pod_ref: &PodRef, prepared: &Prepared) -> Result<Option<u32>, RunError> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&prepared.log)
        .map_err(|e| RunError::Start(format!("opening {}: {e}", prepared.log.display())))?;
    let err = log
        .try_clone()
        .map_err(|e| RunError::Start(format!("opening {}: {e}", prepared.log.display())))?;
    let mut cmd = Command::new(&prepared.program);
    cmd.args(&prepared.args)
        .env_clear()
        .envs(&prepared.env)
        .current_dir(&prepared.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err))
        .process_group(0);
    shared.spawn(pod_ref, &mut cmd)
}

/// Resolves the first container's command, environment and volumes into a [`Prepared`].
async fn prepare(shared: &Shared, pod: &Pod, pod_dir: &Path) -> Result<Prepared, RunError> {
    let config = |m: &str| RunError::Config(m.to_string());
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| config("the pod has no spec"))?;
    let container = spec
        .containers
        .first()
        .ok_or_else(|| config("the pod has no containers"))?;
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    make_private_dir(pod_dir, false)?;
    let mut objects = Objects::new(shared.client.clone(), &namespace);

    // Volumes the container mounts, each materialized once.
    let volumes: HashMap<&str, &Volume> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| (v.name.as_str(), v))
        .collect();
    let mut dirs: HashMap<String, PathBuf> = HashMap::new();
    let mut mounts: Vec<(String, PathBuf)> = Vec::new();
    let mut tokens = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let dir = match dirs.get(&mount.name) {
            Some(dir) => dir.clone(),
            None => {
                let volume = volumes.get(mount.name.as_str()).ok_or_else(|| {
                    RunError::Config(format!("volume mount {}: no such volume", mount.name))
                })?;
                let dir = materialize(
                    shared,
                    pod,
                    volume,
                    &pod_dir.join("volumes"),
                    &mut objects,
                    &mut tokens,
                )
                .await?;
                dirs.insert(mount.name.clone(), dir.clone());
                dir
            }
        };
        let local = match mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => dir.join(relative(sub)?),
            None => dir,
        };
        mounts.push((mount.mount_path.clone(), local));
    }

    // The container's own environment, then what the host passes through.
    let container_env = resolve_env(container, pod, &mut objects).await?;
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for name in &shared.opts.pass_env {
        if let Some(v) = std::env::var_os(name) {
            env.insert(name.clone(), v.to_string_lossy().into_owned());
        }
    }
    if let Some(name) = &pod.metadata.name {
        env.insert("HOSTNAME".into(), name.clone());
    }
    for (k, v) in &container_env {
        env.insert(k.clone(), rewrite(v, &mounts));
    }
    for (k, v) in &shared.opts.override_env {
        env.insert(k.clone(), v.clone());
    }

    let argv: Vec<String> = container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .map(|a| rewrite(&expand(a, &container_env), &mounts))
        .collect();
    if container.command.as_ref().is_none_or(Vec::is_empty) {
        return Err(config(
            "the container has no command (the runner cannot read an image's entrypoint)",
        ));
    }
    let program = resolve_program(&argv[0])?;
    let cwd = container
        .working_dir
        .as_deref()
        .map(|w| PathBuf::from(rewrite(w, &mounts)))
        .filter(|p| p.is_dir())
        .unwrap_or_else(|| pod_dir.to_path_buf());
    std::fs::create_dir_all(&shared.opts.log_dir)
        .map_err(|e| RunError::Start(format!("creating {}: {e}", shared.opts.log_dir.display())))?;
    let log = log_path(
        &shared.opts.log_dir,
        &namespace,
        pod.metadata.name.as_deref().unwrap_or_default(),
    );
    Ok(Prepared {
        program,
        args: argv[1..].to_vec(),
        env,
        cwd,
        log,
        tokens,
    })
}

/// The binary to run for `command[0]`: a workspace binary from the target directory,
/// else the command as given (an absolute path, or looked up in PATH).
fn resolve_program(command: &str) -> Result<PathBuf, RunError> {
    let name = Path::new(command)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if WORKSPACE_BINARIES.contains(&name) {
        let path = target_dir().join("debug").join(name);
        if !path.exists() {
            return Err(RunError::Start(format!(
                "{} is not built; run `cargo build --workspace --bins`",
                path.display()
            )));
        }
        return Ok(path);
    }
    Ok(PathBuf::from(command))
}

/// Creates `dir` with mode 0700 (`all`: with its parents; else it must not exist yet,
/// and its parent must, so nothing is made in a work directory already removed).
fn make_private_dir(dir: &Path, all: bool) -> Result<(), RunError> {
    let result = DirBuilder::new().recursive(all).mode(0o700).create(dir);
    match result {
        Ok(()) => Ok(()),
        Err(e) if all && e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(RunError::Config(format!("creating {}: {e}", dir.display()))),
    }
}

/// `path` as a relative path inside a volume: no root, no `..`.
fn relative(path: &str) -> Result<PathBuf, RunError> {
    let p = Path::new(path);
    let ok = !path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(p.to_path_buf())
    } else {
        Err(RunError::Config(format!(
            "path '{path}' is not relative inside its volume"
        )))
    }
}

fn write_file(dir: &Path, path: &str, bytes: &[u8], mode: u32) -> Result<(), RunError> {
    let target = dir.join(relative(path)?);
    let io = |e: std::io::Error| RunError::Config(format!("writing {}: {e}", target.display()));
    if let Some(parent) = target.parent() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io)?;
    }
    // Written beside and renamed, so a reader never sees half a file (tokens are rewritten).
    let tmp = target.with_extension("zop-pod-runner.tmp");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode & 0o777)).map_err(io)?;
    std::fs::rename(&tmp, &target).map_err(io)?;
    Ok(())
}

fn file_mode(mode: Option<i32>, default: Option<i32>) -> u32 {
    mode.or(default)
        .and_then(|m| u32::try_from(m).ok())
        .unwrap_or(0o644)
}

/// Makes a local directory (or names a host path) standing for `volume`.
async fn materialize(
    shared: &Shared,
    pod: &Pod,
    volume: &Volume,
    volumes_dir: &Path,
    objects: &mut Objects,
    tokens: &mut Vec<TokenFile>,
) -> Result<PathBuf, RunError> {
    if let Some(host) = &volume.host_path {
        return Ok(PathBuf::from(&host.path));
    }
    make_private_dir(volumes_dir, true)?;
    let dir = volumes_dir.join(relative(&volume.name)?);
    make_private_dir(&dir, false)?;
    if volume.empty_dir.is_some() {
        return Ok(dir);
    }
    if let Some(cm) = &volume.config_map {
        let data = objects
            .get(Kind::ConfigMap, &cm.name, cm.optional.unwrap_or(false))
            .await?;
        write_keys(
            &dir,
            &data,
            cm.items.as_deref(),
            cm.default_mode,
            "configmap",
            &cm.name,
        )?;
        return Ok(dir);
    }
    if let Some(secret) = &volume.secret {
        let name = secret.secret_name.clone().unwrap_or_default();
        let data = objects
            .get(Kind::Secret, &name, secret.optional.unwrap_or(false))
            .await?;
        write_keys(
            &dir,
            &data,
            secret.items.as_deref(),
            secret.default_mode,
            "secret",
            &name,
        )?;
        return Ok(dir);
    }
    if let Some(downward) = &volume.downward_api {
        write_downward(&dir, pod, downward.items.as_deref(), downward.default_mode)?;
        return Ok(dir);
    }
    if let Some(projected) = &volume.projected {
        let default_mode = projected.default_mode;
        for source in projected.sources.iter().flatten() {
            if let Some(sat) = &source.service_account_token {
                let mode = file_mode(None, default_mode);
                let (token, ttl) = request_token(shared, pod, sat).await?;
                write_file(&dir, &sat.path, token.as_bytes(), mode)?;
                tokens.push(TokenFile {
                    path: dir.join(relative(&sat.path)?),
                    source: sat.clone(),
                    mode,
                    refresh_at: Instant::now() + ttl.mul_f64(0.8),
                });
            } else if let Some(cm) = &source.config_map {
                let data = objects
                    .get(Kind::ConfigMap, &cm.name, cm.optional.unwrap_or(false))
                    .await?;
                write_keys(
                    &dir,
                    &data,
                    cm.items.as_deref(),
                    default_mode,
                    "configmap",
                    &cm.name,
                )?;
            } else if let Some(secret) = &source.secret {
                let data = objects
                    .get(Kind::Secret, &secret.name, secret.optional.unwrap_or(false))
                    .await?;
                write_keys(
                    &dir,
                    &data,
                    secret.items.as_deref(),
                    default_mode,
                    "secret",
                    &secret.name,
                )?;
            } else if let Some(downward) = &source.downward_api {
                write_downward(&dir, pod, downward.items.as_deref(), default_mode)?;
            } else {
                return Err(RunError::Config(format!(
                    "volume {}: unsupported projected source (supported: serviceAccountToken, configMap, secret, downwardAPI)",
                    volume.name
                )));
            }
        }
        return Ok(dir);
    }
    Err(RunError::Config(format!(
        "volume {}: unsupported volume type (supported: projected, configMap, secret, downwardAPI, emptyDir, hostPath)",
        volume.name
    )))
}

/// Writes `items` of `data` (or every key) as files.
fn write_keys(
    dir: &Path,
    data: &Option<Data>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    kind: &str,
    name: &str,
) -> Result<(), RunError> {
    let Some(data) = data else {
        return Ok(()); // optional and missing
    };
    match items {
        Some(items) if !items.is_empty() => {
            for item in items {
                let bytes = data.get(&item.key).ok_or_else(|| {
                    RunError::Config(format!("{kind} \"{name}\" has no key \"{}\"", item.key))
                })?;
                write_file(dir, &item.path, bytes, file_mode(item.mode, default_mode))?;
            }
        }
        _ => {
            for (key, bytes) in data {
                write_file(dir, key, bytes, file_mode(None, default_mode))?;
            }
        }
    }
    Ok(())
}

fn write_downward(
    dir: &Path,
    pod: &Pod,
    items: Option<&[DownwardAPIVolumeFile]>,
    default_mode: Option<i32>,
) -> Result<(), RunError> {
    for item in items.unwrap_or_default() {
        let value = match &item.field_ref {
            Some(f) => downward_file(pod, &f.field_path)?,
            None => {
                return Err(RunError::Config(format!(
                    "downwardAPI item {}: only fieldRef is supported",
                    item.path
                )));
            }
        };
        write_file(
            dir,
            &item.path,
            value.as_bytes(),
            file_mode(item.mode, default_mode),
        )?;
    }
    Ok(())
}

/// A downward-API file: whole label and annotation maps as `key="value"` lines.
fn downward_file(pod: &Pod, path: &str) -> Result<String, RunError> {
    let map = match path {
        "metadata.labels" => pod.metadata.labels.as_ref(),
        "metadata.annotations" => pod.metadata.annotations.as_ref(),
        _ => return field_ref(pod, path),
    };
    Ok(map
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// The value of a downward-API field of `pod`, as an environment variable gets it.
fn field_ref(pod: &Pod, path: &str) -> Result<String, RunError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let opt = |v: Option<&String>| v.cloned().unwrap_or_default();
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>| {
        let key = path
            .strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    let value = match path {
        "metadata.name" => opt(meta.name.as_ref()),
        "metadata.namespace" => opt(meta.namespace.as_ref()),
        "metadata.uid" => opt(meta.uid.as_ref()),
        "spec.nodeName" => opt(spec.and_then(|s| s.node_name.as_ref())),
        "spec.serviceAccountName" => opt(spec.and_then(|s| s.service_account_name.as_ref())),
        "status.podIP" => opt(status.and_then(|s| s.pod_ip.as_ref())),
        "status.hostIP" => opt(status.and_then(|s| s.host_ip.as_ref())),
        "status.podIPs" => status
            .and_then(|s| s.pod_ips.as_ref())
            .map(|ips| {
                ips.iter()
                    .map(|i| i.ip.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        "status.hostIPs" => status
            .and_then(|s| s.host_ips.as_ref())
            .map(|ips| {
                ips.iter()
                    .map(|i| i.ip.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        _ => keyed("metadata.labels", meta.labels.as_ref())
            .or_else(|| keyed("metadata.annotations", meta.annotations.as_ref()))
            .ok_or_else(|| RunError::Config(format!("unsupported fieldRef {path}")))?,
    };
    Ok(value)
}

/// Expands `$(NAME)` references to `env`, as the kubelet does: `$$` is a literal `$`,
/// and a reference to an undefined name stays as written.
fn expand(input: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after.strip_prefix('(').and_then(|a| a.split_once(')')) {
            match env.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Points a value under a mount path at the local directory standing for that mount:
/// the whole value, or the part after the first `=` (`--flag=/mount/path`). The longest
/// matching mount path wins.
fn rewrite(value: &str, mounts: &[(String, PathBuf)]) -> String {
    let replace = |v: &str| -> Option<String> {
        mounts
            .iter()
            .filter_map(|(mount, local)| {
                let mount = mount.trim_end_matches('/');
                let rest = v.strip_prefix(mount)?;
                (rest.is_empty() || rest.starts_with('/') || mount.is_empty())
                    .then(|| (mount.len(), format!("{}{rest}", local.display())))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, v)| v)
    };
    if let Some(v) = replace(value) {
        return v;
    }
    if let Some((flag, v)) = value.split_once('=')
        && let Some(v) = replace(v)
    {
        return format!("{flag}={v}");
    }
    value.to_string()
}

/// The container's environment: `envFrom` first, then `env` in order, each value
/// expanded against what came before.
async fn resolve_env(
    container: &Container,
    pod: &Pod,
    objects: &mut Objects,
) -> Result<BTreeMap<String, String>, RunError> {
    let mut env = BTreeMap::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(cm) = &from.config_map_ref {
            objects
                .get(Kind::ConfigMap, &cm.name, cm.optional.unwrap_or(false))
                .await?
        } else if let Some(secret) = &from.secret_ref {
            objects
                .get(Kind::Secret, &secret.name, secret.optional.unwrap_or(false))
                .await?
        } else {
            None
        };
        for (k, v) in data.into_iter().flatten() {
            env.insert(
                format!("{prefix}{k}"),
                String::from_utf8_lossy(&v).into_owned(),
            );
        }
    }
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => Some(expand(v, &env)),
            (None, None) => Some(String::new()),
            (None, Some(from)) => {
                if let Some(f) = &from.field_ref {
                    Some(field_ref(pod, &f.field_path)?)
                } else if let Some(k) = &from.config_map_key_ref {
                    objects
                        .key(
                            Kind::ConfigMap,
                            &k.name,
                            &k.key,
                            k.optional.unwrap_or(false),
                        )
                        .await?
                } else if let Some(k) = &from.secret_key_ref {
                    objects
                        .key(Kind::Secret, &k.name, &k.key, k.optional.unwrap_or(false))
                        .await?
                } else {
                    return Err(RunError::Config(format!(
                        "env {}: unsupported valueFrom (supported: fieldRef, configMapKeyRef, secretKeyRef)",
                        var.name
                    )));
                }
            }
        };
        if let Some(value) = value {
            env.insert(var.name.clone(), value);
        }
    }
    Ok(env)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    ConfigMap,
    Secret,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::ConfigMap => "configmap",
            Kind::Secret => "secret",
        })
    }
}

/// The keys of a ConfigMap (`data` and `binaryData`) or Secret, as bytes.
type Data = BTreeMap<String, Vec<u8>>;

/// ConfigMaps and Secrets of one namespace, each read once per pod.
struct Objects {
    config_maps: Api<ConfigMap>,
    secrets: Api<Secret>,
    cache: HashMap<(Kind, String), Option<Data>>,
}

impl Objects {
    fn new(client: Client, namespace: &str) -> Self {
        Self {
            config_maps: Api::namespaced(client.clone(), namespace),
            secrets: Api::namespaced(client, namespace),
            cache: HashMap::new(),
        }
    }

    /// The object's data; `None` when it is missing and `optional`.
    async fn get(
        &mut self,
        kind: Kind,
        name: &str,
        optional: bool,
    ) -> Result<Option<Data>, RunError> {
        let key = (kind, name.to_string());
        if !self.cache.contains_key(&key) {
            let read = |e: kube::Error| RunError::Config(format!("reading {kind} \"{name}\": {e}"));
            let data = match kind {
                Kind::ConfigMap => self
                    .config_maps
                    .get_opt(name)
                    .await
                    .map_err(read)?
                    .map(|cm| {
                        let mut data: Data = cm
                            .data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.into_bytes()))
                            .collect();
                        data.extend(
                            cm.binary_data
                                .unwrap_or_default()
                                .into_iter()
                                .map(|(k, v)| (k, v.0)),
                        );
                        data
                    }),
                Kind::Secret => self.secrets.get_opt(name).await.map_err(read)?.map(|s| {
                    let mut data: Data = s
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    data.extend(
                        s.string_data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.into_bytes())),
                    );
                    data
                }),
            };
            self.cache.insert(key.clone(), data);
        }
        match self.cache.get(&key).cloned().flatten() {
            Some(data) => Ok(Some(data)),
            None if optional => Ok(None),
            None => Err(RunError::Config(format!("{kind} \"{name}\" not found"))),
        }
    }

    /// One key; `None` when the object or key is missing and `optional`.
    async fn key(
        &mut self,
        kind: Kind,
        name: &str,
        key: &str,
        optional: bool,
    ) -> Result<Option<String>, RunError> {
        let Some(data) = self.get(kind, name, optional).await? else {
            return Ok(None);
        };
        match data.get(key) {
            Some(v) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
            None if optional => Ok(None),
            None => Err(RunError::Config(format!(
                "couldn't find key {key} in {kind} \"{name}\""
            ))),
        }
    }
}

/// A token for the pod's service account, bound to the pod, and how long it lives.
async fn request_token(
    shared: &Shared,
    pod: &Pod,
    source: &ServiceAccountTokenProjection,
) -> Result<(String, Duration), RunError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".to_string());
    let seconds = source
        .expiration_seconds
        .unwrap_or(3600)
        .max(MIN_TOKEN_SECONDS);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: source
                .audience
                .clone()
                .filter(|a| !a.is_empty())
                .map(|a| vec![a]),
            expiration_seconds: Some(seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        }),
        ..TokenRequest::default()
    };
    let response = Api::<ServiceAccount>::namespaced(shared.client.clone(), &namespace)
        .create_token_request(&account, &PostParams::default(), &request)
        .await
        .map_err(|e| {
            RunError::Config(format!(
                "requesting a token for service account {namespace}/{account}: {e}"
            ))
        })?;
    let status = response.status.unwrap_or_default();
    let token = status.token.filter(|t| !t.is_empty()).ok_or_else(|| {
        RunError::Config(format!(
            "the token request for service account {namespace}/{account} returned no token"
        ))
    })?;
    let ttl = status
        .expiration_timestamp
        .map(|t| t.0.as_second() - Timestamp::now().as_second())
        .unwrap_or(seconds)
        .max(1);
    Ok((token, Duration::from_secs(u64::try_from(ttl).unwrap_or(1))))
}

/// Rewrites tokens that reached 80% of their lifetime, as the kubelet does.
async fn refresh_tokens(shared: &Shared, pod: &Pod, tokens: &mut [TokenFile]) {
    let now = Instant::now();
    for file in tokens.iter_mut().filter(|t| t.refresh_at <= now) {
        let written = match request_token(shared, pod, &file.source).await {
            Ok((token, ttl)) => std::fs::write(&file.path, token.as_bytes())
                .and_then(|()| {
                    std::fs::set_permissions(&file.path, std::fs::Permissions::from_mode(file.mode))
                })
                .map(|()| ttl)
                .map_err(|e| RunError::Config(format!("writing {}: {e}", file.path.display()))),
            Err(e) => Err(e),
        };
        file.refresh_at = match written {
            Ok(ttl) => now + ttl.mul_f64(0.8),
            Err(e) => {
                eprintln!("pod-runner: refreshing {}: {e}", file.path.display());
                now + Duration::from_secs(10)
            }
        };
    }
}

/// How a process ended, as a container status says it.
#[derive(Debug, Clone, PartialEq)]
struct Termination {
    /// The exit code; 128 + the signal for a process killed by one.
    exit_code: i32,
    /// The signal that killed it.
    signal: Option<i32>,
    /// `Completed` for exit code 0, else `Error`.
    reason: String,
    /// `pod-runner://<pid>`.
    container_id: String,
    /// When the process started.
    started_at: Time,
    /// When it was reaped.
    finished_at: Time,
}

impl Termination {
    fn of(status: ExitStatus, pid: u32, started_at: Time, finished_at: Time) -> Self {
        let signal = status.signal();
        let exit_code = status
            .code()
            .or_else(|| signal.map(|s| 128 + s))
            .unwrap_or(1);
        Self {
            exit_code,
            signal,
            reason: if exit_code == 0 { "Completed" } else { "Error" }.to_string(),
            container_id: container_id(pid),
            started_at,
            finished_at,
        }
    }
}

fn container_id(pid: u32) -> String {
    format!("pod-runner://{pid}")
}

/// Statuses of every container but the first, as they are (only the first is run).
fn other_statuses(pod: &Pod) -> Vec<serde_json::Value> {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter(|s| {
            pod.spec
                .as_ref()
                .and_then(|spec| spec.containers.first())
                .is_none_or(|c| c.name != s.name)
        })
        .filter_map(|s| serde_json::to_value(s).ok())
        .collect()
}

fn first_container(pod: &Pod) -> (String, String) {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
        .unwrap_or_default()
}

/// A strategic-merge patch of the pod status: the first container running.
fn running_status(pod: &Pod, pid: u32, started_at: &Time) -> serde_json::Value {
    let (name, image) = first_container(pod);
    let mut statuses = vec![serde_json::json!({
        "name": name, "image": image, "imageID": "", "containerID": container_id(pid),
        "ready": true, "started": true, "restartCount": 0,
        "state": { "running": { "startedAt": started_at } },
    })];
    statuses.extend(other_statuses(pod));
    serde_json::json!({ "status": { "containerStatuses": statuses } })
}

/// A strategic-merge patch of the pod status: terminal phase, the first container
/// terminated, Ready and ContainersReady False.
fn terminated_status(pod: &Pod, t: &Termination) -> serde_json::Value {
    let (name, image) = first_container(pod);
    let phase = if t.exit_code == 0 {
        "Succeeded"
    } else {
        "Failed"
    };
    let mut terminated = serde_json::json!({
        "exitCode": t.exit_code, "reason": t.reason, "containerID": t.container_id,
        "startedAt": t.started_at, "finishedAt": t.finished_at,
    });
    if let Some(signal) = t.signal {
        terminated["signal"] = signal.into();
    }
    let mut statuses = vec![serde_json::json!({
        "name": name, "image": image, "imageID": "", "containerID": t.container_id,
        "ready": false, "started": false, "restartCount": 0,
        "state": { "terminated": terminated },
    })];
    statuses.extend(other_statuses(pod));
    serde_json::json!({ "status": {
        "phase": phase,
        "conditions": not_ready_conditions(&t.finished_at, "PodCompleted", None),
        "containerStatuses": statuses,
    }})
}

/// A strategic-merge patch of the pod status: Failed before the process could start.
fn not_started_status(pod: &Pod, error: &RunError, at: &Time) -> serde_json::Value {
    let (name, image) = first_container(pod);
    let mut statuses = vec![serde_json::json!({
        "name": name, "image": image, "imageID": "",
        "ready": false, "started": false, "restartCount": 0,
        "state": { "terminated": {
            "exitCode": NOT_STARTED_EXIT_CODE, "reason": error.reason(), "message": error.message(),
            "startedAt": at, "finishedAt": at,
        }},
    })];
    statuses.extend(other_statuses(pod));
    serde_json::json!({ "status": {
        "phase": "Failed",
        "reason": error.reason(),
        "message": error.message(),
        "conditions": not_ready_conditions(at, error.reason(), Some(error.message())),
        "containerStatuses": statuses,
    }})
}

fn not_ready_conditions(at: &Time, reason: &str, message: Option<&str>) -> serde_json::Value {
    let condition = |type_: &str| {
        let mut c = serde_json::json!({
            "type": type_, "status": "False", "reason": reason, "lastTransitionTime": at,
        });
        if let Some(m) = message {
            c["message"] = m.into();
        }
        c
    };
    serde_json::json!([condition("Ready"), condition("ContainersReady")])
}

/// Writes a status patch, retrying transient errors; a pod already gone is fine.
async fn patch_status(pods: &Api<Pod>, pod_ref: &PodRef, patch: &serde_json::Value) {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    for attempt in 1..=5 {
        match pods
            .patch_status(&pod_ref.name, &params, &Patch::Strategic(patch))
            .await
        {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.code == 404 => return,
            Err(kube::Error::Api(s)) if s.code == 422 || s.code == 400 => {
                eprintln!("pod-runner: {pod_ref}: status rejected: {}", s.message);
                return;
            }
            Err(e) => {
                eprintln!("pod-runner: {pod_ref}: writing status (attempt {attempt}): {e}");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
        }
    }
}

/// Where the process of pod `namespace/pod` logs, under `log_dir`.
pub fn log_path(log_dir: &Path, namespace: &str, pod: &str) -> PathBuf {
    log_dir.join(format!("{namespace}_{pod}.log"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "w-1", "namespace": "ns", "uid": "1234-5678-9abc",
                "labels": { "app": "zop" }, "annotations": { "a": "b" }
            },
            "spec": {
                "nodeName": "gpu-h100-0001", "serviceAccountName": "worker",
                "containers": [{ "name": "worker", "image": "img" }]
            },
            "status": { "podIP": "10.0.0.7", "podIPs": [{ "ip": "10.0.0.7" }], "hostIP": "10.1.0.1" }
        }))
        .expect("pod")
    }

    #[test]
    fn expansion_follows_the_kubelet_rules() {
        let e = env(&[("A", "x"), ("B", "y")]);
        assert_eq!(expand("$(A)-$(B)", &e), "x-y");
        assert_eq!(expand("$$(A)", &e), "$(A)");
        assert_eq!(expand("$(C)", &e), "$(C)");
        assert_eq!(expand("cost $5 $(A", &e), "cost $5 $(A");
        assert_eq!(expand("plain", &e), "plain");
    }

    #[test]
    fn paths_under_a_mount_point_at_the_local_directory() {
        let mounts = vec![
            (
                "/var/run/secrets".to_string(),
                PathBuf::from("/tmp/r/outer"),
            ),
            (
                "/var/run/secrets/zoptoken/".to_string(),
                PathBuf::from("/tmp/r/inner"),
            ),
        ];
        assert_eq!(
            rewrite("/var/run/secrets/zoptoken/token", &mounts),
            "/tmp/r/inner/token"
        );
        assert_eq!(
            rewrite("/var/run/secrets/zoptoken", &mounts),
            "/tmp/r/inner"
        );
        assert_eq!(
            rewrite("/var/run/secrets/other", &mounts),
            "/tmp/r/outer/other"
        );
        assert_eq!(
            rewrite("--token=/var/run/secrets/zoptoken/token", &mounts),
            "--token=/tmp/r/inner/token"
        );
        assert_eq!(rewrite("/var/run/secretsX", &mounts), "/var/run/secretsX");
        assert_eq!(rewrite("relative/path", &mounts), "relative/path");
    }

    #[test]
    fn field_refs_read_the_pod() {
        let p = pod();
        let get = |path| field_ref(&p, path).expect(path);
        assert_eq!(get("metadata.name"), "w-1");
        assert_eq!(get("metadata.namespace"), "ns");
        assert_eq!(get("metadata.uid"), "1234-5678-9abc");
        assert_eq!(get("spec.nodeName"), "gpu-h100-0001");
        assert_eq!(get("spec.serviceAccountName"), "worker");
        assert_eq!(get("status.podIP"), "10.0.0.7");
        assert_eq!(get("status.podIPs"), "10.0.0.7");
        assert_eq!(get("metadata.labels['app']"), "zop");
        assert_eq!(get("metadata.annotations['a']"), "b");
        assert!(matches!(
            field_ref(&p, "spec.nodeSelector"),
            Err(RunError::Config(_))
        ));
    }

    #[test]
    fn volume_paths_stay_inside_the_volume() {
        assert!(relative("token").is_ok());
        assert!(relative("a/b").is_ok());
        assert!(relative("../x").is_err());
        assert!(relative("/etc/passwd").is_err());
        assert!(relative("").is_err());
    }

    #[test]
    fn termination_reports_codes_and_signals() {
        let t0 = Time(Timestamp::UNIX_EPOCH);
        let ok = Termination::of(ExitStatus::from_raw(0), 7, t0.clone(), t0.clone());
        assert_eq!((ok.exit_code, ok.reason.as_str()), (0, "Completed"));
        let three = Termination::of(ExitStatus::from_raw(3 << 8), 7, t0.clone(), t0.clone());
        assert_eq!((three.exit_code, three.reason.as_str()), (3, "Error"));
        let killed = Termination::of(ExitStatus::from_raw(9), 7, t0.clone(), t0);
        assert_eq!((killed.exit_code, killed.signal), (137, Some(9)));
    }

    #[test]
    fn terminal_patch_sets_phase_state_and_ready_false() {
        let t0 = Time(Timestamp::UNIX_EPOCH);
        let t = Termination::of(ExitStatus::from_raw(3 << 8), 7, t0.clone(), t0);
        let patch = terminated_status(&pod(), &t);
        assert_eq!(patch["status"]["phase"], "Failed");
        let state = &patch["status"]["containerStatuses"][0]["state"]["terminated"];
        assert_eq!(state["exitCode"], 3);
        assert_eq!(state["reason"], "Error");
        assert_eq!(patch["status"]["conditions"][0]["type"], "Ready");
        assert_eq!(patch["status"]["conditions"][0]["status"], "False");
    }

    #[test]
    fn workspace_binaries_come_from_the_target_directory() {
        // Resolution of other commands is left to the OS.
        assert_eq!(
            resolve_program("/bin/sh").expect("sh"),
            PathBuf::from("/bin/sh")
        );
        match resolve_program("/usr/local/bin/zop-worker") {
            Ok(p) => assert!(p.starts_with(target_dir()), "{}", p.display()),
            Err(e) => assert_eq!(e.reason(), "StartError"),
        }
    }
}
