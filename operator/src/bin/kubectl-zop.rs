//! `kubectl-zop`: the kubectl plugin (`kubectl zop ...`). A failure is one line on
//! stderr and exit status 1, never a backtrace.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = zop_operator::cli::Cli::parse();
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(zop_operator::cli::run(cli)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever the cause's own formatting (validation lists wrap).
            let text = format!("{e:#}");
            let line: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!("error: {}", line.join(" "));
            std::process::ExitCode::FAILURE
        }
    }
}
