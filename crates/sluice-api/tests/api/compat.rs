//! The OpenAI-compatible routes: each call is an interactive job that the
//! route waits for, answered with the provider's body and `Sluice-Job-Id`.

use serde_json::json;

use crate::support::TestApp;

fn chat_body(text: &str) -> serde_json::Value {
    json!({"model": "mock-small", "max_tokens": 5,
           "messages": [{"role": "user", "content": text}]})
}

#[tokio::test]
async fn chat_completions_answer_as_openai_does_through_a_job() {
    let app = TestApp::spawn_with_worker().await;
    let reply = app
        .post("/v1/chat/completions", &chat_body("sdk call"))
        .await;
    reply.expect(200);
    assert_eq!(reply.content_type(), "application/json");
    assert_eq!(reply.body["object"], "chat.completion");
    let text = reply.body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap();
    assert!(
        text.starts_with(&sluice_mock::answer_text("sdk call")),
        "{text}"
    );
    assert_eq!(reply.body["usage"]["completion_tokens"], 5);
    // It was a job like any other, at interactive priority.
    let job = app.job(reply.header("sluice-job-id")).await;
    job.expect(200);
    assert_eq!(job.body["status"], "succeeded");
    assert_eq!(job.body["priority"], "interactive");
    assert_eq!(job.body["result"], reply.body);
}

#[tokio::test]
async fn completions_and_embeddings_answer_too() {
    let app = TestApp::spawn_with_worker().await;
    let reply = app
        .post(
            "/v1/completions",
            &json!({"model": "mock-small", "prompt": "Once upon", "max_tokens": 3}),
        )
        .await;
    reply.expect(200);
    assert_eq!(reply.body["object"], "text_completion");
    assert_eq!(reply.body["choices"].as_array().unwrap().len(), 1);
    assert_eq!(reply.body["usage"]["completion_tokens"], 3);
    assert!(reply.headers.contains_key("sluice-job-id"));

    let reply = app
        .post(
            "/v1/embeddings",
            &json!({"model": "mock-embed", "input": "vector me"}),
        )
        .await;
    reply.expect(200);
    assert_eq!(reply.body["object"], "list");
    let vector = reply.body["data"][0]["embedding"].as_array().unwrap();
    assert_eq!(vector.len(), 16);
}

#[tokio::test]
#[ignore = "bug: a completions or embeddings call whose `prompt`/`input` is an array \
            (which the API accepts) fails at the provider: the worker nests it in \
            the batch's own array"]
async fn array_prompts_and_inputs_are_answered() {
    let app = TestApp::spawn_with_worker().await;
    let reply = app
        .post(
            "/v1/embeddings",
            &json!({"model": "mock-embed", "input": ["one", "two"]}),
        )
        .await;
    reply.expect(200);
    assert_eq!(reply.body["data"].as_array().unwrap().len(), 2);
    let reply = app
        .post(
            "/v1/completions",
            &json!({"model": "mock-small", "prompt": ["one", "two"]}),
        )
        .await;
    reply.expect(200);
    assert_eq!(reply.body["choices"].as_array().unwrap().len(), 2);
}

#[tokio::test]
#[ignore = "bug: a completions call with `n` > 1 fails: the worker matches its \
            extra choices to other jobs of the batch (\"choices index 1 is outside \
            the batch of 1\")"]
