//! Building the records the operator writes: the genesis record, and an epoch's
//! settlement from its contributions and the account operations requested, split into
//! chained parts of at most [`MAX_ENTRIES`] entries. Pure: the same inputs give the same
//! sealed records, so an operator that restarts mid-settlement writes the same objects
//! again (and finds them already there).

use super::accounts::{Ledger, LedgerError};
use super::chain::{GENESIS_HASH, seal};
use super::rewards::{Contribution, split};
use crate::api::BaseUnits;
use crate::api::settlement::{
    AccountOperation, EmissionSchedule, EpochWindow, OperationKind, SettlementSpec,
    SettlementTotals,
};
use std::collections::BTreeSet;

/// Entries per Settlement object (the CRD's bound).
pub const MAX_ENTRIES: usize = 2000;

/// The genesis record: epoch 0, the schedule sealed, the supply in the pool.
pub fn genesis(schedule: &EmissionSchedule, window: EpochWindow) -> SettlementSpec {
    seal(SettlementSpec {
        epoch: 0,
        window,
        emission: BaseUnits(0),
        entries: Vec::new(),
        totals: SettlementTotals::default(),
        pool: schedule.supply,
        schedule: Some(schedule.clone()),
        part: 0,
        parts: 1,
        operations: Vec::new(),
        previous_hash: GENESIS_HASH.into(),
        hash: String::new(),
    })
}

/// An epoch settled: its records, and the requested operations it could not record.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    /// The parts, in order, sealed and chained from `previous_hash`.
    pub records: Vec<SettlementSpec>,
    /// Operations refused (an overdraft, a repeated withdrawal), with why.
    pub refused: Vec<(AccountOperation, LedgerError)>,
}

/// Settles the epoch after `ledger` (which must be at an epoch's end): its emission split
/// over `contributions` (stake boosts from the ledger's bonded stake), the rewards of the
/// providers in `held` held, and `operations` recorded in order where the ledger allows
/// them (after this epoch's rewards).
pub fn settle(
    ledger: &Ledger,
    previous_hash: &str,
    window: EpochWindow,
    contributions: &[Contribution],
    held: &BTreeSet<String>,
    operations: &[AccountOperation],
) -> Settled {
    let (epoch, _) = ledger.next();
    let emission = ledger.next_emission();
    let with_stake: Vec<Contribution> = contributions
        .iter()
        .map(|c| Contribution {
            stake: ledger.stake(&c.provider),
            ..c.clone()
        })
        .collect();
    let mut s = split(emission, &with_stake);
    for e in &mut s.entries {
        e.held = held.contains(&e.provider);
    }
    // Check operations against the balances this epoch's rewards leave.
    let mut after = ledger.clone();
    after.mature(epoch);
    for e in &s.entries {
        after.credit(&e.provider, e.reward.0, e.held);
    }
    let (mut accepted, mut refused) = (Vec::new(), Vec::new());
    for op in operations {
        match after.check(epoch, op) {
            Ok(()) => {
                after.record(epoch, op);
                accepted.push(op.clone());
            }
            Err(e) => refused.push((op.clone(), e)),
        }
    }
    let chunks: Vec<&[_]> = if s.entries.is_empty() {
        vec![&[]]
    } else {
        s.entries.chunks(MAX_ENTRIES).collect()
    };
    let parts = chunks.len() as u32;
    let forfeited: u64 = accepted
        .iter()
        .filter(|o| o.kind == OperationKind::Forfeit)
        .map(|o| o.amount.0)
        .sum();
    let pool = BaseUnits(ledger.pool - emission.min(ledger.pool) + s.returned + forfeited);
    let mut previous = previous_hash.to_string();
    let mut records = Vec::with_capacity(chunks.len());
    for (i, entries) in chunks.into_iter().enumerate() {
        let last = i + 1 == parts as usize;
        let spec = seal(SettlementSpec {
            epoch,
            window: window.clone(),
            emission: BaseUnits(emission),
            entries: entries.to_vec(),
            totals: SettlementTotals {
                providers: entries.len() as u32,
                work_units: entries.iter().map(|e| e.work_units).sum(),
                reward: BaseUnits(entries.iter().map(|e| e.reward.0).sum()),
                returned_to_pool: BaseUnits(s.returned),
            },
            pool,
            schedule: None,
            part: i as u32,
            parts,
            operations: if last { accepted.clone() } else { Vec::new() },
            previous_hash: previous.clone(),
            hash: String::new(),
        });
        previous = spec.hash.clone();
        records.push(spec);
    }
    Settled { records, refused }
}

#[cfg(test)]
mod tests;
