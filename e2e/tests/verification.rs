//! Verification against cheating workers, on the real control plane with real worker
//! processes. Six cheating agents (`zop-cheater`, a test-only binary) each run a
//! compute-proof task only they may take, and each cheats its own way: random outputs, a
//! result copied from another fragment, half the rows computed, an old result
//! resubmitted, a faster GPU claimed than it has (a faked benchmark, and sleeps), and
//! reports under another device's assignment. Meanwhile two honest agents, on a machine
//! loaded by the cheaters and by busy threads, execute 1,000 fragments.
//!
//! Every cheater is caught, earns nothing for its bad fragments, loses reputation with an
//! evidence Event, and ends Quarantined (or Retired); no honest device is penalized.

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, ResourceExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use zop_e2e::operator::{Operator, group_key, log_dir, spawn_agent};
use zop_e2e::pod_runner::{PodRunner, RunnerOptions};
use zop_e2e::{ChildGuard, Env, bin_path, delete_all_tasks, free_port, install_crds, wait_for};
use zop_operator::api::{ComputeTask, Device, DevicePhase, TaskPhase};

const TEST: &str = "verification";
const HONEST_FRAGMENTS: u32 = 1000;
/// The slow cheater's sleep: past the 10 s slack of the too-slow rule.
const SLEEP_MS: u64 = 11_000;

struct Cheat {
    mode: &'static str,
    model: &'static str,
    score: u64,
    /// Evidence reasons any of which its Events must carry.
    reasons: &'static [&'static str],
}

const CHEATS: &[Cheat] = &[
    Cheat {
        mode: "random",
        model: "ZopSim Cheat Random",
        score: 20,
        reasons: &["NotCommitted", "WrongRow"],
    },
    Cheat {
        mode: "copy",
        model: "ZopSim Cheat Copy",
        score: 20,
        reasons: &["WrongRow", "NotCommitted"],
    },
    Cheat {
        mode: "partial",
        model: "ZopSim Cheat Partial",
        score: 20,
        reasons: &["WrongRow"],
    },
    Cheat {
        mode: "replay",
        model: "ZopSim Cheat Replay",
        score: 20,
        reasons: &["WrongRow", "NotCommitted"],
    },
    // An H100's benchmark floor is 197,900; the claim clears it, the CPU does not.
    Cheat {
        mode: "slow",
        model: "NVIDIA H100 PCIe",
        score: 400_000,
        reasons: &["TooSlow"],
    },
    Cheat {
        mode: "foreign",
        model: "ZopSim Cheat Foreign",
        score: 20,
        reasons: &["ForeignAssignment"],
    },
];

fn task(
    name: &str,
    dimension: u32,
    products: u64,
    count: u32,
    requirements: serde_json::Value,
) -> ComputeTask {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "zoptoken.io/v1alpha1", "kind": "ComputeTask",
        "metadata": { "name": name },
        "spec": {
            "type": "compute-proof",
            "computeProof": { "dimension": dimension, "products": products, "seed": 11 },
            "fragments": { "count": count },
            "requirements": requirements,
        },
    }))
    .unwrap()
}

async fn device(client: &Client, name: &str) -> Option<Device> {
    Api::<Device>::all(client.clone())
        .get_opt(name)
        .await
        .ok()
        .flatten()
}

/// A suffix that keeps this run's Devices apart from an earlier run's.
fn run_id() -> String {
    format!("{:x}", std::process::id() & 0xfff)
}

fn cheater_device(c: &Cheat) -> String {
    format!("agent-vera-cheat-{}-{}", c.mode, run_id())
}

fn spawn_cheater(gateway: &str, ca: &Path, key: &str, c: &Cheat, victim: &Path) -> ChildGuard {
    let log = log_dir(TEST).join(format!("cheater-{}.log", c.mode));
    let out = std::fs::File::create(&log).unwrap();
    let mut cmd = std::process::Command::new(bin_path("zop-cheater"));
    cmd.args([
        "--gateway",
        gateway,
        "--hostname",
        &format!("cheat-{}-{}", c.mode, run_id()),
    ])
    .arg("--ca-cert")
    .arg(ca)
    .args(["--mode", c.mode, "--claim-model", c.model])
    .args(["--claim-score", &c.score.to_string()])
    .args(["--sleep-ms", &SLEEP_MS.to_string()])
    .arg("--victim-file")
    .arg(victim)
    .env("ZOP_GROUP_KEY", key)
    .stdout(out.try_clone().unwrap())
    .stderr(out);
    ChildGuard::spawn(&mut cmd).unwrap()
}

