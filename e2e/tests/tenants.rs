//! Tenants and workers as adversaries, on the real control plane. Each attack is played
//! as its attacker would play it: a tenant through their own RBAC (a user bound to a
//! Role in their namespace, reached by impersonation), a worker or an agent with its own
//! credentials. For each: nothing is written, and the operator keeps serving an honest
//! task to completion.
//!
//! - Forged assignment records: worker-lookalike Pods and ConfigMaps in a tenant's
//!   namespace (a reversed range that once panicked the planner, a forged completion), and
//!   an invalid record in the operator's own namespace (ignored with an Event and a metric).
//! - A tenant's pod token, bound to a Pod on an onboarded node, heartbeats that node's
//!   Device; a real worker Pod's token heartbeats too.
//! - Fresh bogus tokens, one per request, against the lookup ration.
//! - An agent claims `u64::MAX` work units for its fragments.
//! - A second machine whose host name sanitizes to an agent's Device name registers.
//! - Twenty registrations race for a Group Key's quota of five.
//!
//! One operator serves the whole story, so it is one test.

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, ResourceExt};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use zop_e2e::nodes::{Mix, create_extra_nodes, wait_devices_online};
use zop_e2e::operator::{Operator, group_key, sample};
use zop_e2e::pod_runner::{PodRunner, RunnerOptions};
use zop_e2e::{Env, delete_all_tasks, free_port, install_crds, wait_for};
use zop_operator::api::{ComputeTask, Device, DevicePhase, TaskPhase};
use zop_operator::scheduler::slicer;

const TEST: &str = "tenants";
const NODES: usize = 6;
const TENANT: &str = "mallory";
/// The lookup ration the operator runs with here, per client address.
const LOOKUP_RATE: u32 = 5;
const LOOKUP_BURST: u32 = 20;

fn task(name: &str, spec: serde_json::Value) -> ComputeTask {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "zoptoken.io/v1alpha1", "kind": "ComputeTask",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .unwrap()
}

async fn wait_phase(client: &Client, ns: &str, name: &str, want: TaskPhase) -> ComputeTask {
    let api: Api<ComputeTask> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("task {ns}/{name} {want:?}"),
        Duration::from_secs(180),
        Duration::from_millis(300),
        || async {
            let t = api.get(name).await.ok()?;
            let p = t.status.as_ref().map(|s| s.phase).unwrap_or_default();
            assert!(
                p == want || !p.is_terminal(),
                "task {ns}/{name} ended {p:?}: {:?}",
                t.status
            );
            (p == want).then_some(t)
        },
    )
    .await
}

/// A client acting as user [`TENANT`], who may do anything with Pods, ConfigMaps and
/// ServiceAccounts (and their tokens) in namespace `ns`, and nothing elsewhere.
async fn tenant_client(env: &Env, ns: &str) -> Client {
    let role: Role = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "tenant" },
        "rules": [{
            "apiGroups": [""],
            "resources": ["pods", "configmaps", "serviceaccounts", "serviceaccounts/token"],
            "verbs": ["*"],
        }],
    }))
    .unwrap();
    let binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "tenant" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tenant" },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": TENANT }],
    }))
    .unwrap();
    let pp = PostParams::default();
    Api::<Role>::namespaced(env.client.clone(), ns)
        .create(&pp, &role)
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(env.client.clone(), ns)
        .create(&pp, &binding)
        .await
        .unwrap();
    let kc = Kubeconfig::read_from(&env.kubeconfig).unwrap();
    let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    config.auth_info.impersonate = Some(TENANT.into());
    Client::try_from(config).unwrap()
}

/// A Pod that looks like a worker of task `uid` and carries `record` as its assignment;
/// it can never be scheduled, so nothing runs it.
fn lookalike(name: &str, uid: &str, record: &serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": name,
            "labels": { "app.kubernetes.io/name": "zop-worker", "zoptoken.io/task-uid": uid },
            "annotations": { "zoptoken.io/assignment": record.to_string() },
        },
        "spec": {
            "nodeSelector": { "e2e.zoptoken.io/nowhere": "true" },
            "containers": [{ "name": "worker", "image": "zop-worker", "command": ["zop-worker", "--version"] }],
        },
    }))
    .unwrap()
}

/// A token of `sa` in `ns`, for the gateway's audience, bound to Pod `pod`.
async fn bound_token(client: &Client, ns: &str, sa: &str, pod: &Pod) -> String {
    let req = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec!["zoptoken-gateway".into()]),
            expiration_seconds: Some(600),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        }),
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(sa, &PostParams::default(), &req)
        .await
        .expect("a bound token")
        .status
        .and_then(|s| s.token)
        .expect("a token")
}

