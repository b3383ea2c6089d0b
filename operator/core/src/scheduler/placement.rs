//! The placement engine: hard filters, a configurable integer score, device tiers, and
//! load-balanced placement of fragments (or batches of them) onto a [`Snapshot`].
//!
//! # The score
//! Every component is an integer in per mille (0 to 1000) and every weight an integer
//! from 0 to [`MAX_WEIGHT`] (larger values count as [`MAX_WEIGHT`]):
//!
//! ```text
//! base     = 1 + compute·compute‰ + online·online‰ + reputation·reputation‰ + tier·tier‰
//! boost‰   = 1000 + stake · min(stake, stake_full) / stake_full          (1× to 2×)
//! load‰    = used · 1000 / capacity                                      (slots in use)
//! priority = base · boost‰ · 10⁶ / (1000 + 4 · load · load‰ / 1000)
//! ```
//!
//! - `compute‰` is the device's benchmark score relative to the best eligible device.
//! - `online‰` averages the online ratio and the online duration (saturating at
//!   `online_full_seconds`).
//! - `tier‰` rises with the tier for heavy fragments and falls with it for light ones, so
//!   light work drifts to small devices and leaves big GPUs to heavy work. Heavy
//!   fragments also skip tiers below `heavy_min_tier` while any higher device is eligible.
//! - Staking raises priority by at most 2× (`stake` ≤ 1000) and never adds work units.
//! - Dividing by the load makes this stride scheduling: each device's priority falls as
//!   fragments land on it, so equal devices take turns and, under load, devices receive
//!   fragments in proportion to `base · boost · capacity`. The factor 4 (at the default
//!   weight, a device with every slot in use keeps a fifth of its idle priority) lets
//!   weaker devices join after the best ones hold a fraction of their slots, rather
//!   than after they are several times full.
//!
//! # Speed
//! Eligibility and `base · boost` are computed once per call. Devices sit in a binary
//! max-heap keyed by priority; each placement takes the top, updates its load and
//! re-keys it in place: O(log n) per fragment. Heavy and light fragments use two heaps
//! over the same load; an entry whose device gained load through the other heap is
//! re-scored lazily when it reaches the top (priorities only fall during a call, so a
//! stale key is an upper bound and the first fresh top is the true best).
//!
//! # Determinism
//! Devices are in name order (see [`Snapshot`]); equal priorities are broken by a seeded
//! hash of (seed, device name), then by name order. No hash map is iterated anywhere.

use super::hash::mix;
use super::slicer::HEAVY_WORK_UNITS;
use super::snapshot::{DeviceView, Snapshot, TIERS, parse_capability};
use crate::api::task::{Requirements, Runtime};
use crate::api::{BASE_UNITS_PER_CXT, DeviceClass};
use std::collections::BinaryHeap;

/// The largest weight; larger ones are treated as this.
pub const MAX_WEIGHT: u32 = 1000;
/// Scale of the priority so that integer division keeps precision.
const PRIORITY_SCALE: u64 = 1_000_000;
const PM: u64 = 1000;
/// How much a full device's priority falls per unit of load weight; see the module docs.
const LOAD_GAIN: u64 = 4;

/// Weights of the score components, each 0 to [`MAX_WEIGHT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weights {
    /// Benchmark compute power relative to the best eligible device.
    pub compute: u32,
    /// Online ratio and duration.
    pub online: u32,
    /// Reputation.
    pub reputation: u32,
    /// Stake boost: the extra per mille at full stake (1000 means up to 2×).
    pub stake: u32,
    /// How strongly load lowers priority; 0 ignores load (everything goes to the best
    /// device), 250 halves a device's priority when all its slots are in use, 1000
    /// divides it by five.
    pub load: u32,
    /// Tier preference (heavy work up, light work down).
    pub tier: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            compute: 1000,
            online: 200,
            reputation: 300,
            stake: 1000,
            load: 1000,
            tier: 500,
        }
    }
}

