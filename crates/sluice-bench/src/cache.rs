//! `sluice-bench cache`: a workload in which a share of requests repeat an
//! earlier one (exactly), sent by closed-loop clients to the full stack.
//! Reports the hit rate, the provider calls against the number of unique
//! requests (the floor), and the API's answer time for hits beside the
//! answer time for misses measured in the same run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::collections::HashSet;

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};
use sluice_core::cache::canonical::{normalise, request_key};
use sluice_core::Endpoint;

use crate::cli::Connections;
use crate::econ::workload::{generate, replay, Kind, Request, Spec};
use crate::progress::{self, Size};
use crate::stack::{self, BenchStack};
use crate::stats::{bucket_quantile_ms, histogram_buckets, percentile};
use crate::PHASE_LIMIT;

#[derive(Args, Debug)]
pub struct CacheArgs {
    /// Requests in the run.
    #[arg(long, default_value_t = 20_000)]
    pub requests: usize,
    /// The share of requests that repeat an earlier one.
    #[arg(long, default_value_t = 0.65)]
    pub repeat_share: f64,
    /// Concurrent clients, each sending its next request once the last was answered.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Mean prompt tokens per request (log-normal).
    #[arg(long, default_value_t = 1200.0)]
    pub mean_input_tokens: f64,
    /// Mean completion tokens per request (log-normal).
    #[arg(long, default_value_t = 300.0)]
    pub mean_output_tokens: f64,
    /// The mock provider's fixed latency per call, in ms.
    #[arg(long, default_value_t = 50)]
    pub latency_ms: u64,
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Replay these requests (JSONL, the OpenAI batch line format) instead
    /// of generating them.
    #[arg(long)]
    pub replay: Option<std::path::PathBuf>,
    /// Seeds the workload.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Then send this many answered requests again, one at a time, with
    /// the workers idle: the hit path's own latency.
    #[arg(long, default_value_t = 2_000)]
    pub hits_alone: usize,
    /// Measure the semantic cache's quality instead: a labelled probe
    /// set on a real embedding model (see `semantic/mod.rs`).
    #[arg(long)]
    pub semantic: bool,
    #[command(flatten)]
    pub semantic_args: crate::semantic::SemanticArgs,
    #[command(flatten)]
    pub conn: Connections,
}

/// The economics workload (long-tailed token counts, shared system
/// prompts per feature) with exact repeats only: each request as a job.
/// Or, with `--replay`, the requests of a JSONL file (each once, in order;
/// its unique count is the number of distinct normalised requests).
fn workload(args: &CacheArgs) -> anyhow::Result<(Vec<Value>, usize)> {
    if let Some(path) = &args.replay {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let requests =
            replay(&text, "mock-small").map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let e = Endpoint::ChatCompletions;
        let unique: HashSet<String> = requests
            .iter()
            .map(|r| request_key("bench", e, &normalise(e, &r.body)))
            .collect();
        return Ok((requests.into_iter().map(job).collect(), unique.len()));
    }
    let requests = generate(&Spec {
        requests: args.requests,
        mean_input_tokens: args.mean_input_tokens,
        mean_output_tokens: args.mean_output_tokens,
        repeat_share: args.repeat_share,
        paraphrase_share: 0.0,
        features: 6,
        tenants: 1,
        model: "mock-small".into(),
        seed: args.seed,
        deferrable_share: 0.0,
    });
    let unique = requests.iter().filter(|r| r.kind == Kind::Unique).count();
    Ok((requests.into_iter().map(job).collect(), unique))
}

/// A request as a job, labelled with its tenant and feature.
fn job(r: Request) -> Value {
    json!({"body": r.body, "metadata": {"feature": r.feature, "tenant": r.tenant}})
}

#[derive(Default)]
struct Timings {
    /// Answered 200 from the cache.
    hits: Vec<Duration>,
    /// Answered 202: enqueued, or joined an identical job in flight.
    queued: Vec<Duration>,
    errors: usize,
}

