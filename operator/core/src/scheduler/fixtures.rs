//! Chainable builders of `Device`s and `ComputeTaskSpec`s for the scheduler's tests and
//! its benchmark: realistic presets (H100, A100, RTX 4090, L4, CPU) with one method per
//! thing a test varies. Not used by the operator itself.

use crate::api::device::{
    AgentSource, Benchmark, DeviceSource, GpuInfo, Identification, Reputation,
};
use crate::api::task::{
    Architecture, ComputeProofParams, DataOperation, DataProcessingParams, FragmentGranularity,
    InferenceParams, ModelSpec, Requirements, ResultDestination, TrainingParams,
    VerificationPolicy,
};
use crate::api::{
    BaseUnits, ComputeTaskSpec, Device, DeviceClass, DevicePhase, DeviceSpec, DeviceStatus,
    WorkloadType,
};

/// Builds a `Device` that is Online, identified and benchmarked.
#[derive(Debug, Clone)]
pub struct DeviceBuilder {
    device: Device,
}

impl DeviceBuilder {
    fn new(name: &str, class: DeviceClass, gpu: Option<(&str, u64, &str)>, score: u64) -> Self {
        let spec = DeviceSpec {
            provider: "acme".into(),
            source: DeviceSource {
                node: None,
                agent: Some(AgentSource {
                    group_key: "k".into(),
                    hostname: name.into(),
                }),
            },
            class,
            cordoned: false,
        };
        let mut device = Device::new(name, spec);
        let gpus = gpu
            .map(|(model, vram, cc)| GpuInfo {
                model: model.into(),
                vram_mib: vram,
                compute_capability: cc.into(),
                sm_count: None,
                driver_version: "570.86".into(),
                cuda_version: "12.8".into(),
            })
            .into_iter()
            .collect();
        device.status = Some(DeviceStatus {
            phase: DevicePhase::Online,
            identification: Some(Identification {
                device_type: "gpu-server".into(),
                os: "linux".into(),
                cpu_cores: 32,
                gpus,
                ..Default::default()
            }),
            benchmark: Some(Benchmark {
                score,
                memory_bandwidth_mbps: 0,
                fingerprint: String::new(),
                measured_at: None,
                driver_version: None,
            }),
            online_ratio_permille: 1000,
            online_seconds: 30 * 86_400,
            available: true,
            reputation: Reputation::default(),
            ..Default::default()
        });
        Self { device }
    }

    /// One H100 (80 GB, capability 9.0), about 1.3 POP/s int8.
    pub fn h100(name: &str) -> Self {
        Self::new(
            name,
            DeviceClass::Gpu,
            Some(("NVIDIA-H100-80GB-HBM3", 81_559, "9.0")),
            1_300_000,
        )
    }

    /// One A100 (40 GB, capability 8.0).
    pub fn a100(name: &str) -> Self {
        Self::new(
            name,
            DeviceClass::Gpu,
            Some(("NVIDIA-A100-SXM4-40GB", 40_960, "8.0")),
            420_000,
        )
    }

    /// One RTX 4090 (24 GB, capability 8.9).
    pub fn rtx4090(name: &str) -> Self {
        Self::new(
            name,
            DeviceClass::Gpu,
            Some(("NVIDIA-GeForce-RTX-4090", 24_564, "8.9")),
            450_000,
        )
    }

    /// One L4 (24 GB, capability 8.9).
    pub fn l4(name: &str) -> Self {
        Self::new(
            name,
            DeviceClass::Gpu,
            Some(("NVIDIA-L4", 23_034, "8.9")),
            180_000,
        )
    }

    /// A CPU-only server.
    pub fn cpu(name: &str) -> Self {
        Self::new(name, DeviceClass::Cpu, None, 2_000)
    }

    fn status(&mut self) -> &mut DeviceStatus {
        self.device.status.get_or_insert_with(Default::default)
    }

    fn each_gpu(mut self, f: impl Fn(&mut GpuInfo)) -> Self {
        if let Some(id) = self.status().identification.as_mut() {
            id.gpus.iter_mut().for_each(f);
        }
        self
    }

    /// Of provider `p` (every built device is `acme`'s otherwise).
    pub fn provider(mut self, p: &str) -> Self {
        self.device.spec.provider = p.into();
        self
    }

    /// A cluster Node's device (data-center onboarding) instead of an agent's.
    pub fn node(mut self) -> Self {
        let name = self.device.metadata.name.clone().unwrap_or_default();
        self.device.spec.source = DeviceSource {
            node: Some(crate::api::device::NodeSource { name }),
            agent: None,
        };
        self
    }

    /// Cordoned by its admin.
    pub fn cordoned(mut self) -> Self {
        self.device.spec.cordoned = true;
        self
    }

    /// In `phase`.
    pub fn phase(mut self, phase: DevicePhase) -> Self {
        self.status().phase = phase;
        self
    }

    /// With no status at all, as before the controller first saw it.
    pub fn no_status(mut self) -> Self {
        self.device.status = None;
        self
    }

    /// With `n` identical GPUs (at least the preset's one).
    pub fn gpus(mut self, n: usize) -> Self {
        if let Some(id) = self.status().identification.as_mut()
            && let Some(g) = id.gpus.first().cloned()
        {
            id.gpus = vec![g; n];
        }
        self
    }

    /// With `mib` of VRAM per GPU.
    pub fn vram(self, mib: u64) -> Self {
        self.each_gpu(|g| g.vram_mib = mib)
    }

