//! Settlement end to end, on the real control plane: two providers' agents execute a
//! task; the operator settles epochs of a few seconds from its own records; it is killed
//! at ten random moments meanwhile; and the ledger it leaves pays each verified result
//! in exactly one epoch, pays each epoch exactly its emission or returns it, keeps the
//! supply, and verifies with `kubectl zop ledger verify`, which also catches an edited
//! record. Then, against a real Prometheus, a provider whose measured metrics contradict
//! its credit is held until an admin forfeits it, and a provider bonds stake and
//! withdraws through the gateway with its Group Key (`staking`).

use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use zop_e2e::nodes::wait_devices_online;
use zop_e2e::operator::{EPOCH_SECONDS, GRACE_SECONDS, Operator, group_key, sample, spawn_agent};
use zop_e2e::prometheus::{Prometheus, Target};
use zop_e2e::{Env, bin_path, clear_ledger, delete_all_tasks, free_port, install_crds, wait_for};
use zop_operator::api::settlement::SettlementSpec;
use zop_operator::api::{ComputeTask, ComputeTaskStatus, Device, Settlement, TaskPhase};
use zop_operator::ledger::accounts::Ledger;
use zop_operator::ledger::chain;
use zop_operator::ledger::rewards::{Contribution, split};

#[path = "settlement/monitoring.rs"]
mod monitoring;
#[path = "settlement/staking.rs"]
mod staking;

const TEST: &str = "settlement";

async fn ledger(api: &Api<Settlement>) -> Vec<SettlementSpec> {
    let mut specs: Vec<SettlementSpec> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| s.spec)
        .collect();
    specs.sort_by_key(|s| (s.epoch, s.part));
    specs
}

/// The task's status once it has Completed (it must not fail).
async fn completed(tasks: &Api<ComputeTask>, name: &str) -> ComputeTaskStatus {
    wait_for(
        &format!("{name} Completed"),
        Duration::from_secs(240),
        Duration::from_millis(500),
        || async {
            let s = tasks.get(name).await.ok()?.status?;
            assert_ne!(s.phase, TaskPhase::Failed, "{:?}", s.conditions);
            (s.phase == TaskPhase::Completed).then_some(s)
        },
    )
    .await
}

/// The ledger once an epoch ending after `ms` (Unix milliseconds) is settled in full.
async fn settled_past(settlements: &Api<Settlement>, ms: i64) -> Vec<SettlementSpec> {
    wait_for(
        "the last result's epoch settled",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let specs = ledger(settlements).await;
            let last = specs.last()?;
            let end = last.window.end.0.as_millisecond();
            (specs.len() > 1 && end > ms && last.part + 1 == last.parts).then_some(specs)
        },
    )
    .await
}

fn ledger_verify(env: &Env) -> (bool, String) {
    let out = zop_e2e::kubectl_zop(&env.kubeconfig, &["ledger", "verify"]);
    (out.ok, format!("{}{}", out.stdout, out.stderr))
}

/// A pseudo-random delay from the clock's nanoseconds (no seeded sequence to replay; the
/// moments are printed).
fn random_ms(below: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    u64::from(nanos) % below
}

/// Where agents join: the test cluster, the operator's namespace, its gateway and CA,
/// and the directory their state goes under.
struct Joining<'a> {
    env: &'a Env,
    op_ns: &'a str,
    gateway: &'a str,
    ca: &'a std::path::Path,
    dir: &'a std::path::Path,
}

impl Joining<'_> {
    /// A Group Key `key_name` for `provider`, and an agent on host `host` joined with it
    /// (its metrics on `metrics`, if given): the agent and the key.
    fn agent(
        &self,
        provider: &str,
        key_name: &str,
        host: &str,
        metrics: Option<u16>,
    ) -> (zop_e2e::ChildGuard, String) {
        let key = group_key(
            self.env,
            self.op_ns,
            &["create", key_name, "--provider", provider],
        );
        let key = key.trim().to_string();
        let agent = spawn_agent(
            TEST,
            self.gateway,
            self.ca,
            &key,
            &self.dir.join(provider),
            host,
            metrics,
        )
        .unwrap();
        (agent, key)
    }
}

