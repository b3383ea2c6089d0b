//! Simulated nodes: the GPU models they stand for, the deterministic plan that names
//! them for a model mix, the Node objects (NVIDIA GPU-feature-discovery labels and
//! `nvidia.com/gpu` capacity) and their creation with bounded concurrency.
//!
//! The kwok controller started by kwokctl manages every Node, marks it Ready and keeps
//! its heartbeat; nothing here runs on the nodes.

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{Node, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Every simulated node carries this label; its value is the model key (`h100`, `cpu`).
pub const MODEL_LABEL: &str = "e2e.zoptoken.io/model";
/// The field manager that owns simulated nodes.
pub const FIELD_MANAGER: &str = "zop-cluster";
/// The mix used when none is given.
pub const DEFAULT_MIX: &str = "h100=4,a100=3,l4=2,rtx4090=1,cpu=1";
/// The NVIDIA driver every simulated GPU node reports, and the CUDA version it supports.
pub const DRIVER_VERSION: (u32, u32, u32) = (570, 133, 20);
/// CUDA runtime version reported with [`DRIVER_VERSION`].
pub const CUDA_RUNTIME: (u32, u32) = (12, 8);

/// What a GPU model looks like to GPU-feature-discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuSpec {
    /// `nvidia.com/gpu.product` as GFD writes it (spaces replaced by dashes).
    pub product: &'static str,
    /// `nvidia.com/gpu.memory`: VRAM per GPU in MiB.
    pub memory_mib: u32,
    /// Compute capability (major, minor).
    pub compute: (u32, u32),
    /// `nvidia.com/gpu.family`.
    pub family: &'static str,
    /// GPUs per node.
    pub count: u32,
    /// `nvidia.com/gpu.machine`.
    pub machine: &'static str,
}

/// A kind of simulated node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Model {
    /// 8x NVIDIA H100 80GB HBM3.
    H100,
    /// 8x NVIDIA A100-SXM4-40GB.
    A100,
    /// 4x NVIDIA L4.
    L4,
    /// 1x NVIDIA GeForce RTX 4090.
    Rtx4090,
    /// No GPU.
    Cpu,
}

impl Model {
    /// Every model, in display order.
    pub const ALL: [Model; 5] = [
        Model::H100,
        Model::A100,
        Model::L4,
        Model::Rtx4090,
        Model::Cpu,
    ];

    /// The key used in mixes, node names and [`MODEL_LABEL`].
    pub fn key(self) -> &'static str {
        match self {
            Model::H100 => "h100",
            Model::A100 => "a100",
            Model::L4 => "l4",
            Model::Rtx4090 => "rtx4090",
            Model::Cpu => "cpu",
        }
    }

    /// The GPUs of this model's nodes; `None` for CPU-only nodes.
    pub fn gpu(self) -> Option<GpuSpec> {
        let spec = |product, memory_mib, compute, family, count, machine| GpuSpec {
            product,
            memory_mib,
            compute,
            family,
            count,
            machine,
        };
        match self {
            Model::H100 => Some(spec(
                "NVIDIA-H100-80GB-HBM3",
                81559,
                (9, 0),
                "hopper",
                8,
                "DGX-H100",
            )),
            Model::A100 => Some(spec(
                "NVIDIA-A100-SXM4-40GB",
                40960,
                (8, 0),
                "ampere",
                8,
                "DGX-A100",
            )),
            Model::L4 => Some(spec(
                "NVIDIA-L4",
                23034,
                (8, 9),
                "ada-lovelace",
                4,
                "g2-standard-48",
            )),
            Model::Rtx4090 => Some(spec(
                "NVIDIA-GeForce-RTX-4090",
                24564,
                (8, 9),
                "ada-lovelace",
                1,
                "workstation",
            )),
            Model::Cpu => None,
        }
    }

    /// CPU cores and memory (GiB) of this model's nodes.
    pub fn host(self) -> (u32, u32) {
        match self {
            Model::H100 => (224, 2048),
            Model::A100 => (256, 1024),
            Model::L4 => (48, 192),
            Model::Rtx4090 => (32, 128),
            Model::Cpu => (64, 256),
        }
    }

    /// The name of the `index`th node (1-based) of this model: `gpu-h100-0001`, `cpu-0001`.
    pub fn node_name(self, index: u32) -> String {
        match self {
            Model::Cpu => format!("cpu-{index:04}"),
            m => format!("gpu-{}-{index:04}", m.key()),
        }
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.key())
    }
}

