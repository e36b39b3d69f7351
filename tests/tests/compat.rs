//! The OpenAI-compatible endpoints answer as OpenAI does, through the queue.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use sluice_e2e::{acme_stack, backup_route, Price, StackOptions};
use sluice_mock::answer_text;

/// Reads a stream of OpenAI chunks to its end: the chunks, and the
/// content they carry. The content must come in several reads before the
/// end: a stream that was answered whole would bring it in one.
async fn read_stream(mut response: reqwest::Response) -> (Vec<Value>, String) {
    let (mut text, mut reads_with_content) = (String::new(), 0);
    while let Some(bytes) = response.chunk().await.unwrap() {
        text.push_str(std::str::from_utf8(&bytes).unwrap());
        if !text.contains("[DONE]") && bytes.windows(10).any(|w| w == b"\"content\":") {
            reads_with_content += 1;
        }
    }
    assert!(
        reads_with_content >= 5,
        "{reads_with_content} reads: {text}"
    );
    let chunks: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    (chunks, content)
}

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
        .post(
            "/v1/embeddings",
            &json!({"model": "mock-embed", "stream": true, "input": "x"}),
        )
        .await;
    assert_eq!(r.status, 400, "embeddings do not stream: {r:?}");
    assert_eq!(r.body["error"]["type"], "invalid_request_error");
}

/// A streaming call through the real services: the worker relays the
/// provider's chunks through Redis, and the API sends each as it comes.
/// A caller that hangs up midway leaves the job to finish.
#[tokio::test]
async fn a_stream_arrives_as_the_provider_writes_it_and_a_caller_who_leaves_cancels_nothing() {
    let (stack, client) = acme_stack(StackOptions {
        // 15 ms a token: a 40-token answer takes 0.6 s to write.
        mock_args: vec!["--latency-per-completion-token-us".into(), "15000".into()],
        ..StackOptions::default()
    })
    .await;
    let http = reqwest::Client::new();
    let body = |text: &str| {
        json!({"model": "mock-small", "max_tokens": 40, "stream": true,
               "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": text}]})
    };
    let call = |text: &str| {
        http.post(format!("{}/v1/chat/completions", stack.api_url()))
            .bearer_auth(&client.key)
            .json(&body(text))
            .send()
    };
    let response = call("stream through redis").await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let id = response.headers()["sluice-job-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let (chunks, content) = read_stream(response).await;
    let job = client.wait(&id, 30).await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["result"]["choices"][0]["message"]["content"], content);
    assert_eq!(chunks.last().unwrap()["usage"], job["result"]["usage"]);

    // Hang up after the first chunk: the job still ends, answered.
    let mut response = call("hang up early").await.unwrap();
    let id = response.headers()["sluice-job-id"]
        .to_str()
        .unwrap()
        .to_owned();
    response.chunk().await.unwrap().expect("a first chunk");
    drop(response);
    let job = client.wait(&id, 30).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["usage"]["completion_tokens"], 40);
}

/// A route served by Anthropic streams too: the worker reads Messages
/// events and relays them as OpenAI chunks while the provider writes them;
/// the job ends with the assembled answer, its usage and cost the bill's.
#[tokio::test]
async fn an_anthropic_route_streams_as_the_provider_writes_it() {
    let claude = Price {
        model: "claude-mock",
        input: 3_000_000,
        cached_input: 300_000,
        output: 15_000_000,
    };
    let (stack, client) = acme_stack(StackOptions {
        // 15 ms a token: a 40-token answer takes 0.6 s to write.
        backup_mock: Some(
            ["--latency-per-completion-token-us".into(), "15000".into()]
                .into_iter()
                .chain(claude.mock_flags())
                .collect(),
        ),
        extra_toml: backup_route("anthropic", "anthropic", "claude-mock", &["anthropic"], "")
            + &claude.toml("anthropic"),
        ..StackOptions::default()
    })
    .await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", stack.api_url()))
        .bearer_auth(&client.key)
        .json(
            &json!({"model": "claude-mock", "max_tokens": 40, "stream": true,
               "stream_options": {"include_usage": true},
               "messages": [{"role": "system", "content": "Be brief."},
                            {"role": "user", "content": "stream from claude"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = response.headers()["sluice-job-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let (chunks, content) = read_stream(response).await;
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(
        content.starts_with(&answer_text("stream from claude")),
        "{content}"
    );

    let job = client.wait(&id, 30).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["provider"], "anthropic");
    assert_eq!(job["result"]["choices"][0]["message"]["content"], content);
    assert_eq!(job["result"]["choices"][0]["finish_reason"], "length");
    assert_eq!(chunks.last().unwrap()["usage"], job["result"]["usage"]);
    assert_eq!(job["usage"]["completion_tokens"], 40);
    let bill = stack.backup_bill().await;
    assert_eq!(job["cost_micros"], bill["total_cost_micros"], "{bill}");
    let billed = &bill["by_model"]["claude-mock"];
    assert_eq!(
        job["usage"]["prompt_tokens"], billed["prompt_tokens"],
        "{bill}"
    );
    assert_eq!(
        job["usage"]["completion_tokens"],
        billed["completion_tokens"]
    );
}
