//! What `kubectl zop` shows, as rows (printed as JSON or YAML with `-o`) and as tables.
//! Pure, so every table is snapshot-tested without a cluster.

use crate::api::{BaseUnits, ComputeTask, Device};
use kube::ResourceExt;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// One device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRow {
    /// Its name.
    pub name: String,
    /// Its provider.
    pub provider: String,
    /// `gpu`, `cpu` or `edge`.
    pub class: String,
    /// The first GPU's product name, or empty.
    pub model: String,
    /// The first GPU's VRAM.
    #[serde(rename = "vramMiB")]
    pub vram_mib: u64,
    /// Its phase.
    pub phase: String,
    /// Its measured benchmark score (GOP/s), `None` before its first benchmark.
    pub score: Option<u64>,
    /// Its reputation score.
    pub reputation: u32,
    /// Its load, percent.
    pub load: u32,
    /// Its provider's bonded stake, base units.
    pub stake: u64,
    /// What its provider earned in all (the ledger's rewards), base units; `None` when
    /// the ledger could not be read.
    pub provider_rewards: Option<u64>,
}

/// The rows of `devices`, sorted by name, with each provider's rewards from the ledger.
pub fn device_rows(devices: &[Device], rewards: Option<&BTreeMap<String, u64>>) -> Vec<DeviceRow> {
    let mut rows: Vec<DeviceRow> = devices
        .iter()
        .map(|d| {
            let status = d.status.clone().unwrap_or_default();
            let gpu = status.identification.as_ref().and_then(|i| i.gpus.first());
            DeviceRow {
                name: d.name_any(),
                provider: d.spec.provider.clone(),
                class: format!("{:?}", d.spec.class).to_lowercase(),
                model: gpu.map(|g| g.model.clone()).unwrap_or_default(),
                vram_mib: gpu.map_or(0, |g| g.vram_mib),
                phase: format!("{:?}", status.phase),
                score: status.benchmark.as_ref().map(|b| b.score),
                reputation: status.reputation.score,
                load: status.load,
                stake: status.stake.0,
                provider_rewards: rewards
                    .map(|r| r.get(&d.spec.provider).copied().unwrap_or_default()),
            }
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

/// `units` in CXT without the unit, for a column headed `(CXT)`.
fn cxt(units: u64) -> String {
    let (whole, frac) = BaseUnits(units).split();
    format!("{whole}.{frac:06}")
}

/// The devices table, then how many are in each phase.
pub fn devices_table(rows: &[DeviceRow]) -> String {
    let mut out = format!(
        "{:<28} {:<12} {:<5} {:<24} {:>9} {:<11} {:>9} {:>4} {:>5} {:>15} {:>18}\n",
        "NAME",
        "PROVIDER",
        "CLASS",
        "MODEL",
        "VRAM(MiB)",
        "PHASE",
        "GOP/S",
        "REP",
        "LOAD%",
        "STAKE(CXT)",
        "PROVIDER EARNED"
    );
    let mut phases: BTreeMap<&str, usize> = BTreeMap::new();
    for r in rows {
        *phases.entry(r.phase.as_str()).or_default() += 1;
        let _ = writeln!(
            out,
            "{:<28} {:<12} {:<5} {:<24} {:>9} {:<11} {:>9} {:>4} {:>5} {:>15} {:>18}",
            r.name,
            r.provider,
            r.class,
            if r.model.is_empty() { "-" } else { &r.model },
            r.vram_mib,
            r.phase,
            r.score.map_or("-".to_string(), |s| s.to_string()),
            r.reputation,
            r.load,
            cxt(r.stake),
            r.provider_rewards.map_or("-".to_string(), cxt),
        );
    }
    let summary: Vec<String> = phases.iter().map(|(p, n)| format!("{n} {p}")).collect();
    let _ = writeln!(out, "{} devices: {}", rows.len(), summary.join(", "));
    out
}

/// One task.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRow {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its workload type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its phase.
    pub phase: String,
    /// Fragments completed.
    pub completed: u32,
    /// Fragments in all.
    pub total: u32,
    /// Fragments verified.
    pub verified: u32,
    /// Fragments rejected.
    pub rejected: u32,
}

/// The rows of `tasks`, sorted by namespace and name.
pub fn task_rows(tasks: &[ComputeTask]) -> Vec<TaskRow> {
    let mut rows: Vec<TaskRow> = tasks
        .iter()
        .map(|t| {
            let s = t.status.clone().unwrap_or_default();
            let kind = serde_json::to_value(t.spec.workload).unwrap_or_default();
            TaskRow {
                namespace: t.namespace().unwrap_or_default(),
                name: t.name_any(),
                kind: kind.as_str().unwrap_or_default().to_string(),
                phase: format!("{:?}", s.phase),
                completed: s.fragments.completed,
                total: s.fragments.total,
                verified: s.fragments.verified,
                rejected: s.fragments.rejected,
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    rows
}

/// `[#####...............]  25%`: `done` of `total` in 20 cells.
pub fn progress_bar(done: u32, total: u32) -> String {
    const CELLS: u64 = 20;
    let (done, total) = (u64::from(done.min(total)), u64::from(total));
    let filled = (done * CELLS).checked_div(total).unwrap_or(0);
    let percent = (done * 100).checked_div(total).unwrap_or(0);
    format!(
        "[{}{}] {percent:>3}%",
        "#".repeat(filled as usize),
        ".".repeat((CELLS - filled) as usize)
    )
}

/// The tasks table with a progress bar each.
pub fn tasks_table(rows: &[TaskRow]) -> String {
    let mut out = format!(
        "{:<16} {:<24} {:<16} {:<10} {:<27} {:>9} {:>8}\n",
        "NAMESPACE", "NAME", "TYPE", "PHASE", "PROGRESS", "FRAGMENTS", "VERIFIED"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<16} {:<24} {:<16} {:<10} {:<27} {:>9} {:>8}",
            r.namespace,
            r.name,
            r.kind,
            r.phase,
            progress_bar(r.completed, r.total),
            format!("{}/{}", r.completed, r.total),
            r.verified,
        );
    }
    out
}

/// `kubectl zop describe-task`: the spec in brief, the status, the result, the
/// contributions and the conditions.
pub fn describe_task(t: &ComputeTask) -> String {
    let s = t.status.clone().unwrap_or_default();
    let spec = serde_json::to_value(&t.spec).unwrap_or_default();
    let kind = spec["type"].as_str().unwrap_or_default().to_string();
    let mut out = String::new();
    let _ = writeln!(out, "Name:         {}", t.name_any());
    let _ = writeln!(out, "Namespace:    {}", t.namespace().unwrap_or_default());
    let _ = writeln!(out, "Type:         {kind}");
    let params = &spec[json_key(&kind)];
    if !params.is_null() {
        let _ = writeln!(out, "Parameters:   {params}");
    }
    if !spec["requirements"].is_null() {
        let _ = writeln!(out, "Requirements: {}", spec["requirements"]);
    }
    let _ = writeln!(out, "Phase:        {:?}", s.phase);
    let f = &s.fragments;
    let _ = writeln!(
        out,
        "Progress:     {} {}/{}",
        progress_bar(f.completed, f.total),
        f.completed,
        f.total
    );
    let _ = writeln!(
        out,
        "Fragments:    {} pending, {} running, {} completed, {} verified, {} rejected, {} unverified, {} failed",
        f.pending, f.running, f.completed, f.verified, f.rejected, f.unverified, f.failed
    );
    if let Some(r) = &s.result {
        let _ = writeln!(out, "Result:       digest {}", r.digest);
        if let Some(loss) = r.loss {
            let _ = writeln!(out, "              loss {loss:.6}");
        }
        if let Some(acc) = r.accuracy {
            let _ = writeln!(out, "              accuracy {acc:.4}");
        }
    }
    if !s.contributions.is_empty() {
        let _ = writeln!(out, "Contributions:");
        let _ = writeln!(
            out,
            "  {:<32} {:>9} {:>10} {:>8}",
            "DEVICE", "FRAGMENTS", "WORK UNITS", "REJECTED"
        );
        for c in &s.contributions {
            let _ = writeln!(
                out,
                "  {:<32} {:>9} {:>10} {:>8}",
                c.device, c.fragments, c.work_units, c.rejected
            );
        }
    }
    if !s.conditions.is_empty() {
        let _ = writeln!(out, "Conditions:");
        for c in &s.conditions {
            let _ = writeln!(
                out,
                "  {} {} ({}): {}",
                c.type_, c.status, c.reason, c.message
            );
        }
    }
    out
}

/// The spec key of a workload's parameter block (`compute-proof` → `computeProof`).
fn json_key(kind: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in kind.chars() {
        if c == '-' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
#[path = "tables_tests.rs"]
mod tests;