impl FromStr for Model {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Model::ALL
            .into_iter()
            .find(|m| m.key() == s)
            .with_context(|| format!("unknown model '{s}' (known: h100, a100, l4, rtx4090, cpu)"))
    }
}

/// Models with relative weights, e.g. `h100=4,a100=3,l4=2,rtx4090=1,cpu=1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix(Vec<(Model, u32)>);

impl FromStr for Mix {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let mut parts = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (model, weight) = part.split_once('=').unwrap_or((part, "1"));
            let model: Model = model.trim().parse()?;
            let weight: u32 = weight
                .trim()
                .parse()
                .with_context(|| format!("mix '{s}': weight of {model} is not a number"))?;
            if parts.iter().any(|(m, _)| *m == model) {
                bail!("mix '{s}': {model} appears twice");
            }
            if weight > 0 {
                parts.push((model, weight));
            }
        }
        if parts.is_empty() {
            bail!("mix '{s}' has no model with a positive weight");
        }
        Ok(Mix(parts))
    }
}

impl Default for Mix {
    fn default() -> Self {
        DEFAULT_MIX.parse().unwrap_or(Mix(vec![(Model::H100, 1)]))
    }
}

impl Mix {
    /// Parses a mix such as `h100=4,a100=3,l4=2,rtx4090=1,cpu=1`.
    pub fn parse(s: &str) -> Result<Self> {
        s.parse()
    }

    /// The first `n` nodes of this mix as (model, 1-based index within the model).
    /// Smooth weighted round-robin, so models interleave and the plan for `n` is a prefix
    /// of the plan for any larger `n`: growing a cluster never renames a node.
    pub fn plan(&self, n: usize) -> Vec<(Model, u32)> {
        let total: i64 = self.0.iter().map(|(_, w)| i64::from(*w)).sum();
        let mut current = vec![0i64; self.0.len()];
        let mut next_index: BTreeMap<Model, u32> = BTreeMap::new();
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            for (c, (_, w)) in current.iter_mut().zip(&self.0) {
                *c += i64::from(*w);
            }
            let pick = (0..current.len())
                .max_by_key(|&i| (current[i], std::cmp::Reverse(i)))
                .unwrap_or(0);
            current[pick] -= total;
            let model = self.0[pick].0;
            let index = next_index.entry(model).or_insert(0);
            *index += 1;
            out.push((model, *index));
        }
        out
    }
}

fn quantities(pairs: &[(&str, String)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.clone())))
        .collect()
}

