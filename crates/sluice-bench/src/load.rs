//! The measured phases: steady submission with workers running, then a
//! backlog drained by one worker whose memory is sampled.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use serde_json::{json, Value};
use sluice_testkit::Completions;

use crate::cpu::{self, memory_kib};
use crate::progress::{self, Phase, Size};
use crate::report::{Backlog, Limiter, Report, Steady};
use crate::stack::BenchStack;
use crate::stats::percentile;
use crate::throughput::ThroughputArgs;
use crate::PHASE_LIMIT;

/// Waits until `n` jobs ended, showing their count in `phase` and calling
/// `on_tick` as it goes; the instant the last one was seen.
pub async fn wait_for(
    ended: &Completions,
    n: usize,
    phase: &Phase,
    mut on_tick: impl FnMut(),
) -> anyhow::Result<Instant> {
    let give_up = Instant::now() + PHASE_LIMIT;
    while ended.ended() < n {
        let missed = ended.missed();
        anyhow::ensure!(
            missed == 0,
            "the completion counter fell behind and missed {missed} messages"
        );
        anyhow::ensure!(
            Instant::now() < give_up,
            "only {} of {n} jobs ended",
            ended.ended()
        );
        phase.set(ended.ended() as u64);
        on_tick();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Instant::now())
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
        let finished = stack.stack.completions().await;
        let phase = progress::phase(
            format!(
                "steady phase ({} jobs, {per_request} per request, {} clients, {} workers)",
                args.jobs, args.concurrency, args.workers
            ),
            Size::Items(args.jobs as u64),
        );
        let steady = steady(stack, args, &http, &finished, per_request, &phase).await?;
        finished.stop().await;
        phase.done();
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

/// How a submission run counts its progress.
#[derive(Clone, Copy)]
enum Count {
    /// Jobs accepted, into the phase.
    Accepted,
    /// Nothing: the phase counts something else (jobs ended).
    Elsewhere,
}

/// Submits jobs `0..jobs`, `per_request` at a time, from `concurrency`
/// clients (a few for batches).
async fn submit_all(
    stack: &BenchStack,
    http: &reqwest::Client,
    jobs: usize,
    per_request: usize,
    concurrency: usize,
    (phase, count): (&Phase, Count),
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
                let answer = match request.send().await {
                    Ok(r) if r.status().as_u16() == 202 => Ok((sent.elapsed(), n)),
                    Ok(r) => Err(format!("HTTP {}", r.status())),
                    Err(e) => Err(e.to_string()),
                };
                if let (Count::Accepted, Ok(_)) = (count, &answer) {
                    phase.inc(n as u64);
                }
                answer
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
        progress::line(&format!(
            "bench: {} jobs were not accepted, the first failure {first}",
            jobs - accepted
        ));
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
    finished: &Completions,
    per_request: usize,
    phase: &Phase,
) -> anyhow::Result<Steady> {
    let roles = stack.roles();
    let before = cpu::sample(&roles);
    let submit = submit_all(
        stack,
        http,
        args.jobs,
        per_request,
        args.concurrency,
        (phase, Count::Elsewhere),
    );
    let s = phase.follow(|| finished.ended() as u64, submit).await?;
    let last = wait_for(finished, s.accepted, phase, || {}).await?;
    let after = cpu::sample(&roles);
    let cpu = before
        .zip(after)
        .map(|(before, after)| cpu::split(&before, &after, s.accepted));
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
    let phase = progress::phase(
        format!("tenant limiter off, then on ({jobs} jobs each)"),
        Size::Items(2 * jobs as u64),
    );
    let counted = (&phase, Count::Accepted);
    let off = submit_all(stack, &http, jobs, 1, 32, counted).await?;
    stack.set_limits(Some((1 << 40, 1 << 50))).await;
    // The API trusts a checked key (and its limits) for 5 s.
    tokio::time::sleep(sluice_api::extract::KEY_CACHE_TTL + Duration::from_secs(1)).await;
    let on = submit_all(stack, &http, jobs, 1, 32, counted).await?;
    stack.set_limits(None).await;
    tokio::time::sleep(sluice_api::extract::KEY_CACHE_TTL + Duration::from_secs(1)).await;
    phase.done();
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
    let finished = stack.stack.completions().await;
    stack.stop_workers().await;
    let name = if per_request == 1 {
        format!(
            "backlog phase ({} jobs waiting, then one worker)",
            args.backlog
        )
    } else {
        format!("backlog phase again, its jobs submitted {per_request} per request")
    };
    let phase = progress::phase(
        format!("{name}: submitting"),
        Size::Items(args.backlog as u64),
    );
    let s = submit_all(
        stack,
        &http,
        args.backlog,
        per_request,
        args.concurrency,
        (&phase, Count::Accepted),
    )
    .await?;
    phase.done();
    anyhow::ensure!(
        s.accepted == args.backlog,
        "only {} of {} backlog jobs accepted",
        s.accepted,
        args.backlog
    );
    let phase = progress::phase(
        format!("{name}: draining"),
        Size::Items(args.backlog as u64),
    );
    stack.stack.start_worker().await;
    let pid = stack
        .stack
        .workers
        .last()
        .and_then(|w| w.id())
        .context("worker pid")?;
    let started = Instant::now();
    let mut peak_rss = 0;
    let last = wait_for(&finished, args.backlog, &phase, || {
        if let Some((rss, _)) = memory_kib(pid) {
            peak_rss = peak_rss.max(rss);
        }
    })
    .await?;
    let (_, hwm) = memory_kib(pid).unwrap_or((0, 0));
    finished.stop().await;
    phase.done();
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
