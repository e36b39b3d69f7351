//! Every call a provider billed is on the ledger, including the ones a
//! crash repeated: workers killed mid-flight leave calls the provider bills
//! without an answer, and the usage report, the budget and `sluice admin
//! reconcile` count them; a worker drained by SIGTERM repeats none.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_e2e::{acme_stack, Client, Price, Stack, StackOptions, ODD_PRICE};

/// Two workers on a mock that answers chat after `latency_ms` and bills at
/// odd prices.
async fn slow_priced_stack(latency_ms: u64) -> (Stack, Client) {
    priced_stack(2, latency_ms, "").await
}

/// `workers` workers on a mock that answers chat after `latency_ms` and
/// bills at odd prices, with `provider_toml` in its provider's table.
async fn priced_stack(workers: usize, latency_ms: u64, provider_toml: &str) -> (Stack, Client) {
    let prices = [ODD_PRICE];
    acme_stack(StackOptions {
        workers,
        mock_args: ["--latency-fixed-ms".to_owned(), latency_ms.to_string()]
            .into_iter()
            .chain(prices.iter().flat_map(Price::mock_flags))
            .collect(),
        provider_toml: provider_toml.into(),
        extra_toml: prices.iter().map(|p| p.toml("mock")).collect(),
        ..StackOptions::default()
    })
    .await
}

/// Submits `jobs` chat jobs of `max_tokens` each; their ids.
async fn submit_chats(client: &Client, jobs: usize, max_tokens: u64, tag: &str) -> Vec<String> {
    let bodies = (0..jobs)
        .map(|i| {
            json!({"body": {"model": "mock-small", "max_tokens": max_tokens, "messages": [
            {"role": "user", "content": format!("{tag} question {i}")}]}})
        })
        .collect();
    client.submit_batch(bodies).await
}

/// Asserts the provider was called once per job and the usage report
/// charges exactly its bill, with no repeated call; the report and the bill.
async fn charged_once(stack: &Stack, client: &Client, jobs: u64) -> (Value, u64) {
    assert_eq!(prompts(stack).await, jobs, "a call was repeated");
    let bill = stack.mock_bill().await["total_cost_micros"]
        .as_u64()
        .unwrap();
    let usage = usage_once(client, jobs, 0).await;
    let total = &usage["total"];
    assert_eq!(total["repeated_calls"], 0, "{usage}");
    assert_eq!(total["estimated_micros"], 0, "{usage}");
    assert_eq!(total["cost_micros"], bill, "{usage}");
    (usage, bill)
}

/// Prompts the mock received (and billed).
async fn prompts(stack: &Stack) -> u64 {
    stack.mock_stats().await["prompts"].as_u64().unwrap()
}

