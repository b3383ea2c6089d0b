//! `zop-operator`: the ZopToken operator binary.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use zop_operator::api::crds;

/// The ZopToken operator.
#[derive(Debug, Parser)]
#[command(name = "zop-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the operator: controllers, metrics and health endpoints.
    Run(Box<zop_operator::run::RunArgs>),
    /// Print the CustomResourceDefinitions as YAML, or write one file per CRD.
    Crd {
        /// Write `<plural>.zoptoken.io.yaml` files into these directories instead of printing.
        #[arg(long)]
        out: Vec<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info,kube=warn".into()),
                )
                .init();
            tokio::runtime::Runtime::new()?.block_on(zop_operator::run::run(*args))?;
        }
        Command::Crd { out } if out.is_empty() => print!("{}", crds::all_yaml()?),
        Command::Crd { out } => {
            for dir in out {
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                for (file, crd) in crds::all() {
                    let path = dir.join(file);
                    std::fs::write(&path, crds::to_yaml(&crd)?)
                        .with_context(|| format!("writing {}", path.display()))?;
                }
            }
        }
    }
    Ok(())
}