/// The gateway, as a client of it sees it.
struct Gateway {
    https: reqwest::Client,
    url: String,
}

impl Gateway {
    async fn send(&self, req: reqwest::RequestBuilder, token: &str) -> (u16, serde_json::Value) {
        let resp = req
            .bearer_auth(token)
            .send()
            .await
            .expect("a gateway answer");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or_default())
    }

    async fn get(&self, path: &str, token: &str) -> (u16, serde_json::Value) {
        self.send(self.https.get(format!("{}{path}", self.url)), token)
            .await
    }

    async fn post(
        &self,
        path: &str,
        token: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let req = self.https.post(format!("{}{path}", self.url)).json(&body);
        self.send(req, token).await
    }
}

fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(text, name, labels).unwrap_or(0.0)
}

#[tokio::test]
async fn tenants_and_workers_cannot_forge_records_identity_or_work() {
    let Some(env) = Env::from_env(TEST).await else {
        return;
    };
    let client = env.client.clone();
    install_crds(&client).await.expect("CRDs install");
    delete_all_tasks(&client)
        .await
        .expect("deleting other tests' tasks");
    let op_ns = env.test_namespace("zop-tenants").await.unwrap();
    let team = env.test_namespace("team").await.unwrap();
    let evil = env.test_namespace(TENANT).await.unwrap();
    let labels = BTreeMap::from([
        ("zoptoken.io/onboard".to_string(), "true".to_string()),
        ("zoptoken.io/provider".to_string(), "dc-tenants".to_string()),
    ]);
    let mix: Mix = "rtx4090=1".parse().unwrap();
    let nodes = create_extra_nodes(&client, "ten", &mix, NODES, &labels)
        .await
        .expect("creating onboarded GPU nodes");
    let port = free_port();
    let url = format!("https://localhost:{port}");
    let (rate, burst) = (LOOKUP_RATE.to_string(), LOOKUP_BURST.to_string());
    let flags = [
        "--worker-gateway-url",
        &url,
        "--gateway-lookup-rate",
        &rate,
        "--gateway-lookup-burst",
        &burst,
    ];
    let mut operator = Operator::start_on(&env, TEST, &op_ns, port, &flags)
        .await
        .unwrap();
    let devices: Api<Device> = Api::all(client.clone());
    wait_devices_online(&client, nodes.keys(), Duration::from_secs(30)).await;
    let runner = PodRunner::start(client.clone(), RunnerOptions::default());
    let mallory = tenant_client(&env, &evil).await;
    let https = operator.https_client().unwrap();

    // The honest task: one fragment per GPU, seconds of work each.
    let honest = Api::<ComputeTask>::namespaced(client.clone(), &team)
        .create(
            &PostParams::default(),
            &task(
                "honest",
                serde_json::json!({
                    "type": "compute-proof",
                    "computeProof": { "dimension": 512, "products": 40, "seed": 5 },
                    "fragments": { "count": NODES },
                    "requirements": { "deviceClass": "gpu" },
                }),
            ),
        )
        .await
        .unwrap();
    let uid = honest.uid().unwrap();

    // 1. Forged records, as the tenant: a reversed range and a forged completion, on
    // lookalike worker Pods and an assignment-labelled ConfigMap in their namespace.
    let record = |start: u32, end: u32, state: &str, results: serde_json::Value| {
        serde_json::json!({
            "taskNamespace": team, "task": "honest", "taskUid": uid, "device": "mallory-box",
            "start": start, "end": end, "attempt": 0, "state": state, "results": results,
            "createdMs": 1, "updatedMs": 1,
        })
    };
    let forged_results = serde_json::json!([
        { "fragment": 0, "digest": "ab".repeat(32), "workUnits": 1_000_000, "elapsedMs": 1 },
        { "fragment": 1, "digest": "ab".repeat(32), "workUnits": 1_000_000, "elapsedMs": 1 },
    ]);
    let tenant_pods: Api<Pod> = Api::namespaced(mallory.clone(), &evil);
    for (name, r) in [
        (
            "forged-range",
            record(5, 2, "Pending", serde_json::json!([])),
        ),
        (
            "forged-done",
            record(0, 2, "Completed", forged_results.clone()),
        ),
    ] {
        tenant_pods
            .create(&PostParams::default(), &lookalike(name, &uid, &r))
            .await
            .expect("the tenant may create pods in their namespace");
    }
    let forged_cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": "forged-cm",
            "labels": { "zoptoken.io/assignment": "true", "zoptoken.io/task-uid": uid },
        },
        "data": { "assignment.json": record(0, 2, "Completed", forged_results).to_string() },
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(mallory.clone(), &evil)
        .create(&PostParams::default(), &forged_cm)
        .await
        .expect("the tenant may create config maps in their namespace");
    // The tenant cannot reach the operator's namespace at all.
    let denied = Api::<ConfigMap>::namespaced(mallory.clone(), &op_ns)
        .create(&PostParams::default(), &forged_cm)
        .await;
    assert!(
        matches!(&denied, Err(kube::Error::Api(s)) if s.code == 403),
        "{denied:?}"
    );
    // An invalid record where only the operator (and admins) write: ignored, reported.
    let mut reversed = record(5, 2, "Running", serde_json::json!([]));
    reversed["attempt"] = 9.into();
    let corrupt: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": zop_operator::tasks::record::name(&uid, 5, 9),
            "labels": { "zoptoken.io/assignment": "true", "zoptoken.io/task-uid": uid },
        },
        "data": { "assignment.json": reversed.to_string() },
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), &op_ns)
        .create(&PostParams::default(), &corrupt)
        .await
        .unwrap();

    // 2. A tenant's pod token, bound to a Pod the tenant runs on an onboarded node.
    let victim = nodes.keys().next().unwrap().clone();
    let before = devices.get(&victim).await.unwrap().status.unwrap();
    let tenant_sas: Api<ServiceAccount> = Api::namespaced(mallory.clone(), &evil);
    let sa: ServiceAccount =
        serde_json::from_value(serde_json::json!({ "metadata": { "name": "zop-worker" } }))
            .unwrap();
    tenant_sas
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    let squatter: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "squatter" },
        "spec": {
            "nodeName": victim,
            "serviceAccountName": "zop-worker",
            "tolerations": [{ "key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule" }],
            "containers": [{ "name": "c", "image": "busybox", "command": ["sleep", "3600"] }],
        },
    }))
    .unwrap();
    let squatter = tenant_pods
        .create(&PostParams::default(), &squatter)
        .await
        .unwrap();
    let tenant_token = bound_token(&mallory, &evil, "zop-worker", &squatter).await;
    let beat = serde_json::json!({
        "load": 100, "runningFragments": 0,
        "benchmark": { "score": 1, "memoryBandwidthMBps": 1, "fingerprint": "v1:4,8" },
    });
    let gw = Gateway {
        https: https.clone(),
        url: operator.gateway.clone(),
    };
    let (status, body) = gw.post("/v1/heartbeat", &tenant_token, beat.clone()).await;
    assert_eq!(status, 401, "a tenant's pod token heartbeat: {body}");
    let (status, _) = gw.get("/v1/whoami", &tenant_token).await;
    assert_eq!(status, 401, "a tenant's service account is no worker");

    // A real worker Pod's token (as its worker holds it) may pull and report, never
    // heartbeat its node.
    let worker_pod = wait_for(
        "a worker pod of the honest task",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            Api::<Pod>::namespaced(client.clone(), &op_ns)
                .list(&ListParams::default().labels(&format!("zoptoken.io/task-uid={uid}")))
                .await
                .ok()?
                .items
                .into_iter()
                .next()
        },
    )
    .await;
    let worker_token = bound_token(&client, &op_ns, "zop-worker", &worker_pod).await;
    let (status, body) = gw.post("/v1/heartbeat", &worker_token, beat).await;
    assert_eq!(status, 403, "a worker pod heartbeat: {body}");
    let (status, body) = gw.get("/v1/whoami", &worker_token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pod"], worker_pod.name_any().as_str());
    let after = devices.get(&victim).await.unwrap().status.unwrap();
    assert_eq!(after.phase, DevicePhase::Online);
    assert_eq!(
        after.benchmark, before.benchmark,
        "the node's benchmark was written"
    );
    assert_ne!(after.load, 100, "the node's load was written");

    // The honest task completes on real devices only, every fragment once.
    let done = wait_phase(&client, &team, "honest", TaskPhase::Completed).await;
    let s = done.status.clone().unwrap();
    assert_eq!(s.fragments.completed, NODES as u32);
    assert!(
        s.contributions
            .iter()
            .all(|c| nodes.contains_key(&c.device)),
        "a forged device was credited: {:?}",
        s.contributions
    );
    let counted: u64 = s.contributions.iter().map(|c| c.fragments).sum();
    assert_eq!(counted, NODES as u64);
    assert!(operator.child.exited().is_none(), "the operator died");
    let written: Vec<String> = Api::<ConfigMap>::namespaced(client.clone(), &op_ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    assert!(
        !written.iter().any(|n| n.starts_with("forged")),
        "a forged record was copied into the operator's namespace: {written:?}"
    );
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &team)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("InvalidRecord")),
        "no InvalidRecord Event for the corrupt record"
    );
    let text = operator.scrape().await.unwrap();
    assert!(
        metric(
            &text,
            "zop_invalid_records_total",
            &[("reason", "BadRange")]
        ) >= 1.0
    );

    // 3. A fresh bogus token per request: lookups stay within the ration.
    tokio::time::sleep(Duration::from_secs(
        u64::from(LOOKUP_BURST / LOOKUP_RATE) + 1,
    ))
    .await;
    let lookups_before = metric(&text, "zop_gateway_auth_lookups_total", &[]);
    let started = Instant::now();
    let mut answers: BTreeMap<u16, u32> = BTreeMap::new();
    for i in 0..300 {
        let bogus = format!("eyJhbGciOiJSUzI1NiJ9.bogus-{i}-{}.sig", std::process::id());
        let (status, _) = gw.get("/v1/whoami", &bogus).await;
        *answers.entry(status).or_default() += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let text = operator.scrape().await.unwrap();
    let lookups = metric(&text, "zop_gateway_auth_lookups_total", &[]) - lookups_before;
    eprintln!(
        "FIGURE tenants: 300 fresh bogus tokens in {elapsed:.2}s: answers {answers:?}, {lookups} TokenReviews"
    );
    let allowed = f64::from(LOOKUP_BURST) + f64::from(LOOKUP_RATE) * elapsed + 1.0;
    assert!(
        lookups <= allowed,
        "{lookups} lookups > {allowed:.0} allowed"
    );
    assert!(answers.get(&429).copied().unwrap_or(0) > 0, "{answers:?}");
    assert_eq!(
        answers
            .keys()
            .copied()
            .filter(|s| *s != 401 && *s != 429)
            .count(),
        0,
        "{answers:?}"
    );

    // 4. An agent claims u64::MAX work units: credited with the slicer's cost.
    tokio::time::sleep(Duration::from_secs(
        u64::from(LOOKUP_BURST / LOOKUP_RATE) + 1,
    ))
    .await;
    let key = group_key(&env, &op_ns, &["create", "liar-key", "--provider", TENANT]);
    let (status, reg) = gw.post("/v1/register", key.trim(), serde_json::json!({
            "hostname": "liar-box",
            "identification": { "deviceType": "workstation", "os": "linux", "cpuCores": 8, "memoryMiB": 16384, "gpus": [] },
        })).await;
    assert_eq!(status, 201, "{reg}");
    let agent_token = reg["token"].as_str().unwrap().to_string();
    let agent_device = reg["device"].as_str().unwrap().to_string();
    // Its digests are not checked here (no challenges; `verification.rs` plays the
    // cheaters whose results are): this is about the work units it claims.
    let cpu_spec = serde_json::json!({
        "type": "compute-proof",
        "computeProof": { "dimension": 64, "products": 4, "seed": 9 },
        "fragments": { "count": 2 },
        "requirements": { "deviceClass": "cpu" },
        "verification": { "challenges": 0 },
    });
    wait_for(
        "the liar's Device Online",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            devices
                .get_opt(&agent_device)
                .await
                .ok()
                .flatten()?
                .status
                .filter(|s| s.phase == DevicePhase::Online)
                .map(drop)
        },
    )
    .await;
    Api::<ComputeTask>::namespaced(client.clone(), &team)
        .create(&PostParams::default(), &task("cpu-work", cpu_spec.clone()))
        .await
        .unwrap();
    // The liar heartbeats, pulls each of its assignments and claims the most it can.
    let tasks_api: Api<ComputeTask> = Api::namespaced(client.clone(), &team);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut reported = 0;
    loop {
        let beat = serde_json::json!({ "load": 0, "runningFragments": 0 });
        let (status, body) = gw.post("/v1/heartbeat", &agent_token, beat).await;
        assert_eq!(status, 200, "the liar's heartbeat: {body}");
        let (status, work) = gw.get("/v1/work", &agent_token).await;
        if status == 200 {
            let results: Vec<serde_json::Value> = work["fragments"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| serde_json::json!({ "fragment": f["index"], "digest": "cd".repeat(32), "workUnits": u64::MAX, "elapsedMs": 1 }))
                .collect();
            reported += results.len();
            let (status, body) = gw
                .post(
                    "/v1/results",
                    &agent_token,
                    serde_json::json!({ "assignment": work["assignment"], "results": results }),
                )
                .await;
            assert_eq!(status, 200, "{body}");
        }
        let phase = tasks_api
            .get("cpu-work")
            .await
            .ok()
            .and_then(|t| t.status)
            .map(|s| s.phase);
        if phase == Some(TaskPhase::Completed) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cpu-work did not complete: {phase:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(reported, 2, "the liar reported every fragment once");
    let done = wait_phase(&client, &team, "cpu-work", TaskPhase::Completed).await;
    let spec: zop_operator::api::task::ComputeTaskSpec = serde_json::from_value(cpu_spec).unwrap();
    let slicing = slicer::slice(&spec).unwrap();
    let cost: u64 = (0..slicing.fragments()).map(|f| slicing.weight(f)).sum();
    let row = done
        .status
        .unwrap()
        .contributions
        .into_iter()
        .find(|c| c.device == agent_device)
        .expect("the liar's contribution row");
    assert_eq!(row.work_units, cost, "credited beyond the slicer's cost");
    let text = operator.scrape().await.unwrap();
    assert!(metric(&text, "zop_gateway_work_claim_mismatches_total", &[]) >= 2.0);

    // 5. A second machine whose host name sanitizes to the liar's Device name is refused,
    // and the liar's token keeps working (it was not rotated).
    let identification = serde_json::json!({ "deviceType": "workstation", "os": "linux", "cpuCores": 8, "memoryMiB": 16384, "gpus": [] });
    let (status, body) = gw
        .post(
            "/v1/register",
            key.trim(),
            serde_json::json!({ "hostname": "Liar.Box", "identification": identification }),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["reason"], "HostnameCollision");
    let beat = serde_json::json!({ "load": 0, "runningFragments": 0 });
    let (status, body) = gw.post("/v1/heartbeat", &agent_token, beat).await;
    assert_eq!(status, 200, "the first machine's token was rotated: {body}");

    // 6. A Group Key's quota holds under 20 concurrent registrations (once the gateway's
    // cache has the key and the address's lookup ration is full again).
    let quota_key = group_key(
        &env,
        &op_ns,
        &["create", "quota-key", "--provider", "crowd", "--quota", "5"],
    );
    tokio::time::sleep(Duration::from_secs(
        u64::from(LOOKUP_BURST / LOOKUP_RATE) + 1,
    ))
    .await;
    let registrations = futures::future::join_all((0..20).map(|i| {
        let body = serde_json::json!({ "hostname": format!("host-{i:02}"), "identification": identification });
        gw.post("/v1/register", quota_key.trim(), body)
    }))
    .await;
    let mut outcomes: BTreeMap<String, u32> = BTreeMap::new();
    for (status, body) in &registrations {
        let what = if *status == 201 {
            "Registered".to_string()
        } else {
            body["reason"].as_str().unwrap_or("?").to_string()
        };
        *outcomes.entry(what).or_default() += 1;
    }
    eprintln!("FIGURE tenants: 20 concurrent registrations on a quota of 5: {outcomes:?}");
    assert_eq!(outcomes.get("Registered"), Some(&5), "{outcomes:?}");
    assert_eq!(outcomes.get("QuotaExceeded"), Some(&15), "{outcomes:?}");
    let crowd: Vec<String> = devices
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|d| d.name_any())
        .filter(|n| n.starts_with("agent-crowd-"))
        .collect();
    assert_eq!(crowd.len(), 5, "{crowd:?}");

    let stats = runner.shutdown().await;
    assert_eq!(stats.refused, 0, "a worker pod overcommitted a node's GPUs");
    operator.child.terminate(Duration::from_secs(10));
    let nodes_api: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    for name in nodes.keys() {
        let _ = nodes_api.delete(name, &DeleteParams::default()).await;
        let _ = devices.delete(name, &DeleteParams::default()).await;
    }
    let _ = devices
        .delete(&agent_device, &DeleteParams::default())
        .await;
    for name in crowd {
        let _ = devices.delete(&name, &DeleteParams::default()).await;
    }
}
