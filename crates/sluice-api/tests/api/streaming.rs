//! `stream: true` on the OpenAI-compatible routes: Server-Sent Events as
//! OpenAI sends them, relayed from the provider's stream through the job's
//! chunk log, and the job ending as any other.

use serde_json::{json, Value};

use crate::support::{Reply, TestApp};

/// The `data:` payloads of an event stream, in order.
fn events(reply: &Reply) -> Vec<String> {
    reply.expect(200);
    assert!(
        reply.content_type().starts_with("text/event-stream"),
        "{reply:?}"
    );
    let text = reply.body.as_str().expect("an event stream is text");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .expect("only data events")
                .to_owned()
        })
        .collect()
}

/// The chunks before `[DONE]`, which must come last.
fn chunks(reply: &Reply) -> Vec<Value> {
    let events = events(reply);
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect()
}

/// A chat choice's content, deltas joined.
fn content(chunks: &[Value], index: u64) -> String {
    chunks
        .iter()
        .flat_map(|c| c["choices"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["index"] == index)
        .filter_map(|c| c["delta"]["content"].as_str().map(str::to_owned))
        .collect()
}

fn chat(text: &str) -> Value {
    json!({"model": "mock-small", "max_tokens": 6,
           "messages": [{"role": "user", "content": text}]})
}

fn streaming(mut body: Value, include_usage: bool) -> Value {
    body["stream"] = json!(true);
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

#[tokio::test]
async fn a_streamed_chat_is_the_providers_stream_and_the_job_ends_as_any_other() {
    let app = TestApp::spawn_with_worker().await;
    let reply = app
        .post("/v1/chat/completions", &streaming(chat("stream me"), true))
        .await;
    let chunks = chunks(&reply);
    // The provider's own chunks, one piece a token, not one replayed whole.
    assert!(chunks.len() >= 6, "{chunks:?}");
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let text = content(&chunks, 0);
    assert!(
        text.starts_with(&sluice_mock::answer_text("stream me")),
        "{text}"
    );
    // With include_usage: null on every chunk but the last, which has it.
    let (last, rest) = chunks.split_last().unwrap();
    assert!(rest.iter().all(|c| c["usage"].is_null()), "{rest:?}");
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 6);

    // The job's result is the answer assembled, as a plain call returns it.
    let job = app.job(reply.header("sluice-job-id")).await;
    assert_eq!(job.body["status"], "succeeded");
    let result = &job.body["result"];
    assert_eq!(result["object"], "chat.completion");
    assert_eq!(result["choices"][0]["message"]["content"], text);
    assert_eq!(result["usage"], last["usage"]);
    assert_eq!(job.body["usage"]["completion_tokens"], 6);
    let plain = app.post("/v1/chat/completions", &chat("stream me")).await;
    plain.expect(200);
    assert_eq!(plain.body["choices"][0]["message"]["content"], text);
    // Two calls, each billed once.
    assert_eq!(app.mock.stats().total.prompts, 2);
}

#[tokio::test]
async fn without_include_usage_no_chunk_carries_usage() {
    let app = TestApp::spawn_with_worker().await;
    let reply = app
        .post("/v1/chat/completions", &streaming(chat("no usage"), false))
        .await;
    let chunks = chunks(&reply);
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none()),
        "{chunks:?}"
    );
    assert!(chunks
        .iter()
        .all(|c| !c["choices"].as_array().unwrap().is_empty()));
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|r| !r.is_null())
        .collect();
    assert_eq!(finish, vec!["length"]);
}

#[tokio::test]
async fn streamed_completions_keep_each_choice_apart() {
    let app = TestApp::spawn_with_worker().await;
    let body = json!({"model": "mock-small", "prompt": ["one upon", "two upon"],
                      "max_tokens": 3, "stream": true});
    let chunks = chunks(&app.post("/v1/completions", &body).await);
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    let plain = app
        .post(
            "/v1/completions",
            &json!({"model": "mock-small", "prompt": ["one upon", "two upon"], "max_tokens": 3}),
        )
        .await;
    plain.expect(200);
    for index in 0..2u64 {
        let text: String = chunks
            .iter()
            .flat_map(|c| c["choices"].as_array().cloned().unwrap_or_default())
            .filter(|c| c["index"] == index)
            .filter_map(|c| c["text"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(
            text, plain.body["choices"][index as usize]["text"],
            "{index}"
        );
    }
}

#[tokio::test]
async fn a_cache_hit_streams_the_cached_answer() {
    let app = TestApp::spawn_with_worker().await;
    let body = json!({"model": "mock-small", "temperature": 0, "max_tokens": 4,
                      "messages": [{"role": "user", "content": "cached stream"}]});
    let first = app.post("/v1/chat/completions", &body).await;
    first.expect(200);
    let hit = app
        .post("/v1/chat/completions", &streaming(body.clone(), true))
        .await;
    let chunks = chunks(&hit);
    assert_eq!(
        content(&chunks, 0),
        first.body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
    );
    assert_eq!(chunks.last().unwrap()["usage"], first.body["usage"]);
    let job = app.job(hit.header("sluice-job-id")).await;
    assert_eq!(job.body["cached"], true);
    // Answered from the cache: the provider saw one call.
    assert_eq!(app.mock.stats().total.prompts, 1);
}

#[tokio::test]
async fn a_refused_stream_is_an_openai_error_not_an_event_stream() {
    let app = TestApp::spawn_with_worker().await;
    let reply = app
        .post(
            "/v1/chat/completions",
            &streaming(
                json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
                false,
            ),
        )
        .await;
    reply.expect_openai_error(404, "invalid_request_error", Some("model_not_found"));
    // Embeddings do not stream.
    app.post(
        "/v1/embeddings",
        &json!({"model": "mock-embed", "input": "x", "stream": true}),
    )
    .await
    .expect_openai_error(400, "invalid_request_error", None);
    // A provider's refusal keeps its status and OpenAI's body.
    let too_many = json!({"model": "mock-small", "n": 500, "stream": true,
                          "messages": [{"role": "user", "content": "x"}]});
    let reply = app.post("/v1/chat/completions", &too_many).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(reply.body["error"]["param"], "n", "{reply:?}");
}
