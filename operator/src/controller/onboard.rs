//! Onboarding of labelled Nodes: each Node labelled `zoptoken.io/onboard=true` gets a
//! Device of the same name. This controller only ensures the Device exists with the
//! right spec; the device controller owns its status.

use super::{Config, Error, FIELD_MANAGER, retry_after};
use crate::api::Device;
use crate::devices::identify::node_facts;
use crate::labels;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

struct Ctx {
    client: Client,
    config: Config,
}

/// Runs until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let nodes: Api<Node> = Api::all(client.clone());
    let selector = format!("{}=true", labels::ONBOARD);
    let ctx = Arc::new(Ctx { client, config });
    Controller::new(nodes, watcher::Config::default().labels(&selector))
        .graceful_shutdown_on(shutdown)
        .run(
            reconcile,
            |_, err, _| Action::requeue(retry_after(err)),
            ctx,
        )
        .for_each(|res| async move {
            if let Err(err) = res {
                tracing::warn!(error = %err, "onboarding failed");
            }
        })
        .await;
}

/// The Device spec for a Node, or why there is none.
pub fn device_spec(
    node: &Node,
    default_provider: Option<&str>,
) -> Result<serde_json::Value, Error> {
    let facts = node_facts(node);
    let provider = facts
        .provider
        .or_else(|| default_provider.map(str::to_owned))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "node {} has no {} label and the operator has no default provider",
                node.name_any(),
                labels::PROVIDER
            ))
        })?;
    Ok(json!({
        "provider": provider,
        "source": { "node": { "name": node.name_any() } },
        "class": facts.class,
    }))
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let spec = device_spec(&node, ctx.config.default_provider.as_deref())?;
    let devices: Api<Device> = Api::all(ctx.client.clone());
    let patch = json!({
        "apiVersion": "zoptoken.io/v1alpha1",
        "kind": "Device",
        "metadata": {
            "name": node.name_any(),
            "labels": { labels::MANAGED_BY: labels::MANAGER },
        },
        "spec": spec,
    });
    devices
        .patch(
            &node.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(Action::requeue(Duration::from_secs(3600)))
}
