//! `sluice-bench held`: what an API replica pays for each connection held
//! open while a job runs. With no worker running, it submits `--polls`
//! jobs, then holds one long-poll (`GET /v1/jobs/{id}?wait=`) per job open
//! at once, and reads the API's resident memory before and while they are
//! held: the growth per held long-poll. Then it starts a worker and times
//! how long until every long-poll has its answer.
//!
//! With `--streams`, it holds streaming calls instead (`POST
//! /v1/chat/completions` with `stream: true`, each submitting its own
//! job), read to their `data: [DONE]`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Value};

use crate::cli::Connections;
use crate::progress::{self, Size};
use crate::stack::{self, BenchStack};

#[derive(Args, Debug)]
pub struct HeldArgs {
    /// Long-polls (or streams) held at once.
    #[arg(long, default_value_t = 10_000)]
    pub polls: usize,
    /// Hold streaming chat completions instead of long-polls.
    #[arg(long)]
    pub streams: bool,
    #[command(flatten)]
    pub conn: Connections,
}

pub async fn run(args: HeldArgs) -> anyhow::Result<()> {
    // The worker is started mid-bench, so the stack is not `measure_on`'s.
    let mut stack = BenchStack::start(stack::options(&args.conn, 0)).await;
    let outcome = measure(&mut stack, &args).await;
    stack.finish();
    crate::say(&outcome?);
    Ok(())
}

/// The API process's resident memory, KiB.
fn api_rss(stack: &BenchStack) -> anyhow::Result<u64> {
    let pid = stack
        .stack
        .api
        .as_ref()
        .and_then(|api| api.id())
        .ok_or_else(|| anyhow::anyhow!("the stack has no API process"))?;
    crate::cpu::memory_kib(pid)
        .map(|(rss, _)| rss)
        .ok_or_else(|| anyhow::anyhow!("cannot read the API's memory"))
}

/// Open connections of the API process (its socket descriptors).
fn api_sockets(stack: &BenchStack) -> usize {
    let Some(pid) = stack.stack.api.as_ref().and_then(|api| api.id()) else {
        return 0;
    };
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

async fn measure(stack: &mut BenchStack, args: &HeldArgs) -> anyhow::Result<String> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(300))
        .build()?;
    if args.streams {
        return measure_streams(stack, args, &http).await;
    }
    let submitting = progress::phase("submitting the jobs", Size::Items(args.polls as u64));
    let jobs: Vec<Value> = (0..args.polls)
        .map(|i| {
            json!({"body": {"model": "mock-small", "max_tokens": 4,
            "messages": [{"role": "user", "content": format!("held job {i}")}]}})
        })
        .collect();
    let ids = stack
        .submit(&http, &jobs, |n| submitting.set(n as u64))
        .await?;
    submitting.done();
    anyhow::ensure!(
        ids.len() == args.polls,
        "{} job ids for {} jobs",
        ids.len(),
        args.polls
    );
    // Let the submissions' buffers go before the baseline.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = api_rss(stack)?;
    let sockets_before = api_sockets(stack);

    let answered = Arc::new(AtomicUsize::new(0));
    let holding = progress::phase("holding the long-polls", Size::Items(args.polls as u64));
    let mut polls = tokio::task::JoinSet::new();
    for id in &ids {
        let (http, answered) = (http.clone(), Arc::clone(&answered));
        // The longest wait the API allows; a poll that times out while the
        // job waits asks again.
        let url = format!("{}/v1/jobs/{id}?wait=60", stack.api_url);
        let key = stack.key.clone();
        polls.spawn(async move {
            for _ in 0..10 {
                let Ok(reply) = http.get(&url).bearer_auth(&key).send().await else {
                    return false;
                };
                let Ok(job) = reply.json::<Value>().await else {
                    return false;
                };
                match job["status"].as_str() {
                    Some("succeeded") => {
                        answered.fetch_add(1, Ordering::Relaxed);
                        return true;
                    }
                    Some("queued" | "running") => continue,
                    _ => return false,
                }
            }
            false
        });
    }
    let held = held_rss(stack, sockets_before, args.polls, holding).await?;
    let woken = answer_all(stack, polls, &answered, args.polls).await?;

    let per_poll = (held.saturating_sub(before) as f64) / args.polls as f64;
    Ok(format!(
        "held long-polls: {polls}; API resident memory {before_mib:.1} MiB before, {held_mib:.1} MiB while held: \
         {per_poll:.1} KiB per held long-poll; all answered {woken:.2} s after a worker started",
        polls = args.polls,
        before_mib = before as f64 / 1024.0,
        held_mib = held as f64 / 1024.0,
    ))
}