/// The Node object for the `index`th (1-based) node of `model`: GFD labels and
/// `nvidia.com/gpu` capacity and allocatable on GPU nodes, none on CPU-only nodes.
pub fn node_manifest(model: Model, index: u32) -> Node {
    let name = model.node_name(index);
    let (cpu, mem_gib) = model.host();
    let mut labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", name.clone()),
        ("kubernetes.io/os", "linux".into()),
        ("kubernetes.io/arch", "amd64".into()),
        ("node.kubernetes.io/instance-type", model.key().into()),
        ("type", "kwok".into()),
        (MODEL_LABEL, model.key().into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut resources = vec![
        ("cpu", cpu.to_string()),
        ("memory", format!("{mem_gib}Gi")),
        ("pods", "110".to_string()),
        ("ephemeral-storage", "1Ti".to_string()),
    ];
    if let Some(gpu) = model.gpu() {
        let (d_major, d_minor, d_rev) = DRIVER_VERSION;
        let (r_major, r_minor) = CUDA_RUNTIME;
        let gfd = [
            ("nvidia.com/gpu.present", "true".to_string()),
            ("nvidia.com/gpu.product", gpu.product.into()),
            ("nvidia.com/gpu.memory", gpu.memory_mib.to_string()),
            ("nvidia.com/gpu.count", gpu.count.to_string()),
            ("nvidia.com/gpu.compute.major", gpu.compute.0.to_string()),
            ("nvidia.com/gpu.compute.minor", gpu.compute.1.to_string()),
            ("nvidia.com/gpu.family", gpu.family.into()),
            ("nvidia.com/gpu.machine", gpu.machine.into()),
            ("nvidia.com/gpu.mode", "compute".into()),
            ("nvidia.com/gpu.replicas", "1".into()),
            ("nvidia.com/gpu.sharing-strategy", "none".into()),
            (
                "nvidia.com/cuda.driver-version.full",
                format!("{d_major}.{d_minor}.{d_rev}"),
            ),
            ("nvidia.com/cuda.driver-version.major", d_major.to_string()),
            ("nvidia.com/cuda.driver-version.minor", d_minor.to_string()),
            ("nvidia.com/cuda.driver-version.revision", d_rev.to_string()),
            (
                "nvidia.com/cuda.runtime-version.full",
                format!("{r_major}.{r_minor}"),
            ),
            ("nvidia.com/cuda.runtime-version.major", r_major.to_string()),
            ("nvidia.com/cuda.runtime-version.minor", r_minor.to_string()),
        ];
        labels.extend(gfd.into_iter().map(|(k, v)| (k.to_string(), v)));
        resources.push(("nvidia.com/gpu", gpu.count.to_string()));
    }
    let mut node = Node::default();
    node.metadata.name = Some(name);
    node.metadata.labels = Some(labels);
    node.metadata.annotations = Some(BTreeMap::from([(
        "kwok.x-k8s.io/node".to_string(),
        "fake".to_string(),
    )]));
    node.status = Some(NodeStatus {
        capacity: Some(quantities(&resources)),
        allocatable: Some(quantities(&resources)),
        node_info: Some(NodeSystemInfo {
            architecture: "amd64".into(),
            operating_system: "linux".into(),
            os_image: "Ubuntu 24.04.2 LTS".into(),
            kernel_version: "6.8.0-60-generic".into(),
            kubelet_version: crate::K8S_VERSION.into(),
            container_runtime_version: "kwok://v0.8.0".into(),
            ..NodeSystemInfo::default()
        }),
        ..NodeStatus::default()
    });
    node
}

/// Whether the Node's Ready condition is True.
pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// What [`scale_nodes`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScaleReport {
    /// Nodes created.
    pub created: usize,
    /// Existing nodes re-applied.
    pub updated: usize,
    /// Simulated nodes beyond the plan, deleted.
    pub deleted: usize,
}

