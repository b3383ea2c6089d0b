//! The end-to-end harness: a client for the real local control plane started by
//! `e2e/cluster` (kwokctl, binary runtime), and helpers the tests share: waiting,
//! namespaces, CRD installation, and child processes that never outlive a test.
//! [`nodes`] owns the simulated GPU nodes; [`operator`] runs the operator and agents;
//! [`pod_runner`] runs worker pods on simulated nodes as local processes.

pub mod nodes;
pub mod operator;
pub mod pod_runner;
pub mod prometheus;

use anyhow::Context;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The pinned Kubernetes version of the local control plane (see e2e/scripts/tools.sh).
pub const K8S_VERSION: &str = "v1.36.3";

/// Every namespace a test creates carries this label.
pub const TEST_LABEL: &str = "e2e.zoptoken.io/test";

/// A connection to the test cluster.
#[derive(Clone)]
pub struct Env {
    /// Client on the cluster's kubeconfig.
    pub client: Client,
    /// Path of that kubeconfig.
    pub kubeconfig: PathBuf,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("kubeconfig", &self.kubeconfig)
            .finish()
    }
}

impl Env {
    /// The cluster named by `ZOP_KUBECONFIG`. Without it, a test is skipped with a
    /// message, except under CI (`CI` set), where a missing cluster is a failure.
    pub async fn from_env(test: &str) -> Option<Self> {
        let Some(path) = std::env::var_os("ZOP_KUBECONFIG").filter(|p| !p.is_empty()) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: ZOP_KUBECONFIG is not set and CI is: e2e tests must run; use e2e/test"
            );
            // Straight to stderr, past the test harness's output capture, so it shows.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: {test}: ZOP_KUBECONFIG is not set; run e2e/test to start a cluster"
            );
            return None;
        };
        let path = PathBuf::from(path);
        let client = client_for(&path)
            .await
            .unwrap_or_else(|e| panic!("{test}: no client for {}: {e:#}", path.display()));
        Some(Self {
            client,
            kubeconfig: path,
        })
    }

    /// The kubectl binary built with the control plane (`ZOP_KUBECTL`), else `kubectl`.
    pub fn kubectl(&self) -> PathBuf {
        std::env::var_os("ZOP_KUBECTL").map_or_else(|| "kubectl".into(), PathBuf::from)
    }

    /// The Kubernetes version the cluster must report.
    pub fn k8s_version(&self) -> String {
        std::env::var("ZOP_K8S_VERSION").unwrap_or_else(|_| K8S_VERSION.to_string())
    }

    /// Creates a namespace named `<prefix>-<unique suffix>`, labelled [`TEST_LABEL`], and
    /// waits until its `default` ServiceAccount exists, so Pods can be created in it.
    pub async fn test_namespace(&self, prefix: &str) -> anyhow::Result<String> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{:x}{seq}", (nanos ^ std::process::id()) & 0xfffff);
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "labels": { TEST_LABEL: "true" } }
        }))?;
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        let sa: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &name);
        wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
            let sa = sa.clone();
            async move { Ok(sa.get_opt("default").await?.map(drop)) }
        })
        .await
        .with_context(|| format!("namespace {name}: no default ServiceAccount"))?;
        Ok(name)
    }
}

impl Env {
    /// The cluster of kubeconfig `path`, with the CRDs installed: the start of a benchmark.
    pub async fn for_benchmark(path: &Path) -> anyhow::Result<Self> {
        let client = client_for(path).await?;
        install_crds(&client).await?;
        Ok(Self {
            client,
            kubeconfig: path.to_path_buf(),
        })
    }
}

/// Deletes every ComputeTask of the cluster: tasks another test left behind (after a
/// failure, say) would compete with a test's own for the same simulated nodes and agents.
pub async fn delete_all_tasks(client: &Client) -> anyhow::Result<()> {
    use kube::ResourceExt;
    use zop_operator::api::ComputeTask;
    let everywhere: Api<ComputeTask> = Api::all(client.clone());
    for t in everywhere.list(&Default::default()).await?.items {
        let api =
            Api::<ComputeTask>::namespaced(client.clone(), &t.namespace().unwrap_or_default());
        let _ = api.delete(&t.name_any(), &DeleteParams::default()).await;
    }
    Ok(())
}

