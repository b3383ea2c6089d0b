//! Balances, stake and withdrawals, folded from the chain of settlements; and every sum
//! the chain must satisfy. Pure, integer.
//!
//! - **Genesis** (epoch 0, one part): seals a valid schedule, pays nothing, and leaves
//!   the whole supply in the pool.
//! - **An epoch** (one or more parts, in order): its first part's emission is what the
//!   schedule releases from the pool as the previous epoch left it; each part's totals
//!   are the sums of its entries; over all parts, rewards plus `returnedToPool` equal the
//!   emission, and the pool after is the pool before, less the emission, plus what
//!   returned. Rewards are credited to the providers' accounts.
//! - **Operations**, in the order recorded: `Bond` moves balance into stake, `Unbond`
//!   moves stake into a cool-down of [`UNBOND_EPOCHS`] epochs after which it is balance
//!   again, `Withdraw` pays out of the balance; each operation id applies once.
//! - A provider's balance is rewards − withdrawn − staked − unbonding, and never
//!   negative: an operation that would overdraw it is an error, so the operator checks
//!   ([`Ledger::check`]) before it records one.
//! - **Held rewards** (reconciliation contradicted them) leave the pool but are not the
//!   provider's until a `Release`; a `Forfeit` returns them to the pool at the epoch's end.
//! - At every epoch's end, all rewards ever paid, plus those held, plus the pool, equal
//!   the supply.

use super::emission::{self, ScheduleError};
use crate::api::settlement::{AccountOperation, EmissionSchedule, OperationKind, SettlementSpec};
use std::collections::{BTreeMap, BTreeSet};

/// Epochs stake stays locked after it is unbonded.
pub const UNBOND_EPOCHS: u64 = 24;

/// One provider's account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    /// Rewards ever credited.
    pub rewards: u64,
    /// Paid out by withdrawals.
    pub withdrawn: u64,
    /// Bonded stake.
    pub staked: u64,
    /// Unbonded stake still cooling down: (amount, the epoch it is released at).
    pub unbonding: Vec<(u64, u64)>,
    /// Rewards held by reconciliation, neither paid nor back in the pool.
    pub held: u64,
}

impl Account {
    /// Unbonded stake still cooling down, in all.
    pub fn unbonding_total(&self) -> u64 {
        self.unbonding.iter().map(|u| u.0).sum()
    }

    /// What the provider may bond or withdraw.
    pub fn balance(&self) -> u64 {
        let locked = self.unbonding_total();
        self.rewards
            .saturating_sub(self.withdrawn)
            .saturating_sub(self.staked)
            .saturating_sub(locked)
    }
}

/// Why a chain's sums or operations do not hold. Each names the epoch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The chain does not start with a genesis record.
    #[error("epoch {epoch}: expected the genesis record (epoch 0 with the schedule) first")]
    NoGenesis {
        /// The first epoch found.
        epoch: u64,
    },
    /// The genesis record is not valid.
    #[error("genesis: {0}")]
    Genesis(String),
    /// Records out of order (parts of an epoch, or epochs).
    #[error("epoch {epoch} part {part}: expected epoch {expected_epoch} part {expected_part}")]
    Order {
        /// Found.
        epoch: u64,
        /// Found.
        part: u32,
        /// Expected.
        expected_epoch: u64,
        /// Expected.
        expected_part: u32,
    },
    /// A sum does not hold.
    #[error("epoch {epoch}: {what}: expected {expected}, found {found}")]
    Sum {
        /// The epoch.
        epoch: u64,
        /// Which sum.
        what: &'static str,
        /// What it should be.
        expected: u64,
        /// What the record says.
        found: u64,
    },
    /// An operation that would overdraw an account.
    #[error(
        "epoch {epoch}: operation {id} ({kind:?}) of {amount} base units exceeds {provider}'s {what} of {available}"
    )]
    Overdraft {
        /// The epoch.
        epoch: u64,
        /// The operation.
        id: String,
        /// Its kind.
        kind: OperationKind,
        /// The provider.
        provider: String,
        /// The amount.
        amount: u64,
        /// `balance` or `stake`.
        what: &'static str,
        /// What there was.
        available: u64,
    },
    /// An operation id recorded twice.
    #[error("epoch {epoch}: operation {id} was already recorded")]
    Duplicate {
        /// The epoch.
        epoch: u64,
        /// The id.
        id: String,
    },
}