/// Makes the cluster's simulated nodes exactly the first `n` nodes of `mix`, with `extra`
/// labels, by server-side apply with at most `concurrency` requests in flight.
pub async fn scale_nodes(
    client: &Client,
    n: usize,
    mix: &Mix,
    extra: &BTreeMap<String, String>,
    concurrency: usize,
) -> Result<ScaleReport> {
    let api: Api<Node> = Api::all(client.clone());
    let existing: BTreeSet<String> = api
        .list_metadata(&ListParams::default().labels(MODEL_LABEL))
        .await
        .context("listing simulated nodes")?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    let desired: Vec<Node> = mix
        .plan(n)
        .into_iter()
        .map(|(model, index)| {
            let mut node = node_manifest(model, index);
            if let Some(labels) = node.metadata.labels.as_mut() {
                labels.extend(extra.clone());
            }
            node
        })
        .collect();
    let wanted: BTreeSet<String> = desired
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let mut report = ScaleReport::default();
    let results: Vec<bool> = stream::iter(desired)
        .map(|node| {
            let (api, pp) = (api.clone(), pp.clone());
            let exists = existing.contains(node.metadata.name.as_deref().unwrap_or_default());
            async move {
                let name = node.metadata.name.clone().unwrap_or_default();
                // Applying to a Node that does not exist creates it with its status; on an
                // existing Node the status is only written through the status subresource.
                api.patch(&name, &pp, &Patch::Apply(&node))
                    .await
                    .with_context(|| format!("applying node {name}"))?;
                if exists {
                    let status = serde_json::json!({
                        "apiVersion": "v1", "kind": "Node", "status": node.status,
                    });
                    api.patch_status(&name, &pp, &Patch::Apply(&status))
                        .await
                        .with_context(|| format!("applying the status of node {name}"))?;
                }
                anyhow::Ok(exists)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    report.updated = results.iter().filter(|e| **e).count();
    report.created = results.len() - report.updated;
    let extra_nodes: Vec<&String> = existing.difference(&wanted).collect();
    report.deleted = extra_nodes.len();
    stream::iter(extra_nodes)
        .map(|name| {
            let api = api.clone();
            async move {
                match api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                    Err(e) => Err(e).with_context(|| format!("deleting node {name}")),
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(report)
}

/// Waits until exactly `expected` simulated nodes exist and all are Ready; returns how
/// long it took.
pub async fn wait_nodes_ready(
    client: &Client,
    expected: usize,
    timeout: Duration,
) -> Result<Duration> {
    let api: Api<Node> = Api::all(client.clone());
    let lp = ListParams::default().labels(MODEL_LABEL);
    let start = std::time::Instant::now();
    loop {
        let nodes = api
            .list(&lp)
            .await
            .context("listing simulated nodes")?
            .items;
        let ready = nodes.iter().filter(|n| is_ready(n)).count();
        if nodes.len() == expected && ready == expected {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!(
                "{ready} of {} simulated nodes Ready (expected {expected}) after {timeout:?}",
                nodes.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Simulated and other nodes by model, with their Ready counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSummary {
    /// (model or `other`, GPU product or `-`, nodes, Ready nodes, GPUs).
    pub rows: Vec<(String, String, usize, usize, u64)>,
}

impl NodeSummary {
    /// Summarizes a list of nodes.
    pub fn of(nodes: &[Node]) -> Self {
        let mut by: BTreeMap<(usize, String, String), (usize, usize, u64)> = BTreeMap::new();
        for node in nodes {
            let labels = node.metadata.labels.clone().unwrap_or_default();
            let model = labels
                .get(MODEL_LABEL)
                .cloned()
                .unwrap_or_else(|| "other".into());
            let order = Model::ALL
                .iter()
                .position(|m| m.key() == model)
                .unwrap_or(usize::MAX);
            let product = labels
                .get("nvidia.com/gpu.product")
                .cloned()
                .unwrap_or_else(|| "-".into());
            let gpus = node
                .status
                .as_ref()
                .and_then(|s| s.allocatable.as_ref())
                .and_then(|a| a.get("nvidia.com/gpu"))
                .and_then(|q| q.0.parse::<u64>().ok())
                .unwrap_or(0);
            let row = by.entry((order, model, product)).or_default();
            row.0 += 1;
            row.1 += usize::from(is_ready(node));
            row.2 += gpus;
        }
        NodeSummary {
            rows: by
                .into_iter()
                .map(|((_, m, p), (n, r, g))| (m, p, n, r, g))
                .collect(),
        }
    }

    /// Total nodes and Ready nodes.
    pub fn totals(&self) -> (usize, usize, u64) {
        self.rows.iter().fold((0, 0, 0), |(n, r, g), row| {
            (n + row.2, r + row.3, g + row.4)
        })
    }
}

impl fmt::Display for NodeSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<9} {:<25} {:>6} {:>6} {:>6}",
            "MODEL", "GPU", "NODES", "READY", "GPUS"
        )?;
        for (model, product, n, r, g) in &self.rows {
            writeln!(f, "{model:<9} {product:<25} {n:>6} {r:>6} {g:>6}")?;
        }
        let (n, r, g) = self.totals();
        write!(f, "{:<9} {:<25} {n:>6} {r:>6} {g:>6}", "total", "")
    }
}

/// Waits (up to `timeout`) until every node of `names` is an Online Device: the operator
/// has onboarded them all.
pub async fn wait_devices_online<'a>(
    client: &Client,
    names: impl IntoIterator<Item = &'a String> + Clone,
    timeout: Duration,
) {
    use zop_operator::api::{Device, DevicePhase};
    let wanted: BTreeSet<&String> = names.into_iter().collect();
    crate::wait_for(
        &format!("{} nodes Online as Devices", wanted.len()),
        timeout,
        Duration::from_millis(300),
        || async {
            let online = Api::<Device>::all(client.clone())
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|d| d.metadata.name.as_ref().is_some_and(|n| wanted.contains(n)))
                .filter(|d| {
                    d.status
                        .as_ref()
                        .is_some_and(|s| s.phase == DevicePhase::Online)
                })
                .count();
            (online == wanted.len()).then_some(())
        },
    )
    .await;
}

/// Creates `n` extra simulated nodes of `mix`, named `<prefix>-<model node name>`, with
/// `extra` labels and without [`MODEL_LABEL`] (so `scale_nodes` leaves them alone), and
/// waits until they are Ready. Returns each node's GPU product (`-` for CPU nodes).
pub async fn create_extra_nodes(
    client: &Client,
    prefix: &str,
    mix: &Mix,
    n: usize,
    extra: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    let api: Api<Node> = Api::all(client.clone());
    let nodes: Vec<Node> = mix
        .plan(n)
        .into_iter()
        .map(|(model, index)| {
            let mut node = node_manifest(model, index);
            node.metadata.name = Some(format!("{prefix}-{}", model.node_name(index)));
            if let Some(l) = node.metadata.labels.as_mut() {
                l.remove(MODEL_LABEL);
                l.extend(extra.clone());
            }
            node
        })
        .collect();
    let products: BTreeMap<String, String> = nodes
        .iter()
        .map(|n| {
            let labels = n.metadata.labels.clone().unwrap_or_default();
            let product = labels.get("nvidia.com/gpu.product").cloned();
            (
                n.metadata.name.clone().unwrap_or_default(),
                product.unwrap_or_else(|| "-".into()),
            )
        })
        .collect();
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    stream::iter(nodes)
        .map(|node| {
            let (api, pp) = (api.clone(), pp.clone());
            async move {
                let name = node.metadata.name.clone().unwrap_or_default();
                api.patch(&name, &pp, &Patch::Apply(&node))
                    .await
                    .with_context(|| format!("creating node {name}"))
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    let start = std::time::Instant::now();
    loop {
        let ready = api
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|n| products.contains_key(n.metadata.name.as_deref().unwrap_or_default()))
            .filter(|n| is_ready(n))
            .count();
        if ready == products.len() {
            return Ok(products);
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("{ready} of {} extra nodes Ready after 120s", products.len());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
        node.metadata.labels.as_ref()?.get(key).map(String::as_str)
    }

    #[test]
    fn h100_node_carries_gfd_labels_and_gpu_capacity() {
        let node = node_manifest(Model::H100, 1);
        assert_eq!(node.metadata.name.as_deref(), Some("gpu-h100-0001"));
        assert_eq!(
            label(&node, "nvidia.com/gpu.product"),
            Some("NVIDIA-H100-80GB-HBM3")
        );
        assert_eq!(label(&node, "nvidia.com/gpu.memory"), Some("81559"));
        assert_eq!(label(&node, "nvidia.com/gpu.count"), Some("8"));
        assert_eq!(label(&node, "nvidia.com/gpu.compute.major"), Some("9"));
        assert_eq!(label(&node, "nvidia.com/gpu.compute.minor"), Some("0"));
        assert_eq!(label(&node, "nvidia.com/gpu.family"), Some("hopper"));
        assert_eq!(
            label(&node, "nvidia.com/cuda.driver-version.full"),
            Some("570.133.20")
        );
        let status = node.status.unwrap();
        for r in [status.capacity.unwrap(), status.allocatable.unwrap()] {
            assert_eq!(r["nvidia.com/gpu"].0, "8");
            assert_eq!(r["cpu"].0, "224");
            assert_eq!(r["memory"].0, "2048Gi");
            assert_eq!(r["pods"].0, "110");
        }
    }

    #[test]
    fn every_gpu_model_has_its_real_vram_and_compute_capability() {
        let got: Vec<_> = [Model::A100, Model::L4, Model::Rtx4090]
            .into_iter()
            .map(|m| {
                let g = m.gpu().unwrap();
                (g.product, g.memory_mib, g.compute, g.family)
            })
            .collect();
        assert_eq!(
            got,
            [
                ("NVIDIA-A100-SXM4-40GB", 40960, (8, 0), "ampere"),
                ("NVIDIA-L4", 23034, (8, 9), "ada-lovelace"),
                ("NVIDIA-GeForce-RTX-4090", 24564, (8, 9), "ada-lovelace"),
            ]
        );
    }

    #[test]
    fn cpu_node_has_no_nvidia_labels_or_gpu_resource() {
        let node = node_manifest(Model::Cpu, 12);
        assert_eq!(node.metadata.name.as_deref(), Some("cpu-0012"));
        let labels = node.metadata.labels.clone().unwrap();
        assert!(
            labels.keys().all(|k| !k.starts_with("nvidia.com/")),
            "{labels:?}"
        );
        assert!(
            !node
                .status
                .unwrap()
                .capacity
                .unwrap()
                .contains_key("nvidia.com/gpu")
        );
    }

    #[test]
    fn mix_parses_weights_and_rejects_nonsense() {
        let mix: Mix = "h100=2, cpu".parse().unwrap();
        assert_eq!(mix, Mix(vec![(Model::H100, 2), (Model::Cpu, 1)]));
        for bad in ["", "h100=0", "v100=1", "h100=x", "h100=1,h100=2"] {
            assert!(bad.parse::<Mix>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn plan_follows_the_weights_and_interleaves_models() {
        let mix: Mix = "h100=4,a100=3,l4=2,rtx4090=1,cpu=1".parse().unwrap();
        let plan = mix.plan(1100);
        let count = |m| plan.iter().filter(|(x, _)| *x == m).count();
        assert_eq!(
            [
                Model::H100,
                Model::A100,
                Model::L4,
                Model::Rtx4090,
                Model::Cpu
            ]
            .map(count),
            [400, 300, 200, 100, 100]
        );
        let first: BTreeSet<Model> = plan[..11].iter().map(|(m, _)| *m).collect();
        assert_eq!(first.len(), 5, "the first 11 nodes include every model");
    }

    #[test]
    fn a_larger_plan_extends_a_smaller_one_without_renaming() {
        let mix = Mix::default();
        let small = mix.plan(100);
        let large = mix.plan(1000);
        assert_eq!(small[..], large[..100]);
        let names: BTreeSet<String> = large.iter().map(|(m, i)| m.node_name(*i)).collect();
        assert_eq!(names.len(), 1000, "names are unique");
    }

    #[test]
    fn summary_counts_nodes_ready_and_gpus_by_model() {
        let mut nodes: Vec<Node> = Mix::default()
            .plan(11)
            .into_iter()
            .map(|(m, i)| node_manifest(m, i))
            .collect();
        let status = nodes[0].status.as_mut().unwrap();
        status.conditions = Some(vec![k8s_openapi::api::core::v1::NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            ..Default::default()
        }]);
        let summary = NodeSummary::of(&nodes);
        assert_eq!(summary.totals(), (11, 1, 4 * 8 + 3 * 8 + 2 * 4 + 1));
        assert_eq!(summary.rows[0].0, "h100");
        assert!(summary.to_string().contains("NVIDIA-L4"));
    }
}
