//! The scheduler cache for one cycle: each available `Device` reduced to a compact
//! [`DeviceView`] with parsed integers, and a [`Snapshot`] of them sorted by name.
//!
//! Building views is pure and happens once per cycle; placement then never touches a
//! `Device`, a string to parse, or an `Option` chain. Sorting by name makes device indices
//! independent of the order a reflector store yields objects in.

use super::hash::fnv1a;
use crate::api::{Device, DeviceClass};
use crate::devices::phase::available;

/// Fragment slots per GPU (and for a device without GPUs): the backlog a device may hold
/// before it counts as fully loaded. Load is measured against this, so an 8-GPU node is
/// "half loaded" with as many fragments as a 4-GPU node is "fully loaded".
pub const SLOTS_PER_GPU: u32 = 8;

/// Device tiers, 0 (smallest) to `TIERS - 1` (largest).
pub const TIERS: u8 = 4;

/// Benchmark scores (GOP/s) at which tiers 1, 2 and 3 begin: CPUs and edge devices sit
/// in tier 0, small GPUs in 1, mid-range GPUs (L4-class and up) in 2, data-center GPUs
/// (H100-class) in 3.
pub const DEFAULT_TIER_BOUNDS: TierBounds = TierBounds([10_000, 200_000, 600_000]);

/// Lower bounds, in benchmark GOP/s, of tiers 1 to `TIERS - 1`; ascending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierBounds(pub [u64; TIERS as usize - 1]);

impl Default for TierBounds {
    fn default() -> Self {
        DEFAULT_TIER_BOUNDS
    }
}

impl TierBounds {
    /// The tier of a benchmark score: the number of bounds it reaches.
    pub fn tier(&self, score: u64) -> u8 {
        // At most TIERS - 1 bounds, so the count fits in a u8.
        u8::try_from(self.0.iter().filter(|&&b| score >= b).count()).unwrap_or(TIERS - 1)
    }
}

/// What placement needs to know about one available device, as plain integers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceView {
    /// The Device's name.
    pub name: String,
    /// FNV-1a of the name, for seeded tie-breaks.
    pub name_hash: u64,
    /// The provider account it belongs to (replays go to another provider's device).
    pub provider: String,
    /// The declared class.
    pub class: DeviceClass,
    /// The first GPU's product name; empty without GPUs.
    pub gpu_model: String,
    /// GPUs on the device.
    pub gpu_count: u32,
    /// VRAM per GPU in MiB (the smallest, should a device mix GPUs); 0 without GPUs.
    pub vram_mib: u64,
    /// CUDA compute capability `(major, minor)`, when known.
    pub compute_capability: Option<(u16, u16)>,
    /// Whether the device has a GPU with a known CUDA runtime.
    pub runtime_cuda: bool,
    /// Reputation, 0 to 1000.
    pub reputation: u32,
    /// Measured benchmark score in GOP/s; 0 when not yet measured.
    pub score: u64,
    /// Share of the rolling window online, per mille.
    pub online_ratio_permille: u32,
    /// Total seconds online.
    pub online_seconds: u64,
    /// Its provider's bonded stake in base units (the ledger's, through the status).
    pub stake: u64,
    /// Fragments the device holds already (running or queued), as the status reports it
    /// or as its load percentage implies, whichever is more.
    pub running: u32,
    /// Fragment slots, `max(1, gpu_count) * SLOTS_PER_GPU`.
    pub capacity: u32,
    /// Most assignments the device may hold at once, when it has a hard limit: a
    /// cluster Node's GPUs, since each assignment there is a worker Pod requesting one
    /// `nvidia.com/gpu` and the kubelet refuses a Pod past its allocatable.
    pub unit_limit: Option<u32>,
    /// Live assignments on the device (filled by the caller from its records).
    pub units: u32,
    /// Tier by benchmark score.
    pub tier: u8,
}

impl DeviceView {
    /// The view of a device that may take new fragments now, or `None` when it may not
    /// (not Online, cordoned, unnamed, or without status). Tiers use
    /// [`DEFAULT_TIER_BOUNDS`]; [`Snapshot::from_devices`] re-tiers with its own.
    pub fn from_device(device: &Device) -> Option<Self> {
        let name = device.metadata.name.as_deref().filter(|n| !n.is_empty())?;
        let status = device.status.as_ref()?;
        if !available(status.phase, device.spec.cordoned) {
            return None;
        }
        let gpus = status
            .identification
            .as_ref()
            .map(|i| i.gpus.as_slice())
            .unwrap_or_default();
        let first = gpus.first();
        let gpu_count = u32::try_from(gpus.len()).unwrap_or(u32::MAX);
        let capacity = gpu_count.clamp(1, 1 << 16).saturating_mul(SLOTS_PER_GPU);
        let score = status.benchmark.as_ref().map_or(0, |b| b.score);
        // A load percentage with no running count (an agent that reports only load)
        // still occupies its share of the slots.
        let from_load = u64::from(status.load.min(100)) * u64::from(capacity) / 100;
        let running = status
            .running_fragments
            .max(u32::try_from(from_load).unwrap_or(u32::MAX));
        Some(Self {
            name: name.to_owned(),
            name_hash: fnv1a(name.as_bytes()),
            provider: device.spec.provider.clone(),
            class: device.spec.class,
            gpu_model: first.map(|g| g.model.clone()).unwrap_or_default(),
            gpu_count,
            vram_mib: gpus.iter().map(|g| g.vram_mib).min().unwrap_or(0),
            compute_capability: first.and_then(|g| parse_capability(&g.compute_capability)),
            runtime_cuda: first.is_some_and(|g| !g.cuda_version.trim().is_empty()),
            reputation: status.reputation.score.min(1000),
            score,
            online_ratio_permille: status.online_ratio_permille.min(1000),
            online_seconds: status.online_seconds,
            stake: status.stake.0,
            running,
            capacity,
            unit_limit: (device.spec.source.node.is_some()
                && device.spec.class == DeviceClass::Gpu)
                .then_some(gpu_count),
            units: 0,
            tier: DEFAULT_TIER_BOUNDS.tier(score),
        })
    }
}

