//! The chart's monitoring against the real Prometheus of the settlement test:
//! `promtool check rules` passes on the alerts, every dashboard expression returns series,
//! and every alert expression evaluates, with every metric it reads present.

use std::path::Path;
use zop_e2e::prometheus::Prometheus;

fn files() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/zoptoken/files")
}

/// Every `zop_…` metric name an expression reads.
fn metrics_of(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("zop_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

pub async fn dashboards_and_alerts_evaluate(prometheus: &Prometheus) {
    let promtool = std::env::var("ZOP_PROMTOOL")
        .expect("ZOP_PROMTOOL is not set: eval \"$(e2e/scripts/tools.sh env)\"");
    let alerts = files().join("alerts.yaml");
    let out = std::process::Command::new(promtool)
        .args(["check", "rules"])
        .arg(&alerts)
        .output()
        .expect("running promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check rules: {said}");

    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(files().join("dashboard.json")).unwrap())
            .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    for target in panels.iter().flat_map(|p| p["targets"].as_array().unwrap()) {
        let expr = target["expr"].as_str().unwrap();
        let n = prometheus.series(expr).await.unwrap();
        assert!(n > 0, "the dashboard expression `{expr}` returns no series");
    }
    let rules: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&alerts).unwrap()).unwrap();
    let mut count = 0;
    for rule in rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
    {
        let expr = rule["expr"].as_str().unwrap();
        prometheus.series(expr).await.unwrap();
        for metric in metrics_of(expr) {
            let n = prometheus.series(&metric).await.unwrap();
            assert!(n > 0, "alert {}: {metric} has no series", rule["alert"]);
        }
        count += 1;
    }
    eprintln!(
        "FIGURE settlement: promtool: {}; {} dashboard panels returned series; {count} alert expressions evaluated, every metric they read present",
        said.trim().replace('\n', " "),
        panels.len()
    );
}
