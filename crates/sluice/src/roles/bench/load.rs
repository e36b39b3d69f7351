//! The measured phases: steady submission with workers running, then a
//! backlog drained by one worker whose memory is sampled.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use fred::prelude::*;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::children::{memory_kib, BenchStack};
use super::report::{Backlog, Report, Steady};
use super::{ThroughputArgs, PHASE_LIMIT};

/// Counts jobs as they end, from the completion channel.
struct Finished {
    count: Arc<AtomicUsize>,
    stop: CancellationToken,
    tasks: TaskTracker,
    subscriber: fred::clients::SubscriberClient,
}

impl Finished {
    async fn start(redis_url: &str, prefix: &str) -> anyhow::Result<Self> {
        let subscriber = Builder::from_config(Config::from_url(redis_url)?)
            .with_performance_config(|p| p.broadcast_channel_capacity = 1 << 17)
            .build_subscriber_client()?;
        subscriber.init().await?;
        let mut messages = subscriber.message_rx();
        subscriber.subscribe(format!("{prefix}:done")).await?;
        let count = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let (sink, until) = (Arc::clone(&count), stop.clone());
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = until.cancelled() => break,
                    m = messages.recv() => match m {
                        Ok(_) => { sink.fetch_add(1, Ordering::Relaxed); }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            sink.fetch_add(usize::try_from(n).unwrap_or(0), Ordering::Relaxed);
                        }
                        Err(_) => break,
                    }
                }
            }
        });
        Ok(Self {
            count,
            stop,
            tasks,
            subscriber,
        })
    }

    fn get(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Waits until `n` jobs ended; the instant the last one was seen.
    async fn wait_for(&self, n: usize, mut on_tick: impl FnMut()) -> anyhow::Result<Instant> {
        let give_up = Instant::now() + PHASE_LIMIT;
        while self.get() < n {
            anyhow::ensure!(
                Instant::now() < give_up,
                "only {} of {n} jobs ended",
                self.get()
            );
            on_tick();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Instant::now())
    }

    async fn stop(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        let _ = self.subscriber.quit().await;
    }
}

fn job(i: usize) -> Value {
    json!({"endpoint": "/v1/completions",
           "body": {"model": "mock-small", "max_tokens": 16, "prompt": format!("benchmark prompt number {i}")}})
}

pub async fn run_all(
    stack: &BenchStack,
    args: &ThroughputArgs,
    report: &mut Report,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    for per_request in [1, args.batch_size] {
        let finished = Finished::start(&args.conn.redis_url, &stack.prefix).await?;
        eprintln!(
            "bench: steady phase ({} jobs, {per_request} per request, {} clients, {} workers)",
            args.jobs, args.concurrency, args.workers
        );
        let steady = steady(stack, args, &http, &finished, per_request).await?;
        finished.stop().await;
        report.steady.push(steady);
    }
    Ok(())
}

/// Submits `args.jobs` jobs, `per_request` at a time, from
/// `args.concurrency` clients (fewer for batches), while the workers run.
async fn steady(
    stack: &BenchStack,
    args: &ThroughputArgs,
    http: &reqwest::Client,
    finished: &Finished,
    per_request: usize,
) -> anyhow::Result<Steady> {
    let per_request = per_request.max(1);
    let (url, clients) = if per_request == 1 {
        (format!("{}/v1/jobs", stack.api_url), args.concurrency)
    } else {
        (
            format!("{}/v1/jobs/batch", stack.api_url),
            args.concurrency.div_ceil(per_request).clamp(2, 8),
        )
    };
    let requests: Vec<Value> = (0..args.jobs)
        .collect::<Vec<_>>()
        .chunks(per_request)
        .map(|chunk| {
            if per_request == 1 {
                job(chunk[0])
            } else {
                json!({"jobs": chunk.iter().map(|&i| job(i)).collect::<Vec<_>>()})
            }
        })
        .collect();
    let started = Instant::now();
    let latencies: Vec<Result<(Duration, usize), String>> = futures::stream::iter(requests)
        .map(|body| {
            let jobs = body["jobs"].as_array().map_or(1, Vec::len);
            let request = http.post(&url).bearer_auth(&stack.key).json(&body);
            async move {
                let sent = Instant::now();
                match request.send().await {
                    Ok(r) if r.status().as_u16() == 202 => Ok((sent.elapsed(), jobs)),
                    Ok(r) => Err(format!("HTTP {}", r.status())),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .buffer_unordered(clients)
        .collect()
        .await;
    let submit_s = started.elapsed().as_secs_f64();
    let mut ok: Vec<Duration> = latencies
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|(d, _)| *d))
        .collect();
    let accepted: usize = latencies
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|(_, n)| *n))
        .sum();
    let errors = args.jobs - accepted;
    if let Some(Err(first)) = latencies.iter().find(|r| r.is_err()) {
        eprintln!("bench: {errors} jobs were not accepted, the first failure {first}");
    }
    let last = finished.wait_for(accepted, || {}).await?;
    ok.sort_unstable();
    Ok(Steady {
        jobs_per_request: per_request,
        clients,
        jobs: args.jobs,
        accepted,
        errors,
        accepted_per_s: accepted as f64 / submit_s,
        submit_p50_ms: percentile(&ok, 0.50),
        submit_p99_ms: percentile(&ok, 0.99),
        finished_per_s: accepted as f64 / (last - started).as_secs_f64(),
    })
}

/// Leaves `args.backlog` jobs waiting with no worker, then starts one and
/// samples its memory while it drains them.
pub async fn backlog(stack: &mut BenchStack, args: &ThroughputArgs) -> anyhow::Result<Backlog> {
    let http = reqwest::Client::new();
    let finished = Finished::start(&args.conn.redis_url, &stack.prefix).await?;
    stack.stop_workers().await;
    let url = format!("{}/v1/jobs/batch", stack.api_url);
    for chunk in (0..args.backlog).collect::<Vec<_>>().chunks(1000) {
        let jobs: Vec<Value> = chunk.iter().map(|&i| job(i)).collect();
        let r = http
            .post(&url)
            .bearer_auth(&stack.key)
            .json(&json!({"jobs": jobs}))
            .send()
            .await?;
        anyhow::ensure!(
            r.status().as_u16() == 202,
            "backlog submit: HTTP {}",
            r.status()
        );
    }
    stack.start_worker().await?;
    let pid = stack
        .workers
        .last()
        .and_then(|w| w.pid())
        .context("worker pid")?;
    let started = Instant::now();
    let mut peak_rss = 0;
    let last = finished
        .wait_for(args.backlog, || {
            if let Some((rss, _)) = memory_kib(pid) {
                peak_rss = peak_rss.max(rss);
            }
        })
        .await?;
    let (_, hwm) = memory_kib(pid).unwrap_or((0, 0));
    finished.stop().await;
    Ok(Backlog {
        jobs: args.backlog,
        drain_per_s: args.backlog as f64 / (last - started).as_secs_f64(),
        worker_peak_rss_mib: peak_rss.max(hwm) as f64 / 1024.0,
    })
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}