#[tokio::test]
async fn epochs_pay_verified_work_exactly_once_and_the_ledger_verifies() {
    let Some(env) = Env::from_env(TEST).await else {
        return;
    };
    let client = env.client.clone();
    install_crds(&client).await.expect("CRDs install");
    delete_all_tasks(&client).await.unwrap();
    // A ledger of this test's own: earlier tests' operators settled into the shared one.
    let settlements: Api<Settlement> = Api::all(client.clone());
    clear_ledger(&client).await;
    let op_ns = env.test_namespace("zop-settle").await.unwrap();
    let team = env.test_namespace("payer").await.unwrap();
    let port = free_port();
    let mut operator = Operator::start_on(&env, TEST, &op_ns, port, &[])
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("zop-settle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = operator.write_ca(&dir).unwrap();
    let mut agents = Vec::new();
    let mut devices = Vec::new();
    let host = format!("box-{}", std::process::id() % 1000);
    let joining = Joining {
        env: &env,
        op_ns: &op_ns,
        gateway: &operator.gateway,
        ca: &ca,
        dir: &dir,
    };
    for provider in ["alice", "bob"] {
        let (agent, _) = joining.agent(provider, &format!("{provider}-key"), &host, None);
        agents.push(agent);
        devices.push((format!("agent-{provider}-{host}"), provider));
    }
    let names: Vec<String> = devices.iter().map(|(d, _)| d.clone()).collect();
    wait_devices_online(&client, &names, Duration::from_secs(60)).await;
    let task = zop_e2e::proof_task(
        "paid",
        (128, 48, 11),
        24,
        serde_json::json!({
            "requirements": { "deviceClass": "cpu" },
            "verification": { "replayRate": 0 },
        }),
    );
    let tasks: Api<ComputeTask> = Api::namespaced(client.clone(), &team);
    tasks.create(&PostParams::default(), &task).await.unwrap();

    // Kill the operator at ten random moments while it executes and settles.
    let started = Instant::now();
    let mut moments = Vec::new();
    for _ in 0..10 {
        let wait = 200 + random_ms(2 * EPOCH_SECONDS * 1000);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        moments.push(started.elapsed().as_millis());
        operator.child.stop();
        operator = Operator::start_on(&env, TEST, &op_ns, port, &[])
            .await
            .unwrap();
    }
    eprintln!("FIGURE settlement: the operator was killed (SIGKILL) at {moments:?} ms");
    let done = completed(&tasks, "paid").await;
    // What each provider earned by the operator's records: its devices' paid results.
    let uid = tasks.get("paid").await.unwrap().uid().unwrap();
    let records = zop_e2e::task_records(&client, &op_ns, &uid).await;
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_payable = 0;
    for a in &records {
        let provider = devices
            .iter()
            .find(|(d, _)| *d == a.device)
            .map(|(_, p)| *p)
            .unwrap();
        for r in a.results.iter().filter(|r| r.payable_ms.is_some()) {
            *expected.entry(provider.to_string()).or_default() += r.work_units;
            last_payable = last_payable.max(r.payable_ms.unwrap_or(0));
        }
    }
    assert_eq!(
        expected.values().sum::<u64>(),
        done.contributions.iter().map(|c| c.work_units).sum::<u64>()
    );
    // Wait until the epoch holding the last payable result is settled.
    let specs = settled_past(&settlements, last_payable).await;
    operator.child.terminate(Duration::from_secs(10));

    chain::verify(&specs).expect("the chain verifies");
    let l = Ledger::replay(&specs).expect("every sum holds");
    assert_eq!(l.paid + l.pool, zop_operator::api::POOL_BASE_UNITS);
    // Each result paid in exactly one epoch: the work the ledger paid each provider is
    // exactly what its records hold, with ten crashes in between.
    let mut paid_work: BTreeMap<String, u64> = BTreeMap::new();
    for s in &specs {
        for e in &s.entries {
            *paid_work.entry(e.provider.clone()).or_default() += e.work_units;
        }
    }
    assert_eq!(
        paid_work, expected,
        "work paid by the ledger against the records"
    );
    // Each epoch paid in proportion to weighted work: its entries are the split of its
    // emission, and its rewards plus what returned are its emission.
    for s in specs.iter().filter(|s| s.epoch > 0) {
        let c: Vec<Contribution> = s
            .entries
            .iter()
            .map(|e| Contribution {
                provider: e.provider.clone(),
                work_units: e.work_units,
                quality: e.quality,
                reputation: e.reputation,
                stake: 0,
            })
            .collect();
        assert_eq!(
            split(s.emission.0, &c).entries,
            s.entries,
            "epoch {}",
            s.epoch
        );
    }
    let epochs = specs.last().unwrap().epoch;
    let paying = specs.iter().filter(|s| !s.entries.is_empty()).count();
    eprintln!(
        "FIGURE settlement: {epochs} epochs of {EPOCH_SECONDS} s (grace {GRACE_SECONDS} s), {paying} with work; paid {:?} base units of work {paid_work:?}; pool {}",
        l.accounts
            .iter()
            .map(|(p, a)| (p.clone(), a.rewards))
            .collect::<Vec<_>>(),
        l.pool
    );
    let (ok, text) = ledger_verify(&env);
    assert!(ok, "{text}");
    eprintln!(
        "FIGURE settlement: kubectl zop ledger verify: {}",
        text.trim()
    );

    // An edited record: deleted and created again with one reward moved (the API server
    // refuses an update of a Settlement). `ledger verify` names the epoch.
    let victim = specs
        .iter()
        .find(|s| s.entries.len() == 2)
        .or_else(|| specs.iter().find(|s| !s.entries.is_empty()))
        .unwrap();
    let name = zop_operator::controller::settlement::object_name(victim.epoch, victim.part);
    let mut forged = settlements.get(&name).await.unwrap();
    forged.spec.entries[0].reward.0 += 1_000_000;
    forged.metadata = kube::api::ObjectMeta {
        name: Some(name.clone()),
        ..Default::default()
    };
    forged.status = None;
    settlements
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        "the record deleted",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            settlements
                .get_opt(&name)
                .await
                .ok()
                .and_then(|o| o.is_none().then_some(()))
        },
    )
    .await;
    settlements
        .create(&PostParams::default(), &forged)
        .await
        .unwrap();
    let (ok, text) = ledger_verify(&env);
    assert!(!ok, "an edited record verified: {text}");
    assert!(text.contains(&format!("epoch {}", victim.epoch)), "{text}");
    eprintln!("FIGURE settlement: after editing {name}: {}", text.trim());

    for mut a in agents {
        a.terminate(Duration::from_secs(5));
    }

    // Reconciliation against a real Prometheus, on a fresh ledger: alice's agent is
    // scraped and honest, bob's is not scraped, and mallory computes honestly but its
    // scraped metrics say it executed nothing. Mallory's reward is held, not paid, until
    // an admin forfeits it.
    clear_ledger(&client).await;
    tasks
        .delete("paid", &DeleteParams::default())
        .await
        .unwrap();
    // Prometheus first, scraping the operator, alice's agent and mallory from their
    // first moment, as a data center's Prometheus would.
    let (prom_port, metrics_port) = (free_port(), free_port());
    let (alice_port, mallory_port) = (free_port(), free_port());
    let targets = [
        Target {
            address: format!("127.0.0.1:{metrics_port}"),
            provider: None,
        },
        Target {
            address: format!("127.0.0.1:{alice_port}"),
            provider: Some("alice"),
        },
        Target {
            address: format!("127.0.0.1:{mallory_port}"),
            provider: Some("mallory"),
        },
    ];
    let prometheus = Prometheus::start(&dir.join("prometheus"), prom_port, &targets)
        .await
        .unwrap();
    let prom_url = format!("http://127.0.0.1:{prom_port}");
    let operator = Operator::start_on_ports(
        &env,
        TEST,
        &op_ns,
        (port, metrics_port),
        &["--prometheus-url", &prom_url],
    )
    .await
    .unwrap();
    let mut agents = Vec::new();
    let mut keys = BTreeMap::new();
    let joining = Joining {
        env: &env,
        op_ns: &op_ns,
        gateway: &operator.gateway,
        ca: &ca,
        dir: &dir,
    };
    for (provider, metrics) in [("alice", Some(alice_port)), ("bob", None)] {
        let (agent, key) = joining.agent(provider, &format!("{provider}-key2"), &host, metrics);
        agents.push(agent);
        keys.insert(provider, key);
    }
    let key = group_key(
        &env,
        &op_ns,
        &["create", "mallory-key", "--provider", "mallory"],
    );
    let log = std::fs::File::create(zop_e2e::operator::log_dir(TEST).join("mallory.log")).unwrap();
    // It claims the fastest machine, so it gets work; it paces itself under the
    // gateway's per-caller rate limit.
    let mut mallory = zop_e2e::ChildGuard::spawn(
        std::process::Command::new(bin_path("zop-cheater"))
            .args(["--gateway", &operator.gateway, "--hostname", &host])
            .args([
                "--mode",
                "slow",
                "--sleep-ms",
                "200",
                "--claim-score",
                "100000",
            ])
            .arg("--ca-cert")
            .arg(&ca)
            .args(["--metrics-bind", &format!("127.0.0.1:{mallory_port}")])
            .env("ZOP_GROUP_KEY", key.trim())
            .stdout(log),
    )
    .unwrap();
    let mallory_device = format!("agent-mallory-{host}");
    let names = [format!("agent-alice-{host}"), mallory_device.clone()];
    wait_devices_online(&client, &names, Duration::from_secs(60)).await;
    // Let Prometheus scrape every series at 0 before any work.
    tokio::time::sleep(Duration::from_secs(3 * EPOCH_SECONDS / 2)).await;
    let mut second = task.clone();
    second.metadata.name = Some("paid-2".into());
    tasks.create(&PostParams::default(), &second).await.unwrap();
    completed(&tasks, "paid-2").await;
    // Every result of the task paid (or held) before anything is judged: a held epoch
    // seen early is not the last one.
    let uid = tasks.get("paid-2").await.unwrap().uid().unwrap();
    let last_payable = zop_e2e::task_records(&client, &op_ns, &uid)
        .await
        .into_iter()
        .flat_map(|a| a.results)
        .filter_map(|r| r.payable_ms)
        .max()
        .unwrap_or(0);
    settled_past(&settlements, last_payable).await;
    let held_specs = wait_for(
        "mallory's reward held",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let specs = ledger(&settlements).await;
            specs
                .iter()
                .any(|s| s.entries.iter().any(|e| e.provider == "mallory" && e.held))
                .then_some(specs)
        },
    )
    .await;
    // Alice and bob are never held; mallory is, once its credit exceeds what the
    // tolerance forgives of a measurement of nothing (`zop_core::ledger::reconcile`).
    let mut mallory_credit = 0u64;
    for s in &held_specs {
        for e in &s.entries {
            if e.provider == "mallory" {
                mallory_credit += e.work_units;
                let forgiven = mallory_credit as f64 <= 2.0 + 0.25 * mallory_credit as f64;
                assert_eq!(e.held, !forgiven, "epoch {}: {e:?}", s.epoch);
            } else {
                assert!(!e.held, "epoch {}: {e:?}", s.epoch);
            }
        }
    }
    let held_epoch = held_specs
        .iter()
        .find(|s| s.entries.iter().any(|e| e.held))
        .unwrap();
    let name = zop_operator::controller::settlement::object_name(held_epoch.epoch, 0);
    let condition = wait_for(
        "the held epoch's Reconciled condition",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || async {
            settlements
                .get(&name)
                .await
                .ok()?
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Reconciled")
        },
    )
    .await;
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("False", "Held")
    );
    let l = Ledger::replay(&held_specs).unwrap();
    let others: Vec<_> = l
        .accounts
        .iter()
        .filter(|(p, _)| *p != "mallory")
        .map(|(p, a)| (p.clone(), a.rewards))
        .collect();
    eprintln!(
        "FIGURE settlement: reconciled against Prometheus: mallory held {} base units ({}); others paid {others:?}",
        l.accounts["mallory"].held, condition.message
    );
    // An admin forfeits it: recorded in the next epoch, back in the pool.
    let out = zop_e2e::kubectl_zop(
        &env.kubeconfig,
        &["ledger", "forfeit", "--provider", "mallory", "-n", &op_ns],
    );
    assert!(out.ok, "{}", out.stderr);
    // Recorded once, by its id, in a later epoch: exactly the amount held when it was
    // requested goes back to the pool.
    let said = out.stdout;
    let id = said
        .split_whitespace()
        .skip_while(|w| *w != "as")
        .nth(1)
        .unwrap_or_else(|| panic!("no request id in: {said}"))
        .trim_end_matches(';')
        .to_string();
    let held_then = Ledger::replay(&ledger(&settlements).await)
        .unwrap()
        .accounts["mallory"]
        .held;
    let (forfeit, forfeited) = wait_for(
        "the forfeit recorded",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let specs = ledger(&settlements).await;
            let op = specs
                .iter()
                .flat_map(|s| &s.operations)
                .find(|o| o.id == id)?
                .clone();
            Some((op, Ledger::replay(&specs).ok()?))
        },
    )
    .await;
    assert_eq!(
        forfeit.kind,
        zop_operator::api::settlement::OperationKind::Forfeit
    );
    assert!(
        forfeit.amount.0 > 0 && forfeit.amount.0 <= held_then,
        "{forfeit:?}"
    );
    assert_eq!(
        forfeited.paid + forfeited.held + forfeited.pool,
        zop_operator::api::POOL_BASE_UNITS
    );
    let (ok, text) = ledger_verify(&env);
    assert!(ok, "{text}");
    let metrics = operator.scrape().await.unwrap();
    let queries = sample(&metrics, "zop_reconciliation_queries_total", &[]).unwrap_or(0.0);
    let seconds = sample(&metrics, "zop_reconciliation_query_seconds_sum", &[]).unwrap_or(0.0);
    eprintln!(
        "FIGURE settlement: reconciliation sent {queries} queries to Prometheus for {} epochs ({:.1} ms each on average)",
        forfeited.last.map_or(0, |l| l.0),
        1e3 * seconds / queries.max(1.0),
    );
    staking::provider_requests_and_stake(
        &env,
        &staking::Gateway {
            url: &operator.gateway,
            ca: &ca,
        },
        &keys["alice"],
        &format!("agent-alice-{host}"),
        &format!("agent-bob-{host}"),
        &team,
        &op_ns,
    )
    .await;
    let (ok, text) = ledger_verify(&env);
    assert!(ok, "{text}");
    monitoring::dashboards_and_alerts_evaluate(&prometheus).await;
    mallory.stop();
    let mut operator = operator;
    operator.child.terminate(Duration::from_secs(10));
    for mut a in agents {
        a.terminate(Duration::from_secs(5));
    }
    devices.push((mallory_device, "mallory"));
    clear_ledger(&client).await;
    for (name, _) in &devices {
        let _ = Api::<Device>::all(client.clone())
            .delete(name, &DeleteParams::default())
            .await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
