use super::*;
use crate::api::BaseUnits;
use crate::ledger::chain::{self, seal};
use crate::ledger::emission::default_schedule;
use crate::ledger::rewards::Contribution;
use crate::ledger::settle::{genesis, settle};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

pub(crate) fn window(epoch: u64) -> crate::api::settlement::EpochWindow {
    let t = |s: i64| Time(Timestamp::from_second(1_800_000_000 + s).unwrap());
    crate::api::settlement::EpochWindow {
        start: t(epoch as i64 * 60),
        end: t(epoch as i64 * 60 + 60),
    }
}

pub(crate) fn work(provider: &str, work_units: u64) -> Contribution {
    Contribution {
        provider: provider.into(),
        work_units,
        quality: 1000,
        reputation: 800,
        stake: 0,
    }
}

pub(crate) fn op(id: &str, provider: &str, kind: OperationKind, amount: u64) -> AccountOperation {
    AccountOperation {
        id: id.into(),
        provider: provider.into(),
        kind,
        amount: BaseUnits(amount),
        destination: (kind == OperationKind::Withdraw).then(|| "0xabc".into()),
    }
}

/// A chain of genesis and `epochs`, each settled with `contributions` and the operations
/// listed for it.
fn chain(epochs: &[(Vec<Contribution>, Vec<AccountOperation>)]) -> (Vec<SettlementSpec>, Ledger) {
    let mut records = vec![genesis(&default_schedule(), window(0))];
    let mut l = Ledger::replay(&records).unwrap();
    for (i, (c, ops)) in epochs.iter().enumerate() {
        let prev = records.last().unwrap().hash.clone();
        let s = settle(&l, &prev, window(i as u64 + 1), c, &Default::default(), ops);
        for r in &s.records {
            l.apply(r).unwrap();
        }
        records.extend(s.records);
    }
    (records, l)
}

#[test]
fn epochs_credit_rewards_and_keep_the_supply() {
    let (records, l) = chain(&[
        (vec![work("a", 300), work("b", 100)], vec![]),
        (vec![], vec![]),
        (vec![work("b", 50)], vec![]),
    ]);
    assert_eq!(chain::verify(&records), Ok(()));
    let first = records[1].emission.0;
    assert_eq!(first, 10_000_000_000);
    assert_eq!(l.accounts["a"].rewards, first * 3 / 4);
    // The empty epoch returned its emission; the pool released from it again.
    assert_eq!(records[2].totals.returned_to_pool.0, records[2].emission.0);
    assert_eq!(l.paid + l.pool, crate::api::POOL_BASE_UNITS);
    assert_eq!(Ledger::replay(&records).unwrap(), l);
}

#[test]
fn stake_bonds_boosts_unbonds_after_the_cool_down_and_never_mints() {
    let ten_k = 10_000 * crate::api::BASE_UNITS_PER_CXT;
    let (_, l) = chain(&[
        (
            vec![work("a", 100)],
            vec![op("s1", "a", OperationKind::Bond, ten_k)],
        ),
        (vec![work("a", 100), work("b", 100)], vec![]),
    ]);
    assert_eq!(l.stake("a"), ten_k);
    let a = &l.accounts["a"];
    let b = &l.accounts["b"];
    // Epoch 2: equal work, a's stake doubles its weight.
    let e2 = a.rewards - 10_000_000_000;
    assert!(
        e2 > b.rewards * 2 - 2 && e2 < b.rewards * 2 + 2,
        "{e2} vs {}",
        b.rewards
    );
    assert_eq!(l.paid + l.pool, crate::api::POOL_BASE_UNITS);
    // Unbonding locks the stake until the cool-down ends.
    let mut epochs = vec![(vec![], vec![op("u1", "a", OperationKind::Unbond, ten_k)])];
    epochs.extend((0..UNBOND_EPOCHS).map(|_| (vec![], vec![])));
    let mut all = vec![(
        vec![work("a", 100)],
        vec![op("s1", "a", OperationKind::Bond, ten_k)],
    )];
    all.extend(epochs);
    let (_, l) = chain(&all);
    assert_eq!(l.stake("a"), 0);
    assert_eq!(l.accounts["a"].balance(), 10_000_000_000);
}

#[test]
fn overdrafts_and_repeated_withdrawals_are_refused_and_a_forged_one_fails_replay() {
    let (records, l) = chain(&[(vec![work("a", 100)], vec![])]);
    let balance = l.accounts["a"].balance();
    let prev = records.last().unwrap().hash.clone();
    let s = settle(
        &l,
        &prev,
        window(2),
        &[],
        &Default::default(),
        &[
            op("w1", "a", OperationKind::Withdraw, balance),
            op("w1", "a", OperationKind::Withdraw, 1),
            op("w2", "a", OperationKind::Withdraw, 1),
            op("s1", "nobody", OperationKind::Bond, 1),
            op("u1", "a", OperationKind::Unbond, 1),
        ],
    );
    assert_eq!(s.records[0].operations.len(), 1, "{:?}", s.refused);
    let reasons: Vec<String> = s.refused.iter().map(|(_, e)| e.to_string()).collect();
    assert!(reasons[0].contains("already recorded"), "{reasons:?}");
    assert!(reasons[1].contains("balance of 0"), "{reasons:?}");
    assert!(reasons[3].contains("stake of 0"), "{reasons:?}");
    // A record that pays out more than the balance, sealed and chained, still fails.
    let mut forged = s.records[0].clone();
    forged
        .operations
        .push(op("w9", "a", OperationKind::Withdraw, 5));
    let forged = seal(forged);
    let mut tampered = records.clone();
    tampered.push(forged);
    assert_eq!(chain::verify(&tampered), Ok(()));
    let e = Ledger::replay(&tampered).unwrap_err();
    assert!(matches!(e, LedgerError::Overdraft { .. }), "{e}");
}

