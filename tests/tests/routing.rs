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
