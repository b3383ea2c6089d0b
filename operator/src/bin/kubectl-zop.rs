//! `kubectl-zop`: the kubectl plugin (`kubectl zop ...`).

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = zop_operator::cli::Cli::parse();
    tokio::runtime::Runtime::new()?.block_on(zop_operator::cli::run(cli))
}
