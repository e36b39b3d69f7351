//! Rate limits: 429 with `Retry-After` and `x-ratelimit-*`, not billed,
//! and served again once the window has slid past.

use std::time::Duration;

use serde_json::json;
use sluice_mock::{MockOptions, RateLimits};

use crate::helpers::TestMock;

fn limited(rpm: Option<u64>, tpm: Option<u64>) -> TestMock {
    TestMock::with(MockOptions {
        rate_limits: RateLimits {
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
            ..RateLimits::default()
        },
        ..MockOptions::default()
    })
}

fn completion(prompt: &str, max_tokens: u64) -> serde_json::Value {
    json!({"model": "m", "prompt": prompt, "max_tokens": max_tokens})
}

#[tokio::test(start_paused = true)]
async fn requests_past_the_limit_get_429_until_the_window_slides() {
    let mock = limited(Some(3), None);
    for i in 0..3u64 {
        let reply = mock.post_full("/v1/completions", &completion("x", 4)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.header_u64("x-ratelimit-limit-requests"), 3);
        assert_eq!(reply.header_u64("x-ratelimit-remaining-requests"), 2 - i);
        tokio::time::advance(Duration::from_secs(10)).await;
    }
    // Now at 30 s; the first request leaves the window at 60 s.
    let refused = mock.post_full("/v1/completions", &completion("x", 4)).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.header_u64("retry-after"), 30);
    assert_eq!(refused.header_u64("retry-after-ms"), 30_000);
    assert_eq!(refused.header_u64("x-ratelimit-remaining-requests"), 0);
    assert_eq!(refused.body["error"]["type"], "requests");
    assert_eq!(refused.body["error"]["code"], "rate_limit_exceeded");
    assert!(refused.headers.get("x-mock-cost-micros").is_none());

    // Another model has its own window.
    let other = json!({"model": "n", "prompt": "x", "max_tokens": 4});
    assert_eq!(mock.post_full("/v1/completions", &other).await.status, 200);

    tokio::time::advance(Duration::from_secs(29)).await;
    let still = mock.post_full("/v1/completions", &completion("x", 4)).await;
    assert_eq!(still.status, 429);
    assert_eq!(still.header_u64("retry-after"), 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    let again = mock.post_full("/v1/completions", &completion("x", 4)).await;
    assert_eq!(again.status, 200, "{}", again.body);

    let bill = mock.server.bill();
    assert_eq!(bill.refusals.rate_limited, 2);
    assert_eq!(bill.model("m").charges.requests, 4);
    assert_eq!(bill.model("n").charges.requests, 1);
    let stats = mock.server.stats();
    assert_eq!(stats.refusals.rate_limited, 2);
    assert_eq!(stats.total.requests, 5);
}

#[tokio::test(start_paused = true)]
async fn tokens_count_prompt_plus_max_tokens() {
    // Each request: 25 prompt tokens + 25 max_tokens = 50.
    let mock = limited(None, Some(120));
    let prompt = "p".repeat(100);
    for _ in 0..2 {
        let reply = mock
            .post_full("/v1/completions", &completion(&prompt, 25))
            .await;
        assert_eq!(reply.status, 200);
    }
    let refused = mock
        .post_full("/v1/completions", &completion(&prompt, 25))
        .await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.body["error"]["type"], "tokens");
    assert_eq!(refused.header_u64("x-ratelimit-remaining-tokens"), 20);
    assert_eq!(refused.header_u64("retry-after"), 60);
    // A smaller request still fits.
    let small = mock
        .post_full("/v1/completions", &completion("p", 10))
        .await;
    assert_eq!(small.status, 200);
    tokio::time::advance(Duration::from_secs(60)).await;
    let again = mock
        .post_full("/v1/completions", &completion(&prompt, 25))
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(mock.server.bill().refusals.rate_limited, 1);
}

#[tokio::test]
async fn the_anthropic_route_answers_429_in_its_shape() {
    let mock = limited(Some(1), None);
    let body =
        json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(mock.messages(&body).await.status, 200);
    let refused = mock.messages(&body).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.body["type"], "error");
    assert_eq!(refused.body["error"]["type"], "rate_limit_error");
    assert!(refused.header_u64("retry-after") >= 1);
}

#[tokio::test]
async fn no_limits_no_headers() {
    let mock = TestMock::new();
    let reply = mock.post_full("/v1/completions", &completion("x", 4)).await;
    assert!(reply.headers.get("x-ratelimit-limit-requests").is_none());
    assert!(reply.headers.get("retry-after").is_none());
}