/// The state of the ledger after a prefix of the chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    /// The sealed schedule.
    pub schedule: Option<EmissionSchedule>,
    /// The pool's balance.
    pub pool: u64,
    /// All rewards ever paid (released holds included).
    pub paid: u64,
    /// Rewards held now.
    pub held: u64,
    /// Accounts by provider.
    pub accounts: BTreeMap<String, Account>,
    /// Operation ids recorded (each applies once).
    pub recorded: BTreeSet<String>,
    /// The last record applied: (epoch, part, parts).
    pub last: Option<(u64, u32, u32)>,
    /// Rewards paid or held by the parts of the current epoch so far, held rewards
    /// forfeited to the pool in it, and its pool before.
    epoch_paid: u64,
    epoch_forfeited: u64,
    pool_before: u64,
}

impl Ledger {
    /// Folds a whole chain, sorted by epoch and part.
    pub fn replay(chain: &[SettlementSpec]) -> Result<Self, LedgerError> {
        let mut l = Self::default();
        for s in chain {
            l.apply(s)?;
        }
        Ok(l)
    }

    /// The epoch the next record opens (after a complete epoch), or continues.
    pub fn next(&self) -> (u64, u32) {
        match self.last {
            None => (0, 0),
            Some((e, p, parts)) if p + 1 < parts => (e, p + 1),
            Some((e, _, _)) => (e + 1, 0),
        }
    }

    /// What the next epoch releases.
    pub fn next_emission(&self) -> u64 {
        self.schedule
            .as_ref()
            .map_or(0, |s| emission::release(s, self.pool))
    }

    /// A provider's bonded stake.
    pub fn stake(&self, provider: &str) -> u64 {
        self.accounts.get(provider).map_or(0, |a| a.staked)
    }

    /// Applies one record.
    pub fn apply(&mut self, s: &SettlementSpec) -> Result<(), LedgerError> {
        let (epoch, part) = self.next();
        if (s.epoch, s.part) != (epoch, part) {
            return Err(match self.last {
                None => LedgerError::NoGenesis { epoch: s.epoch },
                Some(_) => LedgerError::Order {
                    epoch: s.epoch,
                    part: s.part,
                    expected_epoch: epoch,
                    expected_part: part,
                },
            });
        }
        if epoch == 0 {
            self.genesis(s)?;
        } else {
            self.epoch(s)?;
        }
        self.last = Some((s.epoch, s.part, s.parts.max(1)));
        Ok(())
    }

    fn genesis(&mut self, s: &SettlementSpec) -> Result<(), LedgerError> {
        let Some(schedule) = &s.schedule else {
            return Err(LedgerError::Genesis(
                "expected the emission schedule".into(),
            ));
        };
        emission::check(schedule)
            .map_err(|e: ScheduleError| LedgerError::Genesis(e.to_string()))?;
        if s.parts != 1 || s.emission.0 != 0 || !s.entries.is_empty() || !s.operations.is_empty() {
            return Err(LedgerError::Genesis(
                "expected one part with no emission, entries or operations".into(),
            ));
        }
        let supply = schedule.supply.0;
        self.sum(0, "the pool after genesis (the supply)", supply, s.pool.0)?;
        self.schedule = Some(schedule.clone());
        self.pool = supply;
        Ok(())
    }

    fn sum(
        &self,
        epoch: u64,
        what: &'static str,
        expected: u64,
        found: u64,
    ) -> Result<(), LedgerError> {
        if expected == found {
            Ok(())
        } else {
            Err(LedgerError::Sum {
                epoch,
                what,
                expected,
                found,
            })
        }
    }

