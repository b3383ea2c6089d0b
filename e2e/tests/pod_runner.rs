//! The pod runner stands in for the kubelet of simulated nodes: a worker pod bound to a
//! kwok node runs as a local process with its projected service-account token (a real
//! TokenRequest, bound to the pod), its ConfigMap files and its environment; its exit
//! code becomes the pod's phase and container state; deleting the pod, or stopping the
//! runner, stops the process; pods on other nodes are left alone.

use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::core::v1::{ConfigMap, ContainerStateTerminated, Node, Pod, ServiceAccount};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zop_e2e::operator::log_dir;
use zop_e2e::pod_runner::{
    FAKE_NODE_ANNOTATION, FIELD_MANAGER, PodRunner, RunnerOptions, log_path,
};
use zop_e2e::{Env, wait_for};

const SA: &str = "zop-worker";
const AUDIENCE: &str = "zoptoken-gateway";
const MOUNT: &str = "/var/run/secrets/zoptoken";
const GATEWAY_URL: &str = "https://gateway.zoptoken.test:8443";

/// A test namespace with a ServiceAccount and the gateway ConfigMap, a runner for that
/// namespace only, and a scratch directory the pods write to.
struct Fixture {
    env: Env,
    ns: String,
    runner: Option<PodRunner>,
    scratch: PathBuf,
    logs: PathBuf,
    node: String,
}

impl Fixture {
    async fn new(test: &str) -> Option<Self> {
        let env = Env::from_env(test).await?;
        let ns = env.test_namespace("runner").await.expect("namespace");
        let sa: ServiceAccount =
            serde_json::from_value(serde_json::json!({ "metadata": { "name": SA } }))
                .expect("service account");
        Api::<ServiceAccount>::namespaced(env.client.clone(), &ns)
            .create(&PostParams::default(), &sa)
            .await
            .expect("create service account");
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "zop-gateway" }, "data": { "gateway": GATEWAY_URL }
        }))
        .expect("configmap");
        Api::<ConfigMap>::namespaced(env.client.clone(), &ns)
            .create(&PostParams::default(), &cm)
            .await
            .expect("create configmap");
        let node = fake_node(&env).await;
        let scratch = std::env::temp_dir().join(format!("zop-e2e-{ns}"));
        std::fs::create_dir_all(&scratch).expect("scratch dir");
        let logs = log_dir(test);
        let runner = PodRunner::start(
            env.client.clone(),
            RunnerOptions {
                namespace: Some(ns.clone()),
                log_dir: logs.clone(),
                ..RunnerOptions::default()
            },
        );
        Some(Self {
            env,
            ns,
            runner: Some(runner),
            scratch,
            logs,
            node,
        })
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.env.client.clone(), &self.ns)
    }

    fn runner(&self) -> &PodRunner {
        self.runner.as_ref().expect("runner")
    }

    async fn create(&self, pod: Pod) -> Pod {
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("create pod")
    }

    /// The pod once its phase is `phase`.
    async fn phase(&self, name: &str, phase: &str, timeout: Duration) -> Pod {
        let pods = self.pods();
        wait_for(
            &format!("{}/{name} {phase}", self.ns),
            timeout,
            Duration::from_millis(200),
            || async {
                let pod = pods.get(name).await.ok()?;
                let current = pod.status.as_ref()?.phase.clone()?;
                (current == phase).then_some(pod)
            },
        )
        .await
    }

    async fn cleanup(mut self) {
        if let Some(runner) = self.runner.take() {
            runner.shutdown().await;
        }
        zop_e2e::delete_namespace(&self.env.client, &self.ns).await;
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Also when a test fails: the runner stops its processes as it drops.
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// A node kwok simulates.
async fn fake_node(env: &Env) -> String {
    Api::<Node>::all(env.client.clone())
        .list_metadata(&ListParams::default())
        .await
        .expect("list nodes")
        .items
        .into_iter()
        .filter(|n| {
            n.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(FAKE_NODE_ANNOTATION))
                .is_some_and(|v| v == "fake")
        })
        .find_map(|n| n.metadata.name)
        .expect("the cluster has no simulated node")
}

/// A worker pod running `/bin/sh -c SCRIPT sh ARGS...`, bound to `node`, with the
/// projected token + ConfigMap volume, a literal and a fieldRef in its environment.
struct WorkerPod {
    name: String,
    node: String,
    script: String,
    args: Vec<String>,
    env: Vec<serde_json::Value>,
    command: Option<Vec<String>>,
    grace: u32,
}

