//! `sluice-bench`: Sluice's benchmarks, one subcommand each (see `cli.rs`).
//! Each starts the `sluice` binary's roles as child processes (the binary
//! beside this one, or `SLUICE_BIN`) on the real services, under a prefix
//! and a database of its own that it removes afterwards, and prints its
//! figures on stdout; how far it is goes to stderr (`progress.rs`).

mod batch;
mod cache;
mod cli;
mod compat;
mod cpu;
mod econ;
mod fairness;
mod held;
mod ledger;
mod limits;
mod load;
mod progress;
mod raw;
mod report;
mod semantic;
mod stack;
mod stats;
mod throughput;
mod webhooks;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// The same allocator as the `sluice` binary: the load generator shares
/// the machine with the stack, and its own speed is part of every figure.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long any one phase may take before the bench gives up.
pub const PHASE_LIMIT: Duration = Duration::from_secs(600);

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // Logs of what runs in this process (the raw broker client, the
    // webhooks role of `webhooks`), written above the progress bars.
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,lapin=warn,fred=warn,sqlx=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(|| progress::Stderr)
        .init();
    match cli::run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let reason: Vec<String> = e.chain().map(ToString::to_string).collect();
            progress::line(&format!("error: {}", reason.join(": ")));
            ExitCode::FAILURE
        }
    }
}

/// Prints a line on stdout (the figures a caller reads), flushed.
pub fn say(line: &str) {
    use std::io::Write;
    // A closed stdout (`… | head`) drops the line; `println!` would panic.
    progress::suspend(|| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    });
}
