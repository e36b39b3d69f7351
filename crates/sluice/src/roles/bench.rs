//! `sluice bench …`.

use clap::Args;

use crate::cli::BenchCommand;

#[derive(Args, Debug)]
pub struct ThroughputArgs {
    /// Jobs to submit.
    #[arg(long, default_value_t = 5000)]
    pub jobs: usize,
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Throughput(args) => {
            anyhow::bail!("bench throughput ({} jobs) is not built yet", args.jobs)
        }
    }
}
