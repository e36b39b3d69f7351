//! The prompt-prefix cache on the OpenAI routes: reported in
//! `prompt_tokens_details.cached_tokens`, cheaper and faster.

use std::num::{NonZeroU64, NonZeroUsize};
use std::time::Duration;

use serde_json::{json, Value};
use sluice_mock::{count_tokens, LatencyOptions, MockOptions, PrefixCacheOptions};
use tokio::time::Instant;

use crate::helpers::TestMock;

fn options() -> MockOptions {
    MockOptions {
        // Whole milliseconds: tokio's timer rounds sleeps up to the next one.
        latency: LatencyOptions {
            per_prompt_token_us: 10_000,
            per_cached_prompt_token_us: 1_000,
            ..LatencyOptions::default()
        },
        prefix_cache: PrefixCacheOptions {
            enabled: true,
            block_tokens: NonZeroU64::new(16).unwrap(),
            max_entries: NonZeroUsize::new(1_000).unwrap(),
            ttl_secs: 60,
        },
        ..MockOptions::default()
    }
}

fn chat(system: &str, question: &str) -> Value {
    json!({"model": "m", "max_tokens": 8, "messages": [
        {"role": "system", "content": system},
        {"role": "user", "content": question}
    ]})
}

fn cached(response: &Value) -> u64 {
    response["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap()
}

const SYSTEM: &str = "You are a helpful assistant who answers in exactly one short line.";

#[tokio::test(start_paused = true)]
async fn chat_second_request_with_the_same_prefix_is_cached_cheaper_and_faster() {
    let mock = TestMock::with(options());
    let start = Instant::now();
    let first = mock
        .post_full("/v1/chat/completions", &chat(SYSTEM, "one?"))
        .await;
    let first_time = start.elapsed();
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(cached(&first.body), 0);

    let start = Instant::now();
    let second = mock
        .post_full("/v1/chat/completions", &chat(SYSTEM, "two?"))
        .await;
    let second_time = start.elapsed();
    let system_tokens = count_tokens(SYSTEM);
    assert_eq!(cached(&second.body), system_tokens);
    assert_eq!(
        second.body["usage"]["prompt_tokens"],
        system_tokens + count_tokens("two?")
    );
    assert!(
        second.cost() < first.cost(),
        "{} vs {}",
        second.cost(),
        first.cost()
    );
    // 1 uncached token at 10 ms and the system prompt at 1 ms a token.
    assert_eq!(second_time, Duration::from_millis(10 + system_tokens));
    assert_eq!(first_time, Duration::from_millis(10 * (system_tokens + 1)));
    assert!(second_time < first_time);
    // The answer is unchanged by caching.
    assert!(second.body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .starts_with(&sluice_mock::answer_text("two?")));

    let bill = mock.server.bill();
    assert_eq!(bill.model("m").charges.cached_tokens, system_tokens);
    assert_eq!(bill.total_cost_micros, first.cost() + second.cost());
}

#[tokio::test]
async fn a_different_prefix_model_or_cache_key_misses() {
    let mock = TestMock::with(options());
    mock.post("/v1/chat/completions", &chat(SYSTEM, "one?"))
        .await;
    let (_, other_system) = mock
        .post(
            "/v1/chat/completions",
            &chat("Another system prompt.", "one?"),
        )
        .await;
    assert_eq!(cached(&other_system), 0);

    let mut other_model = chat(SYSTEM, "one?");
    other_model["model"] = json!("n");
    let (_, response) = mock.post("/v1/chat/completions", &other_model).await;
    assert_eq!(cached(&response), 0);

    let mut keyed = chat(SYSTEM, "one?");
    keyed["prompt_cache_key"] = json!("tenant-a");
    let (_, response) = mock.post("/v1/chat/completions", &keyed).await;
    assert_eq!(cached(&response), 0);
    let (_, response) = mock.post("/v1/chat/completions", &keyed).await;
    assert_eq!(cached(&response), count_tokens(SYSTEM));
}

#[tokio::test]
async fn longer_conversations_hit_their_longest_cached_run_of_messages() {
    let mock = TestMock::with(options());
    let turns = json!([
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question"}
    ]);
    let body = json!({"model": "m", "messages": turns});
    let (_, first) = mock.post("/v1/chat/completions", &body).await;
    assert_eq!(cached(&first), 0);
    let (_, again) = mock.post("/v1/chat/completions", &body).await;
    let prefix =
        count_tokens(SYSTEM) + count_tokens("first question") + count_tokens("first answer");
    assert_eq!(cached(&again), prefix);
    // Same system prompt, different first turn: only the system prompt.
    let branch = json!({"model": "m", "messages": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "another question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question"}
    ]});
    let (_, branch) = mock.post("/v1/chat/completions", &branch).await;
    assert_eq!(cached(&branch), count_tokens(SYSTEM));
}

#[tokio::test]
async fn completions_cache_whole_blocks_of_the_shared_prefix() {
    let mock = TestMock::with(options());
    // Blocks of 16 tokens = 64 bytes.
    let shared = "x".repeat(200);
    let first = format!("{shared}AAAA tail");
    let second = format!("{shared}BBBB tail");
    let (_, response) = mock
        .post("/v1/completions", &json!({"model": "m", "prompt": first}))
        .await;
    assert_eq!(cached(&response), 0);
    let (_, response) = mock
        .post("/v1/completions", &json!({"model": "m", "prompt": second}))
        .await;
    // 200 shared bytes hold 3 whole blocks.
    assert_eq!(cached(&response), 48);
    // Within one batch, a prompt hits the prefix of an earlier one.
    let batch = [
        format!("{}1", "y".repeat(130)),
        format!("{}2", "y".repeat(130)),
    ];
    let (_, response) = mock
        .post("/v1/completions", &json!({"model": "m", "prompt": batch}))
        .await;
    assert_eq!(cached(&response), 32);
}

#[tokio::test(start_paused = true)]
async fn prefixes_expire_after_the_ttl_and_reset_clears_them() {
    let mock = TestMock::with(options());
    mock.post("/v1/chat/completions", &chat(SYSTEM, "one?"))
        .await;
    tokio::time::advance(Duration::from_secs(59)).await;
    let (_, hit) = mock
        .post("/v1/chat/completions", &chat(SYSTEM, "two?"))
        .await;
    assert_eq!(cached(&hit), count_tokens(SYSTEM));
    tokio::time::advance(Duration::from_secs(61)).await;
    let (_, miss) = mock
        .post("/v1/chat/completions", &chat(SYSTEM, "three?"))
        .await;
    assert_eq!(cached(&miss), 0);

    mock.post("/mock/reset", &json!({})).await;
    let (_, after_reset) = mock
        .post("/v1/chat/completions", &chat(SYSTEM, "four?"))
        .await;
    assert_eq!(cached(&after_reset), 0);
}

#[tokio::test]
async fn off_by_default() {
    let mock = TestMock::new();
    for _ in 0..2 {
        let (_, response) = mock.post("/v1/chat/completions", &chat(SYSTEM, "q")).await;
        assert_eq!(cached(&response), 0);
    }
    assert_eq!(mock.server.bill().model("m").charges.cached_tokens, 0);
}
