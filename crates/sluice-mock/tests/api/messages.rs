//! `POST /v1/messages`, Anthropic's shape: answers, usage with cache
//! creation then cache read, and errors.

use serde_json::{json, Value};
use sluice_mock::{answer_text, count_tokens, MockOptions, PrefixCacheOptions, Price};

use crate::helpers::{anthropic_cost, TestMock};

const SYSTEM: &str = "You are a meticulous assistant. Use the reference text below.";
const REFERENCE: &str = "Reference: the quick brown fox jumps over the lazy dog, twice.";

fn cached_mock() -> TestMock {
    TestMock::with(MockOptions {
        prefix_cache: PrefixCacheOptions {
            enabled: true,
            ..PrefixCacheOptions::default()
        },
        ..MockOptions::default()
    })
}

fn with_breakpoint(question: &str) -> Value {
    json!({
        "model": "claude-mock",
        "max_tokens": 12,
        "stop_sequences": ["\n\nHuman:"],
        "system": [
            {"type": "text", "text": SYSTEM},
            {"type": "text", "text": REFERENCE, "cache_control": {"type": "ephemeral"}}
        ],
        "messages": [{"role": "user", "content": [{"type": "text", "text": question}]}]
    })
}

fn usage(body: &Value, field: &str) -> u64 {
    body["usage"][field].as_u64().unwrap()
}

