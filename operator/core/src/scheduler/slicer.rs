//! The task slicer: how many work items a task has, how they are cut into fragments, what
//! each fragment weighs, and how fragments are grouped into assignments.
//!
//! A [`Slicing`] is a few integers, not a list: fragment `i`'s item range and weight are
//! computed in O(1) when asked, so a 100,000-fragment task costs nothing to describe.
//! This module owns the meaning of "work unit" for placement and tiering; it must not
//! decide placement or touch any Kubernetes object.

use crate::api::ComputeTaskSpec;
use crate::api::WorkloadType;
use crate::api::task::{Architecture, DataOperation, MAX_FRAGMENTS, ModelSpec};
use std::ops::Range;

pub use crate::api::OPS_PER_WORK_UNIT;

/// A fragment at or above this many work units is heavy: it prefers high-tier devices
/// and stays off the lowest tier while a higher one can take it. About ten seconds on a
/// typical CPU benchmark (1,000 GOP/s), a fraction of a second on a data-center GPU.
pub const HEAVY_WORK_UNITS: u64 = 10_000;

/// Most assignments (device + contiguous batch) one task is cut into, so object counts
/// and status sizes stay bounded at 100,000 fragments.
pub const MAX_ASSIGNMENTS_PER_TASK: u32 = 1_000;

/// Nominal operations per byte for data processing. SHA-256 costs roughly 16 simple
/// operations per byte on a CPU; whitespace tokenizing about 4.
const SHA256_OPS_PER_BYTE: u64 = 16;
const TOKENIZE_OPS_PER_BYTE: u64 = 4;

/// Why a task cannot be sliced. Each names the spec field to fix; the task waits for a
/// spec change rather than retrying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SliceError {
    /// The parameter block for the workload type is absent.
    #[error("{field} must be set for this workload type")]
    MissingParams {
        /// The missing field, for example `spec.computeProof`.
        field: &'static str,
    },
    /// The task has no work items.
    #[error("{field} must be positive")]
    NoWork {
        /// The field that is zero.
        field: &'static str,
    },
    /// The work items do not fit in 64 bits.
    #[error("{field} is too large: the work items overflow")]
    TooMuchWork {
        /// The field to reduce.
        field: &'static str,
    },
    /// Neither or both of `count` and `size` are set, or one of them is zero.
    #[error("{field}: {reason}")]
    Granularity {
        /// `spec.fragments`, `spec.fragments.count` or `spec.fragments.size`.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// `size` would cut the task into more than [`MAX_FRAGMENTS`] fragments.
    #[error(
        "spec.fragments.size {size} cuts {items} work items into {fragments} fragments; at most {max} are allowed"
    )]
    TooManyFragments {
        /// The requested size.
        size: u64,
        /// The task's work items.
        items: u64,
        /// The fragments that size would give.
        fragments: u64,
        /// [`MAX_FRAGMENTS`].
        max: u32,
    },
}

impl SliceError {
    /// The spec field the requester must change.
    pub fn field(&self) -> &'static str {
        match self {
            Self::MissingParams { field }
            | Self::NoWork { field }
            | Self::TooMuchWork { field }
            | Self::Granularity { field, .. } => field,
            Self::TooManyFragments { .. } => "spec.fragments.size",
        }
    }

    /// A short fixed category for logs, Events and metric labels.
    pub fn category(&self) -> &'static str {
        match self {
            Self::MissingParams { .. } => "MissingParams",
            Self::NoWork { .. } => "NoWork",
            Self::TooMuchWork { .. } => "TooMuchWork",
            Self::Granularity { .. } => "InvalidGranularity",
            Self::TooManyFragments { .. } => "TooManyFragments",
        }
    }
}