async fn a_completion_with_several_choices_is_answered() {
    let app = TestApp::spawn_with_worker().await;
    let reply = app
        .post(
            "/v1/completions",
            &json!({"model": "mock-small", "prompt": "pick two", "n": 2}),
        )
        .await;
    reply.expect(200);
    assert_eq!(reply.body["choices"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_repeated_deterministic_call_is_answered_from_the_cache() {
    let app = TestApp::spawn_with_worker().await;
    let body = json!({"model": "mock-small", "temperature": 0,
                      "messages": [{"role": "user", "content": "same again"}]});
    let first = app.post("/v1/chat/completions", &body).await;
    first.expect(200);
    let second = app.post("/v1/chat/completions", &body).await;
    second.expect(200);
    assert_eq!(second.body, first.body);
    assert_ne!(
        second.header("sluice-job-id"),
        first.header("sluice-job-id")
    );
    assert_eq!(app.mock.stats().total.prompts, 1);
}

#[tokio::test]
async fn a_bad_call_is_refused_before_it_becomes_a_job() {
    let app = TestApp::spawn().await;
    app.post(
        "/v1/chat/completions",
        &json!({"model": "nope", "messages": []}),
    )
    .await
    .expect_openai_error(404, "invalid_request_error", Some("model_not_found"));
    let reply = app
        .post(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    reply.expect_openai_error(400, "invalid_request_error", None);
    assert_eq!(reply.body["error"]["param"], "model");
    let streaming = json!({"model": "mock-small", "stream": true,
                           "messages": [{"role": "user", "content": "x"}]});
    let reply = app.post("/v1/chat/completions", &streaming).await;
    reply.expect_openai_error(400, "invalid_request_error", None);
    assert!(reply.message().contains("stream"), "{reply:?}");
    app.post("/v1/embeddings", &json!({"model": "mock-embed"}))
        .await
        .expect_openai_error(400, "invalid_request_error", None);
    app.post_raw("/v1/completions", "{\"model\": ")
        .await
        .expect_openai_error(400, "invalid_request_error", None);
    assert_eq!(app.queued_jobs().await, 0);
}

#[tokio::test]
async fn a_job_that_fails_at_the_provider_answers_502() {
    let app = TestApp::builder()
        .toml("[worker]\nprovider_attempts = 1")
        .worker()
        .spawn()
        .await;
    app.mock.set_down(true);
    let reply = app
        .post("/v1/chat/completions", &chat_body("the provider is down"))
        .await;
    reply.expect_openai_error(502, "server_error", None);
    let id = reply.header("sluice-job-id").to_owned();
    assert!(reply.message().contains(&id), "{reply:?}");
    let job = app.job(&id).await;
    assert_eq!(job.body["status"], "failed");
    assert!(job.body["error"]["message"].is_string());
}

#[tokio::test(start_paused = true)]
async fn a_job_still_running_after_ten_minutes_answers_504_and_goes_on() {
    // No worker: the job stays queued; the paused clock runs the
    // ten-minute wait at once.
    let app = TestApp::spawn().await;
    let started = tokio::time::Instant::now();
    let reply = app
        .post("/v1/chat/completions", &chat_body("a long one"))
        .await;
    reply.expect_openai_error(504, "server_error", Some("timeout"));
    assert!(started.elapsed() >= std::time::Duration::from_secs(600));
    let id = reply.header("sluice-job-id").to_owned();
    assert!(
        reply.message().contains(&format!("/v1/jobs/{id}")),
        "{reply:?}"
    );
    assert_eq!(app.job(&id).await.body["status"], "queued");
    assert_eq!(app.queued_jobs().await, 1);
}

#[tokio::test]
async fn a_providers_refusal_reaches_the_caller_with_its_status_and_error() {
    let app = TestApp::spawn_with_worker().await;
    let mut body = chat_body("too long an answer");
    body["max_tokens"] = json!(1_000_000_000u64);
    let reply = app.post("/v1/chat/completions", &body).await;
    reply.expect_openai_error(400, "invalid_request_error", None);
    assert_eq!(reply.body["error"]["param"], "max_tokens", "{reply:?}");
    assert!(reply.message().contains("at most"), "{reply:?}");
    // The job carries the same refusal.
    let job = app.job(reply.header("sluice-job-id")).await;
    assert_eq!(job.body["status"], "failed");
    assert_eq!(job.body["error"]["type"], "provider_rejected");
    assert_eq!(job.body["error"]["rejection"]["status"], 400);
    assert_eq!(job.body["error"]["rejection"]["error"], reply.body["error"]);
}

#[tokio::test]
async fn models_lists_every_route_and_names_one() {
    let app = TestApp::spawn().await;
    let list = app.get("/v1/models").await.expect(200).body.clone();
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    let routed: Vec<&str> = app.config.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(ids, routed);
    for model in list["data"].as_array().unwrap() {
        assert_eq!(model["object"], "model");
        assert!(model["created"].as_i64().unwrap() > 1_700_000_000);
        assert_eq!(model["owned_by"], "sluice");
    }
    let one = app.get("/v1/models/mock-small").await.expect(200).body.clone();
    assert_eq!(one["id"], "mock-small");
    let reply = app.get("/v1/models/gpt-nope").await;
    reply.expect_openai_error(404, "invalid_request_error", Some("model_not_found"));
    assert!(reply.message().contains("gpt-nope"), "{reply:?}");
}
