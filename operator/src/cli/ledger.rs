//! `kubectl zop ledger ...` and `kubectl zop earnings`: verifying the ledger, reading
//! accounts from it, and requesting account operations of the settlement controller
//! (recorded in the next epoch; see `controller::settlement::requests`).

use crate::api::BaseUnits;
use crate::api::settlement::{AccountOperation, OperationKind};
use crate::controller::settlement::{read_ledger, requests};
use clap::Subcommand;
use kube::Client;

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
    /// The operator's namespace.
    #[arg(short, long, default_value = "zoptoken-system")]
    namespace: String,
}

/// Runs a ledger command.
pub async fn run(client: Client, command: LedgerCommand) -> anyhow::Result<()> {
    let (kind, request, destination) = match command {
        LedgerCommand::Verify => {
            let (specs, ledger) = read_ledger(&client).await?;
            let supply = ledger.schedule.as_ref().map_or(0, |s| s.supply.0);
            println!(
                "ledger verified: {} settlements, chain intact; {} paid to {} providers, {} held, {} in the pool, {} supply",
                specs.len(),
                BaseUnits(ledger.paid),
                ledger.accounts.len(),
                BaseUnits(ledger.held),
                BaseUnits(ledger.pool),
                BaseUnits(supply)
            );
            return Ok(());
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
        requests::submit(&client, &request.namespace, &op).await?,
        "a request with id {} is already waiting",
        op.id
    );
    println!(
        "{kind:?} of {} for {} requested as {}; it is recorded when epoch {epoch} is settled",
        BaseUnits(amount),
        request.provider,
        op.id
    );
    Ok(())
}

/// `kubectl zop earnings`: every provider's account, or one provider's per-epoch rewards.
pub async fn earnings(client: Client, provider: Option<String>) -> anyhow::Result<()> {
    let (specs, ledger) = read_ledger(&client).await?;
    match provider {
        None => {
            println!(
                "{:<24} {:>22} {:>20} {:>20} {:>20} {:>22}",
                "PROVIDER", "REWARDS", "HELD", "STAKED", "WITHDRAWN", "BALANCE"
            );
            for (p, a) in &ledger.accounts {
                println!(
                    "{:<24} {:>22} {:>20} {:>20} {:>20} {:>22}",
                    p,
                    BaseUnits(a.rewards).to_string(),
                    BaseUnits(a.held).to_string(),
                    BaseUnits(a.staked).to_string(),
                    BaseUnits(a.withdrawn).to_string(),
                    BaseUnits(a.balance()).to_string()
                );
            }
        }
        Some(p) => {
            println!(
                "{:>6} {:>12} {:>22} {:>6}",
                "EPOCH", "WORK UNITS", "REWARD", "HELD"
            );
            for s in &specs {
                for e in s.entries.iter().filter(|e| e.provider == p) {
                    println!(
                        "{:>6} {:>12} {:>22} {:>6}",
                        s.epoch,
                        e.work_units,
                        e.reward.to_string(),
                        if e.held { "yes" } else { "" }
                    );
                }
            }
            let a = ledger.accounts.get(&p).cloned().unwrap_or_default();
            println!(
                "balance {}, held {}, staked {}, withdrawn {}",
                BaseUnits(a.balance()),
                BaseUnits(a.held),
                BaseUnits(a.staked),
                BaseUnits(a.withdrawn)
            );
        }
    }
    Ok(())
}