/// Waits until the mock has received `more` prompts beyond what it had.
async fn wait_for_more_prompts(stack: &Stack, more: u64, deadline: Instant) {
    let seen = prompts(stack).await;
    while prompts(stack).await < seen + more {
        assert!(Instant::now() < deadline, "no calls in flight");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The scenario of issue 20, smaller: chat jobs at a priced model with a
/// slow provider, two workers each killed once while calls are in flight
/// and replaced. Every call the provider billed is on the ledger: the
/// usage report's repeated calls cover every prompt the mock received
/// beyond one per job, and its exact plus estimated cost brackets the bill
/// (at least the bill, since the mock answers every call with `max_tokens`,
/// and within 2% of it). The reconciliation says the same.
#[tokio::test]
async fn calls_repeated_after_workers_die_are_on_the_ledger_and_the_usage_meets_the_bill() {
    let (mut stack, client) = slow_priced_stack(1500).await;
    let jobs = 300;
    let ids = submit_chats(&client, jobs, 6, "repeated call").await;
    // Each worker, in turn, is killed while its calls are in flight.
    for _ in 0..2 {
        let deadline = Instant::now() + Duration::from_secs(30);
        wait_for_more_prompts(&stack, 10, deadline).await;
        // Mid-flight: the calls sent are at the provider, their answers
        // not back, and none is being sent (no new prompt for 300 ms). A
        // call marked sent but not yet at the provider when its worker dies
        // is charged without having been made: that window is the error
        // this test would otherwise measure (the note of issue 20).
        let mut last = prompts(&stack).await;
        let mut still = Instant::now();
        while still.elapsed() < Duration::from_millis(300) {
            assert!(Instant::now() < deadline, "the calls never paused");
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = prompts(&stack).await;
            if now != last {
                (last, still) = (now, Instant::now());
            }
        }
        stack.workers.remove(0).kill().await;
        stack.start_worker().await;
    }
    let ended = client.wait_all(&ids, 120).await;
    for job in &ended {
        assert_eq!(job["status"], "succeeded", "{job}");
    }
    let received = prompts(&stack).await;
    let jobs = jobs as u64;
    assert!(received > jobs, "the kills repeated no call");
    let bill = stack.mock_bill().await["total_cost_micros"]
        .as_u64()
        .unwrap();
    // Every billed call is on the ledger.
    let extra = received - jobs;
    let usage = usage_once(&client, jobs, extra).await;
    let total = &usage["total"];
    let charged =
        total["cost_micros"].as_u64().unwrap() + total["estimated_micros"].as_u64().unwrap();
    eprintln!(
        "{received} calls for {jobs} jobs, {} repeated calls on the ledger; billed {bill} µ$, \
         charged {charged} µ$ ({} exact, {} estimated)",
        total["repeated_calls"], total["cost_micros"], total["estimated_micros"]
    );
    assert!(
        charged >= bill,
        "charged {charged} < billed {bill}: {usage}"
    );
    assert!(
        (charged - bill) * 50 <= bill,
        "charged {charged} is more than 2% over billed {bill}: {usage}"
    );
    let budget = client.get("/v1/budget").await.body;
    assert_eq!(budget["spent_micros"], charged, "{budget}");
    // The reconciliation says the same, against the provider's Costs API.
    let config = stack.config_arg();
    let report = stack
        .sluice(&[
            "admin",
            "reconcile",
            "--provider",
            "mock",
            "--config",
            &config,
        ])
        .await;
    eprintln!("{report}");
    let expected = format!(
        "total: ledger {charged}, billed {bill}, difference {}",
        charged - bill
    );
    let last_line = report.lines().last().unwrap_or_default();
    assert!(last_line.starts_with(&expected), "{report}");
}

/// A worker stopped with SIGTERM mid-flight drains: the calls it made are
/// answered, stored and acked, so no call is repeated and nothing beyond
/// the jobs' own rows is charged.
#[tokio::test]
async fn a_worker_drained_by_sigterm_leaves_no_repeated_call() {
    let (mut stack, client) = slow_priced_stack(1000).await;
    let jobs = 200;
    let ids = submit_chats(&client, jobs, 5, "drained").await;
    wait_for_more_prompts(&stack, 10, Instant::now() + Duration::from_secs(30)).await;
    let status = stack
        .workers
        .remove(0)
        .terminate(Duration::from_secs(60))
        .await;
    assert!(status.success(), "the worker drained and exited: {status}");
    for job in client.wait_all(&ids, 120).await {
        assert_eq!(job["status"], "succeeded", "{job}");
    }
    charged_once(&stack, &client, jobs as u64).await;
}

/// Calls the worker's router gave up on after their request reached the
/// provider (its first answers stall past the worker's one-second
/// timeout) were billed all the same: each is on the ledger as a repeated
/// call, its prompt exact and its completion estimated from the answer
/// the job got, so the usage report's exact part stays within the bill
/// and exact plus estimated meets it.
#[tokio::test]
async fn calls_abandoned_after_a_client_side_timeout_are_on_the_ledger() {
    let price = ODD_PRICE;
    let (stack, client) = acme_stack(StackOptions {
        // The primary stalls every answer for 3 s; the worker waits 1 s.
        mock_args: ["--stall-rate", "1", "--stall-ms", "3000"]
            .map(str::to_owned)
            .into_iter()
            .chain(price.mock_flags())
            .collect(),
        provider_toml: "timeout_s = 1".into(),
        backup_mock: Some(price.mock_flags().to_vec()),
        worker_toml: "provider_attempts = 2\nprovider_backoff_ms = 50".into(),
        extra_toml: sluice_e2e::backup_route(
            "backup",
            "openai",
            "mock-ha",
            &["mock", "backup"],
            "upstream_model = \"mock-small\"",
        ) + &price.toml("mock")
            + &price.toml("backup"),
        ..StackOptions::default()
    })
    .await;
    let jobs = 4;
    let ids = client
        .submit_batch(
            (0..jobs)
                .map(|i| {
                    json!({"body": {"model": "mock-ha", "max_tokens": 6, "messages": [
                    {"role": "user", "content": format!("abandoned call {i}")}]}})
                })
                .collect(),
        )
        .await;
    for job in client.wait_all(&ids, 60).await {
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["provider"], "backup", "{job}");
    }
    let abandoned = prompts(&stack).await;
    assert!(abandoned >= jobs as u64, "the primary was never called");
    let bill = stack.mock_bill().await["total_cost_micros"]
        .as_u64()
        .unwrap()
        + stack.backup_bill().await["total_cost_micros"]
            .as_u64()
            .unwrap();
    let usage = usage_once(&client, jobs as u64, 0).await;
    let total = &usage["total"];
    let (exact, estimated) = (
        total["cost_micros"].as_u64().unwrap(),
        total["estimated_micros"].as_u64().unwrap(),
    );
    eprintln!(
        "{abandoned} abandoned calls for {jobs} jobs, {} repeated calls on the ledger; \
         billed {bill} µ$, charged {exact} exact + {estimated} estimated",
        total["repeated_calls"]
    );
    assert_eq!(total["repeated_calls"], abandoned, "{usage}");
    assert!(exact <= bill, "exact {exact} > billed {bill}: {usage}");
    assert!(
        exact + estimated >= bill,
        "charged {} < billed {bill}: {usage}",
        exact + estimated
    );
    assert!(
        (exact + estimated - bill) * 50 <= bill,
        "charged more than 2% over the bill: {usage}"
    );
}

/// The usage report once its total counts `jobs` jobs and at least
/// `repeated` repeated calls (a worker writes them with the jobs' own rows,
/// before it acks).
async fn usage_once(client: &Client, jobs: u64, repeated: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let usage = client.get("/v1/usage").await.body;
        let total = &usage["total"];
        if total["jobs"] == jobs && total["repeated_calls"].as_u64().unwrap_or(0) >= repeated {
            return usage;
        }
        assert!(
            Instant::now() < deadline,
            "not {jobs} jobs and {repeated} repeated calls on the ledger: {usage}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many of `ids` are in each status.
async fn statuses(client: &Client, ids: &[String]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for id in ids {
        let status = client.job(id).await.body["status"]
            .as_str()
            .unwrap()
            .to_owned();
        *counts.entry(status).or_default() += 1;
    }
    counts
}

/// The ledger's rows for jobs: each job's own row (attempt 0, call 0) once,
/// and how many rows of repeated calls there are.
async fn ledger_rows(stack: &Stack, jobs: usize) -> u64 {
    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(&stack.database_url())
        .await
        .unwrap();
    let rows: Vec<(String, i32, i32)> =
        sqlx::query_as("SELECT job_id, attempt, call_index FROM usage_ledger")
            .fetch_all(&mut db)
            .await
            .unwrap();
    let mut own: HashMap<&str, usize> = HashMap::new();
    for (job, _, _) in rows.iter().filter(|(_, a, c)| (*a, *c) == (0, 0)) {
        *own.entry(job.as_str()).or_default() += 1;
    }
    assert_eq!(own.len(), jobs, "not every job has its own row: {rows:?}");
    assert!(own.values().all(|n| *n == 1), "{rows:?}");
    (rows.len() - jobs) as u64
}

/// Jobs a worker had started but not yet called when it was killed (their
/// calls waited for room in the provider's budget, which lets `allowed`
/// calls out per 20 s) are called once by the next worker, and charged
/// once: no call was sent for them, so none is orphaned. The jobs the dead
/// worker had answered but not acked are not called again either (their
/// rows come from their stored ends). The provider received one prompt per
/// job, and the usage report's exact part is its bill to the micro-dollar.
#[tokio::test]
async fn jobs_whose_worker_died_before_their_call_are_called_and_charged_once() {
    let allowed = 10;
    let (mut stack, client) = priced_stack(
        1,
        50,
        &format!("requests_per_minute = {allowed}\nlimits_window_ms = 20000"),
    )
    .await;
    let jobs = 20;
    let ids = submit_chats(&client, jobs, 6, "before the call").await;
    // The budget's calls answered and ended; other jobs started, their
    // calls waiting for room (no sent mark yet).
    let deadline = Instant::now() + Duration::from_secs(10);
    let counts = loop {
        let counts = statuses(&client, &ids).await;
        if counts.get("succeeded") == Some(&allowed) && counts.get("running") > Some(&0) {
            break counts;
        }
        assert!(Instant::now() < deadline, "{counts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(prompts(&stack).await, allowed as u64, "{counts:?}");
    stack.workers.remove(0).kill().await;
    assert_eq!(
        prompts(&stack).await,
        allowed as u64,
        "a call left past the budget before the kill"
    );
    eprintln!("killed with {counts:?}");
    stack.start_worker().await;
    for job in client.wait_all(&ids, 120).await {
        assert_eq!(job["status"], "succeeded", "{job}");
    }
    let (_, bill) = charged_once(&stack, &client, jobs as u64).await;
    let budget = client.get("/v1/budget").await.body;
    assert_eq!(budget["spent_micros"], bill, "{budget}");
    assert_eq!(ledger_rows(&stack, ids.len()).await, 0);
}

/// With one call in flight at a time (`max_concurrency = 1`), a batch's
/// jobs wait for the connection slot before their attempts are marked
/// sent. A worker killed with one call at the provider and the others
/// waiting leaves that one call orphaned, and only it: the usage report's
/// repeated calls are exactly the prompts the provider received beyond one
/// per job, every job has its own row once, and exact plus estimated meets
/// the bill. The orphan was younger than the provider timeout: its job is
/// called again at once, and the orphan counted (the choice of "fewer
/// repeats" in issue 20).
#[tokio::test]
async fn jobs_waiting_for_a_connection_slot_when_their_worker_dies_are_not_charged_twice() {
    let (mut stack, client) = priced_stack(1, 1000, "max_concurrency = 1").await;
    let jobs = 8;
    let ids = submit_chats(&client, jobs, 6, "waiting for a slot").await;
    // Just after the second call reached the provider: the first answered,
    // the second in flight, the rest started and waiting for the slot.
    let deadline = Instant::now() + Duration::from_secs(30);
    let counts = loop {
        if prompts(&stack).await >= 2 {
            let counts = statuses(&client, &ids).await;
            if counts.get("succeeded") == Some(&1) {
                break counts;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no second call after a first answer"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    stack.workers.remove(0).kill().await;
    let at_kill = prompts(&stack).await;
    assert_eq!(at_kill, 2, "a third call left before the kill");
    eprintln!("killed with {counts:?}");
    assert!(
        counts.get("running") >= Some(&2),
        "no job was waiting for the slot: {counts:?}"
    );
    stack.start_worker().await;
    for job in client.wait_all(&ids, 120).await {
        assert_eq!(job["status"], "succeeded", "{job}");
    }
    let jobs = jobs as u64;
    let received = prompts(&stack).await;
    let extra = received - jobs;
    assert_eq!(extra, 1, "only the call in flight is repeated");
    let bill = stack.mock_bill().await["total_cost_micros"]
        .as_u64()
        .unwrap();
    let usage = usage_once(&client, jobs, extra).await;
    let total = &usage["total"];
    assert_eq!(total["repeated_calls"], extra, "{usage}");
    let (exact, estimated) = (
        total["cost_micros"].as_u64().unwrap(),
        total["estimated_micros"].as_u64().unwrap(),
    );
    eprintln!(
        "{received} calls for {jobs} jobs; billed {bill} µ$, charged {exact} exact + {estimated} estimated"
    );
    assert!(exact <= bill, "exact {exact} > billed {bill}: {usage}");
    assert!(exact + estimated >= bill, "{usage}");
    assert!((exact + estimated - bill) * 50 <= bill, "{usage}");
    assert_eq!(ledger_rows(&stack, ids.len()).await, extra);
}