/// Everything placement is tuned by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacementConfig {
    /// Score weights.
    pub weights: Weights,
    /// A fragment weighing at least this many work units is heavy.
    pub heavy_work_units: u64,
    /// Stake (base units) at which the boost is full.
    pub stake_full: u64,
    /// Online seconds at which the duration part of `online‰` is full.
    pub online_full_seconds: u64,
    /// Heavy fragments avoid tiers below this while a device at or above it is eligible.
    pub heavy_min_tier: u8,
}

impl Default for PlacementConfig {
    fn default() -> Self {
        Self {
            weights: Weights::default(),
            heavy_work_units: HEAVY_WORK_UNITS,
            stake_full: 10_000 * BASE_UNITS_PER_CXT,
            online_full_seconds: 7 * 86_400,
            heavy_min_tier: 1,
        }
    }
}

/// One thing to place: a fragment, or a contiguous batch of them (an assignment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// The caller's identifier (fragment index, batch index…), echoed in the placement.
    pub id: u32,
    /// Work units of the whole item.
    pub weight: u64,
    /// Fragments in the item; the load it adds to its device.
    pub slots: u32,
}

impl Item {
    /// A single fragment.
    pub fn fragment(index: u32, weight: u64) -> Self {
        Self {
            id: index,
            weight,
            slots: 1,
        }
    }

    /// Whether each of its fragments is heavy on average.
    pub fn is_heavy(&self, threshold: u64) -> bool {
        self.weight / u64::from(self.slots.max(1)) >= threshold
    }
}

/// One decision: item `item` runs on `snapshot.devices[device]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Placement {
    /// The item's id.
    pub item: u32,
    /// The device's index in the snapshot.
    pub device: u32,
}

/// Fragment slots in use per snapshot device: what the devices hold already plus what
/// this cycle assumed. Placement updates it after every choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadState {
    used: Vec<u32>,
    /// Assignments each device holds and, where it has one, its limit.
    units: Vec<(u32, Option<u32>)>,
}

impl LoadState {
    /// The load each device of `snapshot` reports.
    pub fn new(snapshot: &Snapshot) -> Self {
        Self {
            used: snapshot.devices.iter().map(|d| d.running).collect(),
            units: snapshot
                .devices
                .iter()
                .map(|d| (d.units, d.unit_limit))
                .collect(),
        }
    }

    /// Whether device `device` may take one more assignment (false for an unknown
    /// index).
    pub fn has_room(&self, device: usize) -> bool {
        self.units
            .get(device)
            .is_some_and(|&(n, limit)| limit.is_none_or(|l| n < l))
    }

    /// Slots in use on device `device` (0 for an unknown index).
    pub fn used(&self, device: usize) -> u32 {
        self.used.get(device).copied().unwrap_or(0)
    }

    /// Devices tracked.
    pub fn len(&self) -> usize {
        self.used.len()
    }

    /// Whether no device is tracked.
    pub fn is_empty(&self) -> bool {
        self.used.is_empty()
    }

    /// Records one more assignment of `slots` fragments on `device` (the assume step).
    pub fn assume(&mut self, device: usize, slots: u32) {
        if let Some(u) = self.used.get_mut(device) {
            *u = u.saturating_add(slots);
        }
        if let Some((n, _)) = self.units.get_mut(device) {
            *n = n.saturating_add(1);
        }
    }

    /// Takes back an assumption whose write failed.
    pub fn forget(&mut self, device: usize, slots: u32) {
        if let Some(u) = self.used.get_mut(device) {
            *u = u.saturating_sub(slots);
        }
        if let Some((n, _)) = self.units.get_mut(device) {
            *n = n.saturating_sub(1);
        }
    }

    /// Slots still free across `snapshot`: the capacity a cycle may hand out.
    pub fn free_slots(&self, snapshot: &Snapshot) -> u64 {
        snapshot
            .devices
            .iter()
            .zip(&self.used)
            .enumerate()
            .filter(|(i, _)| self.has_room(*i))
            .map(|(_, (d, &u))| u64::from(d.capacity.saturating_sub(u)))
            .sum()
    }
}

