//! `kubectl zop tasks|describe-task|submit`: requesters' commands.

use super::output::{self, Globals};
use super::tables;
use crate::api::ComputeTask;
use anyhow::Context;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use std::path::PathBuf;

/// How a task is submitted: a manifest, or flags.
#[derive(Debug, clap::Args)]
pub struct Submit {
    /// The manifest (YAML or JSON).
    #[arg(short = 'f', long, conflicts_with_all = ["name", "kind"])]
    pub file: Option<PathBuf>,
    /// The task's name (without `-f`).
    #[arg(long, requires = "kind")]
    pub name: Option<String>,
    /// The workload type: compute-proof, training, inference or data-processing.
    #[arg(long = "type", requires = "name")]
    pub kind: Option<String>,
    /// Fragments to cut the work into.
    #[arg(long)]
    pub fragments: Option<u32>,
    /// A spec field as `path=value`, e.g. `computeProof.dimension=64` or
    /// `requirements.deviceClass=gpu` (values are JSON when they parse as JSON).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// Ask the API server to check the task without creating it.
    #[arg(long)]
    pub dry_run: bool,
}

fn scope(client: &Client, g: &Globals, default_namespace: &str) -> Api<ComputeTask> {
    if g.all_namespaces {
        Api::all(client.clone())
    } else {
        let ns = g.namespace.as_deref().unwrap_or(default_namespace);
        Api::namespaced(client.clone(), ns)
    }
}

/// `kubectl zop tasks [--watch]`.
pub async fn list(
    client: &Client,
    g: &Globals,
    default_namespace: &str,
    watch: bool,
) -> anyhow::Result<()> {
    let api = scope(client, g, default_namespace);
    let mut last = String::new();
    loop {
        let tasks = api.list(&ListParams::default()).await?.items;
        let rows = tables::task_rows(&tasks);
        let text = output::render(g.output, &rows, || tables::tasks_table(&rows))?;
        if text != last {
            print!("{text}");
            last = text;
        }
        let ended = tasks
            .iter()
            .all(|t| t.status.as_ref().is_some_and(|s| s.phase.is_terminal()));
        if !watch || ended {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

/// `kubectl zop describe-task NAME`.
pub async fn describe(client: &Client, g: &Globals, ns: &str, name: &str) -> anyhow::Result<()> {
    let task = Api::<ComputeTask>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .with_context(|| format!("task {ns}/{name}"))?;
    output::print(g.output, &task, || tables::describe_task(&task))
}

/// Sets `path` (dotted) in `spec` to `value`, parsed as JSON when it parses.
pub fn set_path(spec: &mut serde_json::Value, assignment: &str) -> anyhow::Result<()> {
    let (path, raw) = assignment
        .split_once('=')
        .with_context(|| format!("--set {assignment}: expected PATH=VALUE"))?;
    let value = serde_json::from_str(raw).unwrap_or_else(|_| serde_json::json!(raw));
    let mut at = spec;
    let keys: Vec<&str> = path.split('.').collect();
    anyhow::ensure!(
        keys.iter().all(|k| !k.is_empty()),
        "--set {assignment}: an empty field name in {path}"
    );
    for k in &keys[..keys.len() - 1] {
        if !at[*k].is_object() {
            at[*k] = serde_json::json!({});
        }
        at = &mut at[*k];
    }
    at[keys[keys.len() - 1]] = value;
    Ok(())
}

/// The task the flags describe, in `ns`.
pub fn from_flags(s: &Submit, ns: &str) -> anyhow::Result<ComputeTask> {
    let (Some(name), Some(kind)) = (&s.name, &s.kind) else {
        anyhow::bail!("give a manifest (-f FILE), or --name and --type");
    };
    let mut spec = serde_json::json!({ "type": kind });
    if let Some(n) = s.fragments {
        spec["fragments"] = serde_json::json!({ "count": n });
    }
    for a in &s.set {
        set_path(&mut spec, a)?;
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "zoptoken.io/v1alpha1",
        "kind": "ComputeTask",
        "metadata": { "name": name, "namespace": ns },
        "spec": spec,
    }))
    .map_err(|e| anyhow::anyhow!("spec: {e}"))
}

/// `kubectl zop submit`: checked client-side (the CRD's rules), then applied; the API
/// server's refusal names the field.
pub async fn submit(client: &Client, g: &Globals, ns: &str, s: Submit) -> anyhow::Result<()> {
    let task: ComputeTask = match &s.file {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            serde_saphyr::from_str(&text)
                .with_context(|| format!("{} is not a ComputeTask", file.display()))?
        }
        None => from_flags(&s, ns)?,
    };
    task.validate_cel()
        .map_err(|e| anyhow::anyhow!("the task is invalid: {e}"))?;
    let name = task.name_any();
    let mut params = PatchParams::apply("kubectl-zop");
    params.dry_run = s.dry_run;
    let applied = Api::<ComputeTask>::namespaced(client.clone(), ns)
        .patch(&name, &params, &Patch::Apply(&task))
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) => anyhow::anyhow!("{}", s.message),
            other => other.into(),
        })?;
    let verb = if s.dry_run {
        "checked (dry run)"
    } else {
        "submitted"
    };
    output::print(g.output, &applied, || {
        format!("computetask.zoptoken.io/{name} {verb} in {ns}\n")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(set: &[&str]) -> Submit {
        Submit {
            file: None,
            name: Some("t".into()),
            kind: Some("compute-proof".into()),
            fragments: Some(4),
            set: set.iter().map(|s| s.to_string()).collect(),
            dry_run: false,
        }
    }

    #[test]
    fn a_task_from_flags_has_the_fields_they_set() {
        let t = from_flags(
            &flags(&[
                "computeProof.dimension=64",
                "computeProof.products=8",
                "computeProof.seed=1",
                "requirements.deviceClass=gpu",
            ]),
            "team",
        )
        .unwrap();
        assert_eq!(t.namespace().as_deref(), Some("team"));
        let spec = serde_json::to_value(&t.spec).unwrap();
        assert_eq!(spec["computeProof"]["dimension"], 64);
        assert_eq!(spec["requirements"]["deviceClass"], "gpu");
        assert_eq!(spec["fragments"]["count"], 4);
    }

    #[test]
    fn bad_flags_say_what_is_wrong() {
        let e = from_flags(&flags(&["computeProof.dimension"]), "team").unwrap_err();
        assert!(e.to_string().contains("expected PATH=VALUE"), "{e}");
        let e = from_flags(&flags(&["computeProof..x=1"]), "team").unwrap_err();
        assert!(e.to_string().contains("empty field name"), "{e}");
        let e = from_flags(&flags(&["computeProof.dimension=\"big\""]), "team").unwrap_err();
        assert!(e.to_string().starts_with("spec: "), "{e}");
    }
}
