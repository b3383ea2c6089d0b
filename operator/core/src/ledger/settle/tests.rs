use super::*;
use crate::api::settlement::OperationKind;
use crate::ledger::accounts::tests::{op, window, work};
use crate::ledger::emission::default_schedule;
use proptest::prelude::*;

fn kind(k: u8) -> OperationKind {
    match k % 5 {
        0 => OperationKind::Bond,
        1 => OperationKind::Unbond,
        2 => OperationKind::Withdraw,
        3 => OperationKind::Release,
        _ => OperationKind::Forfeit,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Money invariants over random epochs and random (often invalid) operations: the
    /// supply is conserved, no balance goes negative, each epoch pays exactly its
    /// emission or returns it, stake never mints, a withdrawal id pays at most once, and
    /// the chain the operator writes always replays.
    #[test]
    fn the_money_invariants_hold(
        epochs in proptest::collection::vec(
            (
                proptest::collection::vec((0u8..5, 0u64..1_000), 0..5),
                proptest::collection::vec((0u8..5, 0u8..5, 0u8..6, 0u64..20_000_000_000), 0..6),
                proptest::collection::btree_set(0u8..5, 0..3),
            ),
            1..12,
        ),
    ) {
        let mut records = vec![genesis(&default_schedule(), window(0))];
        let mut l = Ledger::replay(&records).unwrap();
        let mut withdrawn_ids = std::collections::BTreeMap::new();
        for (i, (work_rows, ops, held)) in epochs.into_iter().enumerate() {
            let held: std::collections::BTreeSet<String> = held.iter().map(|p| format!("p{p}")).collect();
            let mut c: Vec<_> = work_rows.iter().map(|(p, w)| work(&format!("p{p}"), *w)).collect();
            c.sort_by(|a, b| a.provider.cmp(&b.provider));
            c.dedup_by(|a, b| a.provider == b.provider);
            let ops: Vec<_> = ops
                .iter()
                .map(|(p, k, id, amount)| op(&format!("op{id}"), &format!("p{p}"), kind(*k), *amount))
                .collect();
            let before = (l.paid + l.held, l.pool);
            let prev = records.last().unwrap().hash.clone();
            let s = settle(&l, &prev, window(i as u64 + 1), &c, &held, &ops);
            for r in &s.records {
                l.apply(r).unwrap();
            }
            let emission = s.records[0].emission.0;
            let forfeited: u64 = s.records.iter().flat_map(|r| &r.operations).filter(|o| o.kind == OperationKind::Forfeit).map(|o| o.amount.0).sum();
            let credited = l.paid + l.held + forfeited - before.0;
            let returned = s.records[0].totals.returned_to_pool.0;
            prop_assert_eq!(credited + returned, emission);
            prop_assert_eq!(l.pool, before.1 - emission + returned + forfeited);
            prop_assert_eq!(l.paid + l.held + l.pool, crate::api::POOL_BASE_UNITS);
            for r in &s.records {
                for o in r.operations.iter().filter(|o| o.kind == OperationKind::Withdraw) {
                    prop_assert!(withdrawn_ids.insert(o.id.clone(), o.amount.0).is_none(), "withdrawal {} twice", o.id);
                }
            }
            records.extend(s.records);
            for a in l.accounts.values() {
                let locked = a.unbonding_total();
                prop_assert!(a.withdrawn + a.staked + locked <= a.rewards, "{a:?}");
            }
            // Stake never mints: rewards credited equal what left the pool and was paid.
            let credited: u64 = l.accounts.values().map(|a| a.rewards).sum();
            prop_assert_eq!(credited, l.paid);
            prop_assert_eq!(l.accounts.values().map(|a| a.held).sum::<u64>(), l.held);
        }
        prop_assert_eq!(Ledger::replay(&records).unwrap(), l);
        prop_assert_eq!(crate::ledger::chain::verify(&records), Ok(()));
    }
}