const OUT_OF_WORK: [DevicePhase; 2] = [DevicePhase::Quarantined, DevicePhase::Retired];

/// Waits up to `seconds` for Device `name` to be in one of `phases`.
async fn wait_device(client: &Client, name: &str, phases: &[DevicePhase], seconds: u64) -> Device {
    wait_for(
        &format!("{name} in {phases:?}"),
        Duration::from_secs(seconds),
        Duration::from_millis(300),
        || async {
            device(client, name)
                .await
                .filter(|d| d.status.as_ref().is_some_and(|s| phases.contains(&s.phase)))
        },
    )
    .await
}

/// Evidence Events about `device`, as `(reason, note)`.
async fn evidence(client: &Client, device: &str) -> Vec<(String, String)> {
    Api::<Event>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(device))
        .filter(|e| e.action.as_deref() == Some("Verify"))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn cheaters_are_caught_and_quarantined_and_honest_workers_never_penalized() {
    let Some(env) = Env::from_env(TEST).await else {
        return;
    };
    let client = env.client.clone();
    install_crds(&client).await.expect("CRDs install");
    delete_all_tasks(&client)
        .await
        .expect("deleting other tests' tasks");
    let op_ns = env.test_namespace("zop-verify").await.unwrap();
    let team = env.test_namespace("requester").await.unwrap();
    let port = free_port();
    let url = format!("https://localhost:{port}");
    // Two assignments per task: the honest task runs on both honest agents at once, and
    // every cheater gets several fragments in one assignment.
    let flags = [
        "--worker-gateway-url",
        &url,
        "--no-device-timeout-seconds",
        "5",
        "--retry-base-seconds",
        "1",
        "--max-assignments",
        "2",
        "--heartbeat-seconds",
        "2",
        "--gateway-rate",
        "100",
        "--gateway-burst",
        "200",
    ];
    let operator = Operator::start_on(&env, TEST, &op_ns, port, &flags)
        .await
        .unwrap();
    let runner = PodRunner::start(client.clone(), RunnerOptions::default());
    let key = group_key(
        &env,
        &op_ns,
        &["create", "verify-key", "--provider", "vera"],
    );
    let key = key.trim();
    let dir = std::env::temp_dir().join(format!("zop-verify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = operator.write_ca(&dir).unwrap();
    let victim = dir.join("victim");
    std::fs::write(&victim, "").unwrap();

    // Two honest providers, so honest results are replayed on each other's devices.
    let walt = group_key(&env, &op_ns, &["create", "walt-key", "--provider", "walt"]);
    let hosts = [
        (format!("honest-a-{}", run_id()), "vera", key.to_string()),
        (
            format!("honest-b-{}", run_id()),
            "walt",
            walt.trim().to_string(),
        ),
    ];
    let mut honest: Vec<ChildGuard> = hosts
        .iter()
        .map(|(h, _, k)| {
            spawn_agent(TEST, &operator.gateway, &ca, k, &dir.join(h), h, None).unwrap()
        })
        .collect();
    let mut cheaters: Vec<ChildGuard> = CHEATS
        .iter()
        .map(|c| spawn_cheater(&operator.gateway, &ca, key, c, &victim))
        .collect();
    let mut names: Vec<String> = hosts
        .iter()
        .map(|(h, p, _)| format!("agent-{p}-{h}"))
        .collect();
    for name in names
        .iter()
        .cloned()
        .chain(CHEATS.iter().map(cheater_device))
    {
        wait_device(&client, &name, &[DevicePhase::Online], 90).await;
    }

    // Load the machine: the honest fragments run slower than their benchmarks said.
    let busy = Arc::new(AtomicBool::new(true));
    let burners: Vec<_> = (0..2)
        .map(|_| {
            let busy = busy.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while busy.load(Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                }
                x
            })
        })
        .collect();

    let tasks: Api<ComputeTask> = Api::namespaced(client.clone(), &team);
    let pp = Default::default();
    let started = Instant::now();
    let honest_task = task(
        "honest",
        64,
        u64::from(HONEST_FRAGMENTS),
        HONEST_FRAGMENTS,
        serde_json::json!({ "deviceClass": "cpu", "runtime": "cpu" }),
    );
    tasks.create(&pp, &honest_task).await.unwrap();
    for c in CHEATS.iter().filter(|c| c.mode != "foreign") {
        let count = if c.mode == "slow" { 12 } else { 6 };
        let t = task(
            &format!("cheat-{}", c.mode),
            128,
            2 * count,
            count as u32,
            serde_json::json!({ "gpuModels": [c.model] }),
        );
        tasks.create(&pp, &t).await.unwrap();
    }
    // The foreign cheater reports on an honest agent's assignment once one is on record.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &op_ns);
    let target = wait_for(
        "an honest assignment record",
        Duration::from_secs(120),
        Duration::from_millis(300),
        || async {
            cms.list(&ListParams::default().labels("zoptoken.io/assignment=true"))
                .await
                .ok()?
                .items
                .into_iter()
                .map(|cm| cm.name_any())
                .next()
        },
    )
    .await;
    std::fs::write(&victim, &target).unwrap();

    // Every cheater ends out of work, with the evidence.
    for c in CHEATS {
        let name = cheater_device(c);
        let d = wait_device(&client, &name, &OUT_OF_WORK, 300).await;
        let s = d.status.unwrap();
        let r = &s.reputation;
        eprintln!(
            "FIGURE verification: cheater {} ended {:?}: reputation {}, {} failed verifications, {} abnormal timings",
            c.mode, s.phase, r.score, r.verification_failures, r.abnormal_timings
        );
        assert!(
            r.score < 300,
            "{}: reputation {} is not below the quarantine line",
            c.mode,
            r.score
        );
        if c.mode == "slow" {
            assert!(r.abnormal_timings >= 5, "{r:?}");
        } else {
            assert!(r.verification_failures >= 1, "{}: {r:?}", c.mode);
        }
        let events = wait_for(
            &format!("{name}'s evidence"),
            Duration::from_secs(30),
            Duration::from_millis(500),
            || {
                let client = client.clone();
                let name = name.clone();
                async move {
                    let ev = evidence(&client, &name).await;
                    ev.iter()
                        .any(|(reason, _)| c.reasons.contains(&reason.as_str()))
                        .then_some(ev)
                }
            },
        )
        .await;
        let (reason, note) = events
            .iter()
            .find(|(r, _)| c.reasons.contains(&r.as_str()))
            .unwrap();
        eprintln!(
            "FIGURE verification: evidence for {}: {reason}: {note}",
            c.mode
        );
        assert!(
            note.contains("expected") && note.contains("fragment"),
            "{note}"
        );
    }
    // Their tasks paid them nothing for a bad fragment: what a cheater was paid is at
    // most what it computed honestly (the replayer's first result, the slow one's work).
    for c in CHEATS.iter().filter(|c| c.mode != "foreign") {
        let t = tasks.get(&format!("cheat-{}", c.mode)).await.unwrap();
        let s = t.status.unwrap_or_default();
        let row = s
            .contributions
            .iter()
            .find(|r| r.device == cheater_device(c));
        let paid = row.map_or(0, |r| r.fragments);
        let rejected = row.map_or(0, |r| r.rejected);
        eprintln!(
            "FIGURE verification: task cheat-{}: {:?}, {} verified, {} rejected; the cheater was paid for {paid} fragments",
            c.mode, s.phase, s.fragments.verified, s.fragments.rejected
        );
        match c.mode {
            "replay" => assert!(paid <= 1 && rejected >= 1, "{row:?}"),
            "slow" => assert_eq!(rejected, 0, "its results were true, only slow"),
            _ => assert!(paid == 0 && rejected >= 1, "{}: {row:?}", c.mode),
        }
    }

    // The honest task completes, every fragment verified, on the loaded machine.
    let done = wait_for(
        "the honest task Completed",
        Duration::from_secs(900),
        Duration::from_secs(1),
        || async {
            let t = tasks.get("honest").await.ok()?;
            let s = t.status?;
            assert_ne!(s.phase, TaskPhase::Failed, "{:?}", s.conditions);
            (s.phase == TaskPhase::Completed).then_some(s)
        },
    )
    .await;
    busy.store(false, Ordering::Relaxed);
    for b in burners {
        let _ = b.join();
    }
    eprintln!(
        "FIGURE verification: {} honest fragments verified in {:.0}s on a loaded machine, {} rejected",
        done.fragments.verified,
        started.elapsed().as_secs_f64(),
        done.fragments.rejected
    );
    assert_eq!(done.fragments.verified, HONEST_FRAGMENTS);
    assert_eq!(done.fragments.rejected, 0);
    // Only the honest devices worked on it, and neither was penalized.
    for row in done.contributions.iter().filter(|r| r.fragments > 0) {
        assert!(
            names.contains(&row.device),
            "{} ran honest fragments",
            row.device
        );
        let d = device(&client, &row.device).await.unwrap();
        let s = d.status.unwrap();
        let r = &s.reputation;
        eprintln!(
            "FIGURE verification: honest {} ran {} fragments: reputation {}, {} verified",
            row.device, row.fragments, r.score, r.succeeded
        );
        assert_eq!(
            (r.verification_failures, r.abnormal_timings, r.failed),
            (0, 0, 0),
            "{}: {r:?}",
            row.device
        );
        assert_eq!(row.rejected, 0);
        assert!(r.score > 500, "{r:?}");
        assert_eq!(s.phase, DevicePhase::Online);
    }

    // A liar on data processing: the operator recomputes the chunks it draws, so the
    // made-up digest cannot prove them. It claims the fastest machine, so it gets the
    // work; the fragments are executed again by honest devices and spot-checked.
    let mallory = group_key(
        &env,
        &op_ns,
        &["create", "mallory-key", "--provider", "mallory"],
    );
    let lie = Cheat {
        mode: "lie",
        model: "",
        score: 100_000,
        reasons: &["NotCommitted"],
    };
    cheaters.push(spawn_cheater(
        &operator.gateway,
        &ca,
        mallory.trim(),
        &lie,
        &victim,
    ));
    let liar = format!("agent-mallory-cheat-lie-{}", run_id());
    names.push(liar.clone());
    wait_device(&client, &liar, &[DevicePhase::Online], 60).await;
    let hashing: ComputeTask = serde_json::from_value(serde_json::json!({
        "apiVersion": "zoptoken.io/v1alpha1", "kind": "ComputeTask",
        "metadata": { "name": "hash-lie" },
        "spec": {
            "type": "data-processing",
            "dataProcessing": { "operation": "sha256", "bytes": 262_144, "seed": 5 },
            "fragments": { "count": 4 },
            "requirements": { "deviceClass": "cpu" },
            "verification": { "replayRate": 1.0 },
        },
    }))
    .unwrap();
    tasks.create(&pp, &hashing).await.unwrap();
    let hashed = wait_for(
        "hash-lie Completed",
        Duration::from_secs(240),
        Duration::from_secs(1),
        || async {
            let s = tasks.get("hash-lie").await.ok()?.status?;
            assert_ne!(s.phase, TaskPhase::Failed, "{:?}", s.conditions);
            (s.phase == TaskPhase::Completed).then_some(s)
        },
    )
    .await;
    let d = device(&client, &liar).await.unwrap().status.unwrap();
    let paid = hashed
        .contributions
        .iter()
        .find(|r| r.device == liar)
        .map_or(0, |r| r.fragments);
    eprintln!(
        "FIGURE verification: liar on data processing ended {:?}: reputation {}, {} failed verifications; task hash-lie {} of {} verified by spot checks, {} rejected, the liar paid for {paid}",
        d.phase,
        d.reputation.score,
        d.reputation.verification_failures,
        hashed.fragments.verified,
        hashed.fragments.total,
        hashed.fragments.rejected
    );
    assert!(OUT_OF_WORK.contains(&d.phase), "{:?}", d.phase);
    assert_eq!(
        hashed.fragments.verified, 4,
        "spot checks verify every chunk tree"
    );
    assert!(hashed.fragments.rejected >= 1 && paid == 0);
    let ev = evidence(&client, &liar).await;
    let (_, note) = ev
        .iter()
        .find(|(r, _)| r == "NotCommitted")
        .expect("spot-check evidence");
    eprintln!("FIGURE verification: evidence for lie: NotCommitted: {note}");
    assert!(note.contains("expected chunk"), "{note}");

    // Proof-of-Model-Training: a perceptron trained on the honest agents, with a flatterer
    // that computes honestly but reports a lower loss. Its commitment is true, so only
    // the replays' exact quality catches it; the task's loss and accuracy come from the
    // results that count.
    let flatter = Cheat {
        mode: "flatter",
        model: "",
        score: 100_000,
        reasons: &["ReplayMismatch"],
    };
    cheaters.push(spawn_cheater(
        &operator.gateway,
        &ca,
        mallory.trim(),
        &flatter,
        &victim,
    ));
    let flatterer = format!("agent-mallory-cheat-flatter-{}", run_id());
    names.push(flatterer.clone());
    wait_device(&client, &flatterer, &[DevicePhase::Online], 60).await;
    let training: ComputeTask = serde_json::from_value(serde_json::json!({
        "apiVersion": "zoptoken.io/v1alpha1", "kind": "ComputeTask",
        "metadata": { "name": "train-flatter" },
        "spec": {
            "type": "training",
            "training": {
                "model": { "architecture": "mlp", "features": 8, "classes": 3, "hidden": 16 },
                "samples": 800, "learningRate": 0.5, "seed": 9,
            },
            "fragments": { "count": 4 },
            "requirements": { "deviceClass": "cpu" },
            "verification": { "replayRate": 1.0 },
        },
    }))
    .unwrap();
    tasks.create(&pp, &training).await.unwrap();
    let trained = wait_for(
        "train-flatter Completed",
        Duration::from_secs(240),
        Duration::from_secs(1),
        || async {
            let s = tasks.get("train-flatter").await.ok()?.status?;
            assert_ne!(s.phase, TaskPhase::Failed, "{:?}", s.conditions);
            (s.phase == TaskPhase::Completed).then_some(s)
        },
    )
    .await;
    let d = device(&client, &flatterer).await.unwrap().status.unwrap();
    let paid = trained
        .contributions
        .iter()
        .find(|r| r.device == flatterer)
        .map_or(0, |r| r.fragments);
    let result = trained.result.clone().unwrap();
    eprintln!(
        "FIGURE verification: flatterer on mlp training ended {:?}: reputation {}; task train-flatter {} of {} verified by replay, {} rejected, the flatterer paid for {paid}; loss {:?}, accuracy {:?}",
        d.phase,
        d.reputation.score,
        trained.fragments.verified,
        trained.fragments.total,
        trained.fragments.rejected,
        result.loss,
        result.accuracy
    );
    assert!(OUT_OF_WORK.contains(&d.phase), "{:?}", d.phase);
    assert_eq!(trained.fragments.verified, 4);
    assert!(trained.fragments.rejected >= 1 && paid == 0);
    let loss = result.loss.expect("the task's loss");
    let accuracy = result.accuracy.expect("the task's accuracy");
    assert!(loss.is_finite() && loss > 0.0 && loss < 2.0, "{loss}");
    assert!((0.0..=1.0).contains(&accuracy), "{accuracy}");
    let ev = evidence(&client, &flatterer).await;
    let (_, note) = ev
        .iter()
        .find(|(r, _)| r == "ReplayMismatch")
        .expect("replay evidence");
    eprintln!("FIGURE verification: evidence for flatter: ReplayMismatch: {note}");
    assert!(note.contains("losses"), "{note}");

    // Inference through the reference perceptron on the honest agents: each fragment's
    // sampled predictions are recomputed by the operator and proved into its root.
    let inference: ComputeTask = serde_json::from_value(serde_json::json!({
        "apiVersion": "zoptoken.io/v1alpha1", "kind": "ComputeTask",
        "metadata": { "name": "infer" },
        "spec": {
            "type": "inference",
            "inference": {
                "model": { "architecture": "mlp", "features": 8, "classes": 3, "hidden": 8 },
                "samples": 4_000, "seed": 4,
            },
            "fragments": { "count": 4 },
            "requirements": { "deviceClass": "cpu" },
        },
    }))
    .unwrap();
    tasks.create(&pp, &inference).await.unwrap();
    let inferred = wait_for(
        "infer Completed",
        Duration::from_secs(240),
        Duration::from_secs(1),
        || async {
            let s = tasks.get("infer").await.ok()?.status?;
            assert_ne!(s.phase, TaskPhase::Failed, "{:?}", s.conditions);
            (s.phase == TaskPhase::Completed).then_some(s)
        },
    )
    .await;
    let accuracy = inferred.result.as_ref().and_then(|r| r.accuracy);
    eprintln!(
        "FIGURE verification: inference on the reference perceptron: {} of {} fragments verified by spot checks, {} rejected, accuracy {accuracy:?}",
        inferred.fragments.verified, inferred.fragments.total, inferred.fragments.rejected
    );
    assert_eq!(
        (inferred.fragments.verified, inferred.fragments.rejected),
        (4, 0)
    );
    // The reference perceptron is the linear discriminant: most samples are right.
    assert!(accuracy.is_some_and(|a| a > 0.6), "{accuracy:?}");

    for c in &mut cheaters {
        c.stop();
    }
    for h in &mut honest {
        h.terminate(Duration::from_secs(10));
    }
    let _ = runner.shutdown().await;
    let devices: Api<Device> = Api::all(client.clone());
    for name in names
        .iter()
        .cloned()
        .chain(CHEATS.iter().map(cheater_device))
    {
        let _ = devices.delete(&name, &DeleteParams::default()).await;
    }
}
