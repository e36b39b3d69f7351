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

use sluice_store::tenants::TenantStore;

use super::children::{memory_kib, BenchStack};
use super::report::{Backlog, Limiter, Report, Steady};
use super::{ThroughputArgs, PHASE_LIMIT};

/// Counts jobs as they end, from the completion channel (each message
/// carries the ids of the jobs that ended together).
pub(super) struct Finished {
    count: Arc<AtomicUsize>,
    /// Messages this counter missed (it fell behind): its count is then
    /// short by an unknown number of jobs.
    missed: Arc<AtomicUsize>,
    stop: CancellationToken,
    tasks: TaskTracker,
    subscriber: fred::clients::SubscriberClient,
}

impl Finished {
    pub(super) async fn start(redis_url: &str, prefix: &str) -> anyhow::Result<Self> {
        let subscriber = Builder::from_config(Config::from_url(redis_url)?)
            .with_performance_config(|p| p.broadcast_channel_capacity = 1 << 17)
            .build_subscriber_client()?;
        subscriber.init().await?;
        let mut messages = subscriber.message_rx();
        subscriber.subscribe(format!("{prefix}:done")).await?;
        let count = Arc::new(AtomicUsize::new(0));
        let missed = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let (sink, lost, until) = (Arc::clone(&count), Arc::clone(&missed), stop.clone());
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = until.cancelled() => break,
                    m = messages.recv() => match m {
                        Ok(m) => {
                            let ids = m.value.as_str().map_or(0, |s| s.split(' ').count());
                            sink.fetch_add(ids, Ordering::Relaxed);
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            lost.fetch_add(usize::try_from(n).unwrap_or(usize::MAX), Ordering::Relaxed);
                        }
                        Err(_) => break,
                    }
                }
            }
        });
        Ok(Self {
            count,
            missed,
            stop,
            tasks,
            subscriber,
        })
    }

    pub(super) fn get(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Waits until `n` jobs ended; the instant the last one was seen.
    async fn wait_for(&self, n: usize, mut on_tick: impl FnMut()) -> anyhow::Result<Instant> {
        let give_up = Instant::now() + PHASE_LIMIT;
        while self.get() < n {
            let missed = self.missed.load(Ordering::Relaxed);
            anyhow::ensure!(
                missed == 0,
                "the completion counter fell behind and missed {missed} messages"
            );
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

    pub(super) async fn stop(self) {
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

/// What a submission run achieved.
struct Submitted {
    accepted: usize,
    clients: usize,
    accepted_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    started: Instant,
}

/// Submits jobs `0..jobs`, `per_request` at a time, from `concurrency`
/// clients (a few for batches).
async fn submit_all(
    stack: &BenchStack,
    http: &reqwest::Client,
    jobs: usize,
    per_request: usize,
    concurrency: usize,
) -> anyhow::Result<Submitted> {
    let per_request = per_request.max(1);
    let (url, clients) = if per_request == 1 {
        (format!("{}/v1/jobs", stack.api_url), concurrency)
    } else {
        (
            format!("{}/v1/jobs/batch", stack.api_url),
            concurrency.div_ceil(per_request).clamp(2, 8),
        )
    };
    // Bodies, address and key are made before the clock starts, so that
    // the load generator (on the same cores) spends its time sending.
    let requests: Vec<(bytes::Bytes, usize)> = (0..jobs)
        .collect::<Vec<_>>()
        .chunks(per_request)
        .map(|chunk| {
            let body = if per_request == 1 {
                job(chunk[0])
            } else {
                json!({"jobs": chunk.iter().map(|&i| job(i)).collect::<Vec<_>>()})
            };
            (
                serde_json::to_vec(&body).unwrap_or_default().into(),
                chunk.len(),
            )
        })
        .collect();
    let url = reqwest::Url::parse(&url)?;
    let auth = format!("Bearer {}", stack.key);
    let started = Instant::now();
    let results: Vec<Result<(Duration, usize), String>> = futures::stream::iter(requests)
        .map(|(body, n)| {
            let request = http
                .post(url.clone())
                .header(reqwest::header::AUTHORIZATION, &auth)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
            async move {
                let sent = Instant::now();
                match request.send().await {
                    Ok(r) if r.status().as_u16() == 202 => Ok((sent.elapsed(), n)),
                    Ok(r) => Err(format!("HTTP {}", r.status())),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .buffer_unordered(clients)
        .collect()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut latencies: Vec<Duration> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|(d, _)| *d))
        .collect();
    let accepted: usize = results
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|(_, n)| *n))
        .sum();
    if let Some(Err(first)) = results.iter().find(|r| r.is_err()) {
        eprintln!(
            "bench: {} jobs were not accepted, the first failure {first}",
            jobs - accepted
        );
    }
    latencies.sort_unstable();
    Ok(Submitted {
        accepted,
        clients,
        accepted_per_s: accepted as f64 / elapsed,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        started,
    })
}

/// Submits `args.jobs` jobs while the workers run, and waits for them all.
async fn steady(
    stack: &BenchStack,
    args: &ThroughputArgs,
    http: &reqwest::Client,
    finished: &Finished,
    per_request: usize,
) -> anyhow::Result<Steady> {
    let roles = stack.roles();
    let before = super::cpu::sample(&roles);
    let s = submit_all(stack, http, args.jobs, per_request, args.concurrency).await?;
    let last = finished.wait_for(s.accepted, || {}).await?;
    let after = super::cpu::sample(&roles);
    let cpu = before
        .zip(after)
        .map(|(before, after)| super::cpu::split(&before, &after, s.accepted));
    Ok(Steady {
        jobs_per_request: per_request,
        clients: s.clients,
        jobs: args.jobs,
        accepted: s.accepted,
        errors: args.jobs - s.accepted,
        accepted_per_s: s.accepted_per_s,
        submit_p50_ms: s.p50_ms,
        submit_p99_ms: s.p99_ms,
        finished_per_s: s.accepted as f64 / (last - s.started).as_secs_f64(),
        cpu,
    })
}

/// Submit latency with the tenant limiter off, then on (limits high enough
/// never to refuse), with the workers stopped: what the limit check costs.
pub async fn limiter_overhead(
    stack: &mut BenchStack,
    args: &ThroughputArgs,
) -> anyhow::Result<Limiter> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    stack.stop_workers().await;
    let jobs = args.limiter_jobs;
    let off = submit_all(stack, &http, jobs, 1, 32).await?;
    stack
        .tenants
        .set_limits("bench", Some(1 << 40), Some(1 << 50))
        .await?;
    // The API trusts a checked key (and its limits) for 5 s.
    tokio::time::sleep(sluice_api::extract::KEY_CACHE_TTL + Duration::from_secs(1)).await;
    let on = submit_all(stack, &http, jobs, 1, 32).await?;
    stack.tenants.set_limits("bench", None, None).await?;
    tokio::time::sleep(sluice_api::extract::KEY_CACHE_TTL + Duration::from_secs(1)).await;
    anyhow::ensure!(
        off.accepted == jobs && on.accepted == jobs,
        "the limiter phases lost submissions"
    );
    Ok(Limiter {
        jobs,
        off_p50_ms: off.p50_ms,
        off_p99_ms: off.p99_ms,
        on_p50_ms: on.p50_ms,
        on_p99_ms: on.p99_ms,
    })
}

/// With the workers stopped, submits `args.backlog` jobs, `per_request` at
/// a time (the API and broker alone), then starts one worker and samples
/// its memory while it drains them.
pub async fn backlog(
    stack: &mut BenchStack,
    args: &ThroughputArgs,
    per_request: usize,
) -> anyhow::Result<Backlog> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let finished = Finished::start(&args.conn.redis_url, &stack.prefix).await?;
    stack.stop_workers().await;
    let s = submit_all(stack, &http, args.backlog, per_request, args.concurrency).await?;
    anyhow::ensure!(
        s.accepted == args.backlog,
        "only {} of {} backlog jobs accepted",
        s.accepted,
        args.backlog
    );
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
        jobs_per_request: per_request,
        clients: s.clients,
        ingest_per_s: s.accepted_per_s,
        ingest_p50_ms: s.p50_ms,
        ingest_p99_ms: s.p99_ms,
        drain_per_s: args.backlog as f64 / (last - started).as_secs_f64(),
        worker_peak_rss_mib: peak_rss.max(hwm) as f64 / 1024.0,
    })
}

pub(super) fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}