/// The work items of a task: matrix products, samples × epochs, samples, or bytes.
pub fn work_items(spec: &ComputeTaskSpec) -> Result<u64, SliceError> {
    let (items, field) = match spec.workload {
        WorkloadType::ComputeProof => {
            let p = params(&spec.compute_proof, "spec.computeProof")?;
            (p.products, "spec.computeProof.products")
        }
        WorkloadType::Training => {
            let p = params(&spec.training, "spec.training")?;
            let items =
                p.samples
                    .checked_mul(u64::from(p.epochs))
                    .ok_or(SliceError::TooMuchWork {
                        field: "spec.training.samples",
                    })?;
            if p.epochs == 0 {
                return Err(SliceError::NoWork {
                    field: "spec.training.epochs",
                });
            }
            (items, "spec.training.samples")
        }
        WorkloadType::Inference => {
            let p = params(&spec.inference, "spec.inference")?;
            (p.samples, "spec.inference.samples")
        }
        WorkloadType::DataProcessing => {
            let p = params(&spec.data_processing, "spec.dataProcessing")?;
            (p.bytes, "spec.dataProcessing.bytes")
        }
    };
    if items == 0 {
        return Err(SliceError::NoWork { field });
    }
    Ok(items)
}

/// Nominal operations per work item, by workload: `2·n³` per int8 matrix product;
/// `6·params` per training sample and epoch (forward and backward); `2·params` per
/// inference sample; a fixed cost per byte for data processing. Saturates, never panics.
pub fn ops_per_item(spec: &ComputeTaskSpec) -> Result<u64, SliceError> {
    Ok(match spec.workload {
        WorkloadType::ComputeProof => {
            let n = u64::from(params(&spec.compute_proof, "spec.computeProof")?.dimension);
            n.saturating_mul(n).saturating_mul(n).saturating_mul(2)
        }
        WorkloadType::Training => {
            let p = params(&spec.training, "spec.training")?;
            model_params(&p.model, "spec.training.model.hidden")?.saturating_mul(6)
        }
        WorkloadType::Inference => {
            let p = params(&spec.inference, "spec.inference")?;
            model_params(&p.model, "spec.inference.model.hidden")?.saturating_mul(2)
        }
        WorkloadType::DataProcessing => {
            match params(&spec.data_processing, "spec.dataProcessing")?.operation {
                DataOperation::Sha256 => SHA256_OPS_PER_BYTE,
                DataOperation::Tokenize => TOKENIZE_OPS_PER_BYTE,
            }
        }
    })
}

fn params<'a, T>(block: &'a Option<T>, field: &'static str) -> Result<&'a T, SliceError> {
    block.as_ref().ok_or(SliceError::MissingParams { field })
}

fn model_params(m: &ModelSpec, hidden_field: &'static str) -> Result<u64, SliceError> {
    let (f, c) = (u64::from(m.features), u64::from(m.classes));
    Ok(match m.architecture {
        Architecture::SoftmaxRegression => f.saturating_mul(c).saturating_add(c),
        Architecture::Mlp => {
            let h = u64::from(m.hidden.ok_or(SliceError::MissingParams {
                field: hidden_field,
            })?);
            f.saturating_mul(h)
                .saturating_add(h)
                .saturating_add(h.saturating_mul(c))
                .saturating_add(c)
        }
    })
}

/// How a task's items are laid out over its fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `fragments.count`: the first `long` fragments hold `base + 1` items, the rest
    /// `base`, so sizes differ by at most one.
    Even { base: u64, long: u32 },
    /// `fragments.size`: every fragment holds `size` items except a shorter last one,
    /// so chunk boundaries are exactly where the requester asked (data-processing
    /// digests depend on them).
    Fixed { size: u64 },
}

/// A task cut into fragments, described by a few integers. Fragment `i` covers the work
/// items [`Slicing::range`]`(i)`; the ranges are disjoint, in order, and cover every item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slicing {
    items: u64,
    fragments: u32,
    layout: Layout,
    ops_per_item: u64,
}

/// Cuts a task into fragments. A `count` above the work items (or above
/// [`MAX_FRAGMENTS`]) is clamped; a `size` that would give more than [`MAX_FRAGMENTS`]
/// fragments is an error naming `spec.fragments.size`.
pub fn slice(spec: &ComputeTaskSpec) -> Result<Slicing, SliceError> {
    let items = work_items(spec)?;
    let ops_per_item = ops_per_item(spec)?;
    let g = &spec.fragments;
    match (g.count, g.size) {
        (Some(_), Some(_)) | (None, None) => Err(SliceError::Granularity {
            field: "spec.fragments",
            reason: "exactly one of count or size must be set",
        }),
        (Some(0), None) => Err(SliceError::Granularity {
            field: "spec.fragments.count",
            reason: "count must be at least 1",
        }),
        (None, Some(0)) => Err(SliceError::Granularity {
            field: "spec.fragments.size",
            reason: "size must be at least 1",
        }),
        (Some(count), None) => Ok(Slicing::even(items, count, ops_per_item)),
        (None, Some(size)) => Slicing::fixed(items, size, ops_per_item),
    }
}

