//! Reconciliation's measurements, from the Prometheus HTTP API (`/api/v1/query`): the
//! operator's count of payable work per provider, and the workers' count of executed
//! work and busy seconds per provider (scrape targets labelled `zop_provider`), each as
//! `increase` over the span at the epoch's end (`@`), so a late query reads the same
//! figures.

use crate::ledger::reconcile::Measured;
use anyhow::Context;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A client of one Prometheus server.
#[derive(Debug, Clone)]
pub struct Prometheus {
    http: reqwest::Client,
    url: String,
    queries: Counter,
    seconds: Histogram,
}

#[derive(Deserialize)]
struct Response {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    result: Vec<Sample>,
}

#[derive(Deserialize)]
struct Sample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

impl Prometheus {
    /// A client of the server at `url` (for example `http://127.0.0.1:9090`), counting its
    /// queries in `registry`.
    pub fn new(url: &str, registry: &mut Registry) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the Prometheus client")?;
        let p = Self {
            http,
            url: url.trim_end_matches('/').to_string(),
            queries: Counter::default(),
            seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
        };
        registry.register(
            "reconciliation_queries",
            "Queries settlement sent to Prometheus",
            p.queries.clone(),
        );
        registry.register(
            "reconciliation_query_seconds",
            "Seconds each reconciliation query to Prometheus took",
            p.seconds.clone(),
        );
        Ok(p)
    }

    /// One instant query at `at` (Unix seconds): value by the `by` label.
    async fn query(&self, q: &str, by: &str, at: f64) -> anyhow::Result<BTreeMap<String, f64>> {
        let started = Instant::now();
        self.queries.inc();
        let resp: Response = self
            .http
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", q), ("time", &format!("{at:.3}"))])
            .send()
            .await
            .with_context(|| format!("querying Prometheus at {}", self.url))?
            .json()
            .await
            .context("reading Prometheus's answer")?;
        self.seconds.observe(started.elapsed().as_secs_f64());
        anyhow::ensure!(
            resp.status == "success",
            "Prometheus refused `{q}`: {}",
            resp.error.unwrap_or_default()
        );
        Ok(resp
            .data
            .map(|d| d.result)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| Some((s.metric.get(by)?.clone(), s.value.1.parse().ok()?)))
            .collect())
    }

    /// The counts and the busy seconds over the `span_s` seconds ending at `end_ms`.
    pub async fn measure(&self, span_s: u64, end_ms: i64) -> anyhow::Result<Measured> {
        let at = end_ms as f64 / 1000.0;
        let span = span_s.max(1);
        let operator = self
            .query(
                &format!("sum by (provider) (increase(zop_payable_work_units_total[{span}s]))"),
                "provider",
                at,
            )
            .await?;
        let workers = self
            .query(
                &format!("sum by (zop_provider) (increase(zop_worker_work_units_total[{span}s]))"),
                "zop_provider",
                at,
            )
            .await?;
        let seconds = self
            .query(
                &format!(
                    "sum by (zop_provider) (increase(zop_worker_fragment_seconds_total[{span}s]))"
                ),
                "zop_provider",
                at,
            )
            .await?;
        Ok(Measured {
            operator,
            workers,
            seconds,
        })
    }
}