/// Why nothing could be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    /// A requirement cannot be read; the task waits for a spec change.
    #[error("{field} {value:?} is not valid: {reason}")]
    InvalidRequirement {
        /// The spec field.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// No available device meets the requirements.
    #[error("no device meets the requirements: {}", describe_rejections(*.available, .rejected_by))]
    NoEligibleDevice {
        /// Available devices considered.
        available: usize,
        /// How many devices each requirement excluded (the first one each failed), in
        /// requirement order, zero counts left out.
        rejected_by: Vec<(&'static str, usize)>,
    },
    /// The load state does not belong to this snapshot.
    #[error("the load state tracks {load} devices but the snapshot has {snapshot}")]
    LoadMismatch {
        /// Devices in the snapshot.
        snapshot: usize,
        /// Devices in the load state.
        load: usize,
    },
}

fn describe_rejections(available: usize, rejected_by: &[(&'static str, usize)]) -> String {
    if available == 0 {
        return "no device is available".into();
    }
    let parts: Vec<String> = rejected_by
        .iter()
        .map(|(field, n)| format!("{n} fail {field}"))
        .collect();
    format!("of {available} available devices, {}", parts.join(", "))
}

impl PlaceError {
    /// A short fixed category for logs, Events and metric labels.
    pub fn category(&self) -> &'static str {
        match self {
            Self::InvalidRequirement { .. } => "InvalidRequirement",
            Self::NoEligibleDevice { .. } => "NoEligibleDevice",
            Self::LoadMismatch { .. } => "LoadMismatch",
        }
    }
}

/// Requirements parsed once per task, checked once per device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledRequirements {
    class: Option<DeviceClass>,
    min_vram_mib: Option<u64>,
    gpu_models: Option<Vec<String>>,
    min_capability: Option<(u16, u16)>,
    min_reputation: Option<u32>,
    min_stake: Option<u64>,
    needs_cuda: bool,
}

/// The requirement names, in the order devices are checked against them.
pub const REQUIREMENT_FIELDS: [&str; 7] = [
    "deviceClass",
    "minVramMiB",
    "gpuModels",
    "minComputeCapability",
    "runtime",
    "minReputation",
    "minStake",
];

impl CompiledRequirements {
    /// Parses `req`; an unreadable compute capability is an error naming it.
    pub fn new(req: &Requirements) -> Result<Self, PlaceError> {
        let min_capability = match req.min_compute_capability.as_deref() {
            None => None,
            Some(s) => Some(
                parse_capability(s).ok_or_else(|| PlaceError::InvalidRequirement {
                    field: "spec.requirements.minComputeCapability",
                    value: s.to_owned(),
                    reason: "expected major.minor, for example 8.0",
                })?,
            ),
        };
        Ok(Self {
            class: req.device_class,
            min_vram_mib: req.min_vram_mib,
            gpu_models: req.gpu_models.clone(),
            min_capability,
            min_reputation: req.min_reputation,
            min_stake: req.min_stake.map(|s| s.0),
            // Every worker has the CPU path, so only `cuda` narrows the devices.
            needs_cuda: req.runtime == Some(Runtime::Cuda),
        })
    }

    /// The first requirement `v` fails, by its name in [`REQUIREMENT_FIELDS`].
    pub fn rejection(&self, v: &DeviceView) -> Option<&'static str> {
        let [class, vram, models, cc, runtime, reputation, stake] = REQUIREMENT_FIELDS;
        if self.class.is_some_and(|c| c != v.class) {
            return Some(class);
        }
        if self
            .min_vram_mib
            .is_some_and(|m| v.gpu_count == 0 || v.vram_mib < m)
        {
            return Some(vram);
        }
        if let Some(list) = &self.gpu_models
            && (v.gpu_count == 0 || !list.iter().any(|m| m.eq_ignore_ascii_case(&v.gpu_model)))
        {
            return Some(models);
        }
        if let Some(min) = self.min_capability
            && v.compute_capability.is_none_or(|cc| cc < min)
        {
            return Some(cc);
        }
        if self.needs_cuda && !v.runtime_cuda {
            return Some(runtime);
        }
        if self.min_reputation.is_some_and(|m| v.reputation < m) {
            return Some(reputation);
        }
        if self.min_stake.is_some_and(|m| v.stake < m) {
            return Some(stake);
        }
        None
    }

    /// Whether `v` meets every requirement.
    pub fn admits(&self, v: &DeviceView) -> bool {
        self.rejection(v).is_none()
    }
}