/// The least histogram bucket bound (ms) under which `q` of the API's
/// `POST /v1/jobs` answers with `status` fell: the server's own view,
/// without the client's share of the machine.
fn server_quantile_ms(metrics: &str, status: &str, q: f64) -> Option<f64> {
    bucket_quantile_ms(&post_buckets(metrics, status), q)
}

/// The cumulative buckets `(le, count)` of the API's `POST /v1/jobs`
/// answers with `status`, by bound.
fn post_buckets(metrics: &str, status: &str) -> Vec<(f64, f64)> {
    let status = format!("status=\"{status}\"");
    histogram_buckets(
        metrics,
        "sluice_http_request_duration_seconds",
        &["method=\"POST\"", "route=\"/v1/jobs\"", &status],
    )
}

/// Hits alone: the requests `order` (already answered), sent one at a time once the
/// workers are idle, so that the API's hit path is timed without a busy
/// worker fleet on the same two cores. Client times, and the API's own
/// p99 bucket from the difference of its histogram before and after.
async fn hits_alone(
    http: &reqwest::Client,
    stack: &BenchStack,
    order: &[Value],
    phase: &progress::Phase,
) -> anyhow::Result<(Vec<Duration>, usize, Option<f64>)> {
    let metrics_url = format!("{}/metrics", stack.api_url);
    let before = post_buckets(&http.get(&metrics_url).send().await?.text().await?, "200");
    let (mut took, mut missed) = (Vec::with_capacity(order.len()), 0);
    for job in order {
        let sent = Instant::now();
        let r = stack.post_job(http, job).await?;
        let status = r.status().as_u16();
        r.bytes().await?;
        if status == 200 {
            took.push(sent.elapsed());
        } else {
            missed += 1;
        }
        phase.inc(1);
    }
    let after = post_buckets(&http.get(&metrics_url).send().await?.text().await?, "200");
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|&(le, n)| {
            let was = before.iter().find(|b| b.0 == le).map_or(0.0, |b| b.1);
            (le, n - was)
        })
        .collect();
    took.sort();
    Ok((took, missed, bucket_quantile_ms(&delta, 0.99)))
}

/// A counter's value from the API's `/metrics` text.
fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

pub async fn run(args: CacheArgs) -> anyhow::Result<()> {
    if args.semantic {
        return crate::semantic::run(&args.semantic_args, &args.conn, args.latency_ms).await;
    }
    let options = sluice_testkit::StackOptions {
        mock_args: vec!["--latency-fixed-ms".into(), args.latency_ms.to_string()],
        ..stack::options(&args.conn, args.workers)
    };
    stack::measure_on(options, async |stack| measure(stack, &args).await).await
}

