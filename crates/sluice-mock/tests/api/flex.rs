//! `service_tier: "flex"` on the OpenAI routes: half price, slower, and
//! sometimes a free 429 `resource_unavailable` that spares the rate limits.

use std::time::Duration;

use serde_json::{json, Value};
use sluice_mock::{FlexOptions, LatencyOptions, MockOptions, Price, RateLimits, Ratio, Tier};
use tokio::time::Instant;

use crate::helpers::{openai_cost, TestMock};

fn chat(tier: Option<&str>) -> Value {
    let mut body = json!({"model": "m", "max_tokens": 10,
        "messages": [{"role": "user", "content": "thirty-two bytes: eight tokens.."}]});
    if let Some(tier) = tier {
        body["service_tier"] = json!(tier);
    }
    body
}

#[tokio::test(start_paused = true)]
async fn flex_is_billed_at_half_price_and_answers_slower() {
    let mock = TestMock::with(MockOptions {
        latency: LatencyOptions {
            fixed_ms: 100,
            per_completion_token_us: 20_000,
            ..LatencyOptions::default()
        },
        ..MockOptions::default()
    });

    let start = Instant::now();
    let standard = mock.post_full("/v1/chat/completions", &chat(None)).await;
    let standard_time = start.elapsed();
    let start = Instant::now();
    let flex = mock
        .post_full("/v1/chat/completions", &chat(Some("flex")))
        .await;
    let flex_time = start.elapsed();

    assert_eq!(
        (standard.status.as_u16(), flex.status.as_u16()),
        (200, 200),
        "{}",
        flex.body
    );
    assert_eq!(standard_time, Duration::from_millis(300));
    assert_eq!(flex_time, 3 * standard_time);
    assert_eq!(standard.body["service_tier"], "default");
    assert_eq!(flex.body["service_tier"], "flex");
    // The same answer, at half the price (each figure rounded up).
    assert_eq!(flex.body["choices"], standard.body["choices"]);
    assert_eq!(standard.cost(), openai_cost(&Price::DEFAULT, 8, 0, 10));
    assert_eq!(flex.cost(), openai_cost(&Price::DEFAULT.half(), 8, 0, 10));
    assert!(flex.cost() < standard.cost());

    let bill = mock.server.bill();
    assert_eq!(bill.tier(Tier::Flex).requests, 1);
    assert_eq!(bill.tier(Tier::Flex).cost_micros, flex.cost());
    assert_eq!(bill.tier(Tier::Standard).cost_micros, standard.cost());
    assert_eq!(bill.model("m").tier(Tier::Flex).completion_tokens, 10);
    assert_eq!(bill.total_cost_micros, flex.cost() + standard.cost());
}

#[tokio::test]
async fn every_openai_route_takes_flex_at_its_flex_price() {
    let flex_price = Price {
        input: 3,
        cached_input: 1,
        output: 7,
    };
    let mut options = MockOptions::default();
    options.prices.set_at("m", Tier::Flex, flex_price);
    let mock = TestMock::with(options);
    let prompt = "x".repeat(4_000); // 1000 tokens
    for (path, body, completion) in [
        (
            "/v1/completions",
            json!({"model": "m", "prompt": prompt, "max_tokens": 100, "service_tier": "flex"}),
            100,
        ),
        (
            "/v1/embeddings",
            json!({"model": "m", "input": prompt, "service_tier": "flex"}),
            0,
        ),
    ] {
        let reply = mock.post_full(path, &body).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body["service_tier"], "flex");
        assert_eq!(reply.cost(), openai_cost(&flex_price, 1_000, 0, completion));
    }
    assert_eq!(mock.server.bill().tier(Tier::Flex).requests, 2);
}

#[tokio::test]
async fn a_service_tier_other_than_auto_default_or_flex_is_a_400() {
    let mock = TestMock::new();
    let reply = mock
        .post_full("/v1/chat/completions", &chat(Some("priority")))
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.body["error"]["param"], "service_tier");
    assert_eq!(reply.body["error"]["type"], "invalid_request_error");
    for tier in ["auto", "default"] {
        let reply = mock
            .post_full("/v1/chat/completions", &chat(Some(tier)))
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body["service_tier"], "default");
    }
    assert_eq!(mock.server.bill().tier(Tier::Standard).requests, 2);
}

fn unavailable(share: Ratio, requests_per_minute: Option<u64>) -> MockOptions {
    MockOptions {
        seed: 11,
        flex: FlexOptions {
            unavailable: share,
            ..FlexOptions::default()
        },
        rate_limits: RateLimits {
            requests_per_minute,
            ..RateLimits::default()
        },
        ..MockOptions::default()
    }
}

#[tokio::test]
async fn unavailable_flex_is_a_free_429_that_spares_the_rate_limits() {
    let mock = TestMock::with(unavailable(Ratio::ONE, Some(1)));
    for _ in 0..3 {
        let reply = mock
            .post_full("/v1/chat/completions", &chat(Some("flex")))
            .await;
        assert_eq!(reply.status, 429);
        let error = &reply.body["error"];
        assert_eq!(error["code"], "resource_unavailable", "{error}");
        assert!(error["message"]
            .as_str()
            .unwrap()
            .starts_with("Resource Unavailable"));
        assert_eq!(error["param"], Value::Null);
        assert!(reply.headers.get("retry-after").is_none());
    }
    // The one request a minute is still there for a standard call.
    let reply = mock.post_full("/v1/chat/completions", &chat(None)).await;
    assert_eq!(reply.status, 200);

    let bill = mock.server.bill();
    assert_eq!(bill.refusals.flex_unavailable, 3);
    assert_eq!(bill.refusals.rate_limited, 0);
    assert_eq!(bill.tier(Tier::Flex).requests, 0);
    assert_eq!(bill.total_cost_micros, reply.cost());
    let stats = mock.server.stats();
    assert_eq!(stats.refusals.flex_unavailable, 3);
    assert_eq!(stats.total.requests, 1);
}

#[tokio::test]
async fn unavailability_is_seeded_and_leaves_standard_requests_alone() {
    async fn statuses(mock: &TestMock) -> Vec<u16> {
        let mut out = Vec::new();
        for i in 0..200 {
            let tier = if i % 2 == 0 { Some("flex") } else { None };
            let reply = mock.post_full("/v1/chat/completions", &chat(tier)).await;
            out.push(reply.status.as_u16());
        }
        out
    }
    let mock = TestMock::with(unavailable(Ratio::percent(50), None));
    let seen = statuses(&mock).await;
    let refused = seen.iter().filter(|&&s| s == 429).count();
    assert!((25..=75).contains(&refused), "{refused} of 100 flex");
    assert!(seen.iter().skip(1).step_by(2).all(|&s| s == 200));
    let twin = TestMock::with(unavailable(Ratio::percent(50), None));
    assert_eq!(statuses(&twin).await, seen);
    mock.post("/mock/reset", &json!({})).await;
    assert_eq!(statuses(&mock).await, seen);
}
