//! Routing: a dead primary provider is skipped through its circuit
//! breaker, and every job succeeds through the fallback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use sluice_e2e::{acme_stack, backup_route, Stack, StackOptions};

async fn worker_metrics(stack: &Stack) -> String {
    let addr = stack.workers[0]
        .addr
        .clone()
        .expect("worker metrics address");
    reqwest::get(format!("{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_dead_primary_falls_back_and_its_breaker_stops_the_waste() {
    let (stack, client) = acme_stack(StackOptions {
        backup_mock: Some(Vec::new()),
        worker_toml:
            "max_wait_ms = { interactive = 5, standard = 20, batch = 50 }\nprovider_attempts = 2"
                .into(),
        extra_toml: backup_route("backup", "openai", "mock-ha", &["mock", "backup"], ""),
        ..StackOptions::default()
    })
    .await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/mock/admin/down", stack.mock_url()))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    let job = |i: usize| json!({"endpoint": "/v1/completions", "body": {"model": "mock-ha", "max_tokens": 3, "prompt": format!("p {i}")}});
    // One batch at a time: each costs the dead primary two failed calls
    // (provider_attempts = 2) until five open its breaker.
    for i in 0..3 {
        let id = client.submit(&job(i)).await;
        let done = client.wait(&id, 30).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["provider"], "backup");
    }
    let metrics = worker_metrics(&stack).await;
    assert!(
        metrics.contains(r#"sluice_provider_breaker_state{provider="mock"} 1"#),
        "the primary's breaker is open:\n{metrics}"
    );
    let wasted = stack.mock_stats().await["down_rejections"]
        .as_u64()
        .unwrap();
    assert_eq!(
        wasted, 5,
        "calls spent on the dead primary before its breaker opened"
    );

    // With the breaker open, nothing more goes to the primary.
    let ids = client.submit_batch((3..40).map(job).collect()).await;
    for done in client.wait_all(&ids, 60).await {
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["provider"], "backup");
    }
    assert_eq!(
        stack.mock_stats().await["down_rejections"]
            .as_u64()
            .unwrap(),
        wasted
    );
}

#[tokio::test]
/// Runs alone (scripts/test.sh, pass 2): on a machine busy with other
/// tests, a granted call can reach the provider seconds later than it was
/// granted, which no budget can see.
async fn serial_workers_share_the_providers_limit_instead_of_collecting_429s() {
    // The provider allows 20 requests a minute; three workers together
    // must stay under it, so 30 chat jobs (30 requests) take two windows.
    let (mut stack, client) = acme_stack(StackOptions {
        workers: 3,
        mock_args: vec!["--requests-per-minute".into(), "20".into()],
        provider_toml: "requests_per_minute = 20".into(),
        ..StackOptions::default()
    })
    .await;
    let jobs = (0..30)
        .map(|i| json!({"body": {"model": "mock-small", "max_tokens": 2, "messages": [{"role": "user", "content": format!("limited {i}")}]}}))
        .collect();
    let ids = client.submit_batch(jobs).await;
    for done in client.wait_all(&ids, 200).await {
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    let bill = stack.mock_bill().await;
    assert_eq!(
        bill["rate_limited"], 0,
        "the fleet kept under the limit: {bill}"
    );
    let waited: f64 = {
        let mut total = 0.0;
        for w in &stack.workers {
            let addr = w.addr.clone().unwrap();
            let text = reqwest::get(format!("{addr}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            total += text
                .lines()
                .filter(|l| l.starts_with("sluice_provider_budget_wait_seconds_sum"))
                .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
                .sum::<f64>();
        }
        total
    };
    assert!(
        waited > 10.0,
        "some calls waited for the next window ({waited} s)"
    );
    stack.workers.clear();
}

#[tokio::test]
/// A self-hosted server serves 4 requests at once and queues the rest, so
/// its latency climbs past 4 in flight (its knee). With a latency target
/// the worker finds that, from its ceiling of 64. Serial: the latencies it
/// steers by must be the server's, not a busy machine's.
async fn serial_a_latency_target_finds_a_self_hosted_servers_knee() {
    let (mut stack, client) = acme_stack(StackOptions {
        mock_args: vec![
            "--latency-fixed-ms".into(),
            "100".into(),
            "--max-concurrency=4".into(),
        ],
        provider_toml: "latency_target_ms = 160".into(),
        ..StackOptions::default()
    })
    .await;
    let limit = async |stack: &Stack| -> f64 {
        stack
            .worker_metrics(0)
            .await
            .lines()
            .find(|l| l.starts_with("sluice_provider_concurrency_limit{provider=\"mock\"}"))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .expect("the limit is on the worker's metrics")
    };
    assert_eq!(limit(&stack).await, 64.0, "it starts at the ceiling");
    let jobs = (0..300)
        .map(|i| json!({"body": {"model": "mock-small", "max_tokens": 2, "messages": [{"role": "user", "content": format!("knee {i}")}]}}))
        .collect();
    let ids = client.submit_batch(jobs).await;
    for done in client.wait_all(&ids, 120).await {
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    let found = limit(&stack).await;
    eprintln!("the limit settled at {found} (knee 4, ceiling 64)");
    assert!(
        (2.0..=8.0).contains(&found),
        "the limit settled near the knee of 4, not at {found}"
    );
    stack.workers.clear();
}
