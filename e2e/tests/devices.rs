//! Devices end to end, on the real control plane with the real binaries: labelled GPU
//! Nodes become identified Online Devices; `zop-worker agent` processes join through the
//! gateway with a Group Key made by `kubectl zop group-key`; bad keys create nothing;
//! stopped agents go Offline and come back without duplicates; an operator restart
//! keeps every device's state; worker pods' projected tokens are checked by TokenReview.
//!
//! One operator watches every Node of the cluster, so the whole story is one test.

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Node, Secret, ServiceAccount};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use zop_e2e::nodes::{Mix, create_extra_nodes};
use zop_e2e::operator::{Operator, group_key, sample, spawn_agent};
use zop_e2e::{Env, delete_all_tasks, install_crds, wait_for};
use zop_operator::api::{Device, DeviceClass, DevicePhase};

const TEST: &str = "devices";
const PROVIDER: &str = "dc-e2e";
const NODES: usize = 200;
const GRACE_SECONDS: u64 = 10;
const AGENTS: usize = 3;

fn phase(d: &Device) -> Option<DevicePhase> {
    d.status.as_ref().map(|s| s.phase)
}

async fn devices(client: &Client) -> Vec<Device> {
    Api::<Device>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("listing devices")
        .items
}

async fn device(client: &Client, name: &str) -> Option<Device> {
    Api::<Device>::all(client.clone())
        .get_opt(name)
        .await
        .expect("reading a device")
}

/// 200 GPU nodes (no CPU-only ones), named `dev-…`, Ready, not yet labelled.
async fn create_gpu_nodes(client: &Client) -> BTreeMap<String, String> {
    let mix: Mix = "h100=4,a100=3,l4=2,rtx4090=1".parse().unwrap();
    create_extra_nodes(client, "dev", &mix, NODES, &BTreeMap::new())
        .await
        .expect("creating 200 GPU nodes")
}