impl WorkerPod {
    fn new(name: &str, node: &str, script: &str) -> Self {
        Self {
            name: name.into(),
            node: node.into(),
            script: script.into(),
            args: Vec::new(),
            env: vec![
                serde_json::json!({ "name": "GREETING", "value": "hello" }),
                serde_json::json!({ "name": "POD_NAME",
                    "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }),
                serde_json::json!({ "name": "TOKEN_FILE", "value": format!("{MOUNT}/token") }),
            ],
            command: None,
            grace: 5,
        }
    }

    fn grace(mut self, seconds: u32) -> Self {
        self.grace = seconds;
        self
    }

    fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.into());
        self
    }

    fn env(mut self, name: &str, value: &Path) -> Self {
        self.env
            .push(serde_json::json!({ "name": name, "value": value.display().to_string() }));
        self
    }

    fn env_json(mut self, var: serde_json::Value) -> Self {
        self.env.push(var);
        self
    }

    /// Runs `command` instead of the shell script.
    fn command(mut self, command: &[&str]) -> Self {
        self.command = Some(command.iter().map(|s| s.to_string()).collect());
        self
    }

    fn build(self) -> Pod {
        let (command, args) = match self.command {
            Some(c) => (c, Vec::new()),
            None => {
                let mut args = vec![self.script, "sh".to_string()];
                args.extend(self.args);
                (vec!["/bin/sh".to_string(), "-c".to_string()], args)
            }
        };
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": self.name,
                "labels": { "app.kubernetes.io/name": "zop-worker" }
            },
            "spec": {
                "nodeName": self.node,
                "serviceAccountName": SA,
                "automountServiceAccountToken": false,
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": self.grace,
                "containers": [{
                    "name": "worker",
                    "image": "zoptoken/worker:e2e",
                    "command": command,
                    "args": args,
                    "env": self.env,
                    "volumeMounts": [{ "name": "zoptoken", "mountPath": MOUNT, "readOnly": true }]
                }],
                "volumes": [{
                    "name": "zoptoken",
                    "projected": { "sources": [
                        { "serviceAccountToken": {
                            "audience": AUDIENCE, "expirationSeconds": 600, "path": "token" } },
                        { "configMap": {
                            "name": "zop-gateway",
                            "items": [{ "key": "gateway", "path": "gateway.url" }] } }
                    ]}
                }]
            }
        }))
        .expect("pod manifest")
    }
}

fn terminated(pod: &Pod) -> ContainerStateTerminated {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.clone())
        .unwrap_or_else(|| panic!("no terminated state: {:?}", pod.status))
}