/// The API's memory once it holds `count` more connections than
/// `sockets_before`, every request read and parked.
async fn held_rss(
    stack: &BenchStack,
    sockets_before: usize,
    count: usize,
    holding: progress::Phase,
) -> anyhow::Result<u64> {
    let limit = Instant::now() + Duration::from_secs(120);
    while api_sockets(stack) < sockets_before + count {
        anyhow::ensure!(
            Instant::now() < limit,
            "only {} of {count} held requests reached the API",
            api_sockets(stack).saturating_sub(sockets_before),
        );
        holding.set(api_sockets(stack).saturating_sub(sockets_before) as u64);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Memory settled.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = api_rss(stack)?;
    holding.done();
    Ok(held)
}

/// Starts a worker and waits for every held request to end with its
/// answer: how long that took.
async fn answer_all(
    stack: &mut BenchStack,
    mut held: tokio::task::JoinSet<bool>,
    answered: &AtomicUsize,
    count: usize,
) -> anyhow::Result<f64> {
    let waking = progress::phase("a worker answers them", Size::Items(count as u64));
    let started = Instant::now();
    stack.stack.start_worker().await;
    let mut all = true;
    while let Some(ok) = held.join_next().await {
        all &= ok.unwrap_or(false);
        waking.set(answered.load(Ordering::Relaxed) as u64);
    }
    let woken = started.elapsed();
    waking.done();
    anyhow::ensure!(all, "some held requests did not end with their answer");
    Ok(woken.as_secs_f64())
}

/// `--streams`: holds one streaming call per job, each submitting its own.
async fn measure_streams(
    stack: &mut BenchStack,
    args: &HeldArgs,
    http: &reqwest::Client,
) -> anyhow::Result<String> {
    let before = api_rss(stack)?;
    let sockets_before = api_sockets(stack);
    let answered = Arc::new(AtomicUsize::new(0));
    let holding = progress::phase("holding the streams", Size::Items(args.polls as u64));
    let mut streams = tokio::task::JoinSet::new();
    let url = format!("{}/v1/chat/completions", stack.api_url);
    let tag = sluice_core::JobId::new();
    for i in 0..args.polls {
        let (http, answered, url, key) = (
            http.clone(),
            Arc::clone(&answered),
            url.clone(),
            stack.key.clone(),
        );
        let body = json!({"model": "mock-small", "max_tokens": 4, "stream": true,
            "messages": [{"role": "user", "content": format!("held stream {tag} {i}")}]});
        streams.spawn(async move {
            let Ok(reply) = http.post(&url).bearer_auth(&key).json(&body).send().await else {
                return false;
            };
            let Ok(text) = reply.text().await else {
                return false;
            };
            let done = text.trim_end().ends_with("data: [DONE]");
            if done {
                answered.fetch_add(1, Ordering::Relaxed);
            }
            done
        });
    }
    let held = held_rss(stack, sockets_before, args.polls, holding).await?;
    let woken = answer_all(stack, streams, &answered, args.polls).await?;
    let per_stream = (held.saturating_sub(before) as f64) / args.polls as f64;
    Ok(format!(
        "held streams: {streams}; API resident memory {before_mib:.1} MiB before, {held_mib:.1} MiB while held: \
         {per_stream:.1} KiB per held stream (its submission included); all streamed to [DONE] \
         {woken:.2} s after a worker started",
        streams = args.polls,
        before_mib = before as f64 / 1024.0,
        held_mib = held as f64 / 1024.0,
    ))
}
