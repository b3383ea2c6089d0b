//! Account operations requested of the ledger (withdrawals, stake, releasing or
//! forfeiting held rewards): ConfigMaps in the operator's namespace labelled
//! [`LABEL`], which only admins (`kubectl zop ledger ...`) and the operator can write;
//! providers ask through the gateway with a Group Key (`gateway::ledger`).
//! The settlement controller records them in the next epoch in the order they were made
//! (`zop_core::ledger::settle` checks each against the balances), deletes each once the
//! chain holds it (so a restart never records one twice: the ledger also refuses a
//! repeated id), and marks one the ledger refuses with why, for the admin to read.

use crate::api::settlement::AccountOperation;
use anyhow::Context;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use std::collections::{BTreeMap, BTreeSet};

/// The label of a request.
pub const LABEL: &str = "zoptoken.io/ledger-request";
/// The data key of the operation.
const KEY: &str = "operation.json";
/// The data key a refusal is written to.
const REFUSED: &str = "refused";

/// The request's object name.
pub fn name(op: &AccountOperation) -> String {
    format!("zop-ledger-{}", op.id)
}

/// Writes a request; `Ok(false)` if a request of that id is already stored.
pub async fn submit(
    client: &Client,
    namespace: &str,
    op: &AccountOperation,
) -> anyhow::Result<bool> {
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name(op)),
            labels: Some(BTreeMap::from([(LABEL.to_string(), "true".to_string())])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            KEY.to_string(),
            serde_json::to_string(op).context("encoding the operation")?,
        )])),
        ..Default::default()
    };
    match Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &cm)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e).with_context(|| format!("writing the request {}", name(op))),
    }
}

/// A request as stored: the operation, and why the ledger refused it, if it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The operation.
    pub op: AccountOperation,
    /// The ledger's refusal.
    pub refused: Option<String>,
}

/// Every request still stored, oldest first.
pub async fn list(client: &Client, namespace: &str) -> anyhow::Result<Vec<Stored>> {
    let mut items = Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(LABEL))
        .await
        .context("listing ledger requests")?
        .items;
    items.sort_by(|a, b| {
        a.creation_timestamp()
            .cmp(&b.creation_timestamp())
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
    Ok(items
        .iter()
        .filter_map(|cm| {
            let data = cm.data.as_ref()?;
            let op: AccountOperation = serde_json::from_str(data.get(KEY)?).ok()?;
            // A request is only what its name says: no id smuggled under another's name.
            (name(&op) == cm.name_any()).then(|| Stored {
                op,
                refused: data.get(REFUSED).cloned(),
            })
        })
        .collect())
}

/// The requests not yet recorded or refused, oldest first.
pub async fn pending(client: &Client, namespace: &str) -> anyhow::Result<Vec<AccountOperation>> {
    Ok(list(client, namespace)
        .await?
        .into_iter()
        .filter(|s| s.refused.is_none())
        .map(|s| s.op)
        .collect())
}

/// Deletes the requests the chain holds and marks the refused ones.
pub async fn resolve(
    client: &Client,
    namespace: &str,
    recorded: &BTreeSet<String>,
    refused: &[(AccountOperation, String)],
    requested: &[AccountOperation],
) {
    let api = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    for op in requested.iter().filter(|o| recorded.contains(&o.id)) {
        if let Err(e) = api.delete(&name(op), &DeleteParams::default()).await {
            tracing::warn!(error = %e, request = %name(op), "deleting a recorded ledger request failed");
        }
    }
    for (op, why) in refused {
        tracing::warn!(request = %name(op), why, "the ledger refused a request");
        let patch = serde_json::json!({ "data": { REFUSED: why } });
        if let Err(e) = api
            .patch(&name(op), &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(error = %e, request = %name(op), "marking a refused ledger request failed");
        }
    }
}
