//! `sluice bench …`: measurements that belong outside the test suite.
//!
//! `throughput` runs the real roles as child processes of this binary
//! (mock provider at zero latency, API, workers) against the real
//! RabbitMQ, Redis and PostgreSQL, under a prefix and a database of its
//! own that it removes afterwards, and reports beside them the broker's raw
//! ceiling measured in the same run.

pub mod cache;
mod children;
mod cpu;
pub mod econ;
pub mod ledger;
pub mod limits;
mod load;
mod raw;
mod report;
pub mod webhooks;

use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::cli::{BenchCommand, Connections};

#[derive(Args, Debug)]
pub struct ThroughputArgs {
    /// Jobs submitted one per request, with the workers running.
    #[arg(long, default_value_t = 10_000)]
    pub jobs: usize,
    /// Concurrent submitting clients.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Jobs per phase when timing the tenant limiter (off, then on).
    #[arg(long, default_value_t = 5_000)]
    pub limiter_jobs: usize,
    /// Jobs per request in the batch-endpoint phase.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Workers (processes) draining the queue.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Jobs left waiting in the queue for the worker-memory measurement.
    #[arg(long, default_value_t = 10_000)]
    pub backlog: usize,
    /// Messages for the raw broker ceiling.
    #[arg(long, default_value_t = 20_000)]
    pub raw_messages: usize,
    /// Write the figures as JSON here too.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// A TOML file appended to the stack's configuration, e.g. a
    /// `[worker]` table to measure other batching settings.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub conn: Connections,
}

/// How long any one phase may take before the bench gives up.
pub const PHASE_LIMIT: Duration = Duration::from_secs(600);

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Throughput(args) => throughput(args).await,
        BenchCommand::Limits(args) => limits::run(args).await,
        BenchCommand::Ledger(args) => ledger::run(args).await,
        BenchCommand::Cache(args) => cache::run(args).await,
        BenchCommand::Webhooks(args) => webhooks::run(args).await,
        BenchCommand::Econ(args) => econ::run(args).await,
    }
}

async fn throughput(args: ThroughputArgs) -> anyhow::Result<()> {
    let extra = match &args.config {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        None => String::new(),
    };
    let mut report = report::Report::default();
    eprintln!(
        "bench: raw broker ceiling ({} persistent messages, quorum queue)",
        args.raw_messages
    );
    report.raw = Some(raw::ceiling(&args.conn.amqp_url, args.raw_messages).await?);

    let mock = children::MockSpec::default_mock(&[], "");
    let mut stack =
        children::BenchStack::start_with(&args.conn, args.workers, &[mock], &extra).await?;
    let outcome = async {
        load::run_all(&stack, &args, &mut report).await?;
        eprintln!(
            "bench: tenant limiter off, then on ({} jobs each)",
            args.limiter_jobs
        );
        report.limiter = Some(load::limiter_overhead(&mut stack, &args).await?);
        eprintln!(
            "bench: backlog phase ({} jobs waiting, then one worker)",
            args.backlog
        );
        report.backlog = Some(load::backlog(&mut stack, &args, 1).await?);
        eprintln!(
            "bench: backlog phase again, its jobs submitted {} per request",
            args.batch_size
        );
        report.backlog_batches = Some(load::backlog(&mut stack, &args, args.batch_size).await?);
        anyhow::Ok(())
    }
    .await;
    stack.stop().await;
    outcome?;
    eprintln!("bench: raw broker ceiling again");
    report.raw_after = Some(raw::ceiling(&args.conn.amqp_url, args.raw_messages).await?);

    let table = report.markdown();
    crate::runtime::say(&table);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}
