//! A provider's own ledger requests through the gateway with its Group Key, and the
//! stake the ledger derives into its Devices: bonding, a refused overdraft, an admin-only
//! kind refused, a withdrawal asked twice under one id and paid once, the stake shown on
//! the provider's Device (and a hand-written one put back), and a task with `minStake`
//! placed on the staked provider's device alone.

use super::{completed, ledger};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use std::path::Path;
use std::time::Duration;
use zop_e2e::{Env, bin_path, wait_for};
use zop_operator::api::protocol::{LedgerAccount, LedgerRequestState};
use zop_operator::api::settlement::OperationKind;
use zop_operator::api::{ComputeTask, Device, Settlement};
use zop_operator::ledger::accounts::Ledger;

/// Where the provider side talks to.
pub struct Gateway<'a> {
    pub url: &'a str,
    pub ca: &'a Path,
}

/// Runs `zop-worker account` with `key`: success, and stdout or stderr.
fn account(gw: &Gateway, key: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(bin_path("zop-worker"))
        .args(["account", "--gateway", gw.url])
        .arg("--ca-cert")
        .arg(gw.ca)
        .args(args)
        .env("ZOP_GROUP_KEY", key)
        .output()
        .expect("running zop-worker account");
    let text = if out.status.success() {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    (out.status.success(), text)
}

/// The JSON answer of a `zop-worker account` that must succeed.
fn answer<T: serde::de::DeserializeOwned>(gw: &Gateway, key: &str, args: &[&str]) -> T {
    let (ok, text) = account(gw, key, args);
    assert!(ok, "zop-worker account {args:?}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn accepted(gw: &Gateway, key: &str, args: &[&str]) -> LedgerRequestState {
    answer(gw, key, args)
}

fn show(gw: &Gateway, key: &str) -> LedgerAccount {
    answer(gw, key, &["show"])
}

async fn stake_of(devices: &Api<Device>, name: &str) -> Option<u64> {
    Some(devices.get(name).await.ok()?.status?.stake.0)
}

/// The whole scenario, for provider `alice` (`alice_key`, device `alice_device`) with
/// `bob_device` of another provider online beside it.
pub async fn provider_requests_and_stake(
    env: &Env,
    gw: &Gateway<'_>,
    alice_key: &str,
    alice_device: &str,
    bob_device: &str,
    team: &str,
    op_ns: &str,
) {
    let client = env.client.clone();
    let settlements: Api<Settlement> = Api::all(client.clone());
    let devices: Api<Device> = Api::all(client.clone());
    let before = show(gw, alice_key);
    assert_eq!(before.provider, "alice");
    assert!(before.balance > 4, "alice earned nothing: {before:?}");
    let (bond, payout) = (before.balance / 2, before.balance / 4);

    // Refused at once: more than the balance, an admin's kind, a malformed id.
    let (ok, text) = account(
        gw,
        alice_key,
        &[
            "withdraw",
            "--id",
            "too-much",
            "--amount",
            &(before.balance + 1).to_string(),
            "--destination",
            "wallet:alice",
        ],
    );
    assert!(
        !ok && text.contains("409") && text.contains("Refused"),
        "{text}"
    );
    let (ok, text) = account(gw, "zgk_not-a-key", &["show"]);
    assert!(!ok && text.contains("401"), "{text}");
    let (ok, text) = account(
        gw,
        alice_key,
        &["bond", "--id", "Not_An_Id", "--amount", "1"],
    );
    assert!(!ok && text.contains("id:"), "{text}");

    let bonded = accepted(
        gw,
        alice_key,
        &["bond", "--id", "stake-1", "--amount", &bond.to_string()],
    );
    assert_eq!(
        (bonded.id.as_str(), bonded.state.as_str()),
        ("alice.stake-1", "Pending")
    );
    let withdraw = [
        "withdraw",
        "--id",
        "payout-1",
        "--amount",
        &payout.to_string(),
        "--destination",
        "wallet:alice",
    ];
    let first = accepted(gw, alice_key, &withdraw);
    // The same request again (a retry): the same id, still one request.
    let again = accepted(gw, alice_key, &withdraw);
    assert_eq!(first.id, again.id);

    // Both recorded in the next epoch; the withdrawal once.
    let specs = wait_for(
        "alice's requests recorded",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let specs = ledger(&settlements).await;
            let ids: Vec<&str> = specs
                .iter()
                .flat_map(|s| &s.operations)
                .map(|o| o.id.as_str())
                .collect();
            (ids.contains(&"alice.stake-1") && ids.contains(&"alice.payout-1")).then_some(specs)
        },
    )
    .await;
    // Asked a third time after it was recorded: recorded, not paid again.
    let third = accepted(gw, alice_key, &withdraw);
    assert_eq!(third.state, "Recorded");
    let withdrawals: Vec<_> = specs
        .iter()
        .flat_map(|s| &s.operations)
        .filter(|o| o.kind == OperationKind::Withdraw && o.provider == "alice")
        .collect();
    assert_eq!(withdrawals.len(), 1, "{withdrawals:?}");
    assert_eq!(withdrawals[0].amount.0, payout);
    assert_eq!(withdrawals[0].destination.as_deref(), Some("wallet:alice"));
    let l = Ledger::replay(&specs).unwrap();
    let a = &l.accounts["alice"];
    assert_eq!((a.staked, a.withdrawn), (bond, payout));
    let after = show(gw, alice_key);
    assert_eq!((after.staked, after.withdrawn), (bond, payout));
    eprintln!(
        "FIGURE settlement: alice through the gateway: bonded {bond}, withdrew {payout} once of 3 asks; balance {} -> {}",
        before.balance, after.balance
    );

    // The ledger's stake on alice's Device, and none on bob's.
    wait_for(
        "alice's stake on her device",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || async { (stake_of(&devices, alice_device).await? == bond).then_some(()) },
    )
    .await;
    assert_eq!(stake_of(&devices, bob_device).await, Some(0));
    // A stake written by hand (an admin's slip, or a forged status) is put back.
    let forged = serde_json::json!({ "status": { "stake": 1_000_000_000_000u64 } });
    devices
        .patch_status(bob_device, &PatchParams::default(), &Patch::Merge(&forged))
        .await
        .unwrap();
    wait_for(
        "the forged stake put back",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || async { (stake_of(&devices, bob_device).await? == 0).then_some(()) },
    )
    .await;

    // Advanced work: only devices with at least alice's stake.
    let tasks: Api<ComputeTask> = Api::namespaced(client.clone(), team);
    let task = zop_e2e::proof_task(
        "staked-only",
        (64, 8, 5),
        4,
        serde_json::json!({
            "requirements": { "deviceClass": "cpu", "minStake": bond },
            "verification": { "replayRate": 0 },
        }),
    );
    tasks.create(&PostParams::default(), &task).await.unwrap();
    completed(&tasks, "staked-only").await;
    let uid = tasks.get("staked-only").await.unwrap().uid().unwrap();
    let ran: std::collections::BTreeSet<String> = zop_e2e::task_records(&client, op_ns, &uid)
        .await
        .into_iter()
        .map(|a| a.device)
        .collect();
    assert_eq!(ran, [alice_device.to_string()].into(), "minStake placement");
}