/// Whether `v` meets every hard requirement of `req`. Availability (Online, not
/// cordoned) is already implied by `v` existing; an unreadable requirement admits
/// nothing.
pub fn eligible(req: &Requirements, v: &DeviceView) -> bool {
    CompiledRequirements::new(req).is_ok_and(|c| c.admits(v))
}

/// The stake boost in per mille, 1000 (none) to `1000 + stake weight` (at most 2000).
pub fn stake_boost_permille(stake: u64, config: &PlacementConfig) -> u64 {
    let w = u128::from(config.weights.stake.min(MAX_WEIGHT));
    let full = u128::from(config.stake_full);
    // A zero `stake_full` means any stake earns the full boost.
    let extra = (w * u128::from(stake).min(full))
        .checked_div(full)
        .unwrap_or(if stake > 0 { w } else { 0 });
    PM + u64::try_from(extra).unwrap_or(0)
}

/// `base · boost‰` of device `v` for heavy or light work, where `best_score` is the
/// highest benchmark among the eligible devices. At most about 8·10⁹.
pub fn base_priority(
    v: &DeviceView,
    best_score: u64,
    heavy: bool,
    config: &PlacementConfig,
) -> u64 {
    let w = |x: u32| u64::from(x.min(MAX_WEIGHT));
    let ws = &config.weights;
    let compute = if best_score == 0 {
        0
    } else {
        // score <= best_score, so the quotient is at most 1000.
        u64::try_from(u128::from(v.score.min(best_score)) * u128::from(PM) / u128::from(best_score))
            .unwrap_or(PM)
    };
    let full = config.online_full_seconds.max(1);
    let duration = v.online_seconds.min(full).saturating_mul(PM) / full;
    let online = (u64::from(v.online_ratio_permille.min(1000)) + duration) / 2;
    let reputation = u64::from(v.reputation.min(1000));
    let top = u64::from(TIERS - 1);
    let tier = u64::from(v.tier).min(top);
    let tier = if heavy { tier } else { top - tier } * PM / top;
    let base = 1
        + w(ws.compute) * compute
        + w(ws.online) * online
        + w(ws.reputation) * reputation
        + w(ws.tier) * tier;
    base.saturating_mul(stake_boost_permille(v.stake, config))
}

/// The priority of a device with `base` (from [`base_priority`]) and `used` of its
/// `capacity` slots in use. Falls as `used` grows.
pub fn priority(base: u64, used: u32, capacity: u32, load_weight: u32) -> u64 {
    let load = u64::from(used) * PM / u64::from(capacity.max(1));
    let denom = PM + u64::from(load_weight.min(MAX_WEIGHT)) * load * LOAD_GAIN / PM;
    base.saturating_mul(PRIORITY_SCALE) / denom
}

/// Counters of one placement call, for honest benchmark figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlaceStats {
    /// Items placed, each by its own choice with the load updated after it.
    pub placements: u64,
    /// Every priority evaluated: the initial one per device and heap, one per placement,
    /// and one per stale heap entry re-scored.
    pub score_evaluations: u64,
    /// Devices that met the requirements.
    pub eligible_devices: usize,
}

/// The decisions of one placement call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlaceOutcome {
    /// One per item, in item order.
    pub placements: Vec<Placement>,
    /// Counters.
    pub stats: PlaceStats,
}

