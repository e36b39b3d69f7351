//! `sluice-bench limits`: a burst far above a provider's rate limit.
//! Reports the goodput (jobs finished per minute, in the full minutes after
//! the first, whose window starts empty) against the limit, and the 429s
//! the provider served, from its own bill.

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Value};

use crate::cli::Connections;
use crate::progress::{self, Size};
use crate::stack::{self, BenchStack};

#[derive(Args, Debug)]
pub struct LimitsArgs {
    /// The provider's limit, requests per minute (the mock enforces it;
    /// Sluice's config declares it).
    #[arg(long, default_value_t = 300)]
    pub rpm: u64,
    /// Jobs in the burst (chat jobs: one provider request each).
    #[arg(long, default_value_t = 1200)]
    pub jobs: usize,
    #[arg(long, default_value_t = 3)]
    pub workers: usize,
    /// Leave the budget out of Sluice's config: the baseline that collects 429s.
    #[arg(long)]
    pub no_budget: bool,
    #[command(flatten)]
    pub conn: Connections,
}

pub async fn run(args: LimitsArgs) -> anyhow::Result<()> {
    let rpm = args.rpm.to_string();
    let provider = if args.no_budget {
        String::new()
    } else {
        format!("requests_per_minute = {rpm}")
    };
    let options = sluice_testkit::StackOptions {
        mock_args: vec!["--requests-per-minute".into(), rpm],
        provider_toml: provider,
        ..stack::options(&args.conn, args.workers)
    };
    stack::measure_on(options, async |stack| measure(stack, &args).await).await
}

async fn measure(stack: &BenchStack, args: &LimitsArgs) -> anyhow::Result<String> {
    let http = reqwest::Client::new();
    let finished = stack.stack.completions().await;
    let jobs: Vec<Value> = (0..args.jobs)
        .map(|i| {
            json!({"body": {"model": "mock-small", "max_tokens": 8,
            "messages": [{"role": "user", "content": format!("burst job {i}")}]}})
        })
        .collect();
    let started = Instant::now();
    stack.submit(&http, &jobs, |_| {}).await?;
    let phase = progress::phase(
        format!(
            "{} jobs submitted against {} requests/min: finishing",
            args.jobs, args.rpm
        ),
        Size::Items(args.jobs as u64),
    );
    // Finished jobs at each second of the run.
    let mut at_second = vec![0usize];
    let limit = Instant::now() + crate::PHASE_LIMIT + Duration::from_secs(600);
    while finished.ended() < args.jobs {
        anyhow::ensure!(
            Instant::now() < limit,
            "only {} of {} jobs finished",
            finished.ended(),
            args.jobs
        );
        tokio::time::sleep_until((started + Duration::from_secs(at_second.len() as u64)).into())
            .await;
        at_second.push(finished.ended());
        phase.set(finished.ended() as u64);
    }
    let elapsed = started.elapsed().as_secs_f64();
    finished.stop().await;
    phase.done();
    // Full minutes after the first: jobs finished in each.
    let per_minute: Vec<usize> = (1..)
        .map(|m| (60 * m, 60 * (m + 1)))
        .take_while(|&(_, end)| end < at_second.len())
        .map(|(start, end)| at_second[end] - at_second[start])
        .collect();
    let goodput = if per_minute.is_empty() {
        args.jobs as f64 / elapsed * 60.0
    } else {
        per_minute.iter().sum::<usize>() as f64 / per_minute.len() as f64
    };
    let bill = stack.stack.mock_bill().await;
    let stats = stack.stack.mock_stats().await;
    let rejected = bill["rate_limited"].as_u64().unwrap_or(0);
    let calls = stats["requests"].as_u64().unwrap_or(0) + rejected;
    let mut out = String::from("| measure | value | target |\n|---|---|---|\n");
    out.push_str(&format!(
        "| provider limit | {} requests/min | — |\n",
        args.rpm
    ));
    out.push_str(&format!(
        "| fleet budget | {} ({} workers) | — |\n",
        if args.no_budget { "off" } else { "on" },
        args.workers
    ));
    out.push_str(&format!(
        "| jobs in the burst | {} (all ended in {elapsed:.0} s) | — |\n",
        args.jobs
    ));
    out.push_str(&format!(
        "| goodput, full minutes after the first | {goodput:.0} jobs/min ({:.1}% of the limit; minutes: {per_minute:?}) | ≥ 90% |\n",
        100.0 * goodput / args.rpm as f64
    ));
    out.push_str(&format!(
        "| 429s served by the provider | {rejected} of {calls} calls ({:.2}%) | < 1% |\n",
        100.0 * rejected as f64 / calls.max(1) as f64
    ));
    Ok(out)
}
