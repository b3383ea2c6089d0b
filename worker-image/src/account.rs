//! `zop-worker account`: a provider reads its account and asks the ledger for a
//! withdrawal, a bond or an unbond, through the gateway with its Group Key. The gateway
//! takes the provider from the key; the answer is printed as JSON.

use crate::client::GatewayClient;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use zop_api::BaseUnits;
use zop_api::protocol::LedgerRequest;
use zop_api::settlement::OperationKind;

/// Where and as whom.
#[derive(Debug, Args)]
pub struct AccountArgs {
    /// The gateway's base URL, e.g. `https://gateway.example:8443`.
    #[arg(long, env = "ZOP_GATEWAY")]
    pub gateway: String,
    /// The provider's Group Key.
    #[arg(long, env = "ZOP_GROUP_KEY", hide_env_values = true)]
    pub group_key: String,
    /// PEM file of the CA the gateway's certificate is checked against.
    #[arg(long, env = "ZOP_CA_CERT")]
    pub ca_cert: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub action: Action,
}

/// Account actions.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// Balance, rewards, stake, withdrawals, held rewards and requests under way.
    Show,
    /// Pay out of the balance to a destination outside the cluster.
    Withdraw {
        #[command(flatten)]
        request: Request,
        /// Where the payout goes (opaque to the ledger).
        #[arg(long)]
        destination: String,
    },
    /// Bond stake from the balance.
    Bond(Request),
    /// Unbond stake (back to the balance after the cool-down).
    Unbond(Request),
}

/// One request.
#[derive(Debug, Args)]
pub struct Request {
    /// Your id for the request: asking again with the same id never pays twice.
    #[arg(long)]
    pub id: String,
    /// Base units (1 CXT = 1,000,000).
    #[arg(long)]
    pub amount: u64,
}

/// Runs the action and prints the gateway's answer.
pub async fn run(args: AccountArgs) -> anyhow::Result<()> {
    let ca = std::fs::read(&args.ca_cert)
        .map_err(|e| anyhow::anyhow!("reading --ca-cert {}: {e}", args.ca_cert.display()))?;
    let client = GatewayClient::new(&args.gateway, &ca)?;
    let key = args.group_key.trim();
    let (kind, r, destination) = match args.action {
        Action::Show => {
            let account = client.ledger_account(key).await?;
            println!("{}", serde_json::to_string_pretty(&account)?);
            return Ok(());
        }
        Action::Withdraw {
            request,
            destination,
        } => (OperationKind::Withdraw, request, Some(destination)),
        Action::Bond(r) => (OperationKind::Bond, r, None),
        Action::Unbond(r) => (OperationKind::Unbond, r, None),
    };
    let req = LedgerRequest {
        id: r.id,
        kind,
        amount: BaseUnits(r.amount),
        destination,
    };
    let state = client.ledger_request(key, &req).await?;
    println!("{}", serde_json::to_string_pretty(&state)?);
    Ok(())
}