#[test]
fn every_sum_is_checked_and_names_the_epoch() {
    let (records, _) = chain(&[(vec![work("a", 100), work("b", 1)], vec![])]);
    type Tamper = fn(&mut SettlementSpec);
    let cases: [(&str, Tamper); 5] = [
        ("emission", |s| s.emission.0 += 1),
        ("totals.reward", |s| s.entries[0].reward.0 += 1),
        ("pool", |s| s.pool.0 -= 1),
        ("returnedToPool", |s| s.totals.returned_to_pool.0 += 1),
        ("totals.providers", |s| s.totals.providers += 1),
    ];
    for (what, tamper) in cases {
        let mut bad = records.clone();
        tamper(&mut bad[1]);
        let e = Ledger::replay(&bad).unwrap_err();
        assert!(
            e.to_string().contains(what) && e.to_string().contains("epoch 1"),
            "{what}: {e}"
        );
    }
    let e = Ledger::replay(&records[1..]).unwrap_err();
    assert_eq!(e, LedgerError::NoGenesis { epoch: 1 });
    let mut bad_genesis = records.clone();
    bad_genesis[0].schedule.as_mut().unwrap().supply.0 += 1;
    assert!(matches!(
        Ledger::replay(&bad_genesis),
        Err(LedgerError::Genesis(_))
    ));
}

#[test]
fn many_providers_split_into_chained_parts() {
    let many: Vec<Contribution> = (0..4_500)
        .map(|i| work(&format!("p{i:05}"), 1 + i % 7))
        .collect();
    let (records, l) = chain(&[(many, vec![]), (vec![work("p00000", 1)], vec![])]);
    let parts: Vec<(u64, u32, u32, usize)> = records
        .iter()
        .map(|r| (r.epoch, r.part, r.parts, r.entries.len()))
        .collect();
    assert_eq!(
        parts,
        vec![
            (0, 0, 1, 0),
            (1, 0, 3, 2000),
            (1, 1, 3, 2000),
            (1, 2, 3, 500),
            (2, 0, 1, 1)
        ]
    );
    assert_eq!(l.paid + l.pool, crate::api::POOL_BASE_UNITS);
    assert_eq!(chain::verify(&records), Ok(()));
    // A part dropped from the middle breaks the order.
    let mut missing = records.clone();
    missing.remove(2);
    assert!(matches!(
        Ledger::replay(&missing),
        Err(LedgerError::Order { .. })
    ));
}

#[test]
fn a_held_reward_is_paid_on_release_or_returns_to_the_pool_on_forfeit() {
    let (records, l) = chain(&[(vec![work("a", 100), work("b", 100)], vec![])]);
    let prev = records.last().unwrap().hash.clone();
    let held = std::collections::BTreeSet::from(["b".to_string()]);
    let s = settle(
        &l,
        &prev,
        window(2),
        &[work("a", 1), work("b", 1)],
        &held,
        &[],
    );
    let mut l2 = l.clone();
    for r in &s.records {
        l2.apply(r).unwrap();
    }
    let b_held = l2.accounts["b"].held;
    assert!(b_held > 0 && s.records[0].entries[1].held);
    assert_eq!(
        l2.accounts["b"].balance(),
        l.accounts["b"].balance(),
        "held is not balance"
    );
    assert_eq!(l2.paid + l2.held + l2.pool, crate::api::POOL_BASE_UNITS);
    // Release half, forfeit the rest: paid, then back in the pool.
    let prev = s.records.last().unwrap().hash.clone();
    let ops = [
        op("r1", "b", OperationKind::Release, b_held / 2),
        op("f1", "b", OperationKind::Forfeit, b_held - b_held / 2),
        op("f2", "b", OperationKind::Forfeit, 1),
    ];
    let s3 = settle(&l2, &prev, window(3), &[], &Default::default(), &ops);
    assert_eq!(s3.refused.len(), 1, "nothing left to forfeit");
    let mut l3 = l2.clone();
    for r in &s3.records {
        l3.apply(r).unwrap();
    }
    assert_eq!(l3.accounts["b"].held, 0);
    assert_eq!(
        l3.accounts["b"].balance(),
        l2.accounts["b"].balance() + b_held / 2
    );
    assert_eq!(l3.held, 0);
    assert_eq!(l3.paid + l3.pool, crate::api::POOL_BASE_UNITS);
}