impl Slicing {
    /// `count` fragments of near-equal size, clamped to `[1, min(items, MAX_FRAGMENTS)]`.
    pub fn even(items: u64, count: u32, ops_per_item: u64) -> Self {
        let fragments = u64::from(count.clamp(1, MAX_FRAGMENTS)).min(items.max(1));
        // fragments <= MAX_FRAGMENTS, so the conversion cannot fail.
        let fragments = u32::try_from(fragments).unwrap_or(MAX_FRAGMENTS);
        let f = u64::from(fragments);
        let long = u32::try_from(items % f).unwrap_or(0);
        Self {
            items,
            fragments,
            layout: Layout::Even {
                base: items / f,
                long,
            },
            ops_per_item,
        }
    }

    /// Fragments of exactly `size` items (the last may be shorter).
    pub fn fixed(items: u64, size: u64, ops_per_item: u64) -> Result<Self, SliceError> {
        let size = size.max(1);
        let fragments = items.div_ceil(size).max(1);
        if fragments > u64::from(MAX_FRAGMENTS) {
            return Err(SliceError::TooManyFragments {
                size,
                items,
                fragments,
                max: MAX_FRAGMENTS,
            });
        }
        Ok(Self {
            items,
            fragments: u32::try_from(fragments).unwrap_or(MAX_FRAGMENTS),
            layout: Layout::Fixed { size },
            ops_per_item,
        })
    }

    /// All work items.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// The number of fragments, 1 to [`MAX_FRAGMENTS`].
    pub fn fragments(&self) -> u32 {
        self.fragments
    }

    /// Nominal operations per work item.
    pub fn ops_per_item(&self) -> u64 {
        self.ops_per_item
    }

    /// Where fragment `i` starts: the number of items in fragments `0..i`. Saturates at
    /// `items` for `i >= fragments`.
    fn start(&self, i: u32) -> u64 {
        if i >= self.fragments {
            return self.items;
        }
        let i64_ = u64::from(i);
        match self.layout {
            // Both products are at most `items`, because fragments before `i` hold them.
            Layout::Even { base, long } => i64_
                .saturating_mul(base)
                .saturating_add(u64::from(i.min(long))),
            Layout::Fixed { size } => i64_.saturating_mul(size).min(self.items),
        }
    }

    /// Fragment `i`'s work items `[start, end)`, or `None` past the last fragment.
    pub fn range(&self, i: u32) -> Option<Range<u64>> {
        (i < self.fragments).then(|| self.start(i)..self.start(i.saturating_add(1)))
    }

    /// Items in fragments `frags` (clamped to the task).
    pub fn items_in(&self, frags: Range<u32>) -> u64 {
        let end = frags.end.min(self.fragments);
        let start = frags.start.min(end);
        self.start(end) - self.start(start)
    }

    /// Nominal operations of fragment `i` (0 past the last), saturating.
    pub fn ops_of(&self, i: u32) -> u64 {
        self.items_in(i..i.saturating_add(1))
            .saturating_mul(self.ops_per_item)
    }

    /// The weight of fragment `i` in work units: its items' nominal operations over
    /// [`OPS_PER_WORK_UNIT`], rounded up, and at least 1 for any fragment, so nothing is
    /// ever free to place. 0 past the last fragment.
    pub fn weight(&self, i: u32) -> u64 {
        if i >= self.fragments {
            return 0;
        }
        self.weight_of(i..i.saturating_add(1))
    }

