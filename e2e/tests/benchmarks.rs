//! Node benchmarks end to end, on the real control plane: the operator starts a
//! benchmark Pod on each newly onboarded Node; the pod runner runs the real
//! `zop-worker benchmark` in it, which reports through the gateway with the Pod's bound
//! token. A CPU Node gets its measured score. A simulated Node whose labels claim an
//! H100 measures its host's CPU, so it is Quarantined with an Event giving both figures,
//! which is exactly what a data center's mislabelled Node would get. A driver change on
//! the Node starts another benchmark. Tampered nodes, which run a liar in place of the
//! worker with the Pod's real token, are quarantined for what they claim. Requests that
//! are not a benchmark Pod's are refused.

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use zop_e2e::nodes::{Mix, create_extra_nodes};
use zop_e2e::operator::{Operator, sample};
use zop_e2e::pod_runner::{PodRunner, RunnerOptions};
use zop_e2e::{Env, free_port, install_crds, wait_for};
use zop_operator::api::{Device, DevicePhase};

const TEST: &str = "benchmarks";
const PROVIDER: &str = "dc-bench";
/// The tampered nodes (`create_extra_nodes` names them after their prefix and model).
const LIAR_GPU: &str = "liar-gpu-h100-0001";
const LIAR_CPU: &str = "liar-cpu-0001";

async fn device(client: &Client, name: &str) -> Option<Device> {
    Api::<Device>::all(client.clone())
        .get_opt(name)
        .await
        .ok()?
}

/// The notes of the Events about `device` (this one: an earlier Device of the same name
/// had other Events) with `reason`.
async fn events(client: &Client, device: &str, reason: &str) -> Vec<String> {
    let uid = Api::<Device>::all(client.clone())
        .get(device)
        .await
        .expect("reading the device")
        .uid();
    let list = Api::<Event>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("listing events");
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.uid.clone()) == uid)
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.note)
        .collect()
}

/// Waits until Device `name`'s status satisfies `ready` (`what` names that in a timeout).
async fn wait_device(
    client: &Client,
    name: &str,
    what: &str,
    ready: impl Fn(&zop_operator::api::DeviceStatus) -> bool,
) -> Device {
    wait_for(
        &format!("device {name} {what}"),
        Duration::from_secs(90),
        Duration::from_millis(300),
        || async {
            device(client, name)
                .await
                .filter(|d| d.status.as_ref().is_some_and(&ready))
        },
    )
    .await
}

fn is_quarantined(s: &zop_operator::api::DeviceStatus) -> bool {
    s.phase == DevicePhase::Quarantined
}

fn condition<'a>(
    d: &'a Device,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    d.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