/// A heap entry: priority, seeded tie-break, reversed position (lower position wins a
/// full tie), and the version of the device's load it was computed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry(u64, u64, u32, u32);

#[derive(Debug)]
struct Pool {
    heap: BinaryHeap<Entry>,
    /// `base · boost‰` per eligible position (0 where the position is not in this pool).
    base: Vec<u64>,
}

/// The per-call state shared by both pools.
#[derive(Debug)]
struct Devices<'a> {
    snapshot: &'a Snapshot,
    /// Snapshot index of each eligible position.
    eligible: Vec<u32>,
    /// Seeded tie-break of each eligible position.
    tie: Vec<u64>,
    /// Placements made on each eligible position during this call.
    version: Vec<u32>,
    best_score: u64,
}

impl Devices<'_> {
    fn view(&self, pos: usize) -> Option<&DeviceView> {
        let idx = usize::try_from(*self.eligible.get(pos)?).ok()?;
        self.snapshot.devices.get(idx)
    }

    fn pool(
        &self,
        heavy: bool,
        config: &PlacementConfig,
        load: &LoadState,
        evals: &mut u64,
    ) -> Pool {
        let n = self.eligible.len();
        let high_tier_exists = heavy
            && (0..n).any(|p| {
                self.view(p).is_some_and(|v| {
                    v.tier >= config.heavy_min_tier && load.has_room(self.eligible[p] as usize)
                })
            });
        let mut base = vec![0; n];
        let mut entries = Vec::with_capacity(n);
        for (pos, b) in base.iter_mut().enumerate() {
            let Some(v) = self.view(pos) else { continue };
            let idx = self.eligible[pos] as usize;
            if (high_tier_exists && v.tier < config.heavy_min_tier) || !load.has_room(idx) {
                continue;
            }
            *b = base_priority(v, self.best_score, heavy, config);
            let p = priority(*b, load.used(idx), v.capacity, config.weights.load);
            *evals += 1;
            let pos32 = u32::try_from(pos).unwrap_or(u32::MAX);
            entries.push(Entry(p, self.tie[pos], u32::MAX - pos32, self.version[pos]));
        }
        Pool {
            heap: BinaryHeap::from(entries),
            base,
        }
    }
}

/// The devices one task may use: its requirements checked once against a snapshot
/// (the nominate step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nomination {
    /// Snapshot indices of the eligible devices, ascending.
    pub eligible: Vec<u32>,
}

/// Checks `req` against every device of `snapshot`. No eligible device is
/// [`PlaceError::NoEligibleDevice`], counting how many devices each requirement excluded.
pub fn nominate(req: &Requirements, snapshot: &Snapshot) -> Result<Nomination, PlaceError> {
    let compiled = CompiledRequirements::new(req)?;
    let mut eligible = Vec::new();
    let mut rejected = [0usize; REQUIREMENT_FIELDS.len()];
    for (i, v) in snapshot.devices.iter().enumerate() {
        match compiled.rejection(v) {
            None => eligible.push(u32::try_from(i).unwrap_or(u32::MAX)),
            Some(field) => {
                if let Some(k) = REQUIREMENT_FIELDS.iter().position(|f| *f == field) {
                    rejected[k] += 1;
                }
            }
        }
    }
    if eligible.is_empty() {
        return Err(PlaceError::NoEligibleDevice {
            available: snapshot.len(),
            rejected_by: REQUIREMENT_FIELDS
                .iter()
                .zip(rejected)
                .filter(|(_, n)| *n > 0)
                .map(|(f, n)| (*f, n))
                .collect(),
        });
    }
    Ok(Nomination { eligible })
}