    /// The weight of fragments `frags` together, in work units (at least 1 when
    /// non-empty).
    pub fn weight_of(&self, frags: Range<u32>) -> u64 {
        let items = self.items_in(frags.clone());
        if frags.start >= frags.end.min(self.fragments) {
            return 0;
        }
        let ops = u128::from(items) * u128::from(self.ops_per_item);
        u64::try_from(ops.div_ceil(u128::from(OPS_PER_WORK_UNIT)))
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Whether fragment `i` weighs at least `threshold` work units (see
    /// [`HEAVY_WORK_UNITS`]).
    pub fn is_heavy(&self, i: u32, threshold: u64) -> bool {
        self.weight(i) >= threshold
    }

    /// Every fragment's item range, in order.
    pub fn ranges(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        (0..self.fragments).filter_map(|i| self.range(i))
    }
}

/// The batch size that cuts `fragments` into at most `max_assignments` assignments.
pub fn batch_size_for(fragments: u32, max_assignments: u32) -> u32 {
    fragments.div_ceil(max_assignments.max(1)).max(1)
}

/// Groups fragments `0..fragments` into contiguous batches of `batch_size` (the last may
/// be shorter); one assignment is one device and one batch. A zero batch size is taken
/// as 1.
pub fn group(fragments: u32, batch_size: u32) -> impl Iterator<Item = Range<u32>> {
    let b = batch_size.max(1);
    (0..fragments.div_ceil(b)).map(move |k| {
        let start = k.saturating_mul(b);
        start..start.saturating_add(b).min(fragments)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::fixtures::TaskBuilder;

    fn covers_everything_in_order(s: &Slicing) {
        let mut next = 0;
        let mut n = 0u32;
        for r in s.ranges() {
            assert_eq!(r.start, next, "fragments are contiguous");
            assert!(r.end > r.start, "no empty fragment");
            next = r.end;
            n += 1;
        }
        assert_eq!(next, s.items());
        assert_eq!(n, s.fragments());
        assert_eq!(s.range(s.fragments()), None);
    }

    #[test]
    fn work_items_follow_the_workload_type() {
        assert_eq!(
            work_items(&TaskBuilder::proof(64, 1000).count(1).spec()),
            Ok(1000)
        );
        assert_eq!(
            work_items(&TaskBuilder::training(500, 3).count(1).spec()),
            Ok(1500)
        );
        assert_eq!(
            work_items(&TaskBuilder::inference(70).count(1).spec()),
            Ok(70)
        );
        assert_eq!(
            work_items(&TaskBuilder::bytes(1 << 20).count(1).spec()),
            Ok(1 << 20)
        );
    }

    #[test]
    fn a_size_that_does_not_divide_the_items_leaves_a_short_last_fragment() {
        let s = slice(&TaskBuilder::proof(64, 10).size(4).spec()).unwrap();
        assert_eq!(s.fragments(), 3);
        assert_eq!(s.ranges().collect::<Vec<_>>(), vec![0..4, 4..8, 8..10]);
        covers_everything_in_order(&s);
    }

    #[test]
    fn a_count_spreads_items_so_sizes_differ_by_at_most_one() {
        let s = slice(&TaskBuilder::proof(64, 10).count(4).spec()).unwrap();
        assert_eq!(
            s.ranges().collect::<Vec<_>>(),
            vec![0..3, 3..6, 6..8, 8..10]
        );
        covers_everything_in_order(&s);
    }

    #[test]
    fn a_count_above_the_items_is_clamped_to_the_items() {
        let s = slice(&TaskBuilder::proof(64, 7).count(1000).spec()).unwrap();
        assert_eq!(s.fragments(), 7);
        covers_everything_in_order(&s);
    }

    #[test]
    fn a_count_above_the_cap_is_clamped_to_100000() {
        let s = slice(&TaskBuilder::proof(64, u64::MAX).count(u32::MAX).spec()).unwrap();
        assert_eq!(s.fragments(), MAX_FRAGMENTS);
        covers_everything_in_order(&s);
    }

    #[test]
    fn a_size_giving_more_than_100000_fragments_is_an_error_naming_the_size() {
        let ok = slice(&TaskBuilder::proof(64, 100_000).size(1).spec()).unwrap();
        assert_eq!(ok.fragments(), 100_000);
        let err = slice(&TaskBuilder::proof(64, 100_001).size(1).spec()).unwrap_err();
        assert_eq!(err.field(), "spec.fragments.size");
        assert!(err.to_string().contains("spec.fragments.size"), "{err}");
        assert_eq!(err.category(), "TooManyFragments");
    }

    #[test]
    fn zero_and_huge_values_are_errors_or_clamps_never_panics() {
        for (items, count, size) in [
            (0, Some(1), None),
            (1, Some(0), None),
            (1, None, Some(0)),
            (1, None, None),
            (1, Some(1), Some(1)),
            (u64::MAX, None, Some(1)),
            (u64::MAX, None, Some(u64::MAX)),
            (u64::MAX, Some(u32::MAX), None),
            (1, Some(u32::MAX), None),
            (1, None, Some(u64::MAX)),
        ] {
            let spec = TaskBuilder::proof(8192, items)
                .granularity(count, size)
                .spec();
            if let Ok(s) = slice(&spec) {
                covers_everything_in_order(&s);
                let last = s.fragments() - 1;
                assert!(s.weight(last) >= 1);
                assert!(s.weight_of(0..u32::MAX) >= s.weight(last));
            }
        }
        let err = slice(&TaskBuilder::proof(64, 0).count(1).spec()).unwrap_err();
        assert_eq!(err.field(), "spec.computeProof.products");
        let err = slice(&TaskBuilder::training(u64::MAX, 2).count(1).spec()).unwrap_err();
        assert_eq!(err.field(), "spec.training.samples");
    }

    #[test]
    fn a_missing_parameter_block_names_it() {
        let mut spec = TaskBuilder::proof(64, 10).count(1).spec();
        spec.compute_proof = None;
        assert_eq!(
            slice(&spec).unwrap_err(),
            SliceError::MissingParams {
                field: "spec.computeProof"
            }
        );
    }

    #[test]
    fn ranges_are_computed_without_materializing_fragments() {
        let s = slice(&TaskBuilder::proof(64, 1_000_000_007).count(100_000).spec()).unwrap();
        assert!(
            std::mem::size_of::<Slicing>() <= 48,
            "a few integers, not a list"
        );
        assert_eq!(s.range(0), Some(0..10_001));
        assert_eq!(s.range(99_999).map(|r| r.end), Some(1_000_000_007));
        assert_eq!(s.items_in(0..100_000), 1_000_000_007);
        assert_eq!(s.items_in(5..5), 0);
        covers_everything_in_order(&s);
    }

    #[test]
    fn weights_are_work_units_of_a_giga_operation_rounded_up() {
        // 2·1024³ ≈ 2.147 GOP per product; 1000 products → 2148 work units.
        let s = slice(&TaskBuilder::proof(1024, 1000).count(1).spec()).unwrap();
        assert_eq!(s.weight(0), 2148);
        assert!(!s.is_heavy(0, HEAVY_WORK_UNITS));
        let big = slice(&TaskBuilder::proof(8192, 10).count(1).spec()).unwrap();
        assert!(big.is_heavy(0, HEAVY_WORK_UNITS));
        // A tiny fragment still weighs one unit.
        let tiny = slice(&TaskBuilder::bytes(10).count(10).spec()).unwrap();
        assert_eq!(tiny.weight(9), 1);
        assert_eq!(tiny.weight(10), 0);
    }

    #[test]
    fn groups_bound_assignments_at_100000_fragments() {
        let b = batch_size_for(100_000, MAX_ASSIGNMENTS_PER_TASK);
        let groups: Vec<_> = group(100_000, b).collect();
        assert!(groups.len() <= MAX_ASSIGNMENTS_PER_TASK as usize);
        assert_eq!(groups.first(), Some(&(0..100)));
        assert_eq!(groups.last().map(|r| r.end), Some(100_000));
        let odd: Vec<_> = group(10, 4).collect();
        assert_eq!(odd, vec![0..4, 4..8, 8..10]);
        assert_eq!(group(3, 0).count(), 3);
        assert_eq!(group(0, 5).count(), 0);
        assert_eq!(
            group(u32::MAX, u32::MAX).collect::<Vec<_>>(),
            vec![0..u32::MAX]
        );
    }
}
