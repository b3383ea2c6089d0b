//! `kubectl zop ledger ...` and `kubectl zop earnings`: verifying the ledger, reading
//! accounts from it, and requesting account operations of the settlement controller
//! (recorded in the next epoch; see `controller::settlement::requests`).

use super::output::{self, Globals};
use crate::api::BaseUnits;
use crate::api::settlement::{AccountOperation, OperationKind};
use crate::controller::settlement::{read_ledger, requests};
use crate::ledger::accounts::Account;
use clap::Subcommand;
use kube::Client;
use serde::Serialize;
use std::fmt::Write;

/// `kubectl zop ledger` commands.
#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Recompute the chain's hashes and every sum from the Settlement objects; report the
    /// first tampered record or broken invariant.
    Verify,
    /// Pay a provider's held rewards (all of them unless --amount).
    Release(Request),
    /// Return a provider's held rewards to the pool (all of them unless --amount).
    Forfeit(Request),
    /// Pay out of a provider's balance to a destination outside the cluster.
    Withdraw {
        #[command(flatten)]
        request: Request,
        /// Where the payout goes (opaque to the ledger).
        #[arg(long)]
        destination: String,
    },
    /// Bond stake from a provider's balance.
    Bond(Request),
    /// Unbond stake (back to the balance after the cool-down).
    Unbond(Request),
}

/// Who and how much.
#[derive(Debug, clap::Args)]
pub struct Request {
    /// The provider account.
    #[arg(long)]
    provider: String,
    /// Base units (1 CXT = 1,000,000).
    #[arg(long)]
    amount: Option<u64>,
}

/// What `ledger verify` found.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Verified {
    settlements: usize,
    paid: u64,
    providers: usize,
    held: u64,
    pool: u64,
    supply: u64,
}

/// A request made.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Requested {
    id: String,
    kind: OperationKind,
    provider: String,
    amount: u64,
    epoch: u64,
}

/// Runs a ledger command.
pub async fn run(client: Client, g: &Globals, command: LedgerCommand) -> anyhow::Result<()> {
    let (kind, request, destination) = match command {
        LedgerCommand::Verify => {
            let (specs, ledger) = read_ledger(&client).await?;
            let v = Verified {
                settlements: specs.len(),
                paid: ledger.paid,
                providers: ledger.accounts.len(),
                held: ledger.held,
                pool: ledger.pool,
                supply: ledger.schedule.as_ref().map_or(0, |s| s.supply.0),
            };
            return output::print(g.output, &v, || {
                format!(
                    "ledger verified: {} settlements, chain intact; {} paid to {} providers, {} held, {} in the pool, {} supply\n",
                    v.settlements,
                    BaseUnits(v.paid),
                    v.providers,
                    BaseUnits(v.held),
                    BaseUnits(v.pool),
                    BaseUnits(v.supply)
                )
            });
        }
        LedgerCommand::Release(r) => (OperationKind::Release, r, None),
        LedgerCommand::Forfeit(r) => (OperationKind::Forfeit, r, None),
        LedgerCommand::Withdraw {
            request,
            destination,
        } => (OperationKind::Withdraw, request, Some(destination)),
        LedgerCommand::Bond(r) => (OperationKind::Bond, r, None),
        LedgerCommand::Unbond(r) => (OperationKind::Unbond, r, None),
    };
    let (_, ledger) = read_ledger(&client).await?;
    let account = ledger
        .accounts
        .get(&request.provider)
        .cloned()
        .unwrap_or_default();
    let amount = match (request.amount, kind) {
        (Some(a), _) => a,
        (None, OperationKind::Release | OperationKind::Forfeit) => account.held,
        (None, _) => anyhow::bail!("--amount is required for {kind:?}"),
    };
    let op = AccountOperation {
        id: format!(
            "{}-{:016x}",
            format!("{kind:?}").to_lowercase(),
            crate::gateway::secrets::random_u64().map_err(|e| anyhow::anyhow!("{e:?}"))?
        ),
        provider: request.provider.clone(),
        kind,
        amount: BaseUnits(amount),
        destination,
    };
    // The controller checks it again when it records it; checking now says no early.
    let (epoch, _) = ledger.next();
    ledger
        .check(epoch, &op)
        .map_err(|e| anyhow::anyhow!("refused: {e}"))?;
    anyhow::ensure!(
        requests::submit(&client, g.operator_namespace(), &op).await?,
        "a request with id {} is already waiting",
        op.id
    );
    let r = Requested {
        id: op.id.clone(),
        kind,
        provider: request.provider.clone(),
        amount,
        epoch,
    };
    output::print(g.output, &r, || {
        format!(
            "{kind:?} of {} for {} requested as {}; it is recorded when epoch {epoch} is settled\n",
            BaseUnits(amount),
            r.provider,
            r.id
        )
    })
}