async fn measure(stack: &BenchStack, args: &CacheArgs) -> anyhow::Result<String> {
    let (order, unique) = workload(args)?;
    let order = Arc::new(order);
    let next = Arc::new(AtomicUsize::new(0));
    let timings = Arc::new(Mutex::new(Timings::default()));
    let http = reqwest::Client::new();
    let finished = stack.stack.completions().await;
    let phase = progress::phase(
        format!(
            "{} requests from {} closed-loop clients",
            order.len(),
            args.concurrency
        ),
        Size::Items(order.len() as u64),
    );
    let started = Instant::now();
    let clients = (0..args.concurrency).map(|_| {
        let (order, next, timings, http) = (
            Arc::clone(&order),
            Arc::clone(&next),
            Arc::clone(&timings),
            http.clone(),
        );
        let (url, key) = (format!("{}/v1/jobs", stack.api_url), stack.key.clone());
        let phase = &phase;
        async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = order.get(i) else { break };
                let sent = Instant::now();
                let answer = http.post(&url).bearer_auth(&key).json(job).send().await;
                let took = sent.elapsed();
                let mut t = timings.lock().unwrap_or_else(|p| p.into_inner());
                match answer {
                    Ok(r) if r.status().as_u16() == 200 => t.hits.push(took),
                    Ok(r) if r.status().as_u16() == 202 => t.queued.push(took),
                    _ => t.errors += 1,
                }
                phase.inc(1);
            }
        }
    });
    futures::future::join_all(clients).await;
    let submitted = started.elapsed();
    phase.done();
    let (mut hits, mut queued, errors) = {
        let t = timings.lock().unwrap_or_else(|p| p.into_inner());
        (t.hits.clone(), t.queued.clone(), t.errors)
    };
    // Every queued or joined job ends with a completion notice.
    let expected = queued.len();
    let phase = progress::phase("queued jobs ending", Size::Items(expected as u64));
    let give_up = Instant::now() + PHASE_LIMIT;
    while finished.ended() < expected && Instant::now() < give_up {
        phase.set(finished.ended() as u64);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ended = finished.ended();
    finished.stop().await;
    phase.done();
    let stats = stack.stack.mock_stats().await;
    let calls = stats["by_endpoint"]["/v1/chat/completions"]["requests"]
        .as_u64()
        .unwrap_or(0);
    let metrics = http
        .get(format!("{}/metrics", stack.api_url))
        .send()
        .await?
        .text()
        .await?;
    let joined = counter(
        &metrics,
        "sluice_cache_requests_total{kind=\"inflight\",outcome=\"hit\"}",
    );
    let n = args.hits_alone.min(order.len());
    let phase = progress::phase(
        format!("{n} hits alone (1 client, workers idle)"),
        Size::Items(n as u64),
    );
    let (alone, alone_missed, alone_server) = hits_alone(&http, stack, &order[..n], &phase).await?;
    phase.done();
    hits.sort();
    queued.sort();
    let n = args.requests as f64;
    let over = (calls as f64 / unique as f64 - 1.0) * 100.0;
    Ok(format!(
        "\n## sluice-bench cache\n\n\
         {requests} requests, {share:.0}% repeats ({unique} unique), {c} clients, \
         mock latency {lat} ms, {w} workers; submitted in {secs:.1} s; {ended} of {expected} queued jobs ended\n\n\
         | figure | value |\n|---|---|\n\
         | exact hits (200 at once) | {h} ({hr:.1}%) |\n\
         | joined a job in flight (202) | {joined} ({jr:.1}%) |\n\
         | sent to the queue (202) | {q} |\n\
         | errors | {errors} |\n\
         | provider calls | {calls} (unique requests {unique}: {over:+.2}%) |\n\
         | hit answer time p50 / p99 | {h50:.2} / {h99:.2} ms |\n\
         | 202 answer time p50 / p99 (baseline) | {q50:.2} / {q99:.2} ms |\n\
         | the API's own time, p99 bucket: hits / 202s | ≤ {s200} / ≤ {s202} ms |\n\
         | hits alone (1 client, workers idle): p50 / p99 | {a50:.2} / {a99:.2} ms ({an} hits, {alone_missed} not hits) |\n\
         | hits alone, the API's own time, p99 bucket | ≤ {a_server} ms |\n",
        requests = args.requests,
        share = args.repeat_share * 100.0,
        c = args.concurrency,
        lat = args.latency_ms,
        w = args.workers,
        secs = submitted.as_secs_f64(),
        h = hits.len(),
        hr = hits.len() as f64 / n * 100.0,
        jr = joined as f64 / n * 100.0,
        q = queued.len().saturating_sub(joined as usize),
        h50 = percentile(&hits, 0.50),
        h99 = percentile(&hits, 0.99),
        q50 = percentile(&queued, 0.50),
        q99 = percentile(&queued, 0.99),
        s200 = server_quantile_ms(&metrics, "200", 0.99).map_or("?".into(), |v| format!("{v}")),
        s202 = server_quantile_ms(&metrics, "202", 0.99).map_or("?".into(), |v| format!("{v}")),
        a50 = percentile(&alone, 0.50),
        a99 = percentile(&alone, 0.99),
        an = alone.len(),
        a_server = alone_server.map_or("?".into(), |v| format!("{v}")),
    ))
}