#[tokio::test]
async fn nodes_are_measured_by_benchmark_pods_and_implausible_ones_quarantined() {
    let Some(env) = Env::from_env(TEST).await else {
        return;
    };
    let client = env.client.clone();
    install_crds(&client).await.expect("CRDs install");
    let ns = env.test_namespace("zop-bench").await.unwrap();
    let port = free_port();
    let url = format!("https://localhost:{port}");
    // Only this test's provider is measured: other tests' Nodes are not this test's to
    // quarantine.
    let flags = [
        "--worker-gateway-url",
        &url,
        "--node-benchmark-interval-seconds=3600",
        "--node-benchmark-retry-seconds=3",
        &format!("--node-benchmark-providers={PROVIDER}"),
    ];
    let operator = Operator::start_on(&env, TEST, &ns, port, &flags)
        .await
        .unwrap();
    // Two tampered nodes run a liar in place of `zop-worker benchmark`, with the Pod's
    // real token: an H100-labelled node whose run claims an L4's figures, and a CPU node
    // claiming more than any GPU reaches.
    let liar = zop_e2e::bin_path("zop-bench-liar");
    let mut opts = RunnerOptions {
        namespace: Some(ns.clone()),
        tampered: BTreeMap::from([(LIAR_GPU.into(), liar.clone()), (LIAR_CPU.into(), liar)]),
        ..RunnerOptions::default()
    };
    let lies = format!("{LIAR_GPU}=150000:NVIDIA L4,{LIAR_CPU}=5000000");
    opts.override_env.insert("ZOP_LIES".into(), lies);
    let runner = PodRunner::start(client.clone(), opts);
    let labels = BTreeMap::from([
        ("zoptoken.io/onboard".to_string(), "true".to_string()),
        ("zoptoken.io/provider".to_string(), PROVIDER.to_string()),
    ]);
    let started = Instant::now();
    let mix: Mix = "h100=1,cpu=1".parse().unwrap();
    let nodes = create_extra_nodes(&client, "bench", &mix, 2, &labels)
        .await
        .expect("creating labelled nodes");
    let name_of = |product: &str| {
        nodes
            .iter()
            .find(|(_, p)| (product == "-") == (p.as_str() == "-"))
            .map(|(n, _)| n.clone())
            .unwrap()
    };
    let (cpu, h100) = (name_of("-"), name_of("H100"));
    let liars = create_extra_nodes(&client, "liar", &mix, 2, &labels)
        .await
        .expect("creating the tampered nodes");
    assert!(
        liars.contains_key(LIAR_GPU) && liars.contains_key(LIAR_CPU),
        "{liars:?}"
    );

    // The CPU Node: measured, plausible, Online.
    let measured = wait_device(&client, &cpu, "measured", |s| {
        s.benchmark
            .as_ref()
            .is_some_and(|b| b.measured_at.is_some() && b.score > 0)
    })
    .await;
    let cpu_seconds = started.elapsed().as_secs_f64();
    let status = measured.status.clone().unwrap();
    let score = status.benchmark.as_ref().unwrap().score;
    assert_eq!(status.phase, DevicePhase::Online);
    let plausible = condition(&measured, "HardwarePlausible").expect("a plausibility condition");
    assert_eq!(plausible.status, "True", "{plausible:?}");
    assert!(
        !events(&client, &cpu, "BenchmarkStarted").await.is_empty(),
        "no BenchmarkStarted event"
    );

    // The H100 Node measured a CPU: Quarantined, and the Event gives both figures.
    let quarantined = wait_device(&client, &h100, "quarantined", is_quarantined).await;
    let h100_seconds = started.elapsed().as_secs_f64();
    let claimed_score = quarantined
        .status
        .as_ref()
        .unwrap()
        .benchmark
        .as_ref()
        .unwrap()
        .score;
    let why = condition(&quarantined, "HardwarePlausible")
        .unwrap()
        .clone();
    assert_eq!(
        (why.status.as_str(), why.reason.as_str()),
        ("False", "BenchmarkTooLow")
    );
    let notes = wait_for(
        "the quarantine event",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || async {
            let n = events(&client, &h100, "Quarantined").await;
            (!n.is_empty()).then_some(n)
        },
    )
    .await;
    let note = &notes[0];
    assert!(
        note.contains(&format!("measured {claimed_score} GOP/s")) && note.contains("1979000"),
        "the event lacks a figure: {note}"
    );

    // The tampered nodes' lies are caught, with both figures.
    for (node, reason, figures) in [
        (LIAR_GPU, "ModelMismatch", ["150000", "NVIDIA L4"]),
        (LIAR_CPU, "BenchmarkTooHigh", ["5000000", "1979000"]),
    ] {
        let caught = wait_device(&client, node, "quarantined", is_quarantined).await;
        let why = condition(&caught, "HardwarePlausible").unwrap();
        assert_eq!(why.reason, reason, "{why:?}");
        assert!(
            figures.iter().all(|f| why.message.contains(f)),
            "{}",
            why.message
        );
        eprintln!(
            "FIGURE benchmarks: tampered node {node}: {reason}: {}",
            why.message
        );
    }

    // The gateway counted every verdict.
    let exposition = operator.scrape().await.unwrap();
    for reason in [
        "Plausible",
        "BenchmarkTooLow",
        "ModelMismatch",
        "BenchmarkTooHigh",
    ] {
        let n = sample(
            &exposition,
            "zop_gateway_node_benchmarks_total",
            &[("reason", reason)],
        );
        assert!(n.is_some_and(|n| n >= 1.0), "{reason}: {n:?}");
    }

    // Finished benchmark Pods are removed.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    wait_for(
        "the benchmark pods removed",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            let list = pods
                .list(&ListParams::default().labels("app.kubernetes.io/name=zop-benchmark"))
                .await
                .ok()?;
            list.items.is_empty().then_some(())
        },
    )
    .await;

    // A new driver on the H100 Node: measured again.
    let before = events(&client, &h100, "BenchmarkStarted").await.len();
    let patch = serde_json::json!({"metadata": {"labels": {"nvidia.com/cuda.driver-version.full": "580.95.05"}}});
    Api::<Node>::all(client.clone())
        .patch(&h100, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("changing the driver label");
    let again = wait_for(
        "a benchmark after the driver change",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            let n = events(&client, &h100, "BenchmarkStarted").await;
            (n.len() > before).then_some(n)
        },
    )
    .await;
    assert!(
        again.iter().any(|n| n.contains("DriverChanged")),
        "{again:?}"
    );

    // Only a benchmark Pod may report: no token, and bad input first, are refused.
    let https = operator.https_client().unwrap();
    let endpoint = format!("{url}/v1/benchmark");
    let body = serde_json::json!({"benchmark": {"score": 10, "fingerprint": "v1:1,2"}});
    let anonymous = https.post(&endpoint).json(&body).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let bad = serde_json::json!({"benchmark": {"score": 10, "fingerprint": "zzz"}});
    let refused = https.post(&endpoint).json(&bad).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("benchmark.fingerprint")
    );

    eprintln!(
        "FIGURE benchmarks: CPU node measured {score} GOP/s, {cpu_seconds:.1} s after its Node was created; H100-labelled node quarantined after {h100_seconds:.1} s: {note}"
    );
    runner.shutdown().await;
    drop(operator);
    // Its Nodes and Devices go, so no later test's operator sees them.
    let node_api: Api<Node> = Api::all(client.clone());
    let device_api: Api<Device> = Api::all(client.clone());
    for name in nodes.keys().chain(liars.keys()) {
        let _ = node_api.delete(name, &DeleteParams::default()).await;
        let _ = device_api.delete(name, &DeleteParams::default()).await;
    }
    let left = pods.list(&ListParams::default()).await.unwrap();
    for p in left.items {
        let _ = pods.delete(&p.name_any(), &DeleteParams::default()).await;
    }
}
