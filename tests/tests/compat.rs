//! The OpenAI-compatible endpoints answer as OpenAI does, through the queue.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use sluice_e2e::{acme_stack, StackOptions};
use sluice_mock::answer_text;

#[tokio::test]
async fn an_openai_client_gets_openai_answers_through_the_queue() {
    let (_stack, client) = acme_stack(StackOptions::default()).await;
    // What an SDK sends: the plain OpenAI body, to base_url + /chat/completions.
    let r = client
        .post(
            "/v1/chat/completions",
            &json!({"model": "mock-small", "max_tokens": 5,
            "messages": [{"role": "user", "content": "sdk call"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["object"], "chat.completion");
    let text = r.body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.starts_with(&answer_text("sdk call")), "{text}");
    assert_eq!(r.body["usage"]["completion_tokens"], 5);
    // It was a job like any other.
    let id = r.headers["sluice-job-id"].clone();
    assert_eq!(client.job(&id).await.body["status"], "succeeded");

    let r = client
        .post(
            "/v1/embeddings",
            &json!({"model": "mock-embed", "input": "vector me"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["data"][0]["embedding"].as_array().unwrap().len(), 16);

    let r = client
        .post(
            "/v1/chat/completions",
            &json!({"model": "nope", "messages": []}),
        )
        .await;
    assert_eq!(
        r.status, 404,
        "an unknown model, as OpenAI answers it: {r:?}"
    );
    assert_eq!(r.body["error"]["code"], "model_not_found");
    let r = client
        .post("/v1/chat/completions", &json!({"model": "mock-small", "stream": true, "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(r.status, 400, "streaming is refused: {r:?}");
    assert_eq!(r.body["error"]["type"], "invalid_request_error");
}