async fn label_nodes(client: &Client, names: impl Iterator<Item = String>, onboard: bool) {
    let api: Api<Node> = Api::all(client.clone());
    let patch = if onboard {
        serde_json::json!({"metadata": {"labels": {"zoptoken.io/onboard": "true"}}})
    } else {
        serde_json::json!({"metadata": {"labels": {"zoptoken.io/onboard": null}}})
    };
    stream::iter(names)
        .map(|name| {
            let (api, patch) = (api.clone(), patch.clone());
            async move {
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .expect("labelling nodes");
}

async fn wait_phase(client: &Client, name: &str, want: DevicePhase, timeout: Duration) -> Device {
    wait_for(
        &format!("device {name} {want:?}"),
        timeout,
        Duration::from_millis(250),
        || async {
            device(client, name)
                .await
                .filter(|d| phase(d) == Some(want))
        },
    )
    .await
}

#[tokio::test]
async fn devices_onboard_join_heartbeat_and_survive_restarts() {
    let Some(env) = Env::from_env(TEST).await else {
        return;
    };
    let client = env.client.clone();
    install_crds(&client).await.expect("CRDs install");
    // Its operator serves the whole cluster: another test's task would run on these
    // agents and move their reputation, which the restart check holds still.
    delete_all_tasks(&client)
        .await
        .expect("deleting other tests' tasks");
    let ns = env.test_namespace("zop-devices").await.unwrap();
    let products = create_gpu_nodes(&client).await;

    let grace = GRACE_SECONDS.to_string();
    let flags = [
        "--default-provider",
        PROVIDER,
        "--heartbeat-grace-seconds",
        &grace,
        "--heartbeat-seconds",
        "2",
    ];
    let mut operator = Operator::start(&env, TEST, &ns, &flags).await.unwrap();

    // Labelled GPU nodes become Online Devices, identified from their GFD labels.
    let start = Instant::now();
    label_nodes(&client, products.keys().cloned(), true).await;
    wait_for(
        "200 labelled GPU nodes Online and identified",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || async {
            let online = devices(&client)
                .await
                .into_iter()
                .filter(|d| products.contains_key(&d.name_any()))
                .filter(|d| phase(d) == Some(DevicePhase::Online))
                .filter(|d| {
                    let id = d.status.as_ref().and_then(|s| s.identification.as_ref());
                    id.and_then(|i| i.gpus.first())
                        .is_some_and(|g| g.model == products[&d.name_any()] && g.vram_mib > 0)
                })
                .filter(|d| d.spec.provider == PROVIDER && d.spec.class == DeviceClass::Gpu)
                .count();
            (online == NODES).then_some(())
        },
    )
    .await;
    eprintln!(
        "FIGURE devices: {NODES} labelled GPU nodes Online and identified in {:.2}s",
        start.elapsed().as_secs_f64()
    );

    // Group Keys through the plugin; the plaintext is printed once and stored hashed.
    let key = group_key(
        &env,
        &ns,
        &["create", "e2e-good", "--provider", "acme", "--quota", "5"],
    );
    let key = key.trim().to_string();
    assert!(key.starts_with("zgk_"), "unexpected key output {key:?}");
    let stored: Secret = Api::namespaced(client.clone(), &ns)
        .get("e2e-good")
        .await
        .unwrap();
    let stored_text = serde_json::to_string(&stored.data).unwrap();
    assert!(
        !stored_text.contains(&key[4..]),
        "the key is stored in plaintext"
    );
    let revoked = group_key(&env, &ns, &["create", "e2e-revoked", "--provider", "acme"]);
    group_key(&env, &ns, &["revoke", "e2e-revoked"]);
    let expired = group_key(
        &env,
        &ns,
        &[
            "create",
            "e2e-expired",
            "--provider",
            "acme",
            "--expires-in-hours",
            "0",
        ],
    );
    let listing = group_key(&env, &ns, &["list"]);
    assert!(listing.contains("e2e-revoked") && listing.contains("revoked"));

    // Three agents join and appear Online with their CPU identification.
    let dir = tempdir();
    let ca = operator.write_ca(&dir).unwrap();
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        let host = format!("e2e-agent-{i}");
        agents.push(
            spawn_agent(
                TEST,
                &operator.gateway,
                &ca,
                &key,
                &dir.join(&host),
                &host,
                None,
            )
            .unwrap(),
        );
    }
    let names: Vec<String> = (0..AGENTS)
        .map(|i| format!("agent-acme-e2e-agent-{i}"))
        .collect();
    for name in &names {
        let d = wait_phase(&client, name, DevicePhase::Online, Duration::from_secs(60)).await;
        let id = d.status.as_ref().unwrap().identification.clone().unwrap();
        assert_eq!(d.spec.class, DeviceClass::Cpu, "{name}");
        assert_eq!(d.spec.provider, "acme");
        assert!(id.cpu_cores > 0 && id.memory_mib > 0, "{name}: {id:?}");
        assert_eq!(id.os, "linux");
        assert!(id.gpus.is_empty());
        let bench = d.status.as_ref().unwrap().benchmark.clone().unwrap();
        assert!(
            bench.score > 0 && bench.fingerprint.starts_with("v1:"),
            "{bench:?}"
        );
    }

    // A wrong, a revoked and an expired key: refused, the agent exits non-zero, and
    // nothing is created.
    let before = devices(&client).await.len();
    let wrong = format!("zgk_{}", "0".repeat(64));
    for (bad, reason) in [
        (wrong.as_str(), "InvalidGroupKey"),
        (revoked.trim(), "KeyRevoked"),
        (expired.trim(), "KeyExpired"),
    ] {
        let host = format!("e2e-bad-{}", reason.to_lowercase());
        let mut agent = spawn_agent(
            TEST,
            &operator.gateway,
            &ca,
            bad,
            &dir.join(&host),
            &host,
            None,
        )
        .unwrap();
        let status = wait_for(
            &format!("the agent with a {reason} key to exit"),
            Duration::from_secs(30),
            Duration::from_millis(200),
            || std::future::ready(agent.exited()),
        )
        .await;
        assert!(!status.success(), "an agent with a {reason} key exited 0");
        let log = std::fs::read_to_string(
            zop_e2e::operator::log_dir(TEST).join(format!("agent-{host}.log")),
        )
        .unwrap();
        assert!(log.contains(reason), "{host} log lacks {reason}: {log}");
        assert!(
            device(&client, &format!("agent-acme-{host}"))
                .await
                .is_none()
        );
        assert!(!dir.join(&host).join("agent.json").exists());
    }
    assert_eq!(
        devices(&client).await.len(),
        before,
        "a refused key created a device"
    );
    let metrics = operator.scrape().await.unwrap();
    for reason in ["InvalidGroupKey", "KeyRevoked", "KeyExpired"] {
        assert!(
            sample(
                &metrics,
                "zop_gateway_registrations_total",
                &[("result", "rejected"), ("reason", reason)]
            ) >= Some(1.0),
            "no rejected/{reason} registration counted:\n{metrics}"
        );
    }
    assert!(
        sample(
            &metrics,
            "zop_devices",
            &[("phase", "Online"), ("class", "gpu")]
        ) >= Some(200.0)
    );

    // Stopping an agent turns its Device Offline within the grace period (plus one
    // reconcile); restarting it brings the same Device back.
    agents[0].terminate(Duration::from_secs(5));
    let stopped = Instant::now();
    wait_phase(
        &client,
        &names[0],
        DevicePhase::Offline,
        Duration::from_secs(GRACE_SECONDS + 5),
    )
    .await;
    eprintln!(
        "FIGURE devices: stopped agent Offline after {:.1}s (grace {GRACE_SECONDS}s)",
        stopped.elapsed().as_secs_f64()
    );
    agents[0] = spawn_agent(
        TEST,
        &operator.gateway,
        &ca,
        &key,
        &dir.join("e2e-agent-0"),
        "e2e-agent-0",
        None,
    )
    .unwrap();
    wait_phase(
        &client,
        &names[0],
        DevicePhase::Online,
        Duration::from_secs(30),
    )
    .await;
    let same_host = devices(&client)
        .await
        .into_iter()
        .filter(|d| {
            d.spec
                .source
                .agent
                .as_ref()
                .is_some_and(|a| a.hostname == "e2e-agent-0")
        })
        .count();
    assert_eq!(same_host, 1, "a restarted agent duplicated its Device");

    // An operator restart loses no device state: phases, identification, benchmarks and
    // online accounting survive, and agents keep heartbeating to the same address.
    let snapshot: BTreeMap<String, Device> = devices(&client)
        .await
        .into_iter()
        .map(|d| (d.name_any(), d))
        .collect();
    let port = operator.gateway_port();
    operator.child.terminate(Duration::from_secs(10));
    operator = Operator::start_on(&env, TEST, &ns, port, &flags)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2 * 2 + 1)).await;
    let after: BTreeMap<String, Device> = devices(&client)
        .await
        .into_iter()
        .map(|d| (d.name_any(), d))
        .collect();
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        snapshot.keys().collect::<Vec<_>>()
    );
    for (name, before) in &snapshot {
        let (b, a) = (
            before.status.as_ref().unwrap(),
            after[name].status.as_ref().unwrap(),
        );
        // An agent may miss heartbeats while the gateway is down and go Offline for a
        // moment (that is the heartbeat grace working); a Node's device may not.
        if before.spec.source.node.is_some() {
            assert_eq!(a.phase, b.phase, "{name} changed phase across the restart");
            assert_eq!(a.online_since, b.online_since, "{name}");
        }
        assert_eq!(a.identification, b.identification, "{name}");
        assert_eq!(a.benchmark, b.benchmark, "{name}");
        assert!(
            a.online_seconds >= b.online_seconds,
            "{name} lost online time"
        );
        assert_eq!(a.reputation, b.reputation, "{name}");
    }
    for name in &names {
        wait_phase(&client, name, DevicePhase::Online, Duration::from_secs(10)).await;
    }

    // A service-account token is honoured only when it is bound to a worker Pod the
    // operator created: a `zop-worker` token of the operator's namespace that is bound to
    // no Pod is refused, for the gateway's audience as for any other (the tenants test
    // plays the bound tokens).
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let sa: ServiceAccount =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "zop-worker"}})).unwrap();
    let _ = sas.create(&PostParams::default(), &sa).await;
    let https = operator.https_client().unwrap();
    for audience in ["zoptoken-gateway", "some-other-service"] {
        let req = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(vec![audience.into()]),
                expiration_seconds: Some(600),
                ..Default::default()
            }),
            ..Default::default()
        };
        let token = sas
            .create_token_request("zop-worker", &PostParams::default(), &req)
            .await
            .unwrap()
            .status
            .and_then(|s| s.token)
            .expect("a token");
        let resp = https
            .get(format!("{}/v1/whoami", operator.gateway))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(status.as_u16(), 401, "{audience}: {body}");
        assert_eq!(body["reason"], "Unauthorized");
    }

    // Removing the onboarding label retires a Device; nothing is deleted.
    let first = products.keys().next().unwrap().clone();
    label_nodes(&client, std::iter::once(first.clone()), false).await;
    wait_phase(
        &client,
        &first,
        DevicePhase::Retired,
        Duration::from_secs(15),
    )
    .await;

    for mut a in agents {
        a.terminate(Duration::from_secs(5));
    }
    operator.child.terminate(Duration::from_secs(10));
    let nodes: Api<Node> = Api::all(client.clone());
    for name in products.keys() {
        let _ = nodes.delete(name, &DeleteParams::default()).await;
    }
    // Test hygiene (the operator itself never deletes a Device): later tests must not
    // see this test's devices as candidates.
    let devs: Api<Device> = Api::all(client.clone());
    for name in products.keys().chain(names.iter()) {
        let _ = devs.delete(name, &DeleteParams::default()).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir() -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/e2e-state")
        .join(format!("{TEST}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