/// A compute-proof task `name`: `dimension`³ products × `products`, cut into `fragments`,
/// with `extra` merged into its spec (requirements, verification).
pub fn proof_task(
    name: &str,
    (dimension, products, seed): (u32, u64, u64),
    fragments: u32,
    extra: serde_json::Value,
) -> zop_operator::api::ComputeTask {
    let mut spec = serde_json::json!({
        "type": "compute-proof",
        "computeProof": { "dimension": dimension, "products": products, "seed": seed },
        "fragments": { "count": fragments },
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "zoptoken.io/v1alpha1", "kind": "ComputeTask",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .expect("a valid ComputeTask")
}

/// The assignment records of the task with UID `uid`, from the operator's namespace.
pub async fn task_records(
    client: &Client,
    operator_namespace: &str,
    uid: &str,
) -> Vec<zop_operator::tasks::assignment::Assignment> {
    use zop_operator::tasks::record;
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), operator_namespace)
        .list(&kube::api::ListParams::default().labels(&record::selector(uid)))
        .await
        .expect("listing assignment records")
        .items
        .iter()
        .filter_map(record::from_config_map)
        .collect()
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Ran {
    /// Whether it exited 0.
    pub ok: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// `kubectl zop ARGS` on `kubeconfig`, run to the end.
pub fn kubectl_zop(kubeconfig: &Path, args: &[&str]) -> Ran {
    let out = Command::new(bin_path("kubectl-zop"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("running kubectl-zop");
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Deletes every Settlement: a fresh ledger (the next operator seals a new genesis).
/// Test binaries run one after another, so no other test's operator is settling.
pub async fn clear_ledger(client: &Client) {
    use kube::ResourceExt;
    let settlements: Api<zop_operator::api::Settlement> = Api::all(client.clone());
    if let Ok(list) = settlements.list(&Default::default()).await {
        for s in list.items {
            let _ = settlements
                .delete(&s.name_any(), &DeleteParams::default())
                .await;
        }
    }
}

/// A client for a kubeconfig file.
pub async fn client_for(path: &Path) -> anyhow::Result<Client> {
    let kc = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Polls `check` every `every` until it returns `Ok(Some(_))`; fails on its first error
/// or after `timeout`.
pub async fn wait_until<T, F, Fut>(
    timeout: Duration,
    every: Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        anyhow::ensure!(start.elapsed() < timeout, "timed out after {timeout:?}");
        tokio::time::sleep(every).await;
    }
}

/// Polls `check` every `every` until it returns `Some`; panics naming `what` after
/// `timeout`. For tests.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, every: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(every).await;
    }
}

/// Creates a namespace (idempotent).
pub async fn namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({ "metadata": { "name": name } }))?;
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a namespace, without waiting.
pub async fn delete_namespace(client: &Client, name: &str) {
    let _ = Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
}

/// The CRDs in the repository's `crds/` (generated from the Rust types, diff-checked).
pub fn crds() -> anyhow::Result<Vec<CustomResourceDefinition>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p)?;
            serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", p.display()))
        })
        .collect()
}

/// Applies the CRDs in `crds/` and waits until they are Established and their schemas
/// are published in the OpenAPI v3 document (which `kubectl explain` reads).
pub async fn install_crds(client: &Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds()? {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply("zop-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .with_context(|| format!("applying CRD {name}"))?;
        wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
            let (api, name) = (api.clone(), name.clone());
            async move {
                let conditions = api.get(&name).await?.status.and_then(|s| s.conditions);
                let established = conditions
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                Ok(established.then_some(()))
            }
        })
        .await
        .with_context(|| format!("CRD {name} not Established"))?;
        let (group, kind) = (crd.spec.group.clone(), crd.spec.names.kind.clone());
        for version in crd.spec.versions.iter().filter(|v| v.served) {
            let version = version.name.clone();
            wait_until(Duration::from_secs(60), Duration::from_millis(250), || {
                published(client, &group, &version, &kind)
            })
            .await
            .with_context(|| format!("{kind} {group}/{version} not in the OpenAPI v3 document"))?;
        }
    }
    Ok(())
}

/// `Some(())` once `/openapi/v3/apis/<group>/<version>` has a schema for `kind`.
async fn published(
    client: &Client,
    group: &str,
    version: &str,
    kind: &str,
) -> anyhow::Result<Option<()>> {
    let request =
        http::Request::get(format!("/openapi/v3/apis/{group}/{version}")).body(Vec::new())?;
    let doc: serde_json::Value = match client.request(request).await {
        Ok(doc) => doc,
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let schemas = doc["components"]["schemas"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let found = schemas.values().any(|schema| {
        schema["x-kubernetes-group-version-kind"]
            .as_array()
            .is_some_and(|gvks| {
                gvks.iter()
                    .any(|g| g["group"] == group && g["version"] == version && g["kind"] == kind)
            })
    });
    Ok(found.then_some(()))
}

/// A workspace binary built by `cargo build` (e2e/test builds them first), from
/// `target/debug`, or `target/$ZOP_BIN_PROFILE`.
pub fn bin_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    // Benchmarks run the release build: `ZOP_BIN_PROFILE=release`.
    let profile = std::env::var("ZOP_BIN_PROFILE").unwrap_or_else(|_| "debug".into());
    let path = target.join(profile).join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace --bins`",
        path.display()
    );
    path
}

/// A child process that is killed and reaped when dropped, so no test leaves one behind.
#[derive(Debug)]
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    /// Spawns `cmd`.
    pub fn spawn(cmd: &mut Command) -> anyhow::Result<Self> {
        Ok(Self(Some(
            cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?,
        )))
    }

    /// Stops the process now (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits up to `grace` before killing.
    pub fn terminate(&mut self, grace: Duration) {
        if let Some(c) = self.0.as_mut() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let start = Instant::now();
            while start.elapsed() < grace {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    self.0 = None;
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.stop();
    }

    /// Whether the process has exited, and how.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}
