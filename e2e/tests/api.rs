//! The API against the real API server: the generated CRDs install, every example
//! applies, every invalid manifest is rejected with a message naming its field, and
//! kubectl shows what a user needs.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::Value;
use std::path::Path;
use zop_e2e::{Env, install_crds};
use zop_operator::api::testdata::invalid_cases;
use zop_operator::api::{ComputeTask, Device, Settlement};

const MANAGER: &str = "zop-e2e";

/// Server-side applies `obj` (any of our kinds) and returns the API server's verdict.
async fn apply(client: &Client, ns: &str, obj: &Value) -> Result<(), kube::Error> {
    apply_with(client, ns, obj, PatchParams::apply(MANAGER).force()).await
}

/// [`apply`] as a server-side dry run: validated in full, nothing stored (an example
/// task left behind would be executed by a later test's operator).
async fn dry_run(client: &Client, ns: &str, obj: &Value) -> Result<(), kube::Error> {
    apply_with(
        client,
        ns,
        obj,
        PatchParams::apply(MANAGER).force().dry_run(),
    )
    .await
}

/// Deletes what [`apply`] stored for `obj`.
async fn remove(client: &Client, ns: &str, obj: &Value) {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let dp = DeleteParams::default();
    let _ = match obj["kind"].as_str() {
        Some("Device") => Api::<Device>::all(client.clone())
            .delete(name, &dp)
            .await
            .map(drop),
        Some("Settlement") => Api::<Settlement>::all(client.clone())
            .delete(name, &dp)
            .await
            .map(drop),
        _ => Api::<ComputeTask>::namespaced(client.clone(), ns)
            .delete(name, &dp)
            .await
            .map(drop),
    };
}

async fn apply_with(
    client: &Client,
    ns: &str,
    obj: &Value,
    pp: PatchParams,
) -> Result<(), kube::Error> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    match obj["kind"].as_str() {
        Some("Device") => Api::<Device>::all(client.clone())
            .patch(name, &pp, &Patch::Apply(obj))
            .await
            .map(drop),
        Some("Settlement") => Api::<Settlement>::all(client.clone())
            .patch(name, &pp, &Patch::Apply(obj))
            .await
            .map(drop),
        Some("ComputeTask") => Api::<ComputeTask>::namespaced(client.clone(), ns)
            .patch(name, &pp, &Patch::Apply(obj))
            .await
            .map(drop),
        other => panic!("unexpected kind {other:?}"),
    }
}

async fn namespace(client: &Client, name: &str) {
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    let _ = Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await;
}

#[tokio::test]
async fn every_example_applies_cleanly() {
    let Some(env) = Env::from_env("every_example_applies_cleanly").await else {
        return;
    };
    install_crds(&env.client).await.expect("CRDs install");
    namespace(&env.client, "api-examples").await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut applied = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let obj: Value = serde_saphyr::from_str(&text).unwrap();
        dry_run(&env.client, "api-examples", &obj)
            .await
            .unwrap_or_else(|e| panic!("{}: rejected: {e}", path.display()));
        applied += 1;
    }
    assert!(applied >= 7, "only {applied} examples");
}

#[tokio::test]
async fn every_invalid_manifest_is_rejected_with_a_message_naming_the_field() {
    let Some(env) = Env::from_env("every_invalid_manifest_is_rejected").await else {
        return;
    };
    install_crds(&env.client).await.expect("CRDs install");
    namespace(&env.client, "api-invalid").await;
    let cases = invalid_cases().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        if let Some(old) = &case.old {
            apply(&env.client, "api-invalid", old)
                .await
                .unwrap_or_else(|e| panic!("{}: the original was rejected: {e}", case.name));
        }
        let err = dry_run(&env.client, "api-invalid", &case.object)
            .await
            .expect_err(&format!("{}: accepted by the API server", case.name));
        if let Some(old) = &case.old {
            remove(&env.client, "api-invalid", old).await;
        }
        let kube::Error::Api(status) = &err else {
            panic!("{}: {err}", case.name)
        };
        assert_eq!(status.code, 422, "{}: {}", case.name, status.message);
        assert!(
            status.message.contains(&case.field) && status.message.contains(&case.message),
            "{}: expected field '{}' and message '{}' in: {}",
            case.name,
            case.field,
            case.message,
            status.message
        );
    }
}

fn kubectl(env: &Env, args: &[&str]) -> String {
    let out = std::process::Command::new(env.kubectl())
        .args(args)
        .env("KUBECONFIG", &env.kubeconfig)
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn kubectl_get_and_explain_show_what_a_user_needs() {
    let Some(env) = Env::from_env("kubectl_get_and_explain").await else {
        return;
    };
    install_crds(&env.client).await.expect("CRDs install");
    namespace(&env.client, "api-kubectl").await;
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut applied = Vec::new();
    for file in [
        "device-gpu-node.yaml",
        "computetask-compute-proof.yaml",
        "settlement.yaml",
    ] {
        let obj: Value =
            serde_saphyr::from_str(&std::fs::read_to_string(examples.join(file)).unwrap()).unwrap();
        apply(&env.client, "api-kubectl", &obj).await.expect(file);
        applied.push(obj);
    }
    let all = kubectl(&env, &["get", "dev,ct,stl", "-A"]);
    for name in [
        "device.zoptoken.io/node-gpu-h100-0001",
        "computetask.zoptoken.io/proof-1024",
        "settlement.zoptoken.io/epoch-0",
    ] {
        assert!(
            all.contains(name),
            "kubectl get dev,ct,stl lacks {name}:\n{all}"
        );
    }
    for (kind, headers) in [
        (
            "devices",
            &[
                "PHASE",
                "CLASS",
                "GPU",
                "VRAM(MIB)",
                "REPUTATION",
                "LOAD(%)",
                "AGE",
            ][..],
        ),
        ("computetasks", &["PHASE", "PROGRESS", "TYPE", "AGE"][..]),
        (
            "settlements",
            &["EPOCH", "EMISSION", "PROVIDERS", "PHASE"][..],
        ),
    ] {
        let out = kubectl(&env, &["get", kind, "-A"]);
        let header = out.lines().next().unwrap_or_default();
        for h in headers {
            assert!(header.contains(h), "{kind}: header '{header}' lacks {h}");
        }
    }
    let explain = kubectl(&env, &["explain", "computetask.spec.requirements"]);
    for needle in [
        "minVramMiB",
        "gpuModels",
        "minComputeCapability",
        "minReputation",
        "runtime",
        "Least VRAM per GPU",
    ] {
        assert!(
            explain.contains(needle),
            "explain lacks {needle}:\n{explain}"
        );
    }
    let short = kubectl(&env, &["api-resources", "--api-group=zoptoken.io"]);
    for name in ["dev", "ct", "stl"] {
        assert!(
            short.split_whitespace().any(|w| w == name),
            "no short name {name}:\n{short}"
        );
    }
    for obj in &applied {
        remove(&env.client, "api-kubectl", obj).await;
    }
}