/// One provider's account.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountRow {
    provider: String,
    rewards: u64,
    held: u64,
    staked: u64,
    unbonding: u64,
    withdrawn: u64,
    balance: u64,
}

/// One epoch's reward of a provider.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EpochRow {
    epoch: u64,
    work_units: u64,
    reward: u64,
    held: bool,
}

/// One provider's earnings.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Earnings {
    account: AccountRow,
    epochs: Vec<EpochRow>,
}

fn account_row(provider: &str, a: &Account) -> AccountRow {
    AccountRow {
        provider: provider.to_string(),
        rewards: a.rewards,
        held: a.held,
        staked: a.staked,
        unbonding: a.unbonding_total(),
        withdrawn: a.withdrawn,
        balance: a.balance(),
    }
}

/// The accounts table.
pub fn accounts_table(rows: &[AccountRow]) -> String {
    let mut out = format!(
        "{:<24} {:>22} {:>20} {:>20} {:>20} {:>22}\n",
        "PROVIDER", "REWARDS", "HELD", "STAKED", "WITHDRAWN", "BALANCE"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<24} {:>22} {:>20} {:>20} {:>20} {:>22}",
            r.provider,
            BaseUnits(r.rewards).to_string(),
            BaseUnits(r.held).to_string(),
            BaseUnits(r.staked).to_string(),
            BaseUnits(r.withdrawn).to_string(),
            BaseUnits(r.balance).to_string()
        );
    }
    out
}

/// One provider's rewards per epoch, then its account.
pub fn earnings_table(e: &Earnings) -> String {
    let mut out = format!(
        "{:>6} {:>12} {:>22} {:>6}\n",
        "EPOCH", "WORK UNITS", "REWARD", "HELD"
    );
    for r in &e.epochs {
        let _ = writeln!(
            out,
            "{:>6} {:>12} {:>22} {:>6}",
            r.epoch,
            r.work_units,
            BaseUnits(r.reward).to_string(),
            if r.held { "yes" } else { "" }
        );
    }
    let a = &e.account;
    let _ = writeln!(
        out,
        "balance {}, held {}, staked {}, withdrawn {}",
        BaseUnits(a.balance),
        BaseUnits(a.held),
        BaseUnits(a.staked),
        BaseUnits(a.withdrawn)
    );
    out
}

/// `kubectl zop earnings`: every provider's account, or one provider's per-epoch rewards.
pub async fn earnings(client: Client, g: &Globals, provider: Option<String>) -> anyhow::Result<()> {
    let (specs, ledger) = read_ledger(&client).await?;
    match provider {
        None => {
            let rows: Vec<AccountRow> = ledger
                .accounts
                .iter()
                .map(|(p, a)| account_row(p, a))
                .collect();
            output::print(g.output, &rows, || accounts_table(&rows))
        }
        Some(p) => {
            let epochs = specs
                .iter()
                .flat_map(|s| {
                    s.entries
                        .iter()
                        .filter(|e| e.provider == p)
                        .map(|e| EpochRow {
                            epoch: s.epoch,
                            work_units: e.work_units,
                            reward: e.reward.0,
                            held: e.held,
                        })
                })
                .collect();
            let a = ledger.accounts.get(&p).cloned().unwrap_or_default();
            let e = Earnings {
                account: account_row(&p, &a),
                epochs,
            };
            output::print(g.output, &e, || earnings_table(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earnings_tables() {
        let a = Account {
            rewards: 3_000_000,
            staked: 1_000_000,
            withdrawn: 500_000,
            held: 7,
            ..Default::default()
        };
        let rows = vec![account_row("alice", &a)];
        insta::assert_snapshot!("accounts", accounts_table(&rows));
        let e = Earnings {
            account: account_row("alice", &a),
            epochs: vec![
                EpochRow {
                    epoch: 3,
                    work_units: 12,
                    reward: 2_000_000,
                    held: false,
                },
                EpochRow {
                    epoch: 4,
                    work_units: 5,
                    reward: 1_000_007,
                    held: true,
                },
            ],
        };
        insta::assert_snapshot!("earnings", earnings_table(&e));
    }
}
