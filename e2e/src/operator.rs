//! The operator and agents as real processes for end-to-end tests: `zop-operator run`
//! on the test cluster's kubeconfig with its gateway on a free local port, and
//! `zop-worker agent` processes joining through that gateway. Logs go to files under
//! the target directory, named after the test, so a failure can be read afterwards.

use crate::{ChildGuard, Env, bin_path, free_port, wait_until};
use anyhow::Context;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Name of the gateway's TLS Secret the operator generates.
pub const TLS_SECRET: &str = "zop-gateway-tls";

/// A running `zop-operator run`.
#[derive(Debug)]
pub struct Operator {
    /// The process.
    pub child: ChildGuard,
    /// Its namespace (keys, tokens, the TLS Secret).
    pub namespace: String,
    /// `https://localhost:PORT` of the gateway.
    pub gateway: String,
    /// `http://127.0.0.1:PORT` of metrics and health.
    pub metrics: String,
    /// The gateway's CA certificate (PEM), once [`Operator::start`] returns.
    pub ca_pem: Vec<u8>,
    /// Its log file.
    pub log: PathBuf,
}

/// Where a test's process logs go.
pub fn log_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/e2e-logs")
        .join(test);
    let _ = std::fs::create_dir_all(&dir);
    dir
}

fn log_file(path: &Path) -> anyhow::Result<(Stdio, Stdio)> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    Ok((Stdio::from(f.try_clone()?), Stdio::from(f)))
}

/// Seconds per epoch of every test's operator.
pub const EPOCH_SECONDS: u64 = 5;
/// Seconds after an epoch before it is settled.
pub const GRACE_SECONDS: u64 = 2;

impl Operator {
    /// Starts the operator with `extra` flags and waits until its health endpoint answers
    /// and its gateway serves HTTPS with the certificate it stored.
    pub async fn start(
        env: &Env,
        test: &str,
        namespace: &str,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        Self::start_on(env, test, namespace, free_port(), extra).await
    }

    /// As [`Operator::start`], on a given gateway port (a restart keeps its address).
    pub async fn start_on(
        env: &Env,
        test: &str,
        namespace: &str,
        gateway_port: u16,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        Self::start_on_ports(env, test, namespace, (gateway_port, free_port()), extra).await
    }

    /// As [`Operator::start_on`], with its metrics on a given port too (for a scraper
    /// configured before it starts).
    pub async fn start_on_ports(
        env: &Env,
        test: &str,
        namespace: &str,
        (gateway_port, metrics_port): (u16, u16),
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let log = log_dir(test).join("operator.log");
        let (out, err) = log_file(&log)?;
        let child = ChildGuard::spawn(
            Command::new(bin_path("zop-operator"))
                .arg("run")
                .args(["--namespace", namespace])
                .arg(format!("--metrics-bind=127.0.0.1:{metrics_port}"))
                .arg(format!("--gateway-bind=127.0.0.1:{gateway_port}"))
                .args(["--gateway-dns-name", "localhost"])
                // One schedule for every test's operator: the ledger seals the first
                // one it sees, and a later operator with another is refused.
                .arg(format!("--epoch-seconds={EPOCH_SECONDS}"))
                .arg(format!("--settlement-grace-seconds={GRACE_SECONDS}"))
                .args(extra)
                .env("KUBECONFIG", &env.kubeconfig)
                .env("RUST_LOG", "info,kube=warn")
                // A simulated GPU Node benchmarks its host's CPU and would be quarantined:
                // only the test of node benchmarks turns them on, with the flag.
                .env("ZOP_NODE_BENCHMARK_INTERVAL_SECONDS", "0")
                .stdout(out)
                .stderr(err),
        )?;
        let mut op = Self {
            child,
            namespace: namespace.to_string(),
            gateway: format!("https://localhost:{gateway_port}"),
            metrics: format!("http://127.0.0.1:{metrics_port}"),
            ca_pem: Vec::new(),
            log,
        };
        let secrets: Api<Secret> = Api::namespaced(env.client.clone(), namespace);
        let ca = wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
            let secrets = secrets.clone();
            async move {
                Ok(secrets
                    .get_opt(TLS_SECRET)
                    .await?
                    .and_then(|s| s.data)
                    .and_then(|d| d.get("tls.crt").map(|b| b.0.clone())))
            }
        })
        .await
        .with_context(|| {
            format!(
                "the gateway certificate never appeared; see {}",
                op.log.display()
            )
        })?;
        op.ca_pem = ca;
        let https = op.https_client()?;
        let url = format!("{}/healthz", op.gateway);
        let status = &mut op.child;
        wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
            let (https, url) = (https.clone(), url.clone());
            let exited = status.exited();
            async move {
                anyhow::ensure!(exited.is_none(), "the operator exited: {exited:?}");
                Ok(https
                    .get(&url)
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success()))
            }
        })
        .await
        .with_context(|| format!("the gateway never answered; see {}", op.log.display()))?;
        Ok(op)
    }

    /// The gateway's port.
    pub fn gateway_port(&self) -> u16 {
        self.gateway
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// An HTTPS client trusting only the gateway's certificate.
    pub fn https_client(&self) -> anyhow::Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&self.ca_pem)?)
            .timeout(Duration::from_secs(10))
            .build()?)
    }

    /// The operator's metrics, as exposition text.
    pub async fn scrape(&self) -> anyhow::Result<String> {
        Ok(reqwest::get(format!("{}/metrics", self.metrics))
            .await?
            .error_for_status()?
            .text()
            .await?)
    }

    /// Writes the gateway CA to `dir/ca.pem` for agents.
    pub fn write_ca(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.ca_pem)?;
        Ok(path)
    }
}

