use serde_json::{json, Value};
use sluice_mock::{answer_text, count_tokens, MockOptions};

use crate::helpers::{chat_content, TestMock};

#[tokio::test]
async fn answers_the_last_user_message_deterministically() {
    let mock = TestMock::new();
    let body = json!({
        "model": "m",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": "second question"}
        ]
    });
    let (status, first) = mock.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{first}");
    let (_, again) = mock.post("/v1/chat/completions", &body).await;

    let content = chat_content(&first);
    assert!(
        content.starts_with(&answer_text("second question")),
        "{content}"
    );
    assert!(content.starts_with("mock:"));
    assert_eq!(content, chat_content(&again));
    assert_eq!(first["id"], again["id"]);
    assert!(first["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(first["object"], "chat.completion");
    assert_eq!(first["model"], "m");
    assert_eq!(first["choices"][0]["index"], 0);
    assert_eq!(first["choices"][0]["message"]["role"], "assistant");
    assert_eq!(first["choices"][0]["finish_reason"], "length");

    let other = json!({"model": "m", "messages": [{"role": "user", "content": "another"}]});
    let (_, other) = mock.post("/v1/chat/completions", &other).await;
    assert_ne!(chat_content(&other), content);
}

#[tokio::test]
async fn usage_counts_every_message_and_exactly_max_tokens() {
    let mock = TestMock::new();
    let messages = ["You are terse.", "hello there, model", "ok"];
    let body = json!({
        "model": "m",
        "max_tokens": 40,
        "messages": [
            {"role": "system", "content": messages[0]},
            {"role": "user", "content": messages[1]},
            {"role": "user", "content": [{"type": "text", "text": messages[2]}]}
        ]
    });
    let (status, response) = mock.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{response}");
    let prompt_tokens: u64 = messages.iter().map(|m| count_tokens(m)).sum();
    assert_eq!(response["usage"]["prompt_tokens"], prompt_tokens);
    assert_eq!(response["usage"]["completion_tokens"], 40);
    assert_eq!(response["usage"]["total_tokens"], prompt_tokens + 40);
    let content = chat_content(&response);
    assert_eq!(count_tokens(&content), 40);
    // A single text part reads the same as a plain string.
    assert!(content.starts_with(&answer_text("ok")));
}

#[tokio::test]
async fn max_completion_tokens_wins_and_default_applies() {
    let mock = TestMock::with(MockOptions {
        default_max_tokens: 9,
        ..MockOptions::default()
    });
    let messages = json!([{"role": "user", "content": "q"}]);
    let (_, both) = mock
        .post(
            "/v1/chat/completions",
            &json!({"model": "m", "messages": messages, "max_tokens": 100, "max_completion_tokens": 20}),
        )
        .await;
    assert_eq!(both["usage"]["completion_tokens"], 20);
    assert_eq!(count_tokens(&chat_content(&both)), 20);

    let (_, default) = mock
        .post(
            "/v1/chat/completions",
            &json!({"model": "m", "messages": messages}),
        )
        .await;
    assert_eq!(default["usage"]["completion_tokens"], 9);
    assert_eq!(count_tokens(&chat_content(&default)), 9);
}

#[tokio::test]
async fn tiny_max_tokens_is_reported_but_answer_kept_whole() {
    let mock = TestMock::new();
    let body =
        json!({"model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": "q"}]});
    let (_, response) = mock.post("/v1/chat/completions", &body).await;
    assert_eq!(response["usage"]["completion_tokens"], 2);
    assert_eq!(chat_content(&response), answer_text("q"));
}

#[tokio::test]
async fn n_gives_n_choices() {
    let mock = TestMock::new();
    let body = json!({"model": "m", "n": 3, "max_tokens": 10, "messages": [{"role": "user", "content": "q"}]});
    let (_, response) = mock.post("/v1/chat/completions", &body).await;
    let choices = response["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    for (i, choice) in choices.iter().enumerate() {
        assert_eq!(choice["index"], i);
    }
    assert_eq!(response["usage"]["completion_tokens"], 30);
}

/// A forced tool is called with the answer as its input; a tool choice
/// that names no given tool, or requires one when none is given, is a 400;
/// `auto` answers in text.
#[tokio::test]
async fn tool_choice_forces_a_call_and_names_only_given_tools() {
    let mock = TestMock::new();
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    let ask = |choice: Value, tools: Value| {
        json!({"model": "m", "max_tokens": 3, "tools": tools, "tool_choice": choice,
               "messages": [{"role": "user", "content": "hi"}]})
    };
    let (status, body) = mock
        .post(
            "/v1/chat/completions",
            &ask(json!("required"), tools.clone()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        body["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "f"
    );
    let (_, body) = mock
        .post("/v1/chat/completions", &ask(json!("auto"), tools.clone()))
        .await;
    assert!(
        body["choices"][0]["message"]["content"].is_string(),
        "{body}"
    );
    for (choice, tools) in [
        (
            json!({"type": "function", "function": {"name": "g"}}),
            tools,
        ),
        (json!("required"), json!([])),
    ] {
        let (status, body) = mock.post("/v1/chat/completions", &ask(choice, tools)).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["param"], "tool_choice");
    }
}
