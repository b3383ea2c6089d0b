//! The Helm chart, for real: `helm lint`, `helm template` accepted by a server-side dry
//! run, then `helm install` on the local control plane, its operator Pods run by the pod
//! runner from the local build with their own ServiceAccount's token, so the RBAC the
//! chart grants is the RBAC the operator runs with. Two replicas elect one leader, which
//! alone is Ready and serves the gateway; a task runs end to end and its epoch is
//! settled through the chart's operator; deleting the leader's Pod hands over to the
//! standby. The operator's ServiceAccount cannot read Secrets outside its namespace,
//! modify Nodes, or create Pods anywhere else.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use zop_e2e::nodes::{Mix, create_extra_nodes};
use zop_e2e::operator::{EPOCH_SECONDS, GRACE_SECONDS};
use zop_e2e::pod_runner::{ApiServer, PodRunner, RunnerOptions};
use zop_e2e::{Env, clear_ledger, delete_all_tasks, free_port, install_crds, wait_for};
use zop_operator::api::{ComputeTask, Settlement, TaskPhase};

#[path = "chart/plugin.rs"]
mod plugin;

const TEST: &str = "chart";
/// The provider whose Nodes the chart's operator benchmarks.
const BENCHED: &str = "dc-chart-cpu";
const RELEASE: &str = "zoptoken";

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/zoptoken")
}

/// Runs a tool; its success and its output.
/// The ServiceMonitor and PrometheusRule renderings, dry-run against the
/// monitoring.coreos.com CRDs that `e2e/scripts/tools.sh` generates from
/// prometheus-operator's API types; the CRDs are removed again afterwards.
fn monitoring_dry_run(kubectl: &str, kubeconfig: &Path, dry_run: impl Fn(&str) -> String) {
    let dir = std::path::PathBuf::from(tool("ZOP_MONITORING_CRDS"));
    let files = ["servicemonitors", "prometheusrules"]
        .map(|k| dir.join(format!("monitoring.coreos.com_{k}.yaml")));
    assert!(
        files.iter().all(|f| f.is_file()),
        "the monitoring CRDs are missing from {}: run e2e/scripts/tools.sh build",
        dir.display()
    );
    let crds = [
        "servicemonitors.monitoring.coreos.com",
        "prometheusrules.monitoring.coreos.com",
    ];
    for f in &files {
        let (ok, out) = run(
            kubectl,
            &["apply", "--server-side", "-f", f.to_str().unwrap()],
            kubeconfig,
        );
        assert!(ok, "installing {}: {out}", f.display());
    }
    let established = crds.map(|c| format!("crd/{c}"));
    let mut wait = vec!["wait", "--for=condition=Established", "--timeout=60s"];
    wait.extend(established.iter().map(String::as_str));
    let (ok, out) = run(kubectl, &wait, kubeconfig);
    assert!(ok, "the monitoring CRDs never became established: {out}");
    let out = dry_run("metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true");
    assert!(
        out.contains("servicemonitor.monitoring.coreos.com/")
            && out.contains("prometheusrule.monitoring.coreos.com/"),
        "the dry run did not cover the ServiceMonitor and PrometheusRule: {out}"
    );
    eprintln!(
        "FIGURE chart: the ServiceMonitor and PrometheusRule renderings pass a server-side dry run against the monitoring.coreos.com CRDs"
    );
    let mut delete = vec!["delete", "crd", "--wait=false"];
    delete.extend(crds);
    let (ok, out) = run(kubectl, &delete, kubeconfig);
    assert!(ok, "removing the monitoring CRDs: {out}");
}

fn run(program: &str, args: &[&str], kubeconfig: &Path) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn tool(var: &str) -> String {
    std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} is not set: eval \"$(e2e/scripts/tools.sh env)\""))
}

/// The API server and CA of the test's kubeconfig, for in-cluster access.
fn api_server(kubeconfig: &Path) -> ApiServer {
    let k = kube::config::Kubeconfig::read_from(kubeconfig).expect("reading the kubeconfig");
    let cluster = k.clusters[0].cluster.clone().expect("a cluster");
    // kwokctl writes the CA as a file.
    let path = cluster
        .certificate_authority
        .expect("the kubeconfig names its CA file");
    let ca = std::fs::read(path).expect("reading the CA");
    ApiServer {
        server: cluster.server.expect("a server"),
        ca_pem: ca,
    }
}

