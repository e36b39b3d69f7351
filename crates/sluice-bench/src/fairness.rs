//! `sluice-bench fairness`: one tenant floods, another sends one job at a
//! time. B's time from submit to end is measured alone, beside the flood
//! with fair share on, and beside the same flood first come first served
//! (`[worker.fair] enabled = false`, on a stack of its own); beside each
//! flood, how busy the provider's budget was kept.

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Value};

use crate::cli::Connections;
use crate::progress::{self, Size};
use crate::stack::{self, BenchStack};
use crate::stats::percentile;

#[derive(Args, Debug)]
pub struct FairnessArgs {
    /// Jobs in A's flood.
    #[arg(long, default_value_t = 2000)]
    pub flood: usize,
    /// Jobs B sends, one at a time.
    #[arg(long, default_value_t = 20)]
    pub jobs: usize,
    /// The provider's budget, requests a second (counted over 250 ms).
    #[arg(long, default_value_t = 20)]
    pub rps: u64,
    /// The mock's time per call, in ms.
    #[arg(long, default_value_t = 800)]
    pub latency_ms: u64,
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Skip the first-come-first-served baseline.
    #[arg(long)]
    pub no_fifo: bool,
    #[command(flatten)]
    pub conn: Connections,
}

/// The budget's window: short, so a saturated budget grants often.
const WINDOW_MS: u64 = 250;

/// B's times, and the provider's use beside the flood.
struct Run {
    times: Vec<Duration>,
    /// Calls the provider served while B's jobs ran, over the budget's.
    busy: Option<f64>,
}

pub async fn run(args: FairnessArgs) -> anyhow::Result<()> {
    let (alone, fair) = on_stack(&args, true, true).await?;
    let fifo = if args.no_fifo {
        None
    } else {
        Some(on_stack(&args, false, false).await?.1)
    };
    crate::say(&report(&args, alone.as_ref(), &fair, fifo.as_ref()));
    Ok(())
}

/// A stack with fair share `fair`: B alone first (if `alone`), then B
/// beside A's flood.
async fn on_stack(
    args: &FairnessArgs,
    fair: bool,
    alone: bool,
) -> anyhow::Result<(Option<Run>, Run)> {
    let options = sluice_testkit::StackOptions {
        mock_args: vec!["--latency-fixed-ms".into(), args.latency_ms.to_string()],
        provider_toml: format!(
            "requests_per_minute = {}\nlimits_window_ms = {WINDOW_MS}\n",
            (args.rps * WINDOW_MS / 1000).max(1)
        ),
        worker_toml: format!(
            "[worker.fair]\nenabled = {fair}\nhold_jobs = {}",
            args.flood.min(usize::from(u16::MAX) - 512)
        ),
        ..stack::options(&args.conn, args.workers)
    };
    let bench = BenchStack::start(options).await;
    let outcome = measure(&bench, args, fair, alone).await;
    bench.finish();
    outcome
}

async fn measure(
    bench: &BenchStack,
    args: &FairnessArgs,
    fair: bool,
    alone: bool,
) -> anyhow::Result<(Option<Run>, Run)> {
    let http = reqwest::Client::new();
    let b = bench.stack.key("quiet").await;
    let label = if fair {
        "fair share"
    } else {
        "first come, first served"
    };
    let alone = if alone {
        let times = one_at_a_time(bench, &http, &b, "alone", args.jobs, "B alone").await?;
        Some(Run { times, busy: None })
    } else {
        None
    };
    let flood: Vec<Value> = (0..args.flood).map(|i| chat("flood", i)).collect();
    bench.submit(&http, &flood, |_| {}).await?;
    // The provider saturated before B starts.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = calls(bench).await;
    let started = Instant::now();
    let phase_name = format!("B beside a flood of {}, {label}", args.flood);
    let times = one_at_a_time(bench, &http, &b, "beside", args.jobs, &phase_name).await?;
    let served = calls(bench).await.saturating_sub(before);
    let budget = args.rps as f64 * started.elapsed().as_secs_f64();
    Ok((
        alone,
        Run {
            times,
            busy: Some(served as f64 / budget),
        },
    ))
}

fn chat(tenant: &str, i: usize) -> Value {
    json!({"body": {"model": "mock-small", "max_tokens": 5,
        "messages": [{"role": "user", "content": format!("{tenant} question {i}")}]}})
}

/// Sends `n` jobs as `key`, each once the last ended: their times.
async fn one_at_a_time(
    bench: &BenchStack,
    http: &reqwest::Client,
    key: &str,
    tag: &str,
    n: usize,
    phase: &str,
) -> anyhow::Result<Vec<Duration>> {
    let phase = progress::phase(phase, Size::Items(n as u64));
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let r = http
            .post(format!("{}/v1/jobs", bench.api_url))
            .bearer_auth(key)
            .json(&chat(tag, i))
            .send()
            .await?;
        anyhow::ensure!(r.status().as_u16() == 202, "submit: HTTP {}", r.status());
        let id = r.json::<Value>().await?["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let limit = Instant::now() + crate::PHASE_LIMIT;
        loop {
            let job: Value = http
                .get(format!("{}/v1/jobs/{id}?wait=30", bench.api_url))
                .bearer_auth(key)
                .send()
                .await?
                .json()
                .await?;
            match job["status"].as_str() {
                Some("succeeded") => break,
                Some("queued" | "running") if Instant::now() < limit => continue,
                other => anyhow::bail!("B's job {id} ended {other:?}: {job}"),
            }
        }
        times.push(started.elapsed());
        phase.inc(1);
    }
    phase.done();
    times.sort();
    Ok(times)
}

async fn calls(bench: &BenchStack) -> u64 {
    bench.stack.mock_stats().await["requests"]
        .as_u64()
        .unwrap_or(0)
}

fn report(args: &FairnessArgs, alone: Option<&Run>, fair: &Run, fifo: Option<&Run>) -> String {
    let mut out = format!(
        "A floods {} chat jobs, then B sends {} one at a time; the provider: {} requests/s \
         (Sluice's budget), {} ms a call; {} worker(s).\n\n\
         | B's jobs | mean | P50 | P95 | max | provider busy |\n|---|---|---|---|---|---|\n",
        args.flood, args.jobs, args.rps, args.latency_ms, args.workers
    );
    let rows = [
        ("alone", alone),
        ("beside the flood, fair share", Some(fair)),
        ("beside the flood, first come first served", fifo),
    ];
    for (name, run) in rows {
        let Some(run) = run else { continue };
        let mean = run.times.iter().sum::<Duration>().as_secs_f64() * 1000.0
            / run.times.len().max(1) as f64;
        let busy = run
            .busy
            .map_or("—".to_owned(), |b| format!("{:.1}%", 100.0 * b));
        out.push_str(&format!(
            "| {name} | {mean:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {busy} |\n",
            percentile(&run.times, 0.5),
            percentile(&run.times, 0.95),
            percentile(&run.times, 1.0),
        ));
    }
    if let Some(alone) = alone {
        let ratio = percentile(&fair.times, 0.95) / percentile(&alone.times, 0.95).max(1e-9);
        let busy = fair.busy.unwrap_or(0.0) * 100.0;
        out.push_str(&format!(
            "\nTarget: B's P95 beside the flood at most 1.5 × alone, the provider at least 95% busy: \
             {ratio:.2} ×, {busy:.1}% busy: {}.\n",
            if ratio <= 1.5 && busy >= 95.0 { "met" } else { "missed" }
        ));
    }
    out
}