    /// With GPU product `model`.
    pub fn model(self, model: &str) -> Self {
        self.each_gpu(|g| g.model = model.into())
    }

    /// With compute capability `cc`.
    pub fn capability(self, cc: &str) -> Self {
        self.each_gpu(|g| g.compute_capability = cc.into())
    }

    /// With no CUDA runtime reported.
    pub fn no_cuda(self) -> Self {
        self.each_gpu(|g| g.cuda_version.clear())
    }

    /// With benchmark score `score`.
    pub fn score(mut self, score: u64) -> Self {
        if let Some(b) = self.status().benchmark.as_mut() {
            b.score = score;
        }
        self
    }

    /// With reputation `score`.
    pub fn reputation(mut self, score: u32) -> Self {
        self.status().reputation.score = score;
        self
    }

    /// Online `ratio` per mille over the window, `seconds` in total.
    pub fn online(mut self, ratio: u32, seconds: u64) -> Self {
        let s = self.status();
        s.online_ratio_permille = ratio;
        s.online_seconds = seconds;
        self
    }

    /// With `units` base units of stake.
    pub fn stake(mut self, units: u64) -> Self {
        self.status().stake = BaseUnits(units);
        self
    }

    /// With `n` fragments running.
    pub fn running(mut self, n: u32) -> Self {
        self.status().running_fragments = n;
        self
    }

    /// At `percent` load.
    pub fn load(mut self, percent: u32) -> Self {
        self.status().load = percent;
        self
    }

    /// The device.
    pub fn build(self) -> Device {
        self.device
    }
}

/// A deterministic mixed fleet of `n` devices named `dev-000000`…: 10% H100 (some with
/// 8 GPUs), 20% A100, 20% RTX 4090, 30% L4, 20% CPU, with reputations, online records
/// and stakes varying by index.
pub fn fleet(n: usize) -> Vec<Device> {
    (0..n)
        .map(|i| {
            let name = format!("dev-{i:06}");
            let b = match i % 10 {
                0 => DeviceBuilder::h100(&name).gpus(if i % 30 == 0 { 8 } else { 1 }),
                1 | 2 => DeviceBuilder::a100(&name),
                3 | 4 => DeviceBuilder::rtx4090(&name),
                5..=7 => DeviceBuilder::l4(&name),
                _ => DeviceBuilder::cpu(&name),
            };
            let i = i as u64;
            b.reputation(u32::try_from(300 + (i * 37) % 700).unwrap_or(500))
                .online(
                    u32::try_from(500 + (i * 13) % 501).unwrap_or(1000),
                    (i * 7919) % (60 * 86_400),
                )
                .stake((i % 7) * 2_000 * crate::api::BASE_UNITS_PER_CXT)
                .build()
        })
        .collect()
}

/// Builds a `ComputeTaskSpec`.
#[derive(Debug, Clone)]
pub struct TaskBuilder {
    spec: ComputeTaskSpec,
}

impl TaskBuilder {
    fn new(workload: WorkloadType) -> Self {
        Self {
            spec: ComputeTaskSpec {
                workload,
                compute_proof: None,
                training: None,
                inference: None,
                data_processing: None,
                fragments: FragmentGranularity {
                    count: Some(1),
                    size: None,
                },
                requirements: Requirements::default(),
                verification: VerificationPolicy::default(),
                priority: 100,
                active_deadline_seconds: None,
                cancel: false,
                result: ResultDestination::default(),
            },
        }
    }

    fn model() -> ModelSpec {
        ModelSpec {
            architecture: Architecture::Mlp,
            features: 64,
            classes: 10,
            hidden: Some(128),
        }
    }

    /// `products` int8 products of `dimension`² matrices.
    pub fn proof(dimension: u32, products: u64) -> Self {
        let mut b = Self::new(WorkloadType::ComputeProof);
        b.spec.compute_proof = Some(ComputeProofParams {
            dimension,
            products,
            seed: 7,
        });
        b
    }

    /// Training an MLP on `samples` for `epochs`.
    pub fn training(samples: u64, epochs: u32) -> Self {
        let mut b = Self::new(WorkloadType::Training);
        b.spec.training = Some(TrainingParams {
            model: Self::model(),
            samples,
            epochs,
            learning_rate: 0.1,
            seed: 7,
        });
        b
    }

    /// Inference on `samples`.
    pub fn inference(samples: u64) -> Self {
        let mut b = Self::new(WorkloadType::Inference);
        b.spec.inference = Some(InferenceParams {
            model: Self::model(),
            samples,
            seed: 7,
        });
        b
    }

    /// SHA-256 over `bytes`.
    pub fn bytes(bytes: u64) -> Self {
        let mut b = Self::new(WorkloadType::DataProcessing);
        b.spec.data_processing = Some(DataProcessingParams {
            operation: DataOperation::Sha256,
            bytes,
            seed: 7,
        });
        b
    }

    /// Cut into `count` fragments.
    pub fn count(self, count: u32) -> Self {
        self.granularity(Some(count), None)
    }

    /// Cut into fragments of `size` items.
    pub fn size(self, size: u64) -> Self {
        self.granularity(None, Some(size))
    }

    /// Any granularity, valid or not.
    pub fn granularity(mut self, count: Option<u32>, size: Option<u64>) -> Self {
        self.spec.fragments = FragmentGranularity { count, size };
        self
    }

    /// With `requirements`.
    pub fn requirements(mut self, requirements: Requirements) -> Self {
        self.spec.requirements = requirements;
        self
    }

    /// The spec.
    pub fn spec(self) -> ComputeTaskSpec {
        self.spec
    }
}