/// `kubectl auth can-i VERB RESOURCE [-n NS]` as the operator's ServiceAccount.
fn can_i(
    kubectl: &str,
    env: &Env,
    ns: &str,
    verb: &str,
    resource: &str,
    in_ns: Option<&str>,
) -> bool {
    let who = format!("--as=system:serviceaccount:{ns}:zop-operator");
    let mut args = vec!["auth", "can-i", verb, resource, who.as_str()];
    if let Some(n) = in_ns {
        args.extend(["-n", n]);
    }
    let (ok, out) = run(kubectl, &args, &env.kubeconfig);
    assert!(
        out.trim() == "yes" || out.trim() == "no" || out.contains("no"),
        "kubectl auth can-i {args:?}: {out}"
    );
    ok
}

async fn get_status(url: &str) -> Option<u16> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    Some(http.get(url).send().await.ok()?.status().as_u16())
}

#[tokio::test]
async fn the_chart_installs_and_runs_with_least_privilege() {
    let Some(env) = Env::from_env(TEST).await else {
        return;
    };
    let (helm, kubectl) = (tool("ZOP_HELM"), tool("ZOP_KUBECTL"));
    let version = tool("ZOP_K8S_VERSION");
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();

    // Lint, and every rendering the chart offers accepted by the API server.
    let (ok, out) = run(&helm, &["lint", "--strict", chart], &env.kubeconfig);
    assert!(
        ok && !out.contains("[WARNING]") && !out.contains("[ERROR]"),
        "{out}"
    );
    let client = env.client.clone();
    install_crds(&client).await.expect("CRDs install");
    delete_all_tasks(&client).await.unwrap();
    // A ledger of this test's own, sealed by the chart's operator.
    clear_ledger(&client).await;
    let ns = env.test_namespace("zop-chart").await.unwrap();
    let kube_version = version.trim_start_matches('v');
    let dry_run = |extra: &str| {
        let mut args = vec![
            "template",
            RELEASE,
            chart,
            "-n",
            &ns,
            "--kube-version",
            kube_version,
        ];
        if !extra.is_empty() {
            args.extend(["--set", extra]);
        }
        let (ok, rendered) = run(&helm, &args, &env.kubeconfig);
        assert!(ok, "helm template: {rendered}");
        let file = std::env::temp_dir().join(format!("zop-chart-{}.yaml", std::process::id()));
        std::fs::write(&file, &rendered).unwrap();
        let path = file.to_str().unwrap();
        let dry = ["apply", "--dry-run=server", "-n", &ns, "-f", path];
        let (ok, out) = run(&kubectl, &dry, &env.kubeconfig);
        assert!(ok, "server-side dry run of the chart ({extra}): {out}");
        let _ = std::fs::remove_file(&file);
        out
    };
    dry_run("");
    dry_run(
        "gateway.ingress.enabled=true,gateway.ingress.host=gw.example,gateway.serviceType=LoadBalancer,networkPolicy.enabled=false,podDisruptionBudget.enabled=false",
    );
    monitoring_dry_run(&kubectl, &env.kubeconfig, dry_run);

    // Install: two replicas, five-second epochs, the gateway on a free port for workers.
    let (gateway_port, metrics_port) = (free_port(), free_port());
    let worker_url = format!("https://127.0.0.1:{gateway_port}");
    let set = format!(
        "replicas=2,settlement.epochSeconds={EPOCH_SECONDS},settlement.graceSeconds={GRACE_SECONDS},gateway.port={gateway_port},metrics.port={metrics_port},gateway.workerURL={worker_url},nodeBenchmarks.retrySeconds=5,nodeBenchmarks.providers={{{BENCHED}}}"
    );
    let (ok, out) = run(
        &helm,
        &[
            "install",
            RELEASE,
            chart,
            "-n",
            &ns,
            "--set",
            &set,
            "--set",
            "extraArgs={--no-device-timeout-seconds=5}",
        ],
        &env.kubeconfig,
    );
    assert!(ok, "helm install: {out}");
    assert!(out.contains("only the leader is Ready"), "NOTES.txt: {out}");

    // Least privilege, asked of the API server's authorizer.
    let team = env.test_namespace("chart-team").await.unwrap();
    assert!(can_i(&kubectl, &env, &ns, "create", "pods", Some(&ns)));
    assert!(can_i(&kubectl, &env, &ns, "get", "secrets", Some(&ns)));
    assert!(can_i(
        &kubectl,
        &env,
        &ns,
        "patch",
        "devices.zoptoken.io/status",
        None
    ));
    for (verb, resource, where_) in [
        ("get", "secrets", Some("kube-system")),
        ("list", "secrets", Some("default")),
        ("get", "secrets", Some(team.as_str())),
        ("patch", "nodes", None),
        ("update", "nodes", None),
        ("delete", "nodes", None),
        ("create", "pods", Some("kube-system")),
        ("create", "pods", Some("default")),
        ("create", "pods", Some(team.as_str())),
        ("create", "configmaps", Some("kube-system")),
        ("create", "serviceaccounts", Some(team.as_str())),
        ("delete", "devices.zoptoken.io", None),
        ("delete", "settlements.zoptoken.io", None),
        ("create", "computetasks.zoptoken.io", Some(team.as_str())),
        ("delete", "secrets", Some(ns.as_str())),
    ] {
        assert!(
            !can_i(&kubectl, &env, &ns, verb, resource, where_),
            "the operator may {verb} {resource} in {where_:?}"
        );
    }
    eprintln!(
        "FIGURE chart: RBAC: the operator's ServiceAccount is refused 15 verbs outside its grant"
    );

    // Nodes with GPUs for the task; the operator Pods and the worker Pods run here.
    let labels = BTreeMap::from([
        ("zoptoken.io/onboard".to_string(), "true".to_string()),
        ("zoptoken.io/provider".to_string(), "dc-chart".to_string()),
    ]);
    let mix: Mix = "h100=1".parse().unwrap();
    let mut nodes = create_extra_nodes(&client, "chart", &mix, 4, &labels)
        .await
        .expect("creating labelled GPU nodes");
    // One CPU Node of the only provider the chart's operator benchmarks: a simulated GPU
    // Node can only measure its host's CPU, and would be quarantined for its labels.
    let benched_labels = BTreeMap::from([
        ("zoptoken.io/onboard".to_string(), "true".to_string()),
        ("zoptoken.io/provider".to_string(), BENCHED.to_string()),
    ]);
    let cpu: Mix = "cpu=1".parse().unwrap();
    let cpu_node = create_extra_nodes(&client, "chart-bench", &cpu, 1, &benched_labels)
        .await
        .expect("creating the CPU node");
    nodes.extend(cpu_node.clone());
    let runner = PodRunner::start(
        client.clone(),
        RunnerOptions {
            selector: "app.kubernetes.io/name in (zoptoken,zop-worker,zop-benchmark)".into(),
            namespace: Some(ns.clone()),
            override_env: BTreeMap::new(),
            pod_address_env: vec!["ZOP_METRICS_BIND".into()],
            api_server: Some(api_server(&env.kubeconfig)),
            ..RunnerOptions::default()
        },
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let operator_pods = || async {
        let list = pods
            .list(&ListParams::default().labels("app.kubernetes.io/name=zoptoken"))
            .await
            .ok()?;
        let names: Vec<String> = list.items.iter().map(|p| p.name_any()).collect();
        let addrs: Option<Vec<_>> = names.iter().map(|n| runner.address(&ns, n)).collect();
        let addrs = addrs?;
        (names.len() == 2).then(|| names.into_iter().zip(addrs).collect::<Vec<_>>())
    };
    let started = wait_for(
        "both operator Pods started",
        Duration::from_secs(60),
        Duration::from_millis(300),
        operator_pods,
    )
    .await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let leader = || async { leases.get("zop-operator").await.ok()?.spec?.holder_identity };
    let holder = wait_for(
        "a leader",
        Duration::from_secs(60),
        Duration::from_millis(300),
        leader,
    )
    .await;
    // The leader alone is Ready; both are live.
    let ready = wait_for(
        "the leader Ready",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            let mut states = Vec::new();
            for (name, addr) in &started {
                let base = format!("http://{addr}:{metrics_port}");
                let ready = get_status(&format!("{base}/readyz")).await?;
                let live = get_status(&format!("{base}/healthz")).await?;
                states.push((name.clone(), ready, live));
            }
            states.iter().any(|s| s.1 == 200).then_some(states)
        },
    )
    .await;
    for (name, ready, live) in &ready {
        assert_eq!(*live, 200, "{name} is not live");
        let expected = if holder.contains(name.as_str()) {
            200
        } else {
            503
        };
        assert_eq!(*ready, expected, "{name} (leader {holder})");
    }
    eprintln!("FIGURE chart: leader {holder}: /readyz {ready:?}");

    // The chart's operator benchmarks the CPU Node with its own RBAC: a benchmark Pod in
    // its namespace, reporting through its gateway with the Pod's bound token.
    let benched = cpu_node.keys().next().unwrap().clone();
    let devices: Api<zop_operator::api::Device> = Api::all(client.clone());
    let measured = wait_for(
        "the chart's operator benchmarking the CPU node",
        Duration::from_secs(90),
        Duration::from_millis(300),
        || async {
            let d = devices.get_opt(&benched).await.ok()??;
            let s = d.status?;
            let plausible = s
                .conditions
                .iter()
                .any(|c| c.type_ == "HardwarePlausible" && c.status == "True");
            s.benchmark.filter(|b| plausible && b.measured_at.is_some())
        },
    )
    .await;
    eprintln!(
        "FIGURE chart: the chart's operator benchmarked node {benched}: {} GOP/s, plausible",
        measured.score
    );

    // A task runs through the chart's operator: worker Pods in its namespace, results
    // through its gateway, the epoch settled and the ledger verifying.
    let tasks: Api<ComputeTask> = Api::namespaced(client.clone(), &team);
    let task = zop_e2e::proof_task(
        "through-the-chart",
        (64, 8, 3),
        4,
        serde_json::json!({
            "requirements": { "deviceClass": "gpu", "gpuModels": ["NVIDIA-H100-80GB-HBM3"] },
        }),
    );
    tasks.create(&PostParams::default(), &task).await.unwrap();
    let done = wait_for(
        "the task Completed",
        Duration::from_secs(180),
        Duration::from_millis(500),
        || async {
            let s = tasks.get("through-the-chart").await.ok()?.status?;
            assert_ne!(s.phase, TaskPhase::Failed, "{:?}", s.conditions);
            (s.phase == TaskPhase::Completed).then_some(s)
        },
    )
    .await;
    assert_eq!(done.fragments.verified, 4);
    let work: u64 = done.contributions.iter().map(|c| c.work_units).sum();
    let settlements: Api<Settlement> = Api::all(client.clone());
    wait_for(
        "the task's work paid to its provider",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let items = settlements.list(&ListParams::default()).await.ok()?.items;
            let paid: u64 = items
                .iter()
                .flat_map(|s| &s.spec.entries)
                .filter(|e| e.provider == "dc-chart")
                .map(|e| e.work_units)
                .sum();
            (paid == work && work > 0).then_some(())
        },
    )
    .await;
    let verified = zop_e2e::kubectl_zop(&env.kubeconfig, &["ledger", "verify"]);
    assert!(verified.ok, "{}", verified.stderr);
    let out = verified.stdout;
    eprintln!(
        "FIGURE chart: a 4-fragment task completed and was settled by the chart's operator: {}",
        out.trim()
    );

    plugin::every_command(&env.kubeconfig, &ns, &team, "through-the-chart", "dc-chart");

    // The leader's Pod deleted: it releases the Lease as it stops, and a waiting replica
    // (the standby, or the Pod replacing the deleted one) takes it and becomes Ready.
    let old = started.iter().find(|(n, _)| holder == *n).unwrap().clone();
    pods.delete(&old.0, &DeleteParams::default()).await.unwrap();
    let t0 = std::time::Instant::now();
    let new_holder = wait_for(
        "another replica leading and Ready",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let holder = leader().await?;
            let addr = runner.address(&ns, &holder).filter(|_| holder != old.0)?;
            let url = format!("http://{addr}:{metrics_port}/readyz");
            (get_status(&url).await? == 200).then_some(holder)
        },
    )
    .await;
    eprintln!(
        "FIGURE chart: the leader's Pod deleted, {new_holder} took over and was Ready in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // The task goes while its operator is there to release it.
    tasks
        .delete("through-the-chart", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        "the task deleted",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            tasks
                .get_opt("through-the-chart")
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    let (ok, out) = run(&helm, &["uninstall", RELEASE, "-n", &ns], &env.kubeconfig);
    assert!(ok, "helm uninstall: {out}");
    runner.shutdown().await;
    // Its nodes and their Devices go: a second provider's GPUs would let later tests'
    // operators place replays they do not expect.
    let node_api: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let device_api: Api<zop_operator::api::Device> = Api::all(client.clone());
    for name in nodes.keys() {
        let _ = node_api.delete(name, &DeleteParams::default()).await;
        let _ = device_api.delete(name, &DeleteParams::default()).await;
    }
}