fn ready(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

/// Whether `pid` is a live process whose command line contains `needle`.
fn alive(pid: u32, needle: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
}

/// Pids `sh PID CHILD` written by a pod's script, once there.
async fn pids(file: &Path) -> (u32, u32) {
    wait_for(
        &format!("{} written", file.display()),
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let text = std::fs::read_to_string(file).ok()?;
            let mut it = text.split_whitespace().map(|p| p.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        },
    )
    .await
}

#[tokio::test]
async fn a_worker_pod_runs_with_its_bound_token_configmap_and_env_and_succeeds() {
    let test = "a_worker_pod_runs_with_its_bound_token_configmap_and_env_and_succeeds";
    let Some(fx) = Fixture::new(test).await else {
        return;
    };
    // The configMap file comes as an argument, the token through the environment: both
    // must be rewritten to the runner's private copy of the volume.
    let script = r#"set -eu
test -s "$TOKEN_FILE"
test -s "$1"
test "$(cat "$1")" = "$EXPECT_URL"
test "$(stat -c %a "$(dirname "$TOKEN_FILE")")" = 700
test "$GREETING" = hello
test "$POD_NAME" = worker-ok
test -n "$PATH" && test -n "$HOME"
test -z "${ZOP_KUBECONFIG:-}"
cp "$TOKEN_FILE" "$OUT_DIR/token"
echo "worker-ok done""#;
    let pod = WorkerPod::new("worker-ok", &fx.node, script)
        .arg(&format!("{MOUNT}/gateway.url"))
        .env("OUT_DIR", &fx.scratch)
        .env_json(serde_json::json!({ "name": "EXPECT_URL", "value": GATEWAY_URL }))
        .build();
    let start = Instant::now();
    let created = fx.create(pod).await;
    let done = fx
        .phase("worker-ok", "Succeeded", Duration::from_secs(60))
        .await;
    eprintln!("worker-ok: Succeeded {:?} after creation", start.elapsed());
    let log = log_path(&fx.logs, &fx.ns, "worker-ok");
    let t = terminated(&done);
    assert_eq!(
        (t.exit_code, t.reason.as_deref()),
        (0, Some("Completed")),
        "log {}: {}",
        log.display(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(t.started_at.is_some() && t.finished_at.is_some());
    assert_eq!(ready(&done).as_deref(), Some("False"));
    assert!(
        std::fs::read_to_string(&log)
            .expect("log file")
            .contains("worker-ok done")
    );

    // The copied token is a real one: bound to this pod, for the gateway's audience.
    let token = std::fs::read_to_string(fx.scratch.join("token")).expect("copied token");
    let review: TokenReview = serde_json::from_value(serde_json::json!({
        "spec": { "token": token.trim(), "audiences": [AUDIENCE] }
    }))
    .expect("token review");
    let status = Api::<TokenReview>::all(fx.env.client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("TokenReview")
        .status
        .expect("review status");
    assert_eq!(status.authenticated, Some(true), "{status:?}");
    let user = status.user.expect("user");
    assert_eq!(
        user.username.as_deref(),
        Some(format!("system:serviceaccount:{}:{SA}", fx.ns).as_str())
    );
    let extra = user.extra.unwrap_or_default();
    assert_eq!(
        extra.get("authentication.kubernetes.io/pod-name"),
        Some(&vec!["worker-ok".to_string()])
    );
    assert_eq!(
        extra.get("authentication.kubernetes.io/pod-uid"),
        Some(&vec![created.metadata.uid.clone().expect("uid")])
    );
    assert_eq!(fx.runner().started(), 1);
    assert_eq!(fx.runner().finished(), 1);
    fx.cleanup().await;
}

#[tokio::test]
async fn a_failing_or_unstartable_pod_is_marked_failed_with_its_reason() {
    let Some(fx) =
        Fixture::new("a_failing_or_unstartable_pod_is_marked_failed_with_its_reason").await
    else {
        return;
    };
    fx.create(WorkerPod::new("exit-3", &fx.node, "echo failing >&2; exit 3").build())
        .await;
    fx.create(
        WorkerPod::new("no-binary", &fx.node, "")
            .command(&["/nonexistent/zop-no-such-binary"])
            .build(),
    )
    .await;
    fx.create(
        WorkerPod::new("no-configmap", &fx.node, "exit 0")
            .env_json(serde_json::json!({ "name": "MISSING", "valueFrom": {
                "configMapKeyRef": { "name": "no-such-configmap", "key": "k" } } }))
            .build(),
    )
    .await;

    let failed = fx.phase("exit-3", "Failed", Duration::from_secs(60)).await;
    let t = terminated(&failed);
    assert_eq!((t.exit_code, t.reason.as_deref()), (3, Some("Error")));
    assert_eq!(ready(&failed).as_deref(), Some("False"));

    let failed = fx
        .phase("no-binary", "Failed", Duration::from_secs(60))
        .await;
    let t = terminated(&failed);
    assert_eq!(t.reason.as_deref(), Some("StartError"));
    assert!(
        t.message.unwrap_or_default().contains("zop-no-such-binary"),
        "{:?}",
        failed.status
    );

    let failed = fx
        .phase("no-configmap", "Failed", Duration::from_secs(60))
        .await;
    let status = failed.status.clone().unwrap_or_default();
    assert_eq!(status.reason.as_deref(), Some("CreateContainerConfigError"));
    assert!(
        status
            .message
            .unwrap_or_default()
            .contains("no-such-configmap"),
        "{:?}",
        failed.status
    );
    let stats = fx.runner().stats();
    assert_eq!((stats.started, stats.failed_to_start), (1, 2), "{stats:?}");
    fx.cleanup().await;
}

#[tokio::test]
async fn deleting_a_pod_or_stopping_the_runner_stops_its_processes() {
    let Some(fx) = Fixture::new("deleting_a_pod_or_stopping_the_runner_stops_its_processes").await
    else {
        return;
    };
    // sh in the background of which a sleep runs: both must go (the process group).
    // `$$$$` is the shell's `$$`: like the kubelet, the runner makes `$$` of args a `$`.
    let script = r#"sleep 60 & echo "$$$$ $!" > "$OUT_DIR/$POD_NAME.pids"; wait"#;
    let marker = format!("zop-runner-marker-{}", fx.ns);
    for (name, script, grace) in [
        ("sleeper", script.to_string(), 5),
        ("survivor", script.to_string(), 5),
        // Ignores SIGTERM (and so does its sleep): only SIGKILL after the grace period ends it.
        ("stubborn", format!("trap '' TERM; {script}"), 1),
    ] {
        fx.create(
            WorkerPod::new(name, &fx.node, &script)
                .arg(&marker)
                .env("OUT_DIR", &fx.scratch)
                .grace(grace)
                .build(),
        )
        .await;
    }
    let (sh, sleep) = pids(&fx.scratch.join("sleeper.pids")).await;
    assert!(alive(sh, &marker) && alive(sleep, "sleep"));
    let running = fx.runner().running();
    assert!(
        running.iter().any(|p| p.name == "sleeper" && p.pid == sh),
        "{running:?}"
    );

    let start = Instant::now();
    fx.pods()
        .delete("sleeper", &DeleteParams::default())
        .await
        .expect("delete pod");
    wait_for(
        "the deleted pod's processes gone",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async { (!alive(sh, &marker) && !alive(sleep, "sleep")).then_some(()) },
    )
    .await;
    eprintln!(
        "sleeper: processes gone {:?} after deletion",
        start.elapsed()
    );

    let (sh, sleep) = pids(&fx.scratch.join("stubborn.pids")).await;
    assert!(alive(sh, &marker) && alive(sleep, "sleep"));
    let start = Instant::now();
    fx.pods()
        .delete("stubborn", &DeleteParams::default())
        .await
        .expect("delete pod");
    wait_for(
        "the stubborn pod's processes gone",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async { (!alive(sh, &marker) && !alive(sleep, "sleep")).then_some(()) },
    )
    .await;
    let took = start.elapsed();
    eprintln!("stubborn: processes gone {took:?} after deletion (grace 1s)");
    assert!(
        took >= Duration::from_millis(900),
        "killed before its grace period: {took:?}"
    );

    // Stopping the runner stops what is still running, before shutdown returns.
    let (sh, sleep) = pids(&fx.scratch.join("survivor.pids")).await;
    assert!(alive(sh, &marker) && alive(sleep, "sleep"));
    let mut fx = fx;
    let start = Instant::now();
    let stats = fx.runner.take().expect("runner").shutdown().await;
    eprintln!("survivor: runner stopped in {:?}", start.elapsed());
    assert!(!alive(sh, &marker), "sh {sh} outlived the runner");
    assert!(!alive(sleep, "sleep"), "sleep {sleep} outlived the runner");
    assert_eq!((stats.started, stats.finished), (3, 3), "{stats:?}");
    fx.cleanup().await;
}

#[tokio::test]
async fn pods_off_simulated_nodes_are_left_alone() {
    let Some(fx) = Fixture::new("pods_off_simulated_nodes_are_left_alone").await else {
        return;
    };
    // A node kwok does not simulate (no annotation), that nothing may be scheduled on.
    let plain = format!("plain-{}", fx.ns);
    let node: Node = serde_json::from_value(serde_json::json!({
        "metadata": { "name": plain },
        "spec": {
            "unschedulable": true,
            "taints": [{ "key": "e2e.zoptoken.io/not-simulated", "effect": "NoSchedule" }]
        }
    }))
    .expect("node");
    let nodes: Api<Node> = Api::all(fx.env.client.clone());
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("create node");
    fx.create(WorkerPod::new("elsewhere", &plain, "exit 0").build())
        .await;
    fx.create(WorkerPod::new("here", &fx.node, "exit 0").build())
        .await;
    fx.phase("here", "Succeeded", Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // kwokctl's kwok may well mark it Running; the runner must neither run it nor write
    // its status.
    let elsewhere = fx.pods().get("elsewhere").await.expect("pod");
    let managers: Vec<String> = elsewhere
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    let log = log_path(&fx.logs, &fx.ns, "elsewhere");
    let stats = fx.runner().stats();
    let _ = fx
        .pods()
        .delete("elsewhere", &DeleteParams::default().grace_period(0))
        .await;
    let _ = nodes.delete(&plain, &DeleteParams::default()).await;
    assert!(!managers.iter().any(|m| m == FIELD_MANAGER), "{managers:?}");
    assert!(!log.exists(), "{} exists", log.display());
    assert_eq!((stats.started, stats.failed_to_start), (1, 0), "{stats:?}");
    fx.cleanup().await;
}
