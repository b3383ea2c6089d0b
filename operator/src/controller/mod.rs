//! The thin shells around the pure core: kube-runtime controllers that read from
//! reflector stores (or, where a stale read would go unnoticed, the API server), call
//! `devices::*`, and write with server-side apply, conditional on the version they read
//! ([`apply_status`]). They own no state of their own; everything that matters is in the
//! API server.

pub mod benchmarks;
pub mod coalesce;
pub mod devices;
pub mod onboard;
pub mod scheduler;
pub mod settlement;
pub mod task_metrics;
pub mod tasks;

use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Recorder, Reporter};
use std::time::Duration;

/// The field manager of every write the controllers make.
pub const FIELD_MANAGER: &str = "zop-operator";

/// How soon a reconcile that read an object older than the API server's runs again:
/// the watch delivers the newer version within milliseconds.
pub const STALE_RETRY: Duration = Duration::from_millis(300);

/// Applies `status` to `obj` (server-side apply under [`FIELD_MANAGER`]) on the condition
/// that `obj` is still the version this reconcile read. A status computed from a stale
/// cache must not overwrite a newer one: its phase and conditions would turn back time.
/// `false` when the object changed meanwhile (retry after [`STALE_RETRY`]).
pub async fn apply_status<K>(
    api: &kube::Api<K>,
    obj: &K,
    status: serde_json::Value,
) -> Result<bool, Error>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    use kube::ResourceExt;
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": { "resourceVersion": obj.resource_version() },
        "status": status,
    });
    let params = kube::api::PatchParams::apply(FIELD_MANAGER).force();
    match api
        .patch_status(&obj.name_any(), &params, &kube::api::Patch::Apply(&patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Settings shared by the controllers.
#[derive(Debug, Clone)]
pub struct Config {
    /// Provider for labelled Nodes that carry no `zoptoken.io/provider` label.
    pub default_provider: Option<String>,
    /// Seconds without a heartbeat before an agent device is Offline.
    pub heartbeat_grace: i64,
    /// Longest interval between two writes of a device's online accounting.
    pub accounting_period: i64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            default_provider: None,
            heartbeat_grace: 30,
            accounting_period: 300,
        }
    }
}

/// Why a reconcile failed. `category` is a short fixed label for logs and metrics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An object lacks something it must have.
    #[error("invalid object: {0}")]
    Invalid(String),
}

impl Error {
    /// A low-cardinality category.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::Invalid(_) => "invalid",
        }
    }
}

/// Requeue after a failure: transient API errors back off briefly; an invalid object
/// waits for a change to it (or a long resync).
pub fn retry_after(err: &Error) -> Duration {
    match err {
        Error::Kube(_) => Duration::from_secs(5),
        Error::Invalid(_) => Duration::from_secs(300),
    }
}

/// The Event recorder of the operator.
pub fn recorder(client: kube::Client) -> Recorder {
    let instance = std::env::var("POD_NAME").ok();
    Recorder::new(
        client,
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance,
        },
    )
}

/// A reflector store fed by its own watcher in the background; wait for it with
/// `wait_until_ready` before trusting it.
pub fn spawn_store<K>(
    api: kube::Api<K>,
    cfg: kube::runtime::watcher::Config,
) -> kube::runtime::reflector::Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = kube::runtime::reflector::store();
    // Managed fields are never read here and can be most of an object's size.
    let objects = kube::runtime::watcher(api, cfg).modify(|o| o.meta_mut().managed_fields = None);
    tokio::spawn(
        kube::runtime::reflector(writer, objects)
            .default_backoff()
            .for_each(|event| {
                // A store that never fills holds up its readers: say why.
                if let Err(e) = event {
                    tracing::warn!(error = %e, kind = %K::kind(&()), "watch failed; retrying");
                }
                futures::future::ready(())
            }),
    );
    reader
}

/// The ServiceAccount and CA ConfigMap every Pod the operator runs on a node needs
/// (worker and benchmark Pods), in the operator's namespace; idempotent.
pub async fn ensure_worker_access(
    client: &kube::Client,
    namespace: &str,
    ca_pem: &str,
) -> Result<(), Error> {
    use crate::labels;
    use crate::tasks::worker_pod;
    use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
    use kube::api::{Patch, PatchParams};
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let sa = serde_json::json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": { "name": worker_pod::SERVICE_ACCOUNT, "labels": { labels::MANAGED_BY: labels::MANAGER } },
        "automountServiceAccountToken": false,
    });
    kube::Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .patch(worker_pod::SERVICE_ACCOUNT, &pp, &Patch::Apply(&sa))
        .await?;
    let ca = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": worker_pod::CA_CONFIG_MAP, "labels": { labels::MANAGED_BY: labels::MANAGER } },
        "data": { worker_pod::CA_KEY: ca_pem },
    });
    kube::Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .patch(worker_pod::CA_CONFIG_MAP, &pp, &Patch::Apply(&ca))
        .await?;
    Ok(())
}
