//! Tasks end to end, on the real control plane: the operator places a ComputeTask's
//! fragments on 200 simulated GPU nodes as worker Pods, the pod runner starts the real
//! `zop-worker pod` for each, the workers pull their assignments and report results
//! through the gateway, and the task completes. Also: a task no device can run fails
//! with the reason; cancelling cleans up; a node deleted mid-task has its fragments
//! reassigned; two namespaces progress side by side.
//!
//! One operator and one pod runner serve the whole story, so it is one test.

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use zop_e2e::nodes::{Mix, create_extra_nodes, wait_devices_online};
use zop_e2e::operator::{Operator, group_key, sample, spawn_agent};
use zop_e2e::pod_runner::{PodRunner, RunnerOptions};
use zop_e2e::{Env, delete_all_tasks, free_port, install_crds, wait_for};
use zop_operator::api::{ComputeTask, Device, DevicePhase, TaskPhase};

const TEST: &str = "tasks";
const NODES: usize = 200;
const H100: &str = "NVIDIA-H100-80GB-HBM3";
const RTX4090: &str = "NVIDIA-GeForce-RTX-4090";

fn task(name: &str, dimension: u32, products: u64, count: u32, models: &[&str]) -> ComputeTask {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "zoptoken.io/v1alpha1", "kind": "ComputeTask",
        "metadata": { "name": name },
        "spec": {
            "type": "compute-proof",
            "computeProof": { "dimension": dimension, "products": products, "seed": 7 },
            "fragments": { "count": count },
            "requirements": { "deviceClass": "gpu", "gpuModels": models, "minVramMiB": 20000 },
        },
    }))
    .unwrap()
}

async fn submit(client: &Client, ns: &str, t: &ComputeTask) -> ComputeTask {
    Api::<ComputeTask>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), t)
        .await
        .expect("creating a task")
}

async fn get(client: &Client, ns: &str, name: &str) -> ComputeTask {
    Api::<ComputeTask>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .expect("reading a task")
}

fn phase(t: &ComputeTask) -> TaskPhase {
    t.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

async fn wait_phase(
    client: &Client,
    ns: &str,
    name: &str,
    want: TaskPhase,
    secs: u64,
) -> ComputeTask {
    wait_for(
        &format!("task {ns}/{name} {want:?}"),
        Duration::from_secs(secs),
        Duration::from_millis(300),
        || async {
            let t = get(client, ns, name).await;
            let p = phase(&t);
            assert!(
                p == want || !p.is_terminal(),
                "task {ns}/{name} ended {p:?} instead of {want:?}: {:?}",
                t.status
            );
            (p == want).then_some(t)
        },
    )
    .await
}

/// The worker Pods of task `uid`: in the operator's namespace `ns`, out of tenants' reach.
async fn pods_of(client: &Client, ns: &str, uid: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("zoptoken.io/task-uid={uid}")))
        .await
        .unwrap()
        .items
}