    fn epoch(&mut self, s: &SettlementSpec) -> Result<(), LedgerError> {
        let e = s.epoch;
        if s.schedule.is_some() {
            return Err(LedgerError::Genesis(format!(
                "epoch {e} carries a schedule"
            )));
        }
        if s.part == 0 {
            self.pool_before = self.pool;
            self.epoch_paid = 0;
            self.epoch_forfeited = 0;
            self.mature(e);
            let expected = self.next_emission();
            self.sum(
                e,
                "emission (the schedule's release)",
                expected,
                s.emission.0,
            )?;
        } else {
            let (_, _, parts) = self.last.unwrap_or_default();
            self.sum(
                e,
                "parts (as the epoch's first part said)",
                u64::from(parts),
                u64::from(s.parts),
            )?;
        }
        let rewards: u64 = s.entries.iter().map(|x| x.reward.0).sum();
        let work: u64 = s.entries.iter().map(|x| x.work_units).sum();
        self.sum(e, "totals.reward", rewards, s.totals.reward.0)?;
        self.sum(e, "totals.workUnits", work, s.totals.work_units)?;
        self.sum(
            e,
            "totals.providers",
            s.entries.len() as u64,
            u64::from(s.totals.providers),
        )?;
        for x in &s.entries {
            self.credit(&x.provider, x.reward.0, x.held);
        }
        self.epoch_paid = self.epoch_paid.saturating_add(rewards);
        for op in &s.operations {
            self.operate(e, op)?;
        }
        if s.part + 1 == s.parts {
            let returned = s.totals.returned_to_pool.0;
            self.sum(
                e,
                "rewards plus returnedToPool (the emission)",
                s.emission.0,
                self.epoch_paid.saturating_add(returned),
            )?;
            let pool = (self.pool_before - s.emission.0.min(self.pool_before))
                .saturating_add(returned)
                .saturating_add(self.epoch_forfeited);
            self.sum(e, "pool", pool, s.pool.0)?;
            self.pool = pool;
            let supply = self.schedule.as_ref().map_or(0, |s| s.supply.0);
            self.sum(
                e,
                "rewards ever paid plus held plus the pool (the supply)",
                supply,
                self.paid
                    .saturating_add(self.held)
                    .saturating_add(self.pool),
            )?;
        }
        Ok(())
    }

    /// Credits a reward to `provider`: paid, or held.
    pub(crate) fn credit(&mut self, provider: &str, reward: u64, held: bool) {
        let a = self.accounts.entry(provider.to_string()).or_default();
        if held {
            a.held = a.held.saturating_add(reward);
            self.held = self.held.saturating_add(reward);
        } else {
            a.rewards = a.rewards.saturating_add(reward);
            self.paid = self.paid.saturating_add(reward);
        }
    }

    /// Releases unbonded stake whose cool-down ends by `epoch`.
    pub(crate) fn mature(&mut self, epoch: u64) {
        for a in self.accounts.values_mut() {
            a.unbonding.retain(|(_, at)| *at > epoch);
        }
    }

    /// Whether `op` may be recorded in `epoch` now.
    pub fn check(&self, epoch: u64, op: &AccountOperation) -> Result<(), LedgerError> {
        let a = self.accounts.get(&op.provider).cloned().unwrap_or_default();
        let over = |what, available| LedgerError::Overdraft {
            epoch,
            id: op.id.clone(),
            kind: op.kind,
            provider: op.provider.clone(),
            amount: op.amount.0,
            what,
            available,
        };
        match op.kind {
            _ if self.recorded.contains(&op.id) => Err(LedgerError::Duplicate {
                epoch,
                id: op.id.clone(),
            }),
            OperationKind::Bond | OperationKind::Withdraw if op.amount.0 > a.balance() => {
                Err(over("balance", a.balance()))
            }
            OperationKind::Unbond if op.amount.0 > a.staked => Err(over("stake", a.staked)),
            OperationKind::Release | OperationKind::Forfeit if op.amount.0 > a.held => {
                Err(over("held rewards", a.held))
            }
            _ => Ok(()),
        }
    }

    fn operate(&mut self, epoch: u64, op: &AccountOperation) -> Result<(), LedgerError> {
        self.check(epoch, op)?;
        self.record(epoch, op);
        Ok(())
    }

    /// The effect of an operation [`Self::check`] allowed.
    pub(crate) fn record(&mut self, epoch: u64, op: &AccountOperation) {
        self.recorded.insert(op.id.clone());
        let a = self.accounts.entry(op.provider.clone()).or_default();
        let amount = op.amount.0;
        match op.kind {
            OperationKind::Bond => a.staked += amount,
            OperationKind::Unbond => {
                a.staked -= amount;
                a.unbonding.push((amount, epoch + UNBOND_EPOCHS));
            }
            OperationKind::Withdraw => {
                a.withdrawn += amount;
            }
            OperationKind::Release => {
                a.held -= amount;
                a.rewards += amount;
                self.held -= amount;
                self.paid += amount;
            }
            OperationKind::Forfeit => {
                a.held -= amount;
                self.held -= amount;
                self.epoch_forfeited += amount;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
