//! A real run of every `kubectl zop` command against the chart's operator: tables for
//! people, JSON and YAML for scripts, `--context`, `-n`, `-A`, and errors in one line.

use std::path::Path;
use zop_e2e::kubectl_zop;

fn ok(kubeconfig: &Path, args: &[&str]) -> String {
    let out = kubectl_zop(kubeconfig, args);
    assert!(out.ok, "kubectl zop {args:?}: {}", out.stderr);
    out.stdout
}

fn json(kubeconfig: &Path, args: &[&str]) -> serde_json::Value {
    let out = ok(kubeconfig, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl zop {args:?}: {e}: {out}"))
}

/// One line on stderr, no backtrace, exit status 1.
fn refused(kubeconfig: &Path, args: &[&str]) -> String {
    let out = kubectl_zop(kubeconfig, args);
    assert!(!out.ok, "kubectl zop {args:?} succeeded");
    let err = out.stderr;
    assert_eq!(err.trim().lines().count(), 1, "kubectl zop {args:?}: {err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

/// `submit --name from-flags` of a small compute-proof task, with `extra` flags.
fn submit_args<'a>(team: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "submit",
        "--name",
        "from-flags",
        "--type",
        "compute-proof",
        "--fragments",
        "2",
        "--set",
        "computeProof.dimension=64",
        "--set",
        "computeProof.products=4",
        "--set",
        "computeProof.seed=1",
        "--dry-run",
        "-n",
        team,
    ];
    args.extend(extra);
    args
}

/// Every command, with `provider` the data center's, `task` a completed task in `team`,
/// and `op_ns` the operator's namespace.
pub fn every_command(kubeconfig: &Path, op_ns: &str, team: &str, task: &str, provider: &str) {
    let k = kubeconfig;
    let context = kube::config::Kubeconfig::read_from(k)
        .unwrap()
        .current_context
        .unwrap();
    // Devices: a table, and rows with their provider's stake and earnings.
    let table = ok(k, &["devices", "--context", &context]);
    assert!(
        table.starts_with("NAME ") && table.contains(provider),
        "{table}"
    );
    let rows = json(k, &["devices", "-o", "json"]);
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["provider"] == provider)
        .unwrap();
    assert!(row["providerRewards"].as_u64().unwrap() > 0, "{row}");
    assert!(
        row["stake"].is_u64() && row["vramMiB"].as_u64().unwrap() > 0,
        "{row}"
    );
    let err = refused(k, &["devices", "--context", "no-such-context"]);
    assert!(err.contains("no-such-context"), "{err}");

    // Tasks: one namespace, all namespaces, YAML, and a watch that ends as they all did.
    let tasks = ok(k, &["tasks", "-n", team]);
    assert!(
        tasks.contains(task) && tasks.contains("[####################] 100%"),
        "{tasks}"
    );
    let all = json(k, &["tasks", "-A", "-o", "json"]);
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == task && t["namespace"] == team)
    );
    let yaml = ok(k, &["tasks", "-n", team, "-o", "yaml"]);
    assert!(yaml.contains(&format!("name: {task}")), "{yaml}");
    let watched = ok(k, &["tasks", "-n", team, "--watch"]);
    assert!(watched.contains("Completed"), "{watched}");
    let described = ok(k, &["describe-task", task, "-n", team]);
    assert!(
        described.contains("Contributions:") && described.contains("Phase:        Completed"),
        "{described}"
    );
    let object = json(k, &["describe-task", task, "-n", team, "-o", "json"]);
    assert_eq!(object["kind"], "ComputeTask");
    let err = refused(k, &["describe-task", "no-such-task", "-n", team]);
    assert!(err.contains("no-such-task"), "{err}");

    // Submit from flags: checked by the API server (dry run); a bad field is named.
    let said = ok(k, &submit_args(team, &[]));
    assert!(said.contains("checked (dry run)"), "{said}");
    let err = refused(
        k,
        &submit_args(team, &["--set", "verification.replayRate=7"]),
    );
    assert!(err.contains("replayRate"), "{err}");

    // Group Keys: created (the key shown once), listed, revoked.
    let created = json(
        k,
        &[
            "group-key",
            "create",
            "plugin-key",
            "--provider",
            "plugin",
            "-n",
            op_ns,
            "-o",
            "json",
        ],
    );
    assert!(
        created["key"].as_str().unwrap().starts_with("zgk_"),
        "{created}"
    );
    let keys = json(k, &["group-key", "list", "-n", op_ns, "-o", "json"]);
    assert!(
        keys.as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "plugin-key" && r["key"].is_null())
    );
    ok(k, &["group-key", "revoke", "plugin-key", "-n", op_ns]);
    let listed = ok(k, &["group-key", "list", "-n", op_ns]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("plugin-key") && l.ends_with("revoked")),
        "{listed}"
    );

    // The ledger: verified, earnings, and a withdrawal request.
    let verified = json(k, &["ledger", "verify", "-o", "json"]);
    assert_eq!(verified["supply"], 100_000_000_000_000u64);
    let accounts = ok(k, &["earnings"]);
    assert!(accounts.contains(provider), "{accounts}");
    let mine = json(k, &["earnings", "--provider", provider, "-o", "json"]);
    let balance = mine["account"]["balance"].as_u64().unwrap();
    assert!(
        balance > 0 && !mine["epochs"].as_array().unwrap().is_empty(),
        "{mine}"
    );
    let amount = (balance / 2).to_string();
    let requested = json(
        k,
        &[
            "withdraw",
            "--provider",
            provider,
            "--amount",
            &amount,
            "--destination",
            "wallet:dc",
            "-n",
            op_ns,
            "-o",
            "json",
        ],
    );
    assert_eq!(requested["kind"], "Withdraw");
    let too_much = (balance * 2).to_string();
    let err = refused(
        k,
        &[
            "ledger",
            "withdraw",
            "--provider",
            provider,
            "--amount",
            &too_much,
            "--destination",
            "x",
            "-n",
            op_ns,
        ],
    );
    assert!(err.contains("refused"), "{err}");
    eprintln!(
        "FIGURE chart: every kubectl zop command ran against the chart's operator (tables, -o json|yaml, --context, -n, -A, --watch, one-line errors)"
    );
}
