//! Tenants' rate limits: jobs and estimated tokens per minute, refused
//! with 429 and the `Retry-After` and `RateLimit-*` headers.

use serde_json::json;
use sluice_store::tenants::TenantStore;

use crate::support::{cacheable, chat, TestApp};

/// The app, its tenant limited to `rpm` jobs per minute before its key is
/// first used (a checked key is trusted for a few seconds).
async fn limited(rpm: u64, worker: bool) -> TestApp {
    let builder = TestApp::builder();
    let app = if worker { builder.worker() } else { builder }
        .spawn()
        .await;
    app.tenants
        .set_limits(&app.tenant_name, Some(rpm), None)
        .await
        .unwrap();
    app
}

#[tokio::test]
async fn jobs_over_the_tenants_limit_are_refused_with_when_to_come_back() {
    let app = limited(2, false).await;
    let first = app.submit(&chat("one")).await;
    first.expect(202);
    assert_eq!(first.header_u64("ratelimit-limit"), 2);
    assert_eq!(first.header_u64("ratelimit-remaining"), 1);
    let second = app.submit(&chat("two")).await;
    second.expect(202);
    assert_eq!(second.header_u64("ratelimit-remaining"), 0);

    let refused = app.submit(&chat("three")).await;
    refused.expect_problem(429, "rate-limited");
    // The window is 61 one-second slots: a use leaves it within 61 s.
    let retry_after = refused.header_u64("retry-after");
    assert!((1..=61).contains(&retry_after), "{refused:?}");
    assert_eq!(refused.header_u64("ratelimit-limit"), 2);
    assert_eq!(refused.header_u64("ratelimit-remaining"), 0);
    assert!(refused.header_u64("ratelimit-reset") <= 61);
    assert!(
        refused.detail().contains("2 jobs per minute"),
        "{refused:?}"
    );
    assert_eq!(app.queued_jobs().await, 2, "the refused job was not queued");

    // Another tenant's budget is its own.
    let other = app.tenant("globex").await;
    let theirs = other.submit(&chat("mine")).await;
    theirs.expect(202);
    assert!(theirs.headers.get("ratelimit-limit").is_none());
}

#[tokio::test]
async fn the_configured_default_limits_tokens() {
    let app = TestApp::builder()
        .toml("[tenants]\ntokens_per_minute = 100")
        .spawn()
        .await;
    let job = |text: &str| {
        json!({"body": {"model": "mock-small", "max_tokens": 60,
                        "messages": [{"role": "user", "content": text}]}})
    };
    let first = app.submit(&job("a")).await;
    first.expect(202);
    assert_eq!(first.header_u64("ratelimit-limit"), 100);
    assert!(first.header_u64("ratelimit-remaining") <= 40, "{first:?}");
    let refused = app.submit(&job("b")).await;
    refused.expect_problem(429, "rate-limited");
    assert_eq!(refused.header_u64("ratelimit-limit"), 100);
    assert!(
        refused.detail().contains("100 tokens per minute"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_batch_counts_every_job_and_is_refused_whole() {
    let app = limited(3, false).await;
    let reply = app.batch(&[chat("a"), chat("b")]).await;
    reply.expect(202);
    assert_eq!(reply.header_u64("ratelimit-remaining"), 1);
    let refused = app.batch(&[chat("c"), chat("d")]).await;
    refused.expect_problem(429, "rate-limited");
    assert!(refused.headers.contains_key("retry-after"));
    let too_big = app
        .batch(&[chat("e"), chat("f"), chat("g"), chat("h")])
        .await;
    too_big.expect_problem(429, "rate-limited");
    assert!(
        too_big.detail().contains("submit fewer at a time"),
        "{too_big:?}"
    );
    assert_eq!(app.queued_jobs().await, 2, "only the first batch");
}

#[tokio::test]
async fn the_openai_compatible_routes_are_limited_too() {
    let app = limited(1, false).await;
    app.submit(&chat("uses the minute")).await.expect(202);
    let reply = app
        .post(
            "/v1/chat/completions",
            &json!({"model": "mock-small", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    reply.expect_openai_error(429, "requests", Some("rate_limit_exceeded"));
    assert!(reply.headers.contains_key("retry-after"));
    assert!(reply.headers.contains_key("ratelimit-reset"));
}

#[tokio::test]
async fn cache_hits_do_not_count_against_the_limit() {
    let app = limited(2, true).await;
    let id = app.submit_ok(&cacheable("popular")).await;
    app.wait(&id).await;
    for _ in 0..3 {
        app.submit(&cacheable("popular")).await.expect(200);
    }
    app.submit(&chat("second job")).await.expect(202);
    app.submit(&chat("third job"))
        .await
        .expect_problem(429, "rate-limited");
}
