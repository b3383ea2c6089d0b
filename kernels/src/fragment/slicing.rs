//! Which work items a fragment covers, from the task's item count and its granularity.
//! This must cut exactly where the operator's slicer (`operator/src/scheduler/slicer.rs`)
//! cuts, because digests depend on the boundaries; the tests pin its examples.
//!
//! - `count`: `f = min(max(count, 1), MAX_FRAGMENTS, max(items, 1))` fragments; the
//!   first `items mod f` hold `items div f + 1` items, the rest `items div f`.
//! - `size`: fragments of `size` items, the last one shorter; more than
//!   [`MAX_FRAGMENTS`] is an error.

use super::FragmentError;
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Most fragments one task may be cut into (the task API's limit).
pub const MAX_FRAGMENTS: u32 = 100_000;

/// How finely a task is cut; serialized as `{"count": n}` or `{"size": n}`, the shape of
/// a task's `fragments` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Granularity {
    /// This many fragments of near-equal size.
    Count(u32),
    /// Fragments of this many items.
    Size(u64),
}

/// The number of fragments `items` work items are cut into.
pub fn fragments(kind: &'static str, items: u64, g: Granularity) -> Result<u32, FragmentError> {
    match g {
        Granularity::Count(0) => Err(FragmentError::params(
            kind,
            "fragments.count",
            "must be at least 1",
        )),
        Granularity::Count(count) => {
            let f = u64::from(count.min(MAX_FRAGMENTS)).min(items.max(1));
            Ok(u32::try_from(f).unwrap_or(MAX_FRAGMENTS))
        }
        Granularity::Size(0) => Err(FragmentError::params(
            kind,
            "fragments.size",
            "must be at least 1",
        )),
        Granularity::Size(size) => {
            let f = items.div_ceil(size).max(1);
            u32::try_from(f)
                .ok()
                .filter(|f| *f <= MAX_FRAGMENTS)
                .ok_or_else(|| {
                    FragmentError::params(
                        kind,
                        "fragments.size",
                        format!("cuts {items} items into {f} fragments; at most {MAX_FRAGMENTS} are allowed"),
                    )
                })
        }
    }
}

/// Fragment `index`'s work items.
pub fn range(
    kind: &'static str,
    items: u64,
    g: Granularity,
    index: u32,
) -> Result<Range<u64>, FragmentError> {
    let count = fragments(kind, items, g)?;
    if index >= count {
        return Err(FragmentError::Index {
            index,
            fragments: count,
        });
    }
    let start = |i: u32| -> u64 {
        let i = u64::from(i);
        match g {
            Granularity::Count(_) => {
                let f = u64::from(count);
                let (base, long) = (items / f, items % f);
                i * base + i.min(long)
            }
            Granularity::Size(size) => i.saturating_mul(size).min(items),
        }
    };
    Ok(start(index)..start(index + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(items: u64, g: Granularity) -> Vec<Range<u64>> {
        let n = fragments("t", items, g).unwrap();
        (0..n).map(|i| range("t", items, g, i).unwrap()).collect()
    }

    #[test]
    fn cuts_where_the_operator_slicer_cuts() {
        assert_eq!(all(10, Granularity::Size(4)), vec![0..4, 4..8, 8..10]);
        assert_eq!(
            all(10, Granularity::Count(4)),
            vec![0..3, 3..6, 6..8, 8..10]
        );
        assert_eq!(all(3, Granularity::Count(10)), vec![0..1, 1..2, 2..3]);
    }

    #[test]
    fn fragments_cover_every_item_once_in_order() {
        for items in [1u64, 7, 100, 1_000_003] {
            for g in [
                Granularity::Count(1),
                Granularity::Count(7),
                Granularity::Count(MAX_FRAGMENTS),
                Granularity::Size(1_000),
                Granularity::Size(u64::MAX),
            ] {
                let mut next = 0;
                for r in all(items, g) {
                    assert_eq!(r.start, next, "{items} {g:?}");
                    assert!(r.end > r.start);
                    next = r.end;
                }
                assert_eq!(next, items, "{items} {g:?}");
            }
        }
    }

    #[test]
    fn bad_granularity_and_indices_are_errors() {
        assert!(range("t", 10, Granularity::Count(0), 0).is_err());
        assert!(range("t", 10, Granularity::Size(0), 0).is_err());
        assert!(matches!(
            range("t", 10, Granularity::Count(4), 4),
            Err(FragmentError::Index {
                index: 4,
                fragments: 4
            })
        ));
        let e = fragments("t", 1 << 40, Granularity::Size(1)).unwrap_err();
        assert_eq!(e.field(), "fragments.size");
    }
}