/// Parses `major.minor` (for example `9.0` or `12.0`); `None` for anything else.
pub fn parse_capability(s: &str) -> Option<(u16, u16)> {
    let (major, minor) = s.trim().split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Every available device, sorted by name: the scheduler's view for one cycle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Available devices, sorted by name, names unique.
    pub devices: Vec<DeviceView>,
}

impl Snapshot {
    /// Views of the available devices among `devices`, tiered by `bounds`, in name order
    /// whatever order they came in. Names are unique in a cluster; should two objects
    /// share one anyway, the first one seen is kept.
    pub fn from_devices<'a>(
        devices: impl IntoIterator<Item = &'a Device>,
        bounds: &TierBounds,
    ) -> Self {
        Self::from_views(
            devices.into_iter().filter_map(DeviceView::from_device),
            bounds,
        )
    }

    /// A snapshot of ready-made views, re-tiered by `bounds` and sorted by name.
    pub fn from_views(views: impl IntoIterator<Item = DeviceView>, bounds: &TierBounds) -> Self {
        let mut devices: Vec<DeviceView> = views
            .into_iter()
            .map(|mut v| {
                v.tier = bounds.tier(v.score);
                v
            })
            .collect();
        // Stable, so the first of two equal names stays first and wins the dedup.
        devices.sort_by(|a, b| a.name.cmp(&b.name));
        devices.dedup_by(|later, earlier| later.name == earlier.name);
        Self { devices }
    }

    /// The number of devices.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// Whether there are no devices.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// The index of the device named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.devices
            .binary_search_by(|d| d.name.as_str().cmp(name))
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DevicePhase;
    use crate::scheduler::fixtures::DeviceBuilder;

    #[test]
    fn only_online_uncordoned_devices_get_a_view() {
        assert!(DeviceView::from_device(&DeviceBuilder::h100("a").build()).is_some());
        for d in [
            DeviceBuilder::h100("a").cordoned().build(),
            DeviceBuilder::h100("a").phase(DevicePhase::Offline).build(),
            DeviceBuilder::h100("a").phase(DevicePhase::Pending).build(),
            DeviceBuilder::h100("a")
                .phase(DevicePhase::Quarantined)
                .build(),
            DeviceBuilder::h100("a").no_status().build(),
        ] {
            assert_eq!(DeviceView::from_device(&d), None);
        }
    }

    #[test]
    fn a_view_parses_capability_runtime_capacity_and_load() {
        let v = DeviceView::from_device(
            &DeviceBuilder::h100("a")
                .gpus(8)
                .running(3)
                .stake(5_000_000)
                .build(),
        )
        .unwrap();
        assert_eq!(v.compute_capability, Some((9, 0)));
        assert!(v.runtime_cuda);
        assert_eq!(v.capacity, 8 * SLOTS_PER_GPU);
        assert_eq!(v.running, 3);
        assert_eq!(v.stake, 5_000_000);
        assert_eq!(v.tier, 3);
        let cpu = DeviceView::from_device(&DeviceBuilder::cpu("c").load(50).build()).unwrap();
        assert_eq!(cpu.compute_capability, None);
        assert!(!cpu.runtime_cuda);
        assert_eq!(
            (cpu.capacity, cpu.running, cpu.tier),
            (SLOTS_PER_GPU, SLOTS_PER_GPU / 2, 0)
        );
    }

    #[test]
    fn capabilities_parse_as_integers_and_garbage_is_unknown() {
        assert_eq!(parse_capability("8.9"), Some((8, 9)));
        assert_eq!(parse_capability("12.0"), Some((12, 0)));
        assert!(parse_capability("8.9") < parse_capability("9.0"));
        for bad in ["", "9", "a.b", "9.", "99999999.0"] {
            assert_eq!(parse_capability(bad), None, "{bad}");
        }
    }

    #[test]
    fn tiers_bucket_devices_by_benchmark_score() {
        let b = TierBounds::default();
        assert_eq!(b.tier(0), 0);
        assert_eq!(b.tier(9_999), 0);
        assert_eq!(b.tier(10_000), 1);
        assert_eq!(b.tier(450_000), 2);
        assert_eq!(b.tier(u64::MAX), TIERS - 1);
    }

    #[test]
    fn a_snapshot_is_sorted_by_name_whatever_the_input_order() {
        let devices = [
            DeviceBuilder::l4("c").build(),
            DeviceBuilder::h100("a").build(),
            DeviceBuilder::cpu("b").build(),
            DeviceBuilder::cpu("a").build(),
            DeviceBuilder::cpu("z").cordoned().build(),
        ];
        let s = Snapshot::from_devices(&devices, &TierBounds::default());
        let names: Vec<_> = s.devices.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(s.devices[0].gpu_model, "NVIDIA-H100-80GB-HBM3");
        assert_eq!(s.index_of("c"), Some(2));
        assert_eq!(s.index_of("z"), None);
    }
}
