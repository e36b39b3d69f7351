//! Fair share between tenants on the real services: one tenant's flood
//! does not make another wait behind it, and the flood still takes every
//! provider slot the other leaves idle.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_e2e::{Client, Stack, StackExt, StackOptions};

/// The provider's budget: `RATE` requests a second, counted over a window
/// of `WINDOW_MS` (so a saturated budget grants at most that long apart).
const RATE: u64 = 100;
const WINDOW_MS: u64 = 250;
/// Jobs the gate lets wait for the provider at once (the default, the
/// batch size, set here for the bound below).
const WINDOW_JOBS: u64 = 32;
/// The mock's time per call.
const LATENCY_MS: u64 = 300;

fn chat(tenant: &str, i: usize) -> Value {
    json!({"body": {"model": "mock-small", "max_tokens": 5,
        "messages": [{"role": "user", "content": format!("{tenant} question {i}")}]}})
}

/// Sends `n` jobs one at a time, each once the last ended; answers the
/// mean time from submit to end.
async fn one_at_a_time(client: &Client, tenant: &str, n: usize) -> Duration {
    let mut total = Duration::ZERO;
    for i in 0..n {
        let started = Instant::now();
        let id = client.submit(&chat(tenant, i)).await;
        let job = client.wait_all(&[id], 60).await.remove(0);
        assert_eq!(job["status"], "succeeded", "{job}");
        total += started.elapsed();
    }
    total / u32::try_from(n).unwrap()
}

async fn calls(stack: &Stack) -> u64 {
    stack.mock_stats().await["requests"].as_u64().unwrap()
}

#[tokio::test]
async fn a_tenant_sending_behind_another_tenants_flood_waits_about_as_long_as_alone() {
    let stack = Stack::start(StackOptions {
        label: "fair",
        mock_args: vec!["--latency-fixed-ms".into(), LATENCY_MS.to_string()],
        provider_toml: format!(
            "requests_per_minute = {}\nlimits_window_ms = {WINDOW_MS}\n",
            RATE * WINDOW_MS / 1000
        ),
        worker_toml: format!(
            "max_wait_ms = {{ interactive = 5, standard = 20, batch = 50 }}\n\
             [worker.fair]\nwindow_calls = {WINDOW_JOBS}\nhold_jobs = 2048"
        ),
        ..StackOptions::default()
    })
    .await;
    let (a, b) = (stack.tenant("flood").await, stack.tenant("quiet").await);

    let alone = one_at_a_time(&b, "alone", 20).await;

    let mut flood = Vec::new();
    for chunk in 0..4 {
        let jobs = (0..500).map(|i| chat("flood", chunk * 500 + i)).collect();
        flood.extend(a.submit_batch(jobs).await);
    }
    // The flood is queued and the provider saturated before B starts.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (calls_before, started) = (calls(&stack).await, Instant::now());
    let beside = one_at_a_time(&b, "beside", 20).await;
    let (served, elapsed) = (calls(&stack).await - calls_before, started.elapsed());

    // The bound, from the gate: B's job waits in the gate for one of the
    // WINDOW_JOBS jobs ahead of it at the provider's budget to leave, then
    // behind them, then for the budget's next grant (at most its window);
    // B alone never waits for the budget. Doubled for two busy cores.
    let bound = alone + 2 * Duration::from_millis((WINDOW_JOBS + 1) * 1000 / RATE + WINDOW_MS);
    assert!(
        beside <= bound,
        "B took {beside:?} on average beside the flood, {alone:?} alone (bound {bound:?})"
    );
    let last = a.job(flood.last().unwrap()).await.body;
    assert_ne!(last["status"], "succeeded", "the flood outlasted B's jobs");
    // Work-conserving: the flood took the slots B left idle, the budget
    // spent at 80% or more (B's own jobs were 20 of them).
    let budget = RATE as f64 * elapsed.as_secs_f64();
    assert!(
        served as f64 >= 0.8 * budget,
        "the provider served {served} calls in {elapsed:?}, its budget {budget:.0}"
    );
}

/// The most of `jobs` running at once, from their start and end times.
fn most_at_once(jobs: &[Value]) -> usize {
    let at = |j: &Value, field: &str| {
        chrono::DateTime::parse_from_rfc3339(j[field].as_str().unwrap()).unwrap()
    };
    let mut edges: Vec<_> = jobs
        .iter()
        .flat_map(|j| [(at(j, "started_at"), 1), (at(j, "finished_at"), -1)])
        .collect();
    // An end at the same instant as a start comes first.
    edges.sort();
    let (mut now, mut most) = (0_i64, 0_i64);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    usize::try_from(most).unwrap()
}

#[tokio::test]
async fn a_keys_cap_on_jobs_in_flight_holds_across_two_workers_and_its_jobs_wait_not_fail() {
    let stack = Stack::start(StackOptions {
        label: "cap",
        workers: 2,
        mock_args: vec!["--latency-fixed-ms".into(), "200".into()],
        ..StackOptions::default()
    })
    .await;
    let free = stack.tenant("acme").await;
    let out = stack
        .sluice(&[
            "admin",
            "key",
            "create",
            "--tenant",
            "acme",
            "--name",
            "pipeline",
            "--max-inflight",
            "3",
        ])
        .await;
    let capped = Client::new(&stack.api_url(), out.lines().last().unwrap().trim());

    let capped_ids = capped
        .submit_batch((0..30).map(|i| chat("capped", i)).collect())
        .await;
    let free_ids = free
        .submit_batch((0..30).map(|i| chat("free", i)).collect())
        .await;
    let capped_jobs = capped.wait_all(&capped_ids, 120).await;
    let free_jobs = free.wait_all(&free_ids, 120).await;
    for job in capped_jobs.iter().chain(&free_jobs) {
        assert_eq!(job["status"], "succeeded", "{job}");
    }
    let (capped_most, free_most) = (most_at_once(&capped_jobs), most_at_once(&free_jobs));
    assert!(
        (1..=3).contains(&capped_most),
        "the capped key ran {capped_most} jobs at once"
    );
    // The cap is the key's: the other key's jobs ran past it.
    assert!(free_most > 3, "the uncapped key ran {free_most} at once");
}