#[tokio::test]
async fn answers_in_anthropic_shape() {
    let mock = TestMock::new();
    let body = json!({
        "model": "claude-mock",
        "max_tokens": 20,
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "the question"}
        ]
    });
    let reply = mock.messages(&body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let r = &reply.body;
    assert!(r["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(r["type"], "message");
    assert_eq!(r["role"], "assistant");
    assert_eq!(r["model"], "claude-mock");
    assert_eq!(r["stop_reason"], "max_tokens");
    assert_eq!(r["content"][0]["type"], "text");
    let text = r["content"][0]["text"].as_str().unwrap();
    assert!(text.starts_with(&answer_text("the question")), "{text}");
    assert_eq!(count_tokens(text), 20);
    let input: u64 = ["Be brief.", "first", "ok", "the question"]
        .iter()
        .map(|t| count_tokens(t))
        .sum();
    assert_eq!(usage(r, "input_tokens"), input);
    assert_eq!(usage(r, "output_tokens"), 20);
    assert_eq!(usage(r, "cache_creation_input_tokens"), 0);
    assert_eq!(usage(r, "cache_read_input_tokens"), 0);
    // Same answer rule as chat.
    let chat = json!({"model": "m", "max_tokens": 20, "messages": [{"role": "user", "content": "the question"}]});
    let (_, chat) = mock.post("/v1/chat/completions", &chat).await;
    assert_eq!(chat["choices"][0]["message"]["content"], text);

    let stats = mock.server.stats();
    assert_eq!(stats.endpoint("/v1/messages").requests, 1);
    assert_eq!(stats.endpoint("/v1/messages").prompt_tokens, input);
}

#[tokio::test]
async fn cache_control_writes_then_reads() {
    let mock = cached_mock();
    let prefix = count_tokens(SYSTEM) + count_tokens(REFERENCE);

    let first = mock.messages(&with_breakpoint("one?")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(usage(&first.body, "cache_creation_input_tokens"), prefix);
    assert_eq!(usage(&first.body, "cache_read_input_tokens"), 0);
    assert_eq!(usage(&first.body, "input_tokens"), count_tokens("one?"));

    let second = mock.messages(&with_breakpoint("two, please?")).await;
    assert_eq!(usage(&second.body, "cache_creation_input_tokens"), 0);
    assert_eq!(usage(&second.body, "cache_read_input_tokens"), prefix);
    assert_eq!(
        usage(&second.body, "input_tokens"),
        count_tokens("two, please?")
    );

    // Writes cost 1.25 × input, reads the cached price.
    let price = Price::DEFAULT;
    assert_eq!(first.cost(), anthropic_cost(&price, 1, 0, prefix, 12));
    assert_eq!(
        second.cost(),
        anthropic_cost(&price, count_tokens("two, please?"), prefix, 0, 12)
    );
    assert!(second.cost() < first.cost());

    let bill = mock.server.bill().model("claude-mock");
    assert_eq!(bill.charges.cache_write_tokens, prefix);
    assert_eq!(bill.charges.cached_tokens, prefix);
    assert_eq!(
        bill.charges.prompt_tokens,
        2 * prefix + count_tokens("one?") + count_tokens("two, please?")
    );
    assert_eq!(bill.charges.cost_micros, first.cost() + second.cost());

    // Without the breakpoint nothing is cached or written.
    let mut plain = with_breakpoint("three?");
    plain["system"][1]
        .as_object_mut()
        .unwrap()
        .remove("cache_control");
    let third = mock.messages(&plain).await;
    assert_eq!(usage(&third.body, "cache_read_input_tokens"), 0);
    assert_eq!(usage(&third.body, "cache_creation_input_tokens"), 0);
}

#[tokio::test]
async fn a_later_breakpoint_reads_the_earlier_and_writes_the_rest() {
    let mock = cached_mock();
    mock.messages(&with_breakpoint("one?")).await;
    let mut longer = with_breakpoint("ignored");
    longer["messages"] = json!([
        {"role": "user", "content": [{"type": "text", "text": "long context here", "cache_control": {"type": "ephemeral"}}]},
        {"role": "assistant", "content": "noted"},
        {"role": "user", "content": "question"}
    ]);
    let reply = mock.messages(&longer).await;
    let prefix = count_tokens(SYSTEM) + count_tokens(REFERENCE);
    assert_eq!(usage(&reply.body, "cache_read_input_tokens"), prefix);
    assert_eq!(
        usage(&reply.body, "cache_creation_input_tokens"),
        count_tokens("long context here")
    );
    assert_eq!(
        usage(&reply.body, "input_tokens"),
        count_tokens("noted") + count_tokens("question")
    );
}

fn assert_anthropic_error(reply: &crate::helpers::Reply, status: u16, kind: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.body["type"], "error", "{}", reply.body);
    assert_eq!(reply.body["error"]["type"], kind, "{}", reply.body);
    assert!(reply.body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn errors_are_in_anthropic_shape() {
    let mock = TestMock::new();
    let good =
        json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let no_version = mock.post_full("/v1/messages", &good).await;
    assert_anthropic_error(&no_version, 400, "invalid_request_error");
    assert!(no_version.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("anthropic-version"));

    let cases = [
        json!({"model": "c", "messages": [{"role": "user", "content": "hi"}]}),
        json!({"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}),
        json!({"model": "c", "max_tokens": 5, "messages": []}),
        json!({"model": "c", "max_tokens": 5}),
        json!({"model": "c", "max_tokens": 0, "messages": [{"role": "user", "content": "hi"}]}),
        json!({"model": "c", "max_tokens": 5, "messages": [{"role": "system", "content": "hi"}]}),
        json!({"model": "c", "max_tokens": 5, "messages": "hi"}),
        // Streamed or not, a bad request is refused before any event.
        json!({"model": "c", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    ];
    for body in cases {
        let reply = mock.messages(&body).await;
        assert_anthropic_error(&reply, 400, "invalid_request_error");
    }
    let reply = mock
        .post_with(
            "/v1/messages",
            &json!("{not json"),
            &[("anthropic-version", "2023-06-01")],
        )
        .await;
    assert_anthropic_error(&reply, 400, "invalid_request_error");
    assert_eq!(mock.server.stats().total.requests, 0);
    assert_eq!(mock.server.bill().total_cost_micros, 0);
}

#[tokio::test]
async fn the_api_key_goes_in_x_api_key() {
    let mock = TestMock::with(MockOptions {
        api_key: "sk-ant".parse().ok(),
        ..MockOptions::default()
    });
    let body =
        json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let missing = mock.messages(&body).await;
    assert_anthropic_error(&missing, 401, "authentication_error");
    let bearer = mock
        .post_with(
            "/v1/messages",
            &body,
            &[
                ("anthropic-version", "2023-06-01"),
                ("authorization", "Bearer sk-ant"),
            ],
        )
        .await;
    assert_eq!(bearer.status, 401);
    let good = mock
        .post_with(
            "/v1/messages",
            &body,
            &[("anthropic-version", "2023-06-01"), ("x-api-key", "sk-ant")],
        )
        .await;
    assert_eq!(good.status, 200, "{}", good.body);
}