/// The sum of the samples of `metric` whose labels contain every `labels` pair (as
/// PromQL's `sum` would give over the other labels), or `None` when none does.
pub fn sample(exposition: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let values: Vec<f64> = exposition
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(metric)?;
            let (labelset, value) = match rest.strip_prefix('{') {
                Some(r) => r.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            labels
                .iter()
                .all(|(k, v)| labelset.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.split_whitespace().next()?.parse().ok())?
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// `kubectl zop group-key ARGS…` in namespace `ns` of the test cluster; its stdout.
pub fn group_key(env: &Env, ns: &str, args: &[&str]) -> String {
    let mut all = vec!["group-key", "--namespace", ns];
    all.extend(args);
    let out = crate::kubectl_zop(&env.kubeconfig, &all);
    assert!(out.ok, "kubectl zop group-key {args:?}: {}", out.stderr);
    out.stdout
}

/// `zop-worker agent` with a Group Key, a state directory and a host name, serving its
/// metrics on `127.0.0.1:metrics_port` when one is given.
pub fn spawn_agent(
    test: &str,
    gateway: &str,
    ca: &Path,
    key: &str,
    state_dir: &Path,
    hostname: &str,
    metrics_port: Option<u16>,
) -> anyhow::Result<ChildGuard> {
    let (out, err) = log_file(&log_dir(test).join(format!("agent-{hostname}.log")))?;
    let mut cmd = Command::new(bin_path("zop-worker"));
    cmd.arg("agent")
        .args(["--gateway", gateway])
        .arg("--ca-cert")
        .arg(ca)
        .arg("--state-dir")
        .arg(state_dir)
        .args(["--hostname", hostname, "--bench-ms", "300"])
        .env("ZOP_GROUP_KEY", key)
        .stdout(out)
        .stderr(err);
    if let Some(port) = metrics_port {
        cmd.args(["--metrics-bind", &format!("127.0.0.1:{port}")]);
    }
    ChildGuard::spawn(&mut cmd)
}

#[cfg(test)]
mod tests {
    use super::sample;

    #[test]
    fn samples_are_found_by_name_and_labels_and_summed() {
        let text = "# HELP x\nzop_devices{phase=\"Online\",class=\"gpu\"} 200\nzop_devices{phase=\"Offline\",class=\"gpu\"} 3\nplain 7\n";
        assert_eq!(
            sample(text, "zop_devices", &[("phase", "Online")]),
            Some(200.0)
        );
        assert_eq!(
            sample(text, "zop_devices", &[("phase", "Offline")]),
            Some(3.0)
        );
        assert_eq!(sample(text, "zop_devices", &[("phase", "Retired")]), None);
        // Series that differ in another label (the GPU model) add up.
        assert_eq!(
            sample(text, "zop_devices", &[("class", "gpu")]),
            Some(203.0)
        );
        assert_eq!(sample(text, "plain", &[]), Some(7.0));
    }
}
