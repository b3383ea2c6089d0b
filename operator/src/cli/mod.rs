//! `kubectl zop`: the plugin admins, requesters and providers use. Each subcommand is a
//! thin layer over the API; what it shows is built by pure functions ([`tables`]), and
//! every command prints a table, or its value as JSON or YAML (`-o`). Global flags:
//! `-o table|json|yaml`, `--context`, `-n`, `-A` ([`output::Globals`]).

pub mod group_key;
pub mod ledger;
pub mod output;
pub mod tables;
pub mod tasks;

use crate::api::Device;
use crate::controller::settlement::read_ledger;
use clap::{Parser, Subcommand};
use kube::Api;
use kube::api::ListParams;
use output::Globals;

/// kubectl plugin for ZopToken.
#[derive(Debug, Parser)]
#[command(name = "kubectl-zop", version, about)]
pub struct Cli {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Devices: model, VRAM, phase, measured score, reputation, load, stake and their provider's earnings.
    Devices,
    /// Compute tasks with their progress (`-n`, or every namespace with `-A`).
    Tasks {
        /// Print the table again as tasks change, until every task shown has ended.
        #[arg(short, long)]
        watch: bool,
    },
    /// One task: its parameters, progress, result, contributions and conditions.
    DescribeTask {
        /// The task's name.
        name: String,
    },
    /// Submit a ComputeTask, from a manifest (`-f`) or from flags.
    Submit(tasks::Submit),
    /// The settlement ledger: verify it, or request an account operation.
    Ledger {
        #[command(subcommand)]
        command: ledger::LedgerCommand,
    },
    /// Pay out of a provider's balance (the same as `ledger withdraw`).
    Withdraw {
        #[command(flatten)]
        request: ledger::Request,
        /// Where the payout goes (opaque to the ledger).
        #[arg(long)]
        destination: String,
    },
    /// Providers' accounts, or one provider's rewards per epoch.
    Earnings {
        /// One provider.
        #[arg(long)]
        provider: Option<String>,
    },
    /// Manage the Group Keys providers join with (in the operator's namespace, `-n`).
    GroupKey {
        #[command(subcommand)]
        command: group_key::GroupKeyCommand,
    },
}

/// Runs the plugin.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let g = cli.globals;
    let (client, default_namespace) = output::client(&g).await?;
    match cli.command {
        Command::Devices => {
            let devices = Api::<Device>::all(client.clone())
                .list(&ListParams::default())
                .await?;
            // Earnings come from the verified ledger; without one the column says `-`.
            let rewards = read_ledger(&client).await.ok().map(|(_, l)| {
                l.accounts
                    .iter()
                    .map(|(p, a)| (p.clone(), a.rewards))
                    .collect()
            });
            let rows = tables::device_rows(&devices.items, rewards.as_ref());
            output::print(g.output, &rows, || tables::devices_table(&rows))?;
        }
        Command::Tasks { watch } => {
            tasks::list(&client, &g, &default_namespace, watch).await?;
        }
        Command::DescribeTask { name } => {
            let ns = g.namespace.clone().unwrap_or(default_namespace);
            tasks::describe(&client, &g, &ns, &name).await?;
        }
        Command::Submit(submit) => {
            let ns = g.namespace.clone().unwrap_or(default_namespace);
            tasks::submit(&client, &g, &ns, submit).await?;
        }
        Command::Ledger { command } => ledger::run(client, &g, command).await?,
        Command::Withdraw {
            request,
            destination,
        } => {
            let command = ledger::LedgerCommand::Withdraw {
                request,
                destination,
            };
            ledger::run(client, &g, command).await?
        }
        Command::Earnings { provider } => ledger::earnings(client, &g, provider).await?,
        Command::GroupKey { command } => group_key::run(client, &g, command).await?,
    }
    Ok(())
}
