//! Weighted fair sharing of a cycle's capacity (free fragment slots) across namespaces,
//! then across the tasks inside each namespace.
//!
//! Two levels of weighted max-min water-filling:
//! 1. Namespaces share the capacity with weight `1 + the highest priority among their
//!    pending tasks`. A namespace gains nothing by splitting work into many tasks, and a
//!    huge task in one namespace cannot starve another namespace.
//! 2. Each namespace's share is split among its tasks with weight `1 + priority`.
//!
//! Capacity a namespace or task cannot use (its demand is met) flows to the others, so
//! the whole capacity is handed out while any demand remains. Integers throughout; a
//! remainder too small to split proportionally goes one unit at a time to the heaviest
//! weights first, then in name order. Inputs are grouped with ordered maps only, so the
//! result does not depend on the order of the input.

use std::collections::BTreeMap;

/// One task's pending demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand<'a> {
    /// The task's namespace.
    pub namespace: &'a str,
    /// The task's name.
    pub task: &'a str,
    /// Its priority, 0 to 1000 (higher gets more).
    pub priority: u32,
    /// Fragments it could place now.
    pub pending: u64,
}

/// How many fragments each demand may place this cycle, in input order. Never more
/// than its pending demand; the total is `min(capacity, total demand)`.
pub fn fair_shares(demands: &[Demand<'_>], capacity: u64) -> Vec<u64> {
    let mut out = vec![0; demands.len()];
    let mut by_ns: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, d) in demands.iter().enumerate() {
        by_ns.entry(d.namespace).or_default().push(i);
    }
    let groups: Vec<Vec<usize>> = by_ns
        .into_values()
        .map(|mut tasks| {
            // Stable: duplicate names keep input order.
            tasks.sort_by_key(|&i| demands[i].task);
            tasks
        })
        .collect();
    let ns_weights: Vec<u64> = groups
        .iter()
        .map(|tasks| {
            1 + tasks
                .iter()
                .filter(|&&i| demands[i].pending > 0)
                .map(|&i| u64::from(demands[i].priority))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let ns_demands: Vec<u64> = groups
        .iter()
        .map(|tasks| {
            tasks
                .iter()
                .fold(0u64, |acc, &i| acc.saturating_add(demands[i].pending))
        })
        .collect();
    let ns_shares = water_fill(&ns_weights, &ns_demands, capacity);
    for (tasks, share) in groups.iter().zip(ns_shares) {
        let weights: Vec<u64> = tasks
            .iter()
            .map(|&i| 1 + u64::from(demands[i].priority))
            .collect();
        let wants: Vec<u64> = tasks.iter().map(|&i| demands[i].pending).collect();
        for (&i, s) in tasks.iter().zip(water_fill(&weights, &wants, share)) {
            out[i] = s;
        }
    }
    out
}

/// Weighted max-min fair allocation of `capacity` to entries with `weights` (0 counts
/// as 1) and `demands`, in the entries' order: each round gives every unsatisfied entry
/// its weighted share of what is left, capped at its demand, until the capacity or the
/// demand runs out.
pub fn water_fill(weights: &[u64], demands: &[u64], capacity: u64) -> Vec<u64> {
    let n = weights.len().min(demands.len());
    let w = |i: usize| u128::from(weights[i].max(1));
    let mut alloc = vec![0u64; n];
    let mut remaining = capacity;
    let mut active: Vec<usize> = (0..n).filter(|&i| demands[i] > 0).collect();
    // Each round either hands out at least one unit or removes an entry, and after a
    // round in which nobody was capped at most `active.len()` units remain, so this
    // runs O(n) rounds.
    while remaining > 0 && !active.is_empty() {
        let total: u128 = active.iter().map(|&i| w(i)).sum();
        let round = u128::from(remaining);
        let mut given = 0u64;
        for &i in &active {
            // share <= round, which fits in u64.
            let share = u64::try_from(round * w(i) / total).unwrap_or(remaining);
            let g = share.min(demands[i] - alloc[i]);
            alloc[i] += g;
            given += g;
        }
        remaining -= given;
        if given == 0 {
            // Every proportional share rounded down to zero.
            let mut order = active.clone();
            order.sort_by(|&a, &b| w(b).cmp(&w(a)).then(a.cmp(&b)));
            for i in order {
                if remaining == 0 {
                    break;
                }
                alloc[i] += 1;
                remaining -= 1;
            }
        }
        active.retain(|&i| alloc[i] < demands[i]);
    }
    alloc
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d<'a>(namespace: &'a str, task: &'a str, priority: u32, pending: u64) -> Demand<'a> {
        Demand {
            namespace,
            task,
            priority,
            pending,
        }
    }

    #[test]
    fn a_huge_task_does_not_starve_another_namespace() {
        let shares = fair_shares(
            &[d("big", "t", 100, 1_000_000), d("small", "t", 100, 500)],
            100,
        );
        assert_eq!(shares, vec![50, 50]);
    }

    #[test]
    fn many_tasks_in_one_namespace_do_not_buy_a_bigger_share() {
        let mut demands: Vec<_> = (0..10)
            .map(|i| {
                d(
                    "many",
                    ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"][i],
                    100,
                    1000,
                )
            })
            .collect();
        demands.push(d("one", "t", 100, 1000));
        let shares = fair_shares(&demands, 100);
        assert_eq!(shares[..10].iter().sum::<u64>(), 50);
        assert_eq!(shares[10], 50);
        assert!(shares[..10].iter().all(|&s| s == 5));
    }

    #[test]
    fn priorities_skew_shares_between_and_within_namespaces() {
        let shares = fair_shares(&[d("a", "t", 300, 10_000), d("b", "t", 100, 10_000)], 402);
        assert_eq!(shares, vec![301, 101]);
        let shares = fair_shares(
            &[d("a", "low", 0, 10_000), d("a", "high", 999, 10_000)],
            1001,
        );
        assert_eq!(shares, vec![1, 1000]);
    }

    #[test]
    fn leftover_capacity_is_redistributed() {
        let shares = fair_shares(&[d("a", "t", 100, 10), d("b", "t", 100, 1_000)], 100);
        assert_eq!(shares, vec![10, 90]);
        let shares = fair_shares(&[d("a", "t", 1000, 10), d("b", "t", 0, 1_000)], 100);
        assert_eq!(shares, vec![10, 90]);
    }

    #[test]
    fn zero_capacity_places_nothing() {
        let shares = fair_shares(&[d("a", "t", 100, 10), d("b", "t", 100, 10)], 0);
        assert_eq!(shares, vec![0, 0]);
        assert!(fair_shares(&[], 10).is_empty());
    }

    #[test]
    fn a_remainder_too_small_to_split_goes_to_the_heaviest_first() {
        assert_eq!(water_fill(&[1, 5, 1], &[9, 9, 9], 2), vec![0, 2, 0]);
        assert_eq!(water_fill(&[2, 1, 2], &[9, 9, 9], 2), vec![1, 0, 1]);
        assert_eq!(water_fill(&[1, 1], &[9, 9], 1), vec![1, 0]);
    }

    #[test]
    fn shares_do_not_depend_on_input_order() {
        let a = [
            d("x", "1", 5, 70),
            d("y", "2", 50, 700),
            d("x", "3", 500, 7),
        ];
        let b = [a[2], a[0], a[1]];
        let sa = fair_shares(&a, 101);
        let sb = fair_shares(&b, 101);
        assert_eq!((sa[0], sa[1], sa[2]), (sb[1], sb[2], sb[0]));
    }

    proptest! {
        #[test]
        fn shares_are_work_conserving_and_capped_by_demand(
            raw in proptest::collection::vec((0usize..4, 0u32..1001, 0u64..10_000), 0..20),
            capacity in 0u64..50_000,
        ) {
            let names = ["n0", "n1", "n2", "n3"];
            let tasks: Vec<String> = (0..raw.len()).map(|i| format!("t{i}")).collect();
            let demands: Vec<_> = raw
                .iter()
                .zip(&tasks)
                .map(|(&(ns, p, pending), t)| d(names[ns], t, p, pending))
                .collect();
            let shares = fair_shares(&demands, capacity);
            let total_demand: u64 = demands.iter().map(|d| d.pending).sum();
            prop_assert_eq!(shares.iter().sum::<u64>(), capacity.min(total_demand));
            for (s, d) in shares.iter().zip(&demands) {
                prop_assert!(*s <= d.pending);
            }
        }
    }
}
