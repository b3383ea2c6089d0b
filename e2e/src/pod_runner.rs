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

mod admit;
mod env;
mod network;
mod objects;
mod prepare;
mod status;

use env::*;
pub use network::{ApiServer, SERVICE_ACCOUNT_DIR};
use objects::*;
use prepare::*;
use status::*;

/// The pods run by default: the worker's and the node benchmarks'.
pub const DEFAULT_SELECTOR: &str = "app.kubernetes.io/name in (zop-worker,zop-benchmark)";
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
    /// Environment variables whose `0.0.0.0:PORT` value binds the pod's own loopback
    /// address instead ([`PodRunner::address`]), as on a pod IP of its own.
    pub pod_address_env: Vec<String>,
    /// The API server a container mounting the service-account directory is pointed at
    /// (with its own token); `None` leaves such containers without in-cluster access.
    pub api_server: Option<ApiServer>,
    /// Tampered nodes: on each node named here, the runner starts this program instead of
    /// the one the Pod names, with the Pod's arguments, environment and volumes.
    pub tampered: BTreeMap<String, PathBuf>,
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
            pod_address_env: Vec::new(),
            api_server: None,
            tampered: BTreeMap::new(),
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
    /// Pods refused because their node had no room for their GPUs.
    pub refused: u64,
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
    /// The node's allocatable `nvidia.com/gpu` has no room for the pod.
    OutOfGpu(String),
}

impl RunError {
    /// The reason written to the pod's status.
    pub fn reason(&self) -> &'static str {
        match self {
            RunError::Config(_) => "CreateContainerConfigError",
            RunError::Start(_) => "StartError",
            RunError::OutOfGpu(_) => "OutOfnvidia.com/gpu",
        }
    }

    fn message(&self) -> &str {
        match self {
            RunError::Config(m) | RunError::Start(m) | RunError::OutOfGpu(m) => m,
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
            gpus: admit::GpuLedger::default(),
            addresses: Mutex::new(HashMap::new()),
        });
        let task = tokio::spawn(watch_and_run(shared.clone()));
        Self {
            shared,
            task: Some(task),
        }
    }

    /// The loopback address pod `namespace/name` binds (with
    /// [`RunnerOptions::pod_address_env`]), once it was started.
    pub fn address(&self, namespace: &str, name: &str) -> Option<std::net::Ipv4Addr> {
        self.shared
            .addresses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(namespace.to_string(), name.to_string()))
            .copied()
    }

    /// Counters for tests and reports.
    pub fn stats(&self) -> RunnerStats {
        let c = &self.shared.counters;
        RunnerStats {
            started: c.started.load(Ordering::Relaxed),
            finished: c.finished.load(Ordering::Relaxed),
            failed_to_start: c.failed_to_start.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
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
    refused: AtomicU64,
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
    /// GPUs held by the pods admitted on each node.
    gpus: admit::GpuLedger,
    /// Each pod's own loopback address, by namespace and name.
    addresses: Mutex<HashMap<(String, String), std::net::Ipv4Addr>>,
}

/// What a pod task learns from `poll_exit`.
enum Exit {
    Running,
    Exited(ExitStatus),
    /// The runner is stopping and took the process.
    Taken,
}

impl Shared {
    /// The pod's own loopback address, given on first use.
    fn address(&self, namespace: &str, name: &str) -> std::net::Ipv4Addr {
        let mut all = self
            .addresses
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let next = u32::try_from(all.len()).unwrap_or(u32::MAX);
        *all.entry((namespace.to_string(), name.to_string()))
            .or_insert_with(|| network::address_of(next))
    }

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
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    // Held until this function returns: after the process ended and its status is written.
    let _gpus = match admit::admit(&shared, &pod, &node, &uid).await {
        Ok(hold) => hold,
        Err(e) => {
            eprintln!("pod-runner: {pod_ref}: {e}");
            // Only a GPU that does not fit is the kubelet's refusal; a node deleted under
            // a pod about to start is not.
            let counter = match e {
                RunError::OutOfGpu(_) => &shared.counters.refused,
                _ => &shared.counters.failed_to_start,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let patch = not_started_status(&pod, &e, &started_at);
            patch_status(&pods, &pod_ref, &patch).await;
            return uid;
        }
    };
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

/// Where the process of pod `namespace/pod` logs, under `log_dir`.
pub fn log_path(log_dir: &Path, namespace: &str, pod: &str) -> PathBuf {
    log_dir.join(format!("{namespace}_{pod}.log"))
}

#[cfg(test)]
mod tests;
