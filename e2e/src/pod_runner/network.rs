//! What a pod would get from its node's network and its service-account mount, for
//! processes that all share this host:
//! - **its own address**: each pod gets a loopback address of its own (`127.0.x.y`), and
//!   the environment values named in [`RunnerOptions::pod_address_env`] that bind all
//!   interfaces (`0.0.0.0:PORT`) bind that address instead, so two replicas of one
//!   Deployment can listen on the same port, as they would on two pod IPs;
//! - **in-cluster access**: a container that mounts the service-account directory gets a
//!   kubeconfig (`KUBECONFIG`) naming the API server, its CA and the token the runner
//!   materialized there from the TokenRequest API, so it talks to the API server as its
//!   own ServiceAccount, with exactly that account's RBAC.

use super::*;
use std::net::Ipv4Addr;

/// Where the in-cluster service-account token, CA and namespace are mounted.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The API server pods reach, as the cluster's kubeconfig names it.
#[derive(Debug, Clone)]
pub struct ApiServer {
    /// Its URL.
    pub server: String,
    /// The PEM of the CA its certificate is checked against.
    pub ca_pem: Vec<u8>,
}

/// The loopback address of the `k`-th pod: `127.0.1.1`, `127.0.1.2`, … (250 a block).
pub(super) fn address_of(k: u32) -> Ipv4Addr {
    let block = u8::try_from(1 + k / 250).unwrap_or(u8::MAX);
    Ipv4Addr::new(127, 0, block, (1 + k % 250) as u8)
}

/// `value` with a leading `0.0.0.0:` replaced by `addr:`.
pub(super) fn bind_to(value: &str, addr: Ipv4Addr) -> String {
    match value.strip_prefix("0.0.0.0:") {
        Some(port) => format!("{addr}:{port}"),
        None => value.to_string(),
    }
}

/// The kubeconfig of a pod's service account: `server` and `ca` with the token file.
pub(super) fn kubeconfig(server: &str, ca: &Path, token: &Path, namespace: &str) -> String {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "in-cluster", "cluster": {
            "server": server,
            "certificate-authority": ca,
        }}],
        "users": [{ "name": "service-account", "user": { "tokenFile": token } }],
        "contexts": [{ "name": "in-cluster", "context": {
            "cluster": "in-cluster",
            "user": "service-account",
            "namespace": namespace,
        }}],
        "current-context": "in-cluster",
    })
    .to_string()
}

/// Applies both to a prepared pod: rewrites its binds to its address (recorded in
/// `shared`) and, when it mounts the service-account directory, points `KUBECONFIG` at a
/// kubeconfig written into `pod_dir`.
pub(super) fn apply(
    shared: &Shared,
    (namespace, name): (&str, &str),
    mounts: &[(String, PathBuf)],
    env: &mut BTreeMap<String, String>,
    pod_dir: &Path,
) -> Result<(), RunError> {
    if !shared.opts.pod_address_env.is_empty() {
        let addr = shared.address(namespace, name);
        for name in &shared.opts.pod_address_env {
            if let Some(v) = env.get_mut(name) {
                *v = bind_to(v, addr);
            }
        }
    }
    let (Some(api), Some((_, dir))) = (
        &shared.opts.api_server,
        mounts
            .iter()
            .find(|(m, _)| m.trim_end_matches('/') == SERVICE_ACCOUNT_DIR),
    ) else {
        return Ok(());
    };
    let start = |m: String| RunError::Start(m);
    let ca = pod_dir.join("api-server-ca.crt");
    std::fs::write(&ca, &api.ca_pem)
        .map_err(|e| start(format!("writing {}: {e}", ca.display())))?;
    let config = pod_dir.join("kubeconfig");
    let text = kubeconfig(&api.server, &ca, &dir.join("token"), namespace);
    std::fs::write(&config, text)
        .map_err(|e| start(format!("writing {}: {e}", config.display())))?;
    env.insert("KUBECONFIG".into(), config.to_string_lossy().into_owned());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_get_distinct_loopback_addresses_and_binds_follow() {
        assert_eq!(address_of(0), Ipv4Addr::new(127, 0, 1, 1));
        assert_eq!(address_of(249), Ipv4Addr::new(127, 0, 1, 250));
        assert_eq!(address_of(250), Ipv4Addr::new(127, 0, 2, 1));
        let a = address_of(3);
        assert_eq!(bind_to("0.0.0.0:8443", a), "127.0.1.4:8443");
        assert_eq!(bind_to("127.0.0.1:0", a), "127.0.0.1:0");
        let k: serde_json::Value = serde_json::from_str(&kubeconfig(
            "https://127.0.0.1:6443",
            Path::new("/p/ca"),
            Path::new("/p/token"),
            "ns",
        ))
        .unwrap();
        assert_eq!(k["users"][0]["user"]["tokenFile"], "/p/token");
        assert_eq!(k["contexts"][0]["context"]["namespace"], "ns");
    }
}
