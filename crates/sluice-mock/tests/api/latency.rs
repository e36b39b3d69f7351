//! The latency model through the handlers, on a paused clock: the elapsed
//! (virtual) time is exactly what the model says.

use std::num::NonZeroUsize;
use std::time::Duration;

use serde_json::json;
use sluice_mock::{count_tokens, LatencyOptions, MockOptions};
use tokio::time::Instant;

use crate::helpers::{slow_options as options, TestMock};

#[tokio::test(start_paused = true)]
async fn chat_waits_fixed_plus_prefill_plus_decode() {
    let mock = TestMock::with(options());
    let prompt = "thirty-two bytes: eight tokens.."; // 32 bytes
    assert_eq!(count_tokens(prompt), 8);
    let start = Instant::now();
    let (status, _) = mock
        .post(
            "/v1/chat/completions",
            &json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": prompt}]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(start.elapsed(), Duration::from_millis(100 + 8 + 200));
    assert_eq!(start.elapsed(), options().latency(8, 10));
}

#[tokio::test(start_paused = true)]
async fn batch_is_faster_than_one_by_one() {
    let mock = TestMock::with(options());
    let prompts = ["aaaa", "bbbbbbbb", "cccccccccccc", "dddd"]; // 1 + 2 + 3 + 1 tokens

    let start = Instant::now();
    let (status, _) = mock
        .post(
            "/v1/completions",
            &json!({"model": "m", "prompt": prompts, "max_tokens": 10}),
        )
        .await;
    assert_eq!(status, 200);
    let batch = start.elapsed();
    // Prefill is summed over the prompts, decode paid once.
    assert_eq!(batch, Duration::from_millis(100 + 7 + 200));
    let sequences = prompts.iter().map(|p| (count_tokens(p), 10));
    assert_eq!(batch, options().batch_latency(sequences));

    let start = Instant::now();
    for prompt in prompts {
        mock.post(
            "/v1/completions",
            &json!({"model": "m", "prompt": prompt, "max_tokens": 10}),
        )
        .await;
    }
    let one_by_one = start.elapsed();
    assert_eq!(one_by_one, Duration::from_millis(4 * (100 + 200) + 7));
    assert!(batch < one_by_one);
}

#[tokio::test(start_paused = true)]
async fn embeddings_pay_prefill_only() {
    let mock = TestMock::with(options());
    let start = Instant::now();
    mock.post(
        "/v1/embeddings",
        &json!({"model": "e", "input": ["aaaa", "bbbbbbbb"]}),
    )
    .await;
    assert_eq!(start.elapsed(), Duration::from_millis(100 + 3));
}

#[tokio::test(start_paused = true)]
async fn default_options_answer_instantly() {
    let mock = TestMock::new();
    let start = Instant::now();
    mock.post(
        "/v1/completions",
        &json!({"model": "m", "prompt": "x", "max_tokens": 1000}),
    )
    .await;
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn batch_efficiency_overlaps_prefill() {
    let mut options = options();
    options.latency.batch_efficiency = sluice_mock::Ratio::percent(50);
    let mock = TestMock::with(options);
    let prompts = ["aaaa", "bbbbbbbb", "cccccccccccc", "dddd"]; // 1 + 2 + 3 + 1 tokens
    let start = Instant::now();
    mock.post(
        "/v1/completions",
        &json!({"model": "m", "prompt": prompts, "max_tokens": 10}),
    )
    .await;
    // Prefill = 0.5 × 7 ms + 0.5 × 3 ms = 5 ms.
    assert_eq!(start.elapsed(), Duration::from_millis(100 + 5 + 200));
}

#[tokio::test(start_paused = true)]
async fn jitter_is_bounded_varied_and_seeded() {
    let mut jittery = options();
    jittery.latency.jitter = sluice_mock::Ratio::percent(30);
    jittery.seed = 5;
    let base = jittery.latency(1, 10); // 100 + 1 + 200 ms
    let run = || async {
        let mock = TestMock::with(jittery.clone());
        let mut elapsed = Vec::new();
        for _ in 0..50 {
            let start = Instant::now();
            mock.post(
                "/v1/completions",
                &json!({"model": "m", "prompt": "x", "max_tokens": 10}),
            )
            .await;
            elapsed.push(start.elapsed());
        }
        elapsed
    };
    let first = run().await;
    let (lo, hi) = (base.mul_f64(0.7), base.mul_f64(1.3));
    assert!(first.iter().all(|d| *d >= lo && *d <= hi), "{first:?}");
    assert!(first.iter().any(|d| *d < base) && first.iter().any(|d| *d > base));
    // Exactly the model's figure, up to tokio's 1 ms timer resolution.
    for (i, d) in first.iter().enumerate() {
        let expected = jittery.jittered(base, i as u64);
        assert!(
            *d >= expected && *d - expected < Duration::from_millis(1),
            "{d:?} vs {expected:?}"
        );
    }
    assert_eq!(run().await, first);
}

#[tokio::test(start_paused = true)]
async fn past_max_concurrency_requests_wait_their_turn() {
    let mock = TestMock::with(MockOptions {
        latency: LatencyOptions {
            fixed_ms: 100,
            ..LatencyOptions::default()
        },
        max_concurrency: NonZeroUsize::new(2),
        ..MockOptions::default()
    });
    let body =
        json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]});
    let start = Instant::now();
    let call = || async {
        let (status, _) = mock.post("/v1/chat/completions", &body).await;
        assert_eq!(status, 200);
        start.elapsed()
    };
    let (a, b, c, d, e) = tokio::join!(call(), call(), call(), call(), call());
    let mut took = [a, b, c, d, e];
    took.sort();
    // Two at a time: 100, 100, 200, 200, 300 ms.
    let ms: Vec<u128> = took.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, [100, 100, 200, 200, 300]);
}
