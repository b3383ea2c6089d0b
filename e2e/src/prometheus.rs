//! A real Prometheus (Debian's package, fetched by `e2e/scripts/tools.sh` into
//! `$ZOP_PROMETHEUS`) on 127.0.0.1, scraping the targets a test names every second.

use crate::{ChildGuard, wait_until};
use anyhow::Context;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A running Prometheus; stopped when dropped.
#[derive(Debug)]
pub struct Prometheus {
    /// Its base URL.
    pub url: String,
    _child: ChildGuard,
}

/// One scrape target: `host:port` and the `zop_provider` label, if any.
#[derive(Debug)]
pub struct Target<'a> {
    /// `host:port` of a `/metrics` endpoint.
    pub address: String,
    /// The provider whose worker it is.
    pub provider: Option<&'a str>,
}

impl Prometheus {
    /// Starts Prometheus on `port` with its data under `dir`, scraping `targets`, and
    /// waits until it is ready; an error naming `$ZOP_PROMETHEUS` when it is not set.
    pub async fn start(dir: &Path, port: u16, targets: &[Target<'_>]) -> anyhow::Result<Self> {
        let bin = std::env::var("ZOP_PROMETHEUS")
            .context("ZOP_PROMETHEUS is not set: run through e2e/test (tools.sh env)")?;
        std::fs::create_dir_all(dir)?;
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for (i, t) in targets.iter().enumerate() {
            config.push_str(&format!(
                "  - job_name: t{i}\n    static_configs:\n      - targets: ['{}']\n",
                t.address
            ));
            if let Some(p) = t.provider {
                config.push_str(&format!("        labels:\n          zop_provider: {p}\n"));
            }
        }
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config)?;
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let child = ChildGuard::spawn(
            Command::new(bin)
                .arg(format!("--config.file={}", file.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("tsdb").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(log),
        )?;
        let url = format!("http://127.0.0.1:{port}");
        let ready = format!("{url}/-/ready");
        wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
            let ready = ready.clone();
            async move {
                Ok(reqwest::get(&ready)
                    .await
                    .ok()
                    .filter(|r| r.status().is_success()))
            }
        })
        .await
        .context("Prometheus never became ready")?;
        Ok(Self { url, _child: child })
    }

    /// Evaluates `expr` now: the number of series it returns, or Prometheus's error.
    pub async fn series(&self, expr: &str) -> anyhow::Result<usize> {
        let body: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(
            body["status"] == "success",
            "Prometheus refused `{expr}`: {}",
            body["error"]
        );
        Ok(body["data"]["result"].as_array().map_or(0, Vec::len))
    }
}
