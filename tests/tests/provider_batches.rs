//! The provider-batch tier on the real services, against the mock's Batch
//! API: jobs that can wait hours go out as lines of a few provider
//! batches at the batch price, and their costs equal the mock's bill; a
//! worker killed while it holds a batch loses nothing (another takes the
//! batch over, and the provider sees one batch); a batch not done in time
//! is hedged to real time, still before the deadlines, with the lines the
//! provider finished anyway on the ledger; a refused batch's jobs are
//! re-routed, not failed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sluice_e2e::{acme_stack, Client, Stack, StackOptions, ODD_PRICE};
use sluice_mock::answer_text;

/// A stack whose provider sells batches to jobs with `min_deadline_s` to
/// spare, with `batch` lines added to `[providers.batch]` and `mock` flags.
fn batches(batch: &str, mock: &[&str]) -> StackOptions {
    StackOptions {
        mock_args: ODD_PRICE
            .mock_flags()
            .into_iter()
            .chain(mock.iter().map(|s| (*s).to_owned()))
            .collect(),
        provider_toml: format!("[providers.batch]\npoll_s = 1\nlease_s = 3\n{batch}\n"),
        extra_toml: ODD_PRICE.toml("mock"),
        ..StackOptions::default()
    }
}

fn prompt(i: usize) -> String {
    format!("background summary number {i}")
}

fn chat(i: usize) -> Value {
    json!({"body": {"model": "mock-small", "max_tokens": 3 + i % 5,
        "messages": [{"role": "user", "content": prompt(i)}]}})
}

fn with_deadline(i: usize, deadline_s: u64) -> Value {
    let mut job = chat(i);
    job["deadline_s"] = json!(deadline_s);
    job
}

fn assert_answered(i: usize, job: &Value, tier: &str) {
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["tier"], tier, "job {i}: {job}");
    let text = job["result"]["choices"][0]["message"]["content"]
        .as_str()
        .unwrap();
    assert!(text.starts_with(&answer_text(&prompt(i))), "job {i}: {job}");
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

/// The usage report's total cost (every tier, repeated calls included).
async fn reported_cost(client: &Client) -> u64 {
    let usage = client.get("/v1/usage?group_by=tier").await;
    assert_eq!(usage.status, 200, "{usage:?}");
    usage.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["cost_micros"].as_u64().unwrap())
        .sum()
}

/// The sum of the jobs' costs.
fn cost_of(jobs: &[Value]) -> u64 {
    jobs.iter()
        .map(|j| j["cost_micros"].as_u64().unwrap())
        .sum()
}

