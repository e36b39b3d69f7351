//! `sluice-bench throughput`: the real roles as child processes (mock
//! provider at zero latency, API, workers) against the real RabbitMQ,
//! Redis and PostgreSQL, under a prefix and a database of their own that
//! are removed afterwards, and beside them the broker's raw ceiling
//! measured in the same run.

use anyhow::Context;
use clap::Args;

use crate::cli::Connections;
use crate::progress::{self, Size};
use crate::stack::{self, BenchStack};
use crate::{load, raw, report};

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

pub async fn run(args: ThroughputArgs) -> anyhow::Result<()> {
    let extra = match &args.config {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        None => String::new(),
    };
    let mut report = report::Report {
        raw: Some(raw_ceiling(&args, "raw broker ceiling").await?),
        ..report::Report::default()
    };

    let mut stack = BenchStack::start(sluice_testkit::StackOptions {
        extra_toml: extra,
        ..stack::options(&args.conn, args.workers)
    })
    .await;
    let outcome = async {
        load::run_all(&stack, &args, &mut report).await?;
        report.limiter = Some(load::limiter_overhead(&mut stack, &args).await?);
        report.backlog = Some(load::backlog(&mut stack, &args, 1).await?);
        report.backlog_batches = Some(load::backlog(&mut stack, &args, args.batch_size).await?);
        anyhow::Ok(())
    }
    .await;
    stack.finish();
    outcome?;
    report.raw_after = Some(raw_ceiling(&args, "raw broker ceiling again").await?);

    crate::say(&report.markdown());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}

async fn raw_ceiling(args: &ThroughputArgs, name: &str) -> anyhow::Result<raw::RawCeiling> {
    let n = args.raw_messages;
    let phase = progress::phase(
        format!("{name} ({n} persistent messages, quorum queue)"),
        Size::Items(raw::steps(n)),
    );
    let ceiling = raw::ceiling(&args.conn.amqp_url, n, &phase).await?;
    phase.done();
    Ok(ceiling)
}
