//! `sluice`: one binary, a subcommand per role (see `cli.rs`).

mod cli;
#[cfg(feature = "otel")]
mod otel;
mod roles;
mod runtime;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: the API and worker allocate many small, short-lived buffers
/// (JSON, frames); it measured faster than the system allocator in
/// `sluice-bench throughput`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let role = std::env::args().nth(1).unwrap_or_else(|| "sluice".into());
    let _telemetry = runtime::init_logging(&role);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return runtime::fail(&anyhow::anyhow!("cannot start the runtime: {e}")),
    };
    match rt.block_on(roles::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => runtime::fail(&e),
    }
}