/// Waits until job `id` waits in a provider batch (running, on that tier).
async fn until_waiting(client: &Client, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let job = client.job(id).await.body;
        if job["tier"] == "provider_batch" {
            assert_eq!(job["status"], "running", "{job}");
            return;
        }
        assert!(Instant::now() < deadline, "never waiting in a batch: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that worker 0's metrics hold `line`.
async fn assert_metric(stack: &Stack, line: &str) {
    let metrics = stack.worker_metrics(0).await;
    assert!(metrics.contains(line), "{line} in {metrics}");
}

/// Waits until the mock holds `n` batches (of any status).
async fn until_batches(stack: &Stack, n: u64, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let stats = stack.mock_stats().await;
        let held: u64 = stats["batches"]["by_status"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        if held >= n {
            return stats;
        }
        assert!(Instant::now() < deadline, "no batch at the mock: {stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_thousand_jobs_with_a_day_to_spare_go_out_in_a_few_batches_at_the_batch_price() {
    let (stack, client) = acme_stack(batches(
        "min_deadline_s = 600\nrealtime_margin_s = 60\nmax_lines = 400\ncollect_s = 30",
        &["--batch-turnaround-ms=1500"],
    ))
    .await;
    // Priority batch with no deadline of its own: a day ([jobs] batch_deadline_s).
    let jobs: Vec<Value> = (0..1000)
        .map(|i| {
            let mut job = chat(i);
            job["priority"] = json!("batch");
            job
        })
        .collect();
    let ids = client.submit_batch(jobs).await;
    let ended = client.wait_all(&ids, 120).await;
    for (i, job) in ended.iter().enumerate() {
        assert_answered(i, job, "provider_batch");
    }
    let stats = stack.mock_stats().await;
    assert_eq!(stats["requests"], 0, "no call in real time: {stats}");
    let batches = &stats["batches"];
    assert!(
        batches["by_status"]["completed"].as_u64().unwrap() <= 3,
        "at most ⌈1000 / 400⌉ batches: {stats}"
    );
    assert_eq!(batches["lines"]["succeeded"], 1000, "{stats}");
    // The batches' input, output and error files were deleted once read.
    let files = stack
        .get_json(&format!("{}/v1/files", stack.mock_url()))
        .await;
    assert_eq!(files["data"], json!([]), "{files}");

    let costs = cost_of(&ended);
    let bill = stack.mock_bill().await;
    assert_eq!(bill["by_tier"]["batch"]["cost_micros"], costs, "{bill}");
    assert_eq!(bill["total_cost_micros"], costs, "{bill}");
    assert_eq!(reported_cost(&client).await, costs);
    assert_metric(
        &stack,
        "sluice_jobs_answered_total{tier=\"provider_batch\"} 1000",
    )
    .await;
}

#[tokio::test]
async fn a_worker_killed_while_it_holds_a_batch_loses_nothing_and_the_batch_is_not_sent_twice() {
    let (mut stack, client) = acme_stack(batches(
        "min_deadline_s = 600\nrealtime_margin_s = 60\ncollect_s = 1",
        &["--batch-turnaround-ms=5000"],
    ))
    .await;
    let ids = client
        .submit_batch((0..60).map(|i| with_deadline(i, 3600)).collect())
        .await;
    until_batches(&stack, 1, 30).await;
    // Let the worker record the batch it submitted, then kill it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stack.workers.remove(0).kill().await;

    stack.start_worker().await;
    let ended = client.wait_all(&ids, 60).await;
    for (i, job) in ended.iter().enumerate() {
        assert_answered(i, job, "provider_batch");
    }
    let stats = stack.mock_stats().await;
    assert_eq!(stats["batches"]["by_status"]["completed"], 1, "{stats}");
    assert_eq!(stats["batches"]["lines"]["total"], 60, "{stats}");
    assert_eq!(stats["requests"], 0, "{stats}");
    // The operator's view: one batch, done, with its remote id and lines.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = stack.sluice(&["admin", "batches", "--all"]).await;
        let rows: Vec<&str> = listed.lines().skip(1).collect();
        assert_eq!(rows.len(), 1, "{listed}");
        let fields: Vec<&str> = rows[0].split_whitespace().collect();
        if fields[3] == "done" {
            assert_eq!(fields[1..3], ["mock", "mock-small"], "{listed}");
            assert!(fields[4].starts_with("batch_"), "{listed}");
            assert_eq!(fields[5..7], ["60", "0"], "{listed}");
            break;
        }
        assert!(Instant::now() < deadline, "the batch never ended: {listed}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let none = stack.sluice(&["admin", "batches"]).await;
    assert!(none.contains("no provider batches in progress"), "{none}");
    let costs = cost_of(&ended);
    assert_eq!(stack.mock_bill().await["total_cost_micros"], costs);
    assert_eq!(reported_cost(&client).await, costs);
}

#[tokio::test]
async fn a_batch_not_done_in_time_is_hedged_to_real_time_and_every_line_billed_is_recorded() {
    // Deadlines 30 s away, a margin of 12 s: the batch is hedged about 18 s
    // after the jobs were taken, when the provider has done about half its
    // lines.
    let (stack, client) = acme_stack(batches(
        "min_deadline_s = 15\nrealtime_margin_s = 12\ncollect_s = 1",
        &["--batch-turnaround-ms=30000"],
    ))
    .await;
    let ids = client
        .submit_batch((0..40).map(|i| with_deadline(i, 30)).collect())
        .await;
    let ended = client.wait_all(&ids, 60).await;
    for (i, job) in ended.iter().enumerate() {
        assert_eq!(job["status"], "succeeded", "{job}");
        assert!(
            time(&job["finished_at"]) <= time(&job["deadline_at"]),
            "job {i} ended late: {job}"
        );
        let tier = job["tier"].as_str().unwrap();
        assert!(tier == "realtime" || tier == "provider_batch", "{job}");
        assert_answered(i, job, tier);
    }
    assert!(
        ended.iter().any(|j| j["tier"] == "realtime"),
        "the hedge sent jobs out in real time"
    );
    // The cancelled batch's finished lines come in, and are recorded.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let bill = stack.mock_bill().await;
        let billed = bill["total_cost_micros"].as_u64().unwrap();
        let reported = reported_cost(&client).await;
        if billed == reported && bill["by_tier"]["batch"]["requests"].as_u64().unwrap() > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the ledger ({reported} µ$) never matched the bill ({billed} µ$): {bill}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let stats = stack.mock_stats().await;
    assert_eq!(stats["batches"]["by_status"]["cancelled"], 1, "{stats}");
    assert_metric(
        &stack,
        "sluice_provider_batch_reroutes_total{provider=\"mock\",reason=\"hedge\"} 40",
    )
    .await;
}

#[tokio::test]
async fn a_refused_batch_sends_its_jobs_to_real_time_instead_of_failing_them() {
    let (stack, client) = acme_stack(batches(
        "min_deadline_s = 600\nrealtime_margin_s = 60\ncollect_s = 1",
        &["--batch-refuse"],
    ))
    .await;
    let ids = client
        .submit_batch((0..20).map(|i| with_deadline(i, 3600)).collect())
        .await;
    let ended = client.wait_all(&ids, 60).await;
    for (i, job) in ended.iter().enumerate() {
        // Flex is not configured: the re-routed jobs go out at the standard price.
        assert_answered(i, job, "realtime");
    }
    let costs = cost_of(&ended);
    let bill = stack.mock_bill().await;
    assert_eq!(bill["total_cost_micros"], costs, "{bill}");
    assert_eq!(bill["by_tier"]["batch"]["requests"], 0, "{bill}");
    assert_metric(
        &stack,
        "sluice_provider_batch_reroutes_total{provider=\"mock\",reason=\"refused\"} 20",
    )
    .await;
}

#[tokio::test]
async fn a_job_waiting_in_a_batch_shows_its_tier_and_canceled_it_gets_no_line() {
    let (stack, client) = acme_stack(batches(
        "min_deadline_s = 600\nrealtime_margin_s = 60\ncollect_s = 8",
        &["--batch-turnaround-ms=500"],
    ))
    .await;
    let ids = client
        .submit_batch((0..10).map(|i| with_deadline(i, 3600)).collect())
        .await;
    // Taken into a collecting batch: running, waiting on the batch tier.
    for id in &ids[..4] {
        until_waiting(&client, id).await;
        let canceled = client
            .post(&format!("/v1/jobs/{id}/cancel"), &json!({}))
            .await;
        assert_eq!(canceled.status, 200, "{canceled:?}");
    }
    let ended = client.wait_all(&ids, 60).await;
    for job in &ended[..4] {
        assert_eq!(job["status"], "canceled", "{job}");
    }
    for (i, job) in ended.iter().enumerate().skip(4) {
        assert_answered(i, job, "provider_batch");
    }
    let stats = stack.mock_stats().await;
    assert_eq!(
        stats["batches"]["lines"]["total"], 6,
        "no line for a canceled job: {stats}"
    );
    let costs = cost_of(&ended[4..]);
    assert_eq!(stack.mock_bill().await["total_cost_micros"], costs);
    assert_eq!(reported_cost(&client).await, costs);
}

#[tokio::test]
async fn anthropic_message_batches_answer_each_job_by_its_custom_id_at_the_batch_price() {
    let claude = sluice_e2e::Price {
        model: "claude-mock",
        input: 3_000_000,
        cached_input: 300_000,
        output: 15_000_000,
    };
    let toml = "\n[[providers]]\nname = \"anthropic\"\nkind = \"anthropic\"\n\
                base_url = \"{backup_url}/v1\"\n[providers.batch]\nmin_deadline_s = 600\n\
                realtime_margin_s = 60\ncollect_s = 1\npoll_s = 1\nlease_s = 3\n\n\
                [[models]]\nname = \"claude-mock\"\nproviders = [\"anthropic\"]\n";
    let (stack, client) = acme_stack(StackOptions {
        backup_mock: Some(
            claude
                .mock_flags()
                .into_iter()
                .chain(["--batch-turnaround-ms=1000".to_owned()])
                .collect(),
        ),
        extra_toml: toml.to_owned() + &claude.toml("anthropic"),
        ..StackOptions::default()
    })
    .await;
    let ids = client
        .submit_batch(
            (0..30)
                .map(|i| {
                    json!({"deadline_s": 3600, "body": {"model": "claude-mock", "max_tokens": 4 + i % 3,
                        "messages": [{"role": "user", "content": prompt(i)}]}})
                })
                .collect(),
        )
        .await;
    let ended = client.wait_all(&ids, 60).await;
    for (i, job) in ended.iter().enumerate() {
        assert_answered(i, job, "provider_batch");
        assert_eq!(job["provider"], "anthropic", "{job}");
        assert_eq!(job["result"]["object"], "chat.completion", "{job}");
    }
    let costs = cost_of(&ended);
    assert!(costs > 0);
    let bill = stack.backup_bill().await;
    assert_eq!(bill["by_tier"]["batch"]["cost_micros"], costs, "{bill}");
    assert_eq!(bill["total_cost_micros"], costs, "{bill}");
    assert_eq!(bill["by_tier"]["standard"]["requests"], 0, "{bill}");
}

#[tokio::test]
async fn a_job_answered_by_the_cache_while_it_collected_gets_no_line() {
    let (stack, client) = acme_stack(batches(
        "min_deadline_s = 600\nrealtime_margin_s = 60\ncollect_s = 8",
        &["--batch-turnaround-ms=500"],
    ))
    .await;
    let body = json!({"model": "mock-small", "temperature": 0, "max_tokens": 6,
        "messages": [{"role": "user", "content": prompt(0)}]});
    let waits = client
        .submit(&json!({"body": body, "deadline_s": 3600}))
        .await;
    until_waiting(&client, &waits).await;
    // The same request from a caller who cannot wait: answered in real
    // time (it does not join a job in a batch), and cached.
    let now = client
        .wait(&client.submit(&json!({"body": body})).await, 30)
        .await;
    assert_answered(0, &now, "realtime");

    // The waiting job is answered from the cache before its batch is sent.
    let waited = client.wait(&waits, 30).await;
    assert_answered(0, &waited, "cache");
    assert_eq!(waited["cache"]["source_job"], now["id"], "{waited}");
    assert_eq!(waited["cost_micros"], 0, "{waited}");
    let stats = stack.mock_stats().await;
    assert_eq!(stats["batches"]["lines"]["total"], 0, "no line: {stats}");
    assert_eq!(stats["requests"], 1, "{stats}");
    assert_eq!(
        reported_cost(&client).await,
        now["cost_micros"].as_u64().unwrap()
    );
}
