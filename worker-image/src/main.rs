//! `zop-worker`: the process that executes fragments on a device.

use clap::Parser;

/// The ZopToken worker.
#[derive(Debug, Parser)]
#[command(name = "zop-worker", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
