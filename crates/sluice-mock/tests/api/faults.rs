//! Fault injection (seeded 5xx, stalls) and the down switch; none of it is
//! billed.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;
use sluice_mock::{Faults, LatencyOptions, MockOptions, Ratio};
use tokio::time::Instant;

use crate::helpers::TestMock;

fn faulty(seed: u64, faults: Faults) -> TestMock {
    TestMock::with(MockOptions {
        seed,
        faults,
        ..MockOptions::default()
    })
}

fn request(i: usize) -> serde_json::Value {
    json!({"model": "m", "prompt": format!("prompt {i}"), "max_tokens": 4})
}

/// The statuses of `n` requests in order.
async fn statuses(mock: &TestMock, n: usize) -> Vec<StatusCode> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(mock.post_full("/v1/completions", &request(i)).await.status);
    }
    out
}

#[tokio::test]
async fn the_error_rate_is_roughly_honoured_reproducible_and_not_billed() {
    let faults = Faults {
        error_rate: Ratio::percent(20),
        ..Faults::default()
    };
    let mock = faulty(7, faults.clone());
    let seen = statuses(&mock, 1_000).await;
    let errors = seen.iter().filter(|s| s.is_server_error()).count() as u64;
    assert!((150..=250).contains(&errors), "{errors} errors of 1000");
    assert!(seen.contains(&StatusCode::INTERNAL_SERVER_ERROR));
    assert!(seen.contains(&StatusCode::SERVICE_UNAVAILABLE));
    assert!(seen
        .iter()
        .all(|s| *s == StatusCode::OK || s.is_server_error()));

    let bill = mock.server.bill();
    assert_eq!(bill.refusals.injected_errors, errors);
    assert_eq!(bill.model("m").charges.requests, 1_000 - errors);
    let stats = mock.server.stats();
    assert_eq!(stats.refusals.injected_errors, errors);
    assert_eq!(stats.total.requests, 1_000 - errors);

    // The same seed gives the same faults; a reset starts the sequence over.
    let twin = faulty(7, faults.clone());
    assert_eq!(statuses(&twin, 1_000).await, seen);
    mock.post("/mock/reset", &json!({})).await;
    assert_eq!(statuses(&mock, 100).await, seen[..100]);
    let other = faulty(8, faults);
    assert_ne!(statuses(&other, 100).await, seen[..100]);
}

#[tokio::test]
async fn injected_errors_have_the_openai_and_anthropic_shapes() {
    let mock = faulty(
        1,
        Faults {
            error_rate: Ratio::ONE,
            ..Faults::default()
        },
    );
    let reply = mock.post_full("/v1/completions", &request(0)).await;
    assert!(reply.status.is_server_error());
    assert_eq!(reply.body["error"]["type"], "server_error");
    let body =
        json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let reply = mock.messages(&body).await;
    assert!(reply.status.is_server_error());
    assert_eq!(reply.body["type"], "error");
    let kind = reply.body["error"]["type"].as_str().unwrap();
    assert!(kind == "api_error" || kind == "overloaded_error", "{kind}");
    assert_eq!(mock.server.bill().total_cost_micros, 0);
}

#[tokio::test(start_paused = true)]
async fn stalls_delay_the_answer_and_are_still_billed() {
    let mock = TestMock::with(MockOptions {
        latency: LatencyOptions {
            fixed_ms: 100,
            ..LatencyOptions::default()
        },
        faults: Faults {
            stall_rate: Ratio::ONE,
            stall_ms: 30_000,
            ..Faults::default()
        },
        ..MockOptions::default()
    });
    let start = Instant::now();
    let reply = mock.post_full("/v1/completions", &request(0)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(start.elapsed(), Duration::from_millis(30_100));
    assert_eq!(mock.server.stats().stalls, 1);
    assert_eq!(mock.server.bill().model("m").charges.requests, 1);

    // A caller with a 5 s timeout gives up; the stall outlasts it.
    let timed = tokio::time::timeout(
        Duration::from_secs(5),
        mock.post_full("/v1/completions", &request(1)),
    )
    .await;
    assert!(timed.is_err());
    // It was billed all the same, as a provider bills a request it took.
    assert_eq!(mock.server.bill().model("m").charges.requests, 2);
}

#[tokio::test]
async fn down_answers_503_everywhere_until_up() {
    let mock = TestMock::new();
    let (status, _) = mock.post("/mock/admin/down", &json!({})).await;
    assert!(status.is_success());
    assert!(mock.server.is_down());

    let reply = mock.post_full("/v1/completions", &request(0)).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body["error"]["code"], "mock_down");
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "q"}]});
    assert_eq!(
        mock.post_full("/v1/chat/completions", &chat).await.status,
        503
    );
    // Even an invalid request: the provider is not there to read it.
    assert_eq!(
        mock.post_full("/v1/embeddings", &json!({})).await.status,
        503
    );
    let body =
        json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let reply = mock.messages(&body).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.body["error"]["type"], "overloaded_error");
    // The control routes still answer.
    let (status, _) = mock.get("/mock/bill").await;
    assert_eq!(status, 200);
    let (status, _) = mock.get("/healthz").await;
    assert_eq!(status, 200);

    let (status, _) = mock.post("/mock/admin/up", &json!({})).await;
    assert!(status.is_success());
    assert_eq!(
        mock.post_full("/v1/completions", &request(0)).await.status,
        200
    );

    let bill = mock.server.bill();
    assert_eq!(bill.refusals.down_rejections, 4);
    assert_eq!(bill.model("m").charges.requests, 1);
    assert_eq!(mock.server.stats().refusals.down_rejections, 4);
    assert_eq!(mock.server.stats().total.requests, 1);
}