/// Places each item on a device: the best-priority eligible device, with the load
/// updated after every choice. Identical inputs and `seed` give identical decisions;
/// a different seed only reorders devices of equal priority.
///
/// An empty `items` places nothing and succeeds (after checking the requirements); a
/// non-empty one with no eligible device is [`PlaceError::NoEligibleDevice`], with how
/// many devices each requirement excluded. An item is left out of the placements when
/// every eligible device is at its assignment limit ([`DeviceView::unit_limit`]).
pub fn place(
    req: &Requirements,
    items: &[Item],
    snapshot: &Snapshot,
    load: &mut LoadState,
    config: &PlacementConfig,
    seed: u64,
) -> Result<PlaceOutcome, PlaceError> {
    if items.is_empty() {
        CompiledRequirements::new(req)?;
        return Ok(PlaceOutcome::default());
    }
    let nomination = nominate(req, snapshot)?;
    place_nominated(&nomination, items, snapshot, load, config, seed)
}

/// [`place`] over devices already nominated against this `snapshot`. Indices in
/// `nomination` that the snapshot lacks are skipped.
pub fn place_nominated(
    nomination: &Nomination,
    items: &[Item],
    snapshot: &Snapshot,
    load: &mut LoadState,
    config: &PlacementConfig,
    seed: u64,
) -> Result<PlaceOutcome, PlaceError> {
    if load.len() != snapshot.len() {
        return Err(PlaceError::LoadMismatch {
            snapshot: snapshot.len(),
            load: load.len(),
        });
    }
    let eligible: Vec<u32> = nomination
        .eligible
        .iter()
        .copied()
        .filter(|&i| (i as usize) < snapshot.len())
        .collect();
    if eligible.is_empty() {
        return Err(PlaceError::NoEligibleDevice {
            available: snapshot.len(),
            rejected_by: Vec::new(),
        });
    }
    if items.is_empty() {
        return Ok(PlaceOutcome::default());
    }
    let mut devices = Devices {
        snapshot,
        tie: eligible
            .iter()
            .map(|&i| mix(seed, snapshot.devices[i as usize].name_hash))
            .collect(),
        version: vec![0; eligible.len()],
        best_score: eligible
            .iter()
            .map(|&i| snapshot.devices[i as usize].score)
            .max()
            .unwrap_or(0),
        eligible,
    };

    let mut stats = PlaceStats {
        eligible_devices: devices.eligible.len(),
        ..PlaceStats::default()
    };
    let mut pools: [Option<Pool>; 2] = [None, None];
    let mut placements = Vec::with_capacity(items.len());
    for item in items {
        let heavy = item.is_heavy(config.heavy_work_units);
        let pool = match &mut pools[usize::from(heavy)] {
            Some(p) => p,
            slot => slot.insert(devices.pool(heavy, config, load, &mut stats.score_evaluations)),
        };
        // Terminates: each stale top is refreshed to the current version and each full
        // device is popped, so after at most one visit per device the top is fresh or
        // the pool is empty. An empty pool (every device at its assignment limit)
        // leaves the item unplaced.
        while let Some(mut top) = pool.heap.peek_mut() {
            let pos = (u32::MAX - top.2) as usize;
            let (Some(capacity), Some(&base)) =
                (devices.view(pos).map(|v| v.capacity), pool.base.get(pos))
            else {
                break;
            };
            let idx = devices.eligible[pos] as usize;
            // A device at its assignment limit leaves the pool for this call.
            if !load.has_room(idx) {
                std::collections::binary_heap::PeekMut::pop(top);
                continue;
            }
            let fresh = top.3 == devices.version[pos];
            if fresh {
                load.assume(idx, item.slots);
                devices.version[pos] = devices.version[pos].wrapping_add(1);
                placements.push(Placement {
                    item: item.id,
                    device: devices.eligible[pos],
                });
            }
            top.0 = priority(base, load.used(idx), capacity, config.weights.load);
            top.3 = devices.version[pos];
            stats.score_evaluations += 1;
            if fresh {
                break;
            }
        }
    }
    stats.placements = placements.len() as u64;
    Ok(PlaceOutcome { placements, stats })
}

#[cfg(test)]
mod tests;