#[tokio::test]
async fn tasks_place_run_complete_fail_cancel_and_reassign() {
    let Some(env) = Env::from_env(TEST).await else {
        return;
    };
    let client = env.client.clone();
    install_crds(&client).await.expect("CRDs install");
    // One operator serves the whole cluster.
    delete_all_tasks(&client)
        .await
        .expect("deleting other tests' tasks");
    let op_ns = env.test_namespace("zop-tasks").await.unwrap();
    let team_a = env.test_namespace("team-a").await.unwrap();
    let team_b = env.test_namespace("team-b").await.unwrap();
    let labels = BTreeMap::from([
        ("zoptoken.io/onboard".to_string(), "true".to_string()),
        ("zoptoken.io/provider".to_string(), "dc-tasks".to_string()),
    ]);
    let mix: Mix = "h100=4,a100=3,l4=2,rtx4090=1".parse().unwrap();
    let products = create_extra_nodes(&client, "tsk", &mix, NODES, &labels)
        .await
        .expect("creating 200 labelled GPU nodes");

    let port = free_port();
    let url = format!("https://localhost:{port}");
    let flags = [
        "--worker-gateway-url",
        &url,
        "--no-device-timeout-seconds",
        "5",
        "--retry-base-seconds",
        "1",
    ];
    let mut operator = Operator::start_on(&env, TEST, &op_ns, port, &flags)
        .await
        .unwrap();
    wait_devices_online(&client, products.keys(), Duration::from_secs(30)).await;
    let runner = PodRunner::start(client.clone(), RunnerOptions::default());

    // Two namespaces at once: each task runs only on the models it asks for, spread
    // over many nodes, and both complete.
    let started = Instant::now();
    let a = submit(&client, &team_a, &task("proof-a", 64, 60, 30, &[H100])).await;
    let b = submit(
        &client,
        &team_b,
        &task("proof-b", 64, 40, 20, &[H100, RTX4090]),
    )
    .await;
    let done_a = wait_phase(&client, &team_a, "proof-a", TaskPhase::Completed, 180).await;
    let done_b = wait_phase(&client, &team_b, "proof-b", TaskPhase::Completed, 180).await;
    eprintln!(
        "FIGURE tasks: two tasks (50 fragments, 50 worker pods) completed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    for (done, allowed, fragments) in [
        (&done_a, vec![H100], 30),
        (&done_b, vec![H100, RTX4090], 20),
    ] {
        let s = done.status.clone().unwrap();
        assert_eq!(s.fragments.completed, fragments);
        assert_eq!(s.fragments.total, fragments);
        // Every result answered its challenges: verified, none rejected.
        assert_eq!((s.fragments.verified, s.fragments.rejected), (fragments, 0));
        assert_eq!(s.result.as_ref().map(|r| r.digest.len()), Some(64));
        assert!(!s.contributions.is_empty());
        let pods = pods_of(&client, &op_ns, &done.uid().unwrap()).await;
        assert_eq!(
            pods.len() as u32,
            fragments,
            "one pod per single-fragment assignment"
        );
        let nodes: BTreeSet<String> = pods
            .iter()
            .filter_map(|p| p.spec.as_ref()?.node_name.clone())
            .collect();
        // Read every node's product: the cluster may hold onboarded nodes besides ours.
        let all_nodes = Api::<Node>::all(client.clone())
            .list(&ListParams::default())
            .await
            .unwrap();
        let product_of: BTreeMap<String, String> = all_nodes
            .items
            .iter()
            .map(|n| {
                let p = n.labels().get("nvidia.com/gpu.product").cloned();
                (n.name_any(), p.unwrap_or_default())
            })
            .collect();
        for n in &nodes {
            let p = product_of.get(n).map_or("(gone)", String::as_str);
            assert!(allowed.contains(&p), "a pod landed on {n} ({p})");
        }
        assert!(
            nodes.len() as u32 >= fragments / 2,
            "load not spread: {} nodes",
            nodes.len()
        );
        for p in &pods {
            let c = &p.spec.as_ref().unwrap().containers[0];
            let sc = c.security_context.clone().unwrap();
            assert_eq!(sc.read_only_root_filesystem, Some(true));
            assert_eq!(
                p.status.as_ref().unwrap().phase.as_deref(),
                Some("Succeeded")
            );
        }
    }
    assert_eq!(a.name_any(), "proof-a");
    assert_eq!(b.name_any(), "proof-b");
    // The same seed and work give the same result wherever it ran.
    let again = submit(&client, &team_b, &task("proof-a", 64, 60, 30, &[H100])).await;
    let again = wait_phase(
        &client,
        &team_b,
        &again.name_any(),
        TaskPhase::Completed,
        180,
    )
    .await;
    assert_eq!(
        again.status.unwrap().result,
        done_a.status.clone().unwrap().result,
        "a deterministic task gave two results"
    );

    // More fragments than the cluster has GPUs of the model: each node runs at most as
    // many worker Pods as it has GPUs (a real kubelet, like the pod runner, refuses one
    // more with OutOfnvidia.com/gpu), and the rest wait their turn.
    let gpus = products.values().filter(|p| p.as_str() == RTX4090).count() as u32;
    let crowd = submit(
        &client,
        &team_a,
        &task("crowd", 64, u64::from(3 * gpus), 3 * gpus, &[RTX4090]),
    )
    .await;
    let crowded = wait_phase(&client, &team_a, "crowd", TaskPhase::Completed, 240).await;
    assert_eq!(crowded.status.unwrap().fragments.completed, 3 * gpus);
    let refused: Vec<String> = pods_of(&client, &op_ns, &crowd.uid().unwrap())
        .await
        .into_iter()
        .filter(|p| {
            p.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("OutOfnvidia.com/gpu")
        })
        .map(|p| p.name_any())
        .collect();
    assert!(
        refused.is_empty(),
        "GPU pods refused by their node: {refused:?}"
    );
    assert_eq!(runner.stats().refused, 0);

    // No device can run it: Failed, with the reason.
    submit(
        &client,
        &team_a,
        &task("nowhere", 64, 4, 2, &["NVIDIA-B200"]),
    )
    .await;
    let failed = wait_phase(&client, &team_a, "nowhere", TaskPhase::Failed, 60).await;
    let ready = failed
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "NoEligibleDevice");
    assert!(ready.message.contains("gpuModels"), "{}", ready.message);

    // Cancelling stops the task and removes its pods.
    let slow = submit(&client, &team_a, &task("cancel-me", 1024, 800, 8, &[H100])).await;
    wait_for(
        "the slow task's pods",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            (!pods_of(&client, &op_ns, &slow.uid().unwrap())
                .await
                .is_empty())
            .then_some(())
        },
    )
    .await;
    Api::<ComputeTask>::namespaced(client.clone(), &team_a)
        .patch(
            "cancel-me",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "spec": { "cancel": true } })),
        )
        .await
        .unwrap();
    wait_phase(&client, &team_a, "cancel-me", TaskPhase::Cancelled, 60).await;
    wait_for(
        "the cancelled task's pods to go",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            let left = pods_of(&client, &op_ns, &slow.uid().unwrap()).await;
            left.iter()
                .all(|p| {
                    p.metadata.deletion_timestamp.is_some()
                        || matches!(
                            p.status.as_ref().and_then(|s| s.phase.as_deref()),
                            Some("Succeeded" | "Failed")
                        )
                })
                .then_some(())
        },
    )
    .await;

    // A node deleted mid-task: its fragment is reassigned, and the task completes. Each
    // fragment is 30 products of 1024² (seconds of CPU, ten of them sharing two cores),
    // so the node goes well before its fragment can finish.
    let moved = submit(
        &client,
        &team_b,
        &task("survivor", 1024, 300, 10, &[RTX4090]),
    )
    .await;
    let uid = moved.uid().unwrap();
    let victim = wait_for(
        "a running survivor pod",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            pods_of(&client, &op_ns, &uid)
                .await
                .into_iter()
                .find_map(|p| p.spec?.node_name)
        },
    )
    .await;
    Api::<Node>::all(client.clone())
        .delete(&victim, &DeleteParams::default())
        .await
        .unwrap();
    let survived = wait_phase(&client, &team_b, "survivor", TaskPhase::Completed, 240).await;
    assert_eq!(survived.status.unwrap().fragments.completed, 10);
    let attempts: Vec<String> = Api::<ConfigMap>::namespaced(client.clone(), &op_ns)
        .list(&ListParams::default().labels(&format!("zoptoken.io/task-uid={uid}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|cm| cm.name_any())
        .collect();
    assert!(
        attempts.iter().any(|n| !n.ends_with("-0")),
        "no fragment of the deleted node was reassigned: {attempts:?}"
    );

    // An operator restart in the middle of a task resumes it: nothing lost, nothing
    // counted twice.
    let resumed = submit(
        &client,
        &team_a,
        &task("resume-me", 1024, 40, 10, &[RTX4090]),
    )
    .await;
    wait_for(
        "resume-me to start running",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let t = get(&client, &team_a, "resume-me").await;
            t.status
                .filter(|s| s.fragments.running > 0 || s.fragments.completed > 0)
                .map(drop)
        },
    )
    .await;
    operator.child.terminate(Duration::from_secs(10));
    let operator = Operator::start_on(&env, TEST, &op_ns, port, &flags)
        .await
        .unwrap();
    let resumed = wait_phase(
        &client,
        &team_a,
        &resumed.name_any(),
        TaskPhase::Completed,
        240,
    )
    .await;
    let s = resumed.status.unwrap();
    assert_eq!((s.fragments.completed, s.fragments.total), (10, 10));
    let counted: u64 = s.contributions.iter().map(|c| c.fragments).sum();
    assert_eq!(
        counted, 10,
        "a fragment was counted twice across the restart"
    );

    // An agent (the real `zop-worker agent`, joined with a Group Key) pulls its
    // assignment from the gateway and executes a compute-proof task on this machine's CPU.
    let key = group_key(
        &env,
        &op_ns,
        &["create", "tasks-key", "--provider", "carol"],
    );
    let dir = std::env::temp_dir().join(format!("zop-tasks-agent-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = operator.write_ca(&dir).unwrap();
    let metrics_port = free_port();
    let mut agent = spawn_agent(
        TEST,
        &operator.gateway,
        &ca,
        key.trim(),
        &dir.join("state"),
        "cpu-box",
        Some(metrics_port),
    )
    .unwrap();
    // Submitted before the agent is Online, the task could rightly fail for want of a
    // CPU device (the operator runs with a 5 s no-device timeout).
    wait_for(
        "the agent's Device Online",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            Api::<Device>::all(client.clone())
                .get_opt("agent-carol-cpu-box")
                .await
                .ok()
                .flatten()?
                .status
                .filter(|s| s.phase == DevicePhase::Online)
                .map(drop)
        },
    )
    .await;
    let on_cpu: ComputeTask = serde_json::from_value(serde_json::json!({
        "apiVersion": "zoptoken.io/v1alpha1", "kind": "ComputeTask",
        "metadata": { "name": "on-agent" },
        "spec": {
            "type": "compute-proof",
            "computeProof": { "dimension": 128, "products": 8, "seed": 3 },
            "fragments": { "count": 4 },
            "requirements": { "deviceClass": "cpu" },
        },
    }))
    .unwrap();
    submit(&client, &team_a, &on_cpu).await;
    let ran = wait_phase(&client, &team_a, "on-agent", TaskPhase::Completed, 180).await;
    let rows = ran.status.unwrap().contributions;
    assert!(
        rows.iter()
            .any(|r| r.device == "agent-carol-cpu-box" && r.fragments > 0),
        "the agent did not execute the task: {rows:?}"
    );
    // Its own metrics endpoint counts what it executed.
    let executed: u64 = rows
        .iter()
        .filter(|r| r.device == "agent-carol-cpu-box")
        .map(|r| r.fragments)
        .sum();
    let text = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let completed = ["cpu", "gpu"]
        .iter()
        .filter_map(|d| {
            sample(
                &text,
                "zop_worker_fragments_total",
                &[
                    ("kind", "computeProof"),
                    ("device", d),
                    ("outcome", "completed"),
                ],
            )
        })
        .sum::<f64>();
    assert!(
        completed >= executed as f64,
        "the agent's metrics count {completed} fragments, the task {executed}:\n{text}"
    );
    assert!(
        sample(
            &text,
            "zop_worker_work_units_total",
            &[("kind", "computeProof")]
        )
        .is_some()
    );
    assert!(sample(&text, "zop_worker_kernel_ops_per_second", &[]).is_some());
    agent.terminate(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);

    // Deleting a task removes its assignments (the finalizer).
    Api::<ComputeTask>::namespaced(client.clone(), &team_b)
        .delete("survivor", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        "the deleted task's assignments to go",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || async {
            Api::<ConfigMap>::namespaced(client.clone(), &op_ns)
                .list(&ListParams::default().labels(&format!("zoptoken.io/task-uid={uid}")))
                .await
                .ok()
                .filter(|l| l.items.is_empty())
                .map(drop)
        },
    )
    .await;
    let metrics = operator.scrape().await.unwrap();
    assert!(sample(&metrics, "zop_scheduling_cycle_duration_seconds_count", &[]).is_some());
    assert!(sample(&metrics, "zop_gateway_results_total", &[]).is_some());

    let stats = runner.shutdown().await;
    assert_eq!(stats.refused, 0, "a node was given more GPU pods than GPUs");
    eprintln!(
        "FIGURE tasks: pod runner started {} worker processes",
        stats.started
    );
    let nodes: Api<Node> = Api::all(client.clone());
    let devices: Api<Device> = Api::all(client.clone());
    for name in products.keys() {
        let _ = nodes.delete(name, &DeleteParams::default()).await;
        let _ = devices.delete(name, &DeleteParams::default()).await;
    }
    let _ = devices
        .delete("agent-carol-cpu-box", &DeleteParams::default())
        .await;
}
