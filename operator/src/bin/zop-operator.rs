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
    /// Print the CustomResourceDefinitions as YAML, or write one file per CRD.
    Crd {
        /// Write `<plural>.zoptoken.io.yaml` files into this directory instead of printing.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd { out: None } => print!("{}", crds::all_yaml()?),
        Command::Crd { out: Some(dir) } => {
            for (file, crd) in crds::all() {
                let path = dir.join(file);
                std::fs::write(&path, crds::to_yaml(&crd)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    Ok(())
}
