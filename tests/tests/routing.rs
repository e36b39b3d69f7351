//! Routing: a dead primary provider is skipped through its circuit
//! breaker, and every job succeeds through the fallback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use sluice_e2e::{Stack, StackOptions};

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
    let stack = Stack::start(StackOptions {
        backup_mock: Some(Vec::new()),
        worker_toml:
            "max_wait_ms = { interactive = 5, standard = 20, batch = 50 }\nprovider_attempts = 2"
                .into(),
        extra_toml: r#"
[[providers]]
name = "backup"
kind = "openai"
base_url = "{backup_url}/v1"

[[models]]
name = "mock-ha"
providers = ["mock", "backup"]
"#
        .into(),
        ..StackOptions::default()
    })
    .await;
    let client = stack.tenant("acme").await;
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
