//! `kubectl zop`: the plugin admins and requesters use. Each subcommand is a thin
//! layer over the API; the logic it shows (device summaries, chain verification) is
//! in the pure core.

pub mod group_key;
pub mod ledger;
pub mod summary;

use crate::api::{ComputeTask, Device};
use anyhow::Context;
use clap::{Parser, Subcommand};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use std::path::PathBuf;

/// kubectl plugin for ZopToken.
#[derive(Debug, Parser)]
#[command(name = "kubectl-zop", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Devices by phase, class and GPU model.
    Devices,
    /// Compute tasks with their progress.
    Tasks {
        /// Namespace; all namespaces when omitted.
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Submit a ComputeTask manifest, checked client-side first.
    Submit {
        /// The manifest.
        #[arg(short = 'f', long)]
        file: PathBuf,
        /// Namespace.
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
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
    /// Manage the Group Keys providers join with.
    GroupKey {
        /// The operator's namespace, where keys live.
        #[arg(short, long, default_value = "zoptoken-system")]
        namespace: String,
        #[command(subcommand)]
        command: group_key::GroupKeyCommand,
    },
}

/// Runs the plugin.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    match cli.command {
        Command::Devices => {
            let devices = Api::<Device>::all(client)
                .list(&ListParams::default())
                .await?;
            print!("{}", summary::devices(&devices.items));
        }
        Command::Tasks { namespace } => {
            let api = match namespace {
                Some(ns) => Api::<ComputeTask>::namespaced(client, &ns),
                None => Api::all(client),
            };
            print!(
                "{}",
                summary::tasks(&api.list(&ListParams::default()).await?.items)
            );
        }
        Command::Submit { file, namespace } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let task: ComputeTask = serde_saphyr::from_str(&text)
                .with_context(|| format!("{} is not a ComputeTask", file.display()))?;
            task.validate_cel()
                .map_err(|e| anyhow::anyhow!("{} is invalid: {e:?}", file.display()))?;
            let name = task.name_any();
            Api::<ComputeTask>::namespaced(client, &namespace)
                .patch(
                    &name,
                    &PatchParams::apply("kubectl-zop"),
                    &Patch::Apply(&task),
                )
                .await?;
            println!("computetask.zoptoken.io/{name} submitted in {namespace}");
        }
        Command::Ledger { command } => ledger::run(client, command).await?,
        Command::Withdraw {
            request,
            destination,
        } => {
            let command = ledger::LedgerCommand::Withdraw {
                request,
                destination,
            };
            ledger::run(client, command).await?
        }
        Command::Earnings { provider } => ledger::earnings(client, provider).await?,
        Command::GroupKey { namespace, command } => {
            group_key::run(client, &namespace, command).await?;
        }
    }
    Ok(())
}
